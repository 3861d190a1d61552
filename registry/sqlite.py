"""SQLite backend of `Storage` (stdlib sqlite3).

Every call runs in one dedicated worker thread: the sqlite3 connection stays in the thread that
created it, calls are serialised without locks, and the event loop never waits on disk.

Durability: WAL with synchronous=NORMAL by default. The gateway promises that what it acknowledged
to a device survives the gateway process being killed (kill -9, OOM, a crash): in WAL mode a
COMMIT appends the transaction to the -wal file with write(), the bytes are in the OS page cache
the moment it returns, and the next process to open the database replays them, whatever happened
to the writer. Only the OS going down (power loss, kernel panic) can lose the last transactions
before a checkpoint; the database is never corrupted by it. synchronous=FULL (`Synchronous.FULL`)
also survives that, at the price of one fsync per transaction: with group commit that is one
fsync per commit window rather than per registration, affordable on a local SSD, but a slow or
networked disk would then set the acknowledgement latency, and devices re-register by themselves
after an unlikely power loss anyway.

The file under us: an open SQLite connection keeps writing to the inode it opened, so after
``rm gateway.db*`` (or a restore that swaps the file) every commit still "succeeds" into a file no
path names any more, and the next start finds nothing. The store therefore checks that its path
(and the -wal beside it) still names the inode it opened, before every write and once a second
(`watch_file`). Deleted or replaced: one error log line, `file_problem` says what (the health check
reads it), and every later write raises `StorageUnavailable`, so nothing more is acknowledged
(devices get 500 "Not stored" and send again) instead of being acknowledged and silently lost.
Recovering needs an operator and a restart: the store does not reopen the file by itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from enum import StrEnum
from operator import attrgetter
from typing import Any, TypeVar

import structlog

from gbgw.registry.model import Alarm, Channel, Device, MobilePosition, Transition
from gbgw.registry.storage import OutboxItem, Storage, StorageBatch, StorageError, StorageUnavailable

_T = TypeVar("_T")

_log = structlog.get_logger("registry.sqlite")

# Columns in the order of the tables below. `online` is runtime state and is not stored.
_DEVICE_COLUMNS = (
    "id", "name", "manufacturer", "model", "firmware", "transport", "host", "port", "username",
    "registered_at", "expires_at", "last_keepalive", "channel_count", "catalog_partial",
    "stream_transport", "keepalive_interval", "charset",
)
_CHANNEL_COLUMNS = (
    "device_id", "id", "name", "parent_id", "manufacturer", "model", "owner", "civil_code", "address",
    "status", "longitude", "latitude", "ptz_type", "parental", "business_group_id",
)
_ALARM_COLUMNS = (
    "device_id", "channel_id", "sn", "priority", "method", "alarm_type", "time", "description",
    "longitude", "latitude", "received_at",
)
_POSITION_COLUMNS = (
    "device_id", "time", "longitude", "latitude", "speed", "direction", "altitude", "received_at",
)

# One entry per schema version; entry N-1 migrates version N-1 to N. Append, never edit.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE devices (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, manufacturer TEXT NOT NULL, model TEXT NOT NULL,
            firmware TEXT NOT NULL, transport TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL,
            username TEXT, registered_at REAL NOT NULL, expires_at REAL NOT NULL,
            last_keepalive REAL NOT NULL, channel_count INTEGER NOT NULL, catalog_partial INTEGER NOT NULL,
            stream_transport TEXT, keepalive_interval REAL, charset TEXT
        ) WITHOUT ROWID""",
        """CREATE TABLE channels (
            device_id TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, parent_id TEXT NOT NULL,
            manufacturer TEXT NOT NULL, model TEXT NOT NULL, owner TEXT NOT NULL, civil_code TEXT NOT NULL,
            address TEXT NOT NULL, status TEXT NOT NULL, longitude REAL, latitude REAL, ptz_type INTEGER,
            parental INTEGER NOT NULL, business_group_id TEXT NOT NULL, raw TEXT NOT NULL,
            PRIMARY KEY (device_id, id)
        ) WITHOUT ROWID""",
        """CREATE TABLE alarms (
            id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, channel_id TEXT NOT NULL,
            sn TEXT NOT NULL, priority TEXT NOT NULL, method TEXT NOT NULL, alarm_type TEXT NOT NULL,
            time TEXT NOT NULL, description TEXT NOT NULL, longitude REAL, latitude REAL,
            received_at REAL NOT NULL
        )""",
        "CREATE INDEX alarms_by_device ON alarms (device_id, id)",
        "CREATE INDEX alarms_by_received ON alarms (received_at)",
        """CREATE TABLE mobile_positions (
            id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, time TEXT NOT NULL, longitude REAL NOT NULL,
            latitude REAL NOT NULL, speed REAL, direction REAL, altitude REAL, received_at REAL NOT NULL
        )""",
        "CREATE INDEX mobile_positions_by_device ON mobile_positions (device_id, id)",
        "CREATE INDEX mobile_positions_by_received ON mobile_positions (received_at)",
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, dedup_key TEXT NOT NULL,
            payload BLOB NOT NULL, created_at REAL NOT NULL, next_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0,
            UNIQUE (topic, dedup_key)
        )""",
        "CREATE INDEX outbox_due ON outbox (topic, next_at, id) WHERE acked = 0",
    ),
    (
        # Due messages are taken in the order they were queued: walking (topic, id) and filtering on
        # next_at stops at LIMIT, where (topic, next_at) would sort the whole backlog on every batch.
        "DROP INDEX outbox_due",
        "CREATE INDEX outbox_pending ON outbox (topic, id) WHERE acked = 0",
    ),
    (
        # The availability history: ~40 bytes a transition, so a device flapping hourly for the default
        # 30 days keeps ~60 KB. Rowids follow insertion, which is time order.
        """CREATE TABLE transitions (
            id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, at REAL NOT NULL, online INTEGER NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE INDEX transitions_by_time ON transitions (at)",
        "CREATE INDEX transitions_by_device ON transitions (device_id, id)",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)

_device_values = attrgetter(*_DEVICE_COLUMNS)
_channel_values = attrgetter(*_CHANNEL_COLUMNS)
_alarm_values = attrgetter(*_ALARM_COLUMNS)
_position_values = attrgetter(*_POSITION_COLUMNS)


def _insert(table: str, columns: tuple[str, ...], verb: str = "INSERT") -> str:
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_UPSERT_DEVICE = _insert("devices", _DEVICE_COLUMNS, "INSERT OR REPLACE")
_UPSERT_CHANNEL = _insert("channels", (*_CHANNEL_COLUMNS, "raw"), "INSERT OR REPLACE")
_INSERT_ALARM = _insert("alarms", _ALARM_COLUMNS)
_INSERT_POSITION = _insert("mobile_positions", _POSITION_COLUMNS)
_PRUNE_OUTBOX = "DELETE FROM outbox WHERE acked = 1 AND created_at < ?"
_LAST_TRANSITIONS_BEFORE = "SELECT MAX(id) FROM transitions WHERE at < ? GROUP BY device_id"


def _channel_row(channel: Channel) -> tuple[Any, ...]:
    return (*_channel_values(channel), json.dumps(channel.raw, ensure_ascii=False))


def _device_from_row(row: tuple[Any, ...]) -> Device:
    device = Device(**dict(zip(_DEVICE_COLUMNS, row, strict=True)))
    device.catalog_partial = bool(device.catalog_partial)
    return device


def _channel_from_row(row: tuple[Any, ...]) -> Channel:
    channel = Channel(**dict(zip(_CHANNEL_COLUMNS, row[:-1], strict=True)), raw=json.loads(row[-1]))
    channel.parental = bool(channel.parental)
    return channel


def _stat(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


@contextmanager
def _transaction(db: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[sqlite3.Connection]:
    db.execute(begin)
    try:
        yield db
    except BaseException:
        # SQLite may already have rolled back by itself (e.g. disk full); don't mask the cause.
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Synchronous(StrEnum):
    """SQLite's synchronous setting in WAL mode (see the module docstring for the choice)."""

    NORMAL = "NORMAL"
    """A commit survives the process being killed; the OS crashing may lose the last ones."""
    FULL = "FULL"
    """A commit also survives power loss: one fsync per transaction."""


class SqliteStorage(Storage):
    """`Storage` in one SQLite file; the schema is created or migrated by `open()`."""

    def __init__(self, path: str | os.PathLike[str], synchronous: Synchronous = Synchronous.NORMAL) -> None:
        self._path = os.fspath(path)
        self._synchronous = Synchronous(synchronous)
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        """Only ever touched from the worker thread."""
        self._identities: dict[str, tuple[int, int]] = {}
        """(st_dev, st_ino) of the database and its -wal as opened; see the module docstring."""
        self.file_problem: str | None = None
        """Why the store stopped accepting writes (its file deleted or replaced), None while it is fine.
        Set once, from the worker thread; read from anywhere."""
        self.file_problems = 0
        """Times a file problem was found (0 or 1: the first one stops the store)."""

    @property
    def path(self) -> str:
        return self._path

    async def open(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-storage")
        try:
            await self._call(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        if self._executor is None:
            return
        try:
            await self._call(self._close)
        finally:
            # Jobs run in order: by now every earlier call has finished, so this join is short.
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            raise StorageError(f"storage {self._path} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageError(f"storage {self._path} is not open")
        return self._db

    def _open(self) -> None:
        # isolation_level=None: the module does not open transactions behind our back;
        # writes are grouped by explicit BEGIN/COMMIT and single statements autocommit.
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous.value}")
            db.execute("PRAGMA busy_timeout=5000")
            self._migrate(db)
            self._identities = {
                path: (st.st_dev, st.st_ino)
                for path in (self._path, f"{self._path}-wal")
                if (st := _stat(path)) is not None
            }
        except BaseException:
            db.close()
            raise
        self._db = db

    def _writable(self) -> sqlite3.Connection:
        """The connection, once the file it writes to is checked to still be the one on the path."""
        db = self._conn()
        self._check_file()
        if self.file_problem is not None:
            raise StorageUnavailable(self.file_problem)
        return db

    def _check_file(self) -> None:
        if self.file_problem is not None or self._db is None:
            return
        for path, identity in self._identities.items():
            st = _stat(path)
            if st is None:
                what = "was deleted"
            elif (st.st_dev, st.st_ino) != identity:
                what = "was replaced by another file"
            else:
                continue
            self.file_problem = (f"database file {path} {what} while open: nothing is stored or acknowledged "
                                 "until the gateway is restarted on a restored database")
            self.file_problems += 1
            _log.error("database file gone: storage stopped", path=path, problem=what,
                       detail=self.file_problem)
            return

    async def watch_file(self, interval: float = 1.0) -> None:
        """Check the database file every ``interval`` seconds, until cancelled, so a deleted file is
        noticed (and health turns degraded) even while nothing is written."""
        while self.file_problem is None:
            await asyncio.sleep(interval)
            if self._executor is None:
                continue
            await self._call(self._check_file)

    def _migrate(self, db: sqlite3.Connection) -> None:
        with _transaction(db, "BEGIN IMMEDIATE"):
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
                version = 0
            else:
                version = row[0]
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self._path} has schema version {version}, newer than this release "
                    f"understands ({SCHEMA_VERSION}); refusing to touch it"
                )
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    db.execute(statement)
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def load_devices(self) -> list[Device]:
        return await self._call(self._load_devices)

    def _load_devices(self) -> list[Device]:
        rows = self._conn().execute(f"SELECT {', '.join(_DEVICE_COLUMNS)} FROM devices")
        return [_device_from_row(row) for row in rows]

    async def load_channels(self) -> list[Channel]:
        return await self._call(self._load_channels)

    def _load_channels(self) -> list[Channel]:
        rows = self._conn().execute(f"SELECT {', '.join(_CHANNEL_COLUMNS)}, raw FROM channels")
        return [_channel_from_row(row) for row in rows]

    async def write(self, batch: StorageBatch) -> None:
        if len(batch) or batch.catalogs:
            await self._call(self._write, batch)

    def _write(self, batch: StorageBatch) -> None:
        with _transaction(self._writable()) as db:
            if batch.deleted_devices:
                ids = [(device_id,) for device_id in batch.deleted_devices]
                db.executemany("DELETE FROM channels WHERE device_id = ?", ids)
                db.executemany("DELETE FROM devices WHERE id = ?", ids)
            if batch.devices:
                db.executemany(_UPSERT_DEVICE, map(_device_values, batch.devices))
            for device_id, channels in batch.catalogs.items():
                db.execute("DELETE FROM channels WHERE device_id = ?", (device_id,))
                db.executemany(_UPSERT_CHANNEL, map(_channel_row, channels))
            if batch.channels:
                db.executemany(_UPSERT_CHANNEL, map(_channel_row, batch.channels))
            if batch.deleted_channels:
                db.executemany("DELETE FROM channels WHERE device_id = ? AND id = ?", batch.deleted_channels)

    async def add_alarm(self, alarm: Alarm) -> int:
        alarm.id = await self._call(self._add_alarm, _alarm_values(alarm))
        return alarm.id

    def _add_alarm(self, values: tuple[Any, ...]) -> int:
        alarm_id = self._writable().execute(_INSERT_ALARM, values).lastrowid
        assert alarm_id is not None  # an INSERT into a rowid table always sets it
        return alarm_id

    async def list_alarms(self, device_id: str | None = None, limit: int = 100) -> list[Alarm]:
        return await self._call(self._list_alarms, device_id, limit)

    def _list_alarms(self, device_id: str | None, limit: int) -> list[Alarm]:
        select = f"SELECT id, {', '.join(_ALARM_COLUMNS)} FROM alarms"
        if device_id is None:
            rows = self._conn().execute(f"{select} ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._conn().execute(
                f"{select} WHERE device_id = ? ORDER BY id DESC LIMIT ?", (device_id, limit)
            )
        return [Alarm(id=row[0], **dict(zip(_ALARM_COLUMNS, row[1:], strict=True))) for row in rows]

    async def add_mobile_position(self, position: MobilePosition) -> None:
        await self._call(self._execute, _INSERT_POSITION, _position_values(position))

    def _execute(self, sql: str, values: tuple[Any, ...]) -> None:
        self._writable().execute(sql, values)

    async def list_mobile_positions(self, device_id: str, limit: int = 100) -> list[MobilePosition]:
        return await self._call(self._list_mobile_positions, device_id, limit)

    def _list_mobile_positions(self, device_id: str, limit: int) -> list[MobilePosition]:
        rows = self._conn().execute(
            f"SELECT {', '.join(_POSITION_COLUMNS)} FROM mobile_positions "
            "WHERE device_id = ? ORDER BY id DESC LIMIT ?",
            (device_id, limit),
        )
        return [MobilePosition(**dict(zip(_POSITION_COLUMNS, row, strict=True))) for row in rows]

    async def enqueue(self, topic: str, dedup_key: str, payload: bytes, now: float) -> bool:
        return await self._call(self._enqueue, topic, dedup_key, payload, now)

    def _enqueue(self, topic: str, dedup_key: str, payload: bytes, now: float) -> bool:
        cursor = self._writable().execute(
            "INSERT INTO outbox (topic, dedup_key, payload, created_at, next_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (topic, dedup_key) DO NOTHING",
            (topic, dedup_key, payload, now, now),
        )
        return cursor.rowcount == 1

    async def due(self, topic: str, now: float, limit: int = 100) -> list[OutboxItem]:
        return await self._call(self._due, topic, now, limit)

    def _due(self, topic: str, now: float, limit: int) -> list[OutboxItem]:
        rows = self._conn().execute(
            "SELECT id, topic, dedup_key, payload, created_at, next_at, attempts FROM outbox "
            "WHERE topic = ? AND acked = 0 AND next_at <= ? ORDER BY id LIMIT ?",
            (topic, now, limit),
        )
        return [
            OutboxItem(id=r[0], topic=r[1], dedup_key=r[2], payload=r[3], created_at=r[4], next_at=r[5],
                       attempts=r[6])
            for r in rows
        ]

    async def ack(self, item_id: int) -> None:
        await self._call(self._execute, "UPDATE outbox SET acked = 1 WHERE id = ?", (item_id,))

    async def retry(self, item_id: int, next_at: float) -> None:
        await self._call(
            self._execute,
            "UPDATE outbox SET next_at = ?, attempts = attempts + 1 WHERE id = ? AND acked = 0",
            (next_at, item_id),
        )

    async def expedite(self, topic: str, now: float) -> None:
        await self._call(
            self._execute,
            "UPDATE outbox SET next_at = ? WHERE topic = ? AND acked = 0 AND next_at > ?",
            (now, topic, now),
        )

    async def prune(self, before: float) -> None:
        await self._call(self._prune, before)

    def _prune(self, before: float) -> None:
        with _transaction(self._writable()) as db:
            db.execute("DELETE FROM alarms WHERE received_at < ?", (before,))
            db.execute("DELETE FROM mobile_positions WHERE received_at < ?", (before,))
            db.execute(_PRUNE_OUTBOX, (before,))

    async def prune_outbox(self, before: float) -> None:
        await self._call(self._execute, _PRUNE_OUTBOX, (before,))

    async def add_transitions(self, transitions: list[Transition]) -> None:
        if transitions:
            await self._call(self._add_transitions, [(t.device_id, t.at, int(t.online), t.reason) for t in transitions])

    def _add_transitions(self, rows: list[tuple[str, float, int, str]]) -> None:
        with _transaction(self._writable()) as db:
            db.executemany("INSERT INTO transitions (device_id, at, online, reason) VALUES (?, ?, ?, ?)", rows)

    async def list_transitions(self, start: float, end: float) -> list[Transition]:
        return await self._call(self._list_transitions, start, end)

    def _list_transitions(self, start: float, end: float) -> list[Transition]:
        rows = self._conn().execute(
            "SELECT device_id, at, online, reason FROM transitions "
            f"WHERE id IN ({_LAST_TRANSITIONS_BEFORE}) OR (at >= ? AND at < ?) ORDER BY at >= ?, at, id",
            (start, start, end, start),
        )
        return [Transition(device_id, at, bool(online), reason) for device_id, at, online, reason in rows]

    async def prune_transitions(self, before: float) -> None:
        await self._call(
            self._execute, f"DELETE FROM transitions WHERE at < ? AND id NOT IN ({_LAST_TRANSITIONS_BEFORE})",
            (before, before),
        )

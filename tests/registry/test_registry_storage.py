"""Storage backends: the contract both must meet, then what SQLite adds (schema, durability, threads)."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Alarm, Channel, Device, MobilePosition
from gbgw.registry.sqlite import _MIGRATIONS, SCHEMA_VERSION, SqliteStorage
from gbgw.registry.storage import MemoryStorage, Storage, StorageBatch, StorageError

NVR = "34020000001180000001"


@pytest.fixture(params=["memory", "sqlite"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    backend: Storage = MemoryStorage() if request.param == "memory" else SqliteStorage(tmp_path / "gw.db")
    await backend.open()
    yield backend
    await backend.close()


def alarm(device_id: str, sn: str, received_at: float) -> Alarm:
    return Alarm(
        device_id=device_id, channel_id=device_id, sn=sn, priority="1", method="2", alarm_type="",
        time="2024-06-01T08:00:00", description="一键报警", longitude=116.4, latitude=None,
        received_at=received_at,
    )


# -- contract: both backends --------------------------------------------------------------------

async def test_batch_upserts_replaces_and_deletes(storage: Storage) -> None:
    a, b = Device(id="A", host="198.51.100.1"), Device(id="B")
    await storage.write(StorageBatch(
        devices=[a, b],
        catalogs={"A": [Channel(id="1", device_id="A"), Channel(id="2", device_id="A")],
                  "B": [Channel(id="1", device_id="B")]},
    ))
    a.host = "198.51.100.2"
    await storage.write(StorageBatch(
        devices=[a],
        channels=[Channel(id="3", device_id="A", name="new")],
        deleted_channels=[("A", "1")],
    ))
    assert {(d.id, d.host) for d in await storage.load_devices()} == {("A", "198.51.100.2"), ("B", "")}
    assert {(c.device_id, c.id) for c in await storage.load_channels()} == {("A", "2"), ("A", "3"), ("B", "1")}
    await storage.save_channels("A", [Channel(id="9", device_id="A")], replace=True)
    await storage.delete_devices(["B"])
    assert [d.id for d in await storage.load_devices()] == ["A"]
    assert {(c.device_id, c.id) for c in await storage.load_channels()} == {("A", "9")}
    await storage.delete_channels("A", ["9"])
    await storage.save_devices([Device(id="C")])
    assert await storage.load_channels() == []
    assert {d.id for d in await storage.load_devices()} == {"A", "C"}


async def test_loaded_devices_are_offline(storage: Storage) -> None:
    await storage.save_devices([Device(id="A", online=True)])
    assert [d.online for d in await storage.load_devices()] == [False]


async def test_alarms_newest_first_with_filter_and_limit(storage: Storage) -> None:
    ids = [await storage.add_alarm(alarm("A" if n % 2 else "B", str(n), float(n))) for n in range(6)]
    assert len(set(ids)) == 6 and ids == sorted(ids)
    assert [a.sn for a in await storage.list_alarms()] == ["5", "4", "3", "2", "1", "0"]
    found = await storage.list_alarms("A", limit=2)
    assert [a.sn for a in found] == ["5", "3"]
    assert found[0].id == ids[5] and found[0].description == "一键报警" and found[0].latitude is None
    await storage.prune(before=3.0)
    assert [a.sn for a in await storage.list_alarms()] == ["5", "4", "3"]


async def test_mobile_positions(storage: Storage) -> None:
    for n in range(3):
        await storage.add_mobile_position(MobilePosition(
            device_id="A", time=f"2024-06-01T08:00:0{n}", longitude=116.0 + n, latitude=39.9,
            speed=None, direction=90.0, altitude=None, received_at=float(n),
        ))
    positions = await storage.list_mobile_positions("A", limit=2)
    assert [p.longitude for p in positions] == [118.0, 117.0]
    assert positions[0].speed is None and positions[0].direction == 90.0
    assert await storage.list_mobile_positions("B") == []
    await storage.prune(before=2.0)
    assert len(await storage.list_mobile_positions("A")) == 1


async def test_outbox_dedup_due_retry_ack(storage: Storage) -> None:
    assert await storage.enqueue("alarm", "A/1", b"one", now=10.0)
    assert not await storage.enqueue("alarm", "A/1", b"one again", now=11.0)
    assert await storage.enqueue("alarm", "A/2", b"two", now=12.0)
    assert await storage.enqueue("other", "A/1", b"same key, other topic", now=10.0)
    assert await storage.due("alarm", now=9.0) == []
    due = await storage.due("alarm", now=20.0)
    assert [(i.dedup_key, i.payload, i.attempts) for i in due] == [("A/1", b"one", 0), ("A/2", b"two", 0)]
    assert [i.dedup_key for i in await storage.due("alarm", now=20.0, limit=1)] == ["A/1"]
    first, second = due
    await storage.retry(first.id, next_at=30.0)
    assert [i.dedup_key for i in await storage.due("alarm", now=20.0)] == ["A/2"]
    later = await storage.due("alarm", now=30.0)
    # Queue order, not due order: the retried message keeps its place ahead of the newer one.
    assert [(i.dedup_key, i.attempts) for i in later] == [("A/1", 1), ("A/2", 0)]
    await storage.ack(second.id)
    await storage.ack(first.id)
    assert await storage.due("alarm", now=100.0) == []
    await storage.retry(first.id, next_at=40.0)  # a late retry must not resurrect it
    assert await storage.due("alarm", now=100.0) == []
    # Acknowledged keys still deduplicate until pruned.
    assert not await storage.enqueue("alarm", "A/1", b"late duplicate", now=50.0)
    await storage.prune(before=11.0)
    assert await storage.enqueue("alarm", "A/1", b"new episode", now=60.0)
    assert not await storage.enqueue("alarm", "A/2", b"still remembered", now=60.0)
    assert [i.dedup_key for i in await storage.due("other", now=100.0)] == ["A/1"]


async def test_outbox_expedite_and_prune_outbox(storage: Storage) -> None:
    await storage.enqueue("alarm", "A/1", b"one", now=10.0)
    await storage.enqueue("alarm", "A/2", b"two", now=11.0)
    await storage.enqueue("other", "B/1", b"elsewhere", now=10.0)
    first, second = await storage.due("alarm", now=20.0)
    await storage.retry(first.id, next_at=500.0)
    await storage.retry(second.id, next_at=900.0)
    (other,) = await storage.due("other", now=20.0)
    await storage.retry(other.id, next_at=700.0)
    assert await storage.due("alarm", now=30.0) == []
    await storage.expedite("alarm", now=30.0)
    assert [(i.dedup_key, i.next_at, i.attempts) for i in await storage.due("alarm", now=30.0)] == [
        ("A/1", 30.0, 1), ("A/2", 30.0, 1),
    ]
    # Only the named topic moves, and nothing is put later than it was.
    assert await storage.due("other", now=30.0) == []
    await storage.expedite("other", now=800.0)
    assert [i.next_at for i in await storage.due("other", now=800.0)] == [700.0]
    # prune_outbox forgets acknowledged messages only, and leaves the alarm history alone.
    await storage.add_alarm(alarm("A", "1", received_at=5.0))
    await storage.ack(first.id)
    await storage.prune_outbox(before=100.0)
    assert await storage.enqueue("alarm", "A/1", b"new episode", now=40.0)
    assert not await storage.enqueue("alarm", "A/2", b"still queued", now=40.0)
    assert [a.sn for a in await storage.list_alarms()] == ["1"]


# -- SQLite specifics ------------------------------------------------------------------------------

async def test_outbox_survives_the_migration_to_queue_order(tmp_path: Path) -> None:
    """A database made by the first schema keeps its queued messages and serves them in queue order."""
    path = tmp_path / "gw.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in _MIGRATIONS[0]:
        db.execute(statement)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version (version) VALUES (1)")
    db.executemany(
        "INSERT INTO outbox (topic, dedup_key, payload, created_at, next_at) VALUES ('alarm', ?, ?, ?, ?)",
        [("A/1", b"one", 10.0, 25.0), ("A/2", b"two", 11.0, 11.0)],
    )
    db.close()
    storage = SqliteStorage(path)
    await storage.open()
    try:
        assert [i.payload for i in await storage.due("alarm", now=30.0)] == [b"one", b"two"]
    finally:
        await storage.close()
    db = sqlite3.connect(path)
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert db.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    db.close()
    assert "outbox_pending" in indexes and "outbox_due" not in indexes


async def test_schema_created_in_wal_mode_and_not_remigrated(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    storage = SqliteStorage(path)
    await storage.open()
    await storage.save_devices([Device(id="A")])
    await storage.close()
    await storage.close()  # idempotent
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    db.close()
    again = SqliteStorage(path)
    await again.open()
    assert [d.id for d in await again.load_devices()] == ["A"]
    await again.close()


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    storage = SqliteStorage(path)
    await storage.open()
    await storage.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="newer"):
        await SqliteStorage(path).open()


async def test_calls_on_a_closed_storage_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not open"):
        await SqliteStorage(tmp_path / "gw.db").load_devices()


async def test_failed_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "gw.db")
    await storage.open()
    await storage.save_devices([Device(id="A")])
    # Deleting A runs first; the overflowing port then fails the batch, which must undo the delete.
    bad = StorageBatch(deleted_devices=["A"], devices=[Device(id="B", port=2**70)])
    with pytest.raises(OverflowError):
        await storage.write(bad)
    assert [d.id for d in await storage.load_devices()] == ["A"]
    await storage.save_devices([Device(id="C")])  # the connection is still usable
    assert {d.id for d in await storage.load_devices()} == {"A", "C"}
    await storage.close()


async def test_all_calls_run_on_one_worker_thread_off_the_loop(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "gw.db")
    await storage.open()
    threads: set[int] = set()

    def record() -> int:
        threads.add(threading.get_ident())
        return 0

    await asyncio.gather(*(storage._call(record) for _ in range(20)))
    assert len(threads) == 1 and threading.get_ident() not in threads
    # The loop keeps running while a large write is in progress.
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await storage.save_devices([Device(id=f"{n:020d}") for n in range(50_000)])
    task.cancel()
    assert ticks > 1
    await storage.close()


devices = st.builds(
    Device,
    id=st.text(min_size=1, max_size=24),
    name=st.text(max_size=20),
    manufacturer=st.text(max_size=10),
    transport=st.sampled_from(["UDP", "TCP"]),
    host=st.text(max_size=15),
    port=st.integers(0, 65535),
    username=st.none() | st.text(max_size=10),
    registered_at=st.floats(allow_nan=False),
    expires_at=st.floats(allow_nan=False),
    last_keepalive=st.floats(allow_nan=False),
    channel_count=st.integers(0, 10_000),
    catalog_partial=st.booleans(),
    stream_transport=st.none() | st.sampled_from(["UDP", "TCP-ACTIVE", "TCP-PASSIVE"]),
    keepalive_interval=st.none() | st.floats(min_value=1, max_value=3600),
    charset=st.none() | st.sampled_from(["GB2312", "GBK", "UTF-8"]),
)
channels = st.builds(
    Channel,
    id=st.text(min_size=1, max_size=24),
    device_id=st.just(NVR),
    name=st.text(max_size=20),
    civil_code=st.text(max_size=8),
    status=st.sampled_from(["ON", "OFF"]),
    longitude=st.none() | st.floats(allow_nan=False),
    latitude=st.none() | st.floats(allow_nan=False),
    ptz_type=st.none() | st.integers(0, 4),
    parental=st.booleans(),
    raw=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(device=devices, catalog=st.lists(channels, max_size=5, unique_by=lambda c: c.id))
def test_sqlite_round_trip(device: Device, catalog: list[Channel]) -> None:
    async def round_trip(path: Path) -> tuple[list[Device], list[Channel]]:
        storage = SqliteStorage(path)
        await storage.open()
        await storage.write(StorageBatch(devices=[device], catalogs={NVR: catalog}))
        await storage.close()
        reopened = SqliteStorage(path)
        await reopened.open()
        try:
            return await reopened.load_devices(), await reopened.load_channels()
        finally:
            await reopened.close()

    with tempfile.TemporaryDirectory() as tmp:
        loaded_devices, loaded_channels = asyncio.run(round_trip(Path(tmp) / "gw.db"))
    assert loaded_devices == [device]
    assert sorted(loaded_channels, key=lambda c: c.id) == sorted(catalog, key=lambda c: c.id)


async def test_restart_restores_registry_from_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    cam, short, gone, late = "34020000001320000001", "34020000001320000002", "34020000001320000003", "34020000001320000004"
    storage = SqliteStorage(path)
    await storage.open()
    before = DeviceRegistry(storage)
    for device_id, expires in [(NVR, 3600.0), (cam, 3600.0), (short, 60.0), (gone, 3600.0)]:
        before.register(device_id, transport="TCP", host="203.0.113.9", port=15060, expires=expires, now=1000.0)
    before.update(NVR, name="南门NVR", manufacturer="Dahua", keepalive_interval=30.0)
    before.replace_channels(NVR, [
        Channel(id="34020000001310000001", device_id=NVR, name="南门", raw={"Certifiable": "0"}),
        Channel(id="34020000001310000002", device_id=NVR, name="北门"),
    ], partial=False)
    before.apply_channel_event(NVR, "OFF", Channel(id="34020000001310000002", device_id=NVR))
    before.unregister(gone, now=1010.0)
    before.touch(NVR, 1020.0)
    await before.flush()
    before.register(late, transport="UDP", host="203.0.113.9", port=5060, expires=3600.0, now=1030.0)
    await storage.close()  # no flush: `late` was never written

    storage = SqliteStorage(path)
    await storage.open()
    after = DeviceRegistry(storage)
    await after.load()
    assert {d.id for d in after.devices()} == {NVR, cam, short, gone}
    assert after.online_devices() == [] and after.online_count == 0
    nvr = after.get(NVR)
    assert nvr is not None
    assert (nvr.name, nvr.manufacturer, nvr.transport, nvr.host, nvr.port) == ("南门NVR", "Dahua", "TCP", "203.0.113.9", 15060)
    assert (nvr.expires_at, nvr.keepalive_interval, nvr.channel_count) == (4600.0, 30.0, 2)
    assert {c.id: (c.name, c.status) for c in after.channels(NVR)} == {
        "34020000001310000001": ("南门", "ON"), "34020000001310000002": ("北门", "OFF"),
    }
    assert after.channel("34020000001310000001").raw == {"Certifiable": "0"}  # type: ignore[union-attr]
    now = 1100.0
    assert after.is_registered(NVR, now) and after.is_registered(cam, now)
    assert not after.is_registered(short, now) and not after.is_registered(gone, now)
    # A keepalive brings a still-registered device back without a new REGISTER.
    assert after.touch(NVR, now) and after.get(NVR).online  # type: ignore[union-attr]
    assert not after.touch(short, now) and not after.touch(late, now)
    await storage.close()

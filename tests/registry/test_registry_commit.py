"""Group commit on a real SQLite file: `committed()` returns only once the change is in the database.

Every check of "it is there" reads the file from a second sqlite3 connection, as a restarted gateway
would, right after the waiter returns and before the event loop runs anything else.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Channel
from gbgw.registry.sqlite import SqliteStorage, Synchronous
from gbgw.registry.storage import MemoryStorage, StorageBatch

DEV = "34020000001320000001"
NVR = "34020000001180000001"
CHANNEL = "34020000001310000001"


class CountingStorage(SqliteStorage):
    """SqliteStorage that counts its transactions, can hold them at a gate, and can be told to fail."""

    def __init__(self, path: Path, synchronous: Synchronous = Synchronous.NORMAL) -> None:
        super().__init__(path, synchronous)
        self.transactions: list[int] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def write(self, batch: StorageBatch) -> None:
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        await super().write(batch)
        self.transactions.append(len(batch))


def stored_devices(path: Path) -> dict[str, float]:
    """Device id -> expires_at as another process would read them now."""
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT id, expires_at FROM devices").fetchall())
    finally:
        db.close()


def stored_channels(path: Path) -> dict[tuple[str, str], str]:
    db = sqlite3.connect(path)
    try:
        return {(d, c): s for d, c, s in db.execute("SELECT device_id, id, status FROM channels")}
    finally:
        db.close()


def register(registry: DeviceRegistry, device_id: str, now: float = 1000.0, expires: float = 3600.0) -> None:
    registry.register(device_id, transport="UDP", host="192.0.2.7", port=5060, expires=expires, now=now)


def device_id(n: int) -> str:
    return f"3402000000132{n:07d}"


class Committing:
    """A registry on a CountingStorage with its committer running."""

    def __init__(self, path: Path, storage: CountingStorage, registry: DeviceRegistry) -> None:
        self.path = path
        self.storage = storage
        self.registry = registry


@pytest.fixture
async def committing(tmp_path: Path) -> AsyncIterator[Committing]:
    path = tmp_path / "gw.db"
    storage = CountingStorage(path)
    await storage.open()
    registry = DeviceRegistry(storage)
    task = asyncio.create_task(registry.run_committer(window=0.003, retry_after=0.01))
    try:
        yield Committing(path, storage, registry)
    finally:
        storage.gate.set()
        storage.fail = None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await storage.close()


async def test_waiter_returns_only_once_the_row_is_in_the_database(committing: Committing) -> None:
    c = committing
    c.storage.gate.clear()  # the transaction cannot reach the file until the gate opens
    register(c.registry, DEV, now=1000.0, expires=3600.0)
    waiter = asyncio.create_task(c.registry.committed())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    assert stored_devices(c.path) == {}
    c.storage.gate.set()
    await waiter
    assert stored_devices(c.path) == {DEV: 4600.0}


async def test_each_waiter_sees_its_own_change_stored(committing: Committing) -> None:
    c = committing

    async def register_and_wait(n: int) -> dict[str, float]:
        register(c.registry, device_id(n), expires=float(60 + n))
        await c.registry.committed()
        return stored_devices(c.path)

    seen = await asyncio.gather(*(register_and_wait(n) for n in range(20)))
    for n, stored in enumerate(seen):
        assert stored[device_id(n)] == 1000.0 + 60 + n


async def test_changes_within_one_window_share_one_transaction(committing: Committing) -> None:
    c = committing
    for n in range(500):
        register(c.registry, device_id(n))
    waiters = [asyncio.create_task(c.registry.committed()) for _ in range(500)]
    await asyncio.gather(*waiters)
    assert c.storage.transactions == [500]
    assert len(stored_devices(c.path)) == 500

    # Changes made while that window is still open join it; a later one gets a transaction of its own.
    register(c.registry, DEV)
    first = asyncio.create_task(c.registry.committed())
    await asyncio.sleep(0)
    register(c.registry, NVR)
    await asyncio.gather(first, c.registry.committed())
    assert c.storage.transactions == [500, 2]
    register(c.registry, DEV, now=2000.0)
    await c.registry.committed()
    assert c.storage.transactions == [500, 2, 1]
    assert c.registry.commit_counters.commits == 3 and c.registry.commit_counters.records == 503


async def test_a_change_during_a_write_waits_for_the_next_transaction(committing: Committing) -> None:
    c = committing
    c.storage.gate.clear()
    register(c.registry, DEV)
    first = asyncio.create_task(c.registry.committed())
    await asyncio.sleep(0.02)  # the window has passed: DEV's transaction is held at the gate
    assert c.registry.commit_counters.commits == 0 and not first.done()
    # Nothing new is pending, but DEV's write is not finished: this waiter must wait for it too.
    in_flight = asyncio.create_task(c.registry.committed())
    register(c.registry, NVR)
    second = asyncio.create_task(c.registry.committed())
    await asyncio.sleep(0.02)
    assert not (first.done() or in_flight.done() or second.done())
    c.storage.gate.set()
    await asyncio.gather(first, in_flight)
    assert DEV in stored_devices(c.path)
    await second
    assert set(stored_devices(c.path)) == {DEV, NVR}
    assert c.storage.transactions == [1, 1]


async def test_nothing_pending_returns_at_once(committing: Committing) -> None:
    c = committing
    await asyncio.wait_for(c.registry.committed(), 0.001)
    assert c.storage.transactions == []


async def test_channels_are_committed_before_the_waiter_returns(committing: Committing) -> None:
    c = committing
    register(c.registry, NVR)
    c.registry.replace_channels(NVR, [Channel(id=CHANNEL, device_id=NVR)], partial=False)
    await c.registry.committed()
    assert stored_channels(c.path) == {(NVR, CHANNEL): "ON"}
    c.registry.apply_channel_event(NVR, "OFF", Channel(id=CHANNEL, device_id=NVR))
    await c.registry.committed()
    assert stored_channels(c.path) == {(NVR, CHANNEL): "OFF"}
    c.registry.apply_channel_event(NVR, "DEL", Channel(id=CHANNEL, device_id=NVR))
    await c.registry.committed()
    assert stored_channels(c.path) == {}


async def test_a_failed_commit_reaches_every_waiter_and_is_retried(
    committing: Committing, caplog: pytest.LogCaptureFixture
) -> None:
    c = committing
    c.storage.fail = OSError("disk full")
    register(c.registry, DEV)
    register(c.registry, NVR)
    with caplog.at_level(logging.ERROR, logger="gbgw.registry.devices"):
        results = await asyncio.gather(c.registry.committed(), c.registry.committed(), return_exceptions=True)
    assert [type(r) for r in results] == [OSError, OSError] and str(results[0]) == "disk full"
    assert c.registry.commit_counters.failures >= 1
    assert any("registry commit failed" in r.getMessage() for r in caplog.records)
    assert stored_devices(c.path) == {}
    # The changes stay pending: once the disk is back the committer writes them by itself.
    c.storage.fail = None
    for _ in range(200):
        if set(stored_devices(c.path)) == {DEV, NVR}:
            break
        await asyncio.sleep(0.005)
    assert set(stored_devices(c.path)) == {DEV, NVR}
    await c.registry.committed()


async def test_a_cancelled_waiter_does_not_cancel_the_others(committing: Committing) -> None:
    c = committing
    c.storage.gate.clear()
    register(c.registry, DEV)
    impatient = asyncio.create_task(c.registry.committed())
    patient = asyncio.create_task(c.registry.committed())
    await asyncio.sleep(0.01)
    impatient.cancel()
    c.storage.gate.set()
    await patient
    assert impatient.cancelled()
    assert DEV in stored_devices(c.path)


async def test_without_a_committer_the_call_commits_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    storage = CountingStorage(path, Synchronous.FULL)
    await storage.open()
    try:
        registry = DeviceRegistry(storage)
        register(registry, DEV)
        await registry.committed()
        assert stored_devices(path) == {DEV: 4600.0}
        assert storage.transactions == [1]
    finally:
        await storage.close()


async def test_memory_storage_resolves_at_once() -> None:
    storage = MemoryStorage()
    registry = DeviceRegistry(storage)
    task = asyncio.create_task(registry.run_committer(window=60.0))
    try:
        register(registry, DEV)
        await asyncio.wait_for(registry.committed(), 0.01)
        assert await storage.load_devices() == []  # nothing to wait for: it is written behind
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [d.id for d in await storage.load_devices()] == [DEV]


async def test_shutdown_commits_what_is_pending_and_settles_waiters(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    storage = CountingStorage(path)
    await storage.open()
    try:
        registry = DeviceRegistry(storage)
        task = asyncio.create_task(registry.run_committer(window=60.0))
        await asyncio.sleep(0)
        register(registry, DEV)
        waiter = asyncio.create_task(registry.committed())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await waiter
        assert DEV in stored_devices(path)
    finally:
        await storage.close()

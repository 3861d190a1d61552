"""Registry benchmark: bytes per device, keepalives per second, expiry and SQLite flush/load at scale.

Run: python3 tests/bench/bench_registry.py [devices]   (default 100,000)
Targets: <= 2 KB RSS per registered device; >= 20,000 keepalives/s on one core.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import run_loop

from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Channel
from gbgw.registry.sqlite import SqliteStorage
from gbgw.registry.storage import MemoryStorage, StorageBatch

EPOCH = 1_700_000_000.0


class DiscardingStorage(MemoryStorage):
    """Keeps nothing, so only the registry's own memory is measured."""

    async def write(self, batch: StorageBatch) -> None:
        pass


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def populate(registry: DeviceRegistry, count: int) -> list[str]:
    """Devices as they look after REGISTER and DeviceInfo: realistic field sizes, one vendor."""
    ids = []
    for n in range(count):
        device_id = f"4403050001132{n:07d}"
        registry.register(device_id, transport="UDP", host=f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}",
                          port=5060 + n % 1000, expires=3600.0, now=EPOCH)
        registry.update(device_id, name=f"IPC {n}", manufacturer="Hikvision", model="DS-2CD3T46",
                        firmware="V5.7.3")
        ids.append(device_id)
    return ids


def measure_memory(count: int) -> None:
    gc.collect()
    rss_before = rss_bytes()
    registry = DeviceRegistry(DiscardingStorage())
    ids = populate(registry, count)
    asyncio.run(registry.flush())
    gc.collect()
    rss = (rss_bytes() - rss_before) / count
    del registry, ids
    gc.collect()

    tracemalloc.start()
    baseline = tracemalloc.get_traced_memory()[0]
    registry = DeviceRegistry(DiscardingStorage())
    populate(registry, count)
    asyncio.run(registry.flush())
    traced = (tracemalloc.get_traced_memory()[0] - baseline) / count
    tracemalloc.stop()
    print(f"memory: {rss:,.0f} bytes/device RSS growth, {traced:,.0f} bytes/device traced ({count:,} devices)")


def measure_keepalive(count: int) -> None:
    registry = DeviceRegistry(DiscardingStorage(), keepalive_interval=60.0)
    ids = populate(registry, count)
    asyncio.run(registry.flush())
    rounds = 10
    now = EPOCH + 1.0  # same persist window: nothing becomes dirty
    started = time.perf_counter()
    for _ in range(rounds):
        for device_id in ids:
            registry.touch(device_id, now)
        now += 0.001
    quiet = rounds * count / (time.perf_counter() - started)

    now = EPOCH + 120.0  # crosses a persist window boundary (every 300 s): every device becomes dirty
    started = time.perf_counter()
    for device_id in ids:
        registry.touch(device_id, now)
    dirtying = count / (time.perf_counter() - started)
    print(f"touch: {quiet:,.0f}/s (steady), {dirtying:,.0f}/s (each marking dirty)")

    # Registration deadlines were EPOCH+180; the keepalives moved them to EPOCH+300 without
    # touching the heap, so this pass re-pushes every entry (normally spread over time).
    started = time.perf_counter()
    repushed = registry.expire(EPOCH + 181.0)
    lazy = time.perf_counter() - started
    started = time.perf_counter()
    idle = registry.expire(EPOCH + 182.0)
    quiet_expire = time.perf_counter() - started
    started = time.perf_counter()
    expired = registry.expire(EPOCH + 300.0)
    bulk = time.perf_counter() - started
    assert repushed == [] and idle == [] and len(expired) == count
    print(f"expire: {lazy * 1e3:.0f} ms re-pushing {count:,} moved deadlines, {quiet_expire * 1e6:.1f} us "
          f"with nothing due, {bulk * 1e3:.0f} ms taking {count:,} devices offline")


async def measure_sqlite(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        storage = SqliteStorage(path)
        await storage.open()
        registry = DeviceRegistry(storage)
        ids = populate(registry, count)
        for device_id in ids[: count // 10]:
            registry.replace_channels(device_id, [
                Channel(id=f"{device_id[:10]}131{device_id[13:]}{k}", device_id=device_id, name=f"ch{k}")
                for k in range(4)
            ], partial=False)
        started = time.perf_counter()
        written = await registry.flush()
        flush = time.perf_counter() - started
        await storage.close()

        storage = SqliteStorage(path)
        await storage.open()
        restored = DeviceRegistry(storage)
        started = time.perf_counter()
        await restored.load()
        load = time.perf_counter() - started
        await storage.close()
        size = path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob("bench.db-*"))
        print(f"sqlite: flush {written:,} records in {flush:.2f} s, load {len(restored):,} devices "
              f"in {load:.2f} s, {size / count:,.0f} bytes/device on disk")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    measure_memory(count)
    measure_keepalive(count)
    run_loop(measure_sqlite(count))


if __name__ == "__main__":
    main()

"""Memory per device and keepalive throughput at 100,000 devices: printed for the record, not asserted
(figures depend on the machine; tests/bench/bench_registry.py measures them more thoroughly)."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.storage import MemoryStorage, StorageBatch

DEVICES = 100_000


class DiscardingStorage(MemoryStorage):
    """Keeps nothing, so only the registry's own memory is measured."""

    async def write(self, batch: StorageBatch) -> None:
        pass


async def test_memory_and_touch_throughput_at_100k_devices(capsys: pytest.CaptureFixture[str]) -> None:
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        registry = DeviceRegistry(DiscardingStorage())
        for n in range(DEVICES):
            device_id = f"4403050001132{n:07d}"
            registry.register(device_id, transport="UDP", host=f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}",
                              port=5060 + n % 1000, expires=3600.0, now=1_700_000_000.0)
            registry.update(device_id, name=f"IPC {n}", manufacturer="Hikvision", model="DS-2CD3T46",
                            firmware="V5.7.3")
        await registry.flush()
        per_device = (tracemalloc.get_traced_memory()[0] - baseline) / DEVICES
    finally:
        tracemalloc.stop()
    assert len(registry) == DEVICES and registry.online_count == DEVICES

    ids = [d.id for d in registry.devices()]
    now = 1_700_000_060.0
    started = time.perf_counter()
    for device_id in ids:
        registry.touch(device_id, now)
    touches_per_second = DEVICES / (time.perf_counter() - started)
    assert all(d.last_keepalive == now for d in registry.devices())

    with capsys.disabled():
        print(f"\nregistry: {per_device:.0f} bytes/device (tracemalloc, {DEVICES} devices), "
              f"{touches_per_second:,.0f} touches/s")

"""The registry keeps one copy of the strings thousands of channels repeat, live and after a restart."""

from __future__ import annotations

from pathlib import Path

from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Channel
from gbgw.registry.sqlite import SqliteStorage

NVRS = ["34020000001180000001", "34020000001180000002"]


def _fresh(text: str) -> str:
    """An equal string that is a different object (as each parsed catalog item gives)."""
    return "".join(list(text))


def _channels(device_id: str) -> list[Channel]:
    return [
        Channel(
            id=f"{device_id[:10]}131{n:07d}",
            device_id=_fresh(device_id),
            name=f"ch{n}",
            parent_id=_fresh(device_id),
            manufacturer=_fresh("Hikvision"),
            civil_code=_fresh("340200"),
            raw={_fresh("Secrecy"): _fresh("0")},
        )
        for n in range(3)
    ]


def _assert_shared(registry: DeviceRegistry) -> None:
    all_channels = [c for d in NVRS for c in registry.channels(d)]
    assert len(all_channels) == 6
    first = all_channels[0]
    for channel in all_channels:
        device = registry.get(channel.device_id)
        assert device is not None
        assert channel.device_id is device.id
        assert channel.parent_id is device.id
        assert channel.manufacturer is first.manufacturer
        assert channel.civil_code is first.civil_code
        (key,) = channel.raw
        assert key is next(iter(first.raw))


async def test_repeated_channel_values_are_one_object_live_and_after_restart(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "r.db")
    await storage.open()
    registry = DeviceRegistry(storage)
    for device_id in NVRS:
        registry.register(device_id, transport="UDP", host="127.0.0.1", port=5060, expires=3600, now=0)
        registry.replace_channels(device_id, _channels(device_id), partial=False)
    _assert_shared(registry)
    await registry.flush()
    await storage.close()

    storage = SqliteStorage(tmp_path / "r.db")
    await storage.open()
    restarted = DeviceRegistry(storage)
    await restarted.load()
    _assert_shared(restarted)
    await storage.close()

"""DeviceRegistry: registration, keepalive liveness, expiry, channels and group commit, with fake time."""

from __future__ import annotations

import asyncio
import random

import pytest

from gbgw.registry.devices import DeviceRegistry, StatusReason
from gbgw.registry.model import Channel, Device
from gbgw.registry.storage import MemoryStorage, StorageBatch

DEV = "34020000001320000001"
NVR = "34020000001180000001"


class RecordingStorage(MemoryStorage):
    """MemoryStorage that remembers every batch and can be told to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[StorageBatch] = []
        self.fail = False

    async def write(self, batch: StorageBatch) -> None:
        if self.fail:
            raise OSError("disk full")
        self.batches.append(batch)
        await super().write(batch)


def make_registry(**kwargs: float) -> tuple[DeviceRegistry, RecordingStorage, list[tuple[str, bool, StatusReason]]]:
    storage = RecordingStorage()
    registry = DeviceRegistry(storage, **kwargs)  # type: ignore[arg-type]
    events: list[tuple[str, bool, StatusReason]] = []
    registry.add_status_listener(lambda d, online, reason: events.append((d.id, online, reason)))
    return registry, storage, events


def register(registry: DeviceRegistry, device_id: str, now: float, expires: float = 3600.0) -> Device:
    return registry.register(device_id, transport="UDP", host="192.0.2.7", port=5060, expires=expires, now=now)


def chan(channel_id: str, device_id: str = NVR, **kw: object) -> Channel:
    return Channel(id=channel_id, device_id=device_id, **kw)  # type: ignore[arg-type]


# -- registration and keepalive ----------------------------------------------------------------

def test_register_brings_device_online_once() -> None:
    registry, _, events = make_registry()
    device = register(registry, DEV, now=1000.0)
    assert device.online and registry.online_count == 1
    assert device.expires_at == 4600.0 and device.host == "192.0.2.7"
    register(registry, DEV, now=2000.0)  # refresh: no second transition
    assert events == [(DEV, True, StatusReason.REGISTERED)]
    assert registry.is_registered(DEV, 5599.0) and not registry.is_registered(DEV, 5600.0)


def test_register_rejects_zero_expiry_and_unknown_transport() -> None:
    registry, _, _ = make_registry()
    with pytest.raises(ValueError):
        registry.register(DEV, transport="UDP", host="h", port=1, expires=0, now=0.0)
    with pytest.raises(ValueError):
        registry.register(DEV, transport="SCTP", host="h", port=1, expires=60, now=0.0)
    assert DEV not in registry


def test_touch_requires_a_valid_registration() -> None:
    registry, _, _ = make_registry()
    assert not registry.touch(DEV, 10.0)
    register(registry, DEV, now=0.0, expires=100.0)
    assert registry.touch(DEV, 99.0)
    assert registry.get(DEV).last_keepalive == 99.0  # type: ignore[union-attr]
    assert not registry.touch(DEV, 100.0)


def test_keepalive_timeout_after_missed_intervals_and_recovery() -> None:
    registry, _, events = make_registry(keepalive_interval=60.0, keepalive_misses=3)
    register(registry, DEV, now=0.0)
    registry.touch(DEV, 50.0)
    assert registry.expire(229.9) == []
    expired = registry.expire(230.0)
    assert [d.id for d in expired] == [DEV]
    assert not expired[0].online and registry.online_count == 0
    assert registry.is_registered(DEV, 230.0)
    assert registry.touch(DEV, 240.0)  # still registered: back online without a REGISTER
    assert registry.get(DEV).online  # type: ignore[union-attr]
    assert events == [
        (DEV, True, StatusReason.REGISTERED),
        (DEV, False, StatusReason.KEEPALIVE_TIMEOUT),
        (DEV, True, StatusReason.KEEPALIVE),
    ]
    assert registry.expire(419.9) == []
    assert [d.id for d in registry.expire(420.0)] == [DEV]


def test_registration_expiry_when_it_comes_first() -> None:
    registry, _, events = make_registry(keepalive_interval=60.0, keepalive_misses=3)
    register(registry, DEV, now=0.0, expires=100.0)
    registry.touch(DEV, 60.0)
    assert registry.expire(99.9) == []
    assert [d.id for d in registry.expire(100.0)] == [DEV]
    assert events[-1] == (DEV, False, StatusReason.REGISTRATION_EXPIRED)
    assert not registry.touch(DEV, 101.0)


def test_without_keepalive_the_registration_time_counts_as_sign_of_life() -> None:
    registry, _, _ = make_registry(keepalive_interval=60.0, keepalive_misses=3)
    register(registry, DEV, now=0.0)
    register(registry, DEV, now=500.0)  # refreshes count too
    assert registry.expire(679.0) == []
    assert len(registry.expire(680.0)) == 1


def test_per_device_keepalive_interval_both_directions() -> None:
    registry, _, _ = make_registry(keepalive_interval=60.0, keepalive_misses=3)
    register(registry, DEV, now=0.0)
    register(registry, NVR, now=0.0)
    registry.update(DEV, keepalive_interval=10.0)  # earlier than the scheduled 180
    registry.update(NVR, keepalive_interval=100.0)  # later: found lazily
    assert [d.id for d in registry.expire(30.0)] == [DEV]
    assert registry.expire(299.0) == []
    assert [d.id for d in registry.expire(300.0)] == [NVR]


def test_refresh_with_shorter_expiry_moves_deadline_earlier() -> None:
    registry, _, events = make_registry()
    register(registry, DEV, now=0.0, expires=3600.0)
    register(registry, DEV, now=10.0, expires=20.0)
    assert [d.id for d in registry.expire(30.0)] == [DEV]
    assert events[-1] == (DEV, False, StatusReason.REGISTRATION_EXPIRED)


def test_unregister_keeps_device_but_ends_registration() -> None:
    registry, _, events = make_registry()
    register(registry, DEV, now=0.0)
    registry.replace_channels(DEV, [chan("34020000001310000001", DEV)], partial=False)
    registry.unregister(DEV, now=5.0)
    assert events[-1] == (DEV, False, StatusReason.UNREGISTERED)
    assert not registry.is_registered(DEV, 5.0) and not registry.touch(DEV, 6.0)
    assert DEV in registry and len(registry.channels(DEV)) == 1
    assert registry.expire(10_000.0) == []  # no second offline transition
    assert registry.unregister("unknown", 5.0) is None


def test_remove_forgets_device_and_channels() -> None:
    registry, _, events = make_registry()
    register(registry, DEV, now=0.0)
    registry.replace_channels(DEV, [chan("34020000001310000001", DEV)], partial=False)
    registry.remove(DEV)
    assert DEV not in registry and registry.channel("34020000001310000001") is None
    assert events[-1] == (DEV, False, StatusReason.REMOVED)
    assert registry.expire(10_000.0) == [] and registry.online_count == 0


def test_update_sets_descriptive_fields_and_refuses_liveness_fields() -> None:
    registry, _, _ = make_registry()
    register(registry, DEV, now=0.0)
    device = registry.update(DEV, name="东门入口", manufacturer="Hikvision", stream_transport="TCP-PASSIVE")
    assert (device.name, device.manufacturer, device.stream_transport) == ("东门入口", "Hikvision", "TCP-PASSIVE")
    with pytest.raises(TypeError):
        registry.update(DEV, name="x", online=False)
    with pytest.raises(TypeError):
        registry.update(DEV, expires_at=0.0)
    with pytest.raises(ValueError):
        registry.update(DEV, transport="SCTP")
    assert registry.get(DEV).name == "东门入口"  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        registry.update("unknown", name="x")


def test_faulty_listener_does_not_break_expiry(caplog: pytest.LogCaptureFixture) -> None:
    registry, _, events = make_registry()

    def broken(device: Device, online: bool, reason: StatusReason) -> None:
        raise RuntimeError("listener bug")

    registry.add_status_listener(broken)
    for n in range(3):
        register(registry, f"3402000000132000000{n}", now=0.0, expires=10.0)
    assert len(registry.expire(10.0)) == 3
    assert registry.online_count == 0
    assert sum(1 for _, online, _ in events if not online) == 3
    assert "listener failed" in caplog.text
    registry.remove_status_listener(broken)


def test_expiry_matches_independent_model_over_random_timeline() -> None:
    """A reference model (deadline = min(expiry, last sign of life + interval x misses)) is
    stepped alongside the registry; both must agree on who goes offline and when."""
    interval, misses = 60.0, 3
    rng = random.Random(20240601)
    registry, _, _ = make_registry(keepalive_interval=interval, keepalive_misses=misses)
    ids = [f"3402000000132{n:07d}" for n in range(3000)]
    model: dict[str, dict[str, float | bool]] = {}

    def deadline(m: dict[str, float | bool]) -> float:
        return min(float(m["expires"]), max(float(m["keepalive"]), float(m["registered"])) + interval * misses)

    now = 0.0
    while now < 3000.0:
        for device_id in rng.sample(ids, 150):
            expires = rng.choice([30.0, 120.0, 600.0, 3600.0])
            register(registry, device_id, now=now, expires=expires)
            model[device_id] = {"registered": now, "expires": now + expires, "keepalive": 0.0, "online": True}
        for device_id in rng.sample(ids, 600):
            m = model.get(device_id)
            accepted = registry.touch(device_id, now)
            assert accepted == (m is not None and now < float(m["expires"]))
            if m is not None and accepted:
                m["keepalive"], m["online"] = now, True
        for device_id in rng.sample(ids, 5):
            registry.unregister(device_id, now)
            if device_id in model:
                m = model[device_id]
                m["expires"], m["online"] = min(float(m["expires"]), now), False
        now += rng.choice([1.0, 7.5, 20.0, 45.0])
        due = {i for i, m in model.items() if m["online"] and deadline(m) <= now}
        expired = registry.expire(now)
        assert {d.id for d in expired} == due
        assert [deadline(model[d.id]) for d in expired] == sorted(deadline(model[d.id]) for d in expired)
        for device_id in due:
            model[device_id]["online"] = False
        assert registry.online_count == sum(1 for m in model.values() if m["online"])
        next_deadline = registry.next_deadline()
        if registry.online_count:
            assert next_deadline is not None
            assert next_deadline <= min(deadline(m) for m in model.values() if m["online"])


def test_keepalives_do_not_grow_the_deadline_heap() -> None:
    registry, _, _ = make_registry(keepalive_interval=60.0, keepalive_misses=3)
    ids = [f"3402000000132{n:07d}" for n in range(2000)]
    for device_id in ids:
        register(registry, device_id, now=0.0)
    for minute in range(1, 60):
        for device_id in ids:
            registry.touch(device_id, minute * 60.0)
        assert registry.expire(minute * 60.0 + 1) == []
    assert len(registry._heap) <= len(ids)
    assert registry.online_count == len(ids)


# -- channels -------------------------------------------------------------------------------------

def test_replace_channels_complete_and_partial() -> None:
    registry, _, _ = make_registry()
    register(registry, NVR, now=0.0)
    a, b, c = "34020000001310000001", "34020000001310000002", "34020000001310000003"
    registry.replace_channels(NVR, [chan(a), chan(b)], partial=False)
    assert {ch.id for ch in registry.channels(NVR)} == {a, b}
    assert registry.get(NVR).channel_count == 2  # type: ignore[union-attr]
    # Partial: c arrived, b's message was lost: keep b rather than hide a camera.
    registry.replace_channels(NVR, [chan(c, name="new")], partial=True)
    assert {ch.id for ch in registry.channels(NVR)} == {a, b, c}
    assert registry.get(NVR).catalog_partial  # type: ignore[union-attr]
    # Complete: exactly what the device said.
    registry.replace_channels(NVR, [chan(c)], partial=False)
    assert [ch.id for ch in registry.channels(NVR)] == [c]
    assert registry.channel(a) is None and registry.channel(c).device_id == NVR  # type: ignore[union-attr]
    device = registry.get(NVR)
    assert device is not None and device.channel_count == 1 and not device.catalog_partial
    with pytest.raises(KeyError):
        registry.replace_channels("unknown", [], partial=False)


def test_channel_owner_is_taken_from_the_catalog_device() -> None:
    registry, _, _ = make_registry()
    register(registry, NVR, now=0.0)
    registry.replace_channels(NVR, [chan("34020000001310000001", device_id="wrong")], partial=False)
    assert registry.channels(NVR)[0].device_id == NVR


def test_channel_events() -> None:
    registry, _, _ = make_registry()
    register(registry, NVR, now=0.0)
    a, b = "34020000001310000001", "34020000001310000002"
    assert registry.apply_channel_event(NVR, "ADD", chan(a, name="gate"))
    assert registry.channel(a).name == "gate"  # type: ignore[union-attr]
    assert registry.apply_channel_event(NVR, "UPDATE", chan(a, name="gate 2"))
    assert registry.channel(a).name == "gate 2"  # type: ignore[union-attr]
    assert registry.apply_channel_event(NVR, "UPDATE", chan(b))  # unknown: inserted
    assert registry.get(NVR).channel_count == 2  # type: ignore[union-attr]
    for event, status in [("OFF", "OFF"), ("ON", "ON"), ("VLOST", "OFF"), ("ON", "ON"), ("DEFECT", "OFF")]:
        assert registry.apply_channel_event(NVR, event, Channel(id=a, device_id=NVR))
        assert registry.channel(a).status == status  # type: ignore[union-attr]
        assert registry.channel(a).name == "gate 2"  # type: ignore[union-attr]  # only status changed
    assert not registry.apply_channel_event(NVR, "OFF", Channel(id=a, device_id=NVR))  # no change
    assert not registry.apply_channel_event(NVR, "ON", Channel(id="34020000001310000099", device_id=NVR))
    assert registry.apply_channel_event(NVR, "DEL", Channel(id=a, device_id=NVR))
    assert not registry.apply_channel_event(NVR, "DEL", Channel(id=a, device_id=NVR))
    assert registry.channel(a) is None and [ch.id for ch in registry.channels(NVR)] == [b]
    assert registry.get(NVR).channel_count == 1  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        registry.apply_channel_event(NVR, "MOVE", chan(a))


def test_status_event_does_not_mutate_callers_channel() -> None:
    registry, _, _ = make_registry()
    register(registry, NVR, now=0.0)
    original = chan("34020000001310000001", status="ON")
    registry.replace_channels(NVR, [original], partial=False)
    registry.apply_channel_event(NVR, "OFF", Channel(id=original.id, device_id=NVR))
    assert original.status == "ON"


def test_same_channel_id_on_two_devices() -> None:
    registry, _, _ = make_registry()
    register(registry, DEV, now=0.0)
    register(registry, NVR, now=0.0)
    shared = "34020000001310000001"
    registry.replace_channels(DEV, [chan(shared, DEV, name="dev")], partial=False)
    registry.replace_channels(NVR, [chan(shared, NVR, name="nvr")], partial=False)
    assert registry.channel(shared).device_id == NVR  # type: ignore[union-attr]
    assert registry.channel(shared, DEV).name == "dev"  # type: ignore[union-attr]
    registry.replace_channels(DEV, [], partial=False)  # DEV dropping it must not unindex NVR's
    assert registry.channel(shared).device_id == NVR  # type: ignore[union-attr]


# -- group commit ------------------------------------------------------------------------------

async def test_flush_writes_dirty_records_in_one_batch() -> None:
    registry, storage, _ = make_registry()
    register(registry, DEV, now=0.0)
    register(registry, NVR, now=0.0)
    registry.replace_channels(NVR, [chan("34020000001310000001")], partial=False)
    assert await registry.flush() == 3
    assert len(storage.batches) == 1
    assert await registry.flush() == 0 and len(storage.batches) == 1
    registry.apply_channel_event(NVR, "OFF", chan("34020000001310000001"))
    registry.apply_channel_event(NVR, "ADD", chan("34020000001310000002"))
    await registry.flush()
    batch = storage.batches[-1]
    assert {ch.id for ch in batch.channels} == {"34020000001310000001", "34020000001310000002"}
    assert [d.id for d in batch.devices] == [NVR]  # channel_count changed
    registry.apply_channel_event(NVR, "DEL", chan("34020000001310000002"))
    registry.remove(DEV)
    await registry.flush()
    assert storage.batches[-1].deleted_channels == [(NVR, "34020000001310000002")]
    assert storage.batches[-1].deleted_devices == [DEV]
    assert [d.id for d in await storage.load_devices()] == [NVR]
    assert [(c.id, c.status) for c in await storage.load_channels()] == [("34020000001310000001", "OFF")]


async def test_flushed_device_is_a_snapshot() -> None:
    registry, storage, _ = make_registry()
    device = register(registry, DEV, now=0.0)
    await registry.flush()
    device.name = "changed after flush"
    assert storage.batches[0].devices[0].name == ""
    assert storage.batches[0].devices[0] is not device


async def test_remove_then_register_again_drops_stored_channels() -> None:
    registry, storage, _ = make_registry()
    register(registry, NVR, now=0.0)
    registry.replace_channels(NVR, [chan("34020000001310000001")], partial=False)
    await registry.flush()
    registry.remove(NVR)
    register(registry, NVR, now=1.0)
    await registry.flush()
    assert await storage.load_channels() == []


async def test_failed_flush_keeps_changes_pending() -> None:
    registry, storage, _ = make_registry()
    register(registry, DEV, now=0.0)
    registry.replace_channels(DEV, [chan("34020000001310000001", DEV)], partial=False)
    storage.fail = True
    with pytest.raises(OSError):
        await registry.flush()
    registry.apply_channel_event(DEV, "ADD", chan("34020000001310000002", DEV))
    storage.fail = False
    await registry.flush()
    assert [d.id for d in await storage.load_devices()] == [DEV]
    assert {c.id for c in await storage.load_channels()} == {"34020000001310000001", "34020000001310000002"}


async def test_keepalive_persistence_is_coalesced() -> None:
    window, interval = 300.0, 60.0
    registry, storage, _ = make_registry(keepalive_persist_window=window)
    register(registry, DEV, now=0.0, expires=86400.0)
    await registry.flush()
    writes = 0
    now = 0.0
    while now < 7200.0:
        now += interval
        assert registry.touch(DEV, now)
        writes += 1 if await registry.flush() else 0
        stored = (await storage.load_devices())[0].last_keepalive
        assert now - stored <= window + interval
    assert writes <= 7200.0 / window + 1  # instead of one write per keepalive (120)
    assert writes >= 7200.0 / window - 1


async def test_run_committer_commits_changes_and_on_shutdown() -> None:
    registry, storage, _ = make_registry()
    task = asyncio.create_task(registry.run_committer(window=0.01))
    register(registry, DEV, now=0.0)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if storage.batches:
            break
    assert [d.id for d in await storage.load_devices()] == [DEV]
    register(registry, NVR, now=0.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert {d.id for d in await storage.load_devices()} == {DEV, NVR}


async def test_run_committer_survives_a_failing_storage() -> None:
    registry, storage, _ = make_registry()
    storage.fail = True
    task = asyncio.create_task(registry.run_committer(window=0.005, retry_after=0.005))
    register(registry, DEV, now=0.0)
    await asyncio.sleep(0.05)
    assert not task.done()
    storage.fail = False
    for _ in range(100):
        await asyncio.sleep(0.005)
        if storage.batches:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [d.id for d in await storage.load_devices()] == [DEV]


async def test_load_restores_offline_but_registered() -> None:
    storage = MemoryStorage()
    first = DeviceRegistry(storage)
    register(first, DEV, now=0.0, expires=3600.0)
    first.replace_channels(DEV, [chan("34020000001310000001", DEV)], partial=False)
    await first.flush()
    second = DeviceRegistry(storage)
    await second.load()
    device = second.get(DEV)
    assert device is not None and not device.online and second.online_count == 0
    assert second.is_registered(DEV, 100.0)
    assert second.channel("34020000001310000001") is not None
    assert second.touch(DEV, 100.0) and second.get(DEV).online  # type: ignore[union-attr]
    with pytest.raises(RuntimeError):
        await second.load()

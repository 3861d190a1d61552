"""The storage interface the registry writes behind to, and an in-memory backend for tests.

The interface speaks records, never queries, so a networked backend (Redis: one MULTI/EXEC per
batch, sorted sets for the outbox) can implement it as well as SQLite does.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from gbgw.registry.model import Alarm, Channel, Device, MobilePosition, Transition


class StorageError(Exception):
    """The backend cannot be used as it is (e.g. its schema is newer than this code)."""


class StorageUnavailable(StorageError):
    """The backend refuses every write from now on, for a cause it has already reported once (the
    database file deleted or replaced under it). Callers answer "not stored" without logging again."""


@dataclass(slots=True)
class StorageBatch:
    """Changes that must become durable together, in one transaction.

    The registry builds one per flush from its dirty marks. Every record in it is a snapshot
    the caller will not mutate afterwards, so a backend may read it from another thread.
    Backends apply the parts in field order: deletions of devices first (with their channels).
    """

    devices: list[Device] = field(default_factory=list)
    """Devices to insert or overwrite."""
    deleted_devices: list[str] = field(default_factory=list)
    """Device ids to delete together with all their channels."""
    catalogs: dict[str, list[Channel]] = field(default_factory=dict)
    """Device id -> its complete channel list, replacing whatever was stored."""
    channels: list[Channel] = field(default_factory=list)
    """Channels to insert or overwrite, keyed by (device_id, id)."""
    deleted_channels: list[tuple[str, str]] = field(default_factory=list)
    """(device_id, channel_id) pairs to delete."""

    def __len__(self) -> int:
        return (
            len(self.devices)
            + len(self.deleted_devices)
            + sum(len(channels) for channels in self.catalogs.values())
            + len(self.channels)
            + len(self.deleted_channels)
        )


@dataclass(slots=True, kw_only=True)
class OutboxItem:
    """A durable message waiting to be delivered (e.g. an alarm for the upper platform)."""

    id: int
    topic: str
    dedup_key: str
    payload: bytes
    created_at: float
    next_at: float
    attempts: int


class Storage(Protocol):
    """Durable state behind the in-memory registry.

    All methods are coroutines so that no backend blocks the event loop. Channel ids are only
    unique per device (cheap NVRs reuse the same ids), so channels are keyed by (device_id, id).
    Loaded devices always come back with `online=False`. Backends that subclass `Storage`
    inherit the single-purpose writers (`save_devices`, ...) built on `write`.
    """

    durable: bool = True
    """Whether a completed `write` survives the process being killed. The registry's `committed()`
    waits for writes only where this is true: waiting on a backend that forgets everything at exit
    would delay answers for no promise kept."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def load_devices(self) -> list[Device]: ...

    async def load_channels(self) -> list[Channel]: ...

    async def write(self, batch: StorageBatch) -> None:
        """Apply the whole batch atomically: after a crash either all of it is there or none."""
        ...

    async def save_devices(self, devices: list[Device]) -> None:
        await self.write(StorageBatch(devices=list(devices)))

    async def delete_devices(self, ids: Iterable[str]) -> None:
        await self.write(StorageBatch(deleted_devices=list(ids)))

    async def save_channels(self, device_id: str, channels: list[Channel], replace: bool) -> None:
        if replace:
            await self.write(StorageBatch(catalogs={device_id: list(channels)}))
        else:
            await self.write(StorageBatch(channels=list(channels)))

    async def delete_channels(self, device_id: str, channel_ids: Iterable[str]) -> None:
        await self.write(StorageBatch(deleted_channels=[(device_id, cid) for cid in channel_ids]))

    async def add_alarm(self, alarm: Alarm) -> int:
        """Store the alarm and return the id assigned to it (also set on `alarm.id`)."""
        ...

    async def list_alarms(self, device_id: str | None = None, limit: int = 100) -> list[Alarm]:
        """Newest first."""
        ...

    async def add_mobile_position(self, position: MobilePosition) -> None: ...

    async def list_mobile_positions(self, device_id: str, limit: int = 100) -> list[MobilePosition]:
        """Newest first."""
        ...

    async def enqueue(self, topic: str, dedup_key: str, payload: bytes, now: float) -> bool:
        """Durably queue a message due at `now`; False if (topic, dedup_key) was already queued.

        Acknowledged messages keep their key until `prune`, so a late duplicate of something
        already delivered is still recognised.
        """
        ...

    async def due(self, topic: str, now: float, limit: int = 100) -> list[OutboxItem]:
        """Unacknowledged messages of `topic` due at `now`, in the order they were queued (a message
        retried later does not fall behind newer ones). Does not lease them: one consumer per topic
        is assumed."""
        ...

    async def expedite(self, topic: str, now: float) -> None:
        """Make every unacknowledged message of `topic` due at `now` at the latest: the receiver is
        back, so nothing should wait out the rest of a back-off."""
        ...

    async def ack(self, item_id: int) -> None:
        """Mark delivered: the message is never due again."""
        ...

    async def retry(self, item_id: int, next_at: float) -> None:
        """Delivery failed: due again at `next_at`, attempts + 1."""
        ...

    async def prune(self, before: float) -> None:
        """Forget alarms and positions received, and acknowledged messages created, before `before`."""
        ...

    async def prune_outbox(self, before: float) -> None:
        """Forget acknowledged messages created before `before` (their keys no longer deduplicate);
        alarm and position history is left to `prune` and its own retention."""
        ...

    async def add_transitions(self, transitions: list[Transition]) -> None:
        """Append online/offline transitions, given in time order (the availability history)."""
        ...

    async def list_transitions(self, start: float, end: float) -> list[Transition]:
        """Transitions with `start` <= at < `end` in time order, preceded by each device's last one before
        `start` (its state when the period began)."""
        ...

    async def prune_transitions(self, before: float) -> None:
        """Forget transitions before `before` except each device's latest one, which still says its state."""
        ...


def last_per_device(transitions: Iterable[Transition]) -> dict[str, Transition]:
    last: dict[str, Transition] = {}
    for transition in transitions:
        last[transition.device_id] = transition
    return last


class MemoryStorage(Storage):
    """Keeps everything in dicts; for tests and for running without persistence."""

    durable = False

    def __init__(self) -> None:
        self._devices: dict[str, Device] = {}
        self._channels: dict[tuple[str, str], Channel] = {}
        self._alarms: list[Alarm] = []
        self._positions: list[MobilePosition] = []
        self._outbox: dict[int, OutboxItem] = {}
        self._acked: set[int] = set()
        self._outbox_keys: dict[tuple[str, str], int] = {}
        self._transitions: list[Transition] = []
        self._next_id = 1

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def load_devices(self) -> list[Device]:
        return [dataclasses.replace(device, online=False) for device in self._devices.values()]

    async def load_channels(self) -> list[Channel]:
        return [dataclasses.replace(channel, raw=dict(channel.raw)) for channel in self._channels.values()]

    async def write(self, batch: StorageBatch) -> None:
        for device_id in batch.deleted_devices:
            self._devices.pop(device_id, None)
            self._drop_channels_of(device_id)
        for device in batch.devices:
            self._devices[device.id] = copy.copy(device)
        for device_id, channels in batch.catalogs.items():
            self._drop_channels_of(device_id)
            for channel in channels:
                self._channels[channel.device_id, channel.id] = channel
        for channel in batch.channels:
            self._channels[channel.device_id, channel.id] = channel
        for key in batch.deleted_channels:
            self._channels.pop(key, None)

    def _drop_channels_of(self, device_id: str) -> None:
        for key in [key for key in self._channels if key[0] == device_id]:
            del self._channels[key]

    async def add_alarm(self, alarm: Alarm) -> int:
        alarm.id = self._take_id()
        self._alarms.append(copy.copy(alarm))
        return alarm.id

    async def list_alarms(self, device_id: str | None = None, limit: int = 100) -> list[Alarm]:
        found = [a for a in reversed(self._alarms) if device_id is None or a.device_id == device_id]
        return [copy.copy(a) for a in found[:limit]]

    async def add_mobile_position(self, position: MobilePosition) -> None:
        self._positions.append(copy.copy(position))

    async def list_mobile_positions(self, device_id: str, limit: int = 100) -> list[MobilePosition]:
        found = [p for p in reversed(self._positions) if p.device_id == device_id]
        return [copy.copy(p) for p in found[:limit]]

    async def enqueue(self, topic: str, dedup_key: str, payload: bytes, now: float) -> bool:
        if (topic, dedup_key) in self._outbox_keys:
            return False
        item = OutboxItem(
            id=self._take_id(), topic=topic, dedup_key=dedup_key, payload=payload,
            created_at=now, next_at=now, attempts=0,
        )
        self._outbox[item.id] = item
        self._outbox_keys[topic, dedup_key] = item.id
        return True

    async def due(self, topic: str, now: float, limit: int = 100) -> list[OutboxItem]:
        found = sorted(
            (i for i in self._outbox.values()
             if i.topic == topic and i.next_at <= now and i.id not in self._acked),
            key=lambda i: i.id,
        )
        return [copy.copy(i) for i in found[:limit]]

    async def expedite(self, topic: str, now: float) -> None:
        for item in self._outbox.values():
            if item.topic == topic and item.id not in self._acked and item.next_at > now:
                item.next_at = now

    async def ack(self, item_id: int) -> None:
        if item_id in self._outbox:
            self._acked.add(item_id)

    async def retry(self, item_id: int, next_at: float) -> None:
        item = self._outbox.get(item_id)
        if item is not None and item_id not in self._acked:
            item.next_at = next_at
            item.attempts += 1

    async def prune(self, before: float) -> None:
        self._alarms = [a for a in self._alarms if a.received_at >= before]
        self._positions = [p for p in self._positions if p.received_at >= before]
        await self.prune_outbox(before)

    async def prune_outbox(self, before: float) -> None:
        for item_id in [i for i in self._acked if self._outbox[i].created_at < before]:
            item = self._outbox.pop(item_id)
            self._acked.discard(item_id)
            del self._outbox_keys[item.topic, item.dedup_key]

    async def add_transitions(self, transitions: list[Transition]) -> None:
        self._transitions.extend(transitions)

    async def list_transitions(self, start: float, end: float) -> list[Transition]:
        before = last_per_device(t for t in self._transitions if t.at < start)
        return [*before.values(), *(t for t in self._transitions if start <= t.at < end)]

    async def prune_transitions(self, before: float) -> None:
        kept = set(map(id, last_per_device(t for t in self._transitions if t.at < before).values()))
        self._transitions = [t for t in self._transitions if t.at >= before or id(t) in kept]

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

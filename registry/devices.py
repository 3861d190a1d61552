"""The in-memory device and channel registry, committed to a `Storage` in groups.

Memory is the source of truth at runtime; storage is what survives a restart. Mutations stay
synchronous: they update memory and mark records dirty. `run_committer` is the one writer: the
first change wakes it, it waits a short window (3 ms by default) for more, and writes every dirty
record in one storage transaction (group commit). "Durable before acknowledged": whoever tells a
device that something was accepted (the 200 to a REGISTER, to a catalog page, to a catalog NOTIFY)
first awaits `committed()`, which returns once a transaction covering every change made before the
call has reached the database, or raises the commit's error so the answer becomes a 500. With 3 ms
windows a burst of registrations shares one transaction per window instead of one each, which is
what keeps digest registration above 2,500/s on one core (tests/bench/bench_devices.py).

What a restart needs is each device's registration expiry and address: a device whose
registration is still valid comes back offline but registered (`is_registered`), so its next
keepalive brings it online without forcing a new REGISTER, and requests can reach it meanwhile.
`last_keepalive` is only informative after a restart, so `touch()` does not persist every
keepalive: it marks the device dirty only when the keepalive enters a new
`keepalive_persist_window` (5 minutes by default). The stored value is then at most one window
plus one keepalive interval old, and 100,000 devices keeping alive every minute cost ~330
device writes per second instead of ~1,700. Keepalives are answered without waiting for a commit:
a lost one costs nothing the device's next keepalive does not repair.

Liveness: a device goes offline when its registration expires or when `keepalive_misses`
keepalive intervals pass without one, whichever comes first. Deadlines sit in a heap with lazy
invalidation: a keepalive only moves `last_keepalive` forward and leaves the heap alone; when an
entry comes due, `expire()` recomputes the device's real deadline and pushes it back if it moved.
Each online device thus costs about one heap operation per keepalive timeout, and `expire()`
touches only entries that are due.
"""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import heapq
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gbgw.registry.model import Channel, Device
from gbgw.registry.storage import Storage, StorageBatch, StorageUnavailable

_log = logging.getLogger(__name__)


class StatusReason(StrEnum):
    """Why a device went online or offline, for logs and counters."""

    REGISTERED = "registered"
    KEEPALIVE = "keepalive"
    UNREGISTERED = "unregistered"
    KEEPALIVE_TIMEOUT = "keepalive-timeout"
    REGISTRATION_EXPIRED = "registration-expired"
    REMOVED = "removed"


StatusListener = Callable[[Device, bool, StatusReason], None]
"""Called with (device, online, reason) on every online/offline transition."""

ChannelListener = Callable[[str, str, Channel], None]
"""Called with (device id, event, channel) when a catalog changes: ADD, DEL, UPDATE or a status event
(ON, OFF, VLOST, DEFECT); for DEL the channel is the one removed."""

CHANNEL_EVENTS = frozenset({"ON", "OFF", "ADD", "DEL", "UPDATE", "VLOST", "DEFECT"})
# Video lost and defect are faults of a channel that still exists: it shows as off.
_STATUS_OF_EVENT = {"ON": "ON", "OFF": "OFF", "VLOST": "OFF", "DEFECT": "OFF"}

_UPDATABLE = frozenset({
    "name", "manufacturer", "model", "firmware", "transport", "host", "port", "username",
    "stream_transport", "keepalive_interval", "charset",
})
# Values shared by thousands of devices (same vendor, firmware, NAT address): one copy each.
# TLS devices are reached over their own connection as TCP ones are (sip.tls_listen).
SIGNALLING_TRANSPORTS = ("UDP", "TCP", "TLS")
_INTERNED = ("manufacturer", "model", "firmware", "transport", "host", "stream_transport", "charset")


def _intern_fields(device: Device) -> None:
    for name in _INTERNED:
        value = getattr(device, name)
        if type(value) is str:
            setattr(device, name, sys.intern(value))


# Channel values that thousands of channels repeat (vendor, model, owner, civil code, group, parent).
_SHARED_CHANNEL_FIELDS = ("manufacturer", "model", "owner", "civil_code", "business_group_id", "parent_id")


def _own_channel(channel: Channel, device: Device) -> Channel:
    """Take ownership of a channel the registry will keep for as long as the node runs: its device ID
    and every repeated value become one shared string, and a parent that is the device reuses the
    device's ID (about 400 bytes less per channel, tests/bench/bench_devices.py)."""
    device_id = device.id
    if channel.device_id != device_id:
        channel = dataclasses.replace(channel, device_id=device_id)
    else:
        channel.device_id = device_id
    for name in _SHARED_CHANNEL_FIELDS:
        value = getattr(channel, name)
        if value == device_id:
            setattr(channel, name, device_id)
        elif type(value) is str:
            setattr(channel, name, sys.intern(value))
    if channel.raw:
        channel.raw = {sys.intern(k): sys.intern(v) for k, v in channel.raw.items()}
    return channel


@dataclass(slots=True)
class CommitCounters:
    """What the group committer did since start, for metrics."""

    commits: int = 0
    """Storage transactions that committed."""
    records: int = 0
    """Records those transactions wrote."""
    failures: int = 0
    """Transactions that failed; their changes stay pending and their waiters got the error."""


def _chain(source: asyncio.Future[None], target: asyncio.Future[None]) -> None:
    """Settle `target` as `source` settles (waiters of a cancelled write move to the next one)."""

    def settle(done: asyncio.Future[None]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        elif (error := done.exception()) is not None:
            target.set_exception(error)
        else:
            target.set_result(None)

    source.add_done_callback(settle)


class DeviceRegistry:
    """Devices by id, their channel catalogs, and their liveness; all times are epoch seconds."""

    def __init__(
        self,
        storage: Storage,
        *,
        keepalive_interval: float = 60.0,
        keepalive_misses: int = 3,
        keepalive_persist_window: float = 300.0,
    ) -> None:
        if keepalive_interval <= 0 or keepalive_misses < 1 or keepalive_persist_window <= 0:
            raise ValueError("keepalive interval, misses and persist window must be positive")
        self._storage = storage
        self._keepalive_interval = keepalive_interval
        self._keepalive_misses = keepalive_misses
        self._persist_window = keepalive_persist_window
        self._devices: dict[str, Device] = {}
        self._catalogs: dict[str, dict[str, Channel]] = {}
        self._channel_owner: dict[str, str] = {}
        self._online_count = 0
        # Liveness heap of (deadline, device id); _scheduled holds the one live entry per device,
        # any other entry for the device is stale and skipped when popped.
        self._heap: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}
        # Dirty marks, resolved against current state when the next transaction is built.
        self._dirty_devices: set[str] = set()
        self._dirty_catalogs: set[str] = set()
        self._dirty_channels: dict[str, set[str]] = {}
        self._flush_lock = asyncio.Lock()
        # Group commit: `_changed` wakes the committer; `_next_commit` settles with the transaction
        # that will take the current dirty marks, `_in_flight` with the one being written. Both are
        # created only when someone waits, so unawaited changes cost no future.
        self._changed = asyncio.Event()
        self._next_commit: asyncio.Future[None] | None = None
        self._in_flight: asyncio.Future[None] | None = None
        self._writing = False
        self._committer_running = False
        self.commit_counters = CommitCounters()
        self._listeners: list[StatusListener] = []
        self._channel_listeners: list[ChannelListener] = []

    # -- startup and persistence ------------------------------------------------------------

    async def load(self) -> None:
        """Restore devices and channels from storage; call once, before anything else."""
        if self._devices:
            raise RuntimeError("load() must run on an empty registry")
        for device in await self._storage.load_devices():
            device.online = False
            _intern_fields(device)
            self._devices[device.id] = device
        for channel in await self._storage.load_channels():
            owner = self._devices.get(channel.device_id)
            if owner is not None:
                channel = _own_channel(channel, owner)
                self._catalogs.setdefault(channel.device_id, {})[channel.id] = channel
                self._channel_owner[channel.id] = channel.device_id
        for device in self._devices.values():
            device.channel_count = len(self._catalogs.get(device.id, ()))

    async def flush(self) -> int:
        """Write every dirty record in one storage transaction now; returns the number of records.

        Settles the waiters of `committed()` whose changes it covered. If the write fails the marks
        are restored, so the next flush retries them, those waiters get the error, and it is raised.
        """
        async with self._flush_lock:
            waiters, self._next_commit = self._next_commit, None
            if not self._dirty():
                if waiters is not None:
                    waiters.set_result(None)
                return 0
            devices, self._dirty_devices = self._dirty_devices, set()
            catalogs, self._dirty_catalogs = self._dirty_catalogs, set()
            channels, self._dirty_channels = self._dirty_channels, {}
            batch = self._snapshot(devices, catalogs, channels)
            self._in_flight, self._writing = waiters, True
            try:
                await self._storage.write(batch)
            except BaseException as exc:
                self._dirty_devices |= devices
                self._dirty_catalogs |= catalogs
                for device_id, channel_ids in channels.items():
                    self._dirty_channels.setdefault(device_id, set()).update(channel_ids)
                self._changed.set()
                waiters, self._in_flight = self._in_flight, None
                if isinstance(exc, Exception):
                    self.commit_counters.failures += 1
                    if waiters is not None:
                        waiters.set_exception(exc)
                elif waiters is not None:
                    # Cancelled mid-write (shutdown): nothing is known to be on disk, so these
                    # waiters settle with the transaction that writes their changes again.
                    _chain(self._next_future(), waiters)
                raise
            finally:
                self._writing = False
            waiters, self._in_flight = self._in_flight, None
            self.commit_counters.commits += 1
            self.commit_counters.records += len(batch)
            if waiters is not None:
                waiters.set_result(None)
            return len(batch)

    async def committed(self) -> None:
        """Return once every change made before this call is committed to storage.

        Raises the storage's error if the transaction carrying them failed: the caller answers
        500, and the changes stay pending for the next transaction. Returns at once for a storage
        that keeps nothing across a restart (`Storage.durable` false) and when nothing is pending.
        Without a running `run_committer` (tools, tests) it commits by itself. Cancelling the
        caller does not cancel the commit that other callers share.
        """
        if not self._storage.durable:
            return
        if not self._committer_running:
            await self.flush()
            return
        waiter = self.commit_pending()
        if waiter is not None:
            await asyncio.shield(waiter)

    def commit_pending(self) -> asyncio.Future[None] | None:
        """The future settled by the transaction that commits every change made so far (its
        exception: the storage's error), or None when nothing is waiting to be written.

        ``committed()`` without a task: a handler answering thousands of REGISTERs a second adds a
        done-callback to this future instead of spawning a coroutine per request. Needs the running
        committer (``run_committer``); without one, use ``committed()``."""
        if not self._storage.durable:
            return None
        if self._dirty():
            if not self._committer_running:
                raise RuntimeError("commit_pending() needs run_committer(); use committed()")
            return self._next_future()
        if self._writing:
            if self._in_flight is None:
                self._in_flight = asyncio.get_running_loop().create_future()
            return self._in_flight
        return None

    def _next_future(self) -> asyncio.Future[None]:
        if self._next_commit is None:
            self._next_commit = asyncio.get_running_loop().create_future()
        return self._next_commit

    def _dirty(self) -> bool:
        return bool(self._dirty_devices or self._dirty_catalogs or self._dirty_channels)

    def _snapshot(self, devices: set[str], catalogs: set[str], channels: dict[str, set[str]]) -> StorageBatch:
        batch = StorageBatch()
        for device_id in devices:
            device = self._devices.get(device_id)
            if device is None:
                batch.deleted_devices.append(device_id)
            else:
                # A copy: the worker thread reads it while keepalives keep changing the original.
                batch.devices.append(copy.copy(device))
        for device_id in catalogs:
            if device_id in self._devices:
                batch.catalogs[device_id] = list(self._catalogs.get(device_id, {}).values())
        for device_id, channel_ids in channels.items():
            if device_id in catalogs or device_id not in self._devices:
                continue
            catalog = self._catalogs.get(device_id, {})
            for channel_id in channel_ids:
                channel = catalog.get(channel_id)
                if channel is None:
                    batch.deleted_channels.append((device_id, channel_id))
                else:
                    batch.channels.append(channel)
        return batch

    async def run_committer(self, window: float = 0.003, retry_after: float = 0.5) -> None:
        """The group committer: the one writer, until cancelled; then it commits what is left.

        The first change after a commit wakes it; it waits `window` seconds so that the changes
        arriving meanwhile share the transaction, then commits. A window of 2-5 ms adds that much
        to each acknowledgement and divides the transactions of a registration burst by the number
        of changes per window. A failed commit is logged and counted (`commit_counters.failures`),
        its waiters get the error, and its changes are retried after `retry_after` seconds.
        Cancel this task (and await it) before closing the storage.
        """
        if window < 0 or retry_after <= 0:
            raise ValueError("the commit window must not be negative and the retry delay must be positive")
        if self._committer_running:
            raise RuntimeError("the registry already has a committer")
        self._committer_running = True
        try:
            while True:
                await self._changed.wait()
                await asyncio.sleep(window)
                self._changed.clear()
                try:
                    await self.flush()
                except StorageUnavailable:
                    # The storage said why once; a traceback every retry would bury that line.
                    await asyncio.sleep(retry_after)
                except Exception:
                    _log.exception("registry commit failed; the changes stay pending and are retried")
                    await asyncio.sleep(retry_after)
        finally:
            self._committer_running = False
            await self.flush()

    # -- status listeners -------------------------------------------------------------------

    def add_status_listener(self, listener: StatusListener) -> None:
        """Listeners run synchronously inside register/touch/expire: they must not block."""
        self._listeners.append(listener)

    def remove_status_listener(self, listener: StatusListener) -> None:
        self._listeners.remove(listener)

    def add_channel_listener(self, listener: ChannelListener) -> None:
        self._channel_listeners.append(listener)

    def remove_channel_listener(self, listener: ChannelListener) -> None:
        self._channel_listeners.remove(listener)

    def _channel_changed(self, device_id: str, event: str, channel: Channel) -> None:
        for listener in self._channel_listeners:
            try:
                listener(device_id, event, channel)
            except Exception:
                _log.exception("channel listener failed for %s %s (%s)", device_id, channel.id, event)

    def _notify(self, device: Device, online: bool, reason: StatusReason) -> None:
        for listener in self._listeners:
            try:
                listener(device, online, reason)
            except Exception:
                # A faulty listener must not leave the registry half-updated.
                _log.exception("status listener failed for device %s (%s)", device.id, reason)

    # -- devices ----------------------------------------------------------------------------

    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._devices

    def __len__(self) -> int:
        return len(self._devices)

    def devices(self) -> list[Device]:
        return list(self._devices.values())

    def online_devices(self) -> list[Device]:
        return [device for device in self._devices.values() if device.online]

    @property
    def online_count(self) -> int:
        return self._online_count

    def is_registered(self, device_id: str, now: float) -> bool:
        """The device's registration is valid at `now`, whether or not it is online."""
        device = self._devices.get(device_id)
        return device is not None and now < device.expires_at

    def register(
        self,
        device_id: str,
        *,
        transport: str,
        host: str,
        port: int,
        expires: float,
        now: float,
        username: str | None = None,
    ) -> Device:
        """Record a successful REGISTER (new or refresh) and bring the device online.

        `expires` is the granted registration time in seconds; a REGISTER with Expires: 0 is
        an `unregister`.
        """
        if expires <= 0:
            raise ValueError(f"expires must be positive, got {expires}; use unregister()")
        if transport not in SIGNALLING_TRANSPORTS:
            raise ValueError(f"transport must be 'UDP', 'TCP' or 'TLS', got {transport!r}")
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = Device(id=device_id)
        device.transport = transport
        device.host = sys.intern(host)
        device.port = port
        device.username = username
        device.registered_at = now
        device.expires_at = now + expires
        self._dirty_devices.add(device_id)
        self._changed.set()
        if device.online:
            # A refresh may grant less time than before: the deadline can move earlier.
            self._schedule(device)
        else:
            self._set_online(device, StatusReason.REGISTERED)
        return device

    def unregister(self, device_id: str, now: float) -> Device | None:
        """End the registration (Expires: 0). The device stays known, with its channels."""
        device = self._devices.get(device_id)
        if device is None:
            return None
        device.expires_at = min(device.expires_at, now)
        self._dirty_devices.add(device_id)
        self._changed.set()
        if device.online:
            self._set_offline(device, StatusReason.UNREGISTERED)
        return device

    def remove(self, device_id: str) -> Device | None:
        """Forget the device and its channels entirely."""
        device = self._devices.pop(device_id, None)
        if device is None:
            return None
        for channel_id in self._catalogs.pop(device_id, {}):
            self._unindex(channel_id, device_id)
        self._scheduled.pop(device_id, None)
        self._dirty_devices.add(device_id)
        # Should the id register again before the next flush, its stored channels must go.
        self._dirty_catalogs.add(device_id)
        self._dirty_channels.pop(device_id, None)
        self._changed.set()
        if device.online:
            self._set_offline(device, StatusReason.REMOVED)
        return device

    def update(self, device_id: str, **changes: Any) -> Device:
        """Change descriptive fields or per-device settings (see `_UPDATABLE`), e.g. from DeviceInfo.

        Registration and liveness fields are not accepted: they change through register/touch.
        """
        device = self._devices[device_id]
        refused = changes.keys() - _UPDATABLE
        if refused:
            raise TypeError(f"cannot update {', '.join(sorted(refused))} of a device directly")
        if changes.get("transport", "UDP") not in SIGNALLING_TRANSPORTS:
            raise ValueError(f"transport must be 'UDP', 'TCP' or 'TLS', got {changes['transport']!r}")
        for name, value in changes.items():
            setattr(device, name, value)
        _intern_fields(device)
        self._dirty_devices.add(device_id)
        self._changed.set()
        if device.online and "keepalive_interval" in changes:
            self._schedule(device)
        return device

    def touch(self, device_id: str, now: float, host: str | None = None) -> bool:
        """Record a keepalive; False if the device must register (unknown or expired), or when ``host``
        is given and is not the address the device registered from.

        The hot path: one dict lookup and a few attribute writes, the heap is not touched
        (2.4 to 5 million per second on one core, see tests/bench/bench_registry.py).
        """
        device = self._devices.get(device_id)
        if device is None or now >= device.expires_at or (host is not None and host != device.host):
            return False
        previous = device.last_keepalive
        device.last_keepalive = now
        window = self._persist_window
        if previous // window != now // window:
            self._dirty_devices.add(device_id)
            self._changed.set()
        if not device.online:
            self._set_online(device, StatusReason.KEEPALIVE)
        return True

    # -- liveness ---------------------------------------------------------------------------

    def expire(self, now: float) -> list[Device]:
        """Set offline, and return in deadline order, every online device whose deadline passed."""
        expired: list[Device] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, device_id = heapq.heappop(heap)
            if self._scheduled.get(device_id) != deadline:
                continue
            del self._scheduled[device_id]
            device = self._devices.get(device_id)
            if device is None or not device.online:
                continue
            actual = self._deadline(device)
            # Entries are never later than the real deadline. Pushing back a moved one even when
            # it is already due keeps the returned list in deadline order.
            if actual > deadline:
                self._scheduled[device_id] = actual
                heapq.heappush(heap, (actual, device_id))
                continue
            expired.append(device)
            if device.expires_at <= now:
                self._set_offline(device, StatusReason.REGISTRATION_EXPIRED)
            else:
                self._set_offline(device, StatusReason.KEEPALIVE_TIMEOUT)
        return expired

    def next_deadline(self) -> float | None:
        """When `expire()` may next have work; possibly early (a stale entry), never late."""
        return self._heap[0][0] if self._heap else None

    def _deadline(self, device: Device) -> float:
        interval = device.keepalive_interval or self._keepalive_interval
        last_sign_of_life = max(device.last_keepalive, device.registered_at)
        return min(device.expires_at, last_sign_of_life + interval * self._keepalive_misses)

    def _schedule(self, device: Device) -> None:
        # Later deadlines are found lazily in expire(); only an earlier one needs a new entry.
        deadline = self._deadline(device)
        current = self._scheduled.get(device.id)
        if current is None or deadline < current:
            self._scheduled[device.id] = deadline
            heapq.heappush(self._heap, (deadline, device.id))

    def _set_online(self, device: Device, reason: StatusReason) -> None:
        device.online = True
        self._online_count += 1
        self._schedule(device)
        self._notify(device, True, reason)

    def _set_offline(self, device: Device, reason: StatusReason) -> None:
        device.online = False
        self._online_count -= 1
        self._notify(device, False, reason)

    # -- channels ---------------------------------------------------------------------------

    def channels(self, device_id: str) -> list[Channel]:
        return list(self._catalogs.get(device_id, {}).values())

    def channel(self, channel_id: str, device_id: str | None = None) -> Channel | None:
        """A channel by id. Ids are only unique per device (cheap NVRs reuse them): without
        `device_id` the answer is the device that most recently announced the id (None once that
        device dropped it, even if another device still has a channel of that id)."""
        if device_id is None:
            device_id = self._channel_owner.get(channel_id)
            if device_id is None:
                return None
        catalog = self._catalogs.get(device_id)
        return catalog.get(channel_id) if catalog else None

    def replace_channels(self, device_id: str, channels: Iterable[Channel], partial: bool) -> None:
        """Install a catalog the device answered; the registry takes ownership of the channels.

        A partial catalog (fewer items than SumNum arrived) is merged instead: channels it lacks
        were more likely lost in transit than removed, and dropping them would hide cameras.
        """
        device = self._devices[device_id]
        old = self._catalogs.get(device_id, {})
        new = dict(old) if partial else {}
        for channel in channels:
            channel = _own_channel(channel, device)
            new[channel.id] = channel
        for channel_id in old.keys() - new.keys():
            self._unindex(channel_id, device_id)
        if self._channel_listeners:
            for channel_id, channel in new.items():
                before = old.get(channel_id)
                if before is None:
                    self._channel_changed(device_id, "ADD", channel)
                elif before != channel:
                    self._channel_changed(device_id, "UPDATE", channel)
            for channel_id in old.keys() - new.keys():
                self._channel_changed(device_id, "DEL", old[channel_id])
        for channel_id in new:
            self._channel_owner[channel_id] = device_id
        if new:
            self._catalogs[device_id] = new
        else:
            self._catalogs.pop(device_id, None)
        device.channel_count = len(new)
        device.catalog_partial = partial
        self._dirty_devices.add(device_id)
        self._dirty_catalogs.add(device_id)
        self._dirty_channels.pop(device_id, None)
        self._changed.set()

    def merge_channels(self, device_id: str, channels: Iterable[Channel]) -> None:
        """Add or update channels of a catalog still arriving (one page of it); the registry takes them.

        The page's 200 tells the device it was accepted, so its channels must be stored before the whole
        catalog is (a crash half way would otherwise lose every page acknowledged so far). Only these
        channels go into the next commit: an NVR paging 2,000 channels two at a time would otherwise
        rewrite its catalog a thousand times. The catalog is flagged partial until the complete answer
        replaces it (`replace_channels`), which also drops what the device no longer announces.
        """
        device = self._devices[device_id]
        owned = [_own_channel(channel, device) for channel in channels]
        if not owned:
            return
        catalog = self._catalogs.setdefault(device_id, {})
        dirty = self._dirty_channels.setdefault(device_id, set())
        for channel in owned:
            before = catalog.get(channel.id)
            catalog[channel.id] = channel
            self._channel_owner[channel.id] = device_id
            dirty.add(channel.id)
            if before is None:
                self._channel_changed(device_id, "ADD", channel)
            elif before != channel:
                self._channel_changed(device_id, "UPDATE", channel)
        device.channel_count = len(catalog)
        device.catalog_partial = True
        self._dirty_devices.add(device_id)
        self._changed.set()

    def apply_channel_event(self, device_id: str, event: str, channel: Channel) -> bool:
        """Apply one catalog notification item; returns whether anything changed.

        ADD and UPDATE insert or overwrite; DEL removes; ON, OFF, VLOST and DEFECT set the status
        of a known channel (they are ignored for an unknown one: an id alone is no catalog item).
        """
        if event not in CHANNEL_EVENTS:
            raise ValueError(f"unknown catalog event {event!r}")
        device = self._devices[device_id]
        catalog = self._catalogs.get(device_id)
        existing = catalog.get(channel.id) if catalog else None
        if event == "DEL":
            if catalog is None or existing is None:
                return False
            del catalog[channel.id]
            self._unindex(channel.id, device_id)
            if not catalog:
                del self._catalogs[device_id]
            channel = existing
        elif event in ("ADD", "UPDATE"):
            channel = _own_channel(channel, device)
            if catalog is None:
                catalog = self._catalogs[device_id] = {}
            catalog[channel.id] = channel
            self._channel_owner[channel.id] = device_id
        else:
            status = _STATUS_OF_EVENT[event]
            if catalog is None or existing is None or existing.status == status:
                return False
            channel = catalog[channel.id] = dataclasses.replace(existing, status=status)
        self._channel_changed(device_id, event, channel)
        self._dirty_channels.setdefault(device_id, set()).add(channel.id)
        self._changed.set()
        count = len(self._catalogs.get(device_id, ()))
        if device.channel_count != count:
            device.channel_count = count
            self._dirty_devices.add(device_id)
        return True

    def _unindex(self, channel_id: str, device_id: str) -> None:
        if self._channel_owner.get(channel_id) == device_id:
            del self._channel_owner[channel_id]

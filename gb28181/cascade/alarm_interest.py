"""The uppers' Alarm subscriptions passed down: the devices they name are subscribed to alarms.

Many IPCs report alarms only while a platform holds an alarm subscription with them (§9.7), so an
upper subscribing to the gateway's alarms would otherwise hear nothing from them. While an upper's
Alarm subscription lasts, the devices of the shared channels it names are subscribed through
:class:`~gbgw.gb28181.devices.device_subscriptions.EventSubscriptions`: the device of the one shared
channel (or shared device) it names, or of every shared channel when it names the gateway or an
organisation (civil code, business group, virtual organisation). A named ID that is neither shared nor
an organisation subscribes nothing: the upper cannot reach past the boundary by naming it.

One object for all uppers, so a device two uppers want is subscribed once and ended only when neither
wants it. When ``sip.alarm_subscribe`` is on the gateway subscribes every device itself and keeps the
subscriptions: nothing is started or ended here then. A wanted device that comes online (or a device
whose catalog now holds a shared channel) is subscribed then; what it ends is never ours to end again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gbgw.gb28181.boundary.policy import SharePolicy
from gbgw.gb28181.cascade.catalog import is_organisation
from gbgw.gb28181.devices.device_subscriptions import EventKind, EventSubscriptions, SubscriptionState
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Channel, Device

log = structlog.get_logger("gb28181.cascade.alarm_interest")

SETTLE = 0.1
"""A device that just came online is still handling our 200 to its REGISTER."""
_RUNNING = frozenset({SubscriptionState.PENDING, SubscriptionState.ACTIVE})


@dataclass(slots=True)
class _Interest:
    policy: SharePolicy
    named: str | None
    """The local ID the upper's subscription names; None: everything shared."""


class AlarmInterest:
    """Which devices the uppers' Alarm subscriptions need subscribed, kept subscribed while they do.

    ``keep_own`` says whether the gateway subscribes every device itself (``sip.alarm_subscribe``).
    """

    def __init__(self, registry: DeviceRegistry, events: EventSubscriptions, tasks: BackgroundTasks,
                 keep_own: Callable[[], bool], system_id: str) -> None:
        self.registry = registry
        self.events = events
        self.tasks = tasks
        self.keep_own = keep_own
        self.system_id = system_id
        self._interests: dict[str, _Interest] = {}
        self.wanted: set[str] = set()
        """Device IDs some upper's Alarm subscription covers."""
        registry.add_status_listener(self._on_device)
        registry.add_channel_listener(self._on_channel)

    # -- the uppers' side ----------------------------------------------------------------------------

    def want(self, upstream: str, policy: SharePolicy, upper_target: str | None) -> None:
        """The upper ``upstream`` subscribed (or refreshed) to alarms of ``upper_target`` (its DeviceID)."""
        named: str | None = None
        if upper_target and upper_target != self.system_id and not is_organisation(upper_target):
            named = policy.to_local(upper_target)
        self._interests[upstream] = _Interest(policy, named)
        self.refresh()

    def release(self, upstream: str) -> None:
        """The upper's subscription ended (or the upstream is gone)."""
        if self._interests.pop(upstream, None) is not None:
            self.refresh()

    def refresh(self) -> None:
        """Recompute what is wanted (a subscription came or went, a reload changed a policy): subscribe
        the newly wanted devices, end the subscriptions no upper wants any more."""
        wanted: set[str] = set()
        for interest in self._interests.values():
            wanted |= self._devices_of(interest)
        dropped = self.wanted - wanted
        self.wanted = wanted
        if self.keep_own():
            return
        for device_id in sorted(wanted):
            self._ensure(device_id)
        for device_id in sorted(dropped):
            sub = self.events.get(device_id, EventKind.ALARM)
            if sub is not None and sub.state is SubscriptionState.ACTIVE:
                log.info("device alarm subscription no longer wanted by an upper", device=device_id)
                self.tasks.spawn(self.events.unsubscribe(device_id, EventKind.ALARM))

    def _devices_of(self, interest: _Interest) -> set[str]:
        policy = interest.policy
        registry = self.registry
        named = interest.named
        if named is not None:
            if not named or not policy.shared(named):
                return set()
            channel = registry.channel(named)
            device_id = channel.device_id if channel is not None else named
            return {device_id} if device_id in registry else set()
        return {device.id for device in registry.devices() if self._shares_device(policy, device.id)}

    def _shares_device(self, policy: SharePolicy, device_id: str) -> bool:
        shared = policy.shared
        return shared(device_id) or any(shared(channel.id) and not is_organisation(channel.id)
                                        for channel in self.registry.channels(device_id))

    # -- the devices' side ---------------------------------------------------------------------------

    def _ensure(self, device_id: str) -> None:
        device = self.registry.get(device_id)
        if device is None or not device.online:
            return
        sub = self.events.get(device_id, EventKind.ALARM)
        if sub is None or sub.state not in _RUNNING:
            self.tasks.spawn(self._subscribe(device_id))

    async def _subscribe(self, device_id: str) -> None:
        await asyncio.sleep(SETTLE)
        if device_id not in self.wanted or self.keep_own():
            return
        sub = self.events.get(device_id, EventKind.ALARM)
        if sub is not None and sub.state in _RUNNING:
            return
        log.info("device subscribed to alarms for an upper", device=device_id)
        sub = await self.events.subscribe(device_id, EventKind.ALARM)
        # The upper may have left while the device answered: ``refresh`` saw it pending, not active.
        if sub.state is SubscriptionState.ACTIVE and device_id not in self.wanted and not self.keep_own():
            await self.events.unsubscribe(device_id, EventKind.ALARM)

    def _on_device(self, device: Device, online: bool, reason: str) -> None:
        if online and device.id in self.wanted and not self.keep_own():
            self._ensure(device.id)

    def _on_channel(self, device_id: str, event: str, channel: Channel) -> None:
        # A catalog arriving after the upper subscribed brings shared channels of devices not wanted yet.
        if event != "ADD" or device_id in self.wanted or self.keep_own():
            return
        if any(interest.named is None and interest.policy.shared(channel.id) and not is_organisation(channel.id)
               for interest in self._interests.values()):
            self.wanted.add(device_id)
            self._ensure(device_id)

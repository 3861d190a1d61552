"""Alarms upward: each device alarm reaches every upper platform that shares its channel, and none is lost.

The path is a durable outbox (``Storage.enqueue``), one topic per upper. An alarm is queued while the
device's MESSAGE is still unanswered (``DeviceMessages`` awaits the listener before its 200), so an alarm
the device saw accepted is on disk even if the gateway is killed the next instant; one the device did
not see accepted is sent again by the device, and the dedup key (device, SN, alarm time) makes that
repeat a no-op. An alarm leaves the outbox only once the upper answered 2xx, so an upper outage or a
crash between sending and the answer costs a repeat at worst, never a loss.

Per upper, one task empties the outbox in queue order while the link is online: as an in-dialog
NOTIFY when the upper holds an Alarm subscription (whose priority and method filters are honoured),
else as a MESSAGE. When the upper does not answer or answers as if it were down, delivery holds with
exponential back-off and resumes at the head of the queue, which keeps the order; an alarm the upper
refuses on its own (a 4xx) is set aside with its own back-off so it cannot block the ones behind it.

Uppers come and go with a reload (:meth:`AlarmForwarding.add_link`, :meth:`AlarmForwarding.remove_link`):
a removed upper's delivery stops and its outbox rows stay, so an upper added back under the same name
gets what it missed. While an upper holds an Alarm subscription, the devices it covers are subscribed
to alarms (:mod:`~gbgw.gb28181.cascade.alarm_interest`), until it ends or expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum

import structlog

from gbgw.gb28181 import manscdp
from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.cascade.alarm_interest import AlarmInterest
from gbgw.gb28181.cascade.link import UpperSubscription, UpstreamError, UpstreamLink
from gbgw.gb28181.manscdp import ManscdpDocument
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.registry.model import Alarm
from gbgw.registry.storage import OutboxItem, Storage

log = structlog.get_logger("gb28181.cascade.alarms")

BATCH = 50
"""Outbox items read per query; more are read at once when a batch was full."""
ACKED_KEPT = 86400.0
"""Delivered alarms are remembered this long, so a device repeating one within a day is still recognised."""
PRUNE_INTERVAL = 3600.0
FIRST_RETRY = 1.0
ERROR_PAUSE = 5.0
"""Wait after the storage itself failed (disk full, locked) before reading the outbox again."""
DEFAULT_PRIORITY = 4
"""Sent when the device gave no usable AlarmPriority (mandatory upward): 4, the lowest, claims no urgency."""
DEFAULT_METHOD = 2
"""Sent when the device gave no usable AlarmMethod: 2, device alarm, is what any device-raised alarm is."""
# Answers that say the upper as a whole cannot take anything now (down, overloaded, no longer knows us):
# every alarm behind this one would get the same, so the queue holds instead of moving on.
_UPPER_DOWN = frozenset({401, 403, 407, 408, 480})


def encode_alarm(alarm: Alarm, channel_id: str) -> bytes:
    """The outbox payload for one upper: the stored alarm with ``channel_id`` the device-side ID that upper
    knows it by (mapped when sent), enough to build the notification again after a restart."""
    fields = dataclasses.asdict(alarm)
    fields.update(channel_id=channel_id, id=None)
    return json.dumps(fields, ensure_ascii=False).encode()


def decode_alarm(payload: bytes) -> Alarm:
    """Raises ValueError or TypeError for a payload this release cannot read."""
    fields = json.loads(payload)
    if not isinstance(fields, dict):
        raise ValueError("not an object")
    return Alarm(**fields)


def dedup_key(alarm: Alarm) -> str:
    return f"{alarm.device_id},{alarm.sn},{alarm.time}"


def _digits(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isascii() and text.isdigit() else None


def subscription_wants(query: ManscdpDocument, alarm: Alarm) -> bool:
    """Whether the alarm passes the filters of an Alarm SUBSCRIBE (A.2.4 e): a priority range
    (StartAlarmPriority..EndAlarmPriority, 0 or absent for all) and the methods as a string of digits
    ("12": telephone or device; "0" or absent for all). A value the device left out passes: the upper
    asked to hear about a kind of alarm, and nothing says this one is of another kind."""
    priority = _digits(alarm.priority)
    bounds = [b for b in (_digits(query.text("StartAlarmPriority")), _digits(query.text("EndAlarmPriority"))) if b]
    if priority is not None and bounds and not min(bounds) <= priority <= max(bounds):
        return False
    methods = set(query.text("AlarmMethod") or "")
    return not methods or "0" in methods or not alarm.method or alarm.method in methods


def notification(sn: int, upper_id: str, alarm: Alarm) -> ManscdpDocument:
    """The Notify Alarm toward the upper, built fresh from the stored fields (nothing of the device's
    own message crosses)."""
    return manscdp.notify_alarm(
        sn,
        upper_id,
        priority=_digits(alarm.priority) or DEFAULT_PRIORITY,
        method=_digits(alarm.method) or DEFAULT_METHOD,
        time=alarm.time or datetime.fromtimestamp(alarm.received_at),
        description=alarm.description or None,
        longitude=alarm.longitude,
        latitude=alarm.latitude,
        alarm_type=_digits(alarm.alarm_type),
    )


class _Outcome(Enum):
    DONE = "done"
    """Delivered, or finished with for good (filtered out by the upper's subscription, unreadable)."""
    SET_ASIDE = "set-aside"
    """The upper refused this alarm; it is retried later while the ones behind it go on."""
    HOLD = "hold"
    """The upper is not taking anything now; the queue waits and resumes at this alarm."""


class AlarmDelivery:
    """The outbox of one upper and the task that empties it.

    ``_hold_until`` (loop time) is the back-off after the upper failed as a whole: the head alarm stays
    due, so when the hold ends delivery resumes with it and the order is kept. Alarms set aside after a
    refusal of their own are due again at wall-clock times kept in ``_set_aside`` (a heap), so the task
    knows when to look again without polling.
    """

    def __init__(self, link: UpstreamLink, storage: Storage, clock: Callable[[], float], audit: AuditLog,
                 metrics: GatewayMetrics, interest: AlarmInterest | None = None) -> None:
        self.link = link
        self.interest = interest
        self._expiry: asyncio.TimerHandle | None = None
        self.topic = f"alarm:{link.name}"
        self.storage = storage
        self.clock = clock
        self._audit = audit
        self._forwarded = metrics.alarms_forwarded.labels(link.name)
        self._wake = asyncio.Event()
        self._hold_until = 0.0
        self._expedite = True
        """Make everything due at once on the next pass: set at start and whenever the link comes online."""
        self._set_aside: list[float] = []
        self._task: asyncio.Task[None] | None = None
        link.add_status_listener(self._on_link_status)
        link.handle_subscribe("Alarm", self._on_subscribed, self._on_unsubscribed)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._cancel_expiry()
        if self.interest is not None:
            self.interest.release(self.link.name)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    def _on_link_status(self, link: UpstreamLink, online: bool) -> None:
        if online:
            # The upper is back (or restarted and took our registration again): what waited for it
            # goes now, not after the rest of a back-off sized for a long outage.
            self._hold_until = 0.0
            self._expedite = True
            self.wake()

    def _on_subscribed(self, sub: UpperSubscription) -> None:
        log.info("upper subscribed to alarms", upstream=self.link.name,
                 priorities=f"{sub.query.text('StartAlarmPriority')}-{sub.query.text('EndAlarmPriority')}",
                 methods=sub.query.text("AlarmMethod"))
        if self.interest is not None:
            self.interest.want(self.link.name, self.link.policy, sub.query.device_id)
            # Nobody asks the link about an idle subscription: the devices' subscriptions would outlive it.
            self._cancel_expiry()
            self._arm_expiry(sub)
        self.wake()

    def _on_unsubscribed(self, sub: UpperSubscription) -> None:
        log.info("upper alarm subscription ended", upstream=self.link.name)
        self._cancel_expiry()
        if self.interest is not None:
            self.interest.release(self.link.name)

    def _check_expiry(self) -> None:
        self._expiry = None
        # Forgets an expired subscription, which ends it (``_on_unsubscribed``); a refreshed one re-armed us.
        sub = self.link.subscription("Alarm")
        if sub is not None and self._expiry is None:
            self._arm_expiry(sub)

    def _arm_expiry(self, sub: UpperSubscription) -> None:
        loop = asyncio.get_running_loop()
        # Subscription times are the link transport's, which is the loop's clock.
        self._expiry = loop.call_later(max(0.0, sub.expires_at - loop.time()) + 1.0, self._check_expiry)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt after ``attempts`` earlier failed ones (1, 2, 4... up to the
        configured maximum)."""
        return min(FIRST_RETRY * 2 ** min(attempts, 30), self.link.config.alarm_retry_max)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                pause = await self._pass()
            except Exception:
                log.exception("alarm outbox unreadable", upstream=self.link.name)
                pause = ERROR_PAUSE
            if pause == 0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _pass(self) -> float | None:
        """Deliver what is due; return how long to wait before the next pass (None: until woken)."""
        if not self.link.online:
            return None
        loop = asyncio.get_running_loop()
        hold = self._hold_until - loop.time()
        if hold > 0:
            return hold
        now = self.clock()
        if self._expedite:
            self._expedite = False
            self._set_aside.clear()
            await self.storage.expedite(self.topic, now)
        while self._set_aside and self._set_aside[0] <= now:
            heapq.heappop(self._set_aside)
        items = await self.storage.due(self.topic, now, BATCH)
        for item in items:
            if not self.link.online:
                return None
            outcome = await self._attempt(item)
            if outcome is _Outcome.HOLD:
                delay = self.backoff(item.attempts)
                self._hold_until = loop.time() + delay
                return delay
        if len(items) == BATCH:
            return 0
        if self._set_aside:
            return max(0.0, self._set_aside[0] - self.clock())
        return None

    async def _attempt(self, item: OutboxItem) -> _Outcome:
        link = self.link
        try:
            alarm = decode_alarm(item.payload)
        except (ValueError, TypeError) as exc:
            log.error("unreadable alarm dropped from the outbox", upstream=link.name, item=item.id, reason=str(exc))
            await self.storage.ack(item.id)
            return _Outcome.DONE
        sub = link.subscription("Alarm")
        if sub is not None and not subscription_wants(sub.query, alarm):
            await self.storage.ack(item.id)
            self.record(alarm, "filtered", via="NOTIFY")
            return _Outcome.DONE
        upper_id = link.policy.to_upper(alarm.channel_id)
        # Our SN, fixed per queued alarm (its outbox id): a repeat after a lost 200, even from a
        # restarted gateway, carries the same SN, so the upper can tell it from a new alarm.
        doc = notification(item.id % 1_000_000_000, upper_id, alarm)
        via = "NOTIFY" if sub is not None else "MESSAGE"
        try:
            if sub is not None:
                await sub.notify(doc)
            else:
                await link.send_manscdp(doc)
        except UpstreamError as exc:
            if sub is not None and exc.status == 481 and link.subscriptions.get("Alarm") is sub:
                # The upper forgot the subscription (it restarted): a MESSAGE still delivers the alarm.
                link.drop_subscription("Alarm")
                return await self._attempt(item)
            return await self._failed(item, alarm, via, str(exc), exc.status)
        except OSError as exc:
            return await self._failed(item, alarm, via, str(exc), None)
        await self.storage.ack(item.id)
        self._forwarded.inc()
        self.record(alarm, "delivered", via=via, upper_channel=upper_id, attempts=item.attempts + 1)
        log.info("alarm forwarded", upstream=link.name, channel=alarm.channel_id, via=via)
        return _Outcome.DONE

    async def _failed(self, item: OutboxItem, alarm: Alarm, via: str, reason: str,
                      status: int | None) -> _Outcome:
        now = self.clock()
        delay = self.backoff(item.attempts)
        upper_down = status is None or status in _UPPER_DOWN or 500 <= status < 600
        self.record(alarm, "retry", via=via, attempts=item.attempts + 1, reason=reason, retry_in=delay)
        log.warning("alarm not accepted by the upper", upstream=self.link.name, channel=alarm.channel_id,
                    reason=reason, attempts=item.attempts + 1, retry_in=delay)
        if upper_down:
            # Stays due: the hold in memory spaces the attempts, and the queue resumes with this alarm.
            await self.storage.retry(item.id, now)
            return _Outcome.HOLD
        await self.storage.retry(item.id, now + delay)
        heapq.heappush(self._set_aside, now + delay)
        return _Outcome.SET_ASIDE

    def record(self, alarm: Alarm, result: str, **fields: object) -> None:
        self._audit.record(
            "alarm", result, upstream=self.link.name, device=alarm.device_id, channel=alarm.channel_id,
            sn=alarm.sn, alarm_time=alarm.time, priority=alarm.priority, method=alarm.method,
            alarm_type=alarm.alarm_type, **fields,
        )


class AlarmForwarding:
    """Queues each device alarm for the uppers that share its channel and runs their deliveries."""

    def __init__(
        self,
        links: list[UpstreamLink],
        storage: Storage,
        clock: Callable[[], float],
        alarm_intake: Callable[[Callable[[Alarm], Awaitable[None]]], None],
        audit: AuditLog,
        metrics: GatewayMetrics,
        interest: AlarmInterest | None = None,
    ) -> None:
        self.storage = storage
        self.clock = clock
        """Wall-clock time (outbox times must mean the same after a restart)."""
        self.audit = audit
        self.metrics = metrics
        self.interest = interest
        self.deliveries: dict[str, AlarmDelivery] = {}
        for link in links:
            self._delivery_for(link)
        self._started = False
        self._prune_task: asyncio.Task[None] | None = None
        # Registered here rather than in start(): the device side is already answering by now, and an
        # alarm accepted without this listener would never be queued upward.
        alarm_intake(self._on_alarm)

    def _delivery_for(self, link: UpstreamLink) -> AlarmDelivery | None:
        if not link.config.alarms:
            return None
        delivery = AlarmDelivery(link, self.storage, self.clock, self.audit, self.metrics, self.interest)
        self.deliveries[link.name] = delivery
        return delivery

    async def start(self) -> None:
        self._started = True
        for delivery in self.deliveries.values():
            delivery.start()
        # Always, not only with uppers at start: one added by a reload has acknowledged rows to prune too.
        self._prune_task = asyncio.get_running_loop().create_task(self._prune())

    def add_link(self, link: UpstreamLink) -> None:
        """An upstream added by a reload: its alarms are queued from now on, and what its outbox still
        holds (an upper removed and added back) is delivered."""
        delivery = self._delivery_for(link)
        if delivery is not None and self._started:
            delivery.start()

    async def remove_link(self, name: str) -> None:
        """An upstream removed by a reload: nothing more is queued or sent to it; its outbox keeps its rows."""
        delivery = self.deliveries.pop(name, None)
        if delivery is not None:
            await delivery.stop()

    async def stop(self) -> None:
        if self._prune_task is not None:
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task
            self._prune_task = None
        for delivery in self.deliveries.values():
            await delivery.stop()

    async def _on_alarm(self, alarm: Alarm) -> None:
        """Queue the alarm for each upper sharing it. Errors propagate: the device then gets a 500 and
        sends the alarm again, and the dedup key makes whatever was already queued a no-op."""
        now = self.clock()
        key = dedup_key(alarm)
        for delivery in list(self.deliveries.values()):
            policy = delivery.link.policy
            # An alarm about something the upper does not see (an alarm input, an NVR's own ID) is still
            # reported when the device is shared: under the device's ID, which the upper knows.
            if policy.shared(alarm.channel_id):
                channel_id = alarm.channel_id
            elif policy.shared(alarm.device_id):
                channel_id = alarm.device_id
            else:
                continue
            queued = dataclasses.replace(alarm, channel_id=channel_id)
            if await self.storage.enqueue(delivery.topic, key, encode_alarm(alarm, channel_id), now):
                delivery.record(queued, "queued")
                delivery.wake()
            else:
                log.info("repeated alarm ignored", upstream=delivery.link.name, device=alarm.device_id,
                         sn=alarm.sn, alarm_time=alarm.time)

    async def _prune(self) -> None:
        while True:
            try:
                await self.storage.prune_outbox(self.clock() - ACKED_KEPT)
            except Exception:
                log.exception("alarm outbox not pruned")
            await asyncio.sleep(PRUNE_INTERVAL)

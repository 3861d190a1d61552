"""Live events: what happened in the gateway, as it happens, for ``GET /api/events`` (Server-Sent Events)
and the configured webhooks (``events.webhooks``).

Services publish to one in-process :class:`EventBus`; :class:`EventSources` turns their listener calls
(registry status and channel changes, stored alarms, refused REGISTERs, live sessions) into events.
Publishing never waits: each subscriber has a bounded queue. A subscriber that falls behind either is
dropped, with a final ``stream.dropped`` event telling it so (an SSE client reconnects and reads what it
missed from the REST resources), or loses its oldest events (a webhook, whose receiver may be down for a
while and must not hold memory without bound); both say so in the log.

A webhook receiver gets each event as one JSON POST, in order; a failed POST (no connection, a timeout,
a non-2xx answer) is retried with growing delays until it is delivered or pushed out of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

import aiohttp
import structlog

from gbgw.gb28181.observe.event_types import EventType, Webhook
from gbgw.registry.model import Alarm, Channel, Device

if TYPE_CHECKING:
    from gbgw.gb28181.devices.diagnostics import FailedRegistration
    from gbgw.gb28181.media.live import Session

log = structlog.get_logger("gb28181.events")

SUBSCRIBER_QUEUE = 256
"""Events an SSE client may fall behind by before it is dropped."""
WEBHOOK_QUEUE = 1000
RETRY_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Seconds between the POSTs of one undelivered event; the last repeats."""
POST_TIMEOUT = 5.0


class Overflow(Enum):
    DISCONNECT = "disconnect"
    DROP_OLDEST = "drop oldest"


@dataclass(slots=True, frozen=True)
class GatewayEvent:
    seq: int
    type: EventType
    at: float
    data: dict[str, Any]

    def json(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.type.value, "at": _iso(self.at), **self.data}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


class Subscriber:
    """One reader of the bus: ``await next()`` gives its events in order, None once it is closed."""

    def __init__(self, types: frozenset[EventType] | None, size: int, overflow: Overflow) -> None:
        self.types = types
        self.size = size
        self.overflow = overflow
        self.lost = 0
        self.closed = False
        self._queue: deque[GatewayEvent] = deque()
        self._wake = asyncio.Event()

    def wants(self, event: GatewayEvent) -> bool:
        return self.types is None or event.type in self.types

    def push(self, event: GatewayEvent, final: Callable[[int], GatewayEvent]) -> bool:
        """Queue ``event``; False when this subscriber is dropped for falling behind."""
        if self.closed:
            return False
        queue = self._queue
        if len(queue) >= self.size:
            if self.overflow is Overflow.DISCONNECT:
                queue.append(final(len(queue)))
                self.close()
                return False
            queue.popleft()
            self.lost += 1
        queue.append(event)
        self._wake.set()
        return True

    def put_back(self, event: GatewayEvent) -> None:
        """An event taken but not delivered goes first again (a webhook's retry)."""
        self._queue.appendleft(event)

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next(self) -> GatewayEvent | None:
        while not self._queue:
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self._queue.popleft()


class EventBus:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._seq = itertools.count(1)
        self._subscribers: list[Subscriber] = []

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, types: frozenset[EventType] | None = None, size: int = SUBSCRIBER_QUEUE,
                  overflow: Overflow = Overflow.DISCONNECT) -> Subscriber:
        subscriber = Subscriber(types, size, overflow)
        self._subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.close()
        with contextlib.suppress(ValueError):
            self._subscribers.remove(subscriber)

    def publish(self, type_: EventType, **data: Any) -> GatewayEvent:
        event = GatewayEvent(next(self._seq), type_, self.clock(), data)
        dropped = [s for s in self._subscribers if s.wants(event) and not s.push(event, self._final)]
        for subscriber in dropped:
            log.warning("event subscriber fell behind and was dropped", queued=subscriber.size)
            self.unsubscribe(subscriber)
        return event

    def _final(self, queued: int) -> GatewayEvent:
        return GatewayEvent(next(self._seq), EventType.STREAM_DROPPED, self.clock(),
                            {"reason": f"more than {queued} events not read"})

    def close(self) -> None:
        """End every subscriber (the gateway stopping): SSE responses finish instead of hanging."""
        for subscriber in list(self._subscribers):
            self.unsubscribe(subscriber)


class EventSources:
    """The services' listener calls, as events: each method has the signature of the hook it is given to."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def device_status(self, device: Device, online: bool, reason: str) -> None:
        """A registry status listener."""
        host = f"[{device.host}]" if ":" in device.host else device.host
        self.bus.publish(EventType.DEVICE_ONLINE if online else EventType.DEVICE_OFFLINE, device_id=device.id,
                         reason=str(reason), address=f"{host}:{device.port}" if device.host else None)

    def registration_failed(self, failure: FailedRegistration) -> None:
        """A listener of the diagnostics' refused REGISTERs."""
        self.bus.publish(EventType.REGISTRATION_FAILED, device_id=failure.device_id, source=failure.source,
                         status=failure.status, reason=failure.reason, count=failure.count)

    async def alarm(self, alarm: Alarm) -> None:
        """An alarm listener of the device messages (called once the alarm is stored)."""
        self.bus.publish(EventType.ALARM, device_id=alarm.device_id, channel_id=alarm.channel_id,
                         priority=alarm.priority, method=alarm.method, alarm_type=alarm.alarm_type,
                         time=alarm.time, description=alarm.description)

    def channel_changed(self, device_id: str, change: str, channel: Channel) -> None:
        """A registry channel listener (catalog answers and catalog NOTIFYs alike)."""
        self.bus.publish(EventType.CATALOG_CHANGED, device_id=device_id, channel_id=channel.id, change=change,
                         name=channel.name or None, status=channel.status)

    def session(self, session: Session, started: bool) -> None:
        """A live-session listener: a receiver of a channel's stream started or ended."""
        stream = session.stream
        data: dict[str, Any] = {"session_id": session.id, "device_id": stream.device_id,
                                "channel_id": stream.channel_id, "owner": session.owner,
                                "transport": session.transport}
        if not started:
            data["reason"] = session.ended
        self.bus.publish(EventType.SESSION_STARTED if started else EventType.SESSION_ENDED, **data)


class WebhookDelivery:
    """POSTs the bus's events to each webhook, one task per webhook, in order, with retry."""

    def __init__(self, bus: EventBus, hooks: Sequence[Webhook], *, queue: int = WEBHOOK_QUEUE,
                 retry_delays: Sequence[float] = RETRY_DELAYS) -> None:
        self.bus = bus
        self.hooks = tuple(hooks)
        self.queue = queue
        self.retry_delays = tuple(retry_delays)
        self.delivered = 0
        self.failures = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribers: list[Subscriber] = []
        self._http: aiohttp.ClientSession | None = None

    def start(self) -> None:
        if not self.hooks:
            return
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT))
        loop = asyncio.get_running_loop()
        for hook in self.hooks:
            subscriber = self.bus.subscribe(hook.events, self.queue, Overflow.DROP_OLDEST)
            self._subscribers.append(subscriber)
            self._tasks.append(loop.create_task(self._deliver(hook, subscriber, self._http)))

    async def _deliver(self, hook: Webhook, subscriber: Subscriber, http: aiohttp.ClientSession) -> None:
        attempt = 0
        reported_lost = 0
        while (event := await subscriber.next()) is not None:
            if subscriber.lost > reported_lost:
                log.warning("webhook queue full: oldest events dropped", url=hook.url,
                            dropped=subscriber.lost - reported_lost)
                reported_lost = subscriber.lost
            problem = await self._post(http, hook.url, event)
            if problem is None:
                self.delivered += 1
                attempt = 0
                continue
            self.failures += 1
            delay = self.retry_delays[min(attempt, len(self.retry_delays) - 1)]
            if attempt == 0:
                log.info("webhook delivery failed, retrying", url=hook.url, seq=event.seq, reason=problem)
            attempt += 1
            subscriber.put_back(event)
            await asyncio.sleep(delay)

    @staticmethod
    async def _post(http: aiohttp.ClientSession, url: str, event: GatewayEvent) -> str | None:
        """None when the receiver took the event, else why not."""
        try:
            async with http.post(url, json=event.json()) as response:
                if 200 <= response.status < 300:
                    return None
                return f"answered {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return str(exc) or type(exc).__name__

    async def close(self) -> None:
        for subscriber in self._subscribers:
            self.bus.unsubscribe(subscriber)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.close()

"""Alarm and MobilePosition subscriptions to devices (SUBSCRIBE ``Event: presence``, GB/T 28181-2016
§9.7 and J.18), the event counterpart of the catalog subscription in ``subscriptions``.

Many IPCs report alarms (and vehicle or body cameras their positions) only while a platform is
subscribed, so a device coming online is subscribed to what ``sip.alarm_subscribe`` and
``sip.position_subscribe_interval`` ask for. The device's NOTIFYs arrive like its other NOTIFYs
(``DeviceMessages.on_notify`` stores alarms and positions). A subscription is refreshed in its dialog at
``REFRESH_AT`` of the time granted, from one heap served by the periodic tick, and ended with Expires: 0.
The body of each refresh repeats the subscription's query: devices read what to report from it.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import structlog

from gbgw.gb28181 import manscdp
from gbgw.gb28181.config import SipConfig
from gbgw.gb28181.devices.requests import DeviceRequests
from gbgw.gb28181.devices.subscriptions import REFRESH_AT
from gbgw.gb28181.manscdp import ManscdpDocument
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Device
from gbgw.sip.dialog import Dialog
from gbgw.sip.endpoint import Peer
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request, Response
from gbgw.sip.transport import SipTransport

log = structlog.get_logger("gb28181.subscriptions")

EVENT = "presence"
"""The Event package of alarm and position subscriptions in the standard's examples (J.18)."""
_CONTENT_TYPE = "Application/MANSCDP+xml"
# A device that just came online is still handling our 200 to its REGISTER.
_SETTLE = 0.1


class EventKind(StrEnum):
    ALARM = "alarm"
    POSITION = "position"


class SubscriptionState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    REFUSED = "refused"
    """the device answered the SUBSCRIBE with a non-2xx"""
    NO_ANSWER = "no answer"
    ENDED = "ended"
    """the device terminated it, or went offline"""
    UNSUBSCRIBED = "unsubscribed"


@dataclass(slots=True)
class EventSubscription:
    device_id: str
    kind: EventKind
    state: SubscriptionState
    sn: int
    dialog: Dialog | None = None
    expires_at: float = 0.0
    refresh_at: float = 0.0
    refreshes: int = 0
    status: int | None = None
    """The SIP status of the last SUBSCRIBE's answer."""
    interval: int | None = None
    """Seconds between position reports (position subscriptions)."""


class EventSubscriptions:
    """Per device and kind, the subscription and its state; ``tasks`` runs subscriptions started by a
    device coming online and by the tick."""

    def __init__(
        self,
        sip: SipConfig,
        registry: DeviceRegistry,
        transport: SipTransport,
        requests: DeviceRequests,
        tasks: BackgroundTasks,
        clock: Callable[[], float],
    ) -> None:
        self.sip = sip
        self.registry = registry
        self.transport = transport
        self.requests = requests
        self.tasks = tasks
        self.clock = clock
        self._subs: dict[tuple[str, EventKind], EventSubscription] = {}
        self._refresh: list[tuple[float, str, EventKind]] = []
        self._busy: set[tuple[str, EventKind]] = set()
        registry.add_status_listener(self._on_status)

    def of_device(self, device_id: str) -> dict[EventKind, EventSubscription]:
        return {kind: sub for (d, kind), sub in self._subs.items() if d == device_id}

    def get(self, device_id: str, kind: EventKind) -> EventSubscription | None:
        return self._subs.get((device_id, kind))

    def _wanted(self) -> list[EventKind]:
        kinds = []
        if self.sip.alarm_subscribe:
            kinds.append(EventKind.ALARM)
        if self.sip.position_subscribe_interval:
            kinds.append(EventKind.POSITION)
        return kinds

    def _on_status(self, device: Device, online: bool, reason: str) -> None:
        if not online:
            for kind in EventKind:
                sub = self._subs.get((device.id, kind))
                if sub is not None and sub.state is SubscriptionState.ACTIVE:
                    sub.state = SubscriptionState.ENDED
                    sub.dialog = None
            return
        wanted = self._wanted()
        if wanted:
            self.tasks.spawn(self._start(device.id, wanted))

    async def _start(self, device_id: str, kinds: list[EventKind]) -> None:
        await asyncio.sleep(_SETTLE)
        for kind in kinds:
            await self.subscribe(device_id, kind)

    # -- the SUBSCRIBE exchanges ---------------------------------------------------------------------

    def _body(self, sub: EventSubscription, device: Device) -> bytes:
        doc: ManscdpDocument
        if sub.kind is EventKind.ALARM:
            # Priority 0 to 0 and method 0: every alarm (A.2.4 e).
            doc = manscdp.query_alarm(sub.sn, device.id, start_priority=0, end_priority=0, method="0")
        else:
            doc = manscdp.query_mobile_position(sub.sn, device.id, interval=sub.interval)
        return manscdp.encode_body(doc, device.charset or self.sip.encoding)

    def _contact(self) -> str:
        transport = self.transport
        host = f"[{transport.host}]" if ":" in transport.host else transport.host
        return f"<sip:{self.sip.id}@{host}:{transport.port}>"

    async def subscribe(self, device_id: str, kind: EventKind, interval: int | None = None) -> EventSubscription:
        """Start (or restart) the device's subscription of ``kind``; its state says how it went."""
        key = (device_id, kind)
        device = self.registry.get(device_id)
        sub = EventSubscription(device_id, kind, SubscriptionState.PENDING, self.requests.next_sn())
        if kind is EventKind.POSITION:
            sub.interval = interval or self.sip.position_subscribe_interval or None
        if device is None or not device.online:
            sub.state = SubscriptionState.ENDED
            return sub
        if key in self._busy:
            return self._subs.get(key, sub)
        previous = self._subs.get(key)
        if previous is not None and previous.state is SubscriptionState.ACTIVE:
            await self.unsubscribe(device_id, kind)
        self._subs[key] = sub
        request, peer = self.requests.build_request("SUBSCRIBE", device)
        request.add("Event", EVENT)
        request.add("Expires", str(self.sip.event_subscribe_expires))
        request.add("Contact", self._contact())
        request.add("Content-Type", _CONTENT_TYPE)
        request.body = self._body(sub, device)
        response = await self._send(key, request, peer)
        if response is None:
            sub.state = SubscriptionState.NO_ANSWER
            log.info("event subscription not answered", device=device_id, kind=kind.value)
            return sub
        sub.status = response.status
        if response.status >= 300:
            sub.state = SubscriptionState.REFUSED
            log.info("device refused the event subscription", device=device_id, kind=kind.value,
                     status=response.status)
            return sub
        dialog = Dialog.from_uac(request, response, peer)
        dialog.local_contact = self._contact()
        sub.dialog = dialog
        self._granted(sub, response)
        log.info("event subscribed", device=device_id, kind=kind.value, expires=int(sub.expires_at - self.clock()))
        return sub

    async def _send(self, key: tuple[str, EventKind], request: Request, peer: Peer) -> Response | None:
        self._busy.add(key)
        try:
            return await self.transport.send_request(request, peer)
        except SipError:
            return None
        finally:
            self._busy.discard(key)

    def _granted(self, sub: EventSubscription, response: Response) -> None:
        asked = self.sip.event_subscribe_expires
        try:
            granted = response.expires or asked
        except SipError:
            granted = asked
        now = self.clock()
        sub.state = SubscriptionState.ACTIVE
        sub.expires_at = now + granted
        sub.refresh_at = now + granted * REFRESH_AT
        heapq.heappush(self._refresh, (sub.refresh_at, sub.device_id, sub.kind))

    def _in_dialog(self, sub: EventSubscription, device: Device, expires: int) -> Request:
        assert sub.dialog is not None
        return sub.dialog.create_request(
            "SUBSCRIBE",
            via=self.transport.via(device.transport),
            contact=sub.dialog.local_contact,
            body=self._body(sub, device),
            content_type=_CONTENT_TYPE,
            extra_headers=[("Event", EVENT), ("Expires", str(expires))],
        )

    async def refresh(self, device_id: str, kind: EventKind) -> EventSubscription | None:
        """Re-SUBSCRIBE in the dialog; subscribe afresh when the device lost it (481) or is silent."""
        key = (device_id, kind)
        sub = self._subs.get(key)
        device = self.registry.get(device_id)
        if sub is None or sub.dialog is None or sub.state is not SubscriptionState.ACTIVE:
            return sub
        if device is None or not device.online:
            sub.state = SubscriptionState.ENDED
            return sub
        request = self._in_dialog(sub, device, self.sip.event_subscribe_expires)
        response = await self._send(key, request, sub.dialog.peer)
        if response is not None and response.status < 300:
            sub.refreshes += 1
            sub.status = response.status
            self._granted(sub, response)
            log.info("event subscription refreshed", device=device_id, kind=kind.value)
            return sub
        log.info("event subscription refresh failed, subscribing again", device=device_id, kind=kind.value,
                 status=None if response is None else response.status)
        sub.state = SubscriptionState.ENDED
        return await self.subscribe(device_id, kind, sub.interval)

    async def unsubscribe(self, device_id: str, kind: EventKind) -> EventSubscription | None:
        """End the subscription (SUBSCRIBE Expires: 0 in its dialog); the device need not agree."""
        key = (device_id, kind)
        sub = self._subs.get(key)
        if sub is None or sub.dialog is None or sub.state is not SubscriptionState.ACTIVE:
            return sub
        device = self.registry.get(device_id)
        sub.state = SubscriptionState.UNSUBSCRIBED
        if device is not None and device.online:
            response = await self._send(key, self._in_dialog(sub, device, 0), sub.dialog.peer)
            sub.status = None if response is None else response.status
        sub.dialog = None
        log.info("event unsubscribed", device=device_id, kind=kind.value)
        return sub

    # -- the device's side and the tick --------------------------------------------------------------

    def owns(self, device_id: str, notify: Request) -> EventSubscription | None:
        """The subscription a NOTIFY belongs to (by its dialog), if it is one of ours."""
        for kind in EventKind:
            sub = self._subs.get((device_id, kind))
            if sub is not None and sub.dialog is not None and notify.call_id == sub.dialog.call_id:
                return sub
        return None

    def terminated(self, device_id: str, notify: Request) -> None:
        """The device ended a subscription (NOTIFY with Subscription-State: terminated)."""
        sub = self.owns(device_id, notify)
        if sub is not None:
            sub.state = SubscriptionState.ENDED
            sub.dialog = None
            log.info("device ended the event subscription", device=device_id, kind=sub.kind.value)

    def due(self, now: float) -> list[tuple[str, EventKind]]:
        out = []
        heap = self._refresh
        while heap and heap[0][0] <= now:
            at, device_id, kind = heapq.heappop(heap)
            sub = self._subs.get((device_id, kind))
            # Each grant pushes an entry: only the one of the current grant is live.
            if (sub is not None and sub.state is SubscriptionState.ACTIVE and at == sub.refresh_at
                    and (device_id, kind) not in self._busy):
                out.append((device_id, kind))
        return out

    def tick(self) -> None:
        """Start the refreshes that are due (from the daemon's periodic tick)."""
        for device_id, kind in self.due(self.clock()):
            self.tasks.spawn(self.refresh(device_id, kind))

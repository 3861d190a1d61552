"""Catalog subscriptions to devices (SUBSCRIBE Event: Catalog, GB/T 28181-2016 §9.11).

A device that accepts one sends NOTIFY with catalog changes (ON/OFF/ADD/DEL/UPDATE) for as long as the
subscription lives; we refresh it in its dialog before it expires. Refreshes are kept in one heap served
by the periodic tick rather than one sleeping task per device, because a node holds 100,000 devices.
A device that refuses (many cameras answer 4xx or never answer) is simply not subscribed: polling the
catalog on registration still keeps the registry right.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gbgw.gb28181 import manscdp
from gbgw.gb28181.config import SipConfig
from gbgw.gb28181.devices.requests import DeviceRequests
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Device
from gbgw.sip.dialog import Dialog, event_key
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request, Response
from gbgw.sip.transport import SipTransport

log = structlog.get_logger("gb28181.subscriptions")

# Refresh at this share of the granted time, as RFC 6665 clients commonly do.
REFRESH_AT = 0.8


@dataclass(slots=True)
class CatalogSubscription:
    device_id: str
    dialog: Dialog
    event: str
    expires_at: float


class CatalogSubscriptions:
    """The subscriptions held, by device. A device going offline loses its subscription with its dialog.

    ``requests`` numbers the SUBSCRIBE's query and builds the out-of-dialog request."""

    def __init__(
        self,
        sip: SipConfig,
        registry: DeviceRegistry,
        transport: SipTransport,
        requests: DeviceRequests,
        clock: Callable[[], float],
    ) -> None:
        self.sip = sip
        self.registry = registry
        self.transport = transport
        self.requests = requests
        self.clock = clock
        registry.add_status_listener(self._on_status)
        self._by_device: dict[str, CatalogSubscription] = {}
        self._refresh: list[tuple[float, str]] = []
        self._busy: set[str] = set()

    def get(self, device_id: str) -> CatalogSubscription | None:
        return self._by_device.get(device_id)

    def __len__(self) -> int:
        return len(self._by_device)

    def _on_status(self, device: Device, online: bool, reason: str) -> None:
        if not online:
            self.drop(device.id)

    def drop(self, device_id: str) -> None:
        """Forget a device's subscription (it went offline: its dialog is gone with it)."""
        self._by_device.pop(device_id, None)

    async def subscribe(self, device_id: str) -> bool:
        """Start a subscription; False when the device refuses or does not answer."""
        device = self.registry.get(device_id)
        if device is None or device_id in self._busy:
            return False
        cfg = self.sip
        sn = self.requests.next_sn()
        request, peer = self.requests.build_request("SUBSCRIBE", device)
        event = f"Catalog;id={sn}"
        request.add("Event", event)
        request.add("Expires", str(cfg.catalog_subscribe_expires))
        request.add("Contact", self._contact())
        request.add("Content-Type", "Application/MANSCDP+xml")
        request.body = manscdp.encode_body(manscdp.query_catalog(sn, device_id), device.charset or cfg.encoding)
        self._busy.add(device_id)
        try:
            response = await self.transport.send_request(request, peer)
        except SipError as exc:
            log.info("catalog subscription not answered", device=device_id, reason=exc.reason)
            return False
        finally:
            self._busy.discard(device_id)
        if response.status >= 300:
            log.info("device refused the catalog subscription", device=device_id, status=response.status)
            return False
        dialog = Dialog.from_uac(request, response, peer)
        dialog.local_contact = self._contact()
        dialog.event = event_key(request)
        self._store(device_id, dialog, event, self._granted(response, cfg.catalog_subscribe_expires))
        log.info("catalog subscribed", device=device_id, expires=int(self._by_device[device_id].expires_at
                                                                      - self.clock()))
        return True

    def _store(self, device_id: str, dialog: Dialog, event: str, granted: int) -> None:
        now = self.clock()
        self._by_device[device_id] = CatalogSubscription(device_id, dialog, event, now + granted)
        heapq.heappush(self._refresh, (now + granted * REFRESH_AT, device_id))

    def _contact(self) -> str:
        transport = self.transport
        host = f"[{transport.host}]" if ":" in transport.host else transport.host
        return f"<sip:{self.sip.id}@{host}:{transport.port}>"

    @staticmethod
    def _granted(response: Response, asked: int) -> int:
        """The subscription time the device granted (Expires), or what we asked for if it says nothing."""
        try:
            expires = response.expires
        except SipError:
            return asked
        return expires if expires else asked

    def owns(self, device_id: str, notify: Request) -> bool:
        """Whether a NOTIFY belongs to the subscription we hold for the device."""
        sub = self._by_device.get(device_id)
        return sub is not None and notify.call_id == sub.dialog.call_id

    def terminated(self, device_id: str) -> None:
        if self._by_device.pop(device_id, None) is not None:
            log.info("device ended the catalog subscription", device=device_id)

    def due(self, now: float) -> list[str]:
        """Devices whose subscription should be refreshed now (from the tick)."""
        out = []
        heap = self._refresh
        while heap and heap[0][0] <= now:
            _, device_id = heapq.heappop(heap)
            sub = self._by_device.get(device_id)
            if sub is not None and device_id not in self._busy:
                out.append(device_id)
        return out

    async def refresh(self, device_id: str) -> None:
        """Re-SUBSCRIBE in the dialog; start afresh if the device lost it (481) or does not answer."""
        sub = self._by_device.get(device_id)
        transport = self.transport
        if sub is None:
            return
        cfg = self.sip
        device = self.registry.get(device_id)
        if device is None or not device.online:
            self.drop(device_id)
            return
        request = sub.dialog.create_request(
            "SUBSCRIBE",
            via=transport.via(device.transport),
            contact=sub.dialog.local_contact,
            extra_headers=[("Event", sub.event), ("Expires", str(cfg.catalog_subscribe_expires))],
        )
        self._busy.add(device_id)
        try:
            response = await transport.send_request(request, sub.dialog.peer)
        except SipError:
            response = None
        finally:
            self._busy.discard(device_id)
        if response is not None and response.status < 300:
            self._store(device_id, sub.dialog, sub.event, self._granted(response, cfg.catalog_subscribe_expires))
            return
        self.drop(device_id)
        await self.subscribe(device_id)

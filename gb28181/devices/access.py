"""Device access: the transaction user behind the device-facing SIP address.

Cameras, NVRs and alarm boxes register here (digest), keep alive, answer our queries and send alarms.
Every decision a vendor needs to understand ends in a log line naming the device, its address and the
reason, and every rejection carries that reason in the SIP reason phrase, so the device's own log shows
it too.

Choices worth knowing:
- A keepalive (or any MESSAGE) from a device that is unknown or whose registration expired is answered
  ``403 Device not registered``. Cameras count a non-2xx keepalive answer as a failed keepalive and
  re-register after a few (Hikvision and Dahua after 3), which is the outcome we want; a 401 would make
  some stacks re-send the MESSAGE with credentials instead of registering.
- Expires outside [register_min_expires, register_max_expires] is clamped, not refused with 423: many
  cameras cannot handle 423. The 200 OK says what was granted (Expires and Contact ;expires=).
- The digest username may differ from the device ID (Hikvision's "SIP user name"): without a per-device
  entry any username is accepted with the global password; with one, its username must match.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from gbgw.gb28181 import manscdp
from gbgw.gb28181.config import GatewayConfig
from gbgw.gb28181.devices.catalog import CatalogAssembler, CatalogResult
from gbgw.gb28181.devices.lockout import AuthLockout
from gbgw.gb28181.devices.subscriptions import CatalogSubscriptions
from gbgw.gb28181.manscdp import CatalogItem, ManscdpDocument, ManscdpError
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.registry.devices import CHANNEL_EVENTS, DeviceRegistry
from gbgw.registry.model import Alarm, Channel, Device, MobilePosition
from gbgw.registry.storage import Storage
from gbgw.sip.digest import DigestError, DigestResult, DigestServer, parse_credentials
from gbgw.sip.endpoint import Peer
from gbgw.sip.message import Request, Response, new_call_id, new_tag
from gbgw.sip.transaction import ServerTransaction
from gbgw.sip.transport import SipTimeout, SipTransport

log = structlog.get_logger("gb28181.access")

MANSCDP_TYPE = "application/manscdp+xml"
# Keepalives are the bulk of all traffic: recognise them without an XML parse.
_KEEPALIVE_RE = re.compile(rb"<CmdType>\s*Keepalive\s*</CmdType>", re.IGNORECASE)
_FROM_USER_RE = re.compile(r"sips?:([^@;>\s]+)@", re.IGNORECASE)
# Devices bootstrapped at once (the bound the semaphore it replaced had); the others wait in a queue.
_BOOTSTRAP_RUNNERS = 256


class AccessError(Exception):
    """A device-side operation failed; ``stage`` says where, for the API and the log."""

    def __init__(self, stage: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail
        self.status = status


@dataclass(slots=True)
class _Pending:
    device_id: str
    future: asyncio.Future[ManscdpDocument]


@dataclass(slots=True)
class _Collector:
    """The Response MESSAGEs of one relayed command, gathered until ``complete`` says they are all there."""

    device_id: str
    complete: Callable[[list[ManscdpDocument]], bool]
    pages: list[ManscdpDocument] = field(default_factory=list)
    done: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, doc: ManscdpDocument) -> None:
        self.pages.append(doc)
        self.done = self.complete(self.pages)
        self.arrived.set()


def gb_date(now: float) -> str:
    """The Date format GB/T 28181 devices set their clocks from: local time with milliseconds."""
    dt = datetime.fromtimestamp(now)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


class DeviceAccess:
    def __init__(
        self,
        config: GatewayConfig,
        registry: DeviceRegistry,
        storage: Storage,
        metrics: GatewayMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.registry = registry
        self.storage = storage
        self.metrics = metrics
        self.clock = clock
        sip = config.sip
        self.digest = DigestServer(config.realm, os.urandom(32), nonce_ttl=float(sip.nonce_ttl))
        self.lockout = AuthLockout(sip.lockout_failures, float(sip.lockout_seconds))
        self.catalogs = CatalogAssembler(sip.catalog_first_wait, sip.catalog_gap_timeout)
        self.transport: SipTransport | None = None
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._collectors: dict[tuple[str, int], _Collector] = {}
        self._catalog_waiters: dict[tuple[str, int], asyncio.Future[CatalogResult]] = {}
        self._sn = int.from_bytes(os.urandom(2), "big")
        self._cseq = 1
        self._tasks: set[asyncio.Task[Any]] = set()
        self._bootstrapping: set[str] = set()
        self._bootstrap_queue: deque[str] = deque()
        self._bootstrap_runners = 0
        self.subscriptions = CatalogSubscriptions(self)
        # Keepalives are the bulk of all traffic, and .labels() takes a lock and a dict lookup per call.
        self._keepalive_ok = metrics.keepalives.labels("ok")
        self._keepalive_refused = metrics.keepalives.labels("unregistered")
        registry.add_status_listener(self._on_status)
        self._alarm_listeners: list[Callable[[Alarm], Awaitable[None]]] = []
        self._handlers: dict[str, Callable[[ServerTransaction], None]] = {
            "REGISTER": self._on_register,
            "MESSAGE": self._on_message,
            "NOTIFY": self._on_notify,
        }
        self.methods: tuple[str, ...] = ()
        self._allow = ""
        self._advertise()

    # -- wiring --------------------------------------------------------------------------------------

    def attach(self, transport: SipTransport) -> None:
        self.transport = transport
        self._advertise()

    def _advertise(self) -> None:
        """Allow names exactly the methods routed here, in 405s and in the OPTIONS answers the endpoint
        gives itself, whenever a handler is added."""
        self.methods = (*self._handlers, "OPTIONS")
        self._allow = ", ".join(self.methods)
        if self.transport is not None:
            self.transport.endpoint.config.allow = self.methods

    def _t(self) -> SipTransport:
        if self.transport is None:
            raise RuntimeError("DeviceAccess is not attached to a transport")
        return self.transport

    def handle(self, method: str, handler: Callable[[ServerTransaction], None]) -> None:
        """Route requests of ``method`` from devices to another part of the gateway (live media: BYE)."""
        self._handlers[method] = handler
        self._advertise()

    def on_request(self, txn: ServerTransaction) -> None:
        method = txn.request.method
        self.metrics.request(method)
        handler = self._handlers.get(method)
        if handler is None:
            self._t().reply(txn, 405, headers=[("Allow", self._allow)])
            return
        handler(txn)

    def _on_status(self, device: Device, online: bool, reason: str) -> None:
        if not online:
            self.subscriptions.drop(device.id)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()

    # -- REGISTER ------------------------------------------------------------------------------------

    def _on_register(self, txn: ServerTransaction) -> None:
        t = self._t()
        req = txn.request
        source: Peer = txn.remote
        now = self.clock()
        device_id = req.to.uri.user or req.from_.uri.user or ""
        where = f"{source.host}:{source.port}/{source.transport}"
        if not device_id:
            log.warning("registration refused: no device ID in To or From", source=where)
            t.reply(txn, 400, "No device ID: To and From carry no user part")
            return
        blog = log.bind(device=device_id, source=where)

        for key in (device_id, source.host):
            until = self.lockout.locked_until(key, now)
            if until is not None:
                self.metrics.registrations.labels("locked").inc()
                t.reply(txn, 403, f"Locked out for {int(until - now)} s after repeated authentication failures")
                return
        cred = self.config.credential(device_id)
        if self.config.sip.allowlist and cred is None:
            self.metrics.registrations.labels("not_allowed").inc()
            blog.warning("registration refused: device not in the allowlist")
            t.reply(txn, 403, "Device not allowed")
            return

        auth = req.get("Authorization")
        if auth is None:
            self.metrics.registrations.labels("challenged").inc()
            t.reply(txn, 401, headers=[("WWW-Authenticate", self.digest.challenge(now))])
            return
        try:
            creds = parse_credentials(auth)
        except DigestError as exc:
            self.metrics.registrations.labels("malformed").inc()
            blog.warning("registration refused: unreadable Authorization", reason=exc.reason)
            t.reply(txn, 400, f"Bad Authorization header: {exc.reason}")
            return
        if cred is not None and cred.username and creds.username != cred.username:
            self._auth_failed(txn, device_id, source, f"wrong digest username {creds.username!r}")
            return
        password = cred.password if cred is not None and cred.password else self.config.sip.password
        result = self.digest.verify(creds, "REGISTER", password, now, call_id=req.call_id)
        if result is DigestResult.STALE or result is DigestResult.BAD_NONCE:
            self.metrics.registrations.labels("challenged").inc()
            challenge = self.digest.challenge(now, stale=result is DigestResult.STALE)
            t.reply(txn, 401, headers=[("WWW-Authenticate", challenge)])
            return
        if result is DigestResult.BAD_REALM:
            self._auth_failed(txn, device_id, source, f"wrong realm {creds.realm!r}, expected {self.config.realm!r}")
            return
        if result is DigestResult.MALFORMED:
            self.metrics.registrations.labels("malformed").inc()
            t.reply(txn, 400, "Bad Authorization header")
            return
        if result is not DigestResult.OK:
            self._auth_failed(txn, device_id, source, "wrong password")
            return
        self.lockout.success(device_id)
        self.lockout.success(source.host)
        self._accept_registration(txn, device_id, creds.username, now, blog)

    def _auth_failed(self, txn: ServerTransaction, device_id: str, source: Peer, why: str) -> None:
        now = self.clock()
        self.metrics.registrations.labels("auth_failed").inc()
        log.warning("authentication failed", device=device_id, source=f"{source.host}:{source.port}", reason=why)
        cfg = self.config.sip
        for kind, key, tag in (("device", device_id, None), ("source", source.host, device_id)):
            if self.lockout.failure(key, now, tag):
                self.metrics.lockouts.labels(kind).inc()
                log.warning(
                    "locked out after repeated authentication failures",
                    kind=kind, key=key, failures=cfg.lockout_failures, seconds=cfg.lockout_seconds,
                )
        self._t().reply(txn, 403, f"Authentication failed: {why}")

    def _accept_registration(
        self, txn: ServerTransaction, device_id: str, username: str, now: float, blog: Any
    ) -> None:
        req = txn.request
        source: Peer = txn.remote
        cfg = self.config.sip
        contact = req.contact
        requested: int | None = None
        # RFC 3261 10.3: a Contact's expires parameter takes precedence over the Expires header.
        value = contact.params.get("expires") if contact is not None else None
        if value and value.isascii() and value.isdigit():
            # Anything past ten digits is beyond any maximum; int() would also refuse thousands of digits.
            requested = int(value) if len(value) <= 10 else cfg.register_max_expires
        if requested is None:
            requested = req.expires if req.expires is not None else 3600
        headers: list[tuple[str, str]] = [("Date", gb_date(now))]
        if requested == 0:
            self.registry.unregister(device_id, now)
            self.metrics.registrations.labels("unregistered").inc()
            blog.info("device unregistered")
            headers.append(("Expires", "0"))
            self._t().reply(txn, 200, headers=headers)
            return
        granted = min(max(requested, cfg.register_min_expires), cfg.register_max_expires)
        existing = self.registry.get(device_id)
        was_registered = existing is not None and self.registry.is_registered(device_id, now)
        transport = "TCP" if source.transport == "TCP" else "UDP"
        self.registry.register(
            device_id,
            transport=transport,
            host=source.host,
            port=source.port,
            expires=granted,
            now=now,
            username=username if username != device_id else None,
        )
        cred = self.config.credential(device_id)
        if cred is not None and (cred.name or cred.stream_transport):
            changes: dict[str, Any] = {}
            if cred.stream_transport:
                changes["stream_transport"] = cred.stream_transport.upper()
            if cred.name and existing is None:
                changes["name"] = cred.name
            self.registry.update(device_id, **changes)
        if contact is not None:
            headers.append(("Contact", f"<{contact.uri}>;expires={granted}"))
        headers.append(("Expires", str(granted)))
        self._t().reply(txn, 200, headers=headers)
        self.metrics.registrations.labels("refreshed" if was_registered else "registered").inc()
        if not was_registered:
            blog.info("device registered", expires=granted, username=username)
            self.start_bootstrap(device_id)

    # -- MESSAGE -------------------------------------------------------------------------------------

    def _on_message(self, txn: ServerTransaction) -> None:
        req = txn.request
        body = req.body
        if _KEEPALIVE_RE.search(body) is not None:
            self._on_keepalive(txn)
            return
        t = self._t()
        if req.content_type != MANSCDP_TYPE:
            t.reply(txn, 415, "Expected Application/MANSCDP+xml", headers=[("Accept", "Application/MANSCDP+xml")])
            return
        sender = self._sender(req)
        now = self.clock()
        if not self.registry.is_registered(sender, now) or not self._from_device(sender, txn.remote):
            t.reply(txn, 403, "Device not registered")
            return
        try:
            doc = manscdp.parse(body, max_size=self.config.sip.max_message_size)
        except ManscdpError as exc:
            log.warning("bad MANSCDP body", device=sender, reason=str(exc))
            t.reply(txn, exc.status, f"Bad MANSCDP body: {exc}"[:120])
            return
        if doc.repairs:
            log.info("MANSCDP body repaired", device=sender, cmd=doc.cmd_type, repairs=doc.repairs)
        self.registry.touch(sender, now)
        if doc.root == "Notify" and doc.cmd_type == "Alarm":
            # Answered once stored: a device that gets no 200 sends the alarm again, so an alarm the
            # device saw accepted is on disk (and in the upward outbox) even if we are killed right after.
            self.spawn(self._on_alarm(sender, doc, now, txn))
            return
        t.reply(txn, 200)
        self._dispatch(sender, doc, now)

    def _on_keepalive(self, txn: ServerTransaction) -> None:
        req = txn.request
        match = _FROM_USER_RE.search(req.get("From") or "")
        device_id = match.group(1) if match else ""
        now = self.clock()
        if self._from_device(device_id, txn.remote) and self.registry.touch(device_id, now):
            self._keepalive_ok.inc()
            self._t().reply(txn, 200)
            return
        self._keepalive_refused.inc()
        self._t().reply(txn, 403, "Device not registered")

    def _from_device(self, device_id: str, source: Peer) -> bool:
        """Whether a request claiming to be from ``device_id`` comes from where that device registered.

        Without this, anyone knowing an ID could keep a dead camera "online" or inject its catalog and
        alarms. A device whose address changed is refused and registers again, as it would anyway.
        """
        device = self.registry.get(device_id)
        return device is not None and device.host == source.host

    def _sender(self, req: Request) -> str:
        match = _FROM_USER_RE.search(req.get("From") or "")
        return match.group(1) if match else ""

    def _dispatch(self, device_id: str, doc: ManscdpDocument, now: float) -> None:
        root, cmd = doc.root, doc.cmd_type
        if root == "Response":
            collector = self._collectors.get((cmd, doc.sn if doc.sn is not None else -1))
            # Only the device we asked may answer: SNs are easy to guess.
            if collector is not None and collector.device_id == device_id:
                collector.add(doc)
                return
            if cmd == "Catalog":
                page = doc.typed()
                if isinstance(page, manscdp.CatalogResponse):
                    done = self.catalogs.add(device_id, page, now)
                    if done is not None:
                        self._catalog_done(done)
                    return
            key = (cmd, doc.sn if doc.sn is not None else -1)
            pending = self._pending.get(key)
            # Only the device asked may answer: another one guessing the SN must not fill in its answer.
            if pending is not None and pending.device_id == device_id and not pending.future.done():
                del self._pending[key]
                pending.future.set_result(doc)
            elif cmd == "DeviceInfo":
                self._apply_device_info(device_id, doc)
            return
        if root == "Notify":
            if cmd == "Alarm":
                self.spawn(self._on_alarm(device_id, doc, now))
            elif cmd == "MobilePosition":
                self.spawn(self._on_position(device_id, doc, now))
            elif cmd == "Catalog":
                self._on_catalog_notify(device_id, doc)
            return
        log.info("unhandled MANSCDP request", device=device_id, root=root, cmd=cmd)

    def _apply_device_info(self, device_id: str, doc: ManscdpDocument) -> None:
        info = doc.typed()
        if not isinstance(info, manscdp.DeviceInfoResponse) or self.registry.get(device_id) is None:
            return
        changes = {
            key: value
            for key, value in (
                ("name", info.device_name),
                ("manufacturer", info.manufacturer),
                ("model", info.model),
                ("firmware", info.firmware),
                ("charset", doc.encoding),
            )
            if value
        }
        if changes:
            self.registry.update(device_id, **changes)

    def add_alarm_listener(self, listener: Callable[[Alarm], Awaitable[None]]) -> None:
        """Called with each stored alarm before the device's MESSAGE is answered (the upward outbox)."""
        self._alarm_listeners.append(listener)

    async def _on_alarm(
        self, device_id: str, doc: ManscdpDocument, now: float, txn: ServerTransaction | None = None
    ) -> None:
        alarm = doc.typed()
        if not isinstance(alarm, manscdp.AlarmNotify):
            if txn is not None:
                self._t().reply(txn, 400, "Alarm without the fields of one")
            return
        self.metrics.alarms.inc()
        record = Alarm(
            device_id=device_id,
            channel_id=alarm.device_id or device_id,
            sn=str(alarm.sn if alarm.sn is not None else ""),
            priority=str(alarm.alarm_priority or ""),
            method=str(alarm.alarm_method or ""),
            alarm_type=str(alarm.alarm_type or ""),
            time=alarm.alarm_time or "",
            description=alarm.alarm_description or "",
            longitude=alarm.longitude,
            latitude=alarm.latitude,
            received_at=now,
        )
        try:
            await self.storage.add_alarm(record)
            for listener in self._alarm_listeners:
                await listener(record)
        except Exception:
            log.exception("alarm not stored", device=device_id)
            if txn is not None:
                self._t().reply(txn, 500, "Alarm not stored")
            return
        if txn is not None:
            self._t().reply(txn, 200)
        log.info("alarm received", device=device_id, channel=record.channel_id, method=record.method,
                 priority=record.priority, type=record.alarm_type)
        # Annex A: the platform acknowledges an alarm with a Response carrying Result OK.
        answer = manscdp.response_result("Alarm", alarm.sn, alarm.device_id or device_id)
        try:
            await self.send_manscdp(device_id, answer)
        except AccessError as exc:
            log.info("alarm acknowledgement not delivered", device=device_id, reason=str(exc))

    async def _on_position(self, device_id: str, doc: ManscdpDocument, now: float) -> None:
        pos = doc.typed()
        if not isinstance(pos, manscdp.MobilePositionNotify) or pos.longitude is None or pos.latitude is None:
            return
        await self.storage.add_mobile_position(
            MobilePosition(
                device_id=pos.device_id or device_id,
                time=pos.time or "",
                longitude=pos.longitude,
                latitude=pos.latitude,
                speed=pos.speed,
                direction=pos.direction,
                altitude=pos.altitude,
                received_at=now,
            )
        )

    # -- NOTIFY (catalog subscription) ---------------------------------------------------------------

    def _on_notify(self, txn: ServerTransaction) -> None:
        req = txn.request
        t = self._t()
        sender = self._sender(req)
        if not self.registry.is_registered(sender, self.clock()) or not self._from_device(sender, txn.remote):
            t.reply(txn, 403, "Device not registered")
            return
        try:
            doc = manscdp.parse(req.body, max_size=self.config.sip.max_message_size)
        except ManscdpError as exc:
            t.reply(txn, exc.status, f"Bad MANSCDP body: {exc}"[:120])
            return
        state = (req.get("Subscription-State") or "").split(";", 1)[0].strip().lower()
        if state == "terminated" and self.subscriptions.owns(sender, req):
            self.subscriptions.terminated(sender)
        t.reply(txn, 200)
        self._dispatch(sender, doc, self.clock())

    def _on_catalog_notify(self, device_id: str, doc: ManscdpDocument) -> None:
        notify = doc.typed()
        device = self.registry.get(device_id)
        if not isinstance(notify, manscdp.CatalogNotify) or device is None:
            return
        device_id = device.id
        for item in notify.items:
            event = (item.event or "UPDATE").upper()
            if event not in CHANNEL_EVENTS or not item.device_id:
                log.info("catalog change ignored", device=device_id, channel=item.device_id, change=event[:20])
                continue
            channel = channel_from_item(device_id, item)
            if self.registry.apply_channel_event(device_id, event, channel):
                log.info("catalog change", device=device_id, channel=channel.id, change=event)

    # -- requests to devices -------------------------------------------------------------------------

    def next_sn(self) -> int:
        self._sn = (self._sn + 1) % 1_000_000_000
        return self._sn

    def build_request(self, method: str, device: Device, target_id: str | None = None) -> tuple[Request, Peer]:
        """An out-of-dialog request to a device, sent where its REGISTER came from (NAT)."""
        t = self._t()
        cfg = self.config.sip
        target = target_id or device.id
        peer = Peer(device.transport, device.host, device.port)
        host = f"[{device.host}]" if ":" in device.host else device.host
        self._cseq += 1
        headers = [
            ("Via", t.via(device.transport)),
            ("From", f"<sip:{cfg.id}@{cfg.domain}>;tag={new_tag()}"),
            ("To", f"<sip:{target}@{cfg.domain}>"),
            ("Call-ID", new_call_id(t.host)),
            ("CSeq", f"{self._cseq} {method}"),
            ("Max-Forwards", "70"),
            ("User-Agent", cfg.user_agent),
        ]
        return Request(method, f"sip:{target}@{host}:{device.port}", headers), peer

    async def send_manscdp(self, device_id: str, doc: ManscdpDocument) -> Response:
        """Send a MANSCDP MESSAGE and wait for its final SIP response (2xx, or AccessError)."""
        device = self.registry.get(device_id)
        if device is None or not device.online:
            raise AccessError("device offline", f"{device_id} is not online")
        request, peer = self.build_request("MESSAGE", device, doc.device_id or device_id)
        request.add("Content-Type", "Application/MANSCDP+xml")
        request.body = manscdp.encode_body(doc, device.charset or self.config.sip.encoding)
        started = time.monotonic()
        try:
            response = await self._t().send_request(request, peer)
        except SipTimeout:
            raise AccessError("no answer", f"{device_id} did not answer the {doc.cmd_type} MESSAGE") from None
        finally:
            self.metrics.transaction_latency.labels("MESSAGE").observe(time.monotonic() - started)
        self.metrics.sip_responses.labels("in", "MESSAGE", str(response.status)).inc()
        if response.status >= 300:
            raise AccessError(
                "request rejected", f"{device_id} answered {response.status} {response.reason}", response.status
            )
        return response

    async def query(
        self, device_id: str, build: Callable[[int, str], ManscdpDocument], target_id: str | None = None
    ) -> ManscdpDocument:
        """Send a Query and wait for the device's Response MESSAGE with the same CmdType and SN."""
        sn = self.next_sn()
        doc = build(sn, target_id or device_id)
        key = (doc.cmd_type, sn)
        future: asyncio.Future[ManscdpDocument] = asyncio.get_running_loop().create_future()
        self._pending[key] = _Pending(device_id, future)
        try:
            await self.send_manscdp(device_id, doc)
            return await asyncio.wait_for(future, self.config.sip.query_timeout)
        except TimeoutError:
            raise AccessError("no answer", f"{device_id} sent no {doc.cmd_type} response in time") from None
        finally:
            self._pending.pop(key, None)

    async def query_pages(
        self,
        device_id: str,
        doc: ManscdpDocument,
        complete: Callable[[list[ManscdpDocument]], bool],
        timeout: float | None = None,
    ) -> list[ManscdpDocument]:
        """Send ``doc`` (a Query or Control numbered with :meth:`next_sn`) and collect the device's Response
        MESSAGEs with its CmdType and SN until ``complete(pages)`` is true, or until no further page came
        for ``timeout`` seconds (default ``sip.query_timeout``): a multi-message answer (RecordInfo) is
        returned as far as it arrived. Raises AccessError when the device refuses the MESSAGE or sends no
        answer at all."""
        if doc.sn is None:
            raise ValueError("a relayed command needs an SN to match its answers")
        key = (doc.cmd_type, doc.sn)
        collector = _Collector(device_id, complete)
        self._collectors[key] = collector
        wait = self.config.sip.query_timeout if timeout is None else timeout
        try:
            await self.send_manscdp(device_id, doc)
            while not collector.done:
                collector.arrived.clear()
                try:
                    await asyncio.wait_for(collector.arrived.wait(), wait)
                except TimeoutError:
                    if not collector.pages:
                        raise AccessError("no answer", f"{device_id} sent no {doc.cmd_type} response in time") from None
                    break
            return collector.pages
        finally:
            self._collectors.pop(key, None)

    async def device_info(self, device_id: str) -> manscdp.DeviceInfoResponse:
        doc = await self.query(device_id, manscdp.query_device_info)
        self._apply_device_info(device_id, doc)
        info = doc.typed()
        assert isinstance(info, manscdp.DeviceInfoResponse)
        return info

    async def device_status(self, device_id: str) -> manscdp.DeviceStatusResponse:
        doc = await self.query(device_id, manscdp.query_device_status)
        status = doc.typed()
        if not isinstance(status, manscdp.DeviceStatusResponse):
            raise AccessError("bad answer", f"{device_id} answered DeviceStatus with {doc.root}")
        return status

    async def refresh_catalog(self, device_id: str) -> CatalogResult:
        """Query the catalog and wait until it is assembled (or partially, after the timeouts)."""
        sn = self.next_sn()
        key = (device_id, sn)
        future: asyncio.Future[CatalogResult] = asyncio.get_running_loop().create_future()
        self._catalog_waiters[key] = future
        self.catalogs.expect(device_id, sn, self.clock())
        try:
            await self.send_manscdp(device_id, manscdp.query_catalog(sn, device_id))
            return await future
        finally:
            self._catalog_waiters.pop(key, None)

    def _catalog_done(self, result: CatalogResult) -> None:
        device_id = result.device_id
        device = self.registry.get(device_id)
        # Nothing at all arrived (no answer, or the device was offline): there is no catalog to merge, and
        # flagging the old one partial would claim the device announced channels it did not send.
        if device is not None and (result.complete or result.items):
            channels = [channel_from_item(device.id, item) for item in result.items]
            self.registry.replace_channels(device.id, channels, partial=not result.complete)
        self.metrics.catalogs.labels("complete" if result.complete else "partial").inc()
        if not result.items and not result.complete:
            log.warning("no catalog received", device=device_id)
        elif not result.complete:
            log.warning("catalog incomplete", device=device_id, received=len(result.items), expected=result.sum_num)
        else:
            log.info("catalog received", device=device_id, channels=len(result.items))
        waiter = self._catalog_waiters.get((device_id, result.sn))
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    # -- after a device appears ----------------------------------------------------------------------

    def start_bootstrap(self, device_id: str) -> None:
        """Queue the device for its bootstrap. A waiting device costs a queue slot, not a task: after a
        restart 100,000 devices register faster than they can be queried (3,000/s against 1,000/s on one
        core, tests/bench/bench_devices.py), and 70,000 tasks waiting on a semaphore took 1.6 KB each."""
        if device_id in self._bootstrapping:
            return
        self._bootstrapping.add(device_id)
        self._bootstrap_queue.append(device_id)
        if self._bootstrap_runners < _BOOTSTRAP_RUNNERS:
            self._bootstrap_runners += 1
            self.spawn(self._run_bootstraps())

    async def _run_bootstraps(self) -> None:
        queue = self._bootstrap_queue
        try:
            while queue:
                device_id = queue.popleft()
                try:
                    await self._bootstrap(device_id)
                except Exception:
                    log.exception("device bootstrap failed", device=device_id)
                finally:
                    self._bootstrapping.discard(device_id)
        finally:
            self._bootstrap_runners -= 1

    async def _bootstrap(self, device_id: str) -> None:
        """DeviceInfo then Catalog, as the standard's registration flow does after a 200 OK."""
        await asyncio.sleep(0.05)  # let the device finish its own REGISTER handling first
        for step in (self.device_info, self.refresh_catalog):
            try:
                await step(device_id)
            except AccessError as exc:
                log.info("device query failed", device=device_id, step=step.__name__, reason=str(exc))
        if self.config.sip.catalog_subscribe:
            await self.subscriptions.subscribe(device_id)

    # -- periodic work -------------------------------------------------------------------------------

    def tick(self) -> None:
        """Called about once a second: liveness, catalog timeouts, lockout pruning."""
        now = self.clock()
        self.registry.expire(now)
        for result in self.catalogs.expire(now):
            self._catalog_done(result)
        self.lockout.prune(now)
        for device_id in self.subscriptions.due(now):
            self.spawn(self.subscriptions.refresh(device_id))


def channel_from_item(device_id: str, item: CatalogItem) -> Channel:
    """A registry channel from a catalog item; fields without a Channel attribute are kept in ``raw``.

    (The registry shares the strings thousands of channels repeat when it takes the channel.)
    """
    raw = dict(item.extra)
    for key in ("block", "ip_address", "resolution", "secrecy", "register_way", "safety_way"):
        value = getattr(item, key)
        if value is not None and value != "":
            raw[key] = str(value)
    return Channel(
        id=item.device_id,
        device_id=device_id,
        name=item.name or "",
        parent_id=item.parent_id or "",
        manufacturer=item.manufacturer or "",
        model=item.model or "",
        owner=item.owner or "",
        civil_code=item.civil_code or "",
        address=item.address or "",
        status="ON" if item.online is not False else "OFF",
        longitude=item.longitude,
        latitude=item.latitude,
        ptz_type=item.ptz_type,
        parental=bool(item.parental),
        business_group_id=item.business_group_id or "",
        raw=raw,
    )


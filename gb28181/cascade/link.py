"""One upper platform: the gateway's police-side SIP address for it, its registration there, keepalives,
and the routing of the upper's requests to the cascade features (catalog, media, queries, alarms).

Each upper gets its own SIP endpoint and transport bound to its ``listen`` address, accepting packets
only from the upper's own address (and a registrar it redirected us to): the police side is a different
network, and nothing the device side sends can arrive here. Every request toward the upper is built
from scratch here (back-to-back, never forwarded), so no device-side header or address can leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable

import structlog

from gbgw.gb28181 import manscdp
from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.boundary.policy import SharePolicy
from gbgw.gb28181.config import GatewayConfig, UpstreamConfig
from gbgw.gb28181.manscdp import ManscdpDocument, ManscdpError
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.rtp.ports import interface_for
from gbgw.sip.dialog import Dialog
from gbgw.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request, Response, make_response, new_tag
from gbgw.sip.registration import Registration, RegistrationState
from gbgw.sip.requests import RequestBuilder
from gbgw.sip.tls import client_context
from gbgw.sip.transaction import ServerTransaction, Timers
from gbgw.sip.transport import SipTimeout, SipTransport, TransportLimits
from gbgw.sip.uri import format_host_port

log = structlog.get_logger("gb28181.upstream")

MANSCDP_TYPE = "Application/MANSCDP+xml"
CommandHandler = Callable[[ServerTransaction, ManscdpDocument], None]
DialogHandler = Callable[[ServerTransaction], bool]
"""Takes the requests of one claimed dialog; False hands the request on to the method's handler."""
StatusListener = Callable[["UpstreamLink", bool], None]


class UpstreamError(Exception):
    """A request to the upper that did not get a 2xx (``status`` None: no answer at all)."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.status = status


class UpperSubscription:
    """A subscription the upper holds on us (Catalog, Alarm, MobilePosition), as the UAS of its dialog.

    ``query`` is the SUBSCRIBE's MANSCDP body (an alarm subscription carries priority/method filters);
    ``sn`` its SN, which NOTIFYs under this subscription repeat. Features look a subscription up with
    :meth:`UpstreamLink.subscription` and :meth:`notify` through it while it lasts.
    """

    def __init__(self, link: UpstreamLink, request: Request, doc: ManscdpDocument, expires: int, now: float) -> None:
        self.link = link
        self.cmd_type = doc.cmd_type
        self.query = doc
        self.sn = doc.sn
        # NOTIFYs repeat the SUBSCRIBE's Event value whole, id parameter included (RFC 6665 §8.2.1).
        self.event = (request.get("Event") or doc.cmd_type).strip()
        self.dialog = Dialog.from_uas(request, new_tag(), link.contact(), peer=link.target)
        self.expires_at = now + expires

    def active(self, now: float) -> bool:
        return now < self.expires_at

    async def notify(self, doc: ManscdpDocument, *, terminated: bool = False) -> Response:
        """Send ``doc`` in a NOTIFY of this subscription (raises :class:`UpstreamError` like ``send``)."""
        link = self.link
        t = link._t()
        remaining = max(0, int(self.expires_at - t.now()))
        state = "terminated;reason=timeout" if terminated else f"active;expires={remaining}"
        request = self.dialog.create_request(
            "NOTIFY",
            via=t.via(link.target.transport),
            contact=link.contact(),
            body=link.encode(doc),
            content_type=MANSCDP_TYPE,
            extra_headers=(("Event", self.event), ("Subscription-State", state),
                           ("User-Agent", link.gateway.sip.user_agent)),
        )
        return await link.send(request)


class UpstreamLink:
    """Registration, keepalive and request routing toward one upper platform.

    ``online`` is true while the registration holds and keepalives are answered; features listen to it
    (``add_status_listener``) to start or stop what they send upward. Requests from the upper are routed
    by method (``handle``) and, for MESSAGE, by MANSCDP root and CmdType (``handle_command``).
    """

    def __init__(
        self,
        config: UpstreamConfig,
        gateway: GatewayConfig,
        audit: AuditLog,
        metrics: GatewayMetrics,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.audit = audit
        self.metrics = metrics
        self.name = config.name
        self.policy = SharePolicy(config)
        sip = gateway.sip
        self.endpoint = SipEndpoint(
            EndpointConfig(
                user_agent=sip.user_agent,
                max_message_size=sip.max_message_size,
                timers=Timers(sip.t1, sip.t2, sip.t4),
            )
        )
        self.peer = Peer(config.transport.upper(), config.address.host, config.address.port)
        self.transport: SipTransport | None = None
        self.registration: Registration | None = None
        self.online = False
        self.reason = "not started"
        self.keepalive_failures = 0
        self._handlers: dict[str, Callable[[ServerTransaction], None]] = {"MESSAGE": self._on_message}
        self._commands: dict[tuple[str, str], CommandHandler] = {}
        self._listeners: list[StatusListener] = []
        self._time_listeners: list[Callable[[str, str, float], object]] = []
        self._ack_handlers: list[Callable[[Request, Peer], None]] = []
        self._dialogs: dict[str, DialogHandler] = {}
        self._connection_lost_handlers: list[Callable[[str, int], None]] = []
        self._sn = int.from_bytes(os.urandom(2), "big")
        self._requests: RequestBuilder | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self.subscriptions: dict[str, UpperSubscription] = {}
        self._overhead = 0
        self._subscribe_handlers: dict[str, Callable[[UpperSubscription], None]] = {}
        self._subscription_end_handlers: dict[str, Callable[[UpperSubscription], None]] = {}
        self._online_gauge = metrics.upstream_online.labels(config.name)

    # -- wiring --------------------------------------------------------------------------------------

    def handle(self, method: str, handler: Callable[[ServerTransaction], None]) -> None:
        self._handlers[method] = handler
        self.endpoint.config.allow = (*self._handlers, "OPTIONS")

    def handle_command(self, root: str, cmd_type: str, handler: CommandHandler) -> None:
        """Route MANSCDP ``<root>`` documents with ``cmd_type`` from the upper to ``handler``. The handler
        answers the SIP transaction itself (usually 200 at once, then a Response MESSAGE)."""
        self._commands[root, cmd_type] = handler

    def handle_subscribe(self, cmd_type: str, on_subscribed: Callable[[UpperSubscription], None],
                         on_ended: Callable[[UpperSubscription], None] | None = None) -> None:
        """Accept the upper's SUBSCRIBE for ``cmd_type``; ``on_subscribed`` runs after the 200 is sent
        (a new subscription or a refresh of the same dialog), ``on_ended`` when it is gone (Expires: 0,
        a 481 to our NOTIFY, or found expired by :meth:`subscription`)."""
        self._subscribe_handlers[cmd_type] = on_subscribed
        if on_ended is not None:
            self._subscription_end_handlers[cmd_type] = on_ended
        if "SUBSCRIBE" not in self._handlers:
            self.handle("SUBSCRIBE", self._on_subscribe)

    def subscription(self, cmd_type: str) -> UpperSubscription | None:
        """The upper's live subscription to ``cmd_type``, if any (an expired one is forgotten here)."""
        sub = self.subscriptions.get(cmd_type)
        if sub is not None and not sub.active(self._t().now()):
            del self.subscriptions[cmd_type]
            log.info("upstream subscription expired", upstream=self.name, cmd=cmd_type)
            self._subscription_ended(sub)
            return None
        return sub

    def _subscription_ended(self, sub: UpperSubscription) -> None:
        handler = self._subscription_end_handlers.get(sub.cmd_type)
        if handler is not None:
            handler(sub)

    def drop_subscription(self, cmd_type: str) -> None:
        """Forget the upper's subscription (it answered 481 to our NOTIFY: the dialog is gone there)."""
        sub = self.subscriptions.pop(cmd_type, None)
        if sub is not None:
            log.info("upstream subscription dropped", upstream=self.name, cmd=cmd_type)
            self._subscription_ended(sub)

    def claim_dialog(self, call_id: str, handler: DialogHandler) -> None:
        """Route every request with ``call_id`` (BYE, INFO, CANCEL, re-INVITE) to ``handler`` first: a
        feature other than the method's owner (playback next to live) keeps its dialogs to itself."""
        self._dialogs[call_id] = handler

    def release_dialog(self, call_id: str) -> None:
        self._dialogs.pop(call_id, None)

    def on_ack(self, handler: Callable[[Request, Peer], None]) -> None:
        self._ack_handlers.append(handler)

    def add_time_listener(self, listener: Callable[[str, str, float], object]) -> None:
        """Hears (this upstream's name, the Date of its REGISTER 200, host time) after each registration:
        the upper's clock (``devices.time_source``)."""
        self._time_listeners.append(listener)

    def add_status_listener(self, listener: StatusListener) -> None:
        self._listeners.append(listener)

    def accepts(self, host: str) -> bool:
        """Only the upper (and a registrar it redirected us to) may talk to this address."""
        if host == self.config.address.host:
            return True
        registration = self.registration
        return registration is not None and host == registration.peer.host

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self.endpoint.config.allow = (*self._handlers, "OPTIONS")
        # TLS toward the upper: we dial it and it answers and sends its requests over that connection, so
        # the police side needs the upper's CA (and a client certificate if it asks), no listener of ours.
        tls_client = (client_context(cfg.tls_ca or None, cfg.tls_cert or None, cfg.tls_key or None)
                      if self.secure else None)
        transport = SipTransport(
            self.endpoint,
            self._on_request,
            on_ack=self._on_ack,
            limits=TransportLimits(rate_per_source=cfg.rate_limit),
            accept_source=self.accepts,
            on_connection_lost=self._on_connection_lost,
            interface=interface_for(cfg.listen.host),
            tls_client=tls_client,
        )
        await transport.start(cfg.listen.host, cfg.listen.port)
        self.transport = transport
        sip = self.gateway.sip
        scheme = self.scheme
        self._requests = RequestBuilder(transport, f"{scheme}:{sip.id}@{sip.domain}", sip.user_agent, cseq=1)
        self.registration = Registration(
            transport,
            self.peer,
            aor=f"{scheme}:{sip.id}@{sip.domain}",
            registrar_uri=f"{scheme}:{cfg.id}@{cfg.domain}",
            username=cfg.username or sip.id,
            password=cfg.password,
            expires=cfg.register_expires,
            contact=self.contact(),
            user_agent=sip.user_agent,
            on_state=self._registration_state,
            retry_max=60.0,
        )
        self.reason = "registering"
        self.registration.start()
        self._keepalive_task = asyncio.get_running_loop().create_task(self._keepalives())
        log.info("upstream link started", upstream=self.name, listen=f"{transport.host}:{transport.port}",
                 upper=f"{cfg.address}/{cfg.transport}")

    async def stop(self) -> None:
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keepalive_task
        if self.registration is not None:
            # An upper that is gone (timeout, TCP refused) must not keep the gateway from stopping.
            with contextlib.suppress(TimeoutError, SipError):
                await asyncio.wait_for(self.registration.stop(unregister=True), 2.0)
        self._set_online(False, "gateway stopping")
        if self.transport is not None:
            await self.transport.close()

    # -- registration and keepalive ------------------------------------------------------------------

    def _registration_state(self, state: RegistrationState, reason: str | None) -> None:
        if state is RegistrationState.REGISTERED:
            self.keepalive_failures = 0
            self._set_online(True, "registered")
            assert self.registration is not None
            self.audit.record("upstream-register", upstream=self.name, upper_id=self.config.id,
                              registrar=self.registration.registrar_uri, expires=self.registration.granted)
            date = self.registration.date
            if date:
                now = time.time()
                for listener in self._time_listeners:
                    listener(self.name, date, now)
        elif state is RegistrationState.FAILED:
            self._set_online(False, reason or "registration failed")
            self.audit.record("upstream-register", "failed", upstream=self.name, upper_id=self.config.id,
                              reason=reason)

    def _set_online(self, online: bool, reason: str) -> None:
        self.reason = reason
        if online == self.online:
            return
        self.online = online
        self._online_gauge.set(1 if online else 0)
        log.info("upstream online" if online else "upstream offline", upstream=self.name, reason=reason)
        for listener in list(self._listeners):
            try:
                listener(self, online)
            except Exception:
                log.exception("upstream status listener failed", upstream=self.name)

    async def _keepalives(self) -> None:
        interval = float(self.config.keepalive_interval)
        while True:
            await asyncio.sleep(interval)
            if not self.online:
                continue
            doc = manscdp.notify_keepalive(self.next_sn(), self.gateway.sip.id)
            try:
                await self.send_manscdp(doc)
            except UpstreamError as exc:
                await self._keepalive_failed(str(exc), exc.status)
            else:
                self.keepalive_failures = 0

    async def _keepalive_failed(self, reason: str, status: int | None) -> None:
        self.keepalive_failures += 1
        log.warning("keepalive to upstream failed", upstream=self.name, reason=reason,
                    failures=self.keepalive_failures)
        # An error answer means the upper no longer knows us (it restarted): register again at once.
        # Silence is given keepalive_misses chances, as the upper gives ours.
        if status is not None or self.keepalive_failures >= self.config.keepalive_misses:
            self._set_online(False, f"keepalive failed: {reason}")
            await self.reregister()

    async def reregister(self) -> None:
        """Drop the binding we believe in and register again (the registration's own back-off applies)."""
        registration = self.registration
        if registration is None:
            return
        await registration.stop(unregister=False)
        registration.start()

    # -- requests from the upper ---------------------------------------------------------------------

    def _on_request(self, txn: ServerTransaction) -> None:
        claimed = self._dialogs.get(txn.request.call_id or "")
        if claimed is not None and claimed(txn):
            return
        method = txn.request.method
        handler = self._handlers.get(method)
        if handler is None:
            self._t().reply(txn, 405, headers=[("Allow", ", ".join((*self._handlers, "OPTIONS")))])
            return
        handler(txn)

    def _on_ack(self, request: Request, peer: Peer) -> None:
        for handler in self._ack_handlers:
            handler(request, peer)

    def _on_connection_lost(self, host: str, port: int) -> None:
        log.info("upstream tcp connection closed", upstream=self.name, peer=f"{host}:{port}")
        for handler in self._connection_lost_handlers:
            handler(host, port)

    def on_connection_lost(self, handler: Callable[[str, int], None]) -> None:
        self._connection_lost_handlers.append(handler)

    def _on_subscribe(self, txn: ServerTransaction) -> None:
        req = txn.request
        t = self._t()
        try:
            doc = manscdp.parse(req.body, max_size=self.gateway.sip.max_message_size)
        except ManscdpError as exc:
            t.reply(txn, exc.status, f"Bad MANSCDP body: {exc}"[:120])
            return
        handler = self._subscribe_handlers.get(doc.cmd_type)
        if handler is None:
            t.reply(txn, 489, f"No subscription to {doc.cmd_type}"[:60])
            return
        try:
            expires = req.expires
        except SipError:
            expires = None
        expires = 3600 if expires is None else min(max(expires, 0), 86400)
        now = t.now()
        current = self.subscriptions.get(doc.cmd_type)
        to_tag = req.to.tag
        if to_tag and (current is None or current.dialog.call_id != req.call_id):
            t.reply(txn, 481, "Subscription does not exist")
            return
        if expires == 0:
            if current is not None:
                del self.subscriptions[doc.cmd_type]
            t.reply(txn, 200, headers=[("Expires", "0")], body=b"")
            log.info("upstream unsubscribed", upstream=self.name, cmd=doc.cmd_type)
            self.audit.record("subscribe", upstream=self.name, cmd=doc.cmd_type, expires=0)
            if current is not None:
                self._subscription_ended(current)
            return
        if to_tag and current is not None:
            current.expires_at = now + expires
            current.query = doc
            sub = current
        else:
            try:
                sub = UpperSubscription(self, req, doc, expires, now)
            except SipError as exc:
                t.reply(txn, 400, exc.reason)
                return
            self.subscriptions[doc.cmd_type] = sub
        t.respond(txn, make_response(req, 200, to_tag=sub.dialog.local_tag,
                                     headers=[("Expires", str(expires)), ("Contact", self.contact())]))
        log.info("upstream subscribed", upstream=self.name, cmd=doc.cmd_type, expires=expires)
        self.audit.record("subscribe", upstream=self.name, cmd=doc.cmd_type, expires=expires)
        handler(sub)

    def _on_message(self, txn: ServerTransaction) -> None:
        req = txn.request
        t = self._t()
        if (req.content_type or "").lower() != MANSCDP_TYPE.lower():
            t.reply(txn, 415, "Expected Application/MANSCDP+xml", headers=[("Accept", MANSCDP_TYPE)])
            return
        try:
            doc = manscdp.parse(req.body, max_size=self.gateway.sip.max_message_size)
        except ManscdpError as exc:
            log.warning("bad MANSCDP body from upstream", upstream=self.name, reason=str(exc))
            t.reply(txn, exc.status, f"Bad MANSCDP body: {exc}"[:120])
            return
        handler = self._commands.get((doc.root, doc.cmd_type))
        if handler is None:
            if doc.root == "Response":
                # An acknowledgement of something we sent (alarm, keepalive answers some uppers send).
                t.reply(txn, 200)
                return
            log.info("upstream request not supported", upstream=self.name, root=doc.root, cmd=doc.cmd_type)
            self.metrics.cascade.labels(self.name, f"{doc.root}/{doc.cmd_type}"[:40], "unsupported").inc()
            t.reply(txn, 488, f"{doc.root} {doc.cmd_type} not supported"[:120])
            return
        handler(txn, doc)

    # -- requests to the upper -----------------------------------------------------------------------

    def _t(self) -> SipTransport:
        if self.transport is None:
            raise RuntimeError(f"upstream {self.name} is not started")
        return self.transport

    def next_sn(self) -> int:
        self._sn = (self._sn + 1) % 1_000_000_000
        return self._sn

    @property
    def target(self) -> Peer:
        """Where requests to the upper go: the registrar we are registered with (after a redirect)."""
        return self.registration.peer if self.registration is not None else self.peer

    def build_request(self, method: str, to_id: str | None = None) -> Request:
        """An out-of-dialog request from the gateway to the upper, built from our police-side identity."""
        if self._requests is None:
            raise RuntimeError(f"upstream {self.name} is not started")
        peer = self.target
        to = to_id or self.config.id
        scheme = self.scheme
        return self._requests.build(
            method, f"{scheme}:{to}@{format_host_port(peer.host, peer.port)}", f"{scheme}:{to}@{self.config.domain}",
            transport=peer.transport,
        )

    @property
    def secure(self) -> bool:
        return self.config.transport == "tls"

    @property
    def scheme(self) -> str:
        """``sips`` over TLS (RFC 3261 §26.2.2: every hop of a sips request is TLS), else ``sip``."""
        return "sips" if self.secure else "sip"

    def contact(self) -> str:
        t = self._t()
        if self.secure:
            # No TLS listener of ours behind this address: the upper answers and sends its requests over the
            # connection we dialled (as RFC 5923 has it), so the Contact only says sips and transport=tls.
            return f"<sips:{self.gateway.sip.id}@{format_host_port(t.host, t.port)};transport=tls>"
        return f"<sip:{self.gateway.sip.id}@{format_host_port(t.host, t.port)}>"

    async def send(self, request: Request) -> Response:
        """Send a request to the upper; a non-2xx or no answer raises :class:`UpstreamError`."""
        started = time.monotonic()
        try:
            response = await self._t().send_request(request, self.target)
        except SipTimeout:
            raise UpstreamError(f"{self.name} did not answer the {request.method}") from None
        except SipError as exc:
            raise UpstreamError(f"{request.method} to {self.name} failed: {exc.reason}") from None
        finally:
            self.metrics.transaction_latency.labels(request.method).observe(time.monotonic() - started)
        if response.status >= 300:
            raise UpstreamError(f"{self.name} answered {response.status} {response.reason}", response.status)
        return response

    async def send_manscdp(self, doc: ManscdpDocument) -> Response:
        request = self.build_request("MESSAGE")
        request.add("Content-Type", MANSCDP_TYPE)
        request.body = manscdp.encode_body(doc, self.gateway.sip.encoding)
        return await self.send(request)

    async def send_pages(self, pages: list[ManscdpDocument], window: int = 8) -> int:
        """Send a multi-message answer, up to ``window`` MESSAGEs awaiting their 200 at once, in order.

        A page per round trip would make a 5,000-channel catalog (one item per 1,300-byte MESSAGE) take
        5,000 round trips; a small window keeps the upper's receive queue short while the answer flows.
        Returns how many pages the upper accepted before the first failure (nothing more is sent after it).
        """
        sent = 0
        failed: UpstreamError | None = None
        in_flight: set[asyncio.Task[Response]] = set()
        pending = iter(pages)
        while True:
            while failed is None and len(in_flight) < window:
                page = next(pending, None)
                if page is None:
                    break
                in_flight.add(asyncio.ensure_future(self.send_manscdp(page)))
            if not in_flight:
                break
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is None:
                    sent += 1
                elif isinstance(exc, UpstreamError):
                    failed = failed or exc
                else:
                    raise exc
        if failed is not None:
            log.warning("answer to upstream cut short", upstream=self.name, cmd=pages[0].cmd_type,
                        sent=sent, of=len(pages), reason=str(failed))
        return sent

    def body_budget(self) -> int:
        """Bytes a MANSCDP body may take so that the whole request, headers included, stays within
        ``catalog_max_bytes``: on UDP a larger datagram is fragmented, and a lost fragment loses the page."""
        if not self._overhead:
            request = self.build_request("MESSAGE")
            request.add("Content-Type", MANSCDP_TYPE)
            # An in-dialog NOTIFY also carries Event, Subscription-State and Contact; and Content-Length
            # and CSeq gain digits.
            self._overhead = len(request.serialize()) + 160
        return max(256, self.config.catalog_max_bytes - self._overhead)

    async def send_in_dialog(self, dialog: Dialog, method: str, doc: ManscdpDocument | None = None) -> Response:
        """A request in ``dialog`` (an upper's INVITE dialog: MediaStatus in a MESSAGE or NOTIFY, BYE), sent
        to the address the dialog lives on, or where the upper listens when that connection is gone;
        raises :class:`UpstreamError` like :meth:`send`."""
        t = self._t()
        peer = dialog.peer if isinstance(dialog.peer, Peer) else self.target
        if peer.reliable and t.connection_peer(peer.host, peer.port) is None:
            peer = self.target
        request = dialog.create_request(method, via=t.via(peer.transport),
                                        body=self.encode(doc) if doc is not None else b"",
                                        content_type=MANSCDP_TYPE if doc is not None else None,
                                        extra_headers=(("User-Agent", self.gateway.sip.user_agent),))
        try:
            response = await t.send_request(request, peer)
        except SipTimeout:
            raise UpstreamError(f"{self.name} did not answer the {method}") from None
        except SipError as exc:
            raise UpstreamError(f"{method} to {self.name} failed: {exc.reason}") from None
        if response.status >= 300:
            raise UpstreamError(f"{self.name} answered {response.status} {response.reason}", response.status)
        return response

    def encode(self, doc: ManscdpDocument) -> bytes:
        return manscdp.encode_body(doc, self.gateway.sip.encoding)

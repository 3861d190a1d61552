"""The tool's platform side over sockets: one SipTransport (UDP and TCP on ``--listen``), the registrar,
an inbox of what the device sends (keepalives, query answers, notifications), and the requests the
items send (MESSAGE queries and controls, INVITE/ACK/BYE).

Everything the device sends is answered here at once (200 to MESSAGE, the registrar's answer to
REGISTER), so an item that is busy waiting never delays an answer the device is timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from gbgw.conformance.tool.registrar import Registrar
from gbgw.gb28181.manscdp import ManscdpDocument, ManscdpError, encode_body, parse
from gbgw.sip.dialog import Dialog
from gbgw.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request, Response
from gbgw.sip.requests import RequestBuilder
from gbgw.sip.transaction import ServerTransaction, Timers
from gbgw.sip.transport import SipTransport

MANSCDP_TYPE = "Application/MANSCDP+xml"
USER_AGENT = "gb28181-conformance"


@dataclass(slots=True)
class Received:
    """One MANSCDP body the device sent, with when it arrived and its bytes (evidence)."""

    at: float
    doc: ManscdpDocument
    body: bytes
    method: str = "MESSAGE"
    call_id: str = ""
    """Of the request that carried it: a NOTIFY in a subscription's dialog shares its Call-ID."""


@dataclass(slots=True)
class Arrival:
    """Any request that reached the tool, for the "what arrived instead" evidence."""

    at: float
    source: str
    line: str
    from_: str


@dataclass(slots=True)
class Exchange:
    """A query or control sent and what came back: the final status to the MESSAGE, then the answers."""

    request: bytes
    status: int | None = None
    answers: list[Received] = field(default_factory=list)


def body_text(body: bytes) -> str:
    """A body as evidence: decoded liberally (GB18030 covers GB2312 and GBK), cut at 2,000 characters."""
    text = body.decode("gb18030", errors="replace")
    return text if len(text) <= 2000 else text[:2000] + "\n[...]"


class Platform:
    def __init__(
        self, platform_id: str, domain: str, registrar: Registrar, *, device_id: str | None = None, t1: float = 0.5
    ) -> None:
        self.platform_id = platform_id
        self.expected_device = device_id
        """Only this device may register (others get 403 and are listed as what arrived instead)."""
        self.domain = domain
        self.registrar = registrar
        self.endpoint = SipEndpoint(EndpointConfig(user_agent=USER_AGENT, timers=Timers(t1=t1)))
        self.transport = SipTransport(self.endpoint, self._on_request)
        self.builder = RequestBuilder(self.transport, f"sip:{platform_id}@{domain}", USER_AGENT)
        self.device: Peer | None = None
        """Where the device's last REGISTER came from: requests go there (NAT: never the Contact)."""
        self.arrivals: list[Arrival] = []
        self.keepalives: list[Received] = []
        self.notifies: list[Received] = []
        self.registered = asyncio.Event()
        self.changed = asyncio.Event()
        """Set whenever anything arrives; waiters clear it and wait again."""
        self._answers: defaultdict[tuple[str, int], list[Received]] = defaultdict(list)
        self._sn = itertools.count(int(time.time()) % 100_000 * 10)
        self._dialogs: dict[str, Dialog] = {}

    async def start(self, host: str, port: int) -> tuple[str, int]:
        return await self.transport.start(host, port)

    async def close(self) -> None:
        await self.transport.close()

    @property
    def device_id(self) -> str:
        return self.registrar.log.device_id

    def next_sn(self) -> int:
        return next(self._sn)

    # -- what the device sends --------------------------------------------------------------------------

    def _on_request(self, txn: ServerTransaction) -> None:
        request = txn.request
        now = self.transport.now()
        with contextlib.suppress(SipError):
            self.arrivals.append(Arrival(now, f"{txn.remote.transport} {txn.remote.host}:{txn.remote.port}",
                                         request.start_line(), str(request.from_.uri)))
        self.changed.set()
        if request.method == "REGISTER":
            if self.expected_device and request.from_.uri.user != self.expected_device:
                self.transport.reply(txn, 403, "Not the device under test")
                return
            answer = self.registrar.handle(request, now, time.time(), datetime.now())
            if 200 <= answer.status < 300:
                self.device = txn.remote
            self.transport.reply(txn, answer.status, answer.reason, headers=answer.headers)
            if self.registrar.registered:
                self.registered.set()
            return
        if request.method in ("MESSAGE", "NOTIFY"):
            self._on_manscdp(txn, now)
            return
        if request.method == "BYE":
            self.transport.reply(txn, 200)
            return
        self.transport.reply(txn, 405 if request.method != "OPTIONS" else 200)

    def _on_manscdp(self, txn: ServerTransaction, now: float) -> None:
        body = txn.request.body
        try:
            doc = parse(body)
        except ManscdpError as exc:
            self.transport.reply(txn, exc.status, exc.reason)
            return
        self.transport.reply(txn, 200)
        received = Received(now, doc, body, txn.request.method, txn.request.call_id or "")
        if doc.cmd_type == "Keepalive":
            self.keepalives.append(received)
        elif doc.root == "Response" and doc.sn is not None:
            self._answers[(doc.cmd_type, doc.sn)].append(received)
        else:
            self.notifies.append(received)

    # -- what the items send ----------------------------------------------------------------------------

    def _device_peer(self) -> Peer:
        if self.device is None:
            raise RuntimeError("the device has not registered")
        return self.device

    def message(self, target_id: str, doc: ManscdpDocument) -> tuple[Request, asyncio.Future[Response]]:
        body = encode_body(doc, "GB2312")
        uri = f"sip:{target_id}@{self.domain}"
        request = self.builder.build("MESSAGE", uri, uri, transport=self._device_peer().transport,
                                     headers=[("Content-Type", MANSCDP_TYPE)], body=body)
        return request, self.transport.send_request(request, self._device_peer())

    async def exchange(
        self,
        target_id: str,
        doc: ManscdpDocument,
        timeout: float,
        done: Callable[[list[Received]], bool] | None,
        *,
        quiet: float = 2.0,
    ) -> Exchange:
        """Send ``doc`` and gather the Responses with its SN until ``done`` says they are complete, or
        ``timeout`` passes, or (once one arrived) ``quiet`` seconds pass without another. ``done`` None
        waits for the 200 only (controls the standard gives no Response)."""
        request, future = self.message(target_id, doc)
        result = Exchange(request.serialize())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            response = await asyncio.wait_for(future, timeout)
            result.status = response.status
        except (TimeoutError, SipError):
            return result
        if done is None or result.status >= 300:
            return result
        key = (doc.cmd_type, doc.sn or 0)
        while True:
            result.answers = list(self._answers.get(key, ()))
            if result.answers and done(result.answers):
                return result
            now = loop.time()
            limit = deadline
            if result.answers:
                limit = min(deadline, result.answers[-1].at + quiet)
            if now >= limit:
                return result
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), limit - now)

    async def invite(self, target_id: str, sdp: bytes, ssrc: str, timeout: float) -> tuple[Request, Response | None]:
        """INVITE ``target_id`` with ``sdp``; on 200, ACK it. Returns the INVITE and its final answer."""
        peer = self._device_peer()
        host = self.transport.host
        uri = f"sip:{target_id}@{self.domain}"
        request = self.builder.build(
            "INVITE", uri, uri, transport=peer.transport,
            headers=[("Contact", f"<sip:{self.platform_id}@{host}:{self.transport.port}>"),
                     ("Subject", f"{target_id}:{ssrc},{self.platform_id}:0"),
                     ("Content-Type", "APPLICATION/SDP")],
            body=sdp,
        )
        try:
            response = await asyncio.wait_for(self.transport.send_request(request, peer), timeout)
        except (TimeoutError, SipError):
            return request, None
        if 200 <= response.status < 300:
            dialog = Dialog.from_uac(request, response, peer)
            ack = dialog.create_ack(request.cseq.seq, via=self.transport.via(peer.transport))
            self.transport.send_ack(ack, peer)
            self._dialogs[request.call_id or ""] = dialog
        return request, response

    async def bye(self, call_id: str, timeout: float) -> int | None:
        dialog = self._dialogs.pop(call_id, None)
        if dialog is None:
            return None
        peer = self._device_peer()
        bye = dialog.create_request("BYE", via=self.transport.via(peer.transport))
        try:
            response = await asyncio.wait_for(self.transport.send_request(bye, peer), timeout)
        except (TimeoutError, SipError):
            return None
        return response.status

    async def info(self, call_id: str, body: bytes, timeout: float) -> int | None:
        """A MANSRTSP INFO (Annex B) in a call's dialog; the final status, None when none came."""
        dialog = self._dialogs.get(call_id)
        if dialog is None:
            return None
        peer = self._device_peer()
        request = dialog.create_request("INFO", via=self.transport.via(peer.transport), body=body,
                                        content_type="Application/MANSRTSP")
        try:
            response = await asyncio.wait_for(self.transport.send_request(request, peer), timeout)
        except (TimeoutError, SipError):
            return None
        return response.status

    async def subscribe(
        self, target_id: str, doc: ManscdpDocument, event: str, expires: int, timeout: float
    ) -> tuple[Request, Response | None]:
        """SUBSCRIBE ``target_id`` with ``doc`` (a Catalog or Alarm query, A.2.4 / §9.11); the dialog a 2xx
        creates is kept for `unsubscribe`."""
        peer = self._device_peer()
        uri = f"sip:{target_id}@{self.domain}"
        request = self.builder.build(
            "SUBSCRIBE", uri, uri, transport=peer.transport,
            headers=[("Contact", f"<sip:{self.platform_id}@{self.transport.host}:{self.transport.port}>"),
                     ("Event", event), ("Expires", str(expires)), ("Content-Type", MANSCDP_TYPE)],
            body=encode_body(doc, "GB2312"),
        )
        try:
            response = await asyncio.wait_for(self.transport.send_request(request, peer), timeout)
        except (TimeoutError, SipError):
            return request, None
        if 200 <= response.status < 300:
            self._dialogs[request.call_id or ""] = Dialog.from_uac(request, response, peer)
        return request, response

    async def unsubscribe(self, call_id: str, doc: ManscdpDocument, event: str, timeout: float) -> Response | None:
        """SUBSCRIBE with Expires: 0 in the subscription's dialog (RFC 6665 §4.1.2.3)."""
        dialog = self._dialogs.pop(call_id, None)
        if dialog is None:
            return None
        peer = self._device_peer()
        request = dialog.create_request(
            "SUBSCRIBE", via=self.transport.via(peer.transport),
            contact=f"<sip:{self.platform_id}@{self.transport.host}:{self.transport.port}>",
            body=encode_body(doc, "GB2312"), content_type=MANSCDP_TYPE,
            extra_headers=(("Event", event), ("Expires", "0")),
        )
        try:
            return await asyncio.wait_for(self.transport.send_request(request, peer), timeout)
        except (TimeoutError, SipError):
            return None

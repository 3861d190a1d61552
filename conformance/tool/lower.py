"""The tool's lower side for ``gb28181-conformance lower``: a device (an NVR with ``channels`` cameras, or a
lower platform) registering to the platform under test over one SipTransport, answering what the
platform asks the way the simulator's devices do (`conformance.simulator.answers`: paged catalogs,
DeviceInfo, DeviceStatus, RecordInfo, presets, ConfigDownload, control Results), streaming PS for a
Play INVITE (`conformance.simulator.media`), and keeping everything it received and every answer it
got, for the 下联 checks to judge.

Registration is done by hand here rather than by `sip.registration`, because the checks judge the
exchange itself: the challenge's form, the refusal of a wrong answer, the ``Date`` of the 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gbgw.conformance.simulator import answers
from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.media import MediaCall, MediaOptions, MediaSource, OfferError
from gbgw.gb28181.manscdp import (
    ManscdpDocument,
    ManscdpError,
    encode_body,
    notify_alarm,
    notify_catalog,
    notify_keepalive,
    parse,
    response_result,
)
from gbgw.sip.dialog import Dialog
from gbgw.sip.digest import DigestClient, DigestError, parse_challenge
from gbgw.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request, Response, make_response, new_call_id, new_tag
from gbgw.sip.requests import RequestBuilder
from gbgw.sip.transaction import ServerTransaction, Timers
from gbgw.sip.transport import SipTransport

MANSCDP_TYPE = "Application/MANSCDP+xml"
USER_AGENT = "gb28181-conformance"


@dataclass(slots=True)
class Inbound:
    """One request of the platform under test, with what the tool answered and sent after it."""

    at: float
    request: Request
    doc: ManscdpDocument | None
    status: int = 0
    """The tool's final answer to it."""
    followups: list[int | None] = field(default_factory=list)
    """The platform's answers to what the tool sent because of it (Response pages, NOTIFYs); None when
    none came."""
    acked: bool = False


@dataclass(slots=True)
class RegisterLeg:
    request: Request
    response: Response | None


class LowerSide:
    def __init__(
        self, lower_id: str, platform_id: str, domain: str, password: str, target: Peer, *,
        channels: int = 3, page_size: int = 2, media: Path | None = None, t1: float = 0.5, expires: int = 3600,
    ) -> None:
        self.lower_id = lower_id
        self.platform_id = platform_id
        self.domain = domain
        self.password = password
        self.target = target
        self.expires = expires
        self.config = SimulatorConfig(
            server_host=target.host, server_port=target.port, id_prefix=lower_id[:13], start=int(lower_id[13:]),
            channels=channels, domain=domain, server_id=platform_id, password=password,
            catalog_page_size=page_size, user_agent=USER_AGENT,
        )
        self.source = MediaSource.load(media, "h264") if media is not None else None
        self.endpoint = SipEndpoint(EndpointConfig(user_agent=USER_AGENT, timers=Timers(t1=t1)))
        self.transport = SipTransport(self.endpoint, self._on_request, on_ack=self._on_ack)
        self.builder = RequestBuilder(self.transport, f"sip:{lower_id}@{domain}", USER_AGENT)
        self.inbox: list[Inbound] = []
        self.changed = asyncio.Event()
        self.register_legs: list[RegisterLeg] = []
        self.keepalive_answers: list[int | None] = []
        self.calls: dict[str, MediaCall] = {}
        self.byes: list[str] = []
        self._subscriptions: dict[str, Dialog] = {}
        self._sn = itertools.count(1)
        self._register_call_id = new_call_id("conformance")
        self._register_tag = new_tag()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def channel_ids(self) -> list[str]:
        return [self.config.channel_id(self.config.start, c) for c in range(1, self.config.channels + 1)]

    async def start(self, host: str, port: int) -> tuple[str, int]:
        return await self.transport.start(host, port)

    async def close(self) -> None:
        for call in self.calls.values():
            call.close("tool stopping")
        for task in list(self._tasks):
            task.cancel()
        await self.transport.close()

    def _contact(self) -> str:
        return f"<sip:{self.lower_id}@{self.transport.host}:{self.transport.port}>"

    # -- what the tool sends ------------------------------------------------------------------------

    async def _send(self, request: Request, timeout: float) -> Response | None:
        try:
            return await asyncio.wait_for(self.transport.send_request(request, self.target), timeout)
        except (TimeoutError, SipError):
            return None

    def _register_request(self, expires: int, authorization: str | None, call_id: str) -> Request:
        uri = f"sip:{self.platform_id}@{self.domain}"
        headers = [("Contact", self._contact()), ("Expires", str(expires))]
        if authorization:
            headers.append(("Authorization", authorization))
        return self.builder.build("REGISTER", uri, f"sip:{self.lower_id}@{self.domain}",
                                  transport=self.target.transport, call_id=call_id,
                                  from_tag=self._register_tag, headers=headers)

    async def register(self, expires: int, timeout: float, *, password: str | None = None,
                       call_id: str | None = None) -> list[RegisterLeg]:
        """One registration: REGISTER, and the answer to a 401 with ``password`` (default the right one).
        Returns its legs (also kept in `register_legs`)."""
        call_id = call_id or self._register_call_id
        legs = [RegisterLeg(request := self._register_request(expires, None, call_id), None)]
        legs[0].response = await self._send(request, timeout)
        response = legs[0].response
        if response is not None and response.status in (401, 407):
            header = response.get("WWW-Authenticate") or response.get("Proxy-Authenticate") or ""
            try:
                challenge = parse_challenge(header)
            except DigestError:
                self.register_legs += legs
                return legs
            client = DigestClient(self.lower_id, self.password if password is None else password)
            authorization = client.authorization(challenge, "REGISTER", f"sip:{self.platform_id}@{self.domain}")
            request = self._register_request(expires, authorization, call_id)
            legs.append(RegisterLeg(request, await self._send(request, timeout)))
        self.register_legs += legs
        return legs

    def keepalive_body(self) -> bytes:
        return encode_body(notify_keepalive(next(self._sn), self.lower_id), "GB2312")

    async def message(self, doc: ManscdpDocument, timeout: float) -> int | None:
        uri = f"sip:{self.platform_id}@{self.domain}"
        request = self.builder.build("MESSAGE", uri, uri, transport=self.target.transport,
                                     headers=[("Content-Type", MANSCDP_TYPE)], body=encode_body(doc, "GB2312"))
        response = await self._send(request, timeout)
        return response.status if response is not None else None

    async def keepalive(self, timeout: float) -> int | None:
        status = await self.message(notify_keepalive(next(self._sn), self.lower_id), timeout)
        self.keepalive_answers.append(status)
        return status

    async def alarm(self, timeout: float) -> tuple[ManscdpDocument, int | None]:
        doc = notify_alarm(next(self._sn), self.channel_ids[0] if self.channel_ids else self.lower_id,
                           priority=1, method=2, time=datetime.now().replace(microsecond=0),
                           description="gb28181-conformance alarm")
        return doc, await self.message(doc, timeout)

    async def notify_catalog(self, event: str, timeout: float) -> tuple[str, int | None] | None:
        """A catalog NOTIFY (``event`` for the first camera) in the platform's Catalog subscription."""
        for call_id, dialog in self._subscriptions.items():
            items = answers.catalog_items(self.config, self.config.start, 1, event)
            doc = notify_catalog(next(self._sn), self.lower_id, items, sum_num=len(items))
            request = dialog.create_request(
                "NOTIFY", via=self.transport.via(self.target.transport), contact=self._contact(),
                body=encode_body(doc, "GB2312"), content_type=MANSCDP_TYPE,
                extra_headers=(("Event", "Catalog"), ("Subscription-State", "active;expires=3600")),
            )
            response = await self._send(request, timeout)
            return call_id, response.status if response is not None else None
        return None

    # -- what the platform sends --------------------------------------------------------------------

    def _on_request(self, txn: ServerTransaction) -> None:
        request = txn.request
        doc = None
        if request.method in ("MESSAGE", "SUBSCRIBE") and request.body:
            with contextlib.suppress(ManscdpError):
                doc = parse(request.body)
        inbound = Inbound(self.transport.now(), request, doc)
        self.inbox.append(inbound)
        self.changed.set()
        if request.method == "MESSAGE":
            self._on_message(txn, inbound)
        elif request.method == "INVITE":
            self._on_invite(txn, inbound)
        elif request.method == "BYE":
            call = self.calls.pop(request.call_id or "", None)
            if call is not None:
                call.close("BYE")
                self.byes.append(request.call_id or "")
            inbound.status = 200 if call is not None else 481
            self.transport.reply(txn, inbound.status)
        elif request.method == "SUBSCRIBE":
            inbound.status = 200
            tag = new_tag()
            response = make_response(request, 200, to_tag=tag,
                                     headers=[("Expires", request.get("Expires") or "3600"), ("Contact", self._contact())])
            self.transport.respond(txn, response)
            if (request.get("Event") or "").split(";")[0].strip().lower() == "catalog":
                self._subscriptions[request.call_id or ""] = Dialog.from_uas(request, tag, self._contact(),
                                                                             peer=txn.remote)
        elif request.method == "INFO" and (call := self.calls.get(request.call_id or "")) is not None:
            # MANSRTSP playback control: the call answers it as a simulated NVR would.
            status, body = call.control(request.body)
            inbound.status = status
            self.transport.reply(txn, status, headers=[("Content-Type", "Application/MANSRTSP")] if body else [],
                                 body=body)
        else:
            inbound.status = 200 if request.method in ("OPTIONS", "INFO", "NOTIFY") else 405
            self.transport.reply(txn, inbound.status)

    def _on_ack(self, request: Request, source: Peer) -> None:
        for inbound in self.inbox:
            if inbound.request.method == "INVITE" and inbound.request.call_id == request.call_id:
                inbound.acked = True
        call = self.calls.get(request.call_id or "")
        if call is not None:
            call.start(lambda finished: None)
        self.changed.set()

    def _on_message(self, txn: ServerTransaction, inbound: Inbound) -> None:
        doc = inbound.doc
        if doc is None:
            inbound.status = 400
            self.transport.reply(txn, 400, "Unreadable MANSCDP")
            return
        located = self.config.locate(doc.device_id or "")
        if located is None:
            inbound.status = 404
            self.transport.reply(txn, 404, "Not a device or channel of the tool")
            return
        number, channel = located
        inbound.status = 200
        self.transport.reply(txn, 200)
        pages = self._answers(doc, number, channel)
        if pages:
            self._spawn(self._send_pages(inbound, pages))

    def _answers(self, doc: ManscdpDocument, number: int, channel: int) -> list[ManscdpDocument]:
        cfg, sn, target = self.config, doc.sn or 0, doc.device_id or ""
        if doc.root == "Query":
            match doc.cmd_type:
                case "Catalog":
                    return answers.catalog(cfg, number, channel, sn, target)
                case "DeviceInfo":
                    return [answers.device_info(cfg, number, sn, target)]
                case "DeviceStatus":
                    return [answers.device_status(cfg, number, sn, target, datetime.now())]
                case "RecordInfo":
                    return answers.record_info(cfg, number, channel, doc)
                case "PresetQuery":
                    return [answers.presets(cfg, sn, target)]
                case "ConfigDownload":
                    return [answers.config_download(cfg, number, channel, doc)]
            return []
        if doc.root == "Control" and answers.control_answered(doc):
            return [response_result(doc.cmd_type, doc.sn, target)]
        return []

    async def _send_pages(self, inbound: Inbound, pages: list[ManscdpDocument]) -> None:
        for page in pages:
            inbound.followups.append(await self.message(page, 5.0))
        self.changed.set()

    def _on_invite(self, txn: ServerTransaction, inbound: Inbound) -> None:
        request = inbound.request
        channel_id = request.request_uri.user or ""
        if self.source is None:
            inbound.status = 488
            self.transport.reply(txn, 488, "No media (the tool runs without --media)")
            return
        try:
            call, sdp = MediaCall.answer(request.call_id or "", channel_id, request.body, self.source,
                                         MediaOptions(), bind=self.transport.host,
                                         signalling_host=txn.remote.host)
        except OfferError as exc:
            inbound.status = exc.status
            self.transport.reply(txn, exc.status, exc.reason)
            return
        self.calls[request.call_id or ""] = call
        inbound.status = 200
        self.transport.reply(txn, 200, headers=[("Contact", self._contact()), ("Content-Type", "APPLICATION/SDP")],
                             body=sdp)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


"""Streams upward: the upper's INVITE for a shared channel, relayed from the device leg to a police-side
output.

Back to back: the upper's dialog and the device's are two dialogs that share nothing but the relay. The
answer SDP is built here from the upstream's ``media_ip`` and a port of its ``media_ports`` (one
:class:`~gbgw.rtp.ports.PortRange` per upstream, held for the link's life), never from the device's answer.
The device leg is :class:`~gbgw.gb28181.media.live.LiveStreams`' business: a running channel is joined (the relay
starts the upper on a keyframe from its GOP cache), and the leg outlives the upper's session until the
relay's idle timeout, so an API viewer or another upper keeps watching.

What the upper is answered, and why (the log and the audit record say the real reason):

- ``404``  unknown channel, a channel this upper does not share, or an ID its mapping does not produce
  (one answer for all three, so the upper cannot probe what exists behind the boundary)
- ``480``  the channel's device (or the channel itself) is offline
- ``488``  an offer the relay cannot serve: no video, no PS payload, not ``s=Play`` (playback and
  download are :mod:`~gbgw.gb28181.cascade.history`'s when it is wired), nowhere to send to
- ``502``/``504``/``503``  the device refused, did not answer or sent no media / no port free
- ``487``  the upper CANCELled before the answer (the device leg, if it comes up, is released at once)

A session is torn down, and the upper sent a BYE where it still listens, when: the upper does not ACK
within 64*T1 (no BYE then), the upper closes the TCP media connection, the upper's RTCP stops for three
media timeouts after it had been sending some (or it sends an RTCP BYE), the upper goes offline, or the
device leg ends (device BYE, media timeout that a re-INVITE could not cure, an operator stopping it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.cascade.link import UpstreamLink
from gbgw.gb28181.config import GatewayConfig, MediaSourceKind, MediaSourceRule
from gbgw.gb28181.media.live import LiveStreams, PlayError, Session
from gbgw.gb28181.media.substreams import requested_stream
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry
from gbgw.rtp.ports import PortRange, interface_for
from gbgw.rtp.relay import MediaTransport
from gbgw.sip.dialog import Dialog
from gbgw.sip.endpoint import Peer
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request
from gbgw.sip.sdp import SdpError, SessionDescription
from gbgw.sip.transaction import ServerTransaction

if TYPE_CHECKING:
    from gbgw.sip.transport import SipTransport

log = structlog.get_logger("gb28181.cascade.media")

SDP_TYPE = "APPLICATION/SDP"
PS_ENCODINGS = frozenset({"PS", "MP2P"})
"""Names upper platforms give MPEG-PS in ``a=rtpmap`` (GB/T 28181 says PS; some write MP2P)."""
DEFAULT_PS_PAYLOAD = 96
RTCP_SILENCE_FACTOR = 3
"""An upper that sent RTCP and then none for this many media timeouts is gone."""
_UNSPECIFIED = frozenset({"", "0.0.0.0", "::"})
_MAX_RTP_SSRC = 0xFFFFFFFF
PLAY_ONLY = frozenset({"play"})
"""The ``s=`` names (lower case) :func:`parse_offer` serves unless told otherwise."""
RecordedInvite = Callable[[ServerTransaction, str, str], bool]
"""Takes an admitted INVITE (transaction, upper's ID, device-side ID) if it is a playback or download."""



class UpperState(StrEnum):
    """An upper's INVITE: pending -> 200 sent -> ACKed -> ended; or cancelled (CANCEL, gateway stopping)
    before the answer."""

    INVITING = "inviting"
    ANSWERED = "answered"
    CONFIRMED = "confirmed"
    ENDED = "ended"
    CANCELLED = "cancelled"


_ESTABLISHED = frozenset({UpperState.ANSWERED, UpperState.CONFIRMED})


class OfferRefused(Exception):
    """An upper's INVITE the gateway will not serve: ``status`` and ``reason`` are what the upper is
    answered; ``detail`` (the real reason) and ``channel`` (the device-side ID) are for the log only."""

    def __init__(self, status: int, reason: str, detail: str = "", channel: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail or reason
        self.channel = channel


@dataclass(slots=True, frozen=True)
class UpperOffer:
    """What the upper asked for, seen from our output: ``transport`` is our role (``tcp-passive``: the
    upper connects to us), ``host``/``port`` where media goes (or, for ``tcp-passive``, the only host
    that may connect), ``ssrc`` the upper's ``y=`` when it is usable as an RTP SSRC."""

    transport: MediaTransport
    host: str
    port: int | None
    ssrc: str | None
    payload_type: int
    substream: int | None = None
    """The camera stream the upper chose (``a=streamnumber`` and its variants), passed down to the device."""

    @property
    def tcp(self) -> bool:
        return self.transport is not MediaTransport.UDP


def parse_offer(body: bytes, signalling_host: str, sessions: frozenset[str] = PLAY_ONLY) -> UpperOffer:
    """Read an upper's Play offer liberally; raise :class:`OfferRefused` when it cannot be served.

    A missing or unspecified ``c=`` address falls back to ``signalling_host`` (where the INVITE came
    from). ``a=setup`` is the upper's role: ``active`` (it connects) makes our output TCP passive,
    ``passive`` makes it TCP active; without ``a=setup`` the offerer is active (RFC 4145 4.1), and for
    ``actpass`` we connect when the upper gave a port to connect to.
    """
    try:
        sdp = SessionDescription.parse(body)
    except SdpError as exc:
        raise OfferRefused(400, f"Unreadable SDP offer: {exc.reason}"[:120]) from None
    name = (sdp.session_name or "Play").strip()
    if name.lower() not in sessions:
        raise OfferRefused(488, f"{name[:20]} is not relayed upward, only Play")
    video = next((m for m in sdp.media if m.kind.lower() == "video"), None)
    if video is None:
        raise OfferRefused(488, "No video stream offered")
    if sdp.direction_of(video) in ("sendonly", "inactive"):
        raise OfferRefused(488, "The offer does not receive video")
    payload_type = _ps_payload(video.formats, video.rtpmap)
    if payload_type is None:
        raise OfferRefused(488, "PS over RTP not offered")
    address = sdp.address_of(video)
    host = signalling_host if address in _UNSPECIFIED else address
    port = video.port or None
    if video.is_tcp:
        setup = video.setup
        if setup == "passive" or (setup == "actpass" and port not in (None, 9)):
            transport = MediaTransport.TCP_ACTIVE
        elif setup in (None, "active", "actpass"):
            transport = MediaTransport.TCP_PASSIVE
        else:
            raise OfferRefused(488, f"Unknown a=setup role {setup[:20]}")
    else:
        transport = MediaTransport.UDP
    if transport is not MediaTransport.TCP_PASSIVE and port is None:
        raise OfferRefused(488, "No media port to send to")
    ssrc_number = sdp.ssrc_int
    ssrc = f"{ssrc_number:010d}" if ssrc_number is not None and ssrc_number <= _MAX_RTP_SSRC else None
    return UpperOffer(transport, host, None if transport is MediaTransport.TCP_PASSIVE else port, ssrc,
                      payload_type, requested_stream(sdp.media))


def upper_may_connect(rule: MediaSourceRule, signalling_host: str, offer_host: str) -> Callable[[str], bool]:
    """Who may connect to a TCP-passive output toward an upper (``upstreams[].media_source``).

    The offer's ``c=`` address is always admitted under ``signalling`` and ``sdp``, as it was before the
    rule existed: it is where the upper itself said its media end is. ``signalling`` and ``sdp`` also
    admit the upper's SIP address; a network list admits exactly those networks and nothing the upper
    says (a media server that connects from a wildcard-bound socket, not from its advertised address).
    """
    if rule.kind is MediaSourceKind.NETWORKS:
        return lambda ip: rule.permits(ip, signalling_host, offer_host)
    return lambda ip: rule.permits(ip, signalling_host, offer_host) or rule.permits(ip, offer_host, None)


def _ps_payload(formats: list[int], rtpmap: dict[int, tuple[str, int]]) -> int | None:
    for pt in formats:
        mapped = rtpmap.get(pt)
        if mapped is not None and mapped[0].upper() in PS_ENCODINGS:
            return pt
    # Static-looking offers without rtpmap lines: 96 is PS by GB/T 28181 convention.
    if DEFAULT_PS_PAYLOAD in formats and DEFAULT_PS_PAYLOAD not in rtpmap:
        return DEFAULT_PS_PAYLOAD
    return None


def build_answer(offer: UpperOffer, origin_user: str, media_ip: str, port: int, ssrc: str, *,
                 session_name: str = "Play", time: tuple[int, int] = (0, 0), uri: str | None = None,
                 attributes: Iterable[tuple[str, str | None]] = ()) -> bytes:
    """The police-side SDP answer: our media address and port, the SSRC we send, the opposite TCP role
    (``time``, ``uri`` and ``attributes`` for a recording's answer)."""
    setup = None
    if offer.transport is MediaTransport.TCP_PASSIVE:
        setup = "passive"
    elif offer.transport is MediaTransport.TCP_ACTIVE:
        setup = "active"
    return SessionDescription.offer(
        session_name,
        origin_user,
        media_ip,
        port,
        "TCP/RTP/AVP" if offer.tcp else "RTP/AVP",
        [(offer.payload_type, "PS", 90000)],
        ssrc,
        setup=setup,
        connection="new" if offer.tcp else None,
        direction="sendonly",
        time=time,
        uri=uri,
        attributes=attributes,
    ).serialize()


class UpperInvite(Protocol):
    """An upper's INVITE as the dialog steps below see it: a live stream's or a recording's."""

    state: UpperState
    ended: str | None
    txn: ServerTransaction
    dialog: Dialog | None
    answer: bytes
    ack_timer: asyncio.TimerHandle | None
    task: asyncio.Task[None] | None


def confirm(record: UpperInvite | None) -> None:
    """The upper's ACK of our 200 (any other ACK changes nothing)."""
    if record is None or record.state is not UpperState.ANSWERED:
        return
    record.state = UpperState.CONFIRMED
    if record.ack_timer is not None:
        record.ack_timer.cancel()
        record.ack_timer = None


def answer_refresh(transport: SipTransport, txn: ServerTransaction, record: UpperInvite | None, contact: str) -> None:
    """A re-INVITE in the upper's dialog (a session refresh) keeps the session as it is: answered with the
    same SDP; 481 outside a known dialog."""
    if record is None or record.dialog is None or not record.dialog.matches(txn.request):
        transport.reply(txn, 481)
        return
    try:
        record.dialog.receive_request(txn.request)
    except SipError as exc:
        transport.reply(txn, exc.status, exc.reason)
        return
    transport.reply(txn, 200, headers=[("Contact", contact), ("Content-Type", SDP_TYPE)], body=record.answer)


def abandon_pending(record: UpperInvite, transport: SipTransport | None, reason: str, status: int,
                    phrase: str) -> None:
    """End an INVITE not answered yet (gateway stopping, channel no longer shared): ``status`` to the
    upper and its set-up task cancelled."""
    record.state = UpperState.CANCELLED
    record.ended = reason
    if transport is not None:
        with contextlib.suppress(SipError):
            transport.reply(record.txn, status, phrase)
    if record.task is not None:
        record.task.cancel()


@dataclass(slots=True, eq=False)
class UpperSession:
    """One INVITE of the upper, in its :class:`UpperState`. ``live`` is the relay session feeding it."""

    call_id: str
    upper_channel: str
    channel: str
    offer: UpperOffer
    ssrc: str
    txn: ServerTransaction
    peer: Peer
    state: UpperState = UpperState.INVITING
    dialog: Dialog | None = None
    live: Session | None = None
    answer: bytes = b""
    ack_timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None
    created: float = field(default_factory=time.monotonic)
    ended: str | None = None

    def describe(self) -> dict[str, Any]:
        output = self.live.output if self.live is not None else None
        return {
            "call_id": self.call_id,
            "channel_id": self.channel,
            "upper_channel_id": self.upper_channel,
            "state": self.state.value,
            "transport": self.offer.transport.value,
            "receiver": f"{self.offer.host}:{self.offer.port}" if self.offer.port else self.offer.host,
            "ssrc": self.ssrc,
            "session": self.live.id if self.live is not None else None,
            "local_port": output.local_port if output is not None else None,
            "packets_out": output.sent if output is not None else 0,
            "age": round(time.monotonic() - self.created, 3),
        }


class UpstreamStreams:
    """The upper's INVITE/ACK/BYE/CANCEL on one upstream link, and the sessions they make.

    ``sessions`` holds the sessions being set up or running, by the upper's Call-ID; ``totals`` counts
    outcomes for this upstream (the same as the ``gb_cascade_requests`` metric, kind ``invite``).
    """

    def __init__(self, link: UpstreamLink, config: GatewayConfig, registry: DeviceRegistry, live: LiveStreams,
                 audit: AuditLog, metrics: GatewayMetrics, tasks: BackgroundTasks,
                 recorded: RecordedInvite | None = None) -> None:
        self.link = link
        self.registry = registry
        self.live = live
        self.audit = audit
        self.metrics = metrics
        self.tasks = tasks
        self.recorded = recorded
        self.gateway_id = config.sip.id
        self.user_agent = config.sip.user_agent
        upstream = link.config
        self.media_ip = upstream.media_ip
        self.ports = PortRange(upstream.media_ports, interface_for(upstream.media_ip))
        self.sessions: dict[str, UpperSession] = {}
        self.totals: dict[str, int] = {}
        self.ack_timeout = 64 * config.sip.t1
        self.rtcp_timeout = RTCP_SILENCE_FACTOR * config.media.media_timeout
        self._watch: asyncio.TimerHandle | None = None
        self._closed = False
        link.handle("INVITE", self._on_invite)
        link.handle("BYE", self._on_bye)
        link.handle("CANCEL", self._on_cancel)
        link.on_ack(self._on_ack)
        link.add_status_listener(self._on_link_status)

    # -- INVITE --------------------------------------------------------------------------------------

    def _on_invite(self, txn: ServerTransaction) -> None:
        request = txn.request
        transport = self.link.transport
        assert transport is not None
        call_id = request.call_id or ""
        if request.to.tag is not None:
            self._on_reinvite(txn, call_id)
            return
        if call_id in self.sessions:
            transport.reply(txn, 400, "Call-ID already in use")
            return
        upper_channel = self._target_id(request)
        channel = ""
        try:
            channel = self._admit(upper_channel)
            if request.contact is None:
                raise OfferRefused(400, "INVITE without Contact")
            if (request.content_type or "").lower() != SDP_TYPE.lower():
                raise OfferRefused(415, "Expected an SDP offer")
            if self.recorded is not None and self.recorded(txn, upper_channel, channel):
                return
            offer = parse_offer(request.body, txn.remote.host)
        except OfferRefused as exc:
            self._refuse(txn, upper_channel, exc.channel or channel, exc.status, exc.reason, exc.detail)
            return
        ssrc = offer.ssrc or self.live.new_ssrc()
        record = UpperSession(call_id, upper_channel, channel, offer, ssrc, txn, txn.remote)
        self.sessions[call_id] = record
        record.task = self.tasks.spawn(self._connect(record))

    def _target_id(self, request: Request) -> str:
        """The channel asked for: the Request-URI's user, or To's when the URI names the gateway itself."""
        try:
            user = request.request_uri.user or ""
        except SipError:
            user = ""
        if not user or user == self.gateway_id:
            user = request.to.uri.user or user
        return user

    def _admit(self, upper_channel: str) -> str:
        """The device-side ID of ``upper_channel`` if this upper may play it now, else OfferRefused."""
        policy = self.link.policy
        registry = self.registry
        local = policy.to_local(upper_channel)
        if not local:
            raise OfferRefused(404, "Not Found", "the upstream's ID mapping does not produce this ID")
        channel = registry.channel(local)
        device = registry.get(channel.device_id if channel is not None else local)
        if device is None:
            raise OfferRefused(404, "Not Found", "unknown channel", local)
        if not policy.shared(local):
            raise OfferRefused(404, "Not Found", "channel not shared with this upstream", local)
        if not device.online:
            raise OfferRefused(480, "Device offline", f"device {device.id} offline", local)
        if channel is not None and channel.status.upper() == "OFF":
            raise OfferRefused(480, "Channel offline", "channel offline in the device's catalog", local)
        return local

    async def _connect(self, record: UpperSession) -> None:
        """Start or join the device leg, then answer the upper with police-side SDP."""
        offer = record.offer
        try:
            stream = await self.live.open_stream(record.channel, substream=offer.substream)
            if record.state is not UpperState.INVITING:
                # Cancelled (487 already sent) or the link closed while the device leg came up: not a
                # packet goes to the upper, and the leg ends unless someone else watches.
                self.live.release(stream)
                return
            session = self.live.attach(
                stream, offer.transport, offer.host, offer.port,
                ssrc=int(record.ssrc),
                bind=(self.media_ip, self.ports),
                owner=f"upstream:{self.link.name}",
                on_end=functools.partial(self._leg_ended, record),
                accept_source=upper_may_connect(self.link.config.media_source, record.peer.host, offer.host)
                if offer.transport is MediaTransport.TCP_PASSIVE else None,
            )
        except PlayError as exc:
            if record.state is not UpperState.INVITING:
                return  # cancelled: 487 already sent
            self.sessions.pop(record.call_id, None)
            record.state = UpperState.ENDED
            stage = exc.stage
            self._refuse(record.txn, record.upper_channel, record.channel, stage.sip_status, stage.sip_reason,
                         f"{exc.stage}: {exc.detail}", offer, record.ssrc, result="failed")
            return
        record.live = session
        link = self.link
        transport = link.transport
        assert transport is not None
        contact = link.contact()
        record.answer = build_answer(offer, self.gateway_id, self.media_ip, session.output.local_port,
                                     record.ssrc)
        record.dialog = Dialog.from_uas(record.txn.request, link.endpoint.local_tag, contact, peer=record.peer)
        try:
            transport.reply(record.txn, 200, headers=[("Contact", contact), ("Content-Type", SDP_TYPE)],
                            body=record.answer)
        except SipError:
            # The INVITE transaction gave up waiting (64*T1) while the device leg came up.
            self._end(record, "the upper's INVITE expired before the stream was ready", "gateway", bye=False)
            return
        record.state = UpperState.ANSWERED
        record.ack_timer = asyncio.get_running_loop().call_later(self.ack_timeout, self._no_ack, record)
        self._count("ok")
        self.audit.record("invite", "ok", upstream=link.name, channel=record.channel,
                          upper_channel=record.upper_channel, reason="", transport=offer.transport.value,
                          ssrc=record.ssrc, receiver=record.describe()["receiver"],
                          local_port=session.output.local_port)
        log.info("upper stream started", upstream=link.name, channel=record.channel,
                 upper_channel=record.upper_channel, transport=offer.transport.value, ssrc=record.ssrc,
                 local_port=session.output.local_port, session=session.id)
        self._arm_watch()

    def _refuse(self, txn: ServerTransaction, upper_channel: str, channel: str, status: int, reason: str,
                detail: str, offer: UpperOffer | None = None, ssrc: str = "", result: str = "refused") -> None:
        link = self.link
        transport = link.transport
        assert transport is not None
        with contextlib.suppress(SipError):  # the transaction expired: the upper gave up already
            transport.reply(txn, status, reason)
        self._count(f"{status}")
        self.audit.record("invite", result, upstream=link.name, channel=channel, upper_channel=upper_channel,
                          status=status, reason=detail, transport=offer.transport.value if offer else "",
                          ssrc=ssrc)
        log.info("upper INVITE refused", upstream=link.name, upper_channel=upper_channel, channel=channel,
                 status=status, reason=detail)

    def _on_reinvite(self, txn: ServerTransaction, call_id: str) -> None:
        transport = self.link.transport
        assert transport is not None
        answer_refresh(transport, txn, self.sessions.get(call_id), self.link.contact())

    def _count(self, result: str) -> None:
        self.totals[result] = self.totals.get(result, 0) + 1
        self.metrics.cascade.labels(self.link.name, "invite", result).inc()

    # -- ACK, CANCEL, BYE ----------------------------------------------------------------------------

    def _on_ack(self, request: Request, peer: Peer) -> None:
        confirm(self.sessions.get(request.call_id or ""))

    def _no_ack(self, record: UpperSession) -> None:
        record.ack_timer = None
        if record.state is UpperState.ANSWERED:
            # The 200 was never confirmed: the dialog does not exist for the upper, so no BYE.
            self._end(record, f"no ACK within {self.ack_timeout:g} s", "gateway", bye=False)

    def _on_cancel(self, txn: ServerTransaction) -> None:
        transport = self.link.transport
        assert transport is not None
        request = txn.request
        record = self.sessions.get(request.call_id or "")
        invite = self.link.endpoint.transactions.find_invite(request)
        if record is None or invite is None or invite is not record.txn:
            transport.reply(txn, 481)
            return
        transport.reply(txn, 200)
        if record.state is not UpperState.INVITING:
            return  # already answered: the CANCEL has no effect (RFC 3261 9.2), a BYE must follow
        record.state = UpperState.CANCELLED
        record.ended = "cancelled"
        self.sessions.pop(record.call_id, None)
        with contextlib.suppress(SipError):
            transport.reply(record.txn, 487, "Request Terminated")
        self._count("cancelled")
        self.audit.record("invite", "cancelled", upstream=self.link.name, channel=record.channel,
                               upper_channel=record.upper_channel, reason="CANCEL from the upper",
                               transport=record.offer.transport.value, ssrc=record.ssrc)
        log.info("upper cancelled its INVITE", upstream=self.link.name, channel=record.channel)

    def _on_bye(self, txn: ServerTransaction) -> None:
        transport = self.link.transport
        assert transport is not None
        record = self.sessions.get(txn.request.call_id or "")
        if record is None or record.dialog is None or not record.dialog.matches(txn.request):
            transport.reply(txn, 481)
            return
        transport.reply(txn, 200)
        self._end(record, "BYE from the upper", "upper", bye=False)

    # -- endings -------------------------------------------------------------------------------------

    def _leg_ended(self, record: UpperSession, session: Session) -> None:
        """The relay session ended under us: the device leg went, the upper's TCP closed, an operator."""
        if record.ended is None:
            self._end(record, f"stream ended: {session.ended}", "gateway", bye=True)

    def _end(self, record: UpperSession, reason: str, by: str, *, bye: bool) -> None:
        if record.ended is not None:
            return
        record.ended = reason
        answered = record.state in _ESTABLISHED
        record.state = UpperState.ENDED
        if self.sessions.get(record.call_id) is record:
            del self.sessions[record.call_id]
        if record.ack_timer is not None:
            record.ack_timer.cancel()
            record.ack_timer = None
        live = record.live
        packets = live.output.sent if live is not None else 0
        if live is not None and live.ended is None:
            self.live.stop(live.id)
        link = self.link
        self.metrics.cascade.labels(link.name, "bye", by).inc()
        self.audit.record("bye", upstream=link.name, channel=record.channel, upper_channel=record.upper_channel,
                          by=by, reason=reason, ssrc=record.ssrc, packets=packets,
                          duration=round(time.monotonic() - record.created, 3))
        log.info("upper stream ended", upstream=link.name, channel=record.channel, by=by, reason=reason,
                 packets=packets)
        if bye and answered and record.dialog is not None:
            self.tasks.spawn(self._send_bye(record.dialog, record.peer))

    async def _send_bye(self, dialog: Dialog, peer: Peer) -> None:
        link = self.link
        transport = link.transport
        if transport is None:
            return
        if peer.reliable and transport.connection_peer(peer.host, peer.port) is None:
            # The upper's connection went away: reach it where it listens.
            peer = link.target
        bye = dialog.create_request("BYE", via=transport.via(peer.transport),
                                    extra_headers=[("User-Agent", self.user_agent)])
        try:
            response = await transport.send_request(bye, peer)
        except SipError as exc:
            log.info("BYE to the upper not answered", upstream=link.name, reason=exc.reason)
            return
        if response.status >= 300:
            log.info("upper refused our BYE", upstream=link.name, status=response.status)

    def _on_link_status(self, link: UpstreamLink, online: bool) -> None:
        if not online:
            for record in list(self.sessions.values()):
                if record.state in _ESTABLISHED:
                    self._end(record, f"upper offline: {link.reason}", "gateway", bye=True)

    # -- the upper's RTCP ----------------------------------------------------------------------------

    def _arm_watch(self) -> None:
        if self._watch is None and not self._closed:
            interval = max(0.1, self.rtcp_timeout / 4)
            self._watch = asyncio.get_running_loop().call_later(interval, self._check_rtcp)

    def _check_rtcp(self) -> None:
        """UDP receivers report over RTCP; one that did and fell silent (or said BYE) is gone."""
        self._watch = None
        now = time.monotonic()
        for record in list(self.sessions.values()):
            live = record.live
            if live is None or record.state not in _ESTABLISHED:
                continue
            output = live.output
            if output.receiver_bye is not None:
                self._end(record, "RTCP BYE from the upper", "upper", bye=True)
            elif output.last_rtcp and now - output.last_rtcp > self.rtcp_timeout:
                self._end(record, f"no RTCP from the upper for {self.rtcp_timeout:g} s", "gateway", bye=True)
        if self.sessions:
            self._arm_watch()

    # -- the link's life -----------------------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """The sessions of this upstream, for the API."""
        return [record.describe() for record in self.sessions.values()]

    def close(self, reason: str = "gateway stopping") -> None:
        """Gateway stopping (or this upstream removed): BYE every answered upper session (the datagram or
        TCP write leaves at once, before the link's transport closes) and release the relay sessions."""
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for record in list(self.sessions.values()):
            self._finish(record, reason, 503, "Gateway stopping")

    def end_unshared(self) -> None:
        """A reload stopped sharing channels: their sessions end (a BYE, or a 404 before the answer)."""
        shared = self.link.policy.shared
        for record in list(self.sessions.values()):
            if not shared(record.channel):
                self._finish(record, "channel no longer shared", 404, "Not Found")

    def _finish(self, record: UpperSession, reason: str, status: int, phrase: str) -> None:
        if record.state is UpperState.INVITING:
            self.sessions.pop(record.call_id, None)
            abandon_pending(record, self.link.transport, reason, status, phrase)
            return
        self._end(record, reason, "gateway", bye=True)

"""Recorded video upward: the upper's ``s=Playback``/``s=Download`` INVITEs, its MANSRTSP INFOs, and the end
of file told in its dialog.

Back to back, as live media (:mod:`~gbgw.gb28181.cascade.media`), with one difference: a history session is
never shared. Each upper INVITE gets its own device leg from
:class:`~gbgw.gb28181.media.history.HistorySessions` (its own INVITE, CSeq numbering and position), relayed
from the upstream's ``media_ip`` and a port of its ``media_ports`` to the upper's offer with the upper's
``y=`` SSRC (a history SSRC, prefix ``1``, is made up when the upper gave none). Admission is live's
(``UpstreamStreams._admit``: the same 404 for unknown, unshared and unmapped IDs, 480 offline), so an upper
cannot tell a recording path from a live one by probing.

- The answer carries ``s=`` as offered, the range asked (``t=``; a device's ``t=0 0`` or shifted ``t=`` is
  its own quirk and stays on the device side), ``a=filesize`` when the device gave one, and
  ``a=downloadspeed`` for a download.
- INFO (``Application/MANSRTSP``) in the upper's dialog is parsed (an unusable body is answered with
  :class:`MansrtspError`'s status), relayed in the device leg's own CSeq, and answered to the upper in the
  upper's CSeq once the device answered; a device 4xx goes up as the same status, silence as 504. 481 for
  an INFO outside a known dialog.
- The end: the device's MediaStatus 121 (or the range played out without one) becomes a ``MediaStatus``
  MESSAGE with NotifyType 121 in the upper's dialog; the device leg is already hung up by then, and the
  upper is sent a BYE after ``eof_margin`` seconds unless it hangs up first, as it should. Any other end of
  the device leg (device BYE, media timeout, the upper's TCP closed) is a BYE to the upper at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

import structlog

from gbgw.gb28181 import manscdp
from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.cascade.link import UpstreamError, UpstreamLink
from gbgw.gb28181.cascade.media import (
    SDP_TYPE,
    OfferRefused,
    UpperOffer,
    UpperState,
    abandon_pending,
    answer_refresh,
    build_answer,
    confirm,
    parse_offer,
    upper_may_connect,
)
from gbgw.gb28181.config import GatewayConfig
from gbgw.gb28181.media.history import HistorySession, HistorySessions
from gbgw.gb28181.media.live import PlayError
from gbgw.gb28181.media.stages import Stage
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.gb28181.recording import mansrtsp
from gbgw.gb28181.recording.mansrtsp import MansrtspError
from gbgw.gb28181.recording.offer import RecordingKind
from gbgw.gb28181.recording.times import TimeWindow, from_epoch
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry
from gbgw.rtp.ports import PortRange
from gbgw.rtp.relay import MediaTransport
from gbgw.sip.dialog import Dialog
from gbgw.sip.endpoint import Peer
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request
from gbgw.sip.sdp import SdpError, SessionDescription
from gbgw.sip.transaction import ServerTransaction

log = structlog.get_logger("gb28181.cascade.history")

HISTORY_SESSIONS = frozenset({"playback", "download"})
_KINDS = {"playback": RecordingKind.PLAYBACK, "download": RecordingKind.DOWNLOAD}
_NTP_EPOCH = 2_208_988_800
"""Seconds from 1900 to 1970: an upper that writes ``t=`` in NTP form (RFC 4566) instead of GB's epoch form."""
_MAX_DOWNLOAD_SPEED = 32
_ESTABLISHED = frozenset({UpperState.ANSWERED, UpperState.CONFIRMED})


@dataclass(slots=True, eq=False)
class UpperRecording:
    """One playback or download INVITE of the upper; ``history`` is its own device leg."""

    call_id: str
    upper_channel: str
    channel: str
    kind: RecordingKind
    window: TimeWindow
    offer: UpperOffer
    speed: int | None
    txn: ServerTransaction
    peer: Peer
    state: UpperState = UpperState.INVITING
    dialog: Dialog | None = None
    history: HistorySession | None = None
    ssrc: str = ""
    answer: bytes = b""
    ack_timer: asyncio.TimerHandle | None = None
    eof_timer: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None
    created: float = field(default_factory=time.monotonic)
    ended: str | None = None

    def describe(self) -> dict[str, Any]:
        history = self.history
        output = history.output if history is not None else None
        return {
            "call_id": self.call_id,
            "kind": self.kind.api_name,
            "channel_id": self.channel,
            "upper_channel_id": self.upper_channel,
            "state": self.state.value,
            "transport": self.offer.transport.value,
            "ssrc": self.ssrc,
            "session": history.id if history is not None else None,
            "position": round(history.position(), 3) if history is not None else None,
            "local_port": output.local_port if output is not None else None,
            "packets_out": output.sent if output is not None else 0,
            "age": round(time.monotonic() - self.created, 3),
        }


def read_window(sdp: SessionDescription, zone: tzinfo) -> TimeWindow:
    """The range an upper's offer asks for, from ``t=START END``; OfferRefused(488) without one."""
    timing = sdp.timing
    if timing is None or timing == (0, 0):
        raise OfferRefused(488, "Playback needs t=START END")
    start, end = (t - _NTP_EPOCH if t >= _NTP_EPOCH else t for t in timing)
    try:
        return TimeWindow(from_epoch(start, zone), from_epoch(end, zone))
    except (ValueError, OverflowError, OSError):
        raise OfferRefused(488, f"Unusable range t={timing[0]} {timing[1]}") from None


def build_recording_answer(offer: UpperOffer, kind: RecordingKind, upper_channel: str, origin_user: str,
                           media_ip: str, port: int, ssrc: str, window: TimeWindow, filesize: int | None,
                           speed: int | None) -> bytes:
    """The police-side answer: our media address and port, the SSRC we send, the opposite TCP role, the
    range served, and what the device said of the file."""
    attributes: list[tuple[str, str | None]] = []
    if filesize is not None:
        attributes.append(("filesize", str(filesize)))
    if kind is RecordingKind.DOWNLOAD and speed is not None:
        attributes.append(("downloadspeed", str(speed)))
    return build_answer(offer, origin_user, media_ip, port, ssrc, session_name=kind.value,
                        time=window.sdp_timing(), uri=f"{upper_channel}:0", attributes=attributes)


class UpstreamRecordings:
    """The upper's playback and download sessions on one upstream link, by the upper's Call-ID.

    :meth:`offer` is :class:`~gbgw.gb28181.cascade.media.UpstreamStreams`' ``recorded`` hook: live admits
    the INVITE, this takes it when its ``s=`` is Playback or Download. The dialogs it answers are claimed on
    the link, so their BYE, INFO, CANCEL and re-INVITE come here.
    """

    def __init__(self, link: UpstreamLink, config: GatewayConfig, registry: DeviceRegistry,
                 history: HistorySessions, ports: PortRange, audit: AuditLog, metrics: GatewayMetrics,
                 tasks: BackgroundTasks, *, eof_margin: float = 5.0) -> None:
        self.link = link
        self.registry = registry
        self.history = history
        self.ports = ports
        self.audit = audit
        self.metrics = metrics
        self.tasks = tasks
        self.eof_margin = eof_margin
        self.gateway_id = config.sip.id
        self.zone = config.sip.tzinfo
        self.media_ip = link.config.media_ip
        self.ack_timeout = 64 * config.sip.t1
        self.sessions: dict[str, UpperRecording] = {}
        link.handle("INFO", self._on_stray_info)
        link.on_ack(self._on_ack)
        link.add_status_listener(self._on_link_status)

    # -- INVITE --------------------------------------------------------------------------------------

    def offer(self, txn: ServerTransaction, upper_channel: str, channel: str) -> bool:
        """Take an admitted INVITE if it asks for a recording (True), else leave it to live (False)."""
        request = txn.request
        try:
            sdp = SessionDescription.parse(request.body)
        except SdpError:
            return False  # live answers an unreadable offer
        name = (sdp.session_name or "").strip().lower()
        kind = _KINDS.get(name)
        if kind is None:
            return False
        call_id = request.call_id or ""
        try:
            offer = parse_offer(request.body, txn.remote.host, HISTORY_SESSIONS)
            window = read_window(sdp, self.zone)
            speed = self._speed(sdp, kind)
        except OfferRefused as exc:
            self._refuse(txn, kind, upper_channel, channel, exc.status, exc.reason, exc.detail)
            return True
        record = UpperRecording(call_id, upper_channel, channel, kind, window, offer, speed, txn, txn.remote,
                                ssrc=offer.ssrc or "")
        self.sessions[call_id] = record
        self.link.claim_dialog(call_id, self._in_dialog)
        record.task = self.tasks.spawn(self._connect(record))
        return True

    @staticmethod
    def _speed(sdp: SessionDescription, kind: RecordingKind) -> int | None:
        if kind is not RecordingKind.DOWNLOAD:
            return None
        video = next((m for m in sdp.media if m.kind.lower() == "video"), None)
        speed = video.downloadspeed if video is not None else None
        if speed is None:
            return 1
        if not 1 <= speed <= _MAX_DOWNLOAD_SPEED:
            raise OfferRefused(488, f"Download speed must be 1 to {_MAX_DOWNLOAD_SPEED}")
        return speed

    async def _connect(self, record: UpperRecording) -> None:
        """The device leg (its first packet relayed already), then the answer to the upper."""
        offer = record.offer
        link = self.link
        channel = self.registry.channel(record.channel)
        try:
            session = await self.history.start(
                record.kind,
                channel.device_id if channel is not None else record.channel,
                record.channel,
                record.window,
                host=offer.host,
                port=offer.port,
                transport=offer.transport.value,
                ssrc=int(offer.ssrc) if offer.ssrc is not None else None,
                speed=record.speed,
                bind=(self.media_ip, self.ports),
                accept_source=upper_may_connect(link.config.media_source, record.peer.host, offer.host)
                if offer.transport is MediaTransport.TCP_PASSIVE else None,
                on_end=functools.partial(self._leg_ended, record),
            )
        except PlayError as exc:
            if record.state is not UpperState.INVITING:
                return  # cancelled: 487 already sent
            self._forget(record)
            record.state = UpperState.ENDED
            stage = exc.stage
            self._refuse(record.txn, record.kind, record.upper_channel, record.channel, stage.sip_status,
                         stage.sip_reason, f"{stage}: {exc.detail}", offer, result="failed")
            return
        record.history = session
        if record.state is not UpperState.INVITING:
            # Cancelled, or the link closed, while the device leg came up: it ends at once.
            self.history.stop(session.id)
            return
        transport = link.transport
        assert transport is not None and session.output is not None
        record.ssrc = f"{session.out_ssrc:010d}"
        contact = link.contact()
        record.answer = build_recording_answer(
            offer, record.kind, record.upper_channel, self.gateway_id, self.media_ip, session.output.local_port,
            record.ssrc, record.window, session.answer.filesize if session.answer is not None else None,
            record.speed,
        )
        record.dialog = Dialog.from_uas(record.txn.request, link.endpoint.local_tag, contact, peer=record.peer)
        try:
            transport.reply(record.txn, 200, headers=[("Contact", contact), ("Content-Type", SDP_TYPE)],
                            body=record.answer)
        except SipError:
            self._end(record, "the upper's INVITE expired before the recording was ready", "gateway", bye=False)
            return
        record.state = UpperState.ANSWERED
        record.ack_timer = asyncio.get_running_loop().call_later(self.ack_timeout, self._no_ack, record)
        self._count(record.kind.api_name, "ok")
        self.audit.record("invite", "ok", upstream=link.name, kind=record.kind.api_name, channel=record.channel,
                          upper_channel=record.upper_channel, reason="", transport=offer.transport.value,
                          ssrc=record.ssrc, start=record.window.start.isoformat(),
                          end=record.window.end.isoformat(), local_port=session.output.local_port)
        log.info("upper recording started", upstream=link.name, kind=record.kind.api_name, channel=record.channel,
                 upper_channel=record.upper_channel, transport=offer.transport.value, ssrc=record.ssrc,
                 session=session.id)

    def _refuse(self, txn: ServerTransaction, kind: RecordingKind, upper_channel: str, channel: str, status: int,
                reason: str, detail: str, offer: UpperOffer | None = None, result: str = "refused") -> None:
        transport = self.link.transport
        assert transport is not None
        with contextlib.suppress(SipError):  # the transaction expired: the upper gave up already
            transport.reply(txn, status, reason)
        self._count(kind.api_name, f"{status}")
        self.audit.record("invite", result, upstream=self.link.name, kind=kind.api_name, channel=channel,
                          upper_channel=upper_channel, status=status, reason=detail,
                          transport=offer.transport.value if offer else "")
        log.info("upper recording INVITE refused", upstream=self.link.name, kind=kind.api_name,
                 upper_channel=upper_channel, channel=channel, status=status, reason=detail)

    def _count(self, kind: str, result: str) -> None:
        self.metrics.cascade.labels(self.link.name, kind, result).inc()

    # -- in the dialog -------------------------------------------------------------------------------

    def _in_dialog(self, txn: ServerTransaction) -> bool:
        record = self.sessions.get(txn.request.call_id or "")
        if record is None:
            return False
        method = txn.request.method
        if method == "INFO":
            self.tasks.spawn(self._on_info(txn, record))
        elif method == "BYE":
            self._on_bye(txn, record)
        elif method == "CANCEL":
            self._on_cancel(txn, record)
        elif method == "INVITE":
            self._on_reinvite(txn, record)
        else:
            return False
        return True

    def _on_stray_info(self, txn: ServerTransaction) -> None:
        """An INFO in no dialog of ours (claimed dialogs never reach this handler)."""
        transport = self.link.transport
        assert transport is not None
        self._count("info", "481")
        transport.reply(txn, 481)

    async def _on_info(self, txn: ServerTransaction, record: UpperRecording) -> None:
        transport = self.link.transport
        assert transport is not None
        request = txn.request
        history = record.history
        if record.dialog is None or not record.dialog.matches(request) or history is None or record.ended:
            self._answer_info(txn, record, 481, "Call/Transaction Does Not Exist", "not in a running dialog")
            return
        try:
            record.dialog.receive_request(request)
            command = mansrtsp.parse_info(request.content_type, request.body)
        except SipError as exc:
            self._answer_info(txn, record, exc.status, exc.reason, exc.reason)
            return
        except MansrtspError as exc:
            self._answer_info(txn, record, exc.status, exc.reason[:120], exc.reason)
            return
        try:
            await self.history.relay_command(history.id, command)
        except PlayError as exc:
            if exc.stage is Stage.REQUEST_REJECTED and exc.status is not None:
                status, reason = exc.status, "Device refused the command"
            elif exc.stage is Stage.BAD_REQUEST:
                status, reason = 481, "Call/Transaction Does Not Exist"
            else:
                status, reason = exc.stage.sip_status, exc.stage.sip_reason
            self._answer_info(txn, record, status, reason, f"{exc.stage}: {exc.detail}", command)
            return
        self._answer_info(txn, record, 200, "OK", "", command)

    def _answer_info(self, txn: ServerTransaction, record: UpperRecording, status: int, reason: str, detail: str,
                     command: mansrtsp.Request | None = None) -> None:
        transport = self.link.transport
        assert transport is not None
        with contextlib.suppress(SipError):
            if status == 200 and command is not None:
                transport.reply(txn, 200, headers=[("Content-Type", mansrtsp.CONTENT_TYPE)],
                                body=mansrtsp.answer(command).serialize())
            else:
                transport.reply(txn, status, reason)
        method = command.method.value if command is not None else ""
        self._count("info", "ok" if status == 200 else f"{status}")
        self.audit.record("info", "ok" if status == 200 else "refused", upstream=self.link.name,
                          kind=record.kind.api_name, channel=record.channel, upper_channel=record.upper_channel,
                          method=method, status=status, reason=detail,
                          position=command.position if command is not None else None,
                          scale=command.scale if command is not None else None)
        log.info("upper INFO relayed" if status == 200 else "upper INFO refused", upstream=self.link.name,
                 channel=record.channel, method=method, status=status, reason=detail)

    def _on_reinvite(self, txn: ServerTransaction, record: UpperRecording) -> None:
        """A session refresh keeps the session as it is; a new INVITE reusing the Call-ID is refused."""
        transport = self.link.transport
        assert transport is not None
        if txn.request.to.tag is None:
            transport.reply(txn, 400, "Call-ID already in use")
            return
        answer_refresh(transport, txn, record, self.link.contact())

    def _on_ack(self, request: Request, peer: Peer) -> None:
        confirm(self.sessions.get(request.call_id or ""))

    def _no_ack(self, record: UpperRecording) -> None:
        record.ack_timer = None
        if record.state is UpperState.ANSWERED:
            self._end(record, f"no ACK within {self.ack_timeout:g} s", "gateway", bye=False)

    def _on_cancel(self, txn: ServerTransaction, record: UpperRecording) -> None:
        transport = self.link.transport
        assert transport is not None
        invite = self.link.endpoint.transactions.find_invite(txn.request)
        if invite is None or invite is not record.txn:
            transport.reply(txn, 481)
            return
        transport.reply(txn, 200)
        if record.state is not UpperState.INVITING:
            return  # answered already: a BYE must follow (RFC 3261 9.2)
        record.state = UpperState.CANCELLED
        record.ended = "cancelled"
        self._forget(record)
        with contextlib.suppress(SipError):
            transport.reply(record.txn, 487, "Request Terminated")
        self._count(record.kind.api_name, "cancelled")
        self.audit.record("invite", "cancelled", upstream=self.link.name, kind=record.kind.api_name,
                          channel=record.channel, upper_channel=record.upper_channel, reason="CANCEL from the upper",
                          transport=record.offer.transport.value)

    def _on_bye(self, txn: ServerTransaction, record: UpperRecording) -> None:
        transport = self.link.transport
        assert transport is not None
        if record.dialog is None or not record.dialog.matches(txn.request):
            transport.reply(txn, 481)
            return
        transport.reply(txn, 200)
        self._end(record, "BYE from the upper", "upper", bye=False)

    # -- endings -------------------------------------------------------------------------------------

    def _leg_ended(self, record: UpperRecording, session: HistorySession) -> None:
        """The device leg ended: the end of the recording is told in the upper's dialog, anything else is a
        BYE to the upper."""
        if record.ended is not None:
            return
        reason = session.ended
        if reason is not None and reason.finished and record.state in _ESTABLISHED and record.dialog is not None:
            self.tasks.spawn(self._end_of_file(record, record.dialog))
            return
        self._end(record, f"recording ended: {reason.value if reason else 'unknown'}", "gateway", bye=True)

    async def _end_of_file(self, record: UpperRecording, dialog: Dialog) -> None:
        link = self.link
        doc = manscdp.notify_media_status(link.next_sn(), record.upper_channel)
        result = "ok"
        try:
            await link.send_in_dialog(dialog, "MESSAGE", doc)
        except UpstreamError as exc:
            result = "failed"
            log.info("MediaStatus to the upper not accepted", upstream=link.name, reason=str(exc))
        self.metrics.cascade.labels(link.name, "media-status", result).inc()
        self.audit.record("media-status", result, upstream=link.name, kind=record.kind.api_name,
                          channel=record.channel, upper_channel=record.upper_channel, notify_type="121")
        if record.ended is None:
            record.eof_timer = asyncio.get_running_loop().call_later(
                self.eof_margin, self._end, record, "end of file", "gateway")

    def _forget(self, record: UpperRecording) -> None:
        if self.sessions.get(record.call_id) is record:
            del self.sessions[record.call_id]
            self.link.release_dialog(record.call_id)

    def _end(self, record: UpperRecording, reason: str, by: str, *, bye: bool = True) -> None:
        if record.ended is not None:
            return
        record.ended = reason
        answered = record.state in _ESTABLISHED
        record.state = UpperState.ENDED
        self._forget(record)
        for timer in (record.ack_timer, record.eof_timer):
            if timer is not None:
                timer.cancel()
        record.ack_timer = record.eof_timer = None
        history = record.history
        packets = history.output.sent if history is not None and history.output is not None else 0
        if history is not None and history.ended is None:
            self.history.stop(history.id)
        link = self.link
        self.metrics.cascade.labels(link.name, "bye", by).inc()
        self.audit.record("bye", upstream=link.name, kind=record.kind.api_name, channel=record.channel,
                          upper_channel=record.upper_channel, by=by, reason=reason, ssrc=record.ssrc,
                          packets=packets, duration=round(time.monotonic() - record.created, 3))
        log.info("upper recording ended", upstream=link.name, kind=record.kind.api_name, channel=record.channel,
                 by=by, reason=reason, packets=packets)
        if bye and answered and record.dialog is not None:
            self.tasks.spawn(self._send_bye(record.dialog))

    async def _send_bye(self, dialog: Dialog) -> None:
        try:
            await self.link.send_in_dialog(dialog, "BYE")
        except UpstreamError as exc:
            log.info("BYE to the upper not accepted", upstream=self.link.name, reason=str(exc))

    def _on_link_status(self, link: UpstreamLink, online: bool) -> None:
        if not online:
            for record in list(self.sessions.values()):
                if record.state in _ESTABLISHED:
                    self._end(record, f"upper offline: {link.reason}", "gateway")

    # -- the link's life -----------------------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        return [record.describe() for record in self.sessions.values()]

    def close(self, reason: str = "gateway stopping") -> None:
        """Gateway stopping (or this upstream removed): BYE every answered session, 503 every pending one,
        release the device legs."""
        for record in list(self.sessions.values()):
            self._finish(record, reason, 503, "Gateway stopping")

    def end_unshared(self) -> None:
        """A reload stopped sharing channels: their recordings end (a BYE, or a 404 before the answer)."""
        shared = self.link.policy.shared
        for record in list(self.sessions.values()):
            if not shared(record.channel):
                self._finish(record, "channel no longer shared", 404, "Not Found")

    def _finish(self, record: UpperRecording, reason: str, status: int, phrase: str) -> None:
        if record.state is UpperState.INVITING:
            self._forget(record)
            abandon_pending(record, self.link.transport, reason, status, phrase)
            return
        self._end(record, reason, "gateway")

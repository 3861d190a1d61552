"""Recorded video: playback and download sessions, each with its own device leg.

Live streams are shared (one device leg per channel, any number of viewers); history sessions never are:
two viewers of the same recording are at different positions, speeds and pauses, so each playback or
download is its own INVITE (``s=Playback``/``s=Download``, :mod:`gbgw.gb28181.recording.offer`), its own
relay ingest and exactly one output. The protocol pieces are the sans-IO layers of
:mod:`gbgw.gb28181.recording`; this module is their adapter: sockets, SIP transactions, one watch task
per session.

- Control is MANSRTSP in INFO inside the session's dialog (PLAY with Range seeks, with Scale changes the
  speed, ``npt=now-`` resumes, PAUSE), one at a time per session; the :class:`PlaybackClock` follows a
  command only after the device's 200, and an INFO the device refuses is a ``request rejected`` failure
  carrying the device's status.
- The end: MediaStatus 121 (a MESSAGE in or out of the dialog, or a NOTIFY; :meth:`on_media_status`) ends
  the session with reason ``end of file`` and a BYE. A device that never sends it is ended at the range's
  end as the clock computes it plus ``end_margin`` (reason ``range end``), not by a media timeout. While
  paused there is no media and no deadline: the media timeout counts only while playing.
- Failures are the live path's stages (:class:`~gbgw.gb28181.media.stages.Stage`), so the API answers a
  playback that cannot start exactly as it answers a live play that cannot.
- Ended sessions stay readable (``state: ended`` with the reason) for ``keep_ended`` seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog

from gbgw.gb28181.media.device_leg import DeviceLegs, PlayError, offer_transport
from gbgw.gb28181.media.stages import Stage, StreamState
from gbgw.gb28181.recording.mansrtsp import CONTENT_TYPE, SCALES, CSeqCounter, MansrtspError, Request
from gbgw.gb28181.recording.offer import RecordingAnswer, RecordingKind, history_ssrc, recording_offer
from gbgw.gb28181.recording.progress import PlaybackClock, download_progress
from gbgw.gb28181.recording.times import TimeWindow
from gbgw.registry.model import Device
from gbgw.rtp.ports import PortRange, PortRangeExhausted
from gbgw.rtp.relay import Ingest, MediaTransport, RelayEngine, RelayOutput, StopReason
from gbgw.sip.dialog import Dialog
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request as SipRequest
from gbgw.sip.sdp import SdpError
from gbgw.sip.transaction import ServerTransaction
from gbgw.sip.transport import SipTimeout

if TYPE_CHECKING:
    from gbgw.gb28181 import manscdp
    from gbgw.gb28181.config import MediaConfig, MediaSourceRule, SipConfig
    from gbgw.gb28181.observe.metrics import GatewayMetrics
    from gbgw.gb28181.tasks import BackgroundTasks
    from gbgw.registry.devices import DeviceRegistry
    from gbgw.sip.requests import RequestBuilder
    from gbgw.sip.transport import SipTransport

log = structlog.get_logger("gb28181.history")

# The ingest's own media timeout must not end a paused playback; the watch applies media.media_timeout
# only while the clock runs.
_INGEST_MEDIA_TIMEOUT = 86_400.0
_WATCH_INTERVAL = 0.1
_KEEP_ENDED_MAX = 256


class EndReason(StrEnum):
    """Why a history session ended; the value is what the API shows in ``reason``."""

    END_OF_FILE = "end of file"
    RANGE_END = "range end"
    """The range was played out and the device never sent MediaStatus 121."""
    STOPPED = "stopped"
    DEVICE_BYE = "device BYE"
    MEDIA_TIMEOUT = "media timeout"
    MEDIA_ENDED = "media ended"
    """The relay ended the device leg (the device closed its TCP connection, ...)."""
    RECEIVER_GONE = "receiver gone"
    GATEWAY_STOPPING = "gateway stopping"

    @property
    def finished(self) -> bool:
        """Whether the whole range was delivered (a download's progress is then 1)."""
        return self in (EndReason.END_OF_FILE, EndReason.RANGE_END)


class ControlAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    SEEK = "seek"
    SCALE = "scale"


@dataclass(slots=True, eq=False)
class HistorySession:
    """One playback or download: its device leg (dialog, ingest) and its one receiver."""

    id: str
    kind: RecordingKind
    channel_id: str
    device_id: str
    window: TimeWindow
    ssrc: str
    ingest: Ingest
    device_transport: MediaTransport
    transport: MediaTransport
    host: str | None
    port: int | None
    out_ssrc: int
    clock: PlaybackClock
    speed: int | None = None
    rtsp: CSeqCounter = field(default_factory=CSeqCounter)
    output: RelayOutput | None = None
    dialog: Dialog | None = None
    invite: SipRequest | None = None
    answer: RecordingAnswer | None = None
    state: StreamState = StreamState.INVITING
    ended: EndReason | None = None
    detail: str = ""
    created: float = field(default_factory=time.monotonic)
    streaming_since: float | None = None
    ended_at: float | None = None
    resumed_at: float = field(default_factory=time.monotonic)
    end_at: float | None = None
    """When to end the session if the device never says end of file; None while paused."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    watch: asyncio.Task[None] | None = field(default=None, repr=False)
    bind: tuple[str, PortRange] | None = field(default=None, repr=False)
    """Where the output's sockets go (an upper's ``media_ip`` and ``media_ports``); None: the device side."""
    accept_source: Callable[[str], bool] | None = field(default=None, repr=False)
    on_end: Callable[[HistorySession], None] | None = field(default=None, repr=False)
    """Told once when a session that streamed ends, whatever ended it (the cascade relays the end upward)."""

    @property
    def now(self) -> float:
        """The monotonic time the session's figures are read at: its end, once it ended."""
        return self.ended_at if self.ended_at is not None else time.monotonic()

    def position(self) -> float:
        return self.clock.position(self.now)

    def progress(self) -> float | None:
        """Download progress 0-1 (None for a playback, or with nothing to measure against)."""
        if self.kind is not RecordingKind.DOWNLOAD:
            return None
        since = self.streaming_since
        elapsed = self.now - since if since is not None else 0.0
        filesize = self.answer.filesize if self.answer is not None else None
        return download_progress(
            self.ingest.stats.bytes, filesize, elapsed,
            finished=self.ended is not None and self.ended.finished,
            position=self.position(), duration=self.clock.duration,
        ).fraction


class HistorySessions:
    """Every playback and download, started by the API (and, later, by the cascade)."""

    def __init__(
        self,
        registry: DeviceRegistry,
        sip: SipConfig,
        transport: SipTransport,
        requests: RequestBuilder,
        tasks: BackgroundTasks,
        relay: RelayEngine,
        media: MediaConfig,
        metrics: GatewayMetrics,
        *,
        media_source: Callable[[str], MediaSourceRule] | None = None,
        end_margin: float = 5.0,
        keep_ended: float = 300.0,
    ) -> None:
        """``media_source(device_id)`` is where that device's media may come from, as for live video
        (:class:`~gbgw.gb28181.media.live.LiveStreams`); without it every device gets
        ``media.media_source``."""
        self.registry = registry
        self.sip = sip
        self.transport = transport
        self.requests = requests
        self.tasks = tasks
        self.relay = relay
        self.media = media
        self.metrics = metrics
        self._media_source = media_source or (lambda _device_id: media.media_source)
        self._legs = DeviceLegs(registry, sip, transport, requests, media, metrics, self._media_source)
        self.end_margin = end_margin
        self.keep_ended = keep_ended
        self.sessions: dict[str, HistorySession] = {}
        self._ended: OrderedDict[str, HistorySession] = OrderedDict()
        self._by_call_id: dict[str, HistorySession] = {}
        self._serial = itertools.count(int.from_bytes(os.urandom(2), "big") % 10000)

    # -- starting ------------------------------------------------------------------------------------

    async def start(
        self,
        kind: RecordingKind,
        device_id: str,
        channel_id: str,
        window: TimeWindow,
        *,
        host: str | None,
        port: int | None,
        transport: str,
        ssrc: int | None = None,
        scale: float | None = None,
        speed: int | None = None,
        bind: tuple[str, PortRange] | None = None,
        accept_source: Callable[[str], bool] | None = None,
        on_end: Callable[[HistorySession], None] | None = None,
        network_output: bool = True,
    ) -> HistorySession:
        """INVITE the device for ``channel_id`` over ``window`` and relay the media to ``host:port`` (a
        local port the receiver connects to for ``tcp-passive``); returns once media flows.

        ``bind`` and ``accept_source`` are the live path's (:meth:`LiveStreams.attach`): an upper's output
        on its police-side address, and who may connect to a TCP-passive one. ``network_output=False``
        opens no output: the caller adds its in-process one to ``session.ingest`` (``Ingest.add_sink``,
        the WebRTC viewer) and stops the session when its receiver leaves."""
        try:
            out_transport = MediaTransport(transport)
        except ValueError:
            raise PlayError(Stage.BAD_REQUEST,
                            f"transport must be udp, tcp-active or tcp-passive, not {transport!r}") from None
        if network_output and out_transport is not MediaTransport.TCP_PASSIVE and (not host or not port):
            raise PlayError(Stage.BAD_REQUEST, f"a {transport} output needs host and port")
        if scale is not None and scale not in SCALES:
            raise PlayError(Stage.BAD_REQUEST, f"scale must be one of {', '.join(f'{s:g}' for s in SCALES)}")
        if speed is not None and kind is RecordingKind.DOWNLOAD and not 1 <= speed <= 32:
            raise PlayError(Stage.BAD_REQUEST, "speed must be 1 to 32")
        device = self._find_device(device_id, channel_id)
        device_transport = self._legs.transport_for(device)
        ssrc_text = history_ssrc(self.sip.domain, next(self._serial))
        ingest = self._legs.open_ingest(self.relay, device_transport, device, ssrc_text,
                                        media_timeout=_INGEST_MEDIA_TIMEOUT, on_stop=self._ingest_stopped)
        download_speed = (speed or 1) if kind is RecordingKind.DOWNLOAD else None
        session = HistorySession(
            id=f"{kind.api_name}-{ingest.id}",
            kind=kind,
            channel_id=channel_id,
            device_id=device.id,
            window=window,
            ssrc=ssrc_text,
            ingest=ingest,
            device_transport=device_transport,
            transport=out_transport,
            host=host,
            port=port,
            out_ssrc=(ssrc if ssrc is not None else int(ssrc_text)) & 0xFFFFFFFF,
            clock=PlaybackClock(window.seconds, time.monotonic(), float(download_speed or 1)),
            speed=download_speed,
            bind=bind,
            accept_source=accept_source,
            on_end=on_end,
        )
        self.sessions[session.id] = session
        try:
            await self._invite(session, device)
            await self._first_media(session)
            if network_output:
                self._attach(session)
        except PlayError as exc:
            self._end(session, EndReason.MEDIA_ENDED, f"{exc.stage}: {exc.detail}", send_bye=True, failed=True)
            raise
        except BaseException:
            self._end(session, EndReason.STOPPED, "request cancelled", send_bye=True, failed=True)
            raise
        self._legs.count(None)
        self.metrics.history_sessions.labels(kind.api_name).inc()
        self.metrics.history_active.labels(kind.api_name).inc()
        session.watch = asyncio.get_running_loop().create_task(self._watch(session))
        log.info("history session started", session=session.id, kind=kind.api_name, channel=channel_id,
                 device=device.id, start=window.start.isoformat(), end=window.end.isoformat(),
                 receiver=session.output.receiver if session.output else None)
        if scale is not None and scale != 1.0 and kind is RecordingKind.PLAYBACK:
            await self.control(session.id, ControlAction.SCALE, scale=scale)
        return session

    def _find_device(self, device_id: str, channel_id: str) -> Device:
        registry = self.registry
        device = registry.get(device_id)
        known = device is not None and (channel_id == device.id or registry.channel(channel_id, device.id))
        if device is None or not known:
            raise self._legs.fail(Stage.UNKNOWN_CHANNEL, f"device {device_id} has no channel {channel_id}")
        if not device.online:
            raise self._legs.fail(Stage.DEVICE_OFFLINE, f"device {device.id} of channel {channel_id} is offline")
        return device

    async def _invite(self, session: HistorySession, device: Device) -> None:
        legs = self._legs
        protocol, setup, connection = offer_transport(session.device_transport)
        offer = recording_offer(
            session.kind,
            session.channel_id,
            session.window,
            self.sip.id,
            self.media.ip,
            session.ingest.local_port,
            protocol,
            session.ssrc,
            setup=setup,
            connection=connection,
            download_speed=session.speed,
        )

        def sent(invite: SipRequest) -> None:
            session.invite = invite
            self._by_call_id[invite.call_id or ""] = session

        response, session.dialog = await legs.invite(device, session.channel_id, session.ssrc, offer.serialize(),
                                                     sent)
        port = self._read_answer(session, response.body, device)
        session.state = StreamState.CONNECTING
        sdp_address = session.answer.address if session.answer is not None else None
        await legs.connect(session.ingest, device, port, sdp_address)

    def _read_answer(self, session: HistorySession, body: bytes, device: Device) -> int | None:
        legs = self._legs
        if not body:
            legs.check_empty_answer(session.device_transport)
            return None
        try:
            answer = RecordingAnswer.parse(body)
        except SdpError as exc:
            raise legs.fail(Stage.BAD_ANSWER, f"unusable SDP answer: {exc}") from None
        session.answer = answer
        legs.note_answer(device, answer.address, session.ssrc,
                         answer.ssrc if answer.ssrc_differs(session.ssrc) else None, session=session.id)
        if answer.timing is None:
            # Hikvision answers t=0 0: it plays what was asked.
            log.info("device answered without a range; playing the range requested", session=session.id,
                     device=device.id)
        return answer.port or None

    async def _first_media(self, session: HistorySession) -> None:
        await self._legs.first_media(session.ingest, session.device_id, lambda: session.ended)
        now = time.monotonic()
        session.state = StreamState.STREAMING
        session.streaming_since = session.resumed_at = now
        # The range starts playing when media flows, not when the INVITE went out.
        session.clock = PlaybackClock(session.window.seconds, now, session.clock.scale)
        session.end_at = session.clock.end_deadline(now, self.end_margin)

    def _attach(self, session: HistorySession) -> None:
        try:
            session.output = session.ingest.add_output(
                session.transport, session.host, session.port, ssrc=session.out_ssrc, on_close=self._output_closed,
                bind=session.bind, accept_source=session.accept_source,
            )
        except (OSError, PortRangeExhausted) as exc:
            raise PlayError(Stage.OUTPUT_FAILED, f"cannot open the output: {exc}") from None

    # -- control -------------------------------------------------------------------------------------

    def get(self, session_id: str) -> HistorySession | None:
        """A running session, or one that ended less than ``keep_ended`` seconds ago."""
        self._forget_old()
        return self.sessions.get(session_id) or self._ended.get(session_id)

    async def control(
        self, session_id: str, action: ControlAction, *, position: float | None = None, scale: float | None = None
    ) -> HistorySession:
        """Send one MANSRTSP command; PlayError(REQUEST_REJECTED) with the device's status if it refuses."""
        session = self.sessions.get(session_id)
        if session is None or session.dialog is None:
            ended = self._ended.get(session_id)
            why = f"ended ({ended.ended})" if ended is not None else "is not running"
            raise PlayError(Stage.BAD_REQUEST, f"session {session_id} {why}")
        if session.kind is RecordingKind.DOWNLOAD and action in (ControlAction.SEEK, ControlAction.SCALE):
            raise PlayError(Stage.BAD_REQUEST, f"a download cannot {action.value}")
        async with session.lock:
            request = self._command(session, action, position, scale)
            await self._send_info(session, request)
            self._applied(session, request)
        log.info("history session controlled", session=session.id, action=action.value, position=position,
                 scale=scale)
        return session

    async def relay_command(self, session_id: str, request: Request) -> HistorySession:
        """Send ``request`` as another dialog numbered it (an upper's INFO) to the device, in the device
        leg's own CSeq; errors as :meth:`control`'s."""
        session = self.sessions.get(session_id)
        if session is None or session.dialog is None:
            raise PlayError(Stage.BAD_REQUEST, f"session {session_id} is not running")
        async with session.lock:
            relayed = session.rtsp.relay(request)
            await self._send_info(session, relayed)
            self._applied(session, relayed)
        log.info("history session controlled", session=session.id, relayed=request.method.value,
                 position=request.position, scale=request.scale)
        return session

    def _applied(self, session: HistorySession, request: Request) -> None:
        """The device accepted ``request``: the clock follows it."""
        now = time.monotonic()
        session.clock.apply(request, now)
        # Fixed once per command: computed on every tick it would move with the clamped position.
        session.end_at = session.clock.end_deadline(now, self.end_margin)
        if not session.clock.paused:
            session.resumed_at = now

    def _command(
        self, session: HistorySession, action: ControlAction, position: float | None, scale: float | None
    ) -> Request:
        rtsp = session.rtsp
        if action is ControlAction.PAUSE:
            return rtsp.pause()
        if action is ControlAction.RESUME:
            return rtsp.resume()
        if action is ControlAction.SEEK:
            if position is None or not 0 <= position <= session.window.seconds:
                raise PlayError(Stage.BAD_REQUEST,
                                f"seek position must be 0 to {session.window.seconds:g} s from the start")
            return rtsp.play(position=position)
        if scale is None or scale not in SCALES:
            raise PlayError(Stage.BAD_REQUEST, f"scale must be one of {', '.join(f'{s:g}' for s in SCALES)}")
        return rtsp.play(scale=scale)

    async def _send_info(self, session: HistorySession, request: Request) -> None:
        dialog = session.dialog
        assert dialog is not None
        method = request.method.value
        device = self.registry.get(session.device_id)
        info = dialog.create_request(
            "INFO", via=self.transport.via(device.transport if device is not None else dialog.peer.transport),
            body=request.serialize(), content_type=CONTENT_TYPE,
        )
        try:
            response = await self.transport.send_request(info, dialog.peer)
        except SipTimeout:
            self.metrics.mansrtsp.labels(method, "no_answer").inc()
            raise PlayError(Stage.NO_ANSWER, f"device {session.device_id} did not answer the {method} INFO") from None
        except SipError as exc:
            self.metrics.mansrtsp.labels(method, "no_answer").inc()
            raise PlayError(Stage.NO_ANSWER, f"{method} INFO failed: {exc.reason}", exc.status) from None
        if response.status >= 300:
            self.metrics.mansrtsp.labels(method, "rejected").inc()
            raise PlayError(Stage.REQUEST_REJECTED,
                            f"device {session.device_id} answered the {method} INFO with {response.status} "
                            f"{response.reason}", response.status)
        try:
            session.rtsp.check(response.body)
        except MansrtspError as exc:
            self.metrics.mansrtsp.labels(method, "rejected").inc()
            raise PlayError(Stage.REQUEST_REJECTED, f"device {session.device_id}: {exc.reason}", exc.status) from None
        self.metrics.mansrtsp.labels(method, "ok").inc()

    # -- endings -------------------------------------------------------------------------------------

    def stop(self, session_id: str) -> bool:
        session = self.sessions.get(session_id)
        if session is None:
            return False
        self._end(session, EndReason.STOPPED, "stopped by the API", send_bye=True)
        return True

    def on_media_status(self, device_id: str, status: manscdp.MediaStatusNotify, call_id: str) -> bool:
        """MediaStatus from a device: 121 ends its session. In the dialog the Call-ID finds it; out of it,
        the device's session of that channel nearest its end does."""
        session = self._by_call_id.get(call_id)
        if session is None or session.device_id != device_id:
            now = time.monotonic()
            candidates = [
                s for s in self.sessions.values()
                if s.device_id == device_id and status.device_id in (s.channel_id, s.device_id)
                and s.state is StreamState.STREAMING
            ]
            if not candidates:
                return False
            session = min(candidates, key=lambda s: s.clock.remaining(now) or 0.0)
        if status.end_of_file:
            log.info("device sent end of file", session=session.id, device=device_id)
            self._end(session, EndReason.END_OF_FILE, "MediaStatus 121", send_bye=True)
        else:
            log.info("MediaStatus ignored", session=session.id, notify_type=status.notify_type)
        return True

    def on_bye(self, txn: ServerTransaction) -> bool:
        """A BYE from a device ends its history session; False when it is not for one of ours."""
        session = self._by_call_id.get(txn.request.call_id or "")
        if session is None:
            return False
        self.transport.reply(txn, 200)
        self._end(session, EndReason.DEVICE_BYE, "the device hung up", send_bye=False)
        return True

    def _ingest_stopped(self, ingest: Ingest, reason: StopReason) -> None:
        session = next((s for s in self.sessions.values() if s.ingest is ingest), None)
        if session is None:
            return
        timeout = reason in (StopReason.MEDIA_TIMEOUT, StopReason.NO_MEDIA)
        why = EndReason.MEDIA_TIMEOUT if timeout else EndReason.MEDIA_ENDED
        if session.state is StreamState.STREAMING:
            self._end(session, why, ingest.stop_detail, send_bye=True)
        else:
            # Still starting: _first_media sees the closed ingest and fails with the stage.
            session.ended = why

    def _output_closed(self, output: RelayOutput, reason: StopReason) -> None:
        session = next((s for s in self.sessions.values() if s.output is output), None)
        if session is not None:
            self._end(session, EndReason.RECEIVER_GONE, reason.value, send_bye=True)

    async def _watch(self, session: HistorySession) -> None:
        """The end of a device that never says end of file, and the media timeout while playing."""
        media_timeout = self.media.media_timeout
        while session.state is StreamState.STREAMING:
            await asyncio.sleep(_WATCH_INTERVAL)
            now = time.monotonic()
            if session.end_at is not None and now >= session.end_at:
                self._end(session, EndReason.RANGE_END, "the range is over and no MediaStatus 121 came",
                          send_bye=True)
                return
            silent = session.ingest.stats.since_last_packet
            if (not session.clock.paused and silent is not None and silent >= media_timeout
                    and now - session.resumed_at >= media_timeout):
                self._end(session, EndReason.MEDIA_TIMEOUT, f"no RTP from the device for {media_timeout:g} s",
                          send_bye=True)
                return

    def _end(
        self, session: HistorySession, reason: EndReason, detail: str, *, send_bye: bool, failed: bool = False
    ) -> None:
        if session.state is StreamState.ENDED:
            return
        was_streaming = session.state is StreamState.STREAMING and not failed
        session.state = StreamState.ENDED
        session.ended = reason
        session.detail = detail
        session.ended_at = time.monotonic()
        self.sessions.pop(session.id, None)
        if session.invite is not None:
            self._by_call_id.pop(session.invite.call_id or "", None)
        if session.watch is not None and session.watch is not asyncio.current_task():
            session.watch.cancel()
        if not session.ingest.closed:
            session.ingest.close()
        if was_streaming:
            self.metrics.history_active.labels(session.kind.api_name).dec()
            self._ended[session.id] = session
            self._forget_old()
            log.info("history session ended", session=session.id, reason=reason.value, detail=detail)
        if send_bye and session.dialog is not None:
            self.tasks.spawn(self._legs.bye(session.dialog, session.device_id))
        if was_streaming and session.on_end is not None:
            session.on_end(session)

    def _forget_old(self) -> None:
        horizon = time.monotonic() - self.keep_ended
        ended = self._ended
        while ended and (len(ended) > _KEEP_ENDED_MAX or (next(iter(ended.values())).ended_at or 0) < horizon):
            ended.popitem(last=False)

    def close(self) -> None:
        for session in list(self.sessions.values()):
            self._end(session, EndReason.GATEWAY_STOPPING, "", send_bye=True)

"""Live video: INVITE a device for a channel and relay its PS stream to any number of receivers.

One device stream per (device, channel, sub-stream), however many viewers: a second play request for a running
channel joins it (and starts on a keyframe from the relay's GOP cache). Channel IDs repeat across devices
in the field, so a stream is keyed by its device too; a caller that names the channel alone gets the
device that announced it last (the registry's answer). Every failure names the step that failed (a
:class:`~gbgw.gb28181.media.stages.Stage`, which also says what the API and an upper are answered), because
"the INVITE succeeded but there is no video" is what users of other platforms cannot diagnose:

- ``unknown channel``   no device has that channel (404)
- ``device offline``    its device is not online (409)
- ``INVITE rejected``   the device answered the INVITE with an error (its status is given)
- ``no answer``         the device did not answer the INVITE
- ``bad answer``        the device's SDP answer is unusable
- ``no media``          the device accepted but no RTP arrived within ``media.first_packet_timeout``
- ``bad media``         packets arrived but none was the device's RTP (wrong source, not RTP)

``media.stream_transport`` (and each device's ``stream_transport``) is the gateway's role for the device
leg: ``tcp-passive`` = the gateway listens and the device connects (offer ``a=setup:passive``),
``tcp-active`` = the gateway connects to the port the device answers with (offer ``a=setup:active``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from gbgw.gb28181.media.device_leg import DeviceLegs, PlayError, offer_transport
from gbgw.gb28181.media.stages import Stage, StreamState
from gbgw.gb28181.media.substreams import offer_attributes
from gbgw.registry.model import Device
from gbgw.rtp.ports import PortRange, PortRangeExhausted
from gbgw.rtp.relay import Ingest, MediaTransport, RelayEngine, RelayOutput, StopReason
from gbgw.sip.dialog import Dialog
from gbgw.sip.message import Request, Response
from gbgw.sip.sdp import SdpError, SessionDescription
from gbgw.sip.transaction import ServerTransaction

if TYPE_CHECKING:
    from gbgw.gb28181.config import MediaConfig, MediaSourceRule, SipConfig
    from gbgw.gb28181.observe.metrics import GatewayMetrics
    from gbgw.gb28181.tasks import BackgroundTasks
    from gbgw.registry.devices import DeviceRegistry
    from gbgw.sip.requests import RequestBuilder
    from gbgw.sip.transport import SipTransport

log = structlog.get_logger("gb28181.live")

# PS first, then the elementary streams devices fall back to (GB/T 28181-2016 Annex F offer order).
OFFER_PAYLOADS = ((96, "PS", 90000), (98, "H264", 90000), (97, "MPEG4", 90000))


SessionEnded = Callable[["Session"], None]
SessionListener = Callable[["Session", bool], None]
"""(the session, True when it started / False when it ended)."""


@dataclass(slots=True, eq=False)
class Session:
    """One receiver of a channel's live stream: an API viewer or an upper platform (``owner`` says which).

    ``bind`` is the address and port range its output is bound to (None: the device side's), kept so a
    re-INVITE of the device puts the new output on the same side. ``on_end`` hears of every ending,
    ``stop`` included, with the reason in ``ended``.
    """

    id: str
    stream: DeviceStream
    output: RelayOutput
    transport: str
    host: str | None = None
    port: int | None = None
    created: float = field(default_factory=time.monotonic)
    ended: str | None = None
    reinvites: int = 0
    owner: str = "api"
    bind: tuple[str, PortRange] | None = field(default=None, repr=False)
    on_end: SessionEnded | None = field(default=None, repr=False)


@dataclass(slots=True, eq=False)
class DeviceStream:
    """The device leg of a channel: the INVITE dialog and the relay ingest fed by it."""

    channel_id: str
    device_id: str
    ssrc: str
    ingest: Ingest
    transport: MediaTransport
    dialog: Dialog | None = None
    invite: Request | None = None
    state: StreamState = StreamState.INVITING
    ready: asyncio.Future[None] | None = None
    sessions: dict[str, Session] = field(default_factory=dict)
    ended: str | None = None
    device_bye: bool = False
    started: float = field(default_factory=time.monotonic)
    substream: int | None = None
    """The stream asked for (0 main, 1 sub, ...); None: the device's default, its main stream."""

    @property
    def key(self) -> tuple[str, str, int]:
        return stream_key(self.device_id, self.channel_id, self.substream)


def stream_key(device_id: str, channel_id: str, substream: int | None) -> tuple[str, str, int]:
    """A device leg's key: viewers of another sub-stream of the channel need their own INVITE."""
    return device_id, channel_id, substream or 0


class LiveStreams:
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
        media_source: Callable[[str], MediaSourceRule] | None = None,
    ) -> None:
        """``media_source(device_id)`` is where that device's media may come from (the device's own
        ``media_source``, else ``media.media_source``); without it every device gets the latter."""
        self.registry = registry
        self.sip = sip
        self.transport = transport
        self.requests = requests
        self.tasks = tasks
        self.metrics = metrics
        self.relay = relay
        self.media = media
        self._media_source = media_source or (lambda _device_id: media.media_source)
        self._legs = DeviceLegs(registry, sip, transport, requests, media, metrics, self._media_source)
        self.streams: dict[tuple[str, str, int], DeviceStream] = {}
        """By (device ID, channel ID, sub-stream number)."""
        self.sessions: dict[str, Session] = {}
        self._by_call_id: dict[str, DeviceStream] = {}
        self._session_listeners: list[SessionListener] = []
        self._ssrc_seq = itertools.count(int.from_bytes(os.urandom(2), "big") % 10000)
        self.media_timeouts = 0
        # Counters of ended streams, so metrics stay monotonic when a stream's relay goes away.
        self.ended_totals = {"packets_in": 0, "bytes_in": 0, "lost": 0, "reordered": 0, "packets_out": 0,
                             "bytes_out": 0}

    def add_session_listener(self, listener: SessionListener) -> None:
        """Told of every receiver's start and end (the live events)."""
        self._session_listeners.append(listener)

    def _tell(self, session: Session, started: bool) -> None:
        for listener in self._session_listeners:
            try:
                listener(session, started)
            except Exception:
                log.exception("session listener failed", session=session.id)

    # -- the play request ----------------------------------------------------------------------------

    async def play(
        self,
        channel_id: str,
        *,
        host: str | None,
        port: int | None,
        transport: str,
        ssrc: int | None = None,
        device_id: str | None = None,
        substream: int | None = None,
    ) -> Session:
        """Start or join the channel's stream and relay it to ``host:port`` (or a local port for
        ``tcp-passive``, where the receiver connects to us). ``device_id`` names the device whose channel
        it is; without it, the device that announced the channel ID last. The two steps are also
        available apart (`open_stream`, then `attach`), for a caller that may lose interest in between.
        """
        try:
            out_transport = MediaTransport(transport)
        except ValueError:
            raise PlayError(Stage.BAD_REQUEST,
                            f"transport must be udp, tcp-active or tcp-passive, not {transport!r}") from None
        if out_transport is not MediaTransport.TCP_PASSIVE and (not host or not port):
            raise PlayError(Stage.BAD_REQUEST, f"a {transport} output needs host and port")
        stream = await self.open_stream(channel_id, device_id, substream)
        return self.attach(stream, out_transport, host, port, ssrc=ssrc)

    async def open_stream(
        self, channel_id: str, device_id: str | None = None, substream: int | None = None
    ) -> DeviceStream:
        """The channel's device leg (of ``device_id``, else of the device that announced the channel
        last; ``substream`` as in `stream_key`), INVITEd now or joined (waiting for it if it is being set
        up), with media flowing. A caller that then does not `attach` a receiver must `release` it."""
        stream = self.streams.get(stream_key(device_id or self._owner(channel_id), channel_id, substream))
        if stream is None or stream.ended is not None:
            stream = await self._open(channel_id, device_id, substream)
        elif stream.ready is not None and not stream.ready.done():
            await asyncio.shield(stream.ready)
        if stream.ended is not None:
            raise PlayError(Stage.NO_MEDIA, f"the stream of {channel_id} ended: {stream.ended}")
        return stream

    def attach(
        self,
        stream: DeviceStream,
        transport: MediaTransport,
        host: str | None,
        port: int | None,
        *,
        ssrc: int | None = None,
        bind: tuple[str, PortRange] | None = None,
        owner: str = "api",
        on_end: SessionEnded | None = None,
        accept_source: Callable[[str], bool] | None = None,
    ) -> Session:
        """Relay ``stream`` to one more receiver, starting on a keyframe from the GOP cache. For TCP
        passive ``host``, if given, is the only host allowed to connect, unless ``accept_source(ip)``
        is given to decide instead.

        ``bind`` (address, port range) puts the output on another interface than the device side's:
        the cascade sends toward each upper from its police-side address. ``on_end(session)`` is called
        once when the session ends, whatever ends it (``session.ended`` says what).
        """
        if stream.ended is not None:
            raise PlayError(Stage.NO_MEDIA, f"the stream of {stream.channel_id} ended: {stream.ended}")
        out_ssrc = ssrc if ssrc is not None else int(stream.ssrc)
        try:
            output = stream.ingest.add_output(
                transport, host, port, ssrc=out_ssrc & 0xFFFFFFFF, on_close=self._output_closed, bind=bind,
                accept_source=accept_source,
            )
        except (OSError, PortRangeExhausted) as exc:
            raise PlayError(Stage.OUTPUT_FAILED, f"cannot open the output: {exc}") from None
        session = Session(f"{stream.ingest.id}-{output.id}", stream, output, transport.value, host, port,
                          owner=owner, bind=bind, on_end=on_end)
        stream.sessions[session.id] = session
        self.sessions[session.id] = session
        log.info("session started", session=session.id, channel=stream.channel_id, transport=transport.value,
                 receiver=output.receiver, local_port=output.local_port, owner=owner)
        self._tell(session, True)
        return session

    def release(self, stream: DeviceStream) -> None:
        """The receiver `open_stream` was called for went away before attaching: end the device leg
        after the idle timeout unless another receiver attached by then."""
        asyncio.get_running_loop().call_later(self.media.idle_timeout, self._release_unused, stream)

    def _release_unused(self, stream: DeviceStream) -> None:
        if not stream.sessions and stream.ended is None and not stream.ingest.outputs:
            stream.ended = "no receivers"
            self._teardown(stream, send_bye=True)

    def stop(self, session_id: str) -> bool:
        """End one receiver; the device leg outlives it only until the relay's idle timeout."""
        session = self.sessions.get(session_id)
        if session is None:
            return False
        if not session.stream.ingest.closed:
            session.stream.ingest.remove_output(session.output)
        self._end_session(session, "stopped")
        log.info("session stopped", session=session_id, channel=session.stream.channel_id)
        return True

    def _end_session(self, session: Session, reason: str) -> None:
        session.ended = reason
        self.sessions.pop(session.id, None)
        session.stream.sessions.pop(session.id, None)
        self._tell(session, False)
        if session.on_end is not None:
            try:
                session.on_end(session)
            except Exception:
                log.exception("session end listener failed", session=session.id)

    def _owner(self, channel_id: str) -> str:
        """The device a channel ID names without its device: the one that announced it last, or the
        device itself when the ID is a device's (a camera registered without a catalog)."""
        channel = self.registry.channel(channel_id)
        return channel.device_id if channel is not None else channel_id

    def _find_device(self, channel_id: str, device_id: str | None) -> Device:
        registry = self.registry
        owner = device_id or self._owner(channel_id)
        known = owner == channel_id or registry.channel(channel_id, owner) is not None
        device = registry.get(owner) if known else None
        if device is None:
            raise self._legs.fail(Stage.UNKNOWN_CHANNEL, f"no device has channel {channel_id}" if device_id is None
                                  else f"device {device_id} has no channel {channel_id}")
        if not device.online:
            raise self._legs.fail(Stage.DEVICE_OFFLINE, f"device {device.id} of channel {channel_id} is offline")
        return device

    def new_ssrc(self) -> str:
        """``0`` (live) + digits 4-8 of the domain + a 4-digit sequence (GB/T 28181-2016 Annex F)."""
        domain = self.sip.domain
        return f"0{domain[3:8]}{next(self._ssrc_seq) % 10000:04d}"

    async def _open(self, channel_id: str, device_id: str | None, substream: int | None = None) -> DeviceStream:
        started = time.monotonic()
        device = self._find_device(channel_id, device_id)
        transport = self._legs.transport_for(device)
        ssrc = self.new_ssrc()
        ingest = self._legs.open_ingest(self.relay, transport, device, ssrc, media_timeout=self.media.media_timeout,
                                        on_stop=self._ingest_stopped, on_device_bye=self._rtcp_bye)
        loop = asyncio.get_running_loop()
        stream = DeviceStream(channel_id, device.id, ssrc, ingest, transport, ready=loop.create_future(),
                              substream=substream)
        self.streams[stream.key] = stream
        try:
            await self._invite(stream, device)
            await self._first_media(stream)
        except PlayError as exc:
            self._fail(stream, exc)
            raise
        except BaseException:
            self._fail(stream, PlayError(Stage.CANCELLED, "play request cancelled"))
            raise
        assert stream.ready is not None
        if not stream.ready.done():
            stream.ready.set_result(None)
        self._legs.count(None)
        self.metrics.play_first_packet.observe(time.monotonic() - started)
        return stream

    def _fail(self, stream: DeviceStream, exc: PlayError) -> None:
        stream.ended = f"{exc.stage}: {exc.detail}"
        if stream.ready is not None and not stream.ready.done():
            stream.ready.set_exception(exc)
            stream.ready.exception()  # joined waiters re-raise it; nobody else must be warned
        self._teardown(stream, send_bye=stream.dialog is not None)

    async def _invite(self, stream: DeviceStream, device: Device) -> None:
        media = self.media
        legs = self._legs
        protocol, setup, connection = offer_transport(stream.transport)
        offer = SessionDescription.offer(
            "Play",
            self.sip.id,
            media.ip,
            stream.ingest.local_port,
            protocol,
            OFFER_PAYLOADS,
            stream.ssrc,
            setup=setup,
            connection=connection,
            attributes=offer_attributes(stream.substream, media.substream_attributes),
        )

        def sent(invite: Request) -> None:
            stream.invite = invite
            self._by_call_id[invite.call_id or ""] = stream

        response, stream.dialog = await legs.invite(device, stream.channel_id, stream.ssrc, offer.serialize(), sent)
        answer, sdp_address = self._answer(stream, response, device)
        stream.state = StreamState.CONNECTING
        await legs.connect(stream.ingest, device, answer, sdp_address)

    def _answer(self, stream: DeviceStream, response: Response, device: Device) -> tuple[int | None, str | None]:
        """Read the SDP answer liberally; return the device's media port where the relay needs it, and
        the answer's ``c=`` address (for ``media_source: sdp``)."""
        legs = self._legs
        if not response.body:
            legs.check_empty_answer(stream.transport)
            return None, None
        try:
            sdp = SessionDescription.parse(response.body)
        except SdpError as exc:
            raise legs.fail(Stage.BAD_ANSWER, f"unreadable SDP answer: {exc}") from None
        video = next((m for m in sdp.media if m.kind == "video"), sdp.media[0] if sdp.media else None)
        if video is None:
            raise legs.fail(Stage.BAD_ANSWER, "the SDP answer has no media line")
        address = sdp.address_of(video)
        legs.note_answer(device, address, stream.ssrc, sdp.ssrc if sdp.ssrc and sdp.ssrc != stream.ssrc else None)
        return video.port or None, address or None

    async def _first_media(self, stream: DeviceStream) -> None:
        ingest = stream.ingest

        def stopped() -> str | None:
            if ingest.stop_reason in (None, StopReason.NO_MEDIA):
                return None
            # Ended early: by the relay (the device closed its connection) or by us (the device's BYE).
            return stream.ended if ingest.stop_reason is StopReason.CLOSED and stream.ended else ingest.stop_detail

        await self._legs.first_media(ingest, stream.device_id, stopped)
        stream.state = StreamState.STREAMING

    # -- endings -------------------------------------------------------------------------------------

    def _ingest_stopped(self, ingest: Ingest, reason: StopReason) -> None:
        stream = next((s for s in self.streams.values() if s.ingest is ingest), None)
        if stream is None:
            return
        if reason is StopReason.MEDIA_TIMEOUT:
            self.media_timeouts += 1
            self.metrics.media_timeouts.inc()
        log.info("device stream stopped", channel=stream.channel_id, reason=reason.value,
                 detail=ingest.stop_detail)
        stream.ended = reason.value
        kept = [session for session in stream.sessions.values() if self._may_reinvite(session)]
        if reason is StopReason.MEDIA_TIMEOUT and kept:
            for session in kept:
                stream.sessions.pop(session.id, None)
            self._teardown(stream, send_bye=not stream.device_bye)
            self.tasks.spawn(self._reinvite(stream.device_id, stream.channel_id, kept, stream.substream))
            return
        self._teardown(stream, send_bye=not stream.device_bye)

    def _may_reinvite(self, session: Session) -> bool:
        """A receiver can follow a new device leg unless it connected to a port that goes away with the
        old one (TCP passive). A re-INVITE that brings no media ends the receivers, so this cannot loop
        without media flowing in between."""
        return (
            self.media.reinvite
            and session.transport != MediaTransport.TCP_PASSIVE.value
            and session.ended is None
        )

    async def _reinvite(
        self, device_id: str, channel_id: str, sessions: list[Session], substream: int | None = None
    ) -> None:
        """After a media timeout, INVITE the device again and move the receivers to the new leg.

        Each receiver keeps its SSRC and its sequence numbers continue, so a viewer or an upper platform
        sees a pause, not a new stream. If the device cannot be brought back, the receivers end with the
        stage that failed.
        """
        log.info("re-inviting the device after a media timeout", device=device_id, channel=channel_id,
                 receivers=len(sessions))
        try:
            stream = self.streams.get(stream_key(device_id, channel_id, substream))
            if stream is None or stream.ended is not None:
                stream = await self._open(channel_id, device_id, substream)
        except PlayError as exc:
            for session in sessions:
                self._end_session(session, f"media timeout; re-INVITE failed: {exc.stage}")
            log.warning("re-INVITE failed", channel=channel_id, stage=exc.stage, detail=exc.detail)
            return
        for session in sessions:
            old = session.output
            try:
                output = stream.ingest.add_output(
                    MediaTransport(session.transport), session.host, session.port,
                    ssrc=old.ssrc, seq_base=old.next_seq, on_close=self._output_closed, bind=session.bind,
                )
            except (OSError, PortRangeExhausted) as exc:
                self._end_session(session, f"media timeout; output failed: {exc}")
                continue
            session.output = output
            session.stream = stream
            session.reinvites += 1
            stream.sessions[session.id] = session
        log.info("device stream restored", device=device_id, channel=channel_id, receivers=len(stream.sessions))

    def _rtcp_bye(self, ingest: Ingest, reason: str) -> None:
        log.info("device sent RTCP BYE", ingest=ingest.id, reason=reason)

    def _output_closed(self, output: RelayOutput, reason: StopReason) -> None:
        for session in list(self.sessions.values()):
            if session.output is output:
                if reason is StopReason.MEDIA_TIMEOUT and self._may_reinvite(session):
                    continue  # kept for the re-INVITE that _ingest_stopped is about to start
                self._end_session(session, reason.value)
                log.info("session ended", session=session.id, reason=reason.value)

    def _teardown(self, stream: DeviceStream, send_bye: bool) -> None:
        if stream.state is StreamState.ENDED:
            # Already torn down by another path (the ingest stopping, a BYE) while a play waited on it.
            return
        if self.streams.get(stream.key) is stream:
            del self.streams[stream.key]
        if stream.invite is not None:
            self._by_call_id.pop(stream.invite.call_id or "", None)
        for session in list(stream.sessions.values()):
            self._end_session(session, stream.ended or "ended")
        stream.sessions.clear()
        stream.state = StreamState.ENDED
        for key, value in stream_totals(stream.ingest).items():
            self.ended_totals[key] += value
        if not stream.ingest.closed:
            stream.ingest.close()
        if send_bye and stream.dialog is not None:
            self.tasks.spawn(self._legs.bye(stream.dialog, stream.device_id))

    def on_bye(self, txn: ServerTransaction) -> bool:
        """A BYE from a device ends its stream; False if the BYE is not for one of ours."""
        stream = self._by_call_id.get(txn.request.call_id or "")
        if stream is None:
            return False
        self.transport.reply(txn, 200)
        log.info("device ended the stream (BYE)", channel=stream.channel_id, device=stream.device_id)
        stream.device_bye = True
        stream.ended = "device BYE"
        self._teardown(stream, send_bye=False)
        return True

    def totals(self) -> dict[str, int]:
        """Lifetime relay counters: ended streams plus the running ones."""
        out = dict(self.ended_totals)
        for stream in self.streams.values():
            for key, value in stream_totals(stream.ingest).items():
                out[key] += value
        return out

    def close(self) -> None:
        for stream in list(self.streams.values()):
            stream.ended = "gateway stopping"
            self._teardown(stream, send_bye=True)


def stream_totals(ingest: Ingest) -> dict[str, int]:
    stats = ingest.stats
    outputs = [o.stats for o in ingest.outputs]
    return {
        "packets_in": stats.packets,
        "bytes_in": stats.bytes,
        "lost": stats.lost,
        "reordered": stats.reordered,
        "packets_out": ingest.ended_output_packets + sum(o.packets for o in outputs),
        "bytes_out": ingest.ended_output_bytes + sum(o.bytes for o in outputs),
    }

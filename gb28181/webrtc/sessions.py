"""WHEP (RFC 9725) viewers: an SDP offer in, an SDP answer with every ICE candidate out, media after.

`WhepViewers.offer` checks the offer (sans-IO, `check_offer`), counts the viewer against
``max_viewers``, joins the device stream's `FrameFeed` and answers once ICE gathering is complete,
so the answer carries all candidates and no trickle (RFC 9725 PATCH) is needed. Candidates are host
candidates on the configured addresses only; STUN/TURN only when configured (NAT). A session ends on
`close` (the HTTP DELETE), when its peer connection fails or never connects, or with its stream.

Audio: a live viewer whose offer receives PCMA or PCMU gets an `EncodedAudioTrack` when the stream map
names G.711 (the offer waits up to ``audio_probe`` for the first map of a stream just started). The
camera's law is answered when offered; otherwise the other law, each byte translated (`g711`). Without
G.711 in the stream (or in a playback, whose scale and seeks audio cannot follow) the answer leaves the
audio section inactive.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import structlog
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)

from gbgw.gb28181.webrtc.errors import WhepError, WhepFailure
from gbgw.gb28181.webrtc.feed import FrameFeed
from gbgw.gb28181.webrtc.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW
from gbgw.gb28181.webrtc.ice import host_addresses
from gbgw.gb28181.webrtc.offer import check_offer
from gbgw.gb28181.webrtc.track import EncodedAudioTrack, EncodedVideoTrack
from gbgw.rtp.elementary import StreamType
from gbgw.rtp.relay import Ingest, StopReason

log = structlog.get_logger("webrtc")


@dataclass(slots=True)
class WebrtcConfig:
    """The ``console`` settings the WebRTC egress uses."""

    addresses: list[str]
    """Where host candidates are gathered (``console.address``; default the host of ``api.listen``).
    Never a wildcard: a browser needs an address it can reach."""
    max_viewers: int = 16
    ice_servers: list[str] = field(default_factory=list)
    """STUN/TURN URLs for viewers behind NAT; none on a LAN (aiortc would otherwise ask Google's STUN)."""
    connect_timeout: float = 15.0
    """A viewer whose ICE/DTLS has not connected by then is dropped (it holds a slot and the stream)."""
    gop_limit: int = 8 << 20
    """Bytes of frames kept since the last keyframe for viewers who join a running stream."""
    transcode_h265: bool = False
    """``console.transcode_h265``: H.265 streams become H.264 (PyAV, a fraction of a core each,
    `gbgw.gb28181.webrtc.transcode`); off, their viewers are refused with the reason."""
    audio_probe: float = 2.0
    """Seconds an offer with audio waits for a just-started stream's first stream map, which says
    whether the stream carries G.711; a stream already flowing answers at once."""


class ViewerState(StrEnum):
    CONNECTING = "connecting"
    LIVE = "live"
    CLOSED = "closed"


class ViewerEnd(StrEnum):
    CLOSED = "closed by the client"
    CONNECTION_FAILED = "ICE/DTLS connection failed or closed"
    CONNECT_TIMEOUT = "ICE/DTLS did not connect in time"
    STREAM_ENDED = "the device stream ended"
    CODEC_UNSUPPORTED = "the stream's codec cannot be sent (H.265, console.transcode_h265 off)"
    SHUTDOWN = "gateway shutting down"


@dataclass(slots=True)
class WhepAnswer:
    session_id: str
    sdp: str
    """The SDP answer (type answer), candidates included."""


@dataclass(slots=True)
class ViewerStats:
    id: str
    channel: str
    state: str
    age: float
    frames_sent: int
    bytes_sent: int
    """Access-unit bytes handed to the sender (RTP/SRTP overhead excluded)."""
    frames_dropped: int
    bitrate_kbps: float
    """Average since the first frame."""
    start_latency: float | None
    """Seconds from the offer to the first frame taken by the sender."""
    ended: str | None
    playback: str | None
    """The playback session (``/api/sessions/{id}``) this viewer watches; None for live."""
    audio: str | None = None
    """"PCMA" or "PCMU" as sent to the viewer; None without audio."""
    audio_packets_sent: int = 0


ViewerEnded = Callable[["WhepSession"], None]


class WhepSession:
    """One viewer: its peer connection, its track and the feed it is attached to."""

    __slots__ = ("_timer", "audio", "audio_codec", "channel", "created", "ended", "feed", "id", "on_end", "pc",
                 "playback", "state", "track")

    def __init__(
        self, session_id: str, channel: str, pc: RTCPeerConnection, track: EncodedVideoTrack, feed: FrameFeed,
        *, playback: str | None = None, on_end: ViewerEnded | None = None,
    ) -> None:
        self.id = session_id
        self.playback = playback
        self.on_end = on_end
        self.channel = channel
        self.pc = pc
        self.track = track
        self.audio: EncodedAudioTrack | None = None
        self.audio_codec: str | None = None
        """"PCMA"/"PCMU" with `audio`."""
        self.feed = feed
        self.created = time.monotonic()
        self.state = ViewerState.CONNECTING
        self.ended: ViewerEnd | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def start_latency(self) -> float | None:
        first = self.track.first_frame_at
        return None if first is None else first - self.created

    @property
    def stats(self) -> ViewerStats:
        track = self.track
        now = time.monotonic()
        first = track.first_frame_at
        span = now - first if first is not None else 0.0
        return ViewerStats(
            self.id,
            self.channel,
            self.state.value,
            now - self.created,
            track.frames_sent,
            track.bytes_sent,
            track.frames_dropped,
            track.bytes_sent * 8 / span / 1000 if span > 0 else 0.0,
            self.start_latency,
            None if self.ended is None else self.ended.value,
            self.playback,
            self.audio_codec,
            0 if self.audio is None else self.audio.frames_sent,
        )


@dataclass(slots=True)
class ViewerTotals:
    """Counters of ended viewers, so metrics stay monotonic as viewers come and go."""

    viewers: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0


def _h264_preferences() -> list[RTCRtpCodecCapability]:
    """aiortc's H.264 formats (42001f, 42e01f) and RTX: never VP8, which would need an encoder."""
    return [
        codec
        for codec in RTCRtpSender.getCapabilities("video").codecs
        if codec.mimeType.lower() in ("video/h264", "video/rtx")
    ]


def _audio_choice(stream: StreamType, offered: list[str]) -> tuple[str, bytes | None]:
    """The law to answer (the camera's when offered, else the other) and the byte table to it, if any."""
    own, other, table = (("PCMA", "PCMU", ALAW_TO_ULAW) if stream == StreamType.G711A
                         else ("PCMU", "PCMA", ULAW_TO_ALAW))
    return (own, None) if own in offered or other not in offered else (other, table)


class WhepViewers:
    """Every WebRTC viewer of the gateway, counted against ``max_viewers``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, config: WebrtcConfig) -> None:
        if not config.addresses or any(a in ("0.0.0.0", "::", "") for a in config.addresses):
            raise ValueError("console.address must be an address browsers can reach, not a wildcard")
        self._loop = loop
        self.config = config
        self.sessions: dict[str, WhepSession] = {}
        self.totals = ViewerTotals()
        self._feeds: dict[int, FrameFeed] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self.sessions)

    async def offer(
        self, ingest: Ingest, sdp_offer: str, *, channel: str = "", playback: str | None = None,
        on_end: ViewerEnded | None = None,
    ) -> WhepAnswer:
        """Answer ``sdp_offer`` with a viewer of ``ingest``'s stream; raises `WhepError`.

        ``playback``: the ingest is that playback session's own (its frames are stamped by arrival, see
        `EncodedVideoTrack`); ``on_end(session)`` is called once when the viewer ends, whatever ends it,
        and not when the offer fails (the caller knows then)."""
        summary = check_offer(sdp_offer)
        if len(self.sessions) >= self.config.max_viewers:
            raise WhepError(WhepFailure.TOO_MANY_VIEWERS, f"console.max_viewers is {self.config.max_viewers}")
        if ingest.closed:
            raise WhepError(WhepFailure.STREAM_ENDED)
        feed = self._feeds.get(ingest.id)
        if feed is None:
            feed = FrameFeed(
                self._loop,
                ingest,
                gop_limit=self.config.gop_limit,
                on_ended=self._feed_ended,
                on_unsupported=self._feed_unsupported,
                transcode_h265=self.config.transcode_h265,
            )
            self._feeds[ingest.id] = feed
        if not self.config.transcode_h265 and (feed.video_type == StreamType.H265 or feed.unsupported is not None):
            self._release_feed(feed)
            raise WhepError(WhepFailure.H265_UNSUPPORTED)

        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[RTCIceServer(url) for url in self.config.ice_servers])
        )
        track = EncodedVideoTrack(arrival_timing=playback is not None)
        session = WhepSession(secrets.token_urlsafe(12), channel, pc, track, feed, playback=playback)
        # Counted before the first await, so concurrent offers cannot exceed max_viewers.
        self.sessions[session.id] = session
        try:
            if summary.g711 and playback is None:
                await self._add_audio(session, summary.g711)
            transceiver = pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(_h264_preferences())
            if session.audio is not None:
                audio = pc.addTransceiver(session.audio, direction="sendonly")
                audio.setCodecPreferences([codec for codec in RTCRtpSender.getCapabilities("audio").codecs
                                           if codec.mimeType.upper() == f"AUDIO/{session.audio_codec}"])
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp_offer, "offer"))
            except Exception as exc:
                raise WhepError(WhepFailure.MALFORMED_OFFER, str(exc) or type(exc).__name__) from exc
            with host_addresses(self.config.addresses):
                await pc.setLocalDescription(await pc.createAnswer())
            answer = pc.localDescription.sdp
            if "a=candidate:" not in answer:
                raise WhepError(
                    WhepFailure.ICE_SETUP,
                    f"no host candidate could be bound on {', '.join(self.config.addresses)}",
                )
        except BaseException:
            self.sessions.pop(session.id, None)
            await pc.close()
            if not any(s.feed is feed for s in self.sessions.values()):
                self._release_feed(feed)
            raise
        if session.id not in self.sessions:
            # Closed while the answer was being made (the stream ended, shutdown).
            await pc.close()
            raise WhepError(WhepFailure.STREAM_ENDED)
        session.on_end = on_end
        pc.on("connectionstatechange", lambda: self._connection_changed(session))
        session._timer = self._loop.call_later(self.config.connect_timeout, self._connect_expired, session)
        feed.attach(track)
        if session.audio is not None:
            feed.attach_audio(session.audio)
        log.info(
            "webrtc viewer offered",
            session=session.id,
            channel=channel,
            ingest=ingest.id,
            profiles=[profile for _, profile in summary.sendable],
            audio=session.audio_codec,
        )
        return WhepAnswer(session.id, answer)

    async def _add_audio(self, session: WhepSession, offered: list[str]) -> None:
        """Give ``session`` an audio track if its stream carries G.711; raises `WhepError` if the stream
        turned out not to be sendable (H.265) or ended while its stream map was awaited."""
        feed = session.feed
        if not feed.stream_map.is_set():
            await feed.wait_stream_map(self.config.audio_probe)
            if not self.config.transcode_h265 and feed.video_type == StreamType.H265:
                raise WhepError(WhepFailure.H265_UNSUPPORTED)
            if session.id not in self.sessions:
                raise WhepError(WhepFailure.STREAM_ENDED)
        stream = feed.audio_type
        if stream is None:
            log.info("webrtc viewer offered audio, the stream has no G.711: video only", session=session.id,
                     stream_types={hex(k): hex(v) for k, v in feed.assembler.stream_types.items()})
            return
        codec, table = _audio_choice(stream, offered)
        if table is not None:
            log.info("webrtc viewer takes the other G.711 law: translated byte by byte", session=session.id,
                     stream=stream.name, sent=codec)
        session.audio = EncodedAudioTrack(table)
        session.audio_codec = codec

    async def close(self, session_id: str) -> None:
        """The client's DELETE; raises `WhepError` (UNKNOWN_SESSION)."""
        session = self.sessions.get(session_id)
        if session is None:
            raise WhepError(WhepFailure.UNKNOWN_SESSION)
        await self._end(session, ViewerEnd.CLOSED)

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await self._end(session, ViewerEnd.SHUTDOWN)
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def stats(self) -> list[ViewerStats]:
        return [session.stats for session in self.sessions.values()]

    # -- endings -------------------------------------------------------------------------------

    async def _end(self, session: WhepSession, reason: ViewerEnd) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        session.state = ViewerState.CLOSED
        session.ended = reason
        if session._timer is not None:
            session._timer.cancel()
            session._timer = None
        feed = session.feed
        feed.detach(session.track)
        session.track.stop()
        if session.audio is not None:
            feed.detach_audio(session.audio)
            session.audio.stop()
        totals = self.totals
        totals.viewers += 1
        totals.frames_sent += session.track.frames_sent
        totals.bytes_sent += session.track.bytes_sent
        if not any(s.feed is feed for s in self.sessions.values()):
            self._release_feed(feed)
        log.info(
            "webrtc viewer ended",
            session=session.id,
            channel=session.channel,
            reason=reason.value,
            frames=session.track.frames_sent,
        )
        if session.on_end is not None:
            session.on_end(session)
        await session.pc.close()

    def _spawn_end(self, session: WhepSession, reason: ViewerEnd) -> None:
        task = self._loop.create_task(self._end(session, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release_feed(self, feed: FrameFeed) -> None:
        if self._feeds.get(feed.ingest.id) is feed:
            del self._feeds[feed.ingest.id]
        feed.close()

    def _connection_changed(self, session: WhepSession) -> None:
        state = session.pc.connectionState
        if state == "connected" and session.state is ViewerState.CONNECTING:
            session.state = ViewerState.LIVE
            if session._timer is not None:
                session._timer.cancel()
                session._timer = None
        elif state in ("failed", "closed") and session.id in self.sessions:
            self._spawn_end(session, ViewerEnd.CONNECTION_FAILED)

    def _connect_expired(self, session: WhepSession) -> None:
        session._timer = None
        if session.state is ViewerState.CONNECTING and session.id in self.sessions:
            self._spawn_end(session, ViewerEnd.CONNECT_TIMEOUT)

    def _feed_ended(self, feed: FrameFeed, reason: StopReason) -> None:
        self._feeds.pop(feed.ingest.id, None)
        for session in [s for s in self.sessions.values() if s.feed is feed]:
            self._spawn_end(session, ViewerEnd.STREAM_ENDED)

    def _feed_unsupported(self, feed: FrameFeed, stream_type: int) -> None:
        for session in [s for s in self.sessions.values() if s.feed is feed]:
            self._spawn_end(session, ViewerEnd.CODEC_UNSUPPORTED)

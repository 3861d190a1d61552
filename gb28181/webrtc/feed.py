"""One device stream as encoded frames, shared by all its WebRTC viewers.

One in-process relay output per ingest, whatever the number of viewers: the PS demuxing runs once
per packet, and a viewer costs only aiortc's packetisation, SRTP and send. The feed keeps the frames
since the last keyframe (a frame-level GOP cache, references to bytes already built) so a viewer
joining a running stream starts on a keyframe at once; the first viewer gets the relay's own GOP
cache, replayed when the output is added. With ``transcode_h265`` an H.265 stream goes through one
`H265Transcoder` per feed and its H.264 output is what the tracks and the GOP cache get.

G.711 audio goes to the viewers' audio tracks as it comes, uncached (audio needs no keyframe). Whether a
stream carries it is known from its stream map, so `stream_map` is set once the first one was read: an
offer with audio waits for it (bounded) before it answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from gbgw.gb28181.webrtc.track import EncodedAudioTrack, EncodedVideoTrack
from gbgw.gb28181.webrtc.transcode import H265Transcoder
from gbgw.rtp.elementary import StreamType
from gbgw.rtp.psframes import EncodedFrame, PsFrameAssembler
from gbgw.rtp.relay import Ingest, RelayOutput, StopReason

log = structlog.get_logger("webrtc")

FeedEndCallback = Callable[["FrameFeed", StopReason], None]
CodecCallback = Callable[["FrameFeed", int], None]
G711_TYPES = frozenset({StreamType.G711A, StreamType.G711U})


class FrameFeed:
    """Frames of ``ingest`` fanned out to tracks; created by `WhepViewers`, not used apart from it."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ingest: Ingest,
        *,
        gop_limit: int,
        on_ended: FeedEndCallback,
        on_unsupported: CodecCallback,
        transcode_h265: bool = False,
    ) -> None:
        """``on_ended``: the ingest stopped; ``on_unsupported``: the stream map named a video codec the
        viewers cannot be sent (H.265). Both are called outside the packet loop."""
        self._loop = loop
        self.ingest = ingest
        self.gop_limit = gop_limit
        self._on_ended = on_ended
        self._on_unsupported = on_unsupported
        self.assembler = PsFrameAssembler()
        self.tracks: list[EncodedVideoTrack] = []
        self.audio_tracks: list[EncodedAudioTrack] = []
        self.stream_map = asyncio.Event()
        """Set once a stream map was read: `video_type` and `audio_type` are known from then on."""
        self._gop: list[EncodedFrame] = []
        self._gop_bytes = 0
        self._caching = False
        self.unsupported: int | None = None
        """The video stream type that cannot be sent, once seen."""
        self.transcode_h265 = transcode_h265
        self.transcoder: H265Transcoder | None = None
        self.output: RelayOutput = ingest.add_sink(self._on_packet, on_close=self._output_closed)

    @property
    def video_type(self) -> int | None:
        return self.assembler.video_type

    @property
    def audio_type(self) -> StreamType | None:
        """G.711A or G.711U when the stream map names one for an audio stream (0xC0-0xDF)."""
        for stream_id, stream_type in self.assembler.stream_types.items():
            if 0xC0 <= stream_id <= 0xDF and stream_type in G711_TYPES:
                return StreamType(stream_type)
        return None

    async def wait_stream_map(self, timeout: float) -> bool:
        """False if no stream map came within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self.stream_map.wait()
        except TimeoutError:
            return False
        return True

    def attach(self, track: EncodedVideoTrack) -> None:
        """Start ``track`` on the cached GOP, then live."""
        for frame in self._gop:
            track.push(frame)
        self.tracks.append(track)

    def detach(self, track: EncodedVideoTrack) -> None:
        if track in self.tracks:
            self.tracks.remove(track)

    def attach_audio(self, track: EncodedAudioTrack) -> None:
        self.audio_tracks.append(track)

    def detach_audio(self, track: EncodedAudioTrack) -> None:
        if track in self.audio_tracks:
            self.audio_tracks.remove(track)

    def close(self) -> None:
        """Leave the ingest (its idle timer starts if we were its last output)."""
        self.tracks.clear()
        self.audio_tracks.clear()
        self._gop.clear()
        if self.transcoder is not None:
            self.transcoder.close()
            self.transcoder = None
        if not self.ingest.closed:
            self.ingest.remove_output(self.output)

    def _on_packet(self, packet: memoryview) -> None:
        for frame in self.assembler.push(packet):
            if frame.video:
                self._on_frame(frame)
            elif frame.stream_type in G711_TYPES:
                for audio in self.audio_tracks:
                    audio.push(frame)
        if not self.stream_map.is_set() and self.assembler.stream_types:
            self.stream_map.set()

    def _on_frame(self, frame: EncodedFrame) -> None:
        if frame.stream_type == StreamType.H265:
            if self.transcode_h265:
                if self.transcoder is None:
                    self.transcoder = H265Transcoder(self._loop, self._send)
                self.transcoder.push(frame)
                return
            if self.unsupported is None:
                self.unsupported = frame.stream_type
                self._loop.call_soon(self._on_unsupported, self, frame.stream_type)
            return
        self._send(frame)

    def _send(self, frame: EncodedFrame) -> None:
        if frame.keyframe:
            self._gop = [frame]
            self._gop_bytes = len(frame.data)
            self._caching = True
        elif self._caching:
            self._gop_bytes += len(frame.data)
            if self._gop_bytes > self.gop_limit:
                # A GOP this long would make a joining viewer replay seconds of video: start it at
                # the next keyframe instead.
                self._caching = False
                self._gop = []
            else:
                self._gop.append(frame)
        for track in self.tracks:
            track.push(frame)

    def _output_closed(self, output: RelayOutput, reason: StopReason) -> None:
        log.info("webrtc feed ended with its device stream", ingest=self.ingest.id, reason=reason.value)
        self._on_ended(self, reason)

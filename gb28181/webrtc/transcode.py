"""H.265 to H.264 for browsers that have no H.265 in WebRTC (Chromium): PyAV's hevc decoder and libx264.

Only with ``console.transcode_h265: true``, since it costs a core's worth of CPU for a large stream
(``tests/bench/bench_webrtc.py --h265``, ffmpeg-made 10 s testsrc2 clips, a keyframe a second): a 720p25
stream costs about 0.27 of one core, a 1080p25 one about 0.63, decoding included, on the 2-core test VM. One transcoder per device stream,
whatever the number of viewers, in a thread of its own: decoding and encoding release the GIL, and the
event loop that relays every other stream never waits for a picture.

The encoder is libx264 ``ultrafast``/``zerolatency`` in Constrained Baseline (what the answer names),
SPS/PPS repeated before every keyframe (a viewer joining later needs them in band), and a keyframe where
the camera put one, so the feed's GOP cache and a viewer's start on a keyframe keep working. A backlog
(the machine cannot keep up) drops frames up to the camera's next keyframe instead of falling behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from fractions import Fraction

import av
import av.error
import structlog
from av.video.frame import PictureType

from gbgw.rtp.elementary import StreamType
from gbgw.rtp.psframes import EncodedFrame

log = structlog.get_logger("webrtc")

FrameSink = Callable[[EncodedFrame], None]
_TIME_BASE = Fraction(1, 90000)
_BACKLOG = 8
"""Frames waiting for the thread; more means it cannot keep up (a third of a second at 25 fps)."""


class PictureCodec:
    """Sans-thread: one H.265 access unit in, the H.264 access units it became out (sans-IO, testable)."""

    def __init__(self) -> None:
        self._decoder = av.CodecContext.create("hevc", "r")
        self._encoder: av.VideoCodecContext | None = None
        self._timestamps: dict[int, int] = {}
        self.frames_in = 0
        self.frames_out = 0
        self.errors = 0

    def _open_encoder(self, width: int, height: int) -> av.VideoCodecContext:
        encoder = av.CodecContext.create("libx264", "w")
        assert isinstance(encoder, av.VideoCodecContext)
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = _TIME_BASE
        encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline",
                           "x264-params": "repeat-headers=1:keyint=infinite:scenecut=0"}
        encoder.open()
        return encoder

    def convert(self, frame: EncodedFrame) -> list[EncodedFrame]:
        self.frames_in += 1
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = _TIME_BASE
        try:
            pictures = self._decoder.decode(packet)
        except av.error.FFmpegError:
            self.errors += 1
            return []
        out: list[EncodedFrame] = []
        for picture in pictures:
            assert isinstance(picture, av.VideoFrame)
            encoder = self._encoder
            if encoder is None or (encoder.width, encoder.height) != (picture.width, picture.height):
                encoder = self._encoder = self._open_encoder(picture.width, picture.height)
            if picture.format.name != "yuv420p":
                picture = picture.reformat(format="yuv420p")
            picture.pts = picture.pts if picture.pts is not None else frame.timestamp
            picture.time_base = _TIME_BASE
            picture.pict_type = PictureType.I if picture.key_frame else PictureType.NONE
            for encoded in encoder.encode(picture):
                self.frames_out += 1
                out.append(EncodedFrame(
                    (encoded.pts or 0) & 0xFFFFFFFF, bytes(encoded), encoded.is_keyframe, frame.stream_id,
                    StreamType.H264,
                ))
        return out


class H265Transcoder:
    """`PictureCodec` on a thread: `push` from the packet loop, H.264 frames to ``sink`` on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: FrameSink) -> None:
        self._loop = loop
        self._sink = sink
        self._queue: queue.Queue[EncodedFrame | None] = queue.Queue(_BACKLOG)
        self._waiting_keyframe = False
        self.dropped = 0
        self.codec = PictureCodec()
        self._thread = threading.Thread(target=self._run, name="h265-transcode", daemon=True)
        self._thread.start()

    def push(self, frame: EncodedFrame) -> None:
        if self._waiting_keyframe and not frame.keyframe:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(frame)
            self._waiting_keyframe = False
        except queue.Full:
            self.dropped += 1
            self._waiting_keyframe = True

    def close(self) -> None:
        while True:
            try:
                self._queue.put_nowait(None)
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            for out in self.codec.convert(frame):
                try:
                    self._loop.call_soon_threadsafe(self._sink, out)
                except RuntimeError:
                    return
        log.info("h265 transcoder stopped", frames_in=self.codec.frames_in, frames_out=self.codec.frames_out,
                 dropped=self.dropped, errors=self.codec.errors)

"""aiortc tracks that send what the camera encoded, no transcoding: H.264 access units
(`EncodedVideoTrack`) and G.711 audio (`EncodedAudioTrack`).

aiortc's `RTCRtpSender` asks its track for the next item with ``recv()``; an `av.Packet` (rather than
an `av.VideoFrame`) skips the encoder: the H.264 encoder's ``pack`` splits the Annex B bytes at start
codes and packetises them (RFC 6184 single NAL / STAP-A / FU-A, 1300-byte packets), with the RTP
timestamp taken from the packet's pts in its time base. Packets are 90 kHz like the device's, so the
camera's frame timing reaches the browser unchanged.

A playback's viewer is stamped by arrival instead (``arrival_timing``): a recording's PTS jump back and
forth on a seek, stop while paused and advance one frame per frame at any scale, and a browser's jitter
buffer drops frames that go back in time and delays those that come faster than their timestamps say.

A viewer must start on a keyframe: frames before the first one are dropped. A viewer that does not
keep up (its sender blocked) loses its queue and waits for the next keyframe, rather than buffering
seconds of video and falling behind live.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from fractions import Fraction
from typing import Generic, TypeVar

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from gbgw.rtp.psframes import EncodedFrame

VIDEO_TIME_BASE = Fraction(1, 90000)

_Item = TypeVar("_Item")


class _QueuedTrack(MediaStreamTrack, Generic[_Item]):
    """A track whose ``push`` (from the packet loop) only queues and whose ``recv`` waits on the queue."""

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[_Item] = deque()
        self._ready = asyncio.Event()

    async def _next(self) -> _Item:
        """The next queued item; MediaStreamError once the track is stopped."""
        queue = self._queue
        while not queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        return queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class EncodedVideoTrack(_QueuedTrack[EncodedFrame]):
    """Fed with `push` (from the packet loop, so it only queues), drained by aiortc with `recv`."""

    kind = "video"

    def __init__(self, max_queue: int = 50, *, arrival_timing: bool = False) -> None:
        super().__init__()
        self.max_queue = max_queue
        self.arrival_timing = arrival_timing
        self._started = False
        self._origin: int | None = None
        self.frames_in = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_dropped = 0
        self.keyframes_sent = 0
        self.first_frame_at: float | None = None
        """``time.monotonic()`` when aiortc took the first frame."""

    def push(self, frame: EncodedFrame) -> None:
        self.frames_in += 1
        if self.readyState != "live":
            return
        if not self._started or len(self._queue) >= self.max_queue:
            if not frame.keyframe:
                self.frames_dropped += 1
                return
            self.frames_dropped += len(self._queue)
            self._queue.clear()
            self._started = True
        self._queue.append(frame)
        self._ready.set()

    async def recv(self) -> av.Packet:
        frame = await self._next()
        if self._origin is None:
            self._origin = frame.timestamp
            self.first_frame_at = time.monotonic()
        packet = av.Packet(frame.data)
        if self.arrival_timing:
            assert self.first_frame_at is not None
            packet.pts = round((time.monotonic() - self.first_frame_at) * 90000) & 0xFFFFFFFF
        else:
            packet.pts = (frame.timestamp - self._origin) & 0xFFFFFFFF
        packet.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        self.bytes_sent += len(frame.data)
        if frame.keyframe:
            self.keyframes_sent += 1
        return packet

AUDIO_RATE = 8000
AUDIO_TIME_BASE = Fraction(1, AUDIO_RATE)
AUDIO_PACKET_SAMPLES = 160
"""20 ms per RTP packet, the ptime browsers expect for G.711 (RFC 3551)."""
_TICKS_PER_SAMPLE = Fraction(90000, AUDIO_RATE)
_AUDIO_GAP = 9000
"""90 kHz ticks (100 ms) the stream's audio may run ahead of what was sent before it counts as lost."""


class EncodedAudioTrack(_QueuedTrack[tuple[int, bytes]]):
    """G.711 from the camera, sent as it came (or through ``translate``, a byte table from one law to the
    other, see `g711`): the PES payloads are cut into 20 ms packets, which aiortc's G.711 encoder packs
    one to an RTP packet.

    RTP timestamps count samples rather than follow the PES PTS: cameras stamp audio by capture time
    with millisecond jitter, and a browser's jitter buffer hears every such step as a discontinuity. A
    PTS that runs more than 100 ms ahead of the samples sent (packets lost on the way) moves the count
    on by the gap, so the browser conceals it instead of playing the next frame early. Audio starts at
    once (no keyframe to wait for) and a viewer that does not keep up loses its queue.
    """

    kind = "audio"

    def __init__(self, translate: bytes | None = None, max_queue: int = 50) -> None:
        super().__init__()
        self.translate = translate
        self.max_queue = max_queue
        self._samples = 0
        self._expected: int | None = None
        """The 90 kHz time the next PES should carry if nothing is lost."""
        self.frames_in = 0
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_dropped = 0

    def push(self, frame: EncodedFrame) -> None:
        self.frames_in += 1
        if self.readyState != "live":
            return
        data = frame.data if self.translate is None else frame.data.translate(self.translate)
        clock, modulus = (frame.pts, 1 << 33) if frame.pts is not None else (frame.timestamp, 1 << 32)
        if self._expected is not None:
            ahead = (clock - self._expected) % modulus
            if _AUDIO_GAP < ahead < modulus >> 1:
                self._samples += int(ahead / _TICKS_PER_SAMPLE)
        self._expected = (clock + int(len(data) * _TICKS_PER_SAMPLE)) % modulus
        queue = self._queue
        if len(queue) >= self.max_queue:
            self.frames_dropped += len(queue)
            queue.clear()
        for at in range(0, len(data), AUDIO_PACKET_SAMPLES):
            chunk = data[at : at + AUDIO_PACKET_SAMPLES]
            queue.append((self._samples, chunk))
            self._samples += len(chunk)
        self._ready.set()

    async def recv(self) -> av.Packet:
        samples, chunk = await self._next()
        packet = av.Packet(chunk)
        packet.pts = samples & 0xFFFFFFFF
        packet.time_base = AUDIO_TIME_BASE
        self.frames_sent += 1
        self.bytes_sent += len(chunk)
        return packet

"""RTP packets carrying PS in, encoded frames out: what a decoder or a WebRTC sender needs from a relay.

`PsFrameAssembler` is the streaming depacketiser behind the WebRTC egress. It collects the payloads of
one RTP frame (one timestamp, closed by the marker bit or by the next timestamp) into a buffer it
reuses, so a packet costs one slice assignment and no allocation; then the whole frame goes through
`PsDemuxer` at once (pack headers, system headers, stream maps, private streams and padding, PES
split over many packets), which copies it once and joins each access unit once. Per packet that is
one header unpack and a copy into the buffer; per frame one demuxer pass.

A sequence gap (a packet the assembler never saw) resyncs the demuxer at the next pack header and
marks what comes out of the damaged frame incomplete (a gap before a packet that opens a pack means
whole frames were lost, and the new frame is whole); the demuxer also notices a loss inside a video
PES by itself (a pack header where payload should be).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gbgw.rtp.elementary import AccessUnit, StreamType
from gbgw.rtp.packet import RTP_HEADER_SIZE, Buffer, payload_offset
from gbgw.rtp.ps import PACK_START, PsDemuxer, PsDemuxStats

_HEADER = struct.Struct("!BBHI")
_FIRST_CAPACITY = 256 << 10


@dataclass(slots=True)
class EncodedFrame:
    """One access unit: an Annex B picture (video) or a PES of audio, stamped with its RTP timestamp."""

    timestamp: int
    """The 90 kHz RTP timestamp of the frame it came in (for PS, the device's PTS)."""
    data: bytes
    keyframe: bool
    stream_id: int
    stream_type: int | None
    """From the stream map; None until one has been seen (joined between keyframes)."""
    complete: bool = True
    pts: int | None = None
    """The PES's own 90 kHz PTS (33 bits), when it had one: audio packed into a video frame's RTP
    timestamp still carries its own time here."""

    @property
    def video(self) -> bool:
        return 0xE0 <= self.stream_id <= 0xEF


@dataclass(slots=True)
class AssemblerStats:
    packets: int = 0
    frames: int = 0
    """Access units returned (video and audio)."""
    keyframes: int = 0
    sequence_gaps: int = 0
    malformed: int = 0
    """Packets too short for their RTP header, extension or padding."""
    oversized: int = 0
    """RTP frames larger than ``max_frame_size``, dropped."""


class PsFrameAssembler:
    """Sans-IO: `push` each RTP packet (whole, header included) in order, get `EncodedFrame`s back."""

    def __init__(self, max_frame_size: int = 8 << 20) -> None:
        self.max_frame_size = max_frame_size
        self.stats = AssemblerStats()
        self._demuxer = PsDemuxer(max_frame_size)
        self._buffer = bytearray(min(_FIRST_CAPACITY, max_frame_size))
        self._view = memoryview(self._buffer)
        self._fill = 0
        self._timestamp = -1
        self._next_seq = -1
        self._damaged = False
        self._dropping = False
        """The frame outgrew ``max_frame_size``: drop its packets until the next timestamp."""

    @property
    def demux_stats(self) -> PsDemuxStats:
        return self._demuxer.stats

    @property
    def stream_types(self) -> dict[int, int]:
        """stream_id -> stream_type from the latest stream map (empty before the first keyframe)."""
        return self._demuxer.stream_types

    @property
    def video_type(self) -> StreamType | int | None:
        for stream_id, stream_type in self._demuxer.stream_types.items():
            if 0xE0 <= stream_id <= 0xEF:
                return stream_type
        return None

    def push(self, packet: Buffer) -> list[EncodedFrame]:
        """Add the next RTP packet; returns the frames it completes (usually none or one)."""
        stats = self.stats
        stats.packets += 1
        size = len(packet)
        if size < RTP_HEADER_SIZE:
            stats.malformed += 1
            return []
        b0, b1, seq, timestamp = _HEADER.unpack_from(packet, 0)
        start = payload_offset(packet, 0, size)
        end = size - packet[size - 1] if b0 & 0x20 else size
        if start < 0 or end < start:
            stats.malformed += 1
            return []
        out: list[EncodedFrame] = []
        gap = self._next_seq >= 0 and seq != self._next_seq
        self._next_seq = (seq + 1) & 0xFFFF
        if gap:
            stats.sequence_gaps += 1
            # Whether the end of the frame in progress or the start of this one was lost is unknown.
            self._damaged = True
        if timestamp != self._timestamp:
            if self._fill:
                self._finish(out)
            # A frame whose first packet opens a pack lost nothing at its start: whole frames were lost.
            self._damaged = gap and bytes(packet[start : start + 4]) != PACK_START
            self._timestamp = timestamp
            self._dropping = False
        if not self._dropping:
            self._append(packet, start, end)
        if b1 & 0x80 and self._fill:
            self._finish(out)
        return out

    def close(self) -> list[EncodedFrame]:
        """End of stream: the frame in progress and whatever the demuxer still holds."""
        out: list[EncodedFrame] = []
        if self._fill:
            self._finish(out)
        self._collect(self._demuxer.close(), out)
        return out

    def _append(self, packet: Buffer, start: int, end: int) -> None:
        fill = self._fill
        need = fill + end - start
        if need > self.max_frame_size:
            self.stats.oversized += 1
            self._dropping = True
            self._fill = 0
            self._damaged = True
            return
        if need > len(self._buffer):
            grown = bytearray(min(self.max_frame_size, max(need, 2 * len(self._buffer))))
            grown[:fill] = self._view[:fill]
            self._buffer = grown
            self._view = memoryview(grown)
        self._view[fill:need] = memoryview(packet)[start:end]
        self._fill = need

    def _finish(self, out: list[EncodedFrame]) -> None:
        demuxer = self._demuxer
        damaged = self._damaged
        if damaged:
            self._collect(demuxer.discontinuity(), out)
        # feed() copies what it keeps, so the buffer is free for the next frame right after.
        units = demuxer.feed(self._view[: self._fill])
        units += demuxer.flush()
        self._fill = 0
        self._damaged = False
        self._collect(units, out, damaged)

    def _collect(self, units: list[AccessUnit], out: list[EncodedFrame], damaged: bool = False) -> None:
        stats = self.stats
        timestamp = self._timestamp
        for unit in units:
            stats.frames += 1
            if unit.keyframe:
                stats.keyframes += 1
            out.append(
                EncodedFrame(
                    timestamp,
                    unit.data,
                    unit.keyframe,
                    unit.stream_id,
                    unit.stream_type,
                    unit.complete and not damaged,
                    unit.pts,
                )
            )

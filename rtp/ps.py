"""MPEG-2 program stream (ISO/IEC 13818-1 2.5) as GB/T 28181 Annex C uses it: demuxer and muxer.

The demuxer is fed RTP payloads in sequence order and returns access units. It is built for
what cameras actually send: pack-header stuffing that holds counters instead of 0xFF, stream maps
whose ``elementary_stream_map_length`` is wrong, private streams (0xBD/0xBF) and padding between
the packets we care about, MPEG-1 style PES headers, a frame split over several PES (one per NAL
unit on Hikvision) or several packs, and lost packets. Nothing raises on input: problems are
counted in `PsDemuxStats` and the demuxer skips to the next pack header.

Payload bytes are never looked at one by one: headers are parsed in place, payload is sliced
with memoryviews and joined once per access unit, and the only scans are ``bytes.find``. That gives
3-5 µs per 1400-byte RTP payload of H.264 (CPython 3.11), including access-unit assembly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum

from gbgw.rtp.elementary import AccessUnit, StreamType, is_keyframe
from gbgw.rtp.packet import Buffer

PACK_START = b"\x00\x00\x01\xba"
_START = b"\x00\x00\x01"

_PACK = 0xBA
_SYSTEM_HEADER = 0xBB
_STREAM_MAP = 0xBC
_END_CODE = 0xB9

VIDEO_STREAM_ID = 0xE0
AUDIO_STREAM_ID = 0xC0

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
MAX_PES_LENGTH = 0xFFFF

_PACK_CODE = 0x100 | _PACK
_KEYFRAME_CODES = (0x100 | _SYSTEM_HEADER, 0x100 | _STREAM_MAP)


def _is_video(stream_id: int) -> bool:
    return 0xE0 <= stream_id <= 0xEF


def starts_keyframe(buf: Buffer, start: int = 0, end: int | None = None) -> bool:
    """Whether the PS bytes at ``buf[start:end]`` open a keyframe: a pack header followed by a system
    header or a stream map, which GB/T 28181 Annex C puts only in front of I-frames (and `PsMuxer`
    does the same). Read in place, so the relay can ask it of a packet in its receive buffer; it
    looks at the PS layer only, so it holds for H.264, H.265 and any other video the map announces.
    """
    if end is None:
        end = len(buf)
    if start + 18 > end or _U32.unpack_from(buf, start)[0] != _PACK_CODE:
        return False
    marker = buf[start + 4]
    if marker >> 6 == 1:
        header = 14 + (buf[start + 13] & 0x07)
    elif marker >> 4 == 2:
        header = 12  # MPEG-1 pack header
    else:
        return False
    return start + header + 4 <= end and _U32.unpack_from(buf, start + header)[0] in _KEYFRAME_CODES


def _read_timestamp(data: bytes, pos: int) -> int:
    """A 33-bit PTS/DTS/SCR-base spread over 5 bytes with marker bits (13818-1 2.4.3.7)."""
    return (
        ((data[pos] >> 1) & 0x07) << 30
        | data[pos + 1] << 22
        | (data[pos + 2] >> 1) << 15
        | data[pos + 3] << 7
        | data[pos + 4] >> 1
    )


def _partial_prefix(data: bytes, end: int, pattern: bytes) -> int:
    """How many bytes before ``end`` could be the start of ``pattern`` cut by a packet boundary."""
    for keep in range(len(pattern) - 1, 0, -1):
        if data.endswith(pattern[:keep], 0, end):
            return keep
    return 0


@dataclass(slots=True)
class PsDemuxStats:
    packs: int = 0
    system_headers: int = 0
    stream_maps: int = 0
    stream_map_repairs: int = 0
    """Stream maps whose elementary_stream_map_length disagreed with the map's own length."""
    pes_packets: int = 0
    """Audio/video PES packets (private streams and padding are counted in skipped_packets)."""
    skipped_packets: int = 0
    access_units: int = 0
    truncated: int = 0
    """Access units emitted with ``complete=False``."""
    errors: int = 0
    """Invalid start codes, malformed headers, pack headers found inside a video PES, oversized units."""
    skipped_bytes: int = 0


class _State(Enum):
    HEADER = 1
    """Expecting a start code."""
    PAYLOAD = 2
    """Inside a PES payload of known length."""
    UNBOUNDED = 3
    """Inside a PES with PES_packet_length 0: runs to the next system start code."""
    SKIP = 4
    """Inside a packet we do not need (private stream, padding)."""
    SEEK = 5
    """Lost: looking for the next pack header."""


@dataclass(slots=True)
class _Unit:
    stream_id: int
    pts: int | None
    dts: int | None
    pack: int
    """Index of the pack the unit started in: a new pack means a new frame even with an equal PTS."""
    parts: list[memoryview] = field(default_factory=list)
    size: int = 0
    complete: bool = True
    oversized: bool = False


class _BadHeader(Exception):
    """Internal signal: the bytes at the current start code cannot be parsed."""


class PsDemuxer:
    """Sans-IO MPEG-PS demuxer: `feed` it RTP payloads in order, get `AccessUnit`s back.

    Video access-unit boundaries: a video PES carrying a PTS starts a new unit, unless it is in the
    same pack as the pending unit and carries the same PTS (devices that repeat the PTS on every
    PES of a frame). PES without a PTS continue the pending unit. The last unit of a stream is only
    known to be finished when the next one starts, so call `flush` when the RTP marker bit says a
    frame ended, and `close` at the end of the stream. Audio: each PES is one unit, returned as soon
    as the PES is complete.

    When packets were lost (the reorder window skipped a gap), call `discontinuity`: the partial
    unit is returned marked incomplete and parsing restarts at the next pack header. Without that
    call a loss inside a video PES is still caught when a pack header shows up inside its payload.
    """

    def __init__(self, max_unit_size: int = 8 << 20) -> None:
        self.max_unit_size = max_unit_size
        self.stats = PsDemuxStats()
        self.stream_types: dict[int, int] = {}
        """stream_id -> stream_type, from the latest program stream map."""
        self._state = _State.HEADER
        self._remaining = 0
        self._pending = b""
        self._units: dict[int, _Unit] = {}
        self._current: _Unit | None = None
        self._pack_index = 0

    # -- public API ---------------------------------------------------------------------------

    def feed(self, payload: bytes | bytearray | memoryview) -> list[AccessUnit]:
        """Parse the next chunk of the program stream; returns the access units it completes."""
        if self._pending:
            data = self._pending + bytes(payload)
            self._pending = b""
        else:
            data = payload if isinstance(payload, bytes) else bytes(payload)
        out: list[AccessUnit] = []
        view = memoryview(data)
        pos = 0
        size = len(data)
        while pos < size:
            state = self._state
            if state is _State.PAYLOAD:
                pos = self._take_payload(data, view, pos, out)
            elif state is _State.HEADER:
                new_pos = self._parse_header(data, pos, out)
                if new_pos < 0:
                    self._pending = data[pos:]
                    break
                pos = new_pos
            elif state is _State.SKIP:
                take = min(self._remaining, size - pos)
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = _State.HEADER
            elif state is _State.UNBOUNDED:
                pos = self._take_unbounded(data, view, pos, out)
            else:
                pos = self._seek(data, pos)
        return out

    def flush(self) -> list[AccessUnit]:
        """Return the pending units whose data is complete (call when the RTP marker bit is set)."""
        out: list[AccessUnit] = []
        for stream_id, unit in list(self._units.items()):
            if unit is self._current and self._state in (_State.PAYLOAD, _State.UNBOUNDED):
                continue
            del self._units[stream_id]
            self._emit(unit, out)
        return out

    def close(self) -> list[AccessUnit]:
        """End of stream: return every pending unit, those cut short marked incomplete."""
        out: list[AccessUnit] = []
        current = self._current
        if current is not None and self._state in (_State.PAYLOAD, _State.UNBOUNDED):
            if self._pending:
                self._append(current, memoryview(self._pending))
            if self._state is _State.PAYLOAD:
                current.complete = False
        self._pending = b""
        self._current = None
        self._state = _State.HEADER
        units = list(self._units.values())
        self._units.clear()
        for unit in units:
            self._emit(unit, out)
        return out

    def discontinuity(self) -> list[AccessUnit]:
        """Packets were lost: return what is pending (marked incomplete) and resync at a pack header."""
        for unit in self._units.values():
            unit.complete = False
        out = self.close()
        self._state = _State.SEEK
        return out

    # -- units ----------------------------------------------------------------------------------

    def _append(self, unit: _Unit, chunk: memoryview) -> None:
        if unit.oversized or not chunk:
            return
        unit.size += len(chunk)
        if unit.size > self.max_unit_size:
            unit.oversized = True
            unit.parts.clear()
            return
        unit.parts.append(chunk)

    def _emit(self, unit: _Unit, out: list[AccessUnit]) -> None:
        if unit.oversized:
            self.stats.errors += 1
            return
        if not unit.parts:
            return
        data = b"".join(unit.parts)
        stream_type = self.stream_types.get(unit.stream_id)
        keyframe = _is_video(unit.stream_id) and is_keyframe(data, stream_type)
        self.stats.access_units += 1
        if not unit.complete:
            self.stats.truncated += 1
        out.append(AccessUnit(unit.stream_id, stream_type, unit.pts, unit.dts, keyframe, data, unit.complete))

    def _start_pes(self, stream_id: int, pts: int | None, dts: int | None, out: list[AccessUnit]) -> _Unit:
        unit = self._units.get(stream_id)
        if unit is not None:
            same_frame = _is_video(stream_id) and (
                pts is None or (pts == unit.pts and unit.pack == self._pack_index)
            )
            if same_frame:
                return unit
            del self._units[stream_id]
            self._emit(unit, out)
        unit = _Unit(stream_id, pts, dts, self._pack_index)
        self._units[stream_id] = unit
        return unit

    def _end_pes(self, out: list[AccessUnit]) -> None:
        self._state = _State.HEADER
        unit = self._current
        self._current = None
        if unit is not None and not _is_video(unit.stream_id):
            del self._units[unit.stream_id]
            self._emit(unit, out)

    # -- states ---------------------------------------------------------------------------------

    def _take_payload(self, data: bytes, view: memoryview, pos: int, out: list[AccessUnit]) -> int:
        unit = self._current
        assert unit is not None
        size = len(data)
        end = min(size, pos + self._remaining)
        if _is_video(unit.stream_id):
            # 00 00 01 BA cannot occur inside H.264/H.265/MPEG-4 video (emulation prevention, system
            # start codes are reserved), so finding it means this PES lost bytes and the next frame
            # has begun: keep what we have as an incomplete unit and parse the pack header.
            hit = data.find(PACK_START, pos, end)
            if hit >= 0:
                self._append(unit, view[pos:hit])
                unit.complete = False
                self.stats.errors += 1
                self._current = None
                self._state = _State.HEADER
                return hit
            if end == size and end - pos < self._remaining:
                held = _partial_prefix(data, end, PACK_START)
                if held and end - held >= pos:
                    end -= held
                    self._pending = data[end:]
                    self._append(unit, view[pos:end])
                    self._remaining -= end - pos
                    return size
        self._append(unit, view[pos:end])
        self._remaining -= end - pos
        if self._remaining == 0:
            self._end_pes(out)
        return end

    def _take_unbounded(self, data: bytes, view: memoryview, pos: int, out: list[AccessUnit]) -> int:
        unit = self._current
        assert unit is not None
        search = pos
        while True:
            hit = data.find(_START, search)
            if hit < 0 or hit + 3 >= len(data):
                break
            if data[hit + 3] >= _END_CODE:
                self._append(unit, view[pos:hit])
                self._end_pes(out)
                return hit
            search = hit + 3
        # A start code may be cut by the packet boundary: hold its first bytes back until the next feed.
        end = max(pos, len(data) - _partial_prefix(data, len(data), _START + b"\xff"))
        self._append(unit, view[pos:end])
        self._pending = data[end:]
        return len(data)

    def _seek(self, data: bytes, pos: int) -> int:
        hit = data.find(PACK_START, pos)
        if hit >= 0:
            self.stats.skipped_bytes += hit - pos
            self._state = _State.HEADER
            return hit
        keep_from = max(pos, len(data) - _partial_prefix(data, len(data), PACK_START))
        self.stats.skipped_bytes += keep_from - pos
        self._pending = data[keep_from:]
        return len(data)

    def _lose_sync(self, pos: int) -> int:
        self.stats.errors += 1
        self._state = _State.SEEK
        return pos + 1

    # -- headers --------------------------------------------------------------------------------

    def _parse_header(self, data: bytes, pos: int, out: list[AccessUnit]) -> int:
        """Parse the packet starting at ``pos``; returns the next position, or -1 for "need more"."""
        size = len(data)
        if size - pos < 6:
            return -1
        if data[pos] != 0 or data[pos + 1] != 0 or data[pos + 2] != 1:
            if data[pos] == 0 and data[pos + 1] == 0 and data[pos + 2] == 0:
                # Zero stuffing before a start code: harmless, some muxers align packets this way.
                self.stats.skipped_bytes += 1
                return pos + 1
            return self._lose_sync(pos)
        code = data[pos + 3]
        if code == _PACK:
            return self._parse_pack_header(data, pos)
        length = data[pos + 4] << 8 | data[pos + 5]
        end = pos + 6 + length
        if code in (_SYSTEM_HEADER, _STREAM_MAP):
            if end > size:
                return -1
            if code == _STREAM_MAP:
                self._parse_stream_map(data, pos, end)
            else:
                self.stats.system_headers += 1
            return end
        if 0xC0 <= code <= 0xEF:
            try:
                return self._parse_pes_header(data, pos, code, length, out)
            except _BadHeader:
                return self._lose_sync(pos)
        if code == _END_CODE:
            return pos + 4
        if code > _END_CODE:
            # Private streams 1/2 (0xBD/0xBF: Hikvision metadata), padding (0xBE), ECM/EMM/DSM-CC
            # (0xF0+): not ours to decode, skip by length.
            self.stats.skipped_packets += 1
            self._remaining = length
            self._state = _State.SKIP
            return pos + 6
        return self._lose_sync(pos)

    def _parse_pack_header(self, data: bytes, pos: int) -> int:
        marker = data[pos + 4]
        if marker & 0xC0 == 0x40:
            if len(data) - pos < 14:
                return -1
            # The low 3 bits count stuffing bytes; vendors fill them with counters, not 0xFF.
            header_size = 14 + (data[pos + 13] & 0x07)
        elif marker & 0xF0 == 0x20:
            header_size = 12  # MPEG-1 pack header
        else:
            return self._lose_sync(pos)
        if len(data) - pos < header_size:
            return -1
        self.stats.packs += 1
        self._pack_index += 1
        return pos + header_size

    def _parse_stream_map(self, data: bytes, pos: int, end: int) -> None:
        self.stats.stream_maps += 1
        if end - pos < 16:
            self.stats.errors += 1
            return
        info_length = _U16.unpack_from(data, pos + 8)[0]
        map_length_at = pos + 10 + info_length
        if map_length_at + 2 > end:
            self.stats.errors += 1
            return
        declared = _U16.unpack_from(data, map_length_at)[0]
        entries_start = map_length_at + 2
        # The map's own length is the one that keeps the stream in sync, so trust it over the
        # entries' length (wrong in the official test tool's sample) and stop before the CRC.
        entries_end = min(end, max(entries_start + declared, end - 4))
        if entries_start + declared != end - 4:
            self.stats.stream_map_repairs += 1
        types: dict[int, int] = {}
        entry = entries_start
        while entry + 4 <= entries_end:
            types[data[entry + 1]] = data[entry]
            entry += 4 + (data[entry + 2] << 8 | data[entry + 3])
        if types:
            self.stream_types = types

    def _parse_pes_header(
        self, data: bytes, pos: int, stream_id: int, length: int, out: list[AccessUnit]
    ) -> int:
        size = len(data)
        if size - pos < 7:
            return -1
        pts = dts = None
        if data[pos + 6] & 0xC0 == 0x80:
            if size - pos < 9:
                return -1
            flags = data[pos + 7]
            header_length = data[pos + 8]
            payload_at = pos + 9 + header_length
            if payload_at > size:
                return -1
            timestamps = flags >> 6
            if timestamps & 0x02 and header_length >= 5:
                pts = _read_timestamp(data, pos + 9)
                if timestamps == 3 and header_length >= 10:
                    dts = _read_timestamp(data, pos + 14)
        else:
            parsed = self._parse_mpeg1_pes_header(data, pos)
            if parsed is None:
                return -1
            payload_at, pts, dts = parsed
        payload_length = length - (payload_at - pos - 6)
        if length and payload_length < 0:
            raise _BadHeader
        self.stats.pes_packets += 1
        unit = self._start_pes(stream_id, pts, dts, out)
        self._current = unit
        if length == 0:
            self._state = _State.UNBOUNDED
        elif payload_length == 0:
            self._end_pes(out)
        else:
            self._remaining = payload_length
            self._state = _State.PAYLOAD
        return payload_at

    @staticmethod
    def _parse_mpeg1_pes_header(data: bytes, pos: int) -> tuple[int, int | None, int | None] | None:
        """MPEG-1 PES header (11172-1 2.4.3.6), seen in the official tool's sample; None = need more."""
        size = len(data)
        at = pos + 6
        stuffing_end = at + 16
        while at < size and at < stuffing_end and data[at] == 0xFF:
            at += 1
        if at >= size:
            return None
        if data[at] & 0xC0 == 0x40:  # STD buffer scale and size
            at += 2
            if at >= size:
                return None
        kind = data[at] & 0xF0
        if kind == 0x20:
            if at + 5 > size:
                return None
            return at + 5, _read_timestamp(data, at), None
        if kind == 0x30:
            if at + 10 > size:
                return None
            return at + 10, _read_timestamp(data, at), _read_timestamp(data, at + 5)
        if data[at] == 0x0F:
            return at + 1, None, None
        raise _BadHeader


# ---------------------------------------------------------------------------------------------- muxer


def _crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 (13818-1 Annex A): not the zlib CRC, which is bit-reflected."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = (crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1
        crc &= 0xFFFFFFFF
    return crc


def _write_timestamp(prefix: int, value: int) -> bytes:
    value &= (1 << 33) - 1
    return bytes(
        (
            prefix << 4 | (value >> 29) & 0x0E | 1,
            (value >> 22) & 0xFF,
            (value >> 14) & 0xFE | 1,
            (value >> 7) & 0xFF,
            (value << 1) & 0xFE | 1,
        )
    )


class PsMuxer:
    """Packs access units into program stream packs the way GB/T 28181 Annex C asks.

    Every frame gets a pack header; keyframes also get the system header and stream map right
    after it; a frame larger than one PES is split into several, only the first with timestamps.
    An audio-only stream has no keyframes, so it repeats the headers every
    ``AUDIO_MAP_INTERVAL`` packs (the official test tool's G.711 file does so every 25).
    The stream map and system header never change for a muxer, so they are built once.
    """

    AUDIO_MAP_INTERVAL = 25

    def __init__(
        self,
        video: StreamType | None = StreamType.H264,
        audio: StreamType | None = None,
        mux_rate: int = 20_000,
    ) -> None:
        """``mux_rate`` is in units of 50 bytes/s (13818-1 2.5.3.4); 20,000 = 8 Mbit/s."""
        self.video = video
        self.audio = audio
        self._mux_rate = bytes(((mux_rate >> 14) & 0xFF, (mux_rate >> 6) & 0xFF, (mux_rate << 2) & 0xFC | 3))
        streams: list[tuple[int, int]] = []
        if video is not None:
            streams.append((VIDEO_STREAM_ID, video))
        if audio is not None:
            streams.append((AUDIO_STREAM_ID, audio))
        self._system_header = self._build_system_header(mux_rate, video is not None, audio is not None)
        self._stream_map = self._build_stream_map(streams)
        self._audio_packs = 0

    @staticmethod
    def _build_system_header(rate: int, has_video: bool, has_audio: bool) -> bytes:
        bounds = b""
        if has_video:
            bounds += b"\xe0\xe0\x80"  # P-STD buffer 128 x 1024 bytes
        if has_audio:
            bounds += b"\xc0\xc0\x20"  # P-STD buffer 32 x 128 bytes
        body = bytes(
            (
                0x80 | (rate >> 15) & 0x7F,
                (rate >> 7) & 0xFF,
                (rate << 1) & 0xFE | 1,
                int(has_audio) << 2,  # audio_bound; fixed_flag 0, CSPS_flag 0
                0xE0 | int(has_video),  # audio/video lock, marker, video_bound
                0x7F,  # packet_rate_restriction_flag 0, reserved
            )
        )
        body += bounds
        return b"\x00\x00\x01\xbb" + _U16.pack(len(body)) + body

    @staticmethod
    def _build_stream_map(streams: list[tuple[int, int]]) -> bytes:
        entries = b"".join(bytes((stream_type, stream_id, 0, 0)) for stream_id, stream_type in streams)
        body = b"\xe0\xff" + _U16.pack(0) + _U16.pack(len(entries)) + entries
        head = b"\x00\x00\x01\xbc" + _U16.pack(len(body) + 4) + body
        return head + struct.pack("!I", _crc32_mpeg2(head))

    def _pack_header(self, scr: int) -> bytes:
        scr &= (1 << 33) - 1
        return b"".join(
            (
                PACK_START,
                bytes(
                    (
                        0x44 | (scr >> 27) & 0x38 | (scr >> 28) & 0x03,
                        (scr >> 20) & 0xFF,
                        (scr >> 12) & 0xF8 | 0x04 | (scr >> 13) & 0x03,
                        (scr >> 5) & 0xFF,
                        (scr << 3) & 0xF8 | 0x04,  # SCR extension 0
                        0x01,
                    )
                ),
                self._mux_rate,
                b"\xf8",  # reserved, no stuffing
            )
        )

    @staticmethod
    def _pes(stream_id: int, payload: bytes, pts: int, dts: int | None) -> list[bytes | memoryview]:
        if dts is None or dts == pts:
            flags, header = 0x80, _write_timestamp(0x2, pts)
        else:
            flags, header = 0xC0, _write_timestamp(0x3, pts) + _write_timestamp(0x1, dts)
        view = memoryview(payload)
        parts: list[bytes | memoryview] = []
        start = 0
        first = True
        while first or start < len(view):
            room = MAX_PES_LENGTH - 3 - len(header)
            chunk = view[start : start + room]
            parts.append(b"\x00\x00\x01" + bytes((stream_id,)))
            parts.append(_U16.pack(3 + len(header) + len(chunk)))
            # data_alignment_indicator on the PES that starts the access unit.
            parts.append(bytes((0x84 if first else 0x80, flags, len(header))) + header)
            parts.append(chunk)
            start += len(chunk)
            first = False
            flags, header = 0x00, b""
        return parts

    def mux_video(self, unit: bytes, pts: int, dts: int | None = None, keyframe: bool | None = None) -> bytes:
        """One PS pack for one Annex B video access unit. ``keyframe`` is detected when None."""
        if self.video is None:
            raise ValueError("this muxer has no video stream")
        if keyframe is None:
            keyframe = is_keyframe(unit, self.video)
        parts: list[bytes | memoryview] = [self._pack_header(pts if dts is None else dts)]
        if keyframe:
            parts.append(self._system_header)
            parts.append(self._stream_map)
        parts.extend(self._pes(VIDEO_STREAM_ID, unit, pts, dts))
        return b"".join(parts)

    def mux_audio(self, frame: bytes, pts: int) -> bytes:
        """One PS pack for audio (G.711 samples or ADTS AAC frames), in its own pack."""
        if self.audio is None:
            raise ValueError("this muxer has no audio stream")
        parts: list[bytes | memoryview] = [self._pack_header(pts)]
        if self.video is None and self._audio_packs % self.AUDIO_MAP_INTERVAL == 0:
            parts.append(self._system_header)
            parts.append(self._stream_map)
        self._audio_packs += 1
        parts.extend(self._pes(AUDIO_STREAM_ID, frame, pts, None))
        return b"".join(parts)

    def mux(self, unit: AccessUnit) -> bytes:
        """Re-mux a demuxed/depacketised unit (the relay's path from raw H.264 RTP to PS)."""
        pts = unit.pts if unit.pts is not None else (unit.dts or 0)
        if _is_video(unit.stream_id):
            return self.mux_video(unit.data, pts, unit.dts, unit.keyframe)
        return self.mux_audio(unit.data, pts)

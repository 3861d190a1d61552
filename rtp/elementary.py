"""Elementary streams: stream types, access units, and the Annex B (start-code) view of H.264/H.265.

Everything that carries video ends here: the PS demuxer, the RFC 6184 depacketiser and the file
simulator all produce `AccessUnit`s, and the PS muxer consumes them. Annex B splitting follows
H.264 7.4.1.2.3 and H.265 7.4.2.4.4, reduced to what a relay needs: where one picture ends and the
next begins, and whether a decoder can start at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

START_CODE = b"\x00\x00\x01"


class StreamType(IntEnum):
    """PSM `stream_type` values (ISO/IEC 13818-1 table 2-34 plus GB/T 28181 Annex C)."""

    MPEG4 = 0x10
    AAC = 0x0F
    H264 = 0x1B
    H265 = 0x24
    SVAC_VIDEO = 0x80
    G711A = 0x90
    G711U = 0x91
    G722_1 = 0x92
    G723_1 = 0x93
    G729 = 0x99
    SVAC_AUDIO = 0x9B


@dataclass(slots=True)
class AccessUnit:
    """One coded picture (video) or one PES worth of audio frames, with 90 kHz timestamps.

    ``stream_type`` is None when the stream map that names the codec has not been seen yet (a demuxer
    that joined between two keyframes). ``complete`` is False when bytes are known to be missing
    (packet loss, a PES cut short): the relay may still forward it, a decoder will conceal.
    """

    stream_id: int
    stream_type: int | None
    pts: int | None
    dts: int | None
    keyframe: bool
    data: bytes
    complete: bool = True


def iter_nal_units(data: bytes) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` of each NAL unit payload (start code excluded) in an Annex B buffer.

    A fourth leading zero (``00 00 00 01``) and trailing_zero_8bits are left out of the NAL unit.
    """
    pos = data.find(START_CODE)
    while pos >= 0:
        start = pos + 3
        nxt = data.find(START_CODE, start)
        end = len(data) if nxt < 0 else nxt
        while end > start and data[end - 1] == 0:
            end -= 1
        if end > start:
            yield start, end
        pos = nxt


def _h264_starts_au(nal_type: int, data: bytes, start: int, end: int, after_vcl: bool) -> bool | None:
    """True/False if this NAL begins/continues an access unit; None if it is not a VCL/boundary NAL."""
    if nal_type in (6, 7, 8, 9) or 14 <= nal_type <= 18:
        return after_vcl
    if 1 <= nal_type <= 5:
        # first_mb_in_slice is ue(v): value 0 is the single bit "1", i.e. a new picture's first slice.
        first_slice = end > start + 1 and data[start + 1] & 0x80 != 0
        return after_vcl and first_slice
    return None


def _h265_starts_au(nal_type: int, data: bytes, start: int, end: int, after_vcl: bool) -> bool | None:
    if nal_type in (32, 33, 34, 35, 39) or 41 <= nal_type <= 44 or 48 <= nal_type <= 55:
        return after_vcl
    if nal_type <= 31:
        first_slice = end > start + 2 and data[start + 2] & 0x80 != 0
        return after_vcl and first_slice
    return None


def iter_access_units(data: bytes, codec: StreamType) -> Iterator[bytes]:
    """Split an Annex B H.264/H.265 elementary stream into access units (start codes kept).

    Each yielded slice runs from the start code of the AU's first NAL unit to the start code of the
    next AU's first NAL unit, so joining them gives back ``data`` minus bytes before the first start
    code. Used by the simulator to pace a file and by tests to feed the muxer.
    """
    if codec == StreamType.H264:
        starts_au = _h264_starts_au
        header_len = 1
    elif codec == StreamType.H265:
        starts_au = _h265_starts_au
        header_len = 2
    else:
        raise ValueError(f"no Annex B access-unit rules for stream type {codec!r}")
    au_start = -1
    after_vcl = False
    for start, end in iter_nal_units(data):
        if end - start < header_len:
            continue
        nal_type = data[start] & 0x1F if header_len == 1 else (data[start] >> 1) & 0x3F
        begins = starts_au(nal_type, data, start, end, after_vcl)
        if begins is None:
            continue
        # The AU begins at its start code; include a fourth zero byte when the encoder wrote one.
        code_start = start - 4 if start >= 4 and data[start - 4] == 0 else start - 3
        if au_start < 0:
            au_start = code_start
        elif begins:
            yield data[au_start:code_start]
            au_start = code_start
        after_vcl = nal_type <= 31 if header_len == 2 else 1 <= nal_type <= 5
    if au_start >= 0:
        yield data[au_start:]


def _mpeg4_keyframe(data: bytes) -> bool:
    # VOP start code 00 00 01 B6, then vop_coding_type in the top two bits: 00 = I-VOP.
    pos = data.find(b"\x00\x00\x01\xb6")
    return pos >= 0 and pos + 4 < len(data) and data[pos + 4] >> 6 == 0


def _nal_starts(data: bytes) -> Iterator[int]:
    """Positions of NAL unit headers, found lazily so a caller can stop before scanning a large slice."""
    pos = data.find(START_CODE)
    while 0 <= pos < len(data) - 3:
        yield pos + 3
        pos = data.find(START_CODE, pos + 3)


def is_keyframe(data: bytes, stream_type: int | None) -> bool:
    """Whether a decoder can start at this access unit.

    H.264: an IDR slice (5) or an SPS (7); H.265: an IRAP picture (16-21) or a VPS (32); MPEG-4: an
    I-VOP. Parameter sets count because cameras put them only in front of keyframes, and a
    truncated keyframe still lets a decoder resynchronise. Unknown and audio types are never keyframes.
    The first slice settles it (all slices of a picture share IDR-ness), so the scan stops there
    instead of searching a 100 kB slice for further start codes.
    """
    if stream_type == StreamType.H264:
        for start in _nal_starts(data):
            nal_type = data[start] & 0x1F
            if nal_type in (5, 7):
                return True
            if 1 <= nal_type <= 4:
                return False
        return False
    if stream_type == StreamType.H265:
        for start in _nal_starts(data):
            nal_type = (data[start] >> 1) & 0x3F
            if 16 <= nal_type <= 21 or nal_type == 32:
                return True
            if nal_type <= 31:
                return False
        return False
    if stream_type == StreamType.MPEG4:
        return _mpeg4_keyframe(data)
    return False

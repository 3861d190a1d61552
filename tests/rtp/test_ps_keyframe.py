"""The relay's PS keyframe test (`starts_keyframe`) and the RTP payload offset it is applied at."""

from __future__ import annotations

import pytest

from gbgw.rtp.elementary import StreamType
from gbgw.rtp.packet import RtpPacket, payload_offset
from gbgw.rtp.ps import PsMuxer, starts_keyframe

H264_SPS = b"\x00\x00\x00\x01\x67\x64\x00\x1f\xac\xd9\x40\x50"
H264_PPS = b"\x00\x00\x00\x01\x68\xeb\xe3\xcb"
H264_IDR = b"\x00\x00\x00\x01\x65\x88\x84\x00" + bytes(200)
H264_P = b"\x00\x00\x00\x01\x41\x9a\x24\x6c" + bytes(200)

H265_VPS = b"\x00\x00\x00\x01\x40\x01\x0c\x01\xff\xff"
H265_SPS = b"\x00\x00\x00\x01\x42\x01\x01\x01\x60\x00"
H265_PPS = b"\x00\x00\x00\x01\x44\x01\xc1\x72"
H265_IDR = b"\x00\x00\x00\x01\x26\x01\xaf\x00" + bytes(200)  # IDR_W_RADL (19)
H265_CRA = b"\x00\x00\x00\x01\x2a\x01\xaf\x00" + bytes(200)  # CRA_NUT (21), also IRAP
H265_TRAIL = b"\x00\x00\x00\x01\x02\x01\xd0\x00" + bytes(200)  # TRAIL_R (1)

# MPEG-2 pack header (14 bytes, no stuffing), then a system header / a PES.
PACK = bytes.fromhex("000001ba 44000400 0401 0186a3 f8".replace(" ", ""))
SYSTEM_HEADER = bytes.fromhex("000001bb 000c 80cc f5 04 e1 7f e0e080 c0c020".replace(" ", ""))
STREAM_MAP_START = bytes.fromhex("000001bc 0012")
PES_START = bytes.fromhex("000001e0 0010 8480 05 2100010001")


@pytest.mark.parametrize(
    ("stream_type", "unit", "keyframe"),
    [
        (StreamType.H264, H264_SPS + H264_PPS + H264_IDR, True),
        (StreamType.H264, H264_IDR, True),
        (StreamType.H264, H264_P, False),
        (StreamType.H265, H265_VPS + H265_SPS + H265_PPS + H265_IDR, True),
        (StreamType.H265, H265_CRA, True),
        (StreamType.H265, H265_TRAIL, False),
    ],
)
def test_muxed_frames(stream_type: StreamType, unit: bytes, keyframe: bool) -> None:
    pack = PsMuxer(stream_type).mux_video(unit, pts=3600)
    assert starts_keyframe(pack) is keyframe


def test_pack_header_stuffing_is_skipped() -> None:
    stuffed = PACK[:13] + bytes((0xF8 | 3,)) + b"\xff\xff\xff"
    assert starts_keyframe(stuffed + SYSTEM_HEADER)
    assert not starts_keyframe(stuffed + PES_START)


def test_stream_map_without_system_header_counts() -> None:
    assert starts_keyframe(PACK + STREAM_MAP_START + bytes(18))


def test_mpeg1_pack_header() -> None:
    mpeg1 = bytes.fromhex("000001ba 2100010001 800001".replace(" ", ""))  # 12 bytes, '0010' marker
    assert starts_keyframe(mpeg1 + SYSTEM_HEADER)
    assert not starts_keyframe(mpeg1 + PES_START)


def test_not_a_pack_or_cut_short() -> None:
    assert not starts_keyframe(PES_START + bytes(40))  # a continuation packet of a frame
    assert not starts_keyframe(PACK + SYSTEM_HEADER[:3])  # the next start code is cut off
    assert not starts_keyframe(PACK[:17])
    assert not starts_keyframe(b"")
    bad_marker = PACK[:4] + b"\x04" + PACK[5:]  # neither '01' (MPEG-2) nor '0010' (MPEG-1)
    assert not starts_keyframe(bad_marker + SYSTEM_HEADER)


def test_reads_in_place_between_offsets() -> None:
    frame = PACK + SYSTEM_HEADER
    buf = bytearray(b"\xaa" * 7) + frame + b"\xbb" * 5
    assert starts_keyframe(memoryview(buf), 7, 7 + len(frame))
    assert not starts_keyframe(memoryview(buf), 7, 7 + len(PACK) + 3)  # end cuts the system header


@pytest.mark.parametrize(
    ("csrc", "extension", "offset"),
    [((), None, 12), ((1, 2), None, 20), ((), b"\x01\x02\x03\x04" * 2, 24), ((9,), b"\x00" * 4, 24)],
)
def test_payload_offset(csrc: tuple[int, ...], extension: bytes | None, offset: int) -> None:
    packet = RtpPacket(
        96,
        1,
        3600,
        0xABCD,
        PACK + SYSTEM_HEADER,
        csrc=csrc,
        extension_profile=None if extension is None else 0xBEDE,
        extension_data=extension or b"",
    ).serialize()
    buf = b"\x00" * 3 + packet
    start = payload_offset(buf, 3, len(packet))
    assert start == 3 + offset
    assert starts_keyframe(buf, start, len(buf))


def test_payload_offset_extension_past_the_end() -> None:
    header = bytes((0x90, 96)) + bytes(10)  # extension bit set, no room for its header
    assert payload_offset(header, 0, len(header)) == -1

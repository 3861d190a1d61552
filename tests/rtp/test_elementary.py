"""Annex B splitting into NAL units and access units, keyframe detection, on hand-built streams."""

from __future__ import annotations

import pytest

from gbgw.rtp.elementary import StreamType, is_keyframe, iter_access_units, iter_nal_units

SC4 = b"\x00\x00\x00\x01"
SC3 = b"\x00\x00\x01"

# H.264 NAL headers: 0x09 AUD, 0x67 SPS, 0x68 PPS, 0x06 SEI, 0x65 IDR slice, 0x41 non-IDR slice.
# The byte after a slice header is 0x88/0x9a (first_mb_in_slice = 0, top bit set) or 0x22 (not 0).
H264_IDR = (
    SC4 + b"\x67\x42\x00\x1e" + SC4 + b"\x68\xce\x3c\x80" + SC3 + b"\x06\x05\x01" + SC3 + b"\x65\x88\x84"
)
H264_P_TWO_SLICES = SC3 + b"\x41\x9a\x01" + SC3 + b"\x41\x22\x02"
H264_P = SC4 + b"\x41\x9a\x03\x80"


def test_nal_units_exclude_start_codes_and_trailing_zeros() -> None:
    data = b"junk" + SC4 + b"\x67\x42" + b"\x00\x00" + SC3 + b"\x68\xce"
    assert [data[a:b] for a, b in iter_nal_units(data)] == [b"\x67\x42", b"\x68\xce"]


def test_h264_access_units() -> None:
    stream = H264_IDR + H264_P_TWO_SLICES + H264_P
    units = list(iter_access_units(stream, StreamType.H264))
    assert units == [H264_IDR, H264_P_TWO_SLICES, H264_P]
    assert [is_keyframe(u, StreamType.H264) for u in units] == [True, False, False]


def test_h264_aud_starts_a_unit() -> None:
    aud_p = SC3 + b"\x09\xf0" + SC3 + b"\x41\x9a\x05"
    stream = H264_P + aud_p + aud_p
    assert list(iter_access_units(stream, StreamType.H264)) == [H264_P, aud_p, aud_p]


# H.265 NAL headers (type << 1, then layer/tid byte 0x01): VPS 0x40, SPS 0x42, PPS 0x44,
# prefix SEI 0x4e, IDR_W_RADL 0x26, CRA 0x2a, TRAIL_R 0x02, suffix SEI 0x50.
H265_IDR = SC4 + b"\x40\x01\x0c" + SC4 + b"\x42\x01\x01" + SC4 + b"\x44\x01\xc1" + SC4 + b"\x26\x01\xaf\x00"
H265_P = SC4 + b"\x02\x01\xd0\x11" + SC3 + b"\x02\x01\x20\x22" + SC3 + b"\x50\x01\x05"
H265_CRA = SC4 + b"\x2a\x01\xaf"


def test_h265_access_units() -> None:
    units = list(iter_access_units(H265_IDR + H265_P + H265_CRA, StreamType.H265))
    assert units == [H265_IDR, H265_P, H265_CRA]
    assert [is_keyframe(u, StreamType.H265) for u in units] == [True, False, True]


def test_keyframe_other_types() -> None:
    i_vop = b"\x00\x00\x01\xb0\x01\x00\x00\x01\xb6\x10\x00"  # vop_coding_type 00
    p_vop = b"\x00\x00\x01\xb6\x50\x00"  # vop_coding_type 01
    assert is_keyframe(i_vop, StreamType.MPEG4) and not is_keyframe(p_vop, StreamType.MPEG4)
    assert not is_keyframe(H264_IDR, None)
    assert not is_keyframe(H264_IDR, StreamType.G711A)


def test_unsupported_codec_rejected() -> None:
    with pytest.raises(ValueError):
        list(iter_access_units(H264_IDR, StreamType.MPEG4))

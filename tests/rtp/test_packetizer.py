"""PS RTP packetiser and RFC 6184 H.264 depacketiser, on hand-built packets."""

from __future__ import annotations

import struct

from gbgw.rtp.elementary import StreamType
from gbgw.rtp.packet import RtpPacket
from gbgw.rtp.packetizer import H264RtpDepacketizer, PsRtpPacketizer


def test_ps_packetizer_cuts_at_mtu_and_marks_frame_end() -> None:
    packetizer = PsRtpPacketizer(ssrc=0x0BEBC265, mtu=1400, first_sequence=65534)
    frame = bytes(range(256)) * 12  # 3072 bytes
    packets = [RtpPacket.parse(p) for p in packetizer.packetize(frame, 2**32 + 3600)]
    assert [len(p.payload) for p in packets] == [1388, 1388, 296]
    assert [p.sequence for p in packets] == [65534, 65535, 0]
    assert [p.marker for p in packets] == [False, False, True]
    assert {(p.payload_type, p.ssrc, p.timestamp) for p in packets} == {(96, 0x0BEBC265, 3600)}
    assert b"".join(bytes(p.payload) for p in packets) == frame
    (single,) = [RtpPacket.parse(p) for p in packetizer.packetize(b"tiny", 7200)]
    assert single.sequence == 1 and single.marker


def _rtp(seq: int, ts: int, payload: bytes, marker: bool = False) -> RtpPacket:
    return RtpPacket.parse(RtpPacket(98, seq, ts, 5, payload, marker=marker).serialize())


SPS = b"\x67\x42\x00\x1e\xab"
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88" + bytes(range(1, 200))
SLICE = b"\x41\x9a\x55"
START = b"\x00\x00\x00\x01"


def _stap_a(*nals: bytes) -> bytes:
    return b"\x78" + b"".join(struct.pack("!H", len(n)) + n for n in nals)  # F=0, NRI=3, type 24


def _fu_a(nal: bytes, pieces: int) -> list[bytes]:
    indicator = (nal[0] & 0xE0) | 28
    body = nal[1:]
    step = -(-len(body) // pieces)
    out = []
    for i in range(pieces):
        header = nal[0] & 0x1F | (0x80 if i == 0 else 0) | (0x40 if i == pieces - 1 else 0)
        out.append(bytes((indicator, header)) + body[i * step : (i + 1) * step])
    return out


def test_stap_a_and_fu_a_rebuild_an_idr_access_unit() -> None:
    depacketizer = H264RtpDepacketizer()
    fragments = _fu_a(IDR, 3)
    assert depacketizer.push(_rtp(10, 9000, _stap_a(SPS, PPS))) == []
    assert depacketizer.push(_rtp(11, 9000, fragments[0])) == []
    assert depacketizer.push(_rtp(12, 9000, fragments[1])) == []
    (unit,) = depacketizer.push(_rtp(13, 9000, fragments[2], marker=True))
    assert unit.data == START + SPS + START + PPS + START + IDR
    assert unit.keyframe and unit.complete and unit.pts == 9000 and unit.stream_type == StreamType.H264
    (p_frame,) = depacketizer.push(_rtp(14, 12600, SLICE, marker=True))
    assert p_frame.data == START + SLICE and not p_frame.keyframe


def test_timestamp_change_ends_unit_without_marker() -> None:
    depacketizer = H264RtpDepacketizer()
    assert depacketizer.push(_rtp(1, 0, SLICE)) == []
    assert depacketizer.push(_rtp(2, 0, SLICE)) == []
    (unit,) = depacketizer.push(_rtp(3, 3600, SLICE))
    assert unit.data == (START + SLICE) * 2 and unit.pts == 0
    (last,) = depacketizer.flush()
    assert last.pts == 3600


def test_lost_fragment_drops_the_nal_and_marks_unit_incomplete() -> None:
    depacketizer = H264RtpDepacketizer()
    fragments = _fu_a(IDR, 3)
    depacketizer.push(_rtp(1, 0, SPS))
    depacketizer.push(_rtp(2, 0, fragments[0]))
    (unit,) = depacketizer.push(_rtp(4, 0, fragments[2], marker=True))
    assert unit.data == START + SPS and not unit.complete
    assert depacketizer.stats.sequence_gaps == 1 and depacketizer.stats.dropped_fragments == 2
    (next_unit,) = depacketizer.push(_rtp(5, 3600, SLICE, marker=True))
    assert next_unit.complete


def test_malformed_and_unsupported_payloads_counted() -> None:
    depacketizer = H264RtpDepacketizer()
    depacketizer.push(_rtp(1, 0, b"\x78\x00\x09\x67"))  # STAP-A NAL length past the end
    depacketizer.push(_rtp(2, 0, b"\x79\x00\x00"))  # STAP-B
    depacketizer.push(_rtp(3, 0, b"\x7c"))  # FU-A without its header
    (unit,) = depacketizer.push(_rtp(4, 0, SLICE, marker=True))
    assert unit.data == START + SLICE and not unit.complete
    assert depacketizer.stats.malformed == 2 and depacketizer.stats.unsupported == 1

"""RFC 4571 deframing of the real TCP sample, arbitrary chunking, garbage and ``$`` interleaving."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire import FIXTURES

from gbgw.rtp.framing import Rfc4571Deframer, frame
from gbgw.rtp.packet import ReceiverReport, RtpError, RtpPacket

SAMPLE = FIXTURES / "media" / "rtp_packets" / "lal_unpack_test_goldenRtpList.rfc4571.bin"


def _split_by_hand(data: bytes) -> list[bytes]:
    """Independent reading of the sample: length, packet, length, packet..."""
    packets = []
    pos = 0
    while pos < len(data):
        (size,) = struct.unpack_from("!H", data, pos)
        packets.append(data[pos + 2 : pos + 2 + size])
        pos += 2 + size
    assert pos == len(data)
    return packets


def test_real_sample_deframes_into_ten_packets() -> None:
    data = SAMPLE.read_bytes()
    deframer = Rfc4571Deframer()
    packets = deframer.feed(data)
    assert packets == _split_by_hand(data)
    parsed = [RtpPacket.parse(p) for p in packets]
    # PROVENANCE: PT 96, SSRC 0x0BEBC265, sequence numbers 0-8 and 291, 1412-byte packets.
    assert [p.sequence for p in parsed] == [*range(9), 291]
    assert {p.ssrc for p in parsed} == {0x0BEBC265} and {p.payload_type for p in parsed} == {96}
    assert sum(len(p) == 1412 for p in packets) == 8
    assert deframer.stats.frames == 10 and deframer.stats.resyncs == 0 and deframer.stats.skipped_bytes == 0


@given(st.lists(st.integers(1, 3000), max_size=40))
def test_any_chunking_gives_the_same_packets(cuts: list[int]) -> None:
    data = SAMPLE.read_bytes()
    deframer = Rfc4571Deframer()
    packets: list[bytes] = []
    pos = 0
    for cut in cuts:
        packets += deframer.feed(data[pos : pos + cut])
        pos += cut
    packets += deframer.feed(data[pos:])
    assert packets == _split_by_hand(data)


def _rtp(seq: int, size: int = 100) -> bytes:
    return RtpPacket(96, seq, seq * 3600, 0x1234, bytes([seq & 0xFF]) * size).serialize()


def test_resync_after_garbage_between_frames() -> None:
    good = [_rtp(i) for i in range(6)]
    garbage = b"\x17\xff\x00\x42 not a frame \x00\x00\x01\xba" * 3
    stream = frame(good[0]) + frame(good[1]) + garbage + b"".join(frame(p) for p in good[2:])
    deframer = Rfc4571Deframer()
    assert deframer.feed(stream) == good
    assert deframer.stats.resyncs == 1
    assert deframer.stats.skipped_bytes == len(garbage)


def test_resync_with_garbage_at_start_fed_byte_by_byte() -> None:
    good = [_rtp(i, 40) for i in range(4)]
    stream = b"\x00\x05\x99garbage" + b"".join(frame(p) for p in good)
    deframer = Rfc4571Deframer()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += deframer.feed(stream[i : i + 1])
    assert out == good


def test_truncated_packet_mid_stream_is_dropped_and_stream_recovers() -> None:
    # A device restart cuts a packet short and the next connection bytes start a fresh frame:
    # the half frame's length swallows part of what follows, so the deframer must find its way back.
    good = [_rtp(i, 200) for i in range(8)]
    cut = frame(good[1])[:50]
    stream = frame(good[0]) + cut + b"".join(frame(p) for p in good[2:])
    deframer = Rfc4571Deframer()
    out = deframer.feed(stream)
    # The cut frame's length spans into packet 2, so one bogus packet comes out (the RTP layer
    # rejects it by SSRC/sequence); packet 2 is lost and everything from packet 3 on is intact.
    assert len(out) == 7 and out[0] == good[0] and out[1] not in good
    assert out[2:] == good[3:]
    assert deframer.stats.resyncs == 1


def test_interleaved_dollar_framing() -> None:
    rtp = _rtp(1)
    rtcp = ReceiverReport(0x1234).serialize()
    stream = (
        b"$\x00"
        + struct.pack("!H", len(rtp))
        + rtp
        + b"$\x01"
        + struct.pack("!H", len(rtcp))
        + rtcp
        + frame(rtp)
    )
    deframer = Rfc4571Deframer()
    assert deframer.feed(stream) == [rtp, rtcp, rtp]
    assert deframer.stats.interleaved_frames == 2


def test_buffer_stays_bounded_on_endless_garbage() -> None:
    deframer = Rfc4571Deframer(max_packet=2000)
    for _ in range(200):
        assert deframer.feed(bytes(range(256)) * 4) == []
    assert len(deframer._buf) <= 2 * 2000


def test_frame_rejects_oversized_packet() -> None:
    assert frame(b"\x80" * 0xFFFF)[:2] == b"\xff\xff"
    with pytest.raises(RtpError):
        frame(b"\x80" * 0x10000)

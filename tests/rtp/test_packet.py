"""RTP/RTCP packets: parsing real and hand-built bytes, round trips, in-place helpers, hostile input."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire import FIXTURES

from gbgw.rtp.packet import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtpError,
    RtpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    is_rtcp,
    is_rtp,
    ntp_timestamp,
    parse_rtcp,
    peek_marker,
    peek_payload_type,
    peek_seq,
    peek_ssrc,
    peek_timestamp,
    rewrite_header,
    serialize_rtcp,
    write_payload_type,
    write_seq,
    write_ssrc,
    write_timestamp,
)

PACKETS = FIXTURES / "media" / "rtp_packets"


def test_parse_real_camera_packet() -> None:
    # Header bytes 80 60 00 00 00 00 00 00 0b eb df a1: v2, PT 96, seq 0, ts 0, SSRC 0x0BEBDFA1.
    data = (PACKETS / "srs_utest_kernel2_L26_KernelPSTest_PsPacketDecodeNormal.rtp.bin").read_bytes()
    packet = RtpPacket.parse(data)
    assert (packet.version, packet.payload_type, packet.sequence, packet.timestamp) == (2, 96, 0, 0)
    assert packet.ssrc == 0x0BEBDFA1
    assert not packet.marker and packet.csrc == () and packet.extension_profile is None
    assert bytes(packet.payload[:4]) == b"\x00\x00\x01\xba"
    assert len(packet.payload) == len(data) - 12
    assert packet.serialize() == data


def test_parse_captured_audio_packet() -> None:
    # 80 60 7c ac 05 b3 88 a0 0b eb d1 35: seq 0x7CAC = 31916, timestamp 0x05B388A0 = 95652000 as in
    # the capture's description ("Time=95652000").
    data = (
        PACKETS / "srs_utest_gb28181_L1633_KernelPSTest_PsPacketDecodeRegularMessage.rtp.bin"
    ).read_bytes()
    packet = RtpPacket.parse(data)
    assert (packet.sequence, packet.timestamp, packet.ssrc) == (31916, 95652000, 0x0BEBD135)


def test_parse_csrc_extension_and_padding() -> None:
    data = (
        bytes([0xB2, 0x80 | 98])  # v2, P, X, CC=2; marker, PT 98
        + struct.pack("!HII", 65535, 0xFFFFFFFF, 7)
        + struct.pack("!II", 11, 22)  # CSRCs
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x10\xaa\x00\x00"  # one-byte-header extension element, padded to a word
        + b"hello"
        + b"\x00\x00\x03"  # three padding bytes, count in the last
    )
    packet = RtpPacket.parse(data)
    assert packet.marker and packet.payload_type == 98
    assert (packet.sequence, packet.timestamp, packet.ssrc) == (65535, 0xFFFFFFFF, 7)
    assert packet.csrc == (11, 22)
    assert packet.extension_profile == 0xBEDE and packet.extension_data == b"\x10\xaa\x00\x00"
    assert bytes(packet.payload) == b"hello" and packet.padding == 3
    assert packet.serialize() == data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x60\x00", "too short"),
        (b"\x40\x60" + bytes(10), "version 1"),
        (b"\x83\x60" + bytes(10) + bytes(8), "CSRC"),
        (b"\x90\x60" + bytes(10) + b"\x00\x00\x00\x05", "extension"),
        (b"\xa0\x60" + bytes(10) + b"\x00\x09", "padding"),
        (b"\xa0\x60" + bytes(10) + b"\x00\x00", "padding"),
    ],
)
def test_parse_rejects_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(RtpError, match=reason.split()[0]):
        RtpPacket.parse(data)


rtp_packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=1500),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension_profile=st.none() | st.integers(0, 0xFFFF),
    extension_data=st.binary(max_size=64).map(lambda b: b[: len(b) // 4 * 4]),
    padding=st.integers(0, 255),
)


@given(rtp_packets)
def test_rtp_round_trip(packet: RtpPacket) -> None:
    if packet.extension_profile is None:
        packet.extension_data = b""
    parsed = RtpPacket.parse(packet.serialize())
    assert parsed.payload == packet.payload
    parsed.payload = packet.payload
    assert parsed == packet


@given(st.binary(max_size=200))
def test_parse_never_fails_other_than_rtp_error(data: bytes) -> None:
    with contextlib.suppress(RtpError):
        RtpPacket.parse(data)
    with contextlib.suppress(RtpError):
        parse_rtcp(data)


def test_in_place_helpers_on_receive_buffer() -> None:
    original = RtpPacket(96, 1000, 123456, 0x11111111, b"payload", marker=True).serialize()
    buf = bytearray(original)
    assert (peek_seq(buf), peek_timestamp(buf), peek_ssrc(buf)) == (1000, 123456, 0x11111111)
    assert peek_payload_type(buf) == 96 and peek_marker(buf)
    rewrite_header(buf, 70000, 0x22222222)  # sequence numbers wrap at 16 bits
    write_timestamp(memoryview(buf), 2**32 + 5)
    write_payload_type(buf, 98)
    rewritten = RtpPacket.parse(buf)
    assert (rewritten.sequence, rewritten.ssrc, rewritten.timestamp) == (70000 - 65536, 0x22222222, 5)
    assert rewritten.payload_type == 98 and rewritten.marker
    assert bytes(rewritten.payload) == b"payload"
    write_seq(buf, 1)
    write_ssrc(buf, 3)
    assert (peek_seq(buf), peek_ssrc(buf)) == (1, 3)


def test_rtp_rtcp_demultiplexing() -> None:
    rtp = RtpPacket(96, 1, 2, 3, b"x").serialize()
    marked_high_pt = RtpPacket(127, 1, 2, 3, b"x", marker=True).serialize()  # second byte 0xFF
    rr = ReceiverReport(5).serialize()
    assert is_rtp(rtp) and not is_rtcp(rtp)
    assert is_rtp(marked_high_pt) and not is_rtcp(marked_high_pt)
    assert is_rtcp(rr) and not is_rtp(rr)
    for packet_type in (200, 201, 202, 203, 204, 205, 206):
        assert is_rtcp(bytes((0x80, packet_type)) + bytes(6))
    assert not is_rtp(b"\x00" * 12) and not is_rtcp(b"\x00" * 12)


def test_sender_report_bytes_per_rfc3550() -> None:
    data = struct.pack(
        "!BBHIIIIII", 0x81, 200, 12, 0xAABBCCDD, 0xE0000000, 0x80000000, 90000, 10, 14000
    ) + struct.pack("!IIIIII", 0x01020304, (25 << 24) | 0xFFFFFE, 0x00010005, 42, 0x12345678, 65536)
    (sr,) = parse_rtcp(data)
    assert isinstance(sr, SenderReport)
    assert sr.ssrc == 0xAABBCCDD and sr.ntp_timestamp == 0xE000000080000000
    assert (sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (90000, 10, 14000)
    (block,) = sr.reports
    assert block == ReportBlock(0x01020304, 25, -2, 0x00010005, 42, 0x12345678, 65536)
    assert sr.serialize() == data


def test_compound_rr_sdes_bye() -> None:
    # RR with no blocks (2 words), SDES CNAME "hello" (3 words + header), BYE with reason "done".
    rr = b"\x80\xc9\x00\x01" + struct.pack("!I", 7)
    sdes = b"\x81\xca\x00\x03" + struct.pack("!I", 7) + b"\x01\x05hello\x00"
    bye = b"\x81\xcb\x00\x03" + struct.pack("!I", 7) + b"\x04done" + b"\x00\x00\x00"
    packets = parse_rtcp(rr + sdes + bye)
    assert packets == [
        ReceiverReport(7),
        SourceDescription([SdesChunk(7, [(1, b"hello")])]),
        Bye([7], "done"),
    ]
    assert isinstance(packets[1], SourceDescription) and packets[1].chunks[0].cname == "hello"
    assert serialize_rtcp(packets) == rr + sdes + bye
    assert SourceDescription.with_cname(7, "hello").serialize() == sdes


def test_rtcp_unknown_type_and_padding_kept() -> None:
    app = b"\xa2\xcc\x00\x03" + b"\x00\x00\x00\x07" + b"name" + b"\x00\x00\x00\x04"
    (packet,) = parse_rtcp(app)
    assert packet == UnknownRtcp(204, 2, b"\x00\x00\x00\x07name")


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\xc8\x00\x06" + bytes(8),  # length runs past the datagram
        b"\x80\xc8\x00\x01" + bytes(4),  # SR without sender info
        b"\x81\xc9\x00\x01" + bytes(4),  # RR claims one block
        b"\x81\xca\x00\x02" + bytes(4) + b"\x01\x09ab",  # SDES item too long
        b"\x82\xcb\x00\x01" + bytes(4),  # BYE claims two sources
        b"\x40\xc9\x00\x01" + bytes(4),  # version 1
        b"\x80\xc9\x00\x01" + bytes(4) + b"\x80",  # trailing byte
    ],
)
def test_rtcp_rejects_malformed(data: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtcp(data)


report_blocks = st.builds(
    ReportBlock,
    ssrc=st.integers(0, 2**32 - 1),
    fraction_lost=st.integers(0, 255),
    packets_lost=st.integers(-(2**23), 2**23 - 1),
    highest_sequence=st.integers(0, 2**32 - 1),
    jitter=st.integers(0, 2**32 - 1),
    last_sr=st.integers(0, 2**32 - 1),
    delay_since_last_sr=st.integers(0, 2**32 - 1),
)
words = st.binary(max_size=16).map(lambda b: b[: len(b) // 4 * 4])
rtcp_packets = st.one_of(
    st.builds(
        SenderReport,
        ssrc=st.integers(0, 2**32 - 1),
        ntp_timestamp=st.integers(0, 2**64 - 1),
        rtp_timestamp=st.integers(0, 2**32 - 1),
        packet_count=st.integers(0, 2**32 - 1),
        octet_count=st.integers(0, 2**32 - 1),
        reports=st.lists(report_blocks, max_size=31),
        profile_extension=words,
    ),
    st.builds(
        ReceiverReport,
        ssrc=st.integers(0, 2**32 - 1),
        reports=st.lists(report_blocks, max_size=31),
        profile_extension=words,
    ),
    st.builds(
        SourceDescription,
        chunks=st.lists(
            st.builds(
                SdesChunk,
                ssrc=st.integers(0, 2**32 - 1),
                items=st.lists(st.tuples(st.integers(1, 255), st.binary(max_size=255)), max_size=4),
            ),
            max_size=31,
        ),
    ),
    st.builds(
        Bye,
        sources=st.lists(st.integers(0, 2**32 - 1), max_size=31),
        reason=st.none() | st.text(max_size=60),
    ),
)


@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_rtcp_compound_round_trip(packets: list[RtcpPacket]) -> None:
    assert parse_rtcp(serialize_rtcp(packets)) == packets


def test_ntp_timestamp() -> None:
    # 1970-01-01 is 2,208,988,800 s after the NTP epoch; half a second is 2**31 in the fraction.
    assert ntp_timestamp(0.5) == (2_208_988_800 << 32) | (1 << 31)

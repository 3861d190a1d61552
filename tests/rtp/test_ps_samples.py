"""Every real PS/RTP sample in tests/fixtures/media demuxes, with facts checked against the bytes by hand.

Timestamps below were decoded by hand from the PES headers quoted next to them
(PTS = bits 3..1 of byte 0 << 30 | bytes 1-2 >> 1 << 15 | bytes 3-4 >> 1).
"""

from __future__ import annotations

import struct

import pytest
from wire import FIXTURES, needs_fixture

from gbgw.rtp.elementary import AccessUnit, StreamType
from gbgw.rtp.framing import Rfc4571Deframer
from gbgw.rtp.packet import RtpPacket
from gbgw.rtp.ps import PsDemuxer

MEDIA = FIXTURES / "media"
PACKETS = MEDIA / "rtp_packets"
MPG = MEDIA / "fri_SIPStandardDebug_Audio_G711_PS2.mpg"


def _demux_chunks(data: bytes, chunk: int) -> tuple[list[AccessUnit], PsDemuxer]:
    demuxer = PsDemuxer()
    units: list[AccessUnit] = []
    for pos in range(0, len(data), chunk):
        units += demuxer.feed(data[pos : pos + chunk])
    units += demuxer.close()
    return units, demuxer


@needs_fixture(MPG)
@pytest.mark.parametrize("chunk", [1400, 61])
def test_official_tool_g711a_file(chunk: int) -> None:
    data = MPG.read_bytes()
    units, demuxer = _demux_chunks(data, chunk)
    stats = demuxer.stats
    # Start-code counts in the file (PROVENANCE; also data.count(b"\0\0\1\xba") etc.).
    assert (stats.packs, stats.system_headers, stats.stream_maps) == (7982, 320, 320)
    assert stats.pes_packets == 35353 and stats.errors == 0 and stats.skipped_bytes == 0
    # Every map declares elementary_stream_map_length 8 for 14 bytes of entries.
    assert stats.stream_map_repairs == 320
    # Map entries: 1b e0 00 06 (+ ISO 639 "eng" descriptor), 90 c0 00 00.
    assert demuxer.stream_types == {0xE0: StreamType.H264, 0xC0: StreamType.G711A}
    assert len(units) == 35353
    assert all(u.stream_id == 0xC0 and u.stream_type == StreamType.G711A for u in units)
    assert all(u.complete and not u.keyframe for u in units)
    # First PES at 0x3c: 84 c0 0a | 31 02 ab f5 e1 | 11 02 ab d9 c1 -> PTS 11205360, DTS 11201760.
    assert (units[0].pts, units[0].dts) == (11205360, 11201760)
    # 10 ms of 8 kHz A-law per PES, except two MPEG-1-syntax PES at 0x1ca and 0x27a
    # (37 4f fd 4c 85 / 37 4f fd 5b 49) carrying 160 bytes of A-law silence (0xd5/0x55).
    assert sum(len(u.data) == 80 for u in units) == 35351
    long_units = [u for u in units if len(u.data) == 160]
    assert [u.pts for u in long_units] == [3556714050, 3556715940]
    assert all(set(u.data) <= {0xD5, 0x55} for u in long_units)


def test_hikvision_keyframe_packet_with_counter_stuffing() -> None:
    # Pack stuffing "ff ff 00 00 a0 05" (6 bytes, counter inside), "HK" descriptors in the map,
    # PES for SPS (with PTS 21 1a 1b 93 25), PPS, SEI and the start of an IDR slice (length 0x3562).
    packet = RtpPacket.parse(
        (PACKETS / "srs_utest_kernel2_L26_KernelPSTest_PsPacketDecodeNormal.rtp.bin").read_bytes()
    )
    demuxer = PsDemuxer()
    assert demuxer.feed(packet.payload) == []
    assert demuxer.stream_types == {0xE0: StreamType.H264, 0xC0: StreamType.AAC}
    assert demuxer.flush() == []  # the IDR PES is still open
    (unit,) = demuxer.close()
    assert demuxer.stats.errors == 0 and demuxer.stats.packs == 1 and demuxer.stats.pes_packets == 4
    assert unit.stream_type == StreamType.H264 and unit.pts == 109496722 and unit.dts is None
    assert unit.keyframe and not unit.complete
    assert unit.data.startswith(b"\x00\x00\x00\x01\x67\x4d\x00\x1e")
    assert b"\x00\x00\x00\x01\x68\xee\x3c\x80" in unit.data
    assert b"\x00\x00\x00\x01\x06\xe5\x01\xba\x80" in unit.data  # SEI containing "01 ba": not a pack
    assert unit.data.endswith(b"\x00\x00\x00\x01\x65")


def test_hikvision_ps_payload_split_at_every_position() -> None:
    # The packet behind SRS's "Invalid PS header" TCP-reassembly bug: any split must parse alike.
    data = (
        PACKETS / "srs_utest_gb28181_L1735_KernelPSTest_PsPacketDecodeInvalidStartCode.ps.bin"
    ).read_bytes()
    results = []
    for cut in range(len(data) + 1):
        demuxer = PsDemuxer()
        units = demuxer.feed(data[:cut]) + demuxer.feed(data[cut:]) + demuxer.close()
        assert demuxer.stats.errors == 0
        results.append([(u.pts, u.data, u.complete) for u in units])
    assert all(r == results[0] for r in results)
    (pts, unit_data, complete) = results[0][0]
    # PES 8c 80 0a | 25 8a 6d 81 35 ... ; map: 1b e0 (H.264), 0f c0 (AAC).
    assert pts == 2728083610 and not complete
    assert unit_data.startswith(b"\x00\x00\x00\x01\x67\x4d\x00\x32")


@pytest.mark.parametrize(
    "name",
    [
        "srs_utest_gb28181_L1633_KernelPSTest_PsPacketDecodeRegularMessage.rtp.bin",
        "srs_utest_gb28181_L1667_KernelPSTest_PsPacketDecodeRegularMessage2.rtp.bin",
    ],
)
def test_captured_aac_audio_packet(name: str) -> None:
    packet = RtpPacket.parse((PACKETS / name).read_bytes())
    demuxer = PsDemuxer()
    (unit,) = demuxer.feed(packet.payload)  # audio is returned as soon as its PES is complete
    # PES 00 00 01 c0 00 6e 8c 80 07 | 25 8a 6d a9 fd | ff f8: 0x6e - 3 - 7 = 100 payload bytes.
    assert unit.stream_id == 0xC0 and unit.stream_type is None  # no stream map in this packet
    assert unit.pts == 2728088830 and unit.complete and len(unit.data) == 100
    # The payload is one ADTS frame whose own aac_frame_length field says 100.
    assert unit.data[:2] == b"\xff\xf9"
    assert ((unit.data[3] & 3) << 11) | (unit.data[4] << 3) | (unit.data[5] >> 5) == 100


def test_corrupted_pes_is_counted_not_raised() -> None:
    # An RTP header was spliced in right after "00 00 01 c0": the flags byte 0x7c is neither MPEG-2
    # nor a valid MPEG-1 header, so the demuxer drops everything until a pack header.
    data = (
        PACKETS / "srs_utest_gb28181_L1697_KernelPSTest_PsPacketDecodeRegularMessage3.ps.bin"
    ).read_bytes()
    demuxer = PsDemuxer()
    assert demuxer.feed(data) + demuxer.close() == []
    assert demuxer.stats.errors == 1 and demuxer.stats.pes_packets == 0


def test_private_stream_skipped_by_its_length() -> None:
    private = (
        PACKETS / "srs_utest_gb28181_L1943_KernelPSTest_PsPacketDecodePrivateStream.ps.bin"
    ).read_bytes()
    assert private[3] == 0xBD and struct.unpack_from("!H", private, 4)[0] == len(private) - 6
    audio = RtpPacket.parse(
        (PACKETS / "srs_utest_gb28181_L1633_KernelPSTest_PsPacketDecodeRegularMessage.rtp.bin").read_bytes()
    ).payload
    demuxer = PsDemuxer()
    units = demuxer.feed(private[:50]) + demuxer.feed(private[50:] + bytes(audio))
    assert [u.pts for u in units] == [2728088830]
    assert demuxer.stats.skipped_packets == 1 and demuxer.stats.errors == 0


def test_truncated_private_stream_sample() -> None:
    # This one is cut short in SRS's test (PES length 0x6a, 100 bytes stored): nothing to output,
    # nothing wrong yet, the demuxer is still skipping the last 6 bytes.
    private = (PACKETS / "srs_utest_kernel2_L84_KernelPSTest_PsPacketDecodeNormal.ps.bin").read_bytes()
    demuxer = PsDemuxer()
    assert demuxer.feed(private) + demuxer.close() == []
    assert demuxer.stats.skipped_packets == 1 and demuxer.stats.errors == 0


def test_hikvision_tcp_capture_ten_packets() -> None:
    demuxer = PsDemuxer()
    units: list[AccessUnit] = []
    raw = (PACKETS / "lal_unpack_test_goldenRtpList.rfc4571.bin").read_bytes()
    packets = [RtpPacket.parse(p) for p in Rfc4571Deframer().feed(raw)]
    for packet in packets:
        units += demuxer.feed(packet.payload)
        if packet.marker:
            units += demuxer.flush()
    assert demuxer.stats.errors == 0
    # Two P-frames (seq 0-3 and 4-8, markers on 3 and 8), sent before any stream map.
    first, second = units
    assert first.stream_type is None and second.stream_type is None
    assert not first.keyframe and first.complete and second.complete
    assert second.pts is not None and first.pts is not None
    assert second.pts - first.pts == 3600 == packets[4].timestamp - packets[0].timestamp
    # First PES: 00 00 01 e0 11 02 8c 80 09 -> 0x1102 - 3 - 9 bytes of H.264 starting with a slice.
    assert len(first.data) == 0x1102 - 3 - 9 and first.data.startswith(b"\x00\x00\x00\x01\x01")
    payload = bytes(packets[4].payload)
    pes_at = payload.index(b"\x00\x00\x01\xe0")
    assert len(second.data) == struct.unpack_from("!H", payload, pes_at + 4)[0] - 3 - payload[pes_at + 8]
    # Seq 291 starts a keyframe whose map names H.264 and G.711U (1b e0 ..., 91 c0 ...).
    assert demuxer.stream_types == {0xE0: StreamType.H264, 0xC0: StreamType.G711U}
    (third,) = demuxer.close()
    assert third.keyframe and not third.complete and third.stream_type == StreamType.H264
    assert third.data.startswith(b"\x00\x00\x00\x01\x67\x4d\x00\x2a")

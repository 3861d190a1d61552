"""PS muxer layout (Annex C), mux -> RTP -> demux round trips, loss recovery and hostile input."""

from __future__ import annotations

import random
import re
import struct
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from gbgw.rtp.elementary import AccessUnit, StreamType
from gbgw.rtp.packet import RtpPacket
from gbgw.rtp.packetizer import PsRtpPacketizer
from gbgw.rtp.ps import PsDemuxer, PsMuxer, _crc32_mpeg2

SC4 = b"\x00\x00\x00\x01"


def _escape(body: bytes) -> bytes:
    """H.264 emulation prevention, so random bytes form a valid NAL unit payload."""
    return re.sub(rb"\x00\x00(?=[\x00-\x03])", b"\x00\x00\x03", body) + b"\x80"


def _nal(nal_header: int, size: int, seed: int) -> bytes:
    return SC4 + bytes((nal_header,)) + _escape(random.Random(seed).randbytes(size))


def _nal265(nal_type: int, size: int, seed: int) -> bytes:
    return SC4 + bytes((nal_type << 1, 0x01)) + _escape(random.Random(seed).randbytes(size))


IDR = SC4 + b"\x67\x42\x00\x1e" + SC4 + b"\x68\xce\x3c\x80" + _nal(0x65, 3000, 1)
P_FRAME = _nal(0x41, 500, 2)


def test_crc32_mpeg2_check_value() -> None:
    # The catalogued check value of CRC-32/MPEG-2 for "123456789".
    assert _crc32_mpeg2(b"123456789") == 0x0376E6E7


def test_keyframe_pack_layout() -> None:
    muxer = PsMuxer(video=StreamType.H264, audio=StreamType.G711A)
    pack = muxer.mux_video(IDR, pts=90000)
    assert pack[:4] == b"\x00\x00\x01\xba" and pack[13] & 0x07 == 0
    assert pack[14:18] == b"\x00\x00\x01\xbb"
    system_end = 20 + struct.unpack_from("!H", pack, 18)[0]
    # The system header lists 0xE0 and 0xC0 (3 bytes each after 6 fixed bytes).
    assert pack[system_end - 6] == 0xE0 and pack[system_end - 3] == 0xC0
    assert pack[system_end : system_end + 4] == b"\x00\x00\x01\xbc"
    psm_end = system_end + 6 + struct.unpack_from("!H", pack, system_end + 4)[0]
    psm = pack[system_end:psm_end]
    # Entries: stream_type, stream_id, es_info_length 0; then a CRC whose residue over the whole map is 0.
    assert psm[12:20] == bytes((0x1B, 0xE0, 0, 0, 0x90, 0xC0, 0, 0))
    assert _crc32_mpeg2(psm) == 0
    assert pack[psm_end : psm_end + 4] == b"\x00\x00\x01\xe0"
    # PES header: 84 80 05, then PTS 90000 = 0x15F90 in the '0010' marker-bit layout.
    assert pack[psm_end + 6 : psm_end + 14] == b"\x84\x80\x05\x21\x00\x05\xbf\x21"
    assert pack[psm_end + 14 :] == IDR


def test_non_keyframe_has_no_system_header_and_dts_when_different() -> None:
    pack = PsMuxer().mux_video(P_FRAME, pts=7200, dts=3600)
    assert pack[14:18] == b"\x00\x00\x01\xe0"
    assert pack[20:23] == b"\x84\xc0\x0a"
    # PTS 7200 (0x1C20) with prefix '0011', DTS 3600 (0xE10) with prefix '0001'.
    assert pack[23:33] == b"\x31\x00\x01\x38\x41" + b"\x11\x00\x01\x1c\x21"


def test_large_frame_split_into_pes_packets() -> None:
    frame = IDR + _nal(0x65, 150_000, 3)
    pack = PsMuxer().mux_video(frame, pts=0)
    positions = [m.start() for m in re.finditer(rb"\x00\x00\x01\xe0", pack)]
    lengths = [struct.unpack_from("!H", pack, p + 4)[0] for p in positions]
    assert len(positions) == 3 and all(n <= 0xFFFF for n in lengths)
    assert positions[1] == positions[0] + 6 + lengths[0] and positions[2] == positions[1] + 6 + lengths[1]
    assert pack[positions[1] + 6 : positions[1] + 9] == b"\x80\x00\x00"  # no timestamps after the first
    payload = b"".join(pack[p + 9 + pack[p + 8] : p + 6 + n] for p, n in zip(positions, lengths, strict=True))
    assert payload == frame


def test_audio_only_stream_repeats_its_stream_map() -> None:
    muxer = PsMuxer(video=None, audio=StreamType.G711U)
    packs = [muxer.mux_audio(bytes([0xFF - i]) * 160, 1800 * i) for i in range(60)]
    assert [i for i, p in enumerate(packs) if b"\x00\x00\x01\xbc" in p] == [0, 25, 50]
    demuxer = PsDemuxer()
    units = [u for p in packs for u in demuxer.feed(p)]
    assert [(u.stream_id, u.stream_type, u.pts) for u in units] == [
        (0xC0, StreamType.G711U, 1800 * i) for i in range(60)
    ]
    assert demuxer.stream_types == {0xC0: StreamType.G711U}


@dataclass
class Frame:
    video: bool
    data: bytes
    pts: int
    dts: int


@st.composite
def streams(draw: st.DrawFn) -> tuple[StreamType, StreamType, list[Frame]]:
    video_type = draw(st.sampled_from([StreamType.H264, StreamType.H265]))
    audio_type = draw(st.sampled_from([StreamType.G711A, StreamType.G711U, StreamType.AAC]))
    frames = []
    pts = draw(st.integers(0, 2**33 - 1))
    for _ in range(draw(st.integers(1, 12))):
        pts = (pts + draw(st.integers(1, 9000))) % 2**33
        if draw(st.booleans()):
            big = draw(st.integers(0, 9)) == 0
            size = draw(st.integers(70_000, 140_000) if big else st.integers(0, 3000))
            if video_type == StreamType.H264:
                kind = draw(st.sampled_from([0x65, 0x41, 0x01]))
                prefix = SC4 + b"\x67\x42\x00\x1e" if kind == 0x65 and draw(st.booleans()) else b""
                data = prefix + _nal(kind, size, draw(st.integers(0, 2**32)))
            else:
                kind = draw(st.sampled_from([19, 1]))  # IDR_W_RADL, TRAIL_R
                data = _nal265(kind, size, draw(st.integers(0, 2**32)))
            dts = (pts - draw(st.sampled_from([0, 0, 3600, 7200]))) % 2**33
            frames.append(Frame(True, data, pts, dts))
        else:
            data = draw(st.binary(min_size=1, max_size=800))
            frames.append(Frame(False, data, pts, pts))
    return video_type, audio_type, frames


def _expected(
    video_type: StreamType, audio_type: StreamType, frames: list[Frame]
) -> list[tuple[object, ...]]:
    """What the demuxer must return, derived from the input, not from the muxer's output."""
    out = []
    seen_map = False
    for f in frames:
        if f.video:
            key = (f.data[4] & 0x1F in (5, 7)) if video_type == StreamType.H264 else f.data[4] >> 1 == 19
            seen_map = seen_map or key
            stream_type = video_type if seen_map else None
            out.append((0xE0, stream_type, f.pts, None if f.dts == f.pts else f.dts, key, f.data, True))
        else:
            out.append((0xC0, audio_type if seen_map else None, f.pts, None, False, f.data, True))
    return out


def _as_tuple(u: AccessUnit) -> tuple[object, ...]:
    return (u.stream_id, u.stream_type, u.pts, u.dts, u.keyframe, u.data, u.complete)


@settings(max_examples=60, deadline=None)
@given(streams(), st.integers(100, 3000), st.integers(0, 0xFFFF))
def test_mux_rtp_demux_round_trip(
    case: tuple[StreamType, StreamType, list[Frame]], mtu: int, seq: int
) -> None:
    video_type, audio_type, frames = case
    muxer = PsMuxer(video=video_type, audio=audio_type)
    packetizer = PsRtpPacketizer(ssrc=0x0BEBC265, mtu=mtu, first_sequence=seq)
    demuxer = PsDemuxer()
    units: list[AccessUnit] = []
    expected_seq = seq
    for f in frames:
        pack = muxer.mux_video(f.data, f.pts, f.dts) if f.video else muxer.mux_audio(f.data, f.pts)
        for raw in packetizer.packetize(pack, f.pts):
            packet = RtpPacket.parse(raw)
            assert packet.sequence == expected_seq and len(raw) <= mtu
            assert packet.timestamp == f.pts & 0xFFFFFFFF
            expected_seq = (expected_seq + 1) & 0xFFFF
            units += demuxer.feed(packet.payload)
            if packet.marker:
                units += demuxer.flush()
    units += demuxer.close()
    assert [_as_tuple(u) for u in units] == _expected(video_type, audio_type, frames)
    assert demuxer.stats.errors == 0


def _video_stream(sizes: list[int]) -> tuple[list[bytes], list[list[bytes]]]:
    muxer = PsMuxer()
    packetizer = PsRtpPacketizer(ssrc=1, mtu=600)
    frames = [IDR if i % 10 == 0 else _nal(0x41, size, i) for i, size in enumerate(sizes)]
    return frames, [
        packetizer.packetize(muxer.mux_video(f, 3600 * i), 3600 * i) for i, f in enumerate(frames)
    ]


@given(st.integers(1, 18), st.data(), st.booleans())
def test_lost_packet_damages_only_its_frame(lost_frame: int, data: st.DataObject, announce: bool) -> None:
    frames, packets = _video_stream([300 + 97 * i for i in range(20)])
    lost_index = data.draw(st.integers(0, len(packets[lost_frame]) - 1))
    resume_at = (
        (lost_frame, lost_index + 1) if lost_index + 1 < len(packets[lost_frame]) else (lost_frame + 1, 0)
    )
    demuxer = PsDemuxer()
    units: list[AccessUnit] = []
    for i, frame_packets in enumerate(packets):
        for j, raw in enumerate(frame_packets):
            if (i, j) == (lost_frame, lost_index):
                continue
            if announce and (i, j) == resume_at:
                # What the relay does when the reorder window skips a gap.
                units += demuxer.discontinuity()
            packet = RtpPacket.parse(raw)
            units += demuxer.feed(packet.payload)
            if packet.marker:
                units += demuxer.flush()
    units += demuxer.close()
    by_pts = {u.pts: u for u in units if u.complete}
    for i, frame in enumerate(frames):
        if i != lost_frame:
            assert by_pts[3600 * i].data == frame, i
    assert 3600 * lost_frame not in by_pts


def test_pack_header_inside_video_pes_ends_it() -> None:
    # A PES length corrupted upwards: the next frame's pack header shows up inside the payload.
    frames, packets = _video_stream([800, 800, 800])
    first = bytearray(b"".join(bytes(RtpPacket.parse(p).payload) for p in packets[1]))
    pes_at = first.index(b"\x00\x00\x01\xe0")
    first[pes_at + 4 : pes_at + 6] = b"\xff\xf0"
    demuxer = PsDemuxer()
    units = demuxer.feed(b"".join(bytes(RtpPacket.parse(p).payload) for p in packets[0]))
    units += demuxer.feed(bytes(first))
    for raw in packets[2]:
        units += demuxer.feed(RtpPacket.parse(raw).payload)
    units += demuxer.close()
    assert [(u.pts, u.complete) for u in units] == [(0, True), (3600, False), (7200, True)]
    assert units[1].data == frames[1] and units[2].data == frames[2]
    assert demuxer.stats.errors == 1


@given(st.binary(max_size=3000), st.lists(st.integers(1, 500), max_size=10))
def test_garbage_never_raises(data: bytes, cuts: list[int]) -> None:
    demuxer = PsDemuxer()
    pos = 0
    for cut in cuts:
        demuxer.feed(data[pos : pos + cut])
        pos += cut
    demuxer.feed(data[pos:])
    demuxer.flush()
    demuxer.discontinuity()
    demuxer.close()


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=20))
def test_corrupted_stream_never_raises_and_recovers(flips: list[tuple[int, int]]) -> None:
    # Six small frames get corrupted; eight 12 kB frames follow. Whatever the corruption turned into
    # (a PES length of up to 64 kB included), the demuxer is back in step for the last two.
    frames, packets = _video_stream([500] * 6 + [12_000] * 8)
    stream = bytearray(b"".join(bytes(RtpPacket.parse(p).payload) for fp in packets[:6] for p in fp))
    for offset, value in flips:
        stream[offset % len(stream)] = value
    demuxer = PsDemuxer()
    units = demuxer.feed(bytes(stream))
    for frame_packets in packets[6:]:
        for raw in frame_packets:
            units += demuxer.feed(RtpPacket.parse(raw).payload)
        units += demuxer.flush()
    units += demuxer.close()
    by_pts = {u.pts: u.data for u in units if u.complete}
    assert by_pts.get(3600 * 12) == frames[12] and by_pts.get(3600 * 13) == frames[13]


def _unbounded(pack: bytes) -> bytes:
    """The same pack with PES_packet_length 0 (allowed for video in TS, sent by some PS muxers too)."""
    assert pack[14:18] == b"\x00\x00\x01\xe0"
    return pack[:18] + b"\x00\x00" + pack[20:]


@given(st.lists(st.integers(1, 400), max_size=30))
def test_unbounded_video_pes_runs_to_next_start_code(cuts: list[int]) -> None:
    muxer = PsMuxer()
    frames = [_nal(0x41, 700, i) for i in range(3)]
    stream = b"".join(_unbounded(muxer.mux_video(f, 3600 * i)) for i, f in enumerate(frames))
    demuxer = PsDemuxer()
    units: list[AccessUnit] = []
    pos = 0
    for cut in cuts:
        units += demuxer.feed(stream[pos : pos + cut])
        pos += cut
    units += demuxer.feed(stream[pos:]) + demuxer.close()
    assert [(u.pts, u.data, u.complete) for u in units] == [(3600 * i, f, True) for i, f in enumerate(frames)]
    assert demuxer.stats.errors == 0


def test_mpeg1_pack_header_and_zero_stuffing_tolerated() -> None:
    pack = PsMuxer().mux_video(P_FRAME, 3600)
    # MPEG-1 pack header: '0010' SCR(33) markers, mux rate; 12 bytes in all.
    mpeg1_pack = b"\x00\x00\x01\xba\x21\x00\x01\x00\x01\x80\x00\x01"
    stream = mpeg1_pack + pack[14:] + b"\x00\x00\x00\x00" + pack
    demuxer = PsDemuxer()
    units = demuxer.feed(stream) + demuxer.close()
    assert [u.data for u in units] == [P_FRAME, P_FRAME]
    assert demuxer.stats.errors == 0 and demuxer.stats.skipped_bytes == 4 and demuxer.stats.packs == 2


def test_oversized_unit_dropped_and_counted() -> None:
    muxer = PsMuxer()
    demuxer = PsDemuxer(max_unit_size=2000)
    big, small = _nal(0x41, 5000, 1), _nal(0x41, 500, 2)
    units = demuxer.feed(muxer.mux_video(big, 0) + muxer.mux_video(small, 3600)) + demuxer.close()
    assert [u.data for u in units] == [small]
    assert demuxer.stats.errors == 1

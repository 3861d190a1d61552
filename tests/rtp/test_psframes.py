"""PS over RTP back to H.264 access units: `PsFrameAssembler` on streams built by our own muxer and
packetiser from an H.264 file FFmpeg makes at test time (libx264, 25 fps, GOP 25, no B-frames)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gbgw.rtp.elementary import StreamType, is_keyframe, iter_access_units
from gbgw.rtp.packet import RtpPacket
from gbgw.rtp.packetizer import PsRtpPacketizer
from gbgw.rtp.ps import PsMuxer
from gbgw.rtp.psframes import PsFrameAssembler

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg)")


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    path = tmp_path_factory.mktemp("psframes") / "out.h264"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
         "-t", "2", "-c:v", "libx264", "-g", "25", "-bf", "0", "-f", "h264", str(path)],
        check=True,
        timeout=60,
    )  # fmt: skip
    return list(iter_access_units(Path(path).read_bytes(), StreamType.H264))


def ps_rtp(units: list[bytes], *, mtu: int = 1400, private: bool = False) -> list[bytes]:
    """Camera-like PS over RTP; ``private`` adds a Hikvision-style private stream (0xBD) to every pack."""
    muxer = PsMuxer(StreamType.H264)
    packetizer = PsRtpPacketizer(0x1234, 96, mtu, 65500)
    packets: list[bytes] = []
    for index, unit in enumerate(units):
        pack = muxer.mux_video(unit, 90_000 + 3600 * index)
        if private:
            # Inserted after the pack header (14 bytes), before the system header or PES.
            pack = pack[:14] + b"\x00\x00\x01\xbd\x00\x06" + b"\xff" * 6 + pack[14:]
        packets += packetizer.packetize(pack, 90_000 + 3600 * index)
    return packets


def test_every_access_unit_comes_back_with_its_timestamp_and_keyframe_flag(units: list[bytes]) -> None:
    assembler = PsFrameAssembler()
    frames = [frame for packet in ps_rtp(units) for frame in assembler.push(packet)]
    assert [frame.data for frame in frames] == units
    assert [frame.timestamp for frame in frames] == [90_000 + 3600 * i for i in range(len(units))]
    assert [frame.keyframe for frame in frames] == [is_keyframe(unit, StreamType.H264) for unit in units]
    assert sum(frame.keyframe for frame in frames) == 2
    assert all(frame.complete and frame.video and frame.stream_type == StreamType.H264 for frame in frames)
    assert assembler.video_type == StreamType.H264
    assert assembler.stats.sequence_gaps == 0 and assembler.stats.frames == len(units)


def test_private_streams_small_packets_and_no_marker_bits(units: list[bytes]) -> None:
    """Private streams are skipped; frames split into 200-byte packets and devices that never set the
    marker bit (the frame then ends at the next timestamp) still give every unit back."""
    packets = []
    for raw in ps_rtp(units, mtu=200, private=True):
        packet = RtpPacket.parse(raw)
        packet.marker = False
        packets.append(packet.serialize())
    assembler = PsFrameAssembler()
    frames = [frame for packet in packets for frame in assembler.push(packet)]
    frames += assembler.close()
    assert [frame.data for frame in frames] == units
    assert assembler.demux_stats.skipped_packets == len(units)


def test_joining_mid_gop_gives_nothing_typed_until_the_keyframe(units: list[bytes]) -> None:
    packets = ps_rtp(units)
    start = next(i for i, p in enumerate(packets) if RtpPacket.parse(p).timestamp == 90_000 + 3600 * 5)
    assembler = PsFrameAssembler()
    frames = [frame for packet in packets[start:] for frame in assembler.push(packet)]
    first_key = next(i for i, frame in enumerate(frames) if frame.keyframe)
    assert all(frame.stream_type is None for frame in frames[:first_key])
    assert [frame.data for frame in frames[first_key:]] == units[25:]


def test_a_lost_packet_marks_its_frame_incomplete_and_the_next_frames_are_clean(units: list[bytes]) -> None:
    packets = ps_rtp(units, mtu=500)
    ts = [RtpPacket.parse(p).timestamp for p in packets]
    assert ts.count(90_000) >= 3
    # The keyframe loses its second packet (in the middle of its PES), frame 4 is lost whole.
    lost = {1, ts.index(90_000 + 3600 * 4)}
    assert ts.count(90_000 + 3600 * 4) == 1
    assembler = PsFrameAssembler()
    frames = [frame for i, packet in enumerate(packets) if i not in lost for frame in assembler.push(packet)]
    assert assembler.stats.sequence_gaps == 2
    by_ts = {frame.timestamp: frame for frame in frames}
    assert 90_000 not in by_ts or not by_ts[90_000].complete
    assert 90_000 + 3600 * 4 not in by_ts
    rest = [i for i in range(1, len(units)) if i != 4]
    assert [by_ts[90_000 + 3600 * i].data for i in rest] == [units[i] for i in rest]
    assert all(by_ts[90_000 + 3600 * i].complete for i in rest)


def test_the_frame_buffer_is_reused_not_reallocated(units: list[bytes]) -> None:
    assembler = PsFrameAssembler()
    for packet in ps_rtp(units):
        assembler.push(memoryview(packet))
    buffer = assembler._buffer
    for packet in ps_rtp(units):
        assembler.push(packet)
    assert assembler._buffer is buffer


def test_oversized_frames_are_dropped_and_counted(units: list[bytes]) -> None:
    assembler = PsFrameAssembler(max_frame_size=2000)
    frames = [frame for packet in ps_rtp(units) for frame in assembler.push(packet)]
    assert assembler.stats.oversized >= 1
    assert all(len(frame.data) <= 2000 for frame in frames)


def test_short_and_bad_packets_are_counted_not_raised() -> None:
    assembler = PsFrameAssembler()
    assert assembler.push(b"\x80\x60\x00") == []
    # Padding bit set with a padding count longer than the packet.
    assert assembler.push(b"\xa0\x60\x00\x01" + b"\x00" * 8 + b"\xff") == []
    assert assembler.stats.malformed == 2

"""End to end against FFmpeg, an independent implementation: our PS must decode in ffprobe, and
FFmpeg's own RTP H.264 packetiser must be readable by our depacketiser."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from gbgw.rtp.elementary import AccessUnit, StreamType, is_keyframe, iter_access_units, iter_nal_units
from gbgw.rtp.framing import Rfc4571Deframer, frame
from gbgw.rtp.packet import RtpPacket
from gbgw.rtp.packetizer import H264RtpDepacketizer, PsRtpPacketizer
from gbgw.rtp.ps import PsDemuxer, PsMuxer
from gbgw.rtp.reorder import ReorderWindow

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="needs ffmpeg/ffprobe (Debian package ffmpeg; tests/run.sh installs it)",
)

FIRST_PTS = 90_000  # 1 s, so ffprobe's start_time checks our timestamp encoding


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, StreamType]]:
    tmp = tmp_path_factory.mktemp("clips")
    source = ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "2"]
    _ffmpeg(*source, "-c:v", "libx264", "-bsf:v", "h264_mp4toannexb", "-f", "h264", str(tmp / "out.h264"))
    _ffmpeg(
        *source, "-c:v", "libx265", "-x265-params", "log-level=error", "-f", "hevc", str(tmp / "out.h265")
    )
    # Noise makes every frame larger than one PES (65,535 bytes), so splitting is exercised too.
    _ffmpeg(
        *["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25,noise=alls=100:allf=t+u", "-frames:v", "10"],
        *["-c:v", "libx264", "-preset", "ultrafast", "-qp", "20", "-f", "h264", str(tmp / "noisy.h264")],
    )
    # Raw .h264 carries no timestamps, so FFmpeg's RTP output gets them from an MPEG-TS copy.
    _ffmpeg(*source, "-c:v", "libx264", "-f", "mpegts", str(tmp / "rtp_source.ts"))
    _ffmpeg("-i", str(tmp / "rtp_source.ts"), "-c", "copy", "-f", "h264", str(tmp / "rtp_source.h264"))
    return {
        "rtp_source": (tmp / "rtp_source.ts", StreamType.H264),
        "h264": (tmp / "out.h264", StreamType.H264),
        "hevc": (tmp / "out.h265", StreamType.H265),
        "noisy": (tmp / "noisy.h264", StreamType.H264),
    }


def _ffprobe(path: Path) -> dict[str, object]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    (stream,) = json.loads(result.stdout)["streams"]
    return stream


def _mux(units: list[bytes], codec: StreamType) -> list[bytes]:
    muxer = PsMuxer(video=codec)
    return [muxer.mux_video(unit, FIRST_PTS + 3600 * i) for i, unit in enumerate(units)]


@pytest.mark.parametrize(
    ("clip", "codec_name", "frames"), [("h264", "h264", 50), ("hevc", "hevc", 50), ("noisy", "h264", 10)]
)
def test_ffprobe_decodes_our_ps(
    clips: dict[str, tuple[Path, StreamType]], tmp_path: Path, clip: str, codec_name: str, frames: int
) -> None:
    path, codec = clips[clip]
    data = path.read_bytes()
    units = list(iter_access_units(data, codec))
    assert len(units) == frames and b"".join(units) == data
    assert is_keyframe(units[0], codec)
    packs = _mux(units, codec)
    if clip == "noisy":
        assert all(len(u) > 0xFFFF for u in units)
    ps_file = tmp_path / f"{clip}.ps"
    ps_file.write_bytes(b"".join(packs))
    stream = _ffprobe(ps_file)
    assert stream["codec_name"] == codec_name
    assert (stream["width"], stream["height"]) == (320, 240)
    assert int(str(stream["nb_read_frames"])) == frames
    assert float(str(stream["start_time"])) == pytest.approx(FIRST_PTS / 90_000)


def _demux(payloads: list[tuple[bytes | memoryview, bool]]) -> list[AccessUnit]:
    demuxer = PsDemuxer()
    units: list[AccessUnit] = []
    for payload, marker in payloads:
        units += demuxer.feed(payload)
        if marker:
            units += demuxer.flush()
    units += demuxer.close()
    assert demuxer.stats.errors == 0
    return units


@pytest.mark.parametrize("clip", ["h264", "hevc", "noisy"])
def test_rtp_udp_and_tcp_paths_give_back_the_same_units(
    clips: dict[str, tuple[Path, StreamType]], clip: str
) -> None:
    path, codec = clips[clip]
    units = list(iter_access_units(path.read_bytes(), codec))
    packetizer = PsRtpPacketizer(ssrc=0x0BEBC265, first_sequence=65000)
    packets = [
        p
        for i, pack in enumerate(_mux(units, codec))
        for p in packetizer.packetize(pack, FIRST_PTS + 3600 * i)
    ]
    rng = random.Random(clip)

    # UDP: packets arrive shuffled within a few positions and go through the reorder window.
    keys = [i + rng.uniform(0, 6) if i else -1.0 for i in range(len(packets))]
    window: ReorderWindow[RtpPacket] = ReorderWindow()
    ordered: list[RtpPacket] = []
    for i in sorted(range(len(packets)), key=keys.__getitem__):
        packet = RtpPacket.parse(packets[i])
        ordered += window.push(packet.sequence, packet, 0.0)
    ordered += window.flush()
    assert window.stats.reordered > 0 and window.stats.lost == 0
    udp_units = _demux([(p.payload, p.marker) for p in ordered])

    # TCP: RFC 4571 frames, read in arbitrary chunk sizes.
    stream = b"".join(frame(p) for p in packets)
    deframer = Rfc4571Deframer()
    received: list[bytes] = []
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, 5000)
        received += deframer.feed(stream[pos : pos + step])
        pos += step
    tcp_units = _demux([(p.payload, p.marker) for p in map(RtpPacket.parse, received)])

    for demuxed in (udp_units, tcp_units):
        assert [u.data for u in demuxed] == units
        assert [u.pts for u in demuxed] == [FIRST_PTS + 3600 * i for i in range(len(units))]
        assert demuxed[0].keyframe and demuxed[0].stream_type == codec
        assert all(u.complete for u in demuxed)


def _packet_pts(path: Path) -> list[int]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=pts", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [int(line.strip().strip(",")) for line in result.stdout.split() if line.strip().strip(",")]


def test_ffmpeg_rtp_h264_depacketised_and_remuxed(
    clips: dict[str, tuple[Path, StreamType]], tmp_path: Path
) -> None:
    source, _ = clips["rtp_source"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        # Payload type 98 as GB/T 28181 C.2.2 suggests; a small packet size forces FU-A.
        _ffmpeg(
            "-i",
            str(source),
            "-c",
            "copy",
            "-f",
            "rtp",
            "-payload_type",
            "98",
            f"rtp://127.0.0.1:{port}?pkt_size=1000",
        )
        sock.setblocking(False)
        datagrams = []
        while True:
            try:
                datagrams.append(sock.recv(65536))
            except BlockingIOError:
                break
    packets = [RtpPacket.parse(d) for d in datagrams]
    nal_kinds = {p.payload[0] & 0x1F for p in packets}
    assert {24, 28} <= nal_kinds  # FFmpeg sent STAP-A and FU-A, not just single NAL units
    depacketizer = H264RtpDepacketizer()
    units: list[AccessUnit] = []
    for packet in packets:
        assert packet.payload_type == 98
        units += depacketizer.push(packet)
    units += depacketizer.flush()
    assert depacketizer.stats.sequence_gaps == 0

    original = list(iter_access_units(source.with_suffix(".h264").read_bytes(), StreamType.H264))
    assert len(units) == len(original) == 50

    def nals(data: bytes) -> list[bytes]:
        return [data[a:b] for a, b in iter_nal_units(data)]

    assert [nals(u.data) for u in units] == [nals(o) for o in original]
    assert units[0].keyframe and all(u.complete for u in units)
    # RTP timestamps are the presentation times in decode order (B-frames), offset by a random base.
    pts = _packet_pts(source)
    assert [(u.pts or 0) - (units[0].pts or 0) for u in units] == [p - pts[0] for p in pts]

    muxer = PsMuxer()
    ps_file = tmp_path / "from_rtp.ps"
    ps_file.write_bytes(b"".join(muxer.mux(u) for u in units))
    stream = _ffprobe(ps_file)
    assert stream["codec_name"] == "h264" and int(str(stream["nb_read_frames"])) == 50

"""The WebRTC egress end to end: an aiortc WHEP client offers recvonly, `WhepViewers` answers, a camera-like
PS/RTP stream goes over loopback UDP into a `RelayEngine` ingest, and the client decodes the H.264 the
gateway passed through (no transcoding). Also the refusals: bad offers, too many viewers, H.265."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("aiortc")
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from gbgw.gb28181.webrtc import (
    ViewerEnd,
    WebrtcConfig,
    WhepError,
    WhepFailure,
    WhepViewers,
    check_offer,
    host_addresses,
)
from gbgw.rtp.elementary import StreamType, iter_access_units
from gbgw.rtp.packetizer import PsRtpPacketizer
from gbgw.rtp.ps import PsMuxer
from gbgw.rtp.relay import Ingest, IngestConfig, RelayEngine

HOST = "127.0.0.1"
PORTS = "46600-46799"
FPS = 25


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg (Debian package ffmpeg)")
    path = tmp_path_factory.mktemp("webrtc") / "out.h264"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}",
         "-t", "3", "-c:v", "libx264", "-g", "25", "-bf", "0", "-f", "h264", str(path)],
        check=True,
        timeout=60,
    )  # fmt: skip
    return list(iter_access_units(Path(path).read_bytes(), StreamType.H264))


def ps_rtp_frames(units: list[bytes], codec: StreamType = StreamType.H264) -> list[list[bytes]]:
    muxer = PsMuxer(codec)
    packetizer = PsRtpPacketizer(0x5566, 96, 1400)
    return [packetizer.packetize(muxer.mux_video(unit, 3600 * i), 3600 * i) for i, unit in enumerate(units)]


@pytest.fixture
async def engine() -> AsyncIterator[RelayEngine]:
    relay = RelayEngine(asyncio.get_running_loop(), bind_host=HOST, ports=PORTS)
    yield relay
    relay.close()


@pytest.fixture
async def viewers() -> AsyncIterator[WhepViewers]:
    whep = WhepViewers(asyncio.get_running_loop(), WebrtcConfig(addresses=[HOST], max_viewers=2))
    yield whep
    await whep.close_all()


async def client_offer() -> RTCPeerConnection:
    """A WHEP player: recvonly video, candidates on loopback (aioice leaves loopback out by itself)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    with host_addresses([HOST]):
        await pc.setLocalDescription(await pc.createOffer())
    return pc


class Camera:
    def __init__(self, ingest: Ingest) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.target = (HOST, ingest.local_port)

    async def play(self, frames: list[list[bytes]]) -> None:
        start = time.monotonic()
        for index, packets in enumerate(frames):
            delay = start + index / FPS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for packet in packets:
                self.sock.sendto(packet, self.target)

    def close(self) -> None:
        self.sock.close()


async def test_a_whep_client_decodes_the_passed_through_h264(
    units: list[bytes], engine: RelayEngine, viewers: WhepViewers
) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    camera = Camera(ingest)
    frames = ps_rtp_frames(units)
    pc = await client_offer()
    offer_sdp = pc.localDescription.sdp
    assert ("H264/90000" in offer_sdp) and check_offer(offer_sdp).sendable
    answer = await viewers.offer(ingest, offer_sdp, channel="34020000001320000001")
    assert "a=candidate:" in answer.sdp and f" {HOST} " in answer.sdp
    assert "a=sendonly" in answer.sdp and "VP8" not in answer.sdp and "profile-level-id=42" in answer.sdp
    assert all(" 127.0.0.1 " in line for line in answer.sdp.splitlines() if line.startswith("a=candidate:"))
    decoded: list[tuple[int, int]] = []
    tracks: list[object] = []
    pc.on("track", tracks.append)
    await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    async with asyncio.timeout(8):
        while pc.connectionState != "connected" or not tracks:
            await asyncio.sleep(0.02)
    track = tracks[0]

    async def receive() -> None:
        while True:
            try:
                frame = await track.recv()  # type: ignore[attr-defined]
            except MediaStreamError:
                return
            decoded.append((frame.width, frame.height))

    receiver = asyncio.create_task(receive())
    cpu = time.process_time()
    await camera.play(frames)
    async with asyncio.timeout(3):
        while len(decoded) < len(frames):
            await asyncio.sleep(0.05)
            if len(decoded) >= 0.9 * len(frames) and viewers.stats()[0].frames_sent == len(frames):
                await asyncio.sleep(0.3)
                break
    cpu = time.process_time() - cpu
    stats = viewers.stats()[0]
    assert stats.frames_sent == len(frames) and stats.frames_dropped == 0
    assert stats.state == "live" and stats.start_latency is not None
    assert len(decoded) >= 0.9 * len(frames), (len(decoded), len(frames))
    assert set(decoded) == {(320, 240)}
    print(f"decoded {len(decoded)}/{len(frames)}; process CPU {cpu:.2f} s over {len(frames) / FPS:.1f} s "
          "(gateway, client and its decoder together)")  # fmt: skip

    session = viewers.sessions[answer.session_id]
    await viewers.close(answer.session_id)
    assert session.ended is ViewerEnd.CLOSED and not ingest.outputs and len(viewers) == 0
    with pytest.raises(WhepError) as unknown:
        await viewers.close(answer.session_id)
    assert unknown.value.status == 404
    receiver.cancel()
    await pc.close()
    camera.close()


async def test_a_viewer_joining_a_running_stream_starts_on_its_keyframe(
    units: list[bytes], engine: RelayEngine, viewers: WhepViewers
) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    camera = Camera(ingest)
    frames = ps_rtp_frames(units)
    first = await client_offer()
    answer = await viewers.offer(ingest, first.localDescription.sdp)
    await camera.play(frames[:30])
    second = await client_offer()
    joined = await viewers.offer(ingest, second.localDescription.sdp)
    track = viewers.sessions[joined.session_id].track
    # Frames 25-29: the second GOP so far, replayed from the feed's cache, starting on the keyframe.
    assert track.frames_in == 5 and len(track._queue) == 5 and track._queue[0].keyframe
    assert len(ingest.outputs) == 1
    await viewers.close(answer.session_id)
    assert len(ingest.outputs) == 1
    await viewers.close(joined.session_id)
    assert not ingest.outputs
    for pc in (first, second):
        await pc.close()
    camera.close()


async def test_refusals_map_to_their_http_status(
    units: list[bytes], engine: RelayEngine, viewers: WhepViewers
) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    cases = {
        "": 400,
        "hello": 400,
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n": 400,
    }
    for sdp, status in cases.items():
        with pytest.raises(WhepError) as refused:
            await viewers.offer(ingest, sdp)
        assert refused.value.status == status and refused.value.reason
    pc = await client_offer()
    offer = pc.localDescription.sdp
    vp8_only = "\r\n".join(
        line for line in offer.split("\r\n") if "H264" not in line and "profile-level-id" not in line
    )
    with pytest.raises(WhepError) as no_h264:
        await viewers.offer(ingest, vp8_only)
    assert no_h264.value.failure is WhepFailure.NO_H264 and no_h264.value.status == 406
    answers = [await viewers.offer(ingest, (await client_offer()).localDescription.sdp) for _ in range(2)]
    with pytest.raises(WhepError) as full:
        await viewers.offer(ingest, offer)
    assert full.value.status == 503 and full.value.failure is WhepFailure.TOO_MANY_VIEWERS
    for answer in answers:
        await viewers.close(answer.session_id)
    assert len(viewers) == 0 and not ingest.outputs
    await pc.close()


async def test_an_h265_channel_is_refused_with_the_reason(engine: RelayEngine, viewers: WhepViewers) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    camera = Camera(ingest)
    vps = b"\x00\x00\x00\x01\x40\x01\x0c\x01" + b"\x00\x00\x00\x01\x26\x01\xaf" + b"\x11" * 400
    await camera.play(ps_rtp_frames([vps], StreamType.H265))
    async with asyncio.timeout(2):
        while not ingest.stats.packets:
            await asyncio.sleep(0.01)
    pc = await client_offer()
    with pytest.raises(WhepError) as refused:
        await viewers.offer(ingest, pc.localDescription.sdp)
    assert refused.value.failure is WhepFailure.H265_UNSUPPORTED and refused.value.status == 406
    assert "H.265 in WebRTC not supported by this browser" in refused.value.reason
    assert not ingest.outputs and len(viewers) == 0
    await pc.close()
    camera.close()

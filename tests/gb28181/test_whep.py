"""WHEP over HTTP against a real gateway: an aiortc client offers recvonly to
``/api/devices/{d}/channels/{c}/whep``, a simulated camera streams real H.264 (High profile) as PS over RTP,
the client decodes what the gateway passed through. DELETE ends the viewer and, after ``idle_timeout``,
the device leg. A recorded range (``?start=&end=``) plays the same way on a playback session of its own,
seeks through the session's control API, and stops with the viewer. An H.265 camera is refused with the
reason, or transcoded to H.264 with ``console.transcode_h265``. And the refusals: malformed offer 400, too
many viewers 503, no token 401.

Preview start times are printed (run with -s), not asserted: they depend on the machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("aiortc")
from access_harness import RunningGateway
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from gwproc import merge_config
from whep_harness import (
    CHANNEL,
    FPS,
    HEIGHT,
    SDP,
    TOKEN_CONFIG,
    TOKENS,
    WIDTH,
    ConsoleRig,
    console_rig,
    h264_profile,
    have_ffmpeg,
    make_clip,
)

from gbgw.conformance.simulator.media import MediaOptions
from gbgw.gb28181.webrtc import host_addresses

pytestmark = pytest.mark.skipif(not have_ffmpeg(), reason="needs ffmpeg/ffprobe (Debian package ffmpeg)")

COLLECT = 3.0
IDLE = 0.5
"""media.idle_timeout: how long the device leg outlives its last receiver."""


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_clip(tmp_path_factory.mktemp("whep"))
    assert h264_profile(path) == "High"
    return path


@pytest.fixture
async def rig_factory(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], clip: Path
) -> AsyncIterator[Callable[..., Awaitable[ConsoleRig]]]:
    rigs: list[ConsoleRig] = []

    async def make(console: dict[str, Any] | None = None) -> ConsoleRig:
        config = merge_config(TOKEN_CONFIG, {"media": {"ports": "31000-31999", "idle_timeout": IDLE},
                                             "console": console or {}})
        rig = await console_rig(await gateway_factory(config), TOKENS["operator"])
        rigs.append(rig)
        await rig.camera(MediaOptions(file=clip, fps=FPS))
        return rig

    yield make
    for rig in rigs:
        await rig.close()


async def client_offer() -> RTCPeerConnection:
    """A WHEP player: recvonly video, its candidates on loopback (aioice leaves loopback out by itself)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    with host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    return pc


class Player:
    """What the client decoded: (monotonic time, width, height) per frame."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.frames: list[tuple[float, int, int]] = []
        self.task: asyncio.Task[None] | None = None
        pc.on("track", self._track)

    def _track(self, track: MediaStreamTrack) -> None:
        self.task = asyncio.get_running_loop().create_task(self._receive(track))

    async def _receive(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.frames.append((time.monotonic(), frame.width, frame.height))  # type: ignore[union-attr]

    async def first_frame(self, timeout: float = 8.0) -> float:
        async with asyncio.timeout(timeout):
            while not self.frames:
                await asyncio.sleep(0.01)
        return self.frames[0][0]

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        await self.pc.close()


async def watch(rig: ConsoleRig) -> tuple[Player, str, float]:
    """Offer, answer, and the time the offer was POSTed."""
    pc = await client_offer()
    player = Player(pc)
    started = time.monotonic()
    status, headers, answer = await rig.offer(pc.localDescription.sdp)
    assert status == 201, answer
    assert headers["Content-Type"] == SDP
    location = headers["Location"]
    assert location.startswith(rig.whep_path() + "/")
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    return player, location, started


async def test_a_whep_client_decodes_the_live_channel_and_delete_ends_it(
    rig_factory: Callable[..., Awaitable[ConsoleRig]],
) -> None:
    rig = await rig_factory()
    live = rig.gateway.gateway.live
    player, location, started = await watch(rig)
    try:
        first = await player.first_frame()
        print(f"\nWHEP offer -> first decoded frame, cold (INVITE included): {(first - started) * 1000:.0f} ms")
        await asyncio.sleep(COLLECT)
        window = [f for f in player.frames if f[0] - first <= COLLECT]
        expected = COLLECT * FPS
        assert len(window) >= 0.9 * expected, (len(window), expected)
        assert {(w, h) for _, w, h in player.frames} == {(WIDTH, HEIGHT)}
        status, viewers = await rig.call("/api/webrtc/viewers")
        assert status == 200 and len(viewers) == 1
        (viewer,) = viewers
        assert viewer["channel"] == CHANNEL and viewer["state"] == "live" and viewer["frames_dropped"] == 0
        assert viewer["frames_sent"] >= len(player.frames) and viewer["bitrate_kbps"] > 0
        assert location.endswith("/" + viewer["id"])
        print(f"decoded {len(window)} frames in {COLLECT:g} s ({expected:.0f} sent by the camera); "
              f"{viewer['bitrate_kbps']:.0f} kbit/s")
        samples = rig.metrics.registry.get_sample_value
        assert samples("gb_webrtc_viewers") == 1 and samples("gb_webrtc_preview_start_seconds_count") == 1

        async with rig.gateway.http.delete(rig.url + location, headers=rig.auth()) as r:
            assert r.status == 200
        assert len(rig.viewers) == 0 and (await rig.call("/api/webrtc/viewers"))[1] == []
        async with rig.gateway.http.delete(rig.url + location, headers=rig.auth()) as r:
            assert r.status == 404
        # The device leg outlives its last receiver by idle_timeout, then the camera gets its BYE.
        sim = rig.simulators[0]
        await rig.gateway.wait_for(lambda: _true(not live.streams and not sim.calls), IDLE + 3,
                                   "the device leg to end")
    finally:
        await player.close()


async def _true(value: bool) -> bool:
    return value


async def test_a_viewer_of_a_running_channel_joins_its_stream_and_starts_fast(
    rig_factory: Callable[..., Awaitable[ConsoleRig]],
) -> None:
    rig = await rig_factory()
    first_player, _, _ = await watch(rig)
    try:
        await first_player.first_frame()
        await asyncio.sleep(0.5)
        second, _, started = await watch(rig)
        try:
            first = await second.first_frame()
            print(f"\nWHEP offer -> first decoded frame, channel already streaming: {(first - started) * 1000:.0f} ms")
            await asyncio.sleep(1.0)
            assert {(w, h) for _, w, h in second.frames} == {(WIDTH, HEIGHT)}
            # One device leg for both viewers.
            assert len(rig.gateway.gateway.live.streams) == 1 and len(rig.simulators[0].calls) == 1
            assert len(rig.viewers) == 2
        finally:
            await second.close()
    finally:
        await first_player.close()


async def test_refusals_name_their_reason_and_wake_no_camera(
    rig_factory: Callable[..., Awaitable[ConsoleRig]],
) -> None:
    rig = await rig_factory({"max_viewers": 1})
    sim = rig.simulators[0]
    pc = await client_offer()
    offer = pc.localDescription.sdp
    try:
        for bad in ("", "hello", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"):
            status, _, body = await rig.offer(bad)
            assert status == 400 and "malformed SDP offer" in body, (status, body)
        status, _, body = await rig.offer(offer, content_type="application/json")
        assert status == 415 and "application/sdp" in body
        status, _, body = await rig.offer(offer, path=rig.whep_path(channel="34020000001310009999"))
        assert status == 404
        # A malformed offer is refused before the device is INVITEd.
        assert not sim.calls and not rig.gateway.gateway.live.streams

        status, _, body = await rig.offer(offer, headers={"Authorization": ""})
        assert status == 401, body
        status, _, body = await rig.offer(offer, headers=rig.auth(TOKENS["viewer"]))
        assert status == 403, body

        player, _, _ = await watch(rig)
        try:
            other = await client_offer()
            status, _, body = await rig.offer(other.localDescription.sdp)
            assert status == 503 and "too many viewers" in body and "max_viewers is 1" in body
            await other.close()
        finally:
            await player.close()
    finally:
        await pc.close()


def _range(seconds: float, ago: float = 3600.0) -> str:
    """``?start=&end=`` of a recorded range ``ago`` seconds back, as ISO 8601 with the local offset."""
    start = (datetime.now().astimezone() - timedelta(seconds=ago)).replace(microsecond=0)
    return f"?start={quote(start.isoformat())}&end={quote((start + timedelta(seconds=seconds)).isoformat())}"


async def test_a_whep_client_plays_back_a_recorded_range_seeks_and_delete_stops_the_playback(
    rig_factory: Callable[..., Awaitable[ConsoleRig]],
) -> None:
    rig = await rig_factory()
    sim = rig.simulators[0]
    pc = await client_offer()
    player = Player(pc)
    started = time.monotonic()
    status, headers, answer = await rig.offer(pc.localDescription.sdp, path=rig.whep_path() + _range(60))
    assert status == 201, answer
    playback = headers["X-Playback-Session"]
    assert playback.startswith("playback-")
    try:
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        first = await player.first_frame()
        print(f"\nWHEP playback offer -> first decoded frame (INVITE s=Playback included): "
              f"{(first - started) * 1000:.0f} ms")
        await asyncio.sleep(COLLECT)
        window = [f for f in player.frames if f[0] - first <= COLLECT]
        assert len(window) >= 0.9 * COLLECT * FPS, len(window)
        assert {(w, h) for _, w, h in player.frames} == {(WIDTH, HEIGHT)}
        status, viewers = await rig.call("/api/webrtc/viewers")
        assert [v["playback"] for v in viewers] == [playback]

        status, session = await rig.call(f"/api/sessions/{playback}")
        assert status == 200 and session["kind"] == "playback" and session["receiver"] is None
        assert session["position"] < 10
        status, session = await rig.call(f"/api/sessions/{playback}/control", "POST",
                                         json={"action": "seek", "position": 40})
        assert status == 200, session
        assert 40 <= session["position"] < 41
        before = len(player.frames)
        await asyncio.sleep(1.0)
        # Frames after the seek decode too: their PTS jumped 40 s, the viewer's stamps did not.
        assert len(player.frames) - before >= 0.8 * FPS
        status, session = await rig.call(f"/api/sessions/{playback}")
        assert session["position"] >= 40.5 and session["state"] == "streaming"

        async with rig.gateway.http.delete(rig.url + headers["Location"], headers=rig.auth()) as r:
            assert r.status == 200
        status, session = await rig.call(f"/api/sessions/{playback}")
        assert session["state"] == "ended" and session["reason"] == "stopped"
        await rig.gateway.wait_for(lambda: _true(not sim.calls), 3, "the playback's BYE")
    finally:
        await player.close()


async def test_a_playback_range_is_checked_before_the_device_is_invited(
    rig_factory: Callable[..., Awaitable[ConsoleRig]],
) -> None:
    rig = await rig_factory()
    pc = await client_offer()
    try:
        for query, reason in (("?start=2025-01-01T10:00:00%2B08:00", "both start and end"),
                              ("?start=yesterday&end=today", "not an ISO 8601 time"),
                              ("?start=2025-01-01T10:00:00&end=2025-01-01T11:00:00", "has no offset")):
            status, _, body = await rig.offer(pc.localDescription.sdp, path=rig.whep_path() + query)
            assert status == 400 and reason in body, (status, body)
        assert not rig.simulators[0].calls
    finally:
        await pc.close()


@pytest.mark.parametrize("transcode", [False, True])
async def test_an_h265_channel_is_refused_with_the_reason_or_transcoded_to_h264(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], tmp_path: Path, transcode: bool,
) -> None:
    clip = make_clip(tmp_path, 2, codec="h265")
    config = merge_config(TOKEN_CONFIG, {"media": {"ports": "31000-31999", "idle_timeout": IDLE},
                                         "console": {"transcode_h265": transcode}})
    rig = await console_rig(await gateway_factory(config), TOKENS["operator"])
    await rig.camera(MediaOptions(file=clip, fps=FPS, codec="h265"))
    try:
        pc = await client_offer()
        player = Player(pc)
        status, _, answer = await rig.offer(pc.localDescription.sdp)
        try:
            if not transcode:
                assert status == 406, answer
                assert "H.265 in WebRTC not supported" in answer and "console.transcode_h265" in answer
                return
            assert status == 201, answer
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            first = await player.first_frame(12)
            await asyncio.sleep(2.0)
            window = [f for f in player.frames if f[0] - first <= 2.0]
            print(f"\nH.265 transcoded to H.264: {len(window)} frames decoded in 2 s")
            assert len(window) >= 0.8 * 2.0 * FPS
            assert {(w, h) for _, w, h in player.frames} == {(WIDTH, HEIGHT)}
        finally:
            await player.close()
    finally:
        await rig.close()

"""Sub-streams: a play names the camera stream it wants, the INVITE offers it in each vendor's form, two
viewers of different streams are two device legs, and an upper's choice is passed down."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from access_harness import PASSWORD, RunningGateway
from media_harness import Sink

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import MediaOptions
from gbgw.gb28181.cascade.media import parse_offer
from gbgw.gb28181.media.substreams import offer_attributes, parse_stream, requested_stream
from gbgw.sip.sdp import SessionDescription

DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg)")


def test_stream_values() -> None:
    assert [parse_stream(v) for v in (None, "main", "SUB", "third", 0, 1, "2")] == [None, 0, 1, 2, 0, 1, 2]
    for bad in ("hd", -1, 10, True, "1.5"):
        with pytest.raises(ValueError, match="main, sub, third or a number"):
            parse_stream(bad)


def test_offer_carries_each_vendor_form() -> None:
    assert offer_attributes(None) == []
    assert offer_attributes(1) == [("streamnumber", "1"), ("stream", "1"), ("streamprofile", "1"),
                                   ("streamMode", "SUB")]
    assert offer_attributes(0, ("streamMode",)) == [("streamMode", "MAIN")]
    assert offer_attributes(2, ("streamMode", "streamnumber")) == [("streamMode", "SUB2"), ("streamnumber", "2")]


def upper_offer(*attributes: tuple[str, str]) -> bytes:
    return SessionDescription.offer("Play", "34020000002000000002", "10.1.0.9", 40000, "RTP/AVP",
                                    ((96, "PS", 90000),), "0100000001", attributes=attributes).serialize()


@pytest.mark.parametrize(("attributes", "expected"), [
    ((), None),
    ((("streamnumber", "1"),), 1),
    ((("stream", "2"),), 2),
    ((("streamprofile", "0"),), 0),
    ((("streamMode", "SUB"),), 1),
    ((("streamMode", "MAIN"),), 0),
    ((("streamnumber", "x"),), None),
])
def test_the_uppers_choice_is_read_in_any_form(attributes: tuple[tuple[str, str], ...], expected: int | None) -> None:
    assert parse_offer(upper_offer(*attributes), "10.1.0.9").substream == expected
    assert requested_stream(SessionDescription.parse(upper_offer(*attributes)).media) == expected


@pytest.fixture
async def camera(gateway: RunningGateway, tmp_path: Path) -> AsyncIterator[DeviceSimulator]:
    clip = tmp_path / "clip.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-t", "1", "-g", "25", "-bf", "0", "-c:v", "libx264", "-f", "h264", str(clip)],
                   check=True, timeout=60)
    sim = DeviceSimulator(SimulatorConfig(server_host="127.0.0.1", server_port=gateway.sip_port, password=PASSWORD,
                                          media=MediaOptions(file=clip, codec="h264", fps=25)))
    await sim.start()
    await sim.wait_registered(timeout=5)

    async def channel_known() -> bool:
        status, channels = await gateway.api(f"/api/devices/{DEVICE}/channels")
        return status == 200 and any(c["id"] == CHANNEL for c in channels)

    await gateway.wait_for(channel_known, 5, "the camera's catalog")
    yield sim
    await sim.stop(unregister=False, timeout=1)


async def play(gateway: RunningGateway, body: dict[str, Any]) -> tuple[int, Any]:
    url = f"{gateway.api_url}/api/devices/{DEVICE}/channels/{CHANNEL}/play"
    async with gateway.http.post(url, json=body) as response:
        return response.status, await response.json()


@needs_ffmpeg
async def test_two_sub_streams_are_two_device_legs(gateway: RunningGateway, camera: DeviceSimulator) -> None:
    sinks = [await Sink.open("udp") for _ in range(3)]
    try:
        status, main = await play(gateway, {**sinks[0].request(), "stream": "main"})
        assert status == 200, main
        status, sub = await play(gateway, {**sinks[1].request(), "stream": "sub"})
        assert status == 200, sub
        status, joined = await play(gateway, {**sinks[2].request(), "stream": 1})
        assert status == 200, joined
        offered = sorted((c.offered_stream for c in camera.calls.values()), key=lambda o: o["streamnumber"])
        assert offered == [
            {"streamnumber": "0", "stream": "0", "streamprofile": "0", "streamMode": "MAIN"},
            {"streamnumber": "1", "stream": "1", "streamprofile": "1", "streamMode": "SUB"},
        ]
        assert set(gateway.gateway.live.streams) == {(DEVICE, CHANNEL, 0), (DEVICE, CHANNEL, 1)}
        for sink in sinks:
            await sink.first_packet()
        status, answer = await play(gateway, {**sinks[0].request(), "stream": "hd"})
        assert status == 400 and "stream must be" in answer["error"]
    finally:
        for sink in sinks:
            await sink.close()


@needs_ffmpeg
@pytest.mark.parametrize("gateway", [{"media": {"substream_attributes": ["streamprofile"]}}], indirect=True)
async def test_the_offered_forms_are_configurable(gateway: RunningGateway, camera: DeviceSimulator) -> None:
    sink = await Sink.open("udp")
    try:
        status, session = await play(gateway, {**sink.request(), "stream": "sub"})
        assert status == 200, session
        (call,) = camera.calls.values()
        assert call.offered_stream == {"streamprofile": "1"}
    finally:
        await sink.close()

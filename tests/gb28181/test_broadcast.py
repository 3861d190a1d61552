"""Voice broadcast end to end: a WAV given to the API reaches a simulated camera as G.711 A-law RTP after
Notify/Broadcast and the camera's audio INVITE; FFmpeg (an independent decoder) must read what arrived."""

from __future__ import annotations

import json
import math
import shutil
import socket
import struct
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from access_harness import PASSWORD, RunningGateway
from aiohttp import web
from wire import free_port

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.gb28181.app.api import broadcast as broadcast_api
from gbgw.gb28181.app.api.common import SERVICES, answer_errors
from gbgw.gb28181.devices.control import DeviceControl
from gbgw.gb28181.media.broadcast import (
    AudioError,
    VoiceBroadcasts,
    alaw_encode,
    resample,
    rtp_packets,
    wav_to_alaw,
)

DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="needs ffmpeg/ffprobe (Debian package ffmpeg)")


def wav(samples: list[int], rate: int = 8000, channels: int = 1, tag: int = 1, bits: int = 16,
        data: bytes | None = None) -> bytes:
    body = data if data is not None else struct.pack(f"<{len(samples)}h", *samples)
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_alaw_matches_g711() -> None:
    # The G.711 reference values at zero, the extremes and a segment edge.
    assert alaw_encode([0, -1, 32767, -32768, 256]) == bytes([0xD5, 0x55, 0xAA, 0x2A, 0xC5])


def test_wav_forms() -> None:
    tone = [int(8000 * math.sin(i / 5)) for i in range(16000)]
    assert len(wav_to_alaw(wav(tone, 16000))) == 8000
    assert len(wav_to_alaw(wav(tone, 16000, channels=2))) == 4000
    assert wav_to_alaw(wav([], tag=6, bits=8, data=b"\xd5" * 80)) == b"\xd5" * 80
    assert wav_to_alaw(wav([], tag=7, bits=8, data=b"\xff" * 8)) == b"\xd5" * 8  # µ-law silence
    assert resample([0, 100], 16000) == [0]
    for bad, why in ((b"not a wav", "not a WAV"), (wav([], tag=6, bits=8, rate=16000, data=b"x"), "8000 Hz"),
                     (wav([], bits=8, data=b"x"), "16-bit PCM")):
        with pytest.raises(AudioError, match=why):
            wav_to_alaw(bad)


def test_packets_are_20_ms_of_pcma() -> None:
    packets = rtp_packets(b"\xd5" * 400, ssrc=7)
    assert [len(p) for p in packets] == [172, 172, 92]
    assert packets[0][1] == 0x88 and packets[1][1] == 0x08
    assert struct.unpack("!HI", packets[2][2:8]) == (2, 320)


@pytest.fixture
async def rig(gateway: RunningGateway) -> AsyncIterator[tuple[RunningGateway, DeviceSimulator, str]]:
    """A camera registered; the broadcasts wired as the daemon wires them (INVITE and BYE of the device
    side, the API routes on an application of their own)."""
    gw = gateway.gateway
    assert gw.transport is not None
    broadcasts = VoiceBroadcasts(gateway.config.sip, gateway.config.media, gw.registry, gw.transport,
                                 DeviceControl(gw.devices.requests), gw.tasks)
    plain_bye = gw._on_bye
    gw.router.handle("INVITE", lambda txn: broadcasts.on_invite(txn) or gw.transport.reply(txn, 403))  # type: ignore[union-attr]
    gw.router.handle("BYE", lambda txn: broadcasts.on_bye(txn) or plain_bye(txn))
    runner = gw._runner
    assert runner is not None
    app = web.Application(middlewares=[answer_errors])
    app[SERVICES] = runner.app[SERVICES]
    app[broadcast_api.BROADCASTS] = broadcasts
    app.add_routes(broadcast_api.routes)
    api = web.AppRunner(app)
    await api.setup()
    port = free_port()
    await web.TCPSite(api, "127.0.0.1", port).start()
    sim = DeviceSimulator(SimulatorConfig(server_host="127.0.0.1", server_port=gateway.sip_port, password=PASSWORD))
    await sim.start()
    await sim.wait_registered(timeout=5)

    async def channel_known() -> bool:
        return gw.registry.channel(CHANNEL, DEVICE) is not None

    await gateway.wait_for(channel_known, 5, "the camera's catalog")
    yield gateway, sim, f"http://127.0.0.1:{port}"
    broadcasts.close()
    await sim.stop(unregister=False, timeout=1)
    await api.cleanup()


async def post_wav(gateway: RunningGateway, url: str, data: bytes, content_type: str = "audio/wav") -> Any:
    async with gateway.http.post(f"{url}/api/devices/{DEVICE}/channels/{CHANNEL}/broadcast", data=data,
                                 headers={"Content-Type": content_type}) as response:
        return response.status, await response.json()


@needs_ffmpeg
async def test_the_camera_receives_decodable_pcma(rig: tuple[RunningGateway, DeviceSimulator, str],
                                                  tmp_path: Path) -> None:
    gateway, sim, url = rig
    source = tmp_path / "speech.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=1.2",
                    "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", str(source)], check=True, timeout=60)
    status, session = await post_wav(gateway, url, source.read_bytes())
    assert status == 201, session
    assert session["channel_id"] == CHANNEL and session["seconds"] == pytest.approx(1.2, abs=0.01)

    async def ended() -> Any:
        async with gateway.http.get(f"{url}/api/broadcasts/{session['id']}") as response:
            body = await response.json()
        return body if body["state"] == "ended" else None

    final = await gateway.wait_for(ended, 10, "the broadcast to finish")
    assert final["ended"] == "finished" and final["packets_sent"] == 60
    (receiver,) = sim.broadcasts.values()
    await gateway.wait_for(lambda: _value(receiver.ended == "BYE received"), 5, "the gateway's BYE")
    assert receiver.payload_types == {8} and len(receiver.payloads) == 60
    received = receiver.save(tmp_path / "received.alaw")
    probe = subprocess.run(["ffprobe", "-v", "error", "-f", "alaw", "-ar", "8000", "-ac", "1", "-show_streams",
                            "-show_format", "-of", "json", str(received)], capture_output=True, check=True, timeout=30)
    info = json.loads(probe.stdout)
    assert info["streams"][0]["codec_name"] == "pcm_alaw"
    assert float(info["format"]["duration"]) == pytest.approx(1.2, abs=0.05)
    decoded = tmp_path / "decoded.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "alaw", "-ar", "8000", "-ac", "1", "-i",
                    str(received), str(decoded)], check=True, timeout=30)
    assert decoded.stat().st_size > 8000 * 2


async def test_tcp_when_the_device_asks(rig: tuple[RunningGateway, DeviceSimulator, str]) -> None:
    gateway, sim, url = rig
    sim.broadcast_tcp = True
    status, session = await post_wav(gateway, url, wav([2000, -2000] * 1600))  # 0.4 s
    assert status == 201, session
    assert session["transport"] == "tcp-active"
    (receiver,) = sim.broadcasts.values()
    await gateway.wait_for(lambda: _value(receiver.ended == "BYE received"), 5, "the gateway's BYE")
    assert len(receiver.payloads) == 20 and receiver.payload_types == {8}
    assert b"".join(receiver.payloads) == alaw_encode([2000, -2000] * 1600)


async def test_live_rtp_is_relayed(rig: tuple[RunningGateway, DeviceSimulator, str]) -> None:
    gateway, sim, url = rig
    async with gateway.http.post(f"{url}/api/devices/{DEVICE}/channels/{CHANNEL}/broadcast",
                                 json={"rtp": True}) as response:
        assert response.status == 201
        session = await response.json()
    assert session["live"] is True and session["input_port"]
    (receiver,) = sim.broadcasts.values()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n in range(10):
            header = struct.pack("!BBHII", 0x80, 8, 5000 + n, 99 + n * 160, 0xABCDEF)
            sender.sendto(header + bytes([n]) * 160, ("127.0.0.1", session["input_port"]))
        # Not A-law: not relayed.
        sender.sendto(struct.pack("!BBHII", 0x80, 0, 1, 1, 1) + b"\xff" * 160, ("127.0.0.1", session["input_port"]))
        await gateway.wait_for(lambda: _value(len(receiver.payloads) == 10), 5, "the relayed packets")
    finally:
        sender.close()
    assert receiver.payloads == [bytes([n]) * 160 for n in range(10)] and receiver.payload_types == {8}
    assert receiver.ssrcs != {0xABCDEF}
    async with gateway.http.delete(f"{url}/api/broadcasts/{session['id']}") as response:
        assert response.status == 200
    await gateway.wait_for(lambda: _value(receiver.ended == "BYE received"), 5, "the gateway's BYE")


async def test_stop_and_refusals(rig: tuple[RunningGateway, DeviceSimulator, str]) -> None:
    gateway, sim, url = rig
    status, body = await post_wav(gateway, url, b"x", "application/octet-stream")
    assert status == 415
    status, body = await post_wav(gateway, url, b"RIFF")
    assert status == 400 and "WAV" in body["error"]
    status, body = await post_wav(gateway, url, b'{"rtp": false}', "application/json")
    assert status == 400 and "rtp" in body["error"]
    status, session = await post_wav(gateway, url, wav([1000] * 80000))  # 10 s
    assert status == 201, session
    async with gateway.http.delete(f"{url}/api/broadcasts/{session['id']}") as response:
        assert response.status == 200
    (receiver,) = sim.broadcasts.values()
    await gateway.wait_for(lambda: _value(receiver.ended == "BYE received"), 5, "the gateway's BYE")
    async with gateway.http.delete(f"{url}/api/broadcasts/{session['id']}") as response:
        assert response.status == 404


async def _value(value: bool) -> bool:
    return value

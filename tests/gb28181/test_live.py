"""Live video end to end: a simulated camera streams real H.264/H.265 as PS over RTP, the gateway relays it,
a plain-socket sink receives it and FFmpeg's ffprobe (an independent decoder) must read it.

Contracts only: the gateway runs in-process (fixtures of conftest.py) and is driven through its HTTP API
and SIP; the device is `DeviceSimulator` driven through its Python API; the sink is plain sockets with its
own RTP and RFC 4571 parsing here, not the project's ``rtp`` package. Latencies are printed (run with -s),
not asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from access_harness import PASSWORD, RunningGateway
from gwproc import log_events
from media_harness import PACK_START, Sink, ffprobe, gaps, starts_keyframe

from gbgw.conformance.simulator.cli import add_arguments, config_from_args
from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import MediaCall, MediaOptions

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="needs ffmpeg/ffprobe (Debian package ffmpeg; tests/run.sh installs it)",
)

FPS = 25
COLLECT = 2.0
"""Seconds of stream each decode test collects after the first packet."""
FRAME_MARGIN = 3
"""Frames the decode count may fall short of the collection time's worth (timing at both ends)."""
# The simulator's first device and its first channel (type 131), as SimulatorConfig numbers them.
DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"
REQUESTED_SSRC = "0100000123"


# -- media files --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """2 s of 320x240 test pattern at 25 fps, one keyframe per second, no B-frames (as cameras encode)."""
    tmp = tmp_path_factory.mktemp("live-clips")
    source = ["-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}", "-t", "2", "-g", str(FPS), "-bf", "0"]
    encoders = {
        "h264": ["-c:v", "libx264", "-f", "h264"],
        "h265": ["-c:v", "libx265", "-x265-params", "log-level=error", "-f", "hevc"],
    }
    out = {}
    for codec, args in encoders.items():
        path = tmp / f"clip.{codec}"
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *source, *args, str(path)], check=True, timeout=60)
        out[codec] = path
    return out



# -- gateway and device ----------------------------------------------------------------------------------


@dataclass
class LiveRig:
    gateway: RunningGateway
    simulator: DeviceSimulator

    async def play(self, body: dict[str, Any], channel: str = CHANNEL) -> tuple[int, dict[str, Any]]:
        async with self.gateway.http.post(f"{self.gateway.api_url}/api/channels/{channel}/play", json=body) as r:
            return r.status, await r.json()

    async def session(self, session_id: str) -> tuple[int, Any]:
        return await self.gateway.api(f"/api/sessions/{session_id}")

    def call(self) -> MediaCall:
        (call,) = self.simulator.calls.values()
        return call


@pytest.fixture
async def rig_factory(
    gateway_factory: Callable[..., Awaitable[RunningGateway]],
) -> AsyncIterator[Callable[..., Awaitable[LiveRig]]]:
    """A gateway with the given media config and one simulated camera (one channel) registered to it,
    its catalog known to the gateway."""
    simulators: list[DeviceSimulator] = []

    async def make(media: MediaOptions, gateway_config: dict[str, Any] | None = None) -> LiveRig:
        gateway = await gateway_factory(gateway_config or {})
        simulator = DeviceSimulator(
            SimulatorConfig(server_host="127.0.0.1", server_port=gateway.sip_port, password=PASSWORD, media=media)
        )
        simulators.append(simulator)
        await simulator.start()
        await simulator.wait_registered(timeout=5)

        async def channel_known() -> bool:
            status, channels = await gateway.api(f"/api/devices/{DEVICE}/channels")
            return status == 200 and any(c["id"] == CHANNEL for c in channels)

        await gateway.wait_for(channel_known, 5, "the camera's catalog")
        return LiveRig(gateway, simulator)

    yield make
    for simulator in simulators:
        await simulator.stop(unregister=False, timeout=1)


def media_config(**media: Any) -> dict[str, Any]:
    return {"media": {"ports": "30000-30999", **media}}


# -- streams that must decode ------------------------------------------------------------------------------

MATRIX = [
    *[(codec, leg, "udp") for codec in ("h264", "h265") for leg in ("udp", "tcp-passive", "tcp-active")],
    ("h264", "udp", "tcp-active"),
    ("h264", "udp", "tcp-passive"),
]


@pytest.mark.parametrize(("codec", "device_leg", "output"), MATRIX)
async def test_relayed_stream_decodes(
    rig_factory: Callable[..., Awaitable[LiveRig]],
    clips: dict[str, Path],
    tmp_path: Path,
    codec: str,
    device_leg: str,
    output: str,
) -> None:
    rig = await rig_factory(MediaOptions(file=clips[codec], codec=codec, fps=FPS),
                            media_config(stream_transport=device_leg))
    sink = await Sink.open(output)
    try:
        started = time.monotonic()
        status, session = await rig.play(sink.request(REQUESTED_SSRC))
        assert status == 200, session
        assert session["transport"] == output and session["ssrc"] == REQUESTED_SSRC
        assert session["device"]["transport"] == device_leg
        if output == "tcp-passive":
            await sink.connect(session["local_port"])
        first = await sink.first_packet()
        print(f"\nplay -> first packet ({codec}, device {device_leg}, output {output}): "
              f"{(first - started) * 1000:.1f} ms")
        await asyncio.sleep(COLLECT)
        packets = sink.rtp()
        elapsed = sink.packets[-1][0] - first
    finally:
        await sink.close()

    assert {p.ssrc for p in packets} == {int(REQUESTED_SSRC)}
    assert {p.payload_type for p in packets} == {96}
    assert gaps(packets) == []
    assert starts_keyframe(packets[0].payload), packets[0].payload[:32].hex()
    ps = tmp_path / "relayed.ps"
    ps.write_bytes(b"".join(p.payload for p in packets))
    stream = ffprobe(ps)
    assert stream["codec_name"] == {"h264": "h264", "h265": "hevc"}[codec]
    assert (stream["width"], stream["height"]) == (320, 240)
    # Frames go out every 1/25 s from the device; the relay starts the sink on the cached keyframe, so it
    # gets at least what was sent while it listened.
    expected = int(elapsed * FPS) - FRAME_MARGIN
    assert int(stream["nb_read_frames"]) >= expected, (stream["nb_read_frames"], elapsed)
    # One RTP timestamp per frame, and the decoder saw as many frames as there were timestamps.
    assert len({p.timestamp for p in packets}) == int(stream["nb_read_frames"])


async def test_device_entry_chooses_the_device_leg_transport(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    """devices[].stream_transport overrides media.stream_transport for that device."""
    config = media_config(stream_transport="udp")
    config["devices"] = [{"id": DEVICE, "stream_transport": "tcp-active"}]
    rig = await rig_factory(MediaOptions(file=clips["h264"]), config)
    sink = await Sink.open("udp")
    try:
        status, session = await rig.play(sink.request())
        assert status == 200, session
        await sink.first_packet()
    finally:
        await sink.close()
    assert session["device"]["transport"] == "tcp-active"
    assert rig.call().role == "tcp-passive"  # the device listens, the gateway connects


# -- a device's bad habits ---------------------------------------------------------------------------------


async def test_loss_and_reordering_on_the_device_leg_show_in_session_stats(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    """Impairment injected by the device: each dropped packet is a lost one, each swapped pair a late
    packet the relay drops (it forwards as packets come); downstream numbering stays continuous."""
    # Small packets, so frames have several and a swap within a frame is possible in most of them.
    rig = await rig_factory(MediaOptions(file=clips["h264"], loss=0.08, reorder=0.1, seed=1234, mtu=200),
                            media_config())
    sink = await Sink.open("udp")
    try:
        status, session = await rig.play(sink.request())
        assert status == 200, session
        await sink.first_packet()
        await asyncio.sleep(COLLECT)
        call = rig.call()
        call.mute()
        await asyncio.sleep(0.2)
        _, stats = await rig.session(session["id"])
    finally:
        await sink.close()
    device = stats["device"]
    dropped, swapped = call.stats.dropped, call.stats.reordered
    assert dropped >= 3 and swapped >= 3, call.stats
    # A drop is only noticed when a later packet arrives: the very last one may go unnoticed.
    assert dropped - 1 <= device["lost"] <= dropped, (device, call.stats)
    # A packet swapped with the stream's very first one cannot be told from a duplicate: nothing before
    # it was seen.
    late, duplicate = device["dropped"].get("late", 0), device["dropped"].get("duplicate", 0)
    assert device["reordered"] == late and late + duplicate == swapped and duplicate <= 1, (device, call.stats)
    assert device["packets_in"] == call.stats.packets - swapped
    assert gaps(sink.rtp()) == []
    assert {p.ssrc for p in sink.rtp()} == {int(session["ssrc"])}


async def test_device_ignoring_the_offered_ssrc_still_plays(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"], ssrc=0), media_config())
    sink = await Sink.open("udp")
    try:
        status, session = await rig.play(sink.request(REQUESTED_SSRC))
        assert status == 200, session
        await sink.first_packet()
        await asyncio.sleep(0.5)
        assert rig.call().ssrc == 0
        # The receiver gets the SSRC it asked for, whatever the device sends.
        assert {p.ssrc for p in sink.rtp()} == {int(REQUESTED_SSRC)}
        assert gaps(sink.rtp()) == []
        # And the mismatch is visible to whoever investigates.
        _, shown = await rig.session(session["id"])
        assert shown["device"]["ssrc_received"] == "0000000000"
        assert shown["device"]["ssrc"] != shown["device"]["ssrc_received"]
    finally:
        await sink.close()


async def test_strict_ssrc_check_refuses_a_device_sending_another_ssrc(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"], ssrc=12345678),
                            media_config(ssrc_check=True, first_packet_timeout=1.0))
    sink = await Sink.open("udp")
    try:
        status, body = await rig.play(sink.request())
    finally:
        await sink.close()
    assert status == 502 and body["stage"] == "bad media", body
    assert "wrong ssrc" in body["error"]
    assert sink.packets == []
    await rig.gateway.wait_for(_value(lambda: rig.simulator.stats.byes_received == 1), 3, "the gateway's BYE")
    assert (await rig.gateway.api("/api/sessions"))[1] == []


# -- endings ----------------------------------------------------------------------------------------------


def _value(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def wrapped() -> bool:
        return check()

    return wrapped


async def test_device_bye_mid_stream_ends_the_session(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"]), media_config())
    sink = await Sink.open("udp")
    try:
        status, session = await rig.play(sink.request())
        assert status == 200, session
        await sink.first_packet()
        await asyncio.sleep(0.3)
        response = await rig.simulator.hang_up(rig.call().call_id)
        assert response is not None and response.status == 200
        status, _ = await rig.session(session["id"])
        assert status == 404
        assert (await rig.gateway.api("/api/sessions"))[1] == []
        count = len(sink.packets)
        await asyncio.sleep(0.3)
        assert len(sink.packets) == count, "packets relayed after the device's BYE"
    finally:
        await sink.close()
    # The device ended the dialog: the gateway must not BYE it again.
    assert rig.simulator.stats.byes_received == 0


async def test_device_hangs_up_when_its_media_duration_ends(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"], duration=0.6), media_config())
    sink = await Sink.open("udp")
    try:
        status, session = await rig.play(sink.request())
        assert status == 200, session

        async def ended() -> bool:
            return (await rig.session(session["id"]))[0] == 404

        await rig.gateway.wait_for(ended, 3, "the device's BYE to end the session")
    finally:
        await sink.close()
    assert rig.simulator.stats.byes_sent == 1 and rig.simulator.stats.byes_received == 0
    # 0.6 s at 25 fps, paced: about 15 frames, not the whole file at once.
    frames = len({p.timestamp for p in sink.rtp()})
    assert 12 <= frames <= 17, frames


def test_simulate_command_takes_media_options(clips: dict[str, Path]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--server", "127.0.0.1:5060", "--media", str(clips["h265"]), "--media-codec", "h265",
                              "--fps", "30", "--media-duration", "5", "--answer-ssrc", "0"])
    media = config_from_args(args).media
    assert (media.file, media.codec, media.fps, media.duration, media.ssrc) == (clips["h265"], "h265", 30, 5, 0)
    with pytest.raises(ValueError, match="fps"):
        config_from_args(parser.parse_args(["--server", "127.0.0.1:5060", "--fps", "0"]))


async def test_media_stopping_without_bye_times_out_and_the_gateway_byes_the_device(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"]), media_config(media_timeout=1.5, reinvite=False))
    sink = await Sink.open("udp")
    try:
        status, session = await rig.play(sink.request())
        assert status == 200, session
        await sink.first_packet()
        await asyncio.sleep(0.3)
        rig.call().mute()
        muted = time.monotonic()

        async def ended() -> bool:
            return (await rig.session(session["id"]))[0] == 404

        await rig.gateway.wait_for(ended, 4, "the session to end")
        print(f"\nmedia stopped -> session ended: {(time.monotonic() - muted) * 1000:.0f} ms (media_timeout 1.5 s)")
        await rig.gateway.wait_for(_value(lambda: rig.simulator.stats.byes_received == 1), 2, "the gateway's BYE")
    finally:
        await sink.close()
    assert time.monotonic() - muted >= 1.5
    assert await rig.gateway.metric("gb_media_timeouts_total") == 1
    stops = [e for e in log_events(rig.gateway.log_text) if e.get("event") == "device stream stopped"]
    assert [e["reason"] for e in stops] == ["media timeout"]
    assert rig.simulator.calls == {}


async def test_device_dropping_its_connection_before_media_fails_the_play_with_one_bye(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    """A camera connects (TCP, gateway passive), sends nothing and drops the connection: the play fails as
    "no media" saying why, and the gateway ends the dialog once, not once per way it noticed."""
    rig = await rig_factory(MediaOptions(file=clips["h264"], send=False),
                            media_config(stream_transport="tcp-passive", first_packet_timeout=5))
    sink = await Sink.open("udp")
    try:
        play = asyncio.get_running_loop().create_task(rig.play(sink.request()))
        await rig.gateway.wait_for(
            _value(lambda: any(c.state == "silent" for c in rig.simulator.calls.values())), 3, "the connection"
        )
        rig.call().close("media process restarted")
        started = time.monotonic()
        status, body = await play
    finally:
        await sink.close()
    assert (status, body["stage"]) == (504, "no media"), body
    assert time.monotonic() - started < 2, "the play waited for the first-packet timeout"
    assert "closed" in body["error"], body
    await rig.gateway.wait_for(_value(lambda: rig.simulator.stats.byes_received >= 1), 2, "the BYE")
    await asyncio.sleep(0.5)
    assert rig.simulator.stats.byes_received == 1
    assert rig.simulator.stats.invites == 1


async def test_gateway_stopping_byes_the_devices_it_streams_from(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"]), media_config())
    sink = await Sink.open("udp")
    try:
        status, session = await rig.play(sink.request())
        assert status == 200, session
        await sink.first_packet()
        await rig.gateway.stop()
        await rig.gateway.wait_for(_value(lambda: rig.simulator.stats.byes_received == 1), 2, "the gateway's BYE")
        assert rig.simulator.calls == {}
    finally:
        await sink.close()


async def test_device_bye_before_media_fails_the_play_without_a_bye_back(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"], send=False), media_config(first_packet_timeout=5))
    sink = await Sink.open("udp")
    try:
        play = asyncio.get_running_loop().create_task(rig.play(sink.request()))
        await rig.gateway.wait_for(
            _value(lambda: any(c.state == "silent" for c in rig.simulator.calls.values())), 3, "the ACK"
        )
        response = await rig.simulator.hang_up(rig.call().call_id)
        assert response is not None and response.status == 200
        status, body = await play
    finally:
        await sink.close()
    assert (status, body["stage"]) == (504, "no media"), body
    assert "device BYE" in body["error"], body
    await asyncio.sleep(0.5)
    assert rig.simulator.stats.byes_received == 0


# -- one device stream, several receivers --------------------------------------------------------------------


async def test_second_viewer_joins_the_running_stream_and_survives_the_first_leaving(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"]), media_config())
    first, second = await Sink.open("udp"), await Sink.open("udp")
    try:
        status, one = await rig.play(first.request("0100000001"))
        assert status == 200, one
        await first.first_packet()
        await asyncio.sleep(0.5)  # into the GOP: the join must still start on a keyframe
        started = time.monotonic()
        status, two = await rig.play(second.request("0100000002"))
        assert status == 200, two
        joined = await second.first_packet()
        print(f"\njoin -> first packet: {(joined - started) * 1000:.1f} ms")
        assert rig.simulator.stats.invites == 1, "a second INVITE for a running channel"
        assert one["device"]["local_port"] == two["device"]["local_port"]
        assert starts_keyframe(second.rtp()[0].payload), second.rtp()[0].payload[:32].hex()
        await asyncio.sleep(0.5)
        status, _ = await rig.gateway.api(f"/api/sessions/{one['id']}", "DELETE")
        assert status == 200
        left = len(first.packets)
        keep = len(second.packets)
        await asyncio.sleep(1.0)
        assert len(first.packets) - left <= 1, "the deleted session still receives"
        after = second.rtp(keep)
        assert len(after) > 10
        assert gaps(second.rtp()) == []
        assert {p.ssrc for p in second.rtp()} == {100000002}
        assert {p.ssrc for p in first.rtp()} == {100000001}
        assert (await rig.session(two["id"]))[1]["state"] == "streaming"
    finally:
        await first.close()
        await second.close()


async def test_concurrent_plays_share_one_invite(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    """A play that arrives while the channel's INVITE is still out waits for it instead of sending another."""
    rig = await rig_factory(MediaOptions(file=clips["h264"]), media_config())
    sinks = [await Sink.open("udp") for _ in range(3)]
    try:
        results = await asyncio.gather(*(rig.play(sink.request()) for sink in sinks))
        assert [status for status, _ in results] == [200, 200, 200], results
        for sink in sinks:
            await sink.first_packet()
            assert starts_keyframe(sink.rtp()[0].payload)
        assert rig.simulator.stats.invites == 1
        assert len({body["id"] for _, body in results}) == 3
    finally:
        for sink in sinks:
            await sink.close()


async def test_device_leg_ends_after_the_idle_timeout_once_the_last_viewer_left(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"]), media_config(idle_timeout=0.3))
    sink = await Sink.open("udp")
    try:
        status, session = await rig.play(sink.request())
        assert status == 200, session
        await sink.first_packet()
        assert (await rig.gateway.api(f"/api/sessions/{session['id']}", "DELETE"))[0] == 200
        left = time.monotonic()
        await rig.gateway.wait_for(_value(lambda: rig.simulator.stats.byes_received == 1), 3, "the gateway's BYE")
        assert time.monotonic() - left >= 0.3
        assert rig.simulator.calls == {}
        # The next viewer needs a new INVITE.
        status, again = await rig.play(sink.request())
        assert status == 200, again
        assert rig.simulator.stats.invites == 2
    finally:
        await sink.close()


async def test_tcp_passive_viewer_that_never_connects_does_not_hold_the_camera(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    """The gateway listens for a tcp-passive viewer; one that never connects must not keep the device
    streaming for ever: its session ends (after the relay's 5 s TCP set-up time), then the device leg."""
    rig = await rig_factory(MediaOptions(file=clips["h264"]), media_config(idle_timeout=0.3))
    status, session = await rig.play({"transport": "tcp-passive"})
    assert status == 200, session
    assert session["state"] == "waiting"

    async def ended() -> bool:
        return (await rig.session(session["id"]))[0] == 404

    await rig.gateway.wait_for(ended, 8, "the unconnected session to end")
    await rig.gateway.wait_for(_value(lambda: rig.simulator.stats.byes_received == 1), 2, "the gateway's BYE")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", session["local_port"]), timeout=1).close()


async def test_garbage_and_foreign_rtp_at_the_ingest_never_reach_the_receiver(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"]), media_config())
    sink = await Sink.open("udp")
    intruder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        intruder.bind(("127.0.0.2", 0))
        status, session = await rig.play(sink.request())
        assert status == 200, session
        await sink.first_packet()
        ingest = ("127.0.0.1", session["device"]["local_port"])
        marker = b"FOREIGN-PAYLOAD"
        newest = sink.rtp()[-1]
        for i in range(50):
            intruder.sendto(b"\x00garbage" * 20, ingest)
            intruder.sendto(b"\x80\x60" + b"\xff" * 10 + marker, ingest)  # RTP header with any SSRC
            # RTP that looks like the device's own: its SSRC, numbers and timestamps just ahead.
            header = struct.pack("!BBHII", 0x80, 0x60, (newest.seq + 1 + i) & 0xFFFF, newest.timestamp + 3600,
                                 rig.call().ssrc)
            intruder.sendto(header + PACK_START + marker, ingest)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        _, stats = await rig.session(session["id"])
    finally:
        intruder.close()
        await sink.close()
    assert not any(marker in p.payload for p in sink.rtp())
    assert gaps(sink.rtp()) == []
    assert stats["device"]["packets_in"] <= rig.call().stats.packets


# -- failures name their stage --------------------------------------------------------------------------


async def test_unknown_channel_is_404(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"]), media_config())
    status, body = await rig.play({"host": "127.0.0.1", "port": 9, "transport": "udp"}, "34020000001319999999")
    assert (status, body["stage"]) == (404, "unknown channel"), body
    assert rig.simulator.stats.invites == 0


async def test_offline_device_is_409(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"]), media_config())
    await rig.simulator.stop(unregister=True)

    async def offline() -> bool:
        return not (await rig.gateway.device(DEVICE))["online"]

    await rig.gateway.wait_for(offline, 3, "the device to go offline")
    status, body = await rig.play({"host": "127.0.0.1", "port": 9, "transport": "udp"})
    assert (status, body["stage"]) == (409, "device offline"), body
    assert rig.simulator.stats.invites == 0


@pytest.mark.parametrize(
    ("media", "config", "http_status", "stage", "device_status", "label"),
    [
        ({"invite_status": 486}, {}, 502, "INVITE rejected", 486, "invite_rejected"),
        # Only 100 Trying: the INVITE transaction times out at 64 * T1 (3.2 s with T1 = 50 ms).
        ({"invite_status": 0}, {"sip": {"t1": 0.05}}, 504, "no answer", None, "no_answer"),
        ({"send": False}, {"media": {"first_packet_timeout": 0.5}}, 504, "no media", None, "no_media"),
    ],
    ids=["rejected", "no-answer", "no-media"],
)
async def test_failed_play_names_the_stage(
    rig_factory: Callable[..., Awaitable[LiveRig]],
    clips: dict[str, Path],
    media: dict[str, Any],
    config: dict[str, Any],
    http_status: int,
    stage: str,
    device_status: int | None,
    label: str,
) -> None:
    overrides = media_config()
    overrides["media"].update(config.get("media", {}))
    overrides.update({k: v for k, v in config.items() if k != "media"})
    rig = await rig_factory(MediaOptions(file=clips["h264"], **media), overrides)
    sink = await Sink.open("udp")
    try:
        status, body = await rig.play(sink.request())
    finally:
        await sink.close()
    assert (status, body["stage"], body.get("device_status")) == (http_status, stage, device_status), body
    assert rig.simulator.stats.invites == 1
    assert (await rig.gateway.api("/api/sessions"))[1] == []
    assert await rig.gateway.metric("gb_invites_total", stage=label) == 1
    if stage == "no media":
        # The device accepted: the gateway ends its dialog, once.
        await rig.gateway.wait_for(_value(lambda: rig.simulator.stats.byes_received >= 1), 2, "the BYE")
        await asyncio.sleep(1.0)
        assert rig.simulator.stats.byes_received == 1
        assert rig.simulator.calls == {}


async def test_media_timeout_reinvites_and_the_viewer_continues_with_its_ssrc_and_numbering(
    rig_factory: Callable[..., Awaitable[LiveRig]], clips: dict[str, Path]
) -> None:
    """media.reinvite: the device leg is INVITEd again; the receiver sees a pause, not a new stream."""
    rig = await rig_factory(MediaOptions(file=clips["h264"], fps=FPS), media_config(media_timeout=1.5, reinvite=True))
    sink = await Sink.open("udp")
    try:
        status, session = await rig.play(sink.request(REQUESTED_SSRC))
        assert status == 200, session
        await sink.first_packet()
        await asyncio.sleep(0.3)
        rig.call().mute()
        before = len(sink.packets)

        async def resumed() -> bool:
            return len(sink.packets) > before + 20

        await rig.gateway.wait_for(resumed, 6, "media flowing again after the re-INVITE")
        status, again = await rig.session(session["id"])
        assert status == 200 and again["state"] == "streaming", again
        packets = sink.rtp()
    finally:
        await sink.close()
    assert rig.simulator.stats.invites == 2
    assert rig.simulator.stats.byes_received == 1  # the dead leg was hung up
    assert {p.ssrc for p in packets} == {int(REQUESTED_SSRC)}
    assert gaps(packets) == []  # numbering continues across the two device legs
    assert await rig.gateway.metric("gb_media_timeouts_total") == 1

"""Recorded video upward: an upper INVITEs ``s=Playback``/``s=Download`` for a shared channel, the gateway opens
a device leg of its own for it (never shared), relays the simulated NVR's PS to the upper's offer with the
upper's ``y=``, relays the upper's MANSRTSP INFOs (pause, resume, seek) in the device leg's CSeq, and tells
the upper the end of file in its dialog (MediaStatus 121) before hanging up.

The upper is `FakeUpper` driven through SIP only; offers and INFO bodies are written by hand as an upper
sends them; media lands on plain sockets and ffprobe decodes it. Until the daemon wires HistorySessions
into the cascade, the rig wires it here exactly as the daemon is to (see the report of issue 11).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from access_harness import Sipp, requires_sipp
from media_harness import Sink, ffprobe
from playback_harness import make_clip
from test_cascade_media import (
    CHANNEL,
    CHANNEL2,
    DEVICE,
    FPS,
    GATEWAY_MEDIA,
    UPPER_ID,
    Factory,
    UpperCall,
    audit,
    cameras,
    media_rig,
    sdp_field,
    wait_until,
)
from upper_harness import UPPER_DOMAIN, CascadeRig, FakeUpper

from gbgw.gb28181.app.daemon import Gateway
from gbgw.gb28181.cascade.history import UpstreamRecordings
from gbgw.gb28181.media.history import HistorySessions
from gbgw.sip.message import Request
from gbgw.sip.transaction import ServerTransaction

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="needs ffmpeg/ffprobe (Debian package ffmpeg; tests/run.sh installs it)",
)

UPPER_SSRC = "1100000077"
_CLOCK = 90_000
MANSRTSP = "Application/MANSRTSP"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("cascade-playback-clip"))


def wire(gw: Gateway) -> tuple[HistorySessions, UpstreamRecordings]:
    """The daemon's history service and the cascade's recordings feature for upstream ``district``, wired
    here if the daemon does not (the same lines the daemon is to carry). Also used by bench_playback."""
    cascade = gw.cascade
    wired = getattr(cascade, "recordings", {}).get("district")
    if wired is not None:
        return wired.history, wired
    transport = gw.transport
    assert transport is not None
    cfg = gw.config
    history = HistorySessions(gw.registry, cfg.sip, transport, gw.outgoing, gw.tasks, gw.relay, cfg.media,
                              gw.metrics)

    def on_bye(txn: ServerTransaction) -> None:
        if not gw.live.on_bye(txn) and not history.on_bye(txn):
            transport.reply(txn, 481)

    gw.router.handle("BYE", on_bye)
    gw.devices.messages.add_media_status_listener(history.on_media_status)
    link = cascade.links["district"]
    streams = cascade.streams["district"]
    recordings = UpstreamRecordings(link, cfg, gw.registry, history, streams.ports, gw.audit, gw.metrics, gw.tasks)
    streams.recorded = recordings.offer
    return history, recordings


def recorded_window(seconds: float, ago: float = 3600.0) -> tuple[int, int]:
    start = int((datetime.now().astimezone() - timedelta(seconds=ago)).timestamp())
    return start, start + int(seconds)


def playback_offer(sink: Sink | None, timing: tuple[int, int], *, kind: str = "Playback",
                   channel: str = CHANNEL, ssrc: str | None = UPPER_SSRC, speed: int | None = None,
                   port: int | None = None) -> bytes:
    transport = sink.transport if sink is not None else "udp"
    tcp = transport != "udp"
    media_port = port if port is not None else (sink.port if sink is not None and sink.port else 9)
    lines = [
        "v=0",
        f"o={UPPER_ID} 0 0 IN IP4 127.0.0.1",
        f"s={kind}",
        f"u={channel}:0",
        "c=IN IP4 127.0.0.1",
        f"t={timing[0]} {timing[1]}",
        f"m=video {media_port} {'TCP/RTP/AVP' if tcp else 'RTP/AVP'} 96 98 97",
        "a=recvonly",
        "a=rtpmap:96 PS/90000",
        "a=rtpmap:98 H264/90000",
        "a=rtpmap:97 MPEG4/90000",
    ]
    if tcp:
        lines += [f"a=setup:{'passive' if transport == 'tcp-active' else 'active'}", "a=connection:new"]
    if speed is not None:
        lines.append(f"a=downloadspeed:{speed}")
    if ssrc is not None:
        lines.append(f"y={ssrc}")
    return ("\r\n".join(lines) + "\r\n").encode()


async def invite(upper: FakeUpper, channel: str, body: bytes) -> UpperCall:
    request = upper.request("INVITE", channel, body, "APPLICATION/SDP",
                            headers=[("Subject", f"{channel}:{UPPER_SSRC},{upper.id}:0")])
    call = UpperCall(upper, request, await upper.send(request))
    if call.response.status == 200:
        call.ack()
    return call


async def info(call: UpperCall, body: str, content_type: str = MANSRTSP) -> Any:
    assert call.dialog is not None
    request = call.dialog.create_request("INFO", via=call.upper.transport.via(call.peer.transport),
                                         body=body.encode(), content_type=content_type)
    return await call.upper.transport.send_request(request, call.peer)


def media_status(call: UpperCall) -> list[Request]:
    """MediaStatus MESSAGEs the upper got in this call's dialog."""
    return [m.request for m in call.upper.messages
            if m.request.call_id == call.call_id and m.doc is not None and m.doc.cmd_type == "MediaStatus"]


def offset(sink: Sink, index: int) -> float:
    base = sink.packets[0][1].timestamp
    return ((sink.packets[index][1].timestamp - base) & 0xFFFFFFFF) / _CLOCK


@contextlib.asynccontextmanager
async def _rig(gateway_factory: Factory, clip: Path, upstream: dict[str, Any] | None = None,
               channels: int = 1, **media: Any) -> AsyncIterator[tuple[CascadeRig, Any, UpstreamRecordings]]:
    async with media_rig(gateway_factory, upstream, GATEWAY_MEDIA) as rig:
        _, recordings = wire(rig.gateway.gateway)
        simulator = await rig.add_cameras(1, channels, **cameras(clip, **media))
        yield rig, simulator, recordings


@pytest.mark.parametrize("output", ["udp", "tcp-active", "tcp-passive"])
async def test_upper_plays_back_pauses_seeks_and_gets_end_of_file(gateway_factory: Factory, clip: Path,
                                                                  tmp_path: Path, output: str) -> None:
    async with _rig(gateway_factory, clip) as (rig, simulator, recordings):
        sink = await Sink.open(output)
        timing = recorded_window(10)
        try:
            asked = time.monotonic()
            call = await invite(rig.upper, CHANNEL, playback_offer(sink, timing))
            assert call.response.status == 200, call.response.start_line()
            answer = call.response.body
            assert sdp_field(answer, "s=") == ["Playback"]
            assert sdp_field(answer, "t=") == [f"{timing[0]} {timing[1]}"]
            assert sdp_field(answer, "y=") == [UPPER_SSRC]
            assert sdp_field(answer, "c=") == ["IN IP4 127.0.0.1"]
            assert "a=sendonly" in answer.decode().split("\r\n")
            assert DEVICE not in call.response.serialize().decode()
            if output == "tcp-passive":
                await sink.connect(call.media_port)
            first = await sink.first_packet()
            print(f"\nupper Playback INVITE -> first packet ({output}): {(first - asked) * 1000:.1f} ms")

            await asyncio.sleep(0.8)
            response = await info(call, "PAUSE RTSP/1.0\r\nCSeq: 7\r\nPauseTime: now\r\n\r\n")
            assert response.status == 200
            assert response.body.decode().split("\r\n")[:2] == ["RTSP/1.0 200 OK", "CSeq: 7"]
            paused_at = time.monotonic()
            count = len(sink.packets)
            await asyncio.sleep(0.6)
            late = [t for t, _ in sink.packets[count:] if t > paused_at + 0.2]
            assert not late, f"{len(late)} packets more than 200 ms after PAUSE"

            response = await info(call, "PLAY RTSP/1.0\r\nCSeq: 8\r\nRange: npt=now-\r\n\r\n")
            assert response.status == 200 and b"CSeq: 8" in response.body
            count = len(sink.packets)
            await wait_until(lambda: len(sink.packets) > count + 5, 2, "packets after PLAY")

            sent = time.monotonic()
            response = await info(call, "PLAY RTSP/1.0\r\nCSeq: 9\r\nRange: npt=7-\r\n\r\n")
            assert response.status == 200 and b"CSeq: 9" in response.body
            after = await wait_until(
                lambda: next((i for i, (t, _) in enumerate(sink.packets) if t >= sent and offset(sink, i) > 5),
                             None), 2, "a packet at the new position")
            print(f"upper seek -> first packet at the new position ({output}): "
                  f"{(sink.packets[after][0] - sent) * 1000:.1f} ms")
            assert offset(sink, after) == pytest.approx(7.0, abs=1.0)

            (status,) = await rig.upper.wait(lambda: media_status(call), 8, "MediaStatus 121 in the dialog")
            doc = next(m.doc for m in rig.upper.messages if m.request is status)
            assert doc is not None and doc.root == "Notify" and doc.device_id == CHANNEL
            assert "<NotifyType>121</NotifyType>" in status.body.decode("gb2312")
            assert (status.to.tag, status.from_.tag) == (call.invite.from_.tag, call.response.to.tag)
            await wait_until(lambda: simulator.stats.byes_received == 1, 3, "the device leg hung up")
            assert (await call.bye()).status == 200
            packets = sink.rtp()
        finally:
            await sink.close()
        assert recordings.sessions == {}
        assert call.byes_received() == []
        assert simulator.stats.invites == 1
        (record,) = audit(rig, "invite")
        assert (record["result"], record["kind"], record["ssrc"], record["transport"]) == (
            "ok", "playback", UPPER_SSRC, output)
        assert [(r["method"], r["status"]) for r in audit(rig, "info")] == [("PAUSE", 200), ("PLAY", 200),
                                                                           ("PLAY", 200)]
        (bye,) = audit(rig, "bye")
        assert (bye["by"], bye["kind"]) == ("upper", "playback")
        assert await rig.gateway.metric("gb_cascade_requests_total", upstream="district", kind="playback",
                                        result="ok") == 1
        assert await rig.gateway.metric("gb_mansrtsp_commands_total", method="PAUSE", result="ok") == 1

    assert {p.ssrc for p in packets} == {int(UPPER_SSRC)}
    ps = tmp_path / "upper-playback.ps"
    ps.write_bytes(b"".join(p.payload for p in packets))
    stream = ffprobe(ps)
    assert stream["codec_name"] == "h264" and (stream["width"], stream["height"]) == (320, 240)
    assert int(stream["nb_read_frames"]) >= 3 * FPS


async def test_two_uppers_sessions_get_their_own_device_legs_and_the_end_margin_hangs_up(
        gateway_factory: Factory, clip: Path) -> None:
    async with _rig(gateway_factory, clip) as (rig, simulator, recordings):
        recordings.eof_margin = 0.3
        sinks = [await Sink.open("udp") for _ in range(2)]
        try:
            timing = recorded_window(2)
            calls = [await invite(rig.upper, CHANNEL, playback_offer(sink, timing, ssrc=None)) for sink in sinks]
            assert [c.response.status for c in calls] == [200, 200]
            ssrcs = [sdp_field(c.response.body, "y=")[0] for c in calls]
            assert all(s.startswith("1") and len(s) == 10 for s in ssrcs) and ssrcs[0] != ssrcs[1]
            assert simulator.stats.invites == 2  # never shared
            for call in calls:
                await rig.upper.wait(lambda c=call: media_status(c), 8, "MediaStatus 121")  # type: ignore[misc]
                await rig.upper.wait(call.byes_received, 3, "the gateway's BYE after the margin")
            assert recordings.sessions == {}
            for sink, ssrc in zip(sinks, ssrcs, strict=True):
                assert {p.ssrc for p in sink.rtp()} == {int(ssrc)}
        finally:
            for sink in sinks:
                await sink.close()
        assert {r["reason"] for r in audit(rig, "bye")} == {"end of file"}


async def test_download_answers_filesize_and_speed(gateway_factory: Factory, clip: Path) -> None:
    async with _rig(gateway_factory, clip) as (rig, _, _):
        sink = await Sink.open("udp")
        try:
            started = time.monotonic()
            call = await invite(rig.upper, CHANNEL, playback_offer(sink, recorded_window(4), kind="Download",
                                                                  speed=4))
            assert call.response.status == 200, call.response.start_line()
            assert sdp_field(call.response.body, "s=") == ["Download"]
            assert sdp_field(call.response.body, "a=downloadspeed:") == ["4"]
            (filesize,) = sdp_field(call.response.body, "a=filesize:")
            assert int(filesize) > 0
            await rig.upper.wait(lambda: media_status(call), 5, "MediaStatus 121")
            assert time.monotonic() - started < 3.0  # 4 s of recording at 4x
            assert len({p.timestamp for p in sink.rtp()}) == 4 * FPS
            assert (await call.bye()).status == 200
        finally:
            await sink.close()
        assert audit(rig, "invite")[0]["kind"] == "download"


async def test_refusals_are_the_live_ones(gateway_factory: Factory, clip: Path) -> None:
    mapped = "34020000001319990001"
    upstream = {"share": [{"ids": [CHANNEL]}], "channel_ids": {CHANNEL: mapped}}
    async with _rig(gateway_factory, clip, upstream, channels=2) as (rig, simulator, _):
        timing = recorded_window(5)
        for target in (CHANNEL2, "34020000001319999999", CHANNEL):  # unshared, unknown, unmapped
            call = await invite(rig.upper, target, playback_offer(None, timing, channel=target, port=5000))
            assert (call.response.status, call.response.reason) == (404, "Not Found"), target
        no_range = await invite(rig.upper, mapped, playback_offer(None, (0, 0), channel=mapped, port=5000))
        assert no_range.response.status == 488
        bad_speed = await invite(rig.upper, mapped, playback_offer(None, timing, kind="Download", speed=99,
                                                                   channel=mapped, port=5000))
        assert bad_speed.response.status == 488
        assert simulator.stats.invites == 0
        # Refused before the s= line is read, by the live path itself: counted and audited as any INVITE.
        assert await rig.gateway.metric("gb_cascade_requests_total", upstream="district", kind="invite",
                                        result="404") == 3
        assert await rig.gateway.metric("gb_cascade_requests_total", upstream="district", kind="download",
                                        result="488") == 1
        reasons = {r["upper_channel"]: r["reason"] for r in audit(rig, "invite")}
        assert reasons[CHANNEL2] == "channel not shared with this upstream"
        assert reasons["34020000001319999999"] == "unknown channel"


async def test_info_errors(gateway_factory: Factory, clip: Path) -> None:
    async with _rig(gateway_factory, clip, info_status=403) as (rig, _, _):
        sink = await Sink.open("udp")
        try:
            call = await invite(rig.upper, CHANNEL, playback_offer(sink, recorded_window(10)))
            assert call.response.status == 200
            await sink.first_packet()
            refused = await info(call, "PAUSE RTSP/1.0\r\nCSeq: 1\r\nPauseTime: now\r\n\r\n")
            assert refused.status == 403  # the device's own status, upward
            assert (await info(call, "GET_PARAMETER RTSP/1.0\r\nCSeq: 2\r\n\r\n")).status == 501
            assert (await info(call, "PLAY RTSP/1.0\r\n\r\n")).status == 400  # no CSeq
            assert (await info(call, "PLAY RTSP/1.0\r\nCSeq: 3\r\n\r\n", "text/plain")).status == 415
            stray = rig.upper.request("INFO", CHANNEL, b"PAUSE RTSP/1.0\r\nCSeq: 1\r\n\r\n", MANSRTSP)
            assert (await rig.upper.send(stray)).status == 481
            assert (await call.bye()).status == 200
        finally:
            await sink.close()
        assert [r["status"] for r in audit(rig, "info")] == [403, 501, 400, 415]


@pytest.mark.sipp
@requires_sipp
@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_sipp_upper_plays_back_pauses_resumes_and_hangs_up(gateway_factory: Factory, clip: Path,
                                                                 sipp: Sipp, transport: str) -> None:
    async with _rig(gateway_factory, clip) as (rig, simulator, recordings):
        sink = await Sink.open("udp")
        start, end = recorded_window(60)
        try:
            link = rig.gateway.gateway.cascade.links["district"]
            process, workdir = await sipp.start(
                "upper_playback.xml", link.config.listen.port, transport, channel=CHANNEL, upper_id=rig.upper.id,
                upper_domain=UPPER_DOMAIN, sink_port=str(sink.port), start=str(start), end=str(end))
            run = await sipp.finish(process, workdir)
            assert run.returncode == 0, run.report()
            packets = sink.rtp()
        finally:
            await sink.close()
        assert packets and {p.ssrc for p in packets} == {int(UPPER_SSRC)}
        assert recordings.sessions == {}
        await wait_until(lambda: simulator.stats.byes_received == 1, 3, "the device leg hung up")
        assert [(r["method"], r["status"]) for r in audit(rig, "info")] == [("PAUSE", 200), ("PLAY", 200)]
        assert [(r["by"], r["kind"]) for r in audit(rig, "bye")] == [("upper", "playback")]

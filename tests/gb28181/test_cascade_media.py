"""Streams upward: an upper platform INVITEs a shared channel, the gateway relays the camera's PS stream to
the upper's offer (UDP, TCP active, TCP passive), and ffprobe (an independent decoder) reads what arrived.

The upper is `FakeUpper` (our own SIP stack, driven through SIP only) and sipp (an independent stack);
the camera is a `DeviceSimulator` streaming a real H.264 clip; media is received on plain sockets
(`Sink` of test_live, with its own RTP parsing). Offers are written by hand here as an upper would send
them, and answers are read with a few regular expressions, not with the project's SDP code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
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
from access_harness import RunningGateway, Sipp, requires_sipp
from hypothesis import given
from hypothesis import strategies as st
from media_harness import Sink, ffprobe, gaps, starts_keyframe
from upper_harness import UPPER_DOMAIN, UPPER_ID, CascadeRig, FakeUpper, cascade_rig

from gbgw.conformance.simulator.media import MediaOptions
from gbgw.gb28181.cascade.media import OfferRefused, UpperOffer, build_answer, parse_offer
from gbgw.rtp.relay import MediaTransport
from gbgw.sip.dialog import Dialog
from gbgw.sip.endpoint import Peer
from gbgw.sip.message import Request, Response

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="needs ffmpeg/ffprobe (Debian package ffmpeg; tests/run.sh installs it)",
)

Factory = Callable[..., Awaitable[RunningGateway]]
FPS = 25
COLLECT = 1.2
"""Seconds of stream a decode test collects after the first packet."""
DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"
CHANNEL2 = "34020000001310000002"
UPPER_SSRC = "0100000077"
MEDIA_LOW, MEDIA_HIGH = 41000, 41999
"""The upstream's media_ports (upper_harness.upstream_config)."""


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of 320x240 H.264 at 25 fps, one keyframe per second, no B-frames."""
    path = tmp_path_factory.mktemp("cascade-clip") / "clip.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}",
                    "-t", "2", "-g", str(FPS), "-bf", "0", "-c:v", "libx264", "-f", "h264", str(path)],
                   check=True, timeout=60)
    return path


# -- what an upper sends and reads -----------------------------------------------------------------------


def upper_offer(sink: Sink | None, ssrc: str | None = UPPER_SSRC, session: str = "Play",
                port: int | None = None) -> bytes:
    """An upper's offer for ``sink``: over TCP the upper's role is the opposite of the gateway's output
    role the Sink is named for (``tcp-active`` sink = the gateway connects = the upper is passive)."""
    transport = sink.transport if sink is not None else "udp"
    tcp = transport != "udp"
    media_port = port if port is not None else (sink.port if sink is not None and sink.port else 9)
    lines = [
        "v=0",
        f"o={UPPER_ID} 0 0 IN IP4 127.0.0.1",
        f"s={session}",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=video {media_port} {'TCP/RTP/AVP' if tcp else 'RTP/AVP'} 96 98 97",
        "a=recvonly",
        "a=rtpmap:96 PS/90000",
        "a=rtpmap:98 H264/90000",
        "a=rtpmap:97 MPEG4/90000",
    ]
    if tcp:
        lines += [f"a=setup:{'passive' if transport == 'tcp-active' else 'active'}", "a=connection:new"]
    if ssrc is not None:
        lines.append(f"y={ssrc}")
    return ("\r\n".join(lines) + "\r\n").encode()


def sdp_field(body: bytes, prefix: str) -> list[str]:
    return [line[len(prefix):] for line in body.decode().split("\r\n") if line.startswith(prefix)]


@dataclass
class UpperCall:
    upper: FakeUpper
    invite: Request
    response: Response
    dialog: Dialog | None = None

    @property
    def peer(self) -> Peer:
        gateway = self.upper.gateway
        assert gateway is not None
        return Peer(gateway.transport, gateway.host, gateway.port)

    @property
    def call_id(self) -> str:
        return self.invite.call_id or ""

    @property
    def media_port(self) -> int:
        (m_line,) = sdp_field(self.response.body, "m=video ")
        return int(m_line.split()[0])

    def ack(self) -> None:
        self.dialog = Dialog.from_uac(self.invite, self.response, self.peer)
        ack = self.dialog.create_ack(self.invite.cseq.seq, via=self.upper.transport.via(self.peer.transport))
        self.upper.transport.send_ack(ack, self.peer)

    async def bye(self) -> Response:
        assert self.dialog is not None
        bye = self.dialog.create_request("BYE", via=self.upper.transport.via(self.peer.transport))
        return await self.upper.transport.send_request(bye, self.peer)

    def byes_received(self) -> list[Request]:
        """BYEs the gateway sent the upper in this call's dialog."""
        return [r.request for r in self.upper.requests if r.request.method == "BYE" and r.request.call_id == self.call_id]


def invite_request(upper: FakeUpper, channel: str, body: bytes) -> Request:
    return upper.request("INVITE", channel, body, "APPLICATION/SDP",
                         headers=[("Subject", f"{channel}:{UPPER_SSRC},{upper.id}:0")])


async def invite(upper: FakeUpper, channel: str, body: bytes, *, ack: bool = True) -> UpperCall:
    request = invite_request(upper, channel, body)
    call = UpperCall(upper, request, await upper.send(request))
    if call.response.status == 200 and ack:
        call.ack()
    return call


def streams(rig: CascadeRig) -> Any:
    return rig.gateway.gateway.cascade.streams["district"]


def audit(rig: CascadeRig, action: str) -> list[dict[str, Any]]:
    text = Path(rig.gateway.config.audit.path).read_text()
    return [r for r in map(json.loads, text.splitlines()) if r["action"] == action]


def assert_police_side(rig: CascadeRig, message: Request | Response) -> None:
    """Nothing of the device side in a message the upper got: no device ID, every address in it is the
    gateway's police-side SIP address or the upper's own, and SDP ports come from the upstream's range."""
    text = message.serialize().decode()
    link = rig.gateway.gateway.cascade.links["district"]
    assert DEVICE not in text, text
    allowed = {link.config.listen.port, rig.upper.port}
    for port in re.findall(r"127\.0\.0\.1:(\d+)", text):
        assert int(port) in allowed, (port, allowed, text)
    for m_line in sdp_field(message.body, "m=") if message.body else []:
        port = int(m_line.split()[1])
        assert MEDIA_LOW <= port <= MEDIA_HIGH, m_line


async def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def cameras(clip: Path, **media: Any) -> dict[str, Any]:
    return {"media": MediaOptions(file=clip, fps=FPS, **media)}


GATEWAY_MEDIA = {"media": {"ports": "30000-30999"}}


@contextlib.asynccontextmanager
async def media_rig(gateway_factory: Factory, upstream: dict[str, Any] | None = None,
                    gateway_config: dict[str, Any] | None = None) -> AsyncIterator[CascadeRig]:
    """`cascade_rig` whose gateway stops while the upper still answers (its un-REGISTER would otherwise
    wait 2 s for an upper that is gone)."""
    async with cascade_rig(gateway_factory, upstream, gateway_config) as rig:
        try:
            yield rig
        finally:
            await rig.gateway.stop()


# -- the offer and the answer, without sockets -------------------------------------------------------------


@pytest.mark.parametrize(
    ("proto", "setup", "port", "expected"),
    [
        ("RTP/AVP", None, 5000, MediaTransport.UDP),
        ("TCP/RTP/AVP", "passive", 5000, MediaTransport.TCP_ACTIVE),  # the upper listens: we connect
        ("TCP/RTP/AVP", "active", 9, MediaTransport.TCP_PASSIVE),  # the upper connects to us
        ("TCP/RTP/AVP", None, 9, MediaTransport.TCP_PASSIVE),  # RFC 4145: an offerer is active by default
        ("tcp/rtp/avp", "ACTPASS", 5000, MediaTransport.TCP_ACTIVE),
        ("TCP/RTP/AVP", "actpass", 9, MediaTransport.TCP_PASSIVE),
    ],
)
def test_offer_roles(proto: str, setup: str | None, port: int, expected: MediaTransport) -> None:
    body = (f"v=0\r\ns=Play\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\nm=video {port} {proto} 96\r\n"
            f"a=rtpmap:96 PS/90000\r\n{f'a=setup:{setup}' if setup else ''}\r\ny=0100000001\r\n").encode()
    offer = parse_offer(body, "10.9.9.9")
    assert offer.transport is expected
    assert offer.host == "10.1.2.3"
    assert offer.port == (None if expected is MediaTransport.TCP_PASSIVE else port)
    assert (offer.ssrc, offer.payload_type) == ("0100000001", 96)


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b"s=Play\r\n", 400, "Unreadable"),
        (b"v=0\r\ns=Playback\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 RTP/AVP 96\r\na=rtpmap:96 PS/90000\r\n", 488,
         "Playback"),
        (b"v=0\r\ns=Download\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 RTP/AVP 96\r\n", 488, "Download"),
        (b"v=0\r\ns=Play\r\nc=IN IP4 1.2.3.4\r\nm=audio 5000 RTP/AVP 8\r\n", 488, "No video"),
        (b"v=0\r\ns=Play\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 RTP/AVP 98\r\na=rtpmap:98 H264/90000\r\n", 488, "PS"),
        (b"v=0\r\ns=Play\r\nc=IN IP4 1.2.3.4\r\nm=video 0 RTP/AVP 96\r\n", 488, "port"),
        (b"v=0\r\ns=Play\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 RTP/AVP 96\r\na=sendonly\r\n", 488, "receive"),
    ],
    ids=["no-version", "playback", "download", "audio-only", "no-ps", "no-port", "sendonly"],
)
def test_offers_refused(body: bytes, status: int, text: str) -> None:
    with pytest.raises(OfferRefused) as refused:
        parse_offer(body, "10.9.9.9")
    assert refused.value.status == status and text in refused.value.reason


def test_offer_liberal_reading() -> None:
    """No c= address: media goes where the INVITE came from; 96 without rtpmap is PS; a y= that is no
    32-bit SSRC is not used (the gateway picks one)."""
    offer = parse_offer(b"v=0\r\ns=Play\r\nc=IN IP4 0.0.0.0\r\nm=video 5000 RTP/AVP 96\r\ny=9999999999\r\n",
                        "10.9.9.9")
    assert (offer.host, offer.port, offer.payload_type, offer.ssrc) == ("10.9.9.9", 5000, 96, None)
    mp2p = parse_offer(b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 6000 RTP/AVP 100\r\na=rtpmap:100 MP2P/90000\r\n", "x")
    assert mp2p.payload_type == 100


@given(
    transport=st.sampled_from(list(MediaTransport)),
    port=st.integers(1024, 65534),
    ssrc=st.integers(0, 0xFFFFFFFF).map(lambda n: f"{n:010d}"),
    payload_type=st.integers(96, 127),
)
def test_answer_says_what_the_output_does(transport: MediaTransport, port: int, ssrc: str, payload_type: int) -> None:
    offer = UpperOffer(transport, "10.1.1.1", None if transport is MediaTransport.TCP_PASSIVE else 5000, ssrc,
                       payload_type)
    body = build_answer(offer, "34020000002000000001", "10.20.0.2", port, ssrc)
    tcp = transport is not MediaTransport.UDP
    assert sdp_field(body, "m=video ") == [f"{port} {'TCP/RTP/AVP' if tcp else 'RTP/AVP'} {payload_type}"]
    assert sdp_field(body, "c=") == ["IN IP4 10.20.0.2"]
    assert sdp_field(body, "o=")[0].endswith(" IN IP4 10.20.0.2")
    assert sdp_field(body, "y=") == [ssrc]
    assert sdp_field(body, "a=rtpmap:") == [f"{payload_type} PS/90000"]
    assert "a=sendonly" in body.decode().split("\r\n")
    expected_setup = {MediaTransport.TCP_ACTIVE: ["active"], MediaTransport.TCP_PASSIVE: ["passive"]}.get(transport, [])
    assert sdp_field(body, "a=setup:") == expected_setup
    assert sdp_field(body, "a=connection:") == (["new"] if tcp else [])
    # Read back the way an upper would: the answer is an offer-shaped SDP our parser accepts too.
    again = parse_offer(body.replace(b"a=sendonly", b"a=recvonly"), "x")
    assert again.ssrc == ssrc and again.payload_type == payload_type


# -- streams that must decode ------------------------------------------------------------------------------


@needs_ffmpeg
@pytest.mark.parametrize("output", ["udp", "tcp-active", "tcp-passive"])
async def test_upper_plays_a_shared_channel(gateway_factory: Factory, clip: Path, tmp_path: Path, output: str) -> None:
    async with media_rig(gateway_factory, gateway_config=GATEWAY_MEDIA) as rig:
        simulator = await rig.add_cameras(1, 1, **cameras(clip))
        sink = await Sink.open(output)
        try:
            started = time.monotonic()
            call = await invite(rig.upper, CHANNEL, upper_offer(sink))
            assert call.response.status == 200, call.response.start_line()
            answer = call.response.body
            tcp = output != "udp"
            assert sdp_field(answer, "c=") == ["IN IP4 127.0.0.1"]
            assert sdp_field(answer, "y=") == [UPPER_SSRC]
            assert sdp_field(answer, "a=rtpmap:") == ["96 PS/90000"]
            assert sdp_field(answer, "a=setup:") == ({"tcp-active": ["active"], "tcp-passive": ["passive"]}
                                                     .get(output, []))
            assert sdp_field(answer, "a=connection:") == (["new"] if tcp else [])
            assert "a=sendonly" in answer.decode().split("\r\n")
            assert (call.response.get("Content-Type") or "").lower() == "application/sdp"
            assert_police_side(rig, call.response)
            if output == "tcp-passive":
                await sink.connect(call.media_port)
            first = await sink.first_packet()
            print(f"\nupper INVITE -> first packet ({output}): {(first - started) * 1000:.1f} ms")
            await asyncio.sleep(COLLECT)
            session = streams(rig).sessions[call.call_id]
            assert session.state == "confirmed"
            status, listed = await rig.gateway.api("/api/upstreams/district/sessions")
            assert status == 200 and [(s["call_id"], s["state"], s["ssrc"]) for s in listed] == [
                (call.call_id, "confirmed", UPPER_SSRC)]
            status, relayed = await rig.gateway.api(f"/api/sessions/{listed[0]['session']}")
            assert status == 200 and relayed["owner"] == "upstream:district"
            response = await call.bye()
            assert response.status == 200
            packets = sink.rtp()
        finally:
            await sink.close()
        assert call.call_id not in streams(rig).sessions
        assert rig.gateway.gateway.live.sessions == {}
        assert simulator.stats.invites == 1
        assert call.byes_received() == []
        (record,) = audit(rig, "invite")
        assert record["result"] == "ok" and record["channel"] == CHANNEL and record["upper_channel"] == CHANNEL
        assert (record["transport"], record["ssrc"], record["upstream"]) == (output, UPPER_SSRC, "district")
        (bye,) = audit(rig, "bye")
        assert bye["by"] == "upper" and bye["packets"] >= len(packets)
        assert await rig.gateway.metric("gb_cascade_requests_total", upstream="district", kind="invite",
                                        result="ok") == 1

    assert {p.ssrc for p in packets} == {int(UPPER_SSRC)}
    assert {p.payload_type for p in packets} == {96}
    assert gaps(packets) == []
    assert starts_keyframe(packets[0].payload), packets[0].payload[:32].hex()
    ps = tmp_path / "upper.ps"
    ps.write_bytes(b"".join(p.payload for p in packets))
    stream = ffprobe(ps)
    assert stream["codec_name"] == "h264" and (stream["width"], stream["height"]) == (320, 240)
    elapsed = COLLECT
    assert int(stream["nb_read_frames"]) >= int(elapsed * FPS) - 3
    assert len({p.timestamp for p in packets}) == int(stream["nb_read_frames"])


@needs_ffmpeg
async def test_without_y_the_gateway_picks_the_ssrc_and_says_it(gateway_factory: Factory, clip: Path) -> None:
    """Also: a gateway that stops hangs up the upper's running session."""
    async with media_rig(gateway_factory, gateway_config=GATEWAY_MEDIA) as rig:
        await rig.add_cameras(1, 1, **cameras(clip))
        sink = await Sink.open("udp")
        try:
            call = await invite(rig.upper, CHANNEL, upper_offer(sink, ssrc=None))
            assert call.response.status == 200
            (answered,) = sdp_field(call.response.body, "y=")
            await sink.first_packet()
            await asyncio.sleep(0.2)
            assert {p.ssrc for p in sink.rtp()} == {int(answered)}
            assert len(answered) == 10 and answered.startswith("0")
            await rig.gateway.stop()
            await rig.upper.wait(call.byes_received, 2, "a BYE from the stopping gateway")
        finally:
            await sink.close()


# -- refusals ----------------------------------------------------------------------------------------------


@needs_ffmpeg
async def test_refusals_do_not_tell_unknown_from_unshared(gateway_factory: Factory, clip: Path) -> None:
    mapped = "34020000001319990001"
    upstream = {"share": [{"ids": [CHANNEL]}], "channel_ids": {CHANNEL: mapped}}
    async with media_rig(gateway_factory, upstream, GATEWAY_MEDIA) as rig:
        simulator = await rig.add_cameras(1, 2, **cameras(clip))
        body = upper_offer(None, port=5000)
        unshared = await invite(rig.upper, CHANNEL2, body)  # exists, not shared
        unknown = await invite(rig.upper, "34020000001319999999", body)
        unmapped = await invite(rig.upper, CHANNEL, body)  # shared, but the upper knows it only as `mapped`
        for call in (unshared, unknown, unmapped):
            assert (call.response.status, call.response.reason) == (404, "Not Found")
            assert call.response.body == b""
        playback = await invite(rig.upper, mapped, upper_offer(None, session="Playback", port=5000))
        assert playback.response.status == 488 and "Playback" in playback.response.reason
        assert simulator.stats.invites == 0

        reasons = {r["upper_channel"]: r["reason"] for r in audit(rig, "invite")}
        assert reasons[CHANNEL2] == "channel not shared with this upstream"
        assert reasons["34020000001319999999"] == "unknown channel"
        assert "mapping" in reasons[CHANNEL]
        assert all(r["result"] == "refused" for r in audit(rig, "invite"))
        assert await rig.gateway.metric("gb_cascade_requests_total", upstream="district", kind="invite",
                                        result="404") == 3
        log = rig.gateway.log_text
        assert "channel not shared with this upstream" in log and "unknown channel" in log

        # Under its mapped ID the channel plays; the answer names nothing of the device side.
        sink = await Sink.open("udp")
        try:
            call = await invite(rig.upper, mapped, upper_offer(sink))
            assert call.response.status == 200
            await sink.first_packet()
            assert_police_side(rig, call.response)
            assert CHANNEL not in call.response.serialize().decode()
            assert await call.bye() is not None
        finally:
            await sink.close()

        await simulator.stop(unregister=True)
        registry = rig.gateway.gateway.registry
        await wait_until(lambda: not registry.get(DEVICE).online, 3, "the device offline")
        offline = await invite(rig.upper, mapped, upper_offer(None, port=5000))
        assert offline.response.status == 480
        assert audit(rig, "invite")[-1]["reason"] == f"device {DEVICE} offline"


# -- sharing the device leg ----------------------------------------------------------------------------------


@needs_ffmpeg
async def test_api_viewer_and_upper_share_the_device_leg(gateway_factory: Factory, clip: Path) -> None:
    async with media_rig(gateway_factory, gateway_config=GATEWAY_MEDIA) as rig:
        simulator = await rig.add_cameras(1, 1, **cameras(clip))
        gw = rig.gateway
        viewer, upper_sink, viewer2 = [await Sink.open("udp") for _ in range(3)]
        try:
            async with gw.http.post(f"{gw.api_url}/api/channels/{CHANNEL}/play", json=viewer.request()) as r:
                assert r.status == 200
                api_session = (await r.json())["id"]
            await viewer.first_packet()
            await asyncio.sleep(0.3)  # past the first keyframe: the upper must start on a cached one
            call = await invite(rig.upper, CHANNEL, upper_offer(upper_sink))
            assert call.response.status == 200
            await upper_sink.first_packet()
            assert starts_keyframe(upper_sink.rtp()[0].payload)
            assert simulator.stats.invites == 1  # joined, not INVITEd again

            # The API viewer leaves: the upper's stream goes on.
            assert (await gw.api(f"/api/sessions/{api_session}", "DELETE"))[0] == 200
            count = len(upper_sink.packets)
            await asyncio.sleep(0.5)
            assert len(upper_sink.packets) > count + 5
            assert call.byes_received() == [] and call.call_id in streams(rig).sessions

            # And the reverse: the upper leaves, a second API viewer goes on.
            async with gw.http.post(f"{gw.api_url}/api/channels/{CHANNEL}/play", json=viewer2.request()) as r:
                assert r.status == 200
            await viewer2.first_packet()
            assert (await call.bye()).status == 200
            count = len(viewer2.packets)
            await asyncio.sleep(0.5)
            assert len(viewer2.packets) > count + 5
            assert simulator.stats.invites == 1 and simulator.stats.byes_received == 0
            assert gaps(upper_sink.rtp()) == []
        finally:
            for sink in (viewer, upper_sink, viewer2):
                await sink.close()


# -- endings ------------------------------------------------------------------------------------------------


@needs_ffmpeg
async def test_tcp_closed_by_the_upper_and_device_bye_reach_the_upper_as_bye(gateway_factory: Factory,
                                                                            clip: Path) -> None:
    async with media_rig(gateway_factory, gateway_config=GATEWAY_MEDIA) as rig:
        simulator = await rig.add_cameras(1, 1, **cameras(clip))
        tcp_sink, udp_sink = await Sink.open("tcp-passive"), await Sink.open("udp")
        try:
            tcp_call = await invite(rig.upper, CHANNEL, upper_offer(tcp_sink))
            udp_call = await invite(rig.upper, CHANNEL, upper_offer(udp_sink))
            assert tcp_call.response.status == udp_call.response.status == 200
            await tcp_sink.connect(tcp_call.media_port)
            await tcp_sink.first_packet()
            await udp_sink.first_packet()

            await tcp_sink.close()  # the upper hangs up its media connection
            (bye,) = await rig.upper.wait(tcp_call.byes_received, 3, "a BYE for the closed TCP session")
            assert bye.uri == str(tcp_call.invite.contact.uri)
            assert_police_side(rig, bye)
            assert udp_call.call_id in streams(rig).sessions and udp_call.byes_received() == []

            (device_call,) = simulator.calls.values()
            response = await simulator.hang_up(device_call.call_id)
            assert response is not None and response.status == 200
            (bye,) = await rig.upper.wait(udp_call.byes_received, 3, "a BYE after the device's")
            assert_police_side(rig, bye)
            assert (bye.to.tag, bye.from_.tag) == (udp_call.invite.from_.tag, udp_call.response.to.tag)
            assert streams(rig).sessions == {}
        finally:
            await tcp_sink.close()
            await udp_sink.close()
        reasons = [(r["by"], r["reason"]) for r in audit(rig, "bye")]
        assert ("gateway", "stream ended: receiver closed the connection") in reasons
        assert ("gateway", "stream ended: device BYE") in reasons


@needs_ffmpeg
async def test_dead_uppers_are_torn_down(gateway_factory: Factory, clip: Path) -> None:
    """No ACK within 64*T1: ended without a BYE. RTCP that stops for 3 media timeouts: BYE. A receiver
    that never sent RTCP is not judged by it. The upper going offline: BYE to each session."""
    config = {"sip": {"t1": 0.05}, "media": {"ports": "30000-30999", "media_timeout": 1}}
    async with media_rig(gateway_factory, gateway_config=config) as rig:
        await rig.add_cameras(1, 1, **cameras(clip))
        sinks = [await Sink.open("udp") for _ in range(3)]
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            no_ack = await invite(rig.upper, CHANNEL, upper_offer(sinks[0]), ack=False)
            silent = await invite(rig.upper, CHANNEL, upper_offer(sinks[1]))
            quiet = await invite(rig.upper, CHANNEL, upper_offer(sinks[2]))
            assert no_ack.response.status == silent.response.status == quiet.response.status == 200
            # One receiver report (RFC 3550 6.4.2, no report blocks) to the RTCP port above the RTP port.
            rtcp.sendto(struct.pack("!BBHI", 0x80, 201, 1, 0x1234), ("127.0.0.1", silent.media_port + 1))
            sent_at = time.monotonic()
            table = streams(rig).sessions
            await wait_until(lambda: no_ack.call_id not in table, 64 * 0.05 + 1, "the unacknowledged session to end")
            await wait_until(lambda: silent.call_id not in table, 3 * 1 + 1.5, "the RTCP-silent session to end")
            assert time.monotonic() - sent_at >= 3 * 1 - 0.1
            await rig.upper.wait(silent.byes_received, 2, "a BYE for the RTCP-silent session")
            assert no_ack.byes_received() == []
            assert quiet.call_id in table and quiet.byes_received() == []

            link = rig.gateway.gateway.cascade.links["district"]
            link._set_online(False, "keepalive failed: test")  # what a failed keepalive does
            await rig.upper.wait(quiet.byes_received, 2, "a BYE when the upper went offline")
            assert table == {}
        finally:
            rtcp.close()
            for sink in sinks:
                await sink.close()
        reasons = {r["reason"] for r in audit(rig, "bye")}
        assert "no ACK within 3.2 s" in reasons
        assert "no RTCP from the upper for 3 s" in reasons
        assert "upper offline: keepalive failed: test" in reasons


@needs_ffmpeg
async def test_cancel_while_the_device_is_invited(gateway_factory: Factory, clip: Path) -> None:
    """The camera answers but is slow to send (the gateway waits for its first packet); the upper CANCELs
    meanwhile and gets 487. When the camera's media comes after all, the stream is released at once:
    nothing reaches the upper and, with no other receiver (idle timeout 0), the camera is hung up."""
    config = {"media": {"ports": "30000-30999", "first_packet_timeout": 3, "idle_timeout": 0}}
    async with media_rig(gateway_factory, gateway_config=config) as rig:
        simulator = await rig.add_cameras(1, 1, **cameras(clip, send=False))
        upper = rig.upper
        sink = await Sink.open("udp")
        try:
            request = invite_request(upper, CHANNEL, upper_offer(sink))
            pending = asyncio.ensure_future(upper.send(request))
            await wait_until(lambda: [c for c in simulator.calls.values() if c.state == "silent"], 3,
                             "the camera's answer and ACK")
            cancel = Request("CANCEL", request.uri, [
                ("Via", request.get("Via") or ""), ("From", request.get("From") or ""),
                ("To", request.get("To") or ""), ("Call-ID", request.call_id or ""),
                ("CSeq", f"{request.cseq.seq} CANCEL"), ("Max-Forwards", "70"),
            ])
            assert (await upper.send(cancel)).status == 200
            assert (await pending).status == 487
            assert streams(rig).sessions == {}

            (call,) = simulator.calls.values()
            call.options = dataclasses.replace(call.options, send=True)  # the camera starts sending late
            call.start(lambda _: None)
            await wait_until(lambda: simulator.stats.byes_received == 1, 3, "the camera hung up")
            await asyncio.sleep(0.2)
            assert sink.packets == []
        finally:
            await sink.close()
        assert await rig.gateway.metric("gb_invites_total", stage="ok") == 1  # the device leg did come up
        assert rig.gateway.gateway.live.sessions == {} and streams(rig).sessions == {}
        assert [r["result"] for r in audit(rig, "invite")] == ["cancelled"]
        assert audit(rig, "bye") == []


# -- sipp as the upper --------------------------------------------------------------------------------------


async def _sipp_upper(sipp: Sipp, rig: CascadeRig, scenario: str, transport: str, sink: Sink) -> Any:
    link = rig.gateway.gateway.cascade.links["district"]
    # The scenarios offer y=0100000077 (UPPER_SSRC) and expect a port of 41000-41999 (MEDIA_LOW..HIGH).
    return await sipp.start(scenario, link.config.listen.port, transport, channel=CHANNEL, upper_id=rig.upper.id,
                            upper_domain=UPPER_DOMAIN, sink_port=str(sink.port))


@pytest.mark.sipp
@requires_sipp
@needs_ffmpeg
@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_sipp_upper_plays_and_hangs_up(gateway_factory: Factory, clip: Path, sipp: Sipp,
                                            transport: str) -> None:
    async with media_rig(gateway_factory, gateway_config=GATEWAY_MEDIA) as rig:
        await rig.add_cameras(1, 1, **cameras(clip))
        sink = await Sink.open("udp")
        try:
            run = await sipp.finish(*await _sipp_upper(sipp, rig, "upper_invite.xml", transport, sink))
            assert run.returncode == 0, run.report()
            packets = sink.rtp()
        finally:
            await sink.close()
        assert packets and {p.ssrc for p in packets} == {int(UPPER_SSRC)}
        assert starts_keyframe(packets[0].payload)
        assert streams(rig).sessions == {}
        assert [r["by"] for r in audit(rig, "bye")] == ["upper"]


@pytest.mark.sipp
@requires_sipp
@needs_ffmpeg
async def test_sipp_upper_gets_bye_when_the_device_hangs_up(gateway_factory: Factory, clip: Path,
                                                           sipp: Sipp) -> None:
    async with media_rig(gateway_factory, gateway_config=GATEWAY_MEDIA) as rig:
        simulator = await rig.add_cameras(1, 1, **cameras(clip))
        sink = await Sink.open("udp")
        try:
            process, workdir = await _sipp_upper(sipp, rig, "upper_invite_recv_bye.xml", "UDP", sink)
            await sink.first_packet(8)
            await wait_until(lambda: any(s.state == "confirmed" for s in streams(rig).sessions.values()), 3,
                             "sipp's ACK")
            (device_call,) = simulator.calls.values()
            await simulator.hang_up(device_call.call_id)
            run = await sipp.finish(process, workdir)
            assert run.returncode == 0, run.report()
        finally:
            await sink.close()
        assert streams(rig).sessions == {}

"""G.711 audio from the camera to the browser, untranscoded: a simulated camera muxes a 440 Hz G.711 tone
(PS stream 0xC0, stream type 0x90 A-law or 0x91 µ-law) next to its H.264, and an aiortc WHEP client that
offers audio and video decodes both: 8 kHz audio whose dominant frequency is the tone, and the video as
before. A camera whose law the browser did not offer is translated byte by byte; a stream without
audio answers the audio section inactive. Plus the sans-IO pieces: the simulator's G.711 encoders
against the gateway's decoders, the law tables, the offer's audio formats, the track's timestamps.
"""

from __future__ import annotations

import argparse
import asyncio
import cmath
import math
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

pytest.importorskip("aiortc")
from access_harness import RunningGateway
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame
from gwproc import merge_config
from whep_harness import (
    FPS,
    HEIGHT,
    SDP,
    TOKEN_CONFIG,
    TOKENS,
    WIDTH,
    ConsoleRig,
    console_rig,
    have_ffmpeg,
    make_clip,
)

from gbgw.conformance.simulator.media import (
    TONE_HZ,
    MediaOptions,
    add_media_arguments,
    g711_tone,
    linear_to_alaw,
    linear_to_ulaw,
    media_options_from_args,
)
from gbgw.gb28181.webrtc import EncodedAudioTrack, check_offer, host_addresses
from gbgw.gb28181.webrtc.g711 import ALAW_TO_ULAW, ULAW_TO_ALAW, alaw_to_linear, ulaw_to_linear
from gbgw.rtp.elementary import StreamType
from gbgw.rtp.packetizer import PsRtpPacketizer
from gbgw.rtp.ps import PsMuxer
from gbgw.rtp.psframes import EncodedFrame, PsFrameAssembler

RATE = 8000


def dominant_frequency(samples: list[int], rate: int = RATE) -> float:
    """The strongest frequency of ``samples`` between 50 Hz and 3.5 kHz, by a plain DFT in 5 Hz steps."""
    best, best_power = 0.0, -1.0
    for step in range(10, 701):
        hz = step * 5.0
        w = -2j * math.pi * hz / rate
        power = abs(sum(s * cmath.exp(w * k) for k, s in enumerate(samples)))
        if power > best_power:
            best, best_power = hz, power
    return best


def tone_purity(samples: list[int], hz: float = TONE_HZ, rate: int = RATE) -> float:
    """The share of the signal's power at ``hz`` (1.0 for a pure tone over whole cycles): a law decoded
    as the other still repeats at the tone's period, but most of its power goes to harmonics (0.2)."""
    w = -2j * math.pi * hz / rate
    peak = abs(sum(s * cmath.exp(w * k) for k, s in enumerate(samples)))
    return peak * peak / (len(samples) / 2 * sum(s * s for s in samples))


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / len(samples))


# -- sans-IO ---------------------------------------------------------------------------------------------


def test_the_simulators_g711_encoders_invert_the_gateways_decoders() -> None:
    for encode, decode in ((linear_to_alaw, alaw_to_linear), (linear_to_ulaw, ulaw_to_linear)):
        for code in range(256):
            if decode(code) == 0 and decode is ulaw_to_linear:
                continue  # µ-law has +0 and -0: both encode back to one of them
            assert encode(decode(code)) == code, (encode.__name__, code)
        for sample in range(-32768, 32768, 97):
            error = abs(decode(encode(sample)) - sample)
            # G.711 quantisation: the step is 1/16 of the segment, so the error stays within 1/32 + 16.
            assert error <= abs(sample) / 32 + 16, (encode.__name__, sample, error)


def test_the_simulators_tone_is_a_second_of_20_ms_frames_at_its_frequency() -> None:
    frames = g711_tone(StreamType.G711A)
    assert len(frames) == 50 and {len(f) for f in frames} == {160}
    samples = [alaw_to_linear(code) for code in b"".join(frames[:3])]
    assert abs(dominant_frequency(samples) - TONE_HZ) <= 5
    assert 10000 < rms(samples) < 13000  # half scale: 16384 / sqrt(2)
    assert tone_purity(samples[:400]) > 0.99


def test_the_law_tables_keep_the_tone() -> None:
    alaw = b"".join(g711_tone(StreamType.G711A)[:3])
    as_ulaw = alaw.translate(ALAW_TO_ULAW)
    for original, translated in zip(alaw, as_ulaw, strict=True):
        # The nearest µ-law code: within half a µ-law step at that level (at most 512 at full scale).
        assert abs(ulaw_to_linear(translated) - alaw_to_linear(original)) <= 512
    assert tone_purity([ulaw_to_linear(c) for c in as_ulaw[:400]]) > 0.99
    assert tone_purity([alaw_to_linear(c) for c in as_ulaw[:400]]) < 0.5  # what no translation would play
    back = as_ulaw.translate(ULAW_TO_ALAW)
    assert abs(dominant_frequency([alaw_to_linear(c) for c in back]) - TONE_HZ) <= 5


def _offer(audio: str) -> str:
    return "\r\n".join([
        "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=ice-ufrag:abcd", "a=fingerprint:sha-256 00",
        *audio.split("|"),
        "m=video 9 UDP/TLS/RTP/SAVPF 102", "a=mid:1", "a=recvonly", "a=rtpmap:102 H264/90000",
        "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f", "",
    ])  # fmt: skip


def test_the_offer_names_the_g711_laws_its_audio_section_receives() -> None:
    rtpmap = "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8|a=mid:0|a=recvonly|a=rtpmap:111 opus/48000/2|" \
             "a=rtpmap:0 PCMU/8000|a=rtpmap:8 PCMA/8000"
    assert check_offer(_offer(rtpmap)).g711 == ["PCMU", "PCMA"]
    assert check_offer(_offer("m=audio 9 RTP/AVP 8 0|a=recvonly")).g711 == ["PCMA", "PCMU"]  # static types
    assert check_offer(_offer("m=audio 9 RTP/AVP 111|a=rtpmap:111 opus/48000/2")).g711 == []
    assert check_offer(_offer("m=audio 9 RTP/AVP 8|a=sendonly")).g711 == []
    assert check_offer(_offer("m=audio 0 RTP/AVP 8")).g711 == []
    summary = check_offer(_offer(""))
    assert summary.g711 == [] and summary.sendable == [(102, "42e01f")]


def test_the_assembler_returns_the_audio_pes_with_its_own_pts() -> None:
    muxer = PsMuxer(StreamType.H264, StreamType.G711A)
    packetizer = PsRtpPacketizer(1, 96, 1400)
    assembler = PsFrameAssembler()
    tone = g711_tone(StreamType.G711A)
    # The camera put the audio pack in the video frame's RTP timestamp: the PES keeps its own time.
    pack = muxer.mux_video(b"\x00\x00\x00\x01\x65\x88\x84", 90000, keyframe=True) + muxer.mux_audio(tone[0], 91800)
    frames = [f for p in packetizer.packetize(pack, 90000) for f in assembler.push(p)] + assembler.close()
    audio = [f for f in frames if not f.video]
    assert [(f.stream_id, f.stream_type, f.pts, f.timestamp, f.data) for f in audio] == \
        [(0xC0, StreamType.G711A, 91800, 90000, tone[0])]


async def test_the_audio_track_counts_samples_and_leaves_the_gap_of_lost_audio() -> None:
    track = EncodedAudioTrack(ALAW_TO_ULAW)

    def frame(pts: int, size: int = 160) -> EncodedFrame:
        return EncodedFrame(0, bytes(size), True, 0xC0, StreamType.G711A, pts=pts)

    # 20 ms steps with a camera's millisecond jitter, a 640-byte PES, then 200 ms of audio lost.
    for pts in (1800, 3600 + 90, 5400 - 90):
        track.push(frame(pts))
    track.push(frame(7200, 640))
    track.push(frame(7200 + 7200 + 18000))  # 640 samples are 7200 ticks
    stamps = []
    for _ in range(8):
        packet = await track.recv()
        assert packet.time_base.denominator == RATE and len(bytes(packet)) == 160
        stamps.append(packet.pts)
        assert bytes(packet) == bytes(160).translate(ALAW_TO_ULAW)
    assert stamps == [0, 160, 320, 480, 640, 800, 960, 1120 + 1600]
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


def test_the_simulator_takes_audio_from_its_command_line() -> None:
    parser = argparse.ArgumentParser()
    add_media_arguments(parser)
    assert media_options_from_args(parser.parse_args(["--media-audio", "pcma"])).audio == "pcma"
    assert media_options_from_args(parser.parse_args([])).audio == ""
    with pytest.raises(ValueError, match="media audio"):
        MediaOptions(audio="opus")


# -- through a running gateway ---------------------------------------------------------------------------

needs_ffmpeg = pytest.mark.skipif(not have_ffmpeg(), reason="needs ffmpeg/ffprobe (Debian package ffmpeg)")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not have_ffmpeg():
        pytest.skip("needs ffmpeg/ffprobe (Debian package ffmpeg)")
    return make_clip(tmp_path_factory.mktemp("audio"), 2)


@pytest.fixture
async def rig_factory(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], clip: Path
) -> AsyncIterator[Callable[..., Awaitable[ConsoleRig]]]:
    rigs: list[ConsoleRig] = []

    async def make(audio: str) -> ConsoleRig:
        config = merge_config(TOKEN_CONFIG, {"media": {"ports": "32000-32999", "idle_timeout": 0.5}})
        rig = await console_rig(await gateway_factory(config), TOKENS["operator"])
        rigs.append(rig)
        await rig.camera(MediaOptions(file=clip, fps=FPS, audio=audio))
        return rig

    yield make
    for rig in rigs:
        await rig.close()


class Player:
    """What an aiortc WHEP client decoded: video frame sizes, and audio samples with their rates."""

    def __init__(self, laws: tuple[str, ...]) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        audio = self.pc.addTransceiver("audio", direction="recvonly")
        audio.setCodecPreferences([c for c in RTCRtpReceiver.getCapabilities("audio").codecs
                                   if c.mimeType.upper() in {f"AUDIO/{law}" for law in laws}])
        self.video: list[tuple[int, int]] = []
        self.samples: list[int] = []
        self.rates: set[int] = set()
        self.tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._track)

    def _track(self, track: MediaStreamTrack) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(self._receive(track)))

    async def _receive(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, AudioFrame):
                self.rates.add(frame.sample_rate)
                self.samples.extend(array("h", bytes(frame.planes[0]))[: frame.samples * len(frame.layout.channels)])
            else:
                self.video.append((frame.width, frame.height))  # type: ignore[union-attr]

    async def watch(self, rig: ConsoleRig) -> str:
        """Offer, apply the answer; the answer's SDP."""
        with host_addresses(["127.0.0.1"]):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        status, headers, answer = await rig.offer(self.pc.localDescription.sdp)
        assert status == 201 and headers["Content-Type"] == SDP, answer
        await self.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        return answer

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"no {what} in {timeout:g} s"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


def _audio_section(answer: str) -> str:
    return next(block for block in answer.split("m=")[1:] if block.startswith("audio"))


@needs_ffmpeg
@pytest.mark.parametrize(("camera", "offered", "sent"), [
    ("pcma", ("PCMU", "PCMA"), "PCMA"),  # the camera's law, passed through
    ("pcmu", ("PCMA",), "PCMA"),  # the browser took only A-law: translated
])  # fmt: skip
async def test_a_whep_client_hears_the_cameras_g711_and_sees_its_video(
    rig_factory: Callable[..., Awaitable[ConsoleRig]], camera: str, offered: tuple[str, ...], sent: str,
) -> None:
    rig = await rig_factory(camera)
    player = Player(offered)
    try:
        async with asyncio.timeout(15):
            answer = await player.watch(rig)
            audio = _audio_section(answer)
            assert "a=sendonly" in audio and f" {sent}/8000" in audio, audio
            # A second and a half of audio (the jitter buffer delays the first), and video frames.
            await player.until(lambda: len(player.samples) >= 1.5 * RATE and len(player.video) >= FPS, 10,
                               "audio and video")
        assert player.rates == {RATE}
        # 400 samples (50 ms, 22 whole cycles) a second in, past the jitter buffer's start.
        window = player.samples[RATE : RATE + 400]
        print(f"\n{camera} camera, {sent} sent: rms {rms(window):.0f}, {dominant_frequency(window):g} Hz, "
              f"purity {tone_purity(window):.3f}")
        assert rms(window) > 5000, rms(window)
        assert abs(dominant_frequency(window) - TONE_HZ) <= 10
        assert tone_purity(window) > 0.9
        assert set(player.video) == {(WIDTH, HEIGHT)}
        (viewer,) = rig.viewers.stats()
        assert viewer.audio == sent and viewer.audio_packets_sent >= 50
    finally:
        await player.close()


@needs_ffmpeg
async def test_a_stream_without_audio_answers_the_audio_section_inactive(
    rig_factory: Callable[..., Awaitable[ConsoleRig]],
) -> None:
    rig = await rig_factory("")
    player = Player(("PCMA", "PCMU"))
    try:
        async with asyncio.timeout(15):
            answer = await player.watch(rig)
            assert "a=inactive" in _audio_section(answer)
            await player.until(lambda: len(player.video) >= FPS, 10, "video")
        assert player.samples == [] and set(player.video) == {(WIDTH, HEIGHT)}
        (viewer,) = rig.viewers.stats()
        assert viewer.audio is None and viewer.audio_packets_sent == 0
    finally:
        await player.close()

"""WebRTC egress benchmark: CPU per H.264 passthrough viewer, click -> first frame, H.265 transcoding cost.

Run: python3 tests/bench/bench_webrtc.py [--viewers 16] [--mbps 2] [--seconds 10] [--runs 5] [--h265]

The gateway runs as its own process (``python3 -m gbgw.gb28181 run``, logging at warning, memory store); a
`DeviceSimulator` camera streams an FFmpeg-made 1280x720 25 fps H.264 clip at --mbps (a keyframe a second)
and the WHEP clients are aiortc peer connections in this process.

(1) Start, --runs times each: offer POSTed -> first frame decoded by the client. Cold: the channel is not
    streaming (``media.idle_timeout`` 0, so the DELETE ends the device leg and the next offer INVITEs);
    warm: another viewer keeps the channel streaming and the new one joins on the cached keyframe.
(2) Load: --viewers concurrent viewers of one channel. The clients do not decode (their decoder is replaced
    by a counter of the frames the jitter buffer completed): only the gateway's CPU is measured. Figures:
    the gateway's CPU over --seconds with one viewer and with all of them, the difference per added viewer
    (the cost of a viewer: packetisation, SRTP, send, RTCP), and frames each client completed.
(3) --h265: PyAV's hevc decoder + libx264 (the ``console.transcode_h265`` path, `PictureCodec`) over
    ffmpeg-made 720p25 and 1080p25 H.265 clips, CPU seconds per second of video, in this process.

Figures are printed, never asserted: they depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import aiortc.rtcrtpreceiver
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from benchkit import PASSWORD, GatewayProcess, cpu_seconds, load_average, percentile

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import MediaOptions
from gbgw.gb28181.webrtc import host_addresses

FPS = 25


def make_clip(folder: Path, mbps: float, *, codec: str = "h264", size: str = "1280x720") -> Path:
    path = folder / f"clip-{size}.{codec}"
    rate = f"{mbps:g}M"
    encoder = (["-c:v", "libx264", "-bf", "0", "-b:v", rate, "-maxrate", rate, "-bufsize", rate]
               if codec == "h264" else ["-c:v", "libx265", "-x265-params", "log-level=error:bframes=0"])
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={FPS}",
                    "-t", "10", "-pix_fmt", "yuv420p", *encoder, "-g", str(FPS),
                    "-f", "h264" if codec == "h264" else "hevc", str(path)], check=True, timeout=300)
    return path


class CountingDecoder:
    """Stands in for the client's H.264 decoder in the load run: the client costs no decoding."""

    frames = 0

    def decode(self, _encoded: Any) -> list[Any]:
        CountingDecoder.frames += 1
        return []


class Client:
    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        self.first = asyncio.get_running_loop().create_future()
        self.location = ""
        self.pc.on("track", lambda track: asyncio.ensure_future(self._receive(track)))

    async def _receive(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            if not self.first.done():
                self.first.set_result(time.perf_counter())

    async def connect(self, http: aiohttp.ClientSession, url: str) -> float:
        """Offer and answer; the perf_counter time of the POST."""
        with host_addresses(["127.0.0.1"]):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        started = time.perf_counter()
        async with http.post(url, data=self.pc.localDescription.sdp.encode(),
                             headers={"Content-Type": "application/sdp"}) as response:
            body = await response.text()
            if response.status != 201:
                raise RuntimeError(f"WHEP offer failed: {response.status} {body}")
            self.location = response.headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
        return started

    async def close(self, http: aiohttp.ClientSession, base: str) -> None:
        async with http.delete(base + self.location):
            pass
        await self.pc.close()


async def start_runs(http: aiohttp.ClientSession, gateway: GatewayProcess, whep: str, runs: int) -> None:
    cold = []
    for _ in range(runs):
        client = Client()
        started = await client.connect(http, whep)
        cold.append((await asyncio.wait_for(client.first, 10) - started) * 1000)
        await client.close(http, gateway.url)
        await asyncio.sleep(0.3)  # idle_timeout 0: the BYE goes, the next offer INVITEs
    keeper = Client()
    await keeper.connect(http, whep)
    await asyncio.wait_for(keeper.first, 10)
    warm = []
    for _ in range(runs):
        client = Client()
        started = await client.connect(http, whep)
        warm.append((await asyncio.wait_for(client.first, 10) - started) * 1000)
        await client.close(http, gateway.url)
    await keeper.close(http, gateway.url)
    for name, values in (("cold (INVITE)", cold), ("warm (joins a running stream)", warm)):
        print(f"offer -> first decoded frame, {name}, {runs} runs: p50 {percentile(values, 0.5):.0f} ms  "
              f"max {max(values):.0f} ms")


async def load_run(http: aiohttp.ClientSession, gateway: GatewayProcess, whep: str, viewers: int,
                   seconds: float) -> None:
    aiortc.rtcrtpreceiver.get_decoder = lambda _codec: CountingDecoder()  # type: ignore[assignment,return-value]
    pid = gateway.process.pid
    clients = [Client()]
    await clients[0].connect(http, whep)
    await asyncio.sleep(3)
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    one = (cpu_seconds(pid) - before) / seconds
    for _ in range(viewers - 1):
        client = Client()
        await client.connect(http, whep)
        clients.append(client)
    await asyncio.sleep(3)
    frames_before = CountingDecoder.frames
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    everyone = (cpu_seconds(pid) - before) / seconds
    frames = (CountingDecoder.frames - frames_before) / len(clients) / seconds
    async with http.get(gateway.url + "/api/webrtc/viewers") as response:
        stats = await response.json()
    kbps = sum(v["bitrate_kbps"] for v in stats) / max(1, len(stats))
    print(f"gateway CPU: {one * 100:.1f} % of a core with 1 viewer, {everyone * 100:.1f} % with {len(clients)}; "
          f"per added viewer {(everyone - one) / (len(clients) - 1) * 100:.2f} % "
          f"(all-in {everyone / len(clients) * 100:.2f} % per viewer); {frames:.1f} frames/s per client, "
          f"{kbps:.0f} kbit/s each; load average {load_average()}")
    for client in clients:
        await client.close(http, gateway.url)


def h265_cost(folder: Path) -> None:
    import av

    from gbgw.gb28181.webrtc.transcode import PictureCodec
    from gbgw.rtp.elementary import StreamType
    from gbgw.rtp.psframes import EncodedFrame

    for size in ("1280x720", "1920x1080"):
        clip = make_clip(folder, 0, codec="h265", size=size)
        units = [EncodedFrame(i * 3600, bytes(p), p.is_keyframe, 0xE0, StreamType.H265)
                 for i, p in enumerate(av.CodecContext.create("hevc", "r").parse(clip.read_bytes()))]
        codec = PictureCodec()
        used = resource.getrusage(resource.RUSAGE_SELF)
        out = sum(len(codec.convert(unit)) for unit in units)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
        print(f"H.265 -> H.264 {size}p{FPS}: {cpu / (len(units) / FPS):.2f} of a core "
              f"({len(units)} frames in, {out} out)")


async def main_async(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-webrtc-"))
    if args.h265:
        h265_cost(folder)
        return
    clip = make_clip(folder, args.mbps)
    gateway = GatewayProcess(folder, media={"ip": "127.0.0.1", "ports": "30000-30400", "idle_timeout": 0},
                             console={"max_viewers": args.viewers + 2})
    camera: DeviceSimulator | None = None
    try:
        async with aiohttp.ClientSession() as http:
            await gateway.ready(http)
            camera = DeviceSimulator(SimulatorConfig(server_host="127.0.0.1", server_port=gateway.sip_port,
                                                     password=PASSWORD, media=MediaOptions(file=clip, fps=FPS)))
            await camera.start()
            await camera.wait_registered()
            device = camera.device_id(0)
            (channel,) = await gateway.channels(http, device, 1)
            whep = f"{gateway.url}/api/devices/{device}/channels/{channel}/whep"
            print(f"clip: 1280x720 {FPS} fps, {clip.stat().st_size * 8 / 10 / 1e6:.2f} Mbit/s")
            await start_runs(http, gateway, whep, args.runs)
            await load_run(http, gateway, whep, args.viewers, args.seconds)
    finally:
        if camera is not None:
            await camera.stop(unregister=False, timeout=2)
        gateway.print_log_tail()
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--viewers", type=int, default=16)
    parser.add_argument("--mbps", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--h265", action="store_true", help="only the H.265 transcoding cost")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Cascade media benchmark: an upper platform's INVITE to its first PS packet, cold and when the channel is
already streaming.

Run: python3 tests/bench/bench_cascade_media.py [--runs N]

The gateway runs as its own process (``python3 -m gb28181 run``, uvloop, logging at warning, in-memory
store) with one upstream pointing at a `FakeUpper` in this process; a `DeviceSimulator` camera streams an
FFmpeg-made H.264 clip (320x240, 25 fps, a keyframe a second) over loopback. The upper INVITEs over SIP
(UDP) with a UDP media offer on a fresh socket and the clock runs from just before the INVITE is sent
to the first RTP packet on that socket; then it ACKs and BYEs.

(1) Cold, --runs times: nobody watches the channel, so the gateway INVITEs the camera (media.idle_timeout
    is 0: after the upper's BYE the gateway hangs up the camera, and the next INVITE starts over).
    Target <= 250 ms.
(2) Warm, --runs times: an API viewer keeps the other channel streaming; the upper joins it and the relay
    starts it on the cached GOP. Target <= 30 ms, and each first packet must start a keyframe (a PS pack
    header followed by a system header or stream map), which is asserted.

Figures are printed with the targets; only the keyframe start is asserted (timings depend on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gb28181"))

from benchkit import PASSWORD, GatewayProcess, percentile, run_loop
from media_harness import parse_rtp, starts_keyframe
from upper_harness import UPPER_ID, FakeUpper, upstream_config

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import MediaOptions
from gbgw.sip.dialog import Dialog
from gbgw.sip.endpoint import Peer
from gbgw.sip.message import Request

FPS = 25
COLD_TARGET_MS = 250.0
WARM_TARGET_MS = 30.0


def _summary(values: list[float], target: float) -> str:
    p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
    verdict = "met" if p95 <= target else "MISSED"
    return (f"p50 {p50:.1f} ms  p95 {p95:.1f} ms  max {max(values):.1f} ms  "
            f"(target <= {target:g} ms at p95: {verdict})")


def gateway_process(workdir: Path, upper: FakeUpper) -> GatewayProcess:
    return GatewayProcess(workdir, upstreams=[upstream_config(upper)],
                          media={"ip": "127.0.0.1", "ports": "30000-30999", "idle_timeout": 0, "first_packet_timeout": 5})


class FirstPacket(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.first: asyncio.Future[tuple[float, bytes]] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not self.first.done() and len(data) >= 12 and not 192 <= data[1] <= 223:
            self.first.set_result((time.perf_counter(), data))


def offer(port: int) -> bytes:
    return (f"v=0\r\no={UPPER_ID} 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=video {port} RTP/AVP 96 98 97\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\na=rtpmap:98 H264/90000\r\n"
            "a=rtpmap:97 MPEG4/90000\r\ny=0100000042\r\n").encode()


async def timed_invite(upper: FakeUpper, channel: str) -> tuple[float, bytes]:
    """(ms from sending the INVITE to the first RTP packet at the upper, that packet's payload); the call
    is ACKed and hung up before returning."""
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(FirstPacket, local_addr=("127.0.0.1", 0))
    gateway = upper.gateway
    assert gateway is not None
    peer = Peer(gateway.transport, gateway.host, gateway.port)
    try:
        port = transport.get_extra_info("sockname")[1]
        request: Request = upper.request("INVITE", channel, offer(port), "APPLICATION/SDP")
        started = time.perf_counter()
        response = await asyncio.wait_for(upper.send(request), 10)
        if response.status != 200:
            raise RuntimeError(f"INVITE answered {response.status} {response.reason}")
        dialog = Dialog.from_uac(request, response, peer)
        upper.transport.send_ack(dialog.create_ack(request.cseq.seq, via=upper.transport.via("UDP")), peer)
        first, data = await asyncio.wait_for(sink.first, 5)
        bye = dialog.create_request("BYE", via=upper.transport.via("UDP"))
        await asyncio.wait_for(upper.transport.send_request(bye, peer), 5)
        return (first - started) * 1000, parse_rtp(data).payload
    finally:
        transport.close()


async def runs(http: aiohttp.ClientSession, gateway: GatewayProcess, upper: FakeUpper, clip: Path, count: int) -> None:
    camera = DeviceSimulator(SimulatorConfig(
        server_host="127.0.0.1", server_port=gateway.sip_port, password=PASSWORD, channels=2,
        media=MediaOptions(file=clip, fps=FPS),
    ))
    await camera.start()
    viewer: asyncio.DatagramTransport | None = None
    try:
        await camera.wait_registered()
        cold_channel, warm_channel = await gateway.channels(http, camera.device_id(0), 2)
        cold = []
        for _ in range(count):
            latency, _ = await timed_invite(upper, cold_channel)
            cold.append(latency)
            # Idle timeout 0: the gateway hangs up the camera after the BYE; the next INVITE starts over.
            for _ in range(500):
                if not camera.calls:
                    break
                await asyncio.sleep(0.002)
            else:
                raise RuntimeError("the camera's call outlived the upper's BYE")
        print(f"cold: upper INVITE -> first PS packet ({count} runs, camera INVITEd each time): "
              f"{_summary(cold, COLD_TARGET_MS)}")

        invites = camera.stats.invites
        viewer, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        async with http.post(f"{gateway.url}/api/channels/{warm_channel}/play",
                             json={"host": "127.0.0.1", "port": viewer.get_extra_info("sockname")[1],
                                   "transport": "udp"}) as response:
            if response.status != 200:
                raise RuntimeError(f"API viewer: {await response.text()}")
        warm = []
        keyframe_starts = 0
        for index in range(count):
            # Spread the joins over the GOP, so the cache holds from one frame to a whole second.
            await asyncio.sleep((index % FPS) / FPS / 5)
            latency, payload = await timed_invite(upper, warm_channel)
            warm.append(latency)
            keyframe_starts += starts_keyframe(payload)
        print(f"warm: upper INVITE -> first PS packet ({count} runs, {camera.stats.invites - invites} camera "
              f"INVITE for them all): {_summary(warm, WARM_TARGET_MS)}")
        print(f"warm: first packet starts a keyframe in {keyframe_starts}/{count} runs")
        assert keyframe_starts == count, "a joining upper must start on a keyframe"
    finally:
        if viewer is not None:
            viewer.close()
        await camera.stop(unregister=False, timeout=2)


def make_clip(workdir: Path) -> Path:
    clip = workdir / "clip.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}",
                    "-t", "2", "-c:v", "libx264", "-g", str(FPS), "-bf", "0", "-f", "h264", str(clip)],
                   check=True, timeout=60)
    return clip


async def main_async(args: argparse.Namespace) -> None:
    if shutil.which("ffmpeg") is None:
        print("ffmpeg not found: nothing to stream")
        return
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        upper = await FakeUpper().start()
        gateway = gateway_process(workdir, upper)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await gateway.ready(http)
                await asyncio.wait_for(upper.registered.wait(), 10)
                print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  cpus: {os.cpu_count()}")
                await runs(http, gateway, upper, make_clip(workdir), args.runs)
        finally:
            gateway.stop()
            await upper.close()
            gateway.print_log_tail()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50, help="samples of each kind (default 50)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    run_loop(main_async(args), fewer_collections=True)


if __name__ == "__main__":
    main()

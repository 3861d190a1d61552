"""Cascade playback benchmark: an upper's Playback INVITE to its first packet, a seek (INFO) to the first
packet at the new position, and many concurrent playbacks next to as many live streams.

Run: python3 tests/bench/bench_playback.py [--runs N] [--streams N] [--mbps R] [--seconds S]
(``--streams 200`` for issue 11's figure; the default is small so a run stays under a minute.)

The gateway runs in this process (uvloop, logging at warning, in-memory store) with the recordings feature
wired as tests/gb28181/test_cascade_playback.py wires it until the daemon does; the upper is the suite's
FakeUpper (SIP only); media reaches plain UDP sockets.

(1) Latency, --runs times: a `DeviceSimulator` NVR streams an FFmpeg-made H.264 clip as a 30 s recording;
    the upper INVITEs ``s=Playback`` and the time to the first RTP packet at its sink is taken; then an INFO
    ``PLAY Range: npt=20-`` and the time from sending it to the first packet whose RTP timestamp is past
    15 s of media (the new position); then BYE. Printed: p50/p95/max against the targets (200 / 150 ms).
(2) Load: --streams channels of one simulated NVR (SIP only, silent) get their device stream of --mbps
    Mbit/s from bench_live's blaster process and one UDP output each into bench_live's sink process. Run
    twice, the same way: once as upper Playbacks (a device leg per session), once as upper live Plays.
    Printed per run over --seconds: packets sent and received, loss (sequence numbers missing at the
    sinks), this process's CPU time per stream.
    The process also runs the upper and the NVR's signalling, idle while media flows.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gb28181"))

from bench_live import _spawn, blaster_process, make_clip, sink_process
from benchkit import DOMAIN, GATEWAY_ID, PASSWORD, cpu_seconds, load_average, percentile, run_loop
from test_cascade_playback import wire
from upper_harness import FakeUpper, upstream_config
from wire import free_port

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import MediaOptions
from gbgw.gb28181.app.daemon import Gateway
from gbgw.gb28181.config import load_config
from gbgw.sip.dialog import Dialog
from gbgw.sip.endpoint import Peer
from gbgw.sip.message import Request, Response

FPS = 25
CAMERA_PREFIX = "3402000000118"
NVR_PREFIX = "3402000001118"
_CLOCK = 90_000


class Sink(asyncio.DatagramProtocol):
    """First packet time, and the first packet past ``position`` seconds of media after ``mark``."""

    def __init__(self) -> None:
        self.first: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.base: int | None = None
        self.mark = float("inf")
        self.position = 0.0
        self.moved: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if len(data) < 12 or 192 <= data[1] <= 223:
            return
        now = time.perf_counter()
        timestamp = int.from_bytes(data[4:8], "big")
        if self.base is None:
            self.base = timestamp
            self.first.set_result(now)
        elif (now >= self.mark and not self.moved.done()
              and ((timestamp - self.base) & 0xFFFFFFFF) / _CLOCK > self.position):
            self.moved.set_result(now)


def offer(kind: str, channel: str, port: int, timing: tuple[int, int] | None) -> bytes:
    lines = ["v=0", f"o={GATEWAY_ID[:-1]}9 0 0 IN IP4 127.0.0.1", f"s={kind}", f"u={channel}:0",
             "c=IN IP4 127.0.0.1", f"t={timing[0]} {timing[1]}" if timing else "t=0 0",
             f"m=video {port} RTP/AVP 96", "a=recvonly", "a=rtpmap:96 PS/90000"]
    return ("\r\n".join(lines) + "\r\n").encode()


def recorded(seconds: int) -> tuple[int, int]:
    start = int((datetime.now().astimezone() - timedelta(hours=1)).timestamp())
    return start, start + seconds


class Call:
    def __init__(self, upper: FakeUpper, request: Request, response: Response) -> None:
        self.upper, self.request, self.response = upper, request, response
        gateway = upper.gateway
        assert gateway is not None
        self.peer = Peer(gateway.transport, gateway.host, gateway.port)
        self.dialog: Dialog | None = None
        if response.status == 200:
            self.dialog = Dialog.from_uac(request, response, self.peer)
            upper.transport.send_ack(self.dialog.create_ack(request.cseq.seq, via=upper.transport.via("UDP")),
                                     self.peer)

    async def send(self, method: str, body: bytes = b"", content_type: str | None = None) -> Response:
        assert self.dialog is not None
        request = self.dialog.create_request(method, via=self.upper.transport.via("UDP"), body=body,
                                             content_type=content_type)
        return await self.upper.transport.send_request(request, self.peer)


async def invite(upper: FakeUpper, channel: str, body: bytes) -> Call:
    request = upper.request("INVITE", channel, body, "APPLICATION/SDP")
    return Call(upper, request, await upper.send(request))


async def latency_runs(upper: FakeUpper, gateway: Gateway, clip: Path, runs: int) -> None:
    camera = DeviceSimulator(SimulatorConfig(
        server_host="127.0.0.1", server_port=gateway.sip_port, password=PASSWORD, id_prefix=CAMERA_PREFIX,
        media=MediaOptions(file=clip, fps=FPS),
    ))
    await camera.start()
    loop = asyncio.get_running_loop()
    try:
        await camera.wait_registered()
        device = camera.device_id(0)
        while not gateway.registry.channels(device):
            await asyncio.sleep(0.02)
        channel = gateway.registry.channels(device)[0].id
        firsts, seeks = [], []
        for _ in range(runs):
            transport, sink = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
            try:
                port = transport.get_extra_info("sockname")[1]
                started = time.perf_counter()
                call = await invite(upper, channel, offer("Playback", channel, port, recorded(30)))
                if call.response.status != 200:
                    raise RuntimeError(f"playback refused: {call.response.start_line()}")
                firsts.append((await asyncio.wait_for(sink.first, 5) - started) * 1000)
                await asyncio.sleep(0.2)
                sink.position, sink.mark = 15.0, time.perf_counter()
                answer = await call.send("INFO", b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: npt=20-\r\n\r\n",
                                         "Application/MANSRTSP")
                if answer.status != 200:
                    raise RuntimeError(f"seek refused: {answer.start_line()}")
                seeks.append((await asyncio.wait_for(sink.moved, 5) - sink.mark) * 1000)
                await call.send("BYE")
            finally:
                transport.close()
            while camera.calls:
                await asyncio.sleep(0.002)
        print(f"playback INVITE -> first packet ({runs} runs): p50 {percentile(firsts, 0.5):.1f} ms  "
              f"p95 {percentile(firsts, 0.95):.1f} ms  max {max(firsts):.1f} ms  (target <= 200 ms)")
        print(f"seek INFO -> first packet at the new position ({runs} runs): p50 {percentile(seeks, 0.5):.1f} ms  "
              f"p95 {percentile(seeks, 0.95):.1f} ms  max {max(seeks):.1f} ms  (target <= 150 ms)")
    finally:
        await camera.stop(unregister=False, timeout=2)


async def load_run(upper: FakeUpper, gateway: Gateway, nvr: DeviceSimulator, channels: list[str], kind: str,
                   mbps: float, seconds: float) -> dict[str, float]:
    streams = len(channels)
    sinks, sink_conn = _spawn(sink_process, streams)
    sink_ports: list[int] = sink_conn.recv()
    blaster, blaster_conn = _spawn(blaster_process, mbps)
    fed: set[str] = set()

    async def feed() -> None:
        while True:
            for call_id, device_call in list(nvr.calls.items()):
                if call_id not in fed and device_call.state == "silent":
                    fed.add(call_id)
                    blaster_conn.send(("add", device_call.target[0], device_call.target[1], device_call.ssrc))
            await asyncio.sleep(0.005)

    feeder = asyncio.get_running_loop().create_task(feed())
    limit = asyncio.Semaphore(32)
    timing = recorded(3600) if kind == "Playback" else None

    async def start(channel: str, port: int) -> Call:
        async with limit:
            return await invite(upper, channel, offer(kind, channel, port, timing))

    try:
        started = time.perf_counter()
        calls = await asyncio.gather(*(start(c, p) for c, p in zip(channels, sink_ports, strict=True)))
        answered = sum(1 for c in calls if c.response.status == 200)
        setup = time.perf_counter() - started
        await asyncio.sleep(1.0)
        blaster_conn.send(("stats",))
        sent_before = blaster_conn.recv()["sent"]
        sink_conn.send("stats")
        received_before = sink_conn.recv()
        cpu_before, clock_before = cpu_seconds(os.getpid()), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu = cpu_seconds(os.getpid()) - cpu_before
        window = time.perf_counter() - clock_before
        blaster_conn.send(("stats",))
        sent = blaster_conn.recv()["sent"] - sent_before
        await asyncio.sleep(0.3)
        sink_conn.send("stats")
        received_after = sink_conn.recv()
        received = received_after["received"] - received_before["received"]
        missing = received_after["missing"] - received_before["missing"]
        figures = {"cpu_per_stream": cpu / window / max(1, answered), "loss": missing / max(1, received + missing)}
        print(f"{kind.lower()}: {answered}/{streams} upper sessions of {mbps:g} Mbit/s set up in {setup:.1f} s; "
              f"over {window:.1f} s sent {sent:,} packets, sinks got {received:,} "
              f"({missing:,} sequence numbers missing: {figures['loss']:.3%} lost; "
              f"{received_after['silent']} silent sinks); CPU {cpu / window:.0%} of one core, "
              f"{figures['cpu_per_stream']:.2%} per stream; load average {load_average()}")
        for call in calls:
            if call.dialog is not None:
                with contextlib.suppress(Exception):
                    await call.send("BYE")
        return figures
    finally:
        feeder.cancel()
        blaster_conn.send(("stop",))
        with contextlib.suppress(EOFError):
            blaster_conn.recv()
        sink_conn.send("stop")
        with contextlib.suppress(EOFError):
            sink_conn.recv()
        blaster.join(5)
        sinks.join(5)
        while nvr.calls:
            await asyncio.sleep(0.05)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        upper = await FakeUpper().start()
        ports = 6 * max(args.streams, 1) + 200
        data: dict[str, Any] = {
            "sip": {"id": GATEWAY_ID, "domain": DOMAIN, "listen": f"127.0.0.1:{free_port()}", "password": PASSWORD},
            "api": {"listen": f"127.0.0.1:{free_port()}"},
            "storage": {"backend": "memory"},
            "log": {"level": "warning", "format": "json"},
            "audit": {"path": str(workdir / "audit.log")},
            "media": {"ip": "127.0.0.1", "ports": f"30000-{30000 + ports}", "idle_timeout": 0,
                      "first_packet_timeout": 10},
            "upstreams": [upstream_config(upper, media_ports=f"41000-{41000 + ports}",
                                          share=[{"prefix": "34020000"}])],
        }
        gateway = Gateway(load_config(data))
        await gateway.start()
        try:
            await asyncio.wait_for(upper.registered.wait(), 5)
            wire(gateway)
            print(f"load average before: {load_average()}  cpus: {os.cpu_count()}")
            clip = make_clip(workdir)
            if clip is None:
                print("ffmpeg not found: skipping the latency runs")
            elif args.runs:
                await latency_runs(upper, gateway, clip, args.runs)
            if args.streams:
                nvr = DeviceSimulator(SimulatorConfig(
                    server_host="127.0.0.1", server_port=gateway.sip_port, password=PASSWORD, id_prefix=NVR_PREFIX,
                    channels=args.streams, catalog_page_size=50, media=MediaOptions(send=False),
                ))
                await nvr.start()
                try:
                    await nvr.wait_registered(timeout=10)
                    device = nvr.device_id(0)
                    for _ in range(400):
                        if len(gateway.registry.channels(device)) >= args.streams:
                            break
                        await asyncio.sleep(0.05)
                    channels = sorted(c.id for c in gateway.registry.channels(device))[: args.streams]
                    playback = await load_run(upper, gateway, nvr, channels, "Playback", args.mbps, args.seconds)
                    live = await load_run(upper, gateway, nvr, channels, "Play", args.mbps, args.seconds)
                    ratio = playback["cpu_per_stream"] / max(1e-9, live["cpu_per_stream"])
                    print(f"CPU per playback stream / per live stream: {ratio:.2f} (target within 10 %: 0.90-1.10)")
                finally:
                    await nvr.stop(unregister=False, timeout=5)
        finally:
            await gateway.stop()
            await upper.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="latency samples (default 20)")
    parser.add_argument("--streams", type=int, default=20, help="concurrent playbacks, then live streams (default 20)")
    parser.add_argument("--mbps", type=float, default=2.0, help="Mbit/s per stream (default 2)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window (default 5)")
    args = parser.parse_args()
    # In process the daemon's log set-up does not run: warnings only, as the gateway process of bench_live.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    run_loop(main_async(args), fewer_collections=True)


if __name__ == "__main__":
    main()

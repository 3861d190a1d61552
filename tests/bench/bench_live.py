"""Live video benchmark: play latency, join latency, and many concurrent device streams through a gateway.

Run: python3 tests/bench/bench_live.py [--runs N] [--streams N] [--mbps R] [--seconds S]

The gateway runs as its own process (``python3 -m gb28181 run``, uvloop, logging at warning) with an
in-memory store; everything reaches it as a platform and devices would: SIP, RTP and the HTTP API.

(1) Play latency, --runs times: a `DeviceSimulator` camera streams an FFmpeg-made H.264 clip (320x240,
    25 fps); the time from the play request to the first RTP packet at a UDP sink, then DELETE (idle
    timeout 0, so the gateway BYEs the camera and the next play INVITEs again). Printed: p50/p95/max.
(2) Join latency, --runs times: with one viewer on the channel, a second play joins the running stream
    (no INVITE); the time to its first packet, which the relay's GOP cache sends at once.
(3) Load: --streams channels of one simulated NVR (SIP only: it answers INVITEs and sends nothing) each
    get a device stream of --mbps Mbit/s from a blaster process (PS over RTP built by the project's
    PsMuxer/PsRtpPacketizer once, sent with rewritten sequence numbers, timestamps and SSRC, 25 fps,
    a keyframe per second, streams spread over the frame interval as independent cameras are), and one
    UDP output each into a sink process counting packets and sequence gaps per socket. After set-up the
    figures are taken over --seconds: packets the blaster sent, what the gateway took in and sent out
    (its session stats), what the sinks got, loss at each step, and the gateway's CPU time.

Figures are printed, never asserted: they depend on the machine (the load average is printed too). On a
small machine the three processes compete for the same cores, so loss there is the machine's as much as
the gateway's; the gateway's CPU share says how much headroom it had.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import multiprocessing
import multiprocessing.connection
import os
import random
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchkit import PASSWORD, GatewayProcess, cpu_seconds, load_average, percentile, run_loop

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import MediaOptions
from gbgw.rtp.elementary import StreamType
from gbgw.rtp.packetizer import PsRtpPacketizer
from gbgw.rtp.ps import PsMuxer

FPS = 25
MTU = 1400
# The latency camera and the load NVR have different centre codes, so their channel IDs never collide.
CAMERA_PREFIX = "3402000000132"
NVR_PREFIX = "3402000001118"
_HEADER = struct.Struct("!BBHII")


# -- the device side of the load: a blaster ---------------------------------------------------------------


def gop_template(mbps: float) -> list[list[bytearray]]:
    """One second of PS over RTP at ``mbps``: a keyframe 4x the size of each of the 24 P-frames after it.

    The payload is random bytes behind real PS headers: the relay reads nothing but the RTP header and,
    on a frame's first packet, the PS pack header and the system header or stream map behind it.
    """
    per_second = mbps * 1e6 / 8
    p_size = int(per_second / (FPS - 1 + 4))
    muxer = PsMuxer(video=StreamType.H264)
    packetizer = PsRtpPacketizer(0, 96, MTU)
    frames = []
    for index in range(FPS):
        size = 4 * p_size if index == 0 else p_size
        nal = b"\x00\x00\x00\x01" + (b"\x65" if index == 0 else b"\x41") + random.randbytes(size)
        ps = muxer.mux_video(nal, index * 3600, keyframe=index == 0)
        frames.append([bytearray(p) for p in packetizer.packetize(ps, index * 3600)])
    return frames


def blaster_process(conn: multiprocessing.connection.Connection, mbps: float) -> None:
    """Streams to every (host, port, ssrc) it is sent, until told to stop; one socket for all (the
    gateway latches each stream's source on its first packet, whatever port it comes from)."""
    template = gop_template(mbps)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    pack = _HEADER.pack_into
    interval = 1 / FPS
    # (due, stream index); a stream is [destination, ssrc, next sequence number, frame count, timestamp base]
    heap: list[tuple[float, int]] = []
    streams: list[list[Any]] = []
    sent = errors = 0
    while True:
        now = time.perf_counter()
        while heap and heap[0][0] <= now:
            due, index = heapq.heappop(heap)
            stream = streams[index]
            destination, ssrc, seq, count, base = stream
            packets = template[count % FPS]
            timestamp = (base + count * 3600) & 0xFFFFFFFF
            last = len(packets) - 1
            for i, packet in enumerate(packets):
                pack(packet, 0, 0x80, 0xE0 if i == last else 0x60, seq & 0xFFFF, timestamp, ssrc)
                seq += 1
                try:
                    sock.sendto(packet, destination)
                    sent += 1
                except OSError:
                    errors += 1
            stream[2], stream[3] = seq, count + 1
            # A stream that fell behind skips ahead instead of bursting to catch up.
            heapq.heappush(heap, (max(due + interval, now), index))
        wait = heap[0][0] - time.perf_counter() if heap else 0.05
        if conn.poll(max(0.0, wait)):
            message = conn.recv()
            if message[0] == "add":
                _, host, port, ssrc = message
                streams.append([(host, port), ssrc, random.getrandbits(16), 0, random.getrandbits(31)])
                # Spread over the frame interval, as independent cameras are.
                heapq.heappush(heap, (time.perf_counter() + random.random() * interval, len(streams) - 1))
            elif message[0] == "stats":
                conn.send({"sent": sent, "errors": errors, "streams": len(streams)})
            else:
                conn.send({"sent": sent, "errors": errors, "streams": len(streams)})
                return


# -- the receiving side of the load: sinks -------------------------------------------------------------------


def sink_process(conn: multiprocessing.connection.Connection, count: int) -> None:
    """``count`` UDP sockets; per socket, packets received and sequence numbers missing.

    Only the relayed stream is counted (the first SSRC a socket sees): a sink's port can be another
    socket's port + 1, where the gateway sends a device its receiver reports, and those are not media.
    """
    selector = selectors.DefaultSelector()
    socks = []
    for index in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks.append(sock)
        selector.register(sock, selectors.EVENT_READ, index)
    conn.send([s.getsockname()[1] for s in socks])
    received = [0] * count
    missing = [0] * count
    expect = [-1] * count
    ssrcs = [-1] * count
    stray = 0
    buf = bytearray(2048)
    seq_of, ssrc_of = struct.Struct("!H").unpack_from, struct.Struct("!I").unpack_from
    while True:
        for key, _ in selector.select(0.05):
            index = key.data
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            for _ in range(64):
                try:
                    size = sock.recv_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                if size < 12 or 192 <= buf[1] <= 223:
                    stray += 1
                    continue
                seq, ssrc = seq_of(buf, 2)[0], ssrc_of(buf, 8)[0]
                if ssrcs[index] < 0:
                    ssrcs[index] = ssrc
                elif ssrc != ssrcs[index]:
                    stray += 1
                    continue
                received[index] += 1
                if expect[index] >= 0:
                    gap = (seq - expect[index]) & 0xFFFF
                    if gap < 0x8000:
                        missing[index] += gap
                expect[index] = (seq + 1) & 0xFFFF
        if conn.poll():
            message = conn.recv()
            conn.send({"received": sum(received), "missing": sum(missing),
                       "silent": sum(1 for r in received if r == 0), "stray": stray})
            if message == "stop":
                return


def _spawn(target: Any, *args: Any) -> tuple[multiprocessing.Process, multiprocessing.connection.Connection]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=target, args=(child, *args), daemon=True)
    process.start()
    return process, parent


# -- the gateway --------------------------------------------------------------------------------------------


def gateway_process(workdir: Path, streams: int) -> GatewayProcess:
    # Each stream needs a port pair for its ingest and one for its output.
    ports = 4 * streams + 200
    return GatewayProcess(workdir, media={"ip": "127.0.0.1", "ports": f"30000-{30000 + ports}", "idle_timeout": 0,
                                          "first_packet_timeout": 10})


class UdpSink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.first: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if not self.first.done():
            self.first.set_result(time.perf_counter())


async def _timed_play(http: aiohttp.ClientSession, url: str, channel: str) -> tuple[float, str]:
    """(ms from the play request to the first packet at a fresh sink, session id)."""
    loop = asyncio.get_running_loop()
    transport, sink = await loop.create_datagram_endpoint(UdpSink, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        started = time.perf_counter()
        async with http.post(f"{url}/api/channels/{channel}/play",
                             json={"host": "127.0.0.1", "port": port, "transport": "udp"}) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"play failed: {body}")
        first = await asyncio.wait_for(sink.first, 5)
        return (first - started) * 1000, body["id"]
    finally:
        transport.close()


# -- the runs -----------------------------------------------------------------------------------------------


async def latency_runs(http: aiohttp.ClientSession, gateway: GatewayProcess, clip: Path, runs: int) -> None:
    camera = DeviceSimulator(SimulatorConfig(
        server_host="127.0.0.1", server_port=gateway.sip_port, password=PASSWORD, id_prefix=CAMERA_PREFIX,
        channels=2, media=MediaOptions(file=clip),
    ))
    await camera.start()
    try:
        await camera.wait_registered()
        channels = await gateway.channels(http, camera.device_id(0), 2)
        plays = []
        for _ in range(runs):
            latency, session = await _timed_play(http, gateway.url, channels[0])
            plays.append(latency)
            async with http.delete(f"{gateway.url}/api/sessions/{session}"):
                pass
            # Idle timeout 0: the gateway BYEs the camera; the next play must INVITE again.
            while camera.calls:
                await asyncio.sleep(0.002)
        print(f"play -> first packet ({runs} runs, new INVITE each): p50 {percentile(plays, 0.5):.1f} ms  "
              f"p95 {percentile(plays, 0.95):.1f} ms  max {max(plays):.1f} ms")
        invites = camera.stats.invites
        await _timed_play(http, gateway.url, channels[1])  # the viewer who stays; its sink closes, no matter
        joins = []
        for _ in range(runs):
            latency, session = await _timed_play(http, gateway.url, channels[1])
            joins.append(latency)
            async with http.delete(f"{gateway.url}/api/sessions/{session}"):
                pass
        print(f"join -> first packet ({runs} runs, {camera.stats.invites - invites} INVITE for them all): "
              f"p50 {percentile(joins, 0.5):.1f} ms  p95 {percentile(joins, 0.95):.1f} ms  max {max(joins):.1f} ms")
    finally:
        await camera.stop(unregister=False, timeout=2)


async def load_run(http: aiohttp.ClientSession, gateway: GatewayProcess, streams: int, mbps: float,
                   seconds: float) -> None:
    sinks, sink_conn = _spawn(sink_process, streams)
    sink_ports: list[int] = sink_conn.recv()
    blaster, blaster_conn = _spawn(blaster_process, mbps)
    blasting = True
    # Signalling only: the NVR answers and stays silent while the blaster sends for it.
    nvr = DeviceSimulator(SimulatorConfig(
        server_host="127.0.0.1", server_port=gateway.sip_port, password=PASSWORD, id_prefix=NVR_PREFIX,
        channels=streams, catalog_page_size=50, media=MediaOptions(send=False),
    ))
    try:
        await nvr.start()
        await nvr.wait_registered(timeout=10)
        channels = await gateway.channels(http, nvr.device_id(0), streams)
        fed: set[str] = set()

        async def feed() -> None:
            while True:
                for call_id, call in list(nvr.calls.items()):
                    if call_id not in fed and call.state == "silent":
                        fed.add(call_id)
                        blaster_conn.send(("add", call.target[0], call.target[1], call.ssrc))
                await asyncio.sleep(0.005)

        feeder = asyncio.get_running_loop().create_task(feed())
        limit = asyncio.Semaphore(64)
        play_ms: list[float] = []
        failures: list[str] = []

        async def play(channel: str, port: int) -> str | None:
            async with limit:
                started = time.perf_counter()
                async with http.post(f"{gateway.url}/api/channels/{channel}/play",
                                     json={"host": "127.0.0.1", "port": port, "transport": "udp"}) as response:
                    body = await response.json()
                if response.status != 200:
                    failures.append(f"{body.get('stage')}: {body.get('error')}")
                    return None
                play_ms.append((time.perf_counter() - started) * 1000)
                return str(body["id"])

        setup_started = time.perf_counter()
        sessions = await asyncio.gather(*(play(c, p) for c, p in zip(channels, sink_ports, strict=False)))
        setup = time.perf_counter() - setup_started
        print(f"load: {streams - len(failures)}/{streams} streams of {mbps:g} Mbit/s set up in {setup:.1f} s "
              f"(play answered p50 {percentile(play_ms, 0.5):.0f} ms, p95 {percentile(play_ms, 0.95):.0f} ms "
              f"under set-up load); failures: {sorted(set(failures))[:3]}")
        await asyncio.sleep(1.0)
        blaster_conn.send(("stats",))
        sent_before = blaster_conn.recv()["sent"]
        cpu_before, clock_before = cpu_seconds(gateway.process.pid), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu_after, clock_after = cpu_seconds(gateway.process.pid), time.perf_counter()
        blaster_conn.send(("stop",))
        sent = blaster_conn.recv()
        blasting = False
        feeder.cancel()
        # Loss is counted on totals since each stream began, once the last packets have drained, so the
        # three counters are read at no moment in particular; the rate and CPU figures are the window's.
        await asyncio.sleep(0.5)
        sink_conn.send("stats")
        sink = sink_conn.recv()
        totals = await _gateway_totals(http, gateway.url)
        window = clock_after - clock_before
        blasted = sent["sent"] - sent_before
        cpu = cpu_after - cpu_before
        print(f"  over {window:.1f} s: blaster sent {blasted:,} packets ({blasted / window:,.0f}/s, "
              f"{blasted * MTU * 8 / window / 1e9:.2f} Gbit/s at most); gateway CPU {cpu / window:.0%} of one "
              f"core, {cpu / max(1, blasted) * 1e6:.1f} µs per packet relayed; load average {load_average()}")
        print(f"  totals: blaster sent {sent['sent']:,} (send errors {sent['errors']:,}); gateway took in "
              f"{totals['packets_in']:,} ({1 - totals['packets_in'] / max(1, sent['sent']):.3%} lost before it, "
              f"{totals['lost']:,} by its sequence count), sent out {totals['packets_out']:,} (cached GOPs "
              f"included); sinks received {sink['received']:,} "
              f"({1 - sink['received'] / max(1, totals['packets_out']):.3%} lost after the gateway, "
              f"{sink['missing']:,} sequence numbers missing), silent sinks {sink['silent']}, "
              f"stray packets {sink['stray']}")
        print(f"  sessions: {sum(1 for s in sessions if s)} playing")
    finally:
        if blasting:
            blaster_conn.send(("stop",))
            with contextlib.suppress(EOFError):
                blaster_conn.recv()
        sink_conn.send("stop")
        with contextlib.suppress(EOFError):
            sink_conn.recv()
        await nvr.stop(unregister=False, timeout=5)
        blaster.join(5)
        sinks.join(5)


async def _gateway_totals(http: aiohttp.ClientSession, url: str) -> dict[str, int]:
    async with http.get(f"{url}/api/sessions") as response:
        sessions = await response.json()
    return {
        "packets_in": sum(s["device"]["packets_in"] for s in sessions),
        "lost": sum(s["device"]["lost"] for s in sessions),
        "packets_out": sum(s["packets_out"] for s in sessions),
    }


def make_clip(workdir: Path) -> Path | None:
    if shutil.which("ffmpeg") is None:
        return None
    clip = workdir / "clip.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}",
                    "-t", "2", "-c:v", "libx264", "-g", str(FPS), "-bf", "0", "-f", "h264", str(clip)],
                   check=True, timeout=60)
    return clip


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        gateway = gateway_process(workdir, args.streams)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60),
                                             connector=aiohttp.TCPConnector(limit=128)) as http:
                await gateway.ready(http)
                print(f"load average before: {load_average()}  cpus: {os.cpu_count()}")
                clip = make_clip(workdir)
                if clip is None:
                    print("ffmpeg not found: skipping the latency runs")
                elif args.runs:
                    await latency_runs(http, gateway, clip, args.runs)
                if args.streams:
                    await load_run(http, gateway, args.streams, args.mbps, args.seconds)
        finally:
            gateway.stop()
            gateway.print_log_tail()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=50, help="play and join latency samples (default 50)")
    parser.add_argument("--streams", type=int, default=500, help="concurrent device streams (default 500)")
    parser.add_argument("--mbps", type=float, default=2.0, help="Mbit/s per stream (default 2)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window (default 10)")
    args = parser.parse_args()
    run_loop(main_async(args), fewer_collections=True)


if __name__ == "__main__":
    main()

"""Relay benchmark: RTP throughput and added latency through one ingest and one UDP output.

Run: python3 tests/bench/bench_relay.py [--packets N] [--seconds S] [--rate PPS] [--latency-packets N]

Three processes on loopback: a sender blasting 1400-byte RTP packets (PS-like payload: a pack header
on each frame's first packet, a system header on every 25th frame, so the GOP cache works as it does
with a camera) at the relay's ingest, the relay (RelayEngine on uvloop, pinned to core 0) rewriting
SSRC and sequence number for one UDP output, and a sink counting what arrives. Sender and sink share
core 1; the sender runs at nice 10 so the sink is not starved.

(1) Throughput: the sender sends as fast as it can, for at most --packets packets or --seconds.
    Printed: packets/s received at the sink (first to last arrival), loss, and the relay's CPU time
    per relayed packet (process CPU time / packets relayed), the figure least disturbed by other load:
    1e6 / that is what one free core would relay. The same run with a bare loop in the relay process
    (recv_into, one pack_into, send; no checks, no stats, no cache) shows what the machine allows.
(2) Latency: the sender paces --rate packets/s in bursts of 10 (a camera sends a frame's packets
    back to back), sleeping in between, and stamps time.perf_counter_ns() (CLOCK_MONOTONIC, the same
    clock in every process) into each payload; the sink reports p50/p99/max of arrival - stamp. The
    path without the relay (sender straight to sink) is measured too, so the relay's share shows.

Figures are printed, never asserted: they depend on the machine and what else runs on it, so the load
average is printed alongside.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gbgw.rtp.relay import IngestConfig, MediaTransport, RelayEngine

RELAY_CORE = 0
OTHER_CORE = 1
PACKET_SIZE = 1400
PACKETS_PER_FRAME = 40
KEYFRAME_EVERY = 25
STAMP_OFFSET = 100  # past the pack/system headers of a frame's first packet
BURST = 10
PORTS = "47000-47099"

_HEADER = struct.Struct("!BBHII")
_STAMP = struct.Struct("!Q")
_PACK = bytes.fromhex("000001ba" "44000400 0401" "0186a3" "f8")
_SYSTEM = bytes.fromhex("000001bb 000c 80cc f5 04 e1 7f e0e080 c0c020".replace(" ", ""))


def _pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        cpus = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {core if core in cpus else min(cpus)})


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    return sock


# ------------------------------------------------------------------------------------------- processes


def bare_relay_process(conn: multiprocessing.connection.Connection, core: int, sink: tuple[str, int]) -> None:
    """The floor: what a tight Python loop on the same loop and sockets reaches, with no relay logic."""
    _pin(core)
    import uvloop

    loop = uvloop.new_event_loop()
    ingest = _udp_socket()
    ingest.setblocking(False)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.connect(sink)
    buf = bytearray(65536)
    view = memoryview(buf)
    rewrite = struct.Struct("!HII").pack_into
    counters = {"relayed": 0}

    def on_readable() -> None:
        recv_into, send = ingest.recv_into, out.send
        relayed = counters["relayed"]
        for _ in range(256):
            try:
                size = recv_into(view)
            except BlockingIOError:
                break
            rewrite(buf, 2, relayed & 0xFFFF, 0, 0x11223344)
            send(view[:size])
            relayed += 1
        counters["relayed"] = relayed

    loop.add_reader(ingest.fileno(), on_readable)
    conn.send(ingest.getsockname()[1])
    started: dict[str, float] = {}

    def on_command() -> None:
        command = conn.recv()
        if command == "start":
            started["cpu"] = time.process_time()
            started["relayed"] = counters["relayed"]
        elif command == "stop":
            relayed = counters["relayed"] - started["relayed"]
            conn.send({"cpu": time.process_time() - started["cpu"], "relayed": relayed, "in": relayed})
            loop.stop()

    loop.add_reader(conn.fileno(), on_command)
    loop.run_forever()


def relay_process(conn: multiprocessing.connection.Connection, core: int, sink: tuple[str, int]) -> None:
    _pin(core)
    import uvloop

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    engine = RelayEngine(loop, bind_host="127.0.0.1", ports=PORTS)
    ingest = engine.open_ingest(
        IngestConfig(MediaTransport.UDP, device_host="127.0.0.1", media_timeout=60, first_packet_timeout=60)
    )
    output = ingest.add_output(MediaTransport.UDP, sink[0], sink[1], ssrc=0x11223344)
    conn.send(ingest.local_port)
    started: dict[str, float] = {}

    def on_command() -> None:
        command = conn.recv()
        if command == "start":
            started["cpu"] = time.process_time()
            started["sent"] = output.sent
        elif command == "stop":
            cpu = time.process_time() - started["cpu"]
            stats = ingest.stats
            conn.send(
                {
                    "cpu": cpu,
                    "relayed": output.sent - started["sent"],
                    "send_errors": output.send_errors,
                    "in": stats.packets,
                    "dropped": stats.dropped,
                    "lost": stats.lost,
                    "keyframes": stats.keyframes,
                    "gop_packets": stats.gop_packets,
                }
            )
            engine.close()
            loop.stop()

    loop.add_reader(conn.fileno(), on_command)
    loop.run_forever()


def sink_process(conn: multiprocessing.connection.Connection, core: int, expect_stamps: bool) -> None:
    _pin(core)
    sock = _udp_socket()
    conn.send(sock.getsockname())
    sock.settimeout(0.5)
    buf = bytearray(2048)
    count = 0
    first = last = 0
    latencies: list[int] = []
    ssrc_ok = True
    seq_gaps = 0
    prev_seq = -1
    idle_after_data = 0
    while True:
        try:
            size = sock.recv_into(buf)
        except TimeoutError:
            if conn.poll():
                break
            if count:
                idle_after_data += 1
                if idle_after_data >= 4:
                    break
            continue
        now = time.perf_counter_ns()
        if not count:
            first = now
        last = now
        count += 1
        _, _, seq, _, ssrc = _HEADER.unpack_from(buf)
        ssrc_ok = ssrc_ok and ssrc == 0x11223344
        if prev_seq >= 0 and seq != (prev_seq + 1) & 0xFFFF:
            seq_gaps += 1
        prev_seq = seq
        if expect_stamps and size >= STAMP_OFFSET + 8:
            latencies.append(now - _STAMP.unpack_from(buf, STAMP_OFFSET)[0])
    conn.send(
        {
            "count": count,
            "seconds": (last - first) / 1e9,
            "latencies": latencies,
            "ssrc_ok": ssrc_ok,
            "seq_gaps": seq_gaps,
        }
    )


def _frame_packet(template: bytearray, index: int, seq: int, timestamp: int) -> None:
    """Rewrite ``template`` in place as packet ``index`` of the stream (no per-packet allocation)."""
    in_frame = index % PACKETS_PER_FRAME
    last = in_frame == PACKETS_PER_FRAME - 1
    _HEADER.pack_into(template, 0, 0x80, 96 | (0x80 if last else 0), seq & 0xFFFF, timestamp, 0x0BADCAFE)
    if in_frame == 0:
        template[12 : 12 + len(_PACK)] = _PACK
        keyframe = (index // PACKETS_PER_FRAME) % KEYFRAME_EVERY == 0
        follow = _SYSTEM if keyframe else b"\x00\x00\x01\xe0\x05\x78"
        template[12 + len(_PACK) : 12 + len(_PACK) + len(follow)] = follow
    elif in_frame == 1:
        template[12:40] = bytes(28)


def sender_process(
    conn: multiprocessing.connection.Connection,
    core: int,
    target: tuple[str, int],
    packets: int,
    seconds: float,
    rate: int,
) -> None:
    _pin(core)
    if not rate:
        os.nice(10)
    sock = _udp_socket()
    sock.connect(target)
    template = bytearray(PACKET_SIZE)
    conn.recv()  # go
    send = sock.send
    stamp = _STAMP.pack_into
    clock = time.perf_counter_ns
    start = clock()
    deadline = start + int(seconds * 1e9)
    interval = 1e9 / rate if rate else 0.0
    sent = 0
    errors = 0
    for index in range(packets):
        _frame_packet(template, index, index, (index // PACKETS_PER_FRAME) * 3600)
        if rate:
            if index % BURST == 0:
                # Sleep, not spin: the sink shares this core and must run when packets arrive.
                wait = start + index * interval - clock()
                if wait > 0:
                    time.sleep(wait / 1e9)
            stamp(template, STAMP_OFFSET, clock())
        elif index & 0x3FF == 0 and clock() > deadline:
            break
        try:
            send(template)
        except OSError:
            errors += 1
            continue
        sent += 1
    conn.send({"sent": sent, "errors": errors, "seconds": (clock() - start) / 1e9})


# ------------------------------------------------------------------------------------------- runs


def _spawn(target: Any, *args: Any) -> tuple[multiprocessing.Process, multiprocessing.connection.Connection]:
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=target, args=(child, *args), daemon=True)
    process.start()
    return process, parent


def run(
    packets: int,
    seconds: float,
    rate: int,
    relay_target: Any = relay_process,
    cores: tuple[int, int] = (RELAY_CORE, OTHER_CORE),
) -> dict[str, Any]:
    """One sender -> relay -> sink run; ``relay_target`` None sends straight to the sink. ``cores``:
    the relay's core, and the one the sender and sink share."""
    relay_core, other_core = cores
    sink, sink_conn = _spawn(sink_process, other_core, rate > 0)
    sink_addr = sink_conn.recv()
    relay = relay_conn = None
    if relay_target is not None:
        relay, relay_conn = _spawn(relay_target, relay_core, sink_addr)
        target = ("127.0.0.1", relay_conn.recv())
    else:
        target = sink_addr
    sender, sender_conn = _spawn(sender_process, other_core, target, packets, seconds, rate)
    time.sleep(0.3)
    if relay_conn is not None:
        relay_conn.send("start")
    before = _core_times(relay_core)
    sender_conn.send("go")
    sent = sender_conn.recv()
    after = _core_times(relay_core)
    time.sleep(0.3)
    result: dict[str, Any] = {"sender": sent}
    if before and after:
        total = sum(after) - sum(before)
        names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
        result["core"] = {name: (a - b) / total for name, a, b in zip(names, after, before, strict=False) if total}
    if relay_conn is not None:
        relay_conn.send("stop")
        result["relay"] = relay_conn.recv()
    sink_conn.send("stop")
    result["sink"] = sink_conn.recv()
    for process in (sink, relay, sender):
        if process is not None:
            process.join(5)
    return result


def _core_times(core: int) -> list[int]:
    """Jiffies the core spent per state (/proc/stat), to see whether the relay's core was saturated and
    how much went to softirq (the kernel's side of its sends, not charged to the process)."""
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith(f"cpu{core} "):
                    return [int(x) for x in line.split()[1:9]]
    except OSError:
        pass
    return []


def _percentile(values: list[int], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=2_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=50_000, help="packets/s for the latency run")
    parser.add_argument("--latency-packets", type=int, default=250_000)
    args = parser.parse_args()

    print(f"load average before: {_load()}  cpus: {os.cpu_count()}")
    for label, target in (("relay engine", relay_process), ("bare loop", bare_relay_process)):
        result = run(args.packets, args.seconds, 0, target)
        sink, relay, sender = result["sink"], result["relay"], result["sender"]
        rate = sink["count"] / sink["seconds"] if sink["seconds"] else 0.0
        per_packet = relay["cpu"] / max(1, relay["relayed"])
        print(
            f"throughput, {label}: offered {sender['sent'] / sender['seconds']:,.0f}/s "
            f"({sender['sent']:,} in {sender['seconds']:.2f} s), relay took in {relay['in']:,}, "
            f"relayed {relay['relayed']:,}, sink got {sink['count']:,}"
        )
        print(
            f"  sink rate {rate:,.0f} packets/s, loss sender->sink {1 - sink['count'] / max(1, sender['sent']):.1%}; "
            f"relay CPU {per_packet * 1e6:.2f} µs/packet -> {1 / per_packet:,.0f} packets/s per free core"
        )
        if "core" in result:
            core = result["core"]
            print(
                "  relay core: "
                + ", ".join(f"{name} {share:.0%}" for name, share in core.items() if share >= 0.005)
                + " (includes whatever else ran there)"
            )
            # The kernel's side of the relay's sends (and of the receiver's wake-ups) runs as softirq on
            # the relay's core and is not charged to the process: count it to estimate a free core.
            softirq = core.get("softirq", 0.0) * sender["seconds"] / max(1, relay["relayed"])
            print(
                f"  relay CPU + its core's softirq: {(per_packet + softirq) * 1e6:.2f} µs/packet -> "
                f"{1 / (per_packet + softirq):,.0f} packets/s on a free core"
            )
        if "keyframes" in relay:
            print(
                f"  output seq gaps at the sink {sink['seq_gaps']}, SSRC rewritten {sink['ssrc_ok']}, "
                f"keyframes {relay['keyframes']}, GOP cached {relay['gop_packets']} packets, "
                f"input lost {relay['lost']:,}, dropped {relay['dropped']}"
            )
        print(f"  load average after: {_load()}")

    # Two layouts: the relay on its own core (every packet crosses cores twice, and on a VM a wake-up
    # across vCPUs costs what the hypervisor makes it cost), and everything on one core (no cross-core
    # wake-ups; the three processes take turns). The bare loop beside the engine shows which part of
    # the tail is the machine's.
    paths: tuple[tuple[str, Any], ...] = (
        ("direct, no relay", None),
        ("bare loop", bare_relay_process),
        ("relay engine", relay_process),
    )
    for layout, cores in (("relay on core 0, sender+sink on 1", (0, 1)), ("all on core 1", (1, 1))):
        print(f"latency at {args.rate:,} packets/s in bursts of {BURST}, {layout}:")
        for label, target in paths:
            result = run(args.latency_packets, args.seconds, args.rate, target, cores)
            sink, sender = result["sink"], result["sender"]
            latencies = sink["latencies"]
            print(
                f"  {label:17s} received {sink['count']:,}/{sender['sent']:,}: "
                f"p50 {_percentile(latencies, 0.5):7.1f} µs  p90 {_percentile(latencies, 0.9):7.1f} µs  "
                f"p99 {_percentile(latencies, 0.99):7.1f} µs  p99.9 {_percentile(latencies, 0.999):7.1f} µs  "
                f"(load {_load()})"
            )
    print(f"load average after: {_load()}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()

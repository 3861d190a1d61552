"""SIP benchmark: message parsing/serialization and the server's full request path over UDP and TCP.

Run: python3 tests/bench/bench_sip.py [--parse N] [--udp N] [--tcp N] [--window W]

(1) In one process: parse a typical keepalive MESSAGE, serialize it, and the whole in-process answer
    (parse, check, 200 OK serialized); then the sans-IO endpoint path with unique branches.
(2) UDP MESSAGE -> 200 OK through SipTransport on uvloop: the server in one process pinned to core 0, a
    load generator in another pinned to core 1 keeping a bounded window of requests outstanding, each
    with its own branch and Call-ID. The server reports its RSS and the completed transactions it holds
    (Timer J keeps each for 64*T1 = 32 s, so after a short run nearly all of them are still there).
(3) The same over one TCP connection.

Figures are printed, never asserted: they depend on the machine and on what else runs on it, so the load
average is printed alongside.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import load_average, pin, run_loop

from gbgw.sip.endpoint import Peer, SipEndpoint
from gbgw.sip.message import make_response, parse_message
from gbgw.sip.transaction import ServerTransaction
from gbgw.sip.transport import SipTransport

SERVER_CORE = 0
GENERATOR_CORE = 1

# A keepalive as an IPC sends it (header order, names and body as captured from devices); the branch and
# Call-ID carry a fixed-width counter the generator patches in place, so no message is built per send.
KEEPALIVE = (
    "MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\r\n"
    "Via: SIP/2.0/{transport} 127.0.0.1:{port};rport;branch=z9hG4bK{counter}\r\n"
    "From: <sip:34020000001320000001@3402000000>;tag=1876074656\r\n"
    "To: <sip:34020000002000000001@3402000000>\r\n"
    "Call-ID: {counter}@192.168.28.110\r\n"
    "CSeq: 20 MESSAGE\r\n"
    "Max-Forwards: 70\r\n"
    "User-Agent: IP Camera\r\n"
    "Content-Type: Application/MANSCDP+xml\r\n"
    "Content-Length: {length}\r\n"
    "\r\n"
)
KEEPALIVE_BODY = (
    b'<?xml version="1.0" encoding="GB2312"?>\r\n'
    b"<Notify>\r\n"
    b"<CmdType>Keepalive</CmdType>\r\n"
    b"<SN>43</SN>\r\n"
    b"<DeviceID>34020000001320000001</DeviceID>\r\n"
    b"<Status>OK</Status>\r\n"
    b"</Notify>\r\n"
)
COUNTER_WIDTH = 12


def keepalive_template(transport: str, port: int) -> tuple[bytearray, list[int]]:
    """The message with a zero counter, and the offsets where the counter is written."""
    placeholder = "#" * COUNTER_WIDTH
    text = KEEPALIVE.format(transport=transport, port=port, counter=placeholder, length=len(KEEPALIVE_BODY))
    data = bytearray(text.encode() + KEEPALIVE_BODY)
    offsets = []
    start = 0
    while (at := data.find(placeholder.encode(), start)) >= 0:
        offsets.append(at)
        start = at + 1
    return data, offsets


def stamp(template: bytearray, offsets: list[int], n: int) -> bytes:
    digits = b"%012d" % n
    for at in offsets:
        template[at : at + COUNTER_WIDTH] = digits
    return bytes(template)


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def schedstat() -> tuple[float, float]:
    """Seconds this process ran on a CPU and seconds it waited, runnable, for one (contention)."""
    with open("/proc/self/schedstat") as f:
        ran, waited, _ = f.read().split()
    return int(ran) / 1e9, int(waited) / 1e9


# -- (1) in-process --------------------------------------------------------------------------------------

def rate(iterations: int, seconds: float) -> float:
    return iterations / seconds if seconds > 0 else float("inf")


# The in-process loops are timed in CPU seconds (process_time), so other load on the machine steals
# wall-clock time from them without lowering the figure much (caches still suffer).
clock = time.process_time


def bench_codec(iterations: int) -> list[tuple[str, float]]:
    template, offsets = keepalive_template("UDP", 5060)
    data = stamp(template, offsets, 1)
    message = parse_message(data)

    t = clock()
    for _ in range(iterations):
        parse_message(data)
    parse_rate = rate(iterations, clock() - t)

    t = clock()
    for _ in range(iterations):
        message.serialize()
    serialize_rate = rate(iterations, clock() - t)

    t = clock()
    for _ in range(iterations):
        request = parse_message(data)
        request.check()  # type: ignore[union-attr]
        make_response(request, 200, to_tag="a1b2c3").serialize()  # type: ignore[arg-type]
    answer_rate = rate(iterations, clock() - t)

    endpoint = SipEndpoint()
    layer = endpoint.transactions
    peer = Peer("UDP", "127.0.0.1", 5060)
    messages = [stamp(template, offsets, n) for n in range(iterations)]
    now = 1000.0
    t = clock()
    for raw in messages:
        txn = endpoint.receive(raw, peer, now)
        if txn is not None:
            txn.reply(200, now=now)
        layer.take_output()
    endpoint_rate = rate(iterations, clock() - t)
    return [
        ("parse keepalive MESSAGE", parse_rate),
        ("serialize it", serialize_rate),
        ("parse + check + 200 OK serialized", answer_rate),
        ("SipEndpoint.receive + reply (sans-IO)", endpoint_rate),
    ]


# -- (2)/(3) server and load generator processes ---------------------------------------------------------

def server_main(ports: multiprocessing.connection.Connection, control: multiprocessing.connection.Connection) -> None:
    """SipTransport on uvloop answering every request 200 at once; reports stats when asked."""
    pinned = pin(SERVER_CORE)

    async def main() -> None:
        # "uvloop" or "asyncio": what run_loop found.
        loop_name = type(asyncio.get_running_loop()).__module__.partition(".")[0]
        endpoint = SipEndpoint()
        transport: SipTransport | None = None

        def on_request(txn: ServerTransaction) -> None:
            assert transport is not None
            transport.reply(txn, 200)

        transport = SipTransport(endpoint, on_request)
        _, port = await transport.start("127.0.0.1", 0)
        done = asyncio.get_running_loop().create_future()

        def on_control() -> None:
            command = control.recv()
            if command == "stats":
                ran, waited = schedstat()
                control.send({
                    "rss_mb": rss_mb(),
                    "held": endpoint.transactions.server_count,
                    "received": endpoint.counters.received,
                    "absorbed": endpoint.transactions.absorbed,
                    "cpu": ran,
                    "waited": waited,
                })
            elif not done.done():
                done.set_result(None)

        asyncio.get_running_loop().add_reader(control.fileno(), on_control)
        ports.send((port, rss_mb(), loop_name, pinned))
        await done
        await transport.close()

    run_loop(main())


def udp_generator(port: int, total: int, window: int, result: multiprocessing.connection.Connection) -> None:
    """Blocking socket, window of outstanding requests; a request lost on loopback is counted, not waited for."""
    pinned = pin(GENERATOR_CORE)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.connect(("127.0.0.1", port))
    sock.settimeout(1.0)
    template, offsets = keepalive_template("UDP", sock.getsockname()[1])
    send, recv = sock.send, sock.recv
    sent = received = lost = not_ok = 0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    while received + lost < total:
        while sent < total and sent - received - lost < window:
            send(stamp(template, offsets, sent))
            sent += 1
        try:
            data = recv(4096)
        except TimeoutError:
            lost += sent - received - lost
            continue
        received += 1
        if not data.startswith(b"SIP/2.0 200"):
            not_ok += 1
    elapsed = time.perf_counter() - t0
    result.send({"received": received, "lost": lost, "not_ok": not_ok, "seconds": elapsed,
                 "cpu": time.process_time() - cpu0, "pinned": pinned})


def tcp_generator(port: int, total: int, window: int, result: multiprocessing.connection.Connection) -> None:
    """One TCP connection; responses are counted by their blank line (they carry no body)."""
    pinned = pin(GENERATOR_CORE)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(5.0)
    template, offsets = keepalive_template("TCP", sock.getsockname()[1])
    sent = received = 0
    tail = b""
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    while received < total:
        if sent < total and sent - received < window:
            batch = []
            while sent < total and sent - received < window:
                batch.append(stamp(template, offsets, sent))
                sent += 1
            sock.sendall(b"".join(batch))
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            break
        if not data:
            break
        chunk = tail + data
        received += chunk.count(b"\r\n\r\n")
        # Keep a partial terminator split across reads, but never one already counted.
        tail = chunk[-3:] if not chunk.endswith(b"\r\n\r\n") else b""
    elapsed = time.perf_counter() - t0
    sock.close()
    result.send({"received": received, "lost": total - received, "not_ok": 0, "seconds": elapsed,
                 "cpu": time.process_time() - cpu0, "pinned": pinned})


def bench_transport(kind: str, total: int, window: int) -> dict[str, Any]:
    # spawn, not fork: a forked server would inherit the memory of the in-process run and skew its RSS.
    ctx = multiprocessing.get_context("spawn")
    ports_parent, ports_child = ctx.Pipe()
    control_parent, control_child = ctx.Pipe()
    server = ctx.Process(target=server_main, args=(ports_child, control_child), daemon=True)
    server.start()
    port, rss_idle, loop_name, server_pinned = ports_parent.recv()
    control_parent.send("stats")
    before = control_parent.recv()

    result_parent, result_child = ctx.Pipe()
    target = udp_generator if kind == "UDP" else tcp_generator
    generator = ctx.Process(target=target, args=(port, total, window, result_child), daemon=True)
    generator.start()
    generated = result_parent.recv()
    generator.join()

    control_parent.send("stats")
    after = control_parent.recv()
    control_parent.send("stop")
    server.join(10)
    if server.is_alive():
        server.kill()
    seconds = generated["seconds"]
    return {
        "kind": kind,
        "loop": loop_name,
        "window": window,
        "total": total,
        "received": generated["received"],
        "lost": generated["lost"],
        "not_ok": generated["not_ok"],
        "rate": generated["received"] / seconds if seconds else 0.0,
        "seconds": seconds,
        "server_cpu": (after["cpu"] - before["cpu"]) / seconds if seconds else 0.0,
        "server_waited": (after["waited"] - before["waited"]) / seconds if seconds else 0.0,
        "per_cpu_second": generated["received"] / (after["cpu"] - before["cpu"]) if after["cpu"] > before["cpu"] else 0.0,
        "generator_cpu": generated["cpu"] / seconds if seconds else 0.0,
        "rss_idle": rss_idle,
        "rss_after": after["rss_mb"],
        "held": after["held"],
        "absorbed": after["absorbed"],
        "pinned": f"server {server_pinned}, generator {generated['pinned']}",
    }


def print_transport(r: dict[str, Any]) -> None:
    held = r["held"]
    per_txn = (r["rss_after"] - r["rss_idle"]) * 2**20 / held if held else None
    rows = [
        ("responses/s", f"{r['rate']:,.0f}"),
        ("requests sent / answered / lost", f"{r['total']:,} / {r['received']:,} / {r['lost']:,}"),
        ("non-200 answers", f"{r['not_ok']:,}"),
        ("duration", f"{r['seconds']:.2f} s"),
        ("responses per server CPU-second", f"{r['per_cpu_second']:,.0f}"),
        ("server on CPU / waiting for CPU", f"{100 * r['server_cpu']:.0f} % / {100 * r['server_waited']:.0f} %"),
        ("generator CPU busy", f"{100 * r['generator_cpu']:.0f} %"),
        ("server RSS idle / after", f"{r['rss_idle']:.1f} MB / {r['rss_after']:.1f} MB"),
        ("completed transactions held", f"{held:,}"),
        ("RSS growth per held transaction", f"{per_txn:,.0f} B" if per_txn is not None else "n/a"),
        ("retransmissions absorbed", f"{r['absorbed']:,}"),
        ("placement", r["pinned"]),
    ]
    print(f"\n({'2' if r['kind'] == 'UDP' else '3'}) {r['kind']} MESSAGE -> 200 OK, server on {r['loop']}, "
          f"window {r['window']}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if r["lost"]:
        print("  NOTE: requests were lost: on loopback that is the server's UDP receive buffer (SO_RCVBUF) "
              "overflowing while it waited for the CPU; each loss stalls the generator 1 s.")
    if r["generator_cpu"] > 0.9:
        print("  NOTE: the generator was busy > 90 % of the time: it may be the bottleneck, not the server.")
    if r["server_waited"] > 0.2:
        print(f"  NOTE: the server waited for a CPU {100 * r['server_waited']:.0f} % of the run (other load on core "
              f"{SERVER_CORE}); responses per server CPU-second estimates what a free core does.")
    elif r["server_cpu"] < 0.8 and r["generator_cpu"] <= 0.9:
        print("  NOTE: the server was on CPU < 80 % of the run without waiting for one: it was not saturated.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parse", type=int, default=200_000, help="in-process iterations (default 200,000)")
    parser.add_argument("--udp", type=int, default=300_000, help="UDP requests (default 300,000; 0 skips)")
    parser.add_argument("--tcp", type=int, default=100_000, help="TCP requests (default 100,000; 0 skips)")
    parser.add_argument("--window", type=int, default=64, help="outstanding requests (default 64)")
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load_average()} (1/5/15 min)")
    if os.cpu_count() == 1:
        print("NOTE: one core only: server and generator share it, so (2) and (3) understate the server.")

    print(f"\n(1) in-process, per CPU-second, {args.parse:,} iterations of a keepalive "
          f"({len(KEEPALIVE_BODY)}-byte body)")
    for name, value in bench_codec(args.parse):
        print(f"  {name:<40}  {value:>12,.0f} /s")

    if args.udp:
        print_transport(bench_transport("UDP", args.udp, args.window))
    if args.tcp:
        print_transport(bench_transport("TCP", args.tcp, args.window))
    print(f"\nload average after the run: {load_average()}")


if __name__ == "__main__":
    main()

"""Soak benchmark (issue 16, not CI): many simulated devices on one gateway node, keeping alive at 60 s.

Run: python3 tests/bench/bench_soak.py [--devices N] [--minutes M] [--addresses A] [--devices-per-socket S]
(the default 100,000 devices for 2 minutes; ``--devices 1000000 --minutes 10`` is the issue's soak)

The gateway runs as in production (``python3 -m gbgw.gb28181 run``, SQLite, warning-level JSON logs, the
default per-source rate limit, keepalive interval 60 s, 3 misses) pinned to core 0. The load runs on
core 1: one DeviceSimulator process per loopback address (127.0.0.2, 127.0.0.3, ...), S devices per
UDP socket as behind a NAT, each device registering with digest, answering DeviceInfo and a one-channel
Catalog, and sending a keepalive every 60 s; plus a probe process whose few hundred devices (registered
the same way) send their keepalives from raw sockets, spread evenly over each minute, and time each
answer: the p99 keepalive answer time is theirs, measured under the simulators' load.

Printed, for the first run and again after a restart on the same database with every device loaded:
time until all online, RSS per device (after the burst and at the end), keepalives/s and the gateway's
CPU, p99 keepalive answer time, and devices wrongly marked offline (offline transitions while every
device keeps alive: must be 0). Then an extrapolation to 1,000,000 devices from the per-device CPU and
memory. Figures are printed, never asserted, with the load average beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_devices import DOMAIN, HOST, SERVER_ID, GatewayProcess, KeepaliveBlaster, wait_until
from benchkit import load_average, percentile, pin, run_loop

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator

LOAD_CORE = 1
KEEPALIVE_INTERVAL = 60
PROBE_DEVICES = 300
PROBE_ADDRESS = "127.0.0.250"
MILLION = 1_000_000


@dataclass(slots=True, frozen=True)
class SoakSpec:
    sip_port: int
    bind: str
    start: int
    count: int
    devices_per_socket: int
    register_rate: float
    keepalive_interval: float


def simulator_main(conn: multiprocessing.connection.Connection, spec: SoakSpec) -> None:
    """One DeviceSimulator process on LOAD_CORE: "start", "stats", "stop" (without unregistering)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin(LOAD_CORE)
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    run_loop(_simulate(conn, spec), fewer_collections=True)


def _config(spec: SoakSpec) -> SimulatorConfig:
    return SimulatorConfig(
        server_host=HOST, server_port=spec.sip_port, count=spec.count, start=spec.start, channels=1,
        devices_per_socket=spec.devices_per_socket, register_rate=spec.register_rate,
        keepalive_interval=spec.keepalive_interval, domain=DOMAIN, server_id=SERVER_ID, bind=spec.bind,
    )


async def _simulate(conn: multiprocessing.connection.Connection, spec: SoakSpec) -> None:
    loop = asyncio.get_running_loop()
    simulator = DeviceSimulator(_config(spec))
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    running = False
    try:
        while True:
            command, *_ = await commands.get()
            if command == "start":
                await simulator.start()
                running = True
                conn.send(None)
            elif command == "stats":
                conn.send({**asdict(simulator.stats), "cpu": time.process_time()})
            elif command == "stop":
                break
    finally:
        loop.remove_reader(conn.fileno())
        if running:
            await simulator.stop(unregister=False)


def probe_main(conn: multiprocessing.connection.Connection, spec: SoakSpec) -> None:
    """The probe devices: registered by a DeviceSimulator, then keepalives from raw sockets, timed.
    Commands: "start" (register), "prepare" (take the sockets over), ("probe", seconds) -> latencies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin(LOAD_CORE)
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    run_loop(_probe(conn, spec), fewer_collections=True)


async def _probe(conn: multiprocessing.connection.Connection, spec: SoakSpec) -> None:
    loop = asyncio.get_running_loop()
    config = _config(spec)
    simulator = DeviceSimulator(config)
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    prober: KeepaliveBlaster | None = None
    running = False
    try:
        while True:
            command, *params = await commands.get()
            if command == "start":
                await simulator.start()
                running = True
                conn.send(None)
            elif command == "stats":
                conn.send({**asdict(simulator.stats), "cpu": time.process_time()})
            elif command == "prepare":
                sockets = simulator.sockets
                await simulator.stop(unregister=False)
                running = False
                await asyncio.sleep(0.2)
                per = config.devices_per_socket
                groups = [(address, [simulator.device_id(i) for i in range(g * per, min((g + 1) * per, config.count))])
                          for g, address in enumerate(sockets)]
                prober = KeepaliveBlaster(groups, (HOST, spec.sip_port))
                conn.send(None)
            elif command == "probe":
                assert prober is not None
                # The gateway's interval, not the probe simulator's own (which is set never to fire).
                conn.send(await loop.run_in_executor(None, timed_keepalives, prober, params[0],
                                                     float(KEEPALIVE_INTERVAL)))
            elif command == "stop":
                break
    finally:
        loop.remove_reader(conn.fileno())
        if prober is not None:
            prober.close()
        if running:
            await simulator.stop(unregister=False)


def timed_keepalives(prober: KeepaliveBlaster, seconds: float, interval: float) -> dict[str, Any]:
    """Each probe device's keepalive once per ``interval``, evenly spread; the answer time of each."""
    targets = prober.targets
    gap = interval / len(targets)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lost = 0
    poller = select.epoll()
    receivers = {}
    for sock in prober.sockets:
        poller.register(sock.fileno(), select.EPOLLIN)
        receivers[sock.fileno()] = sock.recv
    start = time.perf_counter()
    counter = prober.counter
    cursor = 0
    sent_at = 0.0
    while time.perf_counter() - start < seconds:
        send, template, device_id = targets[cursor]
        cursor = (cursor + 1) % len(targets)
        counter += 1
        sent_at = time.perf_counter()
        send(template % (counter, device_id, counter, counter, counter, device_id))
        answered = False
        while not answered:
            events = poller.poll(max(0.0, 2.0 - (time.perf_counter() - sent_at)))
            if not events:
                lost += 1
                break
            for fd, _ in events:
                try:
                    data = receivers[fd](4096)
                except BlockingIOError:
                    continue
                # Only our own answer counts (a late one of an earlier probe carries an older Call-ID).
                if (b"Call-ID: %012d@" % counter) in data:
                    latencies.append(time.perf_counter() - sent_at)
                    status = data.split(b"\r\n", 1)[0].decode(errors="replace")
                    statuses[status] = statuses.get(status, 0) + 1
                    answered = True
        pause = sent_at + gap - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    poller.close()
    prober.counter = counter
    return {"latencies": latencies, "lost": lost, "statuses": statuses}


class Load:
    """The simulator processes and the probe process."""

    def __init__(self, specs: list[SoakSpec], probe: SoakSpec) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[multiprocessing.connection.Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for spec in specs:
            self._spawn(ctx, simulator_main, spec)
        self.probe = self._spawn(ctx, probe_main, probe)

    def _spawn(self, ctx: Any, target: Any, spec: SoakSpec) -> multiprocessing.connection.Connection:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=target, args=(child, spec), daemon=True)
        proc.start()
        self.conns.append(parent)
        self.procs.append(proc)
        return parent

    def ask(self, *command: Any, timeout: float = 120.0) -> list[Any]:
        for conn in self.conns:
            conn.send(command)
        answers = []
        for conn in self.conns:
            if not conn.poll(timeout):
                raise RuntimeError(f"a load process did not answer {command[0]!r} in {timeout:g} s")
            answers.append(conn.recv())
        return answers

    def stats(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for answer in self.ask("stats"):
            for key, value in answer.items():
                total[key] = total.get(key, 0) + value
        return total

    def stop(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop",))
        for proc in self.procs:
            proc.join(15)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


@dataclass(slots=True)
class Options:
    devices: int
    minutes: float
    restart_minutes: float
    addresses: int
    devices_per_socket: int
    register_rate: float
    timeout: float


def soak(gateway: GatewayProcess, load: Load, minutes: float, n: int, label: str) -> tuple[list[tuple[str, str]], float]:
    """One soak window: keepalive rate, CPU, probe latencies, offline transitions, RSS at its end; and the
    gateway's CPU microseconds per keepalive over it (everything else it did included)."""
    m0, cpu0, t0 = gateway.metrics(), gateway.cpu(), time.monotonic()
    seconds = minutes * 60
    load.probe.send(("probe", seconds))
    if not load.probe.poll(seconds + 120):
        raise RuntimeError("probe did not report")
    probe = load.probe.recv()
    m1, cpu1, t1 = gateway.metrics(), gateway.cpu(), time.monotonic()
    window = t1 - t0
    ok = m1.get("gb_keepalives_total", result="ok") - m0.get("gb_keepalives_total", result="ok")
    refused = m1.get("gb_keepalives_total", result="unregistered") - m0.get("gb_keepalives_total", result="unregistered")
    offline = (m1.get("gb_device_transitions_total", state="offline")
               - m0.get("gb_device_transitions_total", state="offline"))
    health = gateway.health()
    mem = gateway.memory()
    latencies = probe["latencies"]
    cpu = cpu1 - cpu0
    per_keepalive = 1e6 * cpu / max(ok, 1)
    return [
        (f"soak, {label}: {window:.0f} s", ""),
        ("keepalives/s (ok) / refused", f"{ok / window:,.0f} / {refused:,.0f}"),
        ("gateway CPU busy", f"{100 * cpu / window:.1f} %  = {per_keepalive:,.0f} us per keepalive, "
         "everything else included"),
        ("probe keepalives: answered / lost", f"{len(latencies):,} / {probe['lost']:,}  "
         f"({', '.join(f'{k} x{v}' for k, v in probe['statuses'].items())})"),
        ("keepalive answer time p50 / p99 / max",
         f"{1e3 * percentile(latencies, 0.5):.2f} / {1e3 * percentile(latencies, 0.99):.2f} / "
         f"{1e3 * max(latencies, default=float('nan')):.2f} ms"),
        ("devices wrongly marked offline (must be 0)", f"{offline:,.0f}"),
        ("online at the end / devices", f"{health['online']:,} / {n:,}"),
        ("RSS at the end", f"{mem['VmRSS'] / 2**20:,.1f} MB"),
    ], per_keepalive


def run(opts: Options) -> list[tuple[str, str]]:
    n = opts.devices + PROBE_DEVICES
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        gateway = GatewayProcess(Path(tmp), False, keepalive_interval=KEEPALIVE_INTERVAL, rate_limit=10_000)
        load: Load | None = None
        try:
            gateway.start()
            time.sleep(1.0)
            base = gateway.memory()["VmRSS"]
            per = math.ceil(opts.devices / opts.addresses)
            specs = [SoakSpec(gateway.sip_port, f"127.0.0.{2 + a}", 1 + a * per, min(per, opts.devices - a * per),
                              opts.devices_per_socket, opts.register_rate / opts.addresses, KEEPALIVE_INTERVAL)
                     for a in range(opts.addresses) if opts.devices - a * per > 0]
            probe = SoakSpec(gateway.sip_port, PROBE_ADDRESS, 1 + opts.devices, PROBE_DEVICES, 50, 500.0, 86_400.0)
            load = Load(specs, probe)
            load.ask("stats")
            print(f"registering {n:,} devices ...", flush=True)
            cpu0, started = gateway.cpu(), time.monotonic()
            load.ask("start")
            online_at = wait_until("all online", lambda: gateway.health()["online"] >= n, opts.timeout)
            online_s = (online_at or time.monotonic()) - started
            mem_online = gateway.memory()["VmRSS"]

            def bootstrapped() -> bool:
                return gateway.metrics().get("gb_catalogs_total") >= n

            boot_at = wait_until("bootstrap finished", bootstrapped, opts.timeout, interval=2.0)
            boot_s = (boot_at or time.monotonic()) - started
            cpu_boot = gateway.cpu() - cpu0
            mem_burst = gateway.memory()["VmRSS"]
            load.probe.send(("prepare",))
            load.probe.recv()
            rows += [
                ("registration burst", ""),
                ("time until all online", f"{online_s:.1f} s" + ("" if online_at else " (TIMED OUT)")),
                ("bootstrap (DeviceInfo + one-channel Catalog) done", f"{boot_s:.1f} s"
                 + ("" if boot_at else " (TIMED OUT)")),
                ("gateway CPU, start to bootstrap end", f"{cpu_boot:.1f} s = {1e6 * cpu_boot / n:,.0f} us per device"),
                ("RSS when all online", f"{mem_online / 2**20:,.1f} MB = {(mem_online - base) / n:,.0f} B/device"),
                ("RSS after the burst (bootstrap done)", f"{mem_burst / 2**20:,.1f} MB = "
                 f"{(mem_burst - base) / n:,.0f} B/device"),
            ]
            print(f"soaking {opts.minutes:g} min ...", flush=True)
            first, keepalive_cpu = soak(gateway, load, opts.minutes, n, "first run")
            mem_end = gateway.memory()["VmRSS"]
            rows += [("", ""), *first, ("RSS per device at the end", f"{(mem_end - base) / n:,.0f} B/device")]
            sim = load.stats()
            rows.append(("simulators: keepalives sent / failed / re-registrations",
                         f"{sim['keepalives_sent']:,.0f} / {sim['keepalives_failed']:,.0f} / "
                         f"{sim['reregistrations']:,.0f}"))

            print("restarting the gateway on the same database ...", flush=True)
            gateway.stop()
            restarted = time.monotonic()
            gateway.start(timeout=opts.timeout)
            api_s = time.monotonic() - restarted
            mem_loaded = gateway.memory()["VmRSS"]
            # The probe devices keep alive only while they probe: the simulated ones are counted here.
            again_at = wait_until("all online after the restart",
                                  lambda: gateway.health()["online"] >= opts.devices, opts.timeout)
            rows += [
                ("", ""),
                ("restart with every device loaded", ""),
                ("devices loaded / API up after", f"{gateway.health()['devices']:,} / {api_s:.1f} s"),
                ("RSS loaded, before any traffic", f"{mem_loaded / 2**20:,.1f} MB = {(mem_loaded - base) / n:,.0f} "
                 "B/device over the empty start"),
                ("time until all simulated devices online again", f"{(again_at or time.monotonic()) - restarted:.1f} s"
                 + ("" if again_at else " (TIMED OUT)")),
            ]
            if opts.restart_minutes > 0:
                second, _ = soak(gateway, load, opts.restart_minutes, n, "after the restart")
                mem_end2 = gateway.memory()["VmRSS"]
                rows += [("", ""), *second, ("RSS per device at the end", f"{(mem_end2 - base) / n:,.0f} B/device")]
            steady = (mem_end - base) / n
            rows += [
                ("", ""),
                (f"extrapolated to {MILLION:,} devices at {KEEPALIVE_INTERVAL} s", ""),
                ("memory (steady, this run's bytes/device)", f"{steady * MILLION / 2**30:,.1f} GiB"),
                ("memory right after a burst", f"{(mem_burst - base) / n * MILLION / 2**30:,.1f} GiB"),
                ("keepalive CPU (this run's us/keepalive)",
                 f"{keepalive_cpu * MILLION / KEEPALIVE_INTERVAL / 1e6:.2f} cores"),
                ("registration burst CPU (this run's us/device)", f"{cpu_boot / n * MILLION:,.0f} CPU-seconds"),
            ]
        finally:
            if load is not None:
                load.stop()
            gateway.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000, help="simulated devices (default 100,000)")
    parser.add_argument("--minutes", type=float, default=2.0, help="soak length (default 2)")
    parser.add_argument("--restart-minutes", type=float, default=None,
                        help="soak length after the restart (default: half of --minutes; 0 skips it)")
    parser.add_argument("--addresses", type=int, default=4,
                        help="loopback addresses, one simulator process each (default 4)")
    parser.add_argument("--devices-per-socket", type=int, default=1000)
    parser.add_argument("--register-rate", type=float, default=4000.0,
                        help="REGISTER first legs per second, all simulators together (default 4,000)")
    parser.add_argument("--timeout", type=float, default=0.0,
                        help="limit for each wait (default: 120 s + 10 ms per device)")
    args = parser.parse_args()
    opts = Options(
        devices=args.devices,
        minutes=args.minutes,
        restart_minutes=args.minutes / 2 if args.restart_minutes is None else args.restart_minutes,
        addresses=max(1, min(args.addresses, 200)),
        devices_per_socket=args.devices_per_socket,
        register_rate=args.register_rate,
        timeout=args.timeout or 120.0 + 0.01 * args.devices,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pin(LOAD_CORE)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load_average()} (1/5/15 min)")
    print(f"{opts.devices:,} devices over {opts.addresses} loopback addresses ({opts.devices_per_socket} per socket) "
          f"+ {PROBE_DEVICES} probe devices; keepalive every {KEEPALIVE_INTERVAL} s; gateway on core 0, load on "
          f"core {LOAD_CORE}\n", flush=True)
    try:
        rows = run(opts)
    except KeyboardInterrupt:
        print("interrupted; processes stopped")
        sys.exit(130)
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value}" if value else name)
    print(f"\nload average after the run: {load_average()}")


if __name__ == "__main__":
    main()

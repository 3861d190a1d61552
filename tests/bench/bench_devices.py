"""Device benchmark (issue 3): many simulated devices registered with digest on one gateway node.

Run: python3 tests/bench/bench_devices.py [--devices N | --quick] [--subscribe] [--gateway-gc-threshold 50000,20,100]
(the default 100,000 devices take about 3 minutes, 4 with --subscribe; --quick about 80 s)

The gateway runs as it does in production: ``python3 -m gb28181 run --config FILE`` in a subprocess, SQLite
in a temporary directory, JSON logs at warning level to a file, pinned to core 0. The load runs on core 1:
several DeviceSimulator processes (uvloop, fewer_collections) with disjoint device-number ranges, 1,000
devices per UDP socket as behind a NAT, and this script, which polls the gateway's HTTP API.

(1) Registration: every simulator queues all its devices at once (REGISTER, 401, REGISTER with digest) with
    a keepalive interval longer than the run, so only registrations and the gateway's bootstrap of each
    new device (DeviceInfo and Catalog queries, and a Catalog SUBSCRIBE with --subscribe) load the
    gateway. Timed from the start command to /api/health saying all N are online (polled every 0.5 s:
    /metrics would add an O(N) scan of the registered gauge to each poll).
(2) Memory: the gateway's VmRSS before any device registered, when all are online, when the bootstrap
    finished, and --settle seconds later, when the completed transactions (Timer J, 64*T1 = 32 s) are gone.
    Bytes per device = growth / N; it includes the device's one catalog channel (--channels 1).
(3) Keepalives: the simulators are stopped without unregistering and each process blasts keepalive
    MESSAGEs from the very sockets (address and port) its devices registered from, cycling through its
    devices, with a bounded window of outstanding requests, each with a fresh branch and Call-ID. A
    DeviceSimulator process sends at most ~5,000 keepalives/s and all load shares one core, so simulated
    keepalives could not reach the 20,000/s goal. Figures: gb_keepalives_total{result="ok"} growth per
    second, and per CPU-second of the gateway process (utime + stime): the "one core" figure.
(3b) The same blast, from the same sockets, against a bare asyncio responder (benchkit.bare_answer: five
    headers copied, no parse) pinned to the gateway's core: the gateway's figures as ratios to what the
    machine allows in this very run, whatever else loads it.
(4) Restart: the gateway is stopped (SIGTERM) and started on the same database; its VmRSS with the N
    devices and their channels loaded, before any traffic, is the registry's own cost without what the
    registration storm leaves behind: CPython does not give the memory of freed transactions back to the
    system while a live object shares its 1 MiB arena, so after (1) VmRSS stays near its peak.

After settling, SIGUSR2 makes the gateway call malloc_trim(0) (the "then malloc_trim(0)" row: on 5,000
devices it gave nothing back, so the daemon does not call it). --tracemalloc DIR dumps tracemalloc
snapshots of the gateway (SIGUSR1) when all are online, when the bootstrap finished and when settled.
The gateway runs with sip.rate_limit 0: every simulated device writes from 127.0.0.1.

--gateway-gc-threshold runs the gateway with gc.set_threshold(...), as the simulator's fewer_collections()
does, to show what the cyclic collector costs it (the daemon itself leaves the thresholds alone).

Figures are printed, never asserted: they depend on the machine and on what else runs on it, so the load
average is printed alongside.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import bare_responder_main, cpu_seconds, load_average, pin, run_loop

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator

REPO = Path(__file__).resolve().parents[2]
GATEWAY_CORE = 0
LOAD_CORE = 1
HOST = "127.0.0.1"
SERVER_ID = "34020000002000000001"
DOMAIN = "3402000000"
# Longer than any run: neither the simulators' keepalives nor the gateway's keepalive timeout
# (interval x misses) may interfere with phases (1) and (2).
SIM_KEEPALIVE_INTERVAL = 86_400.0
GATEWAY_KEEPALIVE_INTERVAL = 3600
RSS_GOAL = 2048
KEEPALIVE_GOAL = 20_000


# -- small readings ---------------------------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024
    return out


def free_port() -> int:
    """A port free on UDP and TCP at once (the gateway listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port found")


# -- the gateway subprocess -------------------------------------------------------------------------------

class GatewayProcess:
    """``python3 -m gb28181 run`` pinned to GATEWAY_CORE, read through its API and /proc."""

    def __init__(
        self, workdir: Path, subscribe: bool, gc_threshold: tuple[int, ...] | None = None,
        tracemalloc: Path | None = None, keepalive_interval: int = GATEWAY_KEEPALIVE_INTERVAL,
        rate_limit: int = 0,
    ) -> None:
        self.gc_threshold = gc_threshold
        self.tracemalloc = tracemalloc
        self.sip_port = free_port()
        self.api_port = free_port()
        self.config = workdir / "gateway.yaml"
        self.db = workdir / "gateway.db"
        self.log = workdir / "gateway.log"
        self.config.write_text(
            "sip:\n"
            f"  id: \"{SERVER_ID}\"\n"
            f"  domain: \"{DOMAIN}\"\n"
            f"  listen: \"{HOST}:{self.sip_port}\"\n"
            f"  keepalive_interval: {keepalive_interval}\n"
            f"  catalog_subscribe: {'true' if subscribe else 'false'}\n"
            # Every simulated device writes from 127.0.0.1: the per-source limit (10,000/s by default, for
            # a NAT address of many devices) would cap the keepalive phase, not the gateway.
            f"  rate_limit: {rate_limit}\n"
            "api:\n"
            f"  listen: \"{HOST}:{self.api_port}\"\n"
            "storage:\n"
            "  backend: sqlite\n"
            f"  path: \"{self.db}\"\n"
            "log:\n"
            "  level: warning\n"
            "  format: json\n"
            "audit:\n"
            f"  path: \"{workdir / 'audit.log'}\"\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> None:
        # The daemon as `-m gbgw.gb28181` runs it, after a few calls the daemon does not make: the collector
        # thresholds, and the memory probes (SIGUSR1 dumps a tracemalloc snapshot, SIGUSR2 calls
        # malloc_trim) that --tracemalloc and the trim measurement use.
        prelude = ["import gc, sys, signal, ctypes"]
        if self.gc_threshold is not None:
            prelude.append(f"gc.set_threshold(*{self.gc_threshold!r})")
        prelude.append("signal.signal(signal.SIGUSR2, lambda *_: ctypes.CDLL('libc.so.6').malloc_trim(0))")
        if self.tracemalloc is not None:
            prelude += [
                "import tracemalloc, itertools; tracemalloc.start(1); dumps = itertools.count()",
                "signal.signal(signal.SIGUSR1, lambda *_: (gc.collect(), tracemalloc.take_snapshot()"
                f".dump({str(self.tracemalloc)!r} + f'/snapshot-{{next(dumps)}}.tm')))",
            ]
        prelude.append("from gbgw.gb28181.app.cli import main; sys.exit(main())")
        command = [sys.executable, "-c", "; ".join(prelude), "run", "--config", str(self.config)]
        if hasattr(os, "sched_setaffinity"):
            command = ["taskset", "-c", str(GATEWAY_CORE), *command]
        with open(self.log, "wb") as log:
            # Its own session: a Ctrl-C reaches this script only, which then stops the gateway with SIGTERM.
            self.proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError):
                self.health()
                return
            time.sleep(0.1)
        raise RuntimeError(f"gateway API not up after {timeout:g} s: {self.log_tail()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://{HOST}:{self.api_port}{path}", timeout=10) as answer:
            return bytes(answer.read())

    def health(self) -> dict[str, Any]:
        return dict(json.loads(self._get("/api/health")))

    def metrics(self) -> Metrics:
        return Metrics(self._get("/metrics").decode())

    def memory(self) -> dict[str, int]:
        return proc_status(self.pid)

    def signal(self, number: int, wait: float = 1.0) -> None:
        """Send a probe signal (see start) and give its handler time to run."""
        os.kill(self.pid, number)
        time.sleep(wait)

    def snapshot(self) -> None:
        """A tracemalloc snapshot into the --tracemalloc folder, when that is on."""
        if self.tracemalloc is not None:
            self.signal(signal.SIGUSR1, wait=5.0)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_summary(self) -> Counter[str]:
        """Log events by level and text: at warning level, anything here is worth a look."""
        events: Counter[str] = Counter()
        with contextlib.suppress(OSError), open(self.log, errors="replace") as log:
            for line in log:
                try:
                    entry = json.loads(line)
                    events[f"{entry.get('level', '?')}: {entry.get('event', '?')}"] += 1
                except (ValueError, AttributeError):
                    events[f"raw: {line.strip()[:100]}"] += 1
        return events


class Metrics:
    """One scrape of /metrics: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def get(self, name: str, **labels: str) -> float:
        """Sum of the samples named ``name`` whose labels include ``labels``."""
        return sum(
            value for sample, have, value in self.samples
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        return {have.get(label, ""): value for sample, have, value in self.samples if sample == name}


# -- simulator processes ----------------------------------------------------------------------------------

@dataclass(slots=True, frozen=True)
class WorkerSpec:
    sip_port: int
    start: int
    count: int
    channels: int
    devices_per_socket: int
    register_rate: float


def worker_main(conn: multiprocessing.connection.Connection, spec: WorkerSpec) -> None:
    """One simulator process on LOAD_CORE, driven by commands from the pipe (see _serve)."""
    # The benchmark stops its workers itself, also on Ctrl-C; an interrupt here would only add tracebacks.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin(LOAD_CORE)
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    run_loop(_serve(conn, spec), fewer_collections=True)


async def _serve(conn: multiprocessing.connection.Connection, spec: WorkerSpec) -> None:
    """Commands: start, stats, prepare (stop simulating, bind the blast sockets), blast, stop."""
    loop = asyncio.get_running_loop()
    config = SimulatorConfig(
        server_host=HOST, server_port=spec.sip_port, count=spec.count, start=spec.start,
        channels=spec.channels, devices_per_socket=spec.devices_per_socket,
        register_rate=spec.register_rate, keepalive_interval=SIM_KEEPALIVE_INTERVAL,
        domain=DOMAIN, server_id=SERVER_ID,
    )
    simulator = DeviceSimulator(config)
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    running = False
    blaster: KeepaliveBlaster | None = None
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
                await asyncio.sleep(0.2)  # the transports close their sockets on a later loop iteration
                groups = []
                per = config.devices_per_socket
                for g, address in enumerate(sockets):
                    ids = [simulator.device_id(i) for i in range(g * per, min((g + 1) * per, config.count))]
                    groups.append((address, ids))
                blaster = KeepaliveBlaster(groups, (HOST, spec.sip_port))
                conn.send(None)
            elif command == "blast":
                assert blaster is not None
                conn.send(blaster.run(*params))
            elif command == "retarget":
                assert blaster is not None
                blaster.retarget((HOST, params[0]))
                conn.send(None)
            elif command == "stop":
                break
    finally:
        loop.remove_reader(conn.fileno())
        if blaster is not None:
            blaster.close()
        if running:
            await simulator.stop(unregister=False)


# A keepalive as the simulator (and a Hikvision IPC) sends it; %d fields are fixed-width so the
# Content-Length never changes. Fields: branch, device ID, From tag, Call-ID, SN, device ID.
_KEEPALIVE_BODY = (
    b'<?xml version="1.0" encoding="GB2312"?>\r\n'
    b"<Notify>\r\n"
    b"<CmdType>Keepalive</CmdType>\r\n"
    b"<SN>%012d</SN>\r\n"
    b"<DeviceID>%s</DeviceID>\r\n"
    b"<Status>OK</Status>\r\n"
    b"</Notify>\r\n"
)
_BODY_LENGTH = len(_KEEPALIVE_BODY % (0, b"0" * 20))


def _keepalive_template(host: str, port: int) -> bytes:
    head = (
        f"MESSAGE sip:{SERVER_ID}@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};rport;branch=z9hG4bK%012d\r\n"
        f"From: <sip:%s@{DOMAIN}>;tag=%012d\r\n"
        f"To: <sip:{SERVER_ID}@{DOMAIN}>\r\n"
        f"Call-ID: %012d@{host}\r\n"
        "CSeq: 20 MESSAGE\r\n"
        "Content-Type: Application/MANSCDP+xml\r\n"
        "Max-Forwards: 70\r\n"
        "User-Agent: IP Camera\r\n"
        f"Content-Length: {_BODY_LENGTH}\r\n"
        "\r\n"
    )
    return head.encode() + _KEEPALIVE_BODY


class KeepaliveBlaster:
    """Keepalives from the sockets the devices registered from: one blocking-free loop, a bounded window."""

    def __init__(self, groups: list[tuple[tuple[str, int], list[str]]], server: tuple[str, int]) -> None:
        self.sockets: list[socket.socket] = []
        # Round-robin over sockets, then devices: consecutive sends come from different ports.
        columns = []
        for (host, port), ids in groups:
            sock = self._bind(host, port)
            sock.connect(server)
            sock.setblocking(False)
            self.sockets.append(sock)
            template = _keepalive_template(host, port)
            columns.append([(sock.send, template, device_id.encode()) for device_id in ids])
        self.targets = [row[i] for i in range(max(map(len, columns))) for row in columns if i < len(row)]
        self.counter = 0

    @staticmethod
    def _bind(host: str, port: int) -> socket.socket:
        for _ in range(40):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
                return sock
            except OSError:
                sock.close()
                time.sleep(0.05)
        raise RuntimeError(f"cannot bind {host}:{port} again after the simulator closed it")

    def retarget(self, server: tuple[str, int]) -> None:
        """Send the same keepalives from the same sockets elsewhere (the bare responder)."""
        for sock in self.sockets:
            sock.connect(server)

    def run(self, seconds: float, window: int) -> dict[str, Any]:
        poller = select.epoll()
        receivers = {}
        for sock in self.sockets:
            poller.register(sock.fileno(), select.EPOLLIN)
            receivers[sock.fileno()] = sock.recv
        targets = self.targets
        n = len(targets)
        cursor = self.counter % n
        counter = self.counter
        sent = ok = other = lost = 0
        outstanding = 0
        statuses: Counter[bytes] = Counter()
        cpu0 = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds
        draining = False
        while True:
            now = time.perf_counter()
            if not draining and now >= deadline:
                draining = True
            if draining and outstanding <= 0:
                break
            while not draining and outstanding < window:
                send, template, device_id = targets[cursor]
                cursor = cursor + 1 if cursor + 1 < n else 0
                counter += 1
                try:
                    send(template % (counter, device_id, counter, counter, counter, device_id))
                except BlockingIOError:
                    break
                sent += 1
                outstanding += 1
            events = poller.poll(1.0)
            if not events:
                # On loopback a request without an answer after 1 s was dropped (a full receive buffer).
                lost += outstanding
                outstanding = 0
                continue
            for fd, _ in events:
                recv = receivers[fd]
                while True:
                    try:
                        data = recv(4096)
                    except BlockingIOError:
                        break
                    outstanding -= 1
                    if data.startswith(b"SIP/2.0 200 "):
                        ok += 1
                    else:
                        other += 1
                        statuses[data.split(b"\r\n", 1)[0][:60]] += 1
        poller.close()
        self.counter = counter
        return {
            "sent": sent, "ok": ok, "other": other, "lost": lost,
            "seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu0,
            "statuses": {k.decode(errors="replace"): v for k, v in statuses.items()},
        }

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


class Workers:
    """The simulator processes, addressed all at once."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        # spawn, not fork: a forked worker would share this process's state and memory.
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[multiprocessing.connection.Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for spec in specs:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child, spec), daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def ask(self, *command: Any, timeout: float = 60.0) -> list[Any]:
        for conn in self.conns:
            conn.send(command)
        answers = []
        for conn, proc in zip(self.conns, self.procs, strict=True):
            if not conn.poll(timeout):
                raise RuntimeError(f"simulator process {proc.pid} did not answer {command[0]!r} in {timeout:g} s")
            answers.append(conn.recv())
        return answers

    def stats(self) -> dict[str, float]:
        total: Counter[str] = Counter()
        for answer in self.ask("stats"):
            total.update(answer)
        return dict(total)

    def stop(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("stop",))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


# -- the run ----------------------------------------------------------------------------------------------

@dataclass(slots=True)
class Options:
    devices: int
    workers: int
    devices_per_socket: int
    channels: int
    subscribe: bool
    register_rate: float
    settle: float
    keepalive_seconds: float
    window: int
    timeout: float
    gc_threshold: tuple[int, ...] | None
    tracemalloc: Path | None = None


def specs_for(opts: Options, sip_port: int) -> list[WorkerSpec]:
    per = math.ceil(opts.devices / opts.workers)
    specs = []
    for w in range(opts.workers):
        count = min(per, opts.devices - w * per)
        if count > 0:
            specs.append(WorkerSpec(sip_port, 1 + w * per, count, opts.channels, opts.devices_per_socket,
                                    opts.register_rate / opts.workers))
    return specs


def wait_until(what: str, ready: Callable[[], bool], timeout: float, interval: float = 0.5) -> float | None:
    """Poll ``ready()`` until true; the monotonic time it became true, or None after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return time.monotonic()
        time.sleep(interval)
    print(f"  !! {what}: not reached after {timeout:g} s", flush=True)
    return None


def bare_comparison(workers: Workers, opts: Options, rate: float, per_cpu: float) -> list[tuple[str, str]]:
    """(3b) The same blast from the same sockets against a bare asyncio responder on the gateway's core:
    what the machine allows in this run, so the gateway's figure reads as a ratio despite the other load."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    bare = ctx.Process(target=bare_responder_main, args=(GATEWAY_CORE, child), daemon=True)
    bare.start()
    try:
        port = parent.recv()
        workers.ask("retarget", port)
        for conn in workers.conns:
            conn.send(("blast", opts.keepalive_seconds + 2.0, max(1, opts.window // len(workers.conns))))
        time.sleep(1.0)
        parent.send("cpu")
        cpu0 = parent.recv()
        t0 = time.monotonic()
        time.sleep(opts.keepalive_seconds)
        parent.send("cpu")
        cpu1 = parent.recv()
        window = time.monotonic() - t0
        bare_rate = 0.0
        for conn in workers.conns:
            if conn.poll(opts.keepalive_seconds + 30):
                answer = conn.recv()
                bare_rate += answer["ok"] / answer["seconds"]
    finally:
        parent.close()
        bare.join(5)
        if bare.is_alive():
            bare.kill()
    bare_per_cpu = bare_rate * window / (cpu1 - cpu0) if cpu1 > cpu0 else float("nan")
    return [
        ("", ""),
        ("(3b) the same blast against a bare asyncio responder (same core, same run)", ""),
        ("bare responder answers/s", f"{bare_rate:,.0f}  (CPU busy {100 * (cpu1 - cpu0) / window:.0f} %)"),
        ("bare answers per CPU-second", f"{bare_per_cpu:,.0f}"),
        ("gateway / bare, per second", f"{rate / bare_rate:.2f}" if bare_rate else "n/a"),
        ("gateway / bare, per CPU-second", f"{per_cpu / bare_per_cpu:.2f}  (goal >= 0.5)"
         if bare_per_cpu == bare_per_cpu else "n/a"),
    ]


def run(opts: Options) -> list[tuple[str, str]]:
    n = opts.devices
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bench-devices-") as tmp:
        gateway = GatewayProcess(Path(tmp), opts.subscribe, opts.gc_threshold, opts.tracemalloc)
        workers: Workers | None = None
        try:
            gateway.start()
            time.sleep(1.0)
            mem0 = gateway.memory()
            workers = Workers(specs_for(opts, gateway.sip_port))
            workers.ask("stats", timeout=60)  # every process is up and has imported everything

            # (1) registration ---------------------------------------------------------------------------
            print(f"(1) registering {n:,} devices ...", flush=True)
            cpu_gw0, cpu_sim0 = gateway.cpu(), workers.stats()["cpu"]
            started = time.monotonic()
            workers.ask("start")
            online_at = wait_until("all devices online", lambda: gateway.health()["online"] >= n, opts.timeout)
            mem_online = gateway.memory()
            gateway.snapshot()
            cpu_gw1 = gateway.cpu()
            sim = workers.stats()
            cpu_sim1 = sim["cpu"]
            online = gateway.health()["online"]
            elapsed = (online_at or time.monotonic()) - started
            rows.append(("(1) registration", ""))
            rows.append(("devices online / expected", f"{online:,} / {n:,}"))
            rows.append(("time until all online", f"{elapsed:.1f} s" + ("" if online_at else " (TIMED OUT)")))
            rows.append(("registrations/s (online / time)", f"{online / elapsed:,.0f}"))
            rows.append(("gateway CPU busy during it", f"{100 * (cpu_gw1 - cpu_gw0) / elapsed:.0f} %"))
            if cpu_gw1 > cpu_gw0:
                rows.append(("registrations per gateway CPU-second",
                             f"{online / (cpu_gw1 - cpu_gw0):,.0f} (bootstrap traffic so far included)"))
            rows.append(("simulator core busy during it", f"{100 * (cpu_sim1 - cpu_sim0) / elapsed:.0f} %"))

            # (2) memory, and the end of the bootstrap ---------------------------------------------------
            print("(2) waiting for the bootstrap queries to finish ...", flush=True)

            def bootstrapped() -> bool:
                s = workers.stats() if workers is not None else {}
                done = s.get("queries_answered", 0) >= n and s.get("catalogs_answered", 0) >= n
                if opts.subscribe:
                    done = done and s.get("notifies_sent", 0) >= n
                if not done:
                    return False
                catalogs = gateway.metrics().get("gb_catalogs_total")
                return catalogs >= n

            boot_at = wait_until("bootstrap finished", bootstrapped, opts.timeout, interval=1.0)
            mem_boot = gateway.memory()
            gateway.snapshot()
            cpu_gw2 = gateway.cpu()
            sim = workers.stats()
            boot_elapsed = (boot_at or time.monotonic()) - started
            print(f"    bootstrap done after {boot_elapsed:.1f} s; settling {opts.settle:g} s ...", flush=True)
            time.sleep(opts.settle)
            mem_settled = gateway.memory()
            gateway.snapshot()
            gateway.signal(signal.SIGUSR2)
            mem_trimmed = gateway.memory()
            cpu_gw3 = gateway.cpu()
            m = gateway.metrics()
            steps = "DeviceInfo + Catalog" + (" + SUBSCRIBE" if opts.subscribe else "")
            rows.append((f"bootstrap ({steps}) all done after", f"{boot_elapsed:.1f} s"
                         + ("" if boot_at else " (TIMED OUT)")))
            rows.append(("gateway CPU-seconds, start to bootstrap end", f"{cpu_gw2 - cpu_gw0:.1f} s "
                         f"= {1e6 * (cpu_gw2 - cpu_gw0) / n:,.0f} us per device"))
            rows.append(("gateway CPU while settling (no traffic)", f"{100 * (cpu_gw3 - cpu_gw2) / opts.settle:.1f} %"))
            regs = m.by_label("gb_registrations_total", "result")
            rows.append(("REGISTER outcomes (gateway)", ", ".join(f"{k} {v:,.0f}" for k, v in sorted(regs.items()))))
            cats = m.by_label("gb_catalogs_total", "result")
            rows.append(("catalogs (gateway)", ", ".join(f"{k} {v:,.0f}" for k, v in sorted(cats.items()))))
            rows.append(("simulators: registered / failures / refused answers",
                         f"{sim['registered']:,.0f} / {sim['register_failures']:,.0f} / {sim['messages_failed']:,.0f}"))
            rows.append(("simulators: queries / catalogs / subscriptions answered",
                         f"{sim['queries_answered']:,.0f} / {sim['catalogs_answered']:,.0f} / "
                         f"{sim['subscriptions']:,.0f}"))
            rows.append(("", ""))
            rows.append(("(2) gateway memory (VmRSS)", ""))
            base = mem0["VmRSS"]
            for label, mem in (("before any device", mem0), ("all online", mem_online),
                               ("bootstrap finished", mem_boot), (f"settled (+{opts.settle:g} s)", mem_settled)):
                growth = mem["VmRSS"] - base
                per = f"  = {growth / n:,.0f} B/device" if mem is not mem0 else ""
                rows.append((label, f"{mem['VmRSS'] / 2**20:,.1f} MB{per}"))
            rows.append(("settled, then malloc_trim(0)", f"{mem_trimmed['VmRSS'] / 2**20:,.1f} MB  = "
                         f"{(mem_trimmed['VmRSS'] - base) / n:,.0f} B/device"))
            rows.append(("peak (VmHWM)", f"{mem_settled['VmHWM'] / 2**20:,.1f} MB"))
            settled_per = (mem_settled["VmRSS"] - base) / n
            rows.append(("RSS per registered device, settled", f"{settled_per:,.0f} B (goal <= {RSS_GOAL:,} B: "
                         f"{'met' if settled_per <= RSS_GOAL else 'NOT met'})"))
            if settled_per > RSS_GOAL:
                rows.append(("  (why it stays high)", "freed transactions leave CPython arenas half used; see (4)"))
            with contextlib.suppress(OSError):
                size = sum(p.stat().st_size for p in Path(tmp).glob("gateway.db*"))
                rows.append(("SQLite files (db + wal)", f"{size / 2**20:,.1f} MB"))

            # (3) keepalives -----------------------------------------------------------------------------
            print(f"(3) keepalives for {opts.keepalive_seconds:g} s ...", flush=True)
            workers.ask("prepare")
            for conn in workers.conns:
                conn.send(("blast", opts.keepalive_seconds + 2.0, max(1, opts.window // len(workers.conns))))
            time.sleep(1.0)  # past the ramp-up
            m0, cpu_k0, t0 = gateway.metrics(), gateway.cpu(), time.monotonic()
            time.sleep(opts.keepalive_seconds)
            m1, cpu_k1, t1 = gateway.metrics(), gateway.cpu(), time.monotonic()
            blasts = []
            for conn in workers.conns:
                if conn.poll(opts.keepalive_seconds + 30):
                    blasts.append(conn.recv())
            mem_after = gateway.memory()
            window = t1 - t0
            ok = m1.get("gb_keepalives_total", result="ok") - m0.get("gb_keepalives_total", result="ok")
            refused = (m1.get("gb_keepalives_total", result="unregistered")
                       - m0.get("gb_keepalives_total", result="unregistered"))
            cpu = cpu_k1 - cpu_k0
            total: Counter[str] = Counter()
            statuses: Counter[str] = Counter()
            for b in blasts:
                total.update({k: v for k, v in b.items() if k != "statuses"})
                statuses.update(b["statuses"])
            rows.append(("", ""))
            rows.append(("(3) keepalives", ""))
            rows.append(("window of outstanding requests", f"{opts.window} over {len(workers.conns)} processes"))
            rows.append(("measured for", f"{window:.1f} s"))
            rows.append(("keepalives handled/s (ok)", f"{ok / window:,.0f}"))
            rows.append(("refused (device not registered)", f"{refused:,.0f}"))
            rows.append(("gateway CPU busy", f"{100 * cpu / window:.0f} %"))
            if cpu > 0:
                per_cpu = ok / cpu
                rows.append(("keepalives per gateway CPU-second", f"{per_cpu:,.0f} (goal >= {KEEPALIVE_GOAL:,}: "
                             f"{'met' if per_cpu >= KEEPALIVE_GOAL else 'NOT met'})"))
                rows.append(("devices keeping alive every 60 s, per core", f"{per_cpu * 60:,.0f}"))
            if total:
                busy = total["cpu"] / max(total["seconds"] / max(len(blasts), 1), 1e-9)
                rows.append(("blasters: sent / 200 / other / lost",
                             f"{total['sent']:,} / {total['ok']:,} / {total['other']:,} / {total['lost']:,}"))
                rows.append(("blaster CPU (sum of processes)", f"{100 * busy:.0f} % of the load core"))
            if statuses:
                rows.append(("non-200 answers", ", ".join(f"{k} x{v}" for k, v in statuses.most_common(3))))
            rows.append(("gateway VmRSS after the keepalives", f"{mem_after['VmRSS'] / 2**20:,.1f} MB "
                         "(completed transactions are held 32 s)"))
            events = gateway.log_summary()
            if cpu > 0:
                rows.extend(bare_comparison(workers, opts, ok / window, ok / cpu))

            # (4) restart ------------------------------------------------------------------------------
            print("(4) restarting the gateway on the same database ...", flush=True)
            workers.stop()
            workers = None
            gateway.stop()
            restart_started = time.monotonic()
            gateway.start(timeout=opts.timeout)
            loaded_in = time.monotonic() - restart_started
            known = gateway.health()["devices"]
            time.sleep(2.0)
            mem_loaded = gateway.memory()
            loaded_per = (mem_loaded["VmRSS"] - base) / n
            rows.append(("", ""))
            rows.append(("(4) restart on the same SQLite database", ""))
            rows.append(("devices loaded / time until the API answered", f"{known:,} / {loaded_in:.1f} s"))
            rows.append(("VmRSS with them loaded (no traffic yet)", f"{mem_loaded['VmRSS'] / 2**20:,.1f} MB  "
                         f"= {loaded_per:,.0f} B/device over the empty start"))
            if events:
                rows.append(("", ""))
                rows.append(("gateway log (warning and above)", ""))
                for event, count in events.most_common(8):
                    rows.append((f"  {event[:60]}", f"x{count:,}"))
        finally:
            if workers is not None:
                workers.stop()
            gateway.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000, help="devices (default 100,000)")
    parser.add_argument("--quick", action="store_true", help="10,000 devices and 10 s of keepalives")
    parser.add_argument("--workers", type=int, default=0,
                        help="simulator processes (default: one per 25,000 devices, at least 2)")
    parser.add_argument("--devices-per-socket", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=1, help="catalog channels per device (default 1)")
    parser.add_argument("--subscribe", action="store_true", help="sip.catalog_subscribe: true (default false)")
    parser.add_argument("--register-rate", type=float, default=4000.0,
                        help="REGISTER first legs per second, all simulators together (default 4,000)")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds after the bootstrap before the settled RSS (default 40: Timer J is 32 s)")
    parser.add_argument("--keepalive-seconds", type=float, default=None, help="keepalive phase (default 20 s)")
    parser.add_argument("--window", type=int, default=256,
                        help="keepalives outstanding, all processes together (default 256)")
    parser.add_argument("--timeout", type=float, default=0.0,
                        help="limit for registration and for the bootstrap (default: 60 s + 5 ms per device)")
    parser.add_argument("--gateway-gc-threshold", metavar="G0,G1,G2", default=None,
                        help="run the gateway with gc.set_threshold(G0, G1, G2), e.g. 50000,20,100 as the "
                             "simulator's fewer_collections(), to see what the cyclic collector costs it")
    parser.add_argument("--tracemalloc", metavar="DIR", type=Path, default=None,
                        help="trace the gateway's allocations and dump snapshots into DIR when all are online, "
                             "when the bootstrap finished and when settled (slows the gateway 2-3x)")
    args = parser.parse_args()
    gc_threshold = None
    if args.gateway_gc_threshold:
        try:
            gc_threshold = tuple(int(v) for v in args.gateway_gc_threshold.split(","))
        except ValueError:
            parser.error("--gateway-gc-threshold takes up to three integers, e.g. 50000,20,100")
        if not 1 <= len(gc_threshold) <= 3:
            parser.error("--gateway-gc-threshold takes up to three integers, e.g. 50000,20,100")
    devices = 10_000 if args.quick else args.devices
    opts = Options(
        devices=devices,
        workers=args.workers or max(2, math.ceil(devices / 25_000)),
        devices_per_socket=args.devices_per_socket,
        channels=args.channels,
        subscribe=args.subscribe,
        register_rate=args.register_rate,
        settle=args.settle if args.settle is not None else 40.0,
        keepalive_seconds=args.keepalive_seconds or (10.0 if args.quick else 20.0),
        window=args.window,
        timeout=args.timeout or 60.0 + 0.005 * devices,
        gc_threshold=gc_threshold,
        tracemalloc=args.tracemalloc,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    pinned = pin(LOAD_CORE)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {load_average()} (1/5/15 min)")
    collector = f"gc.set_threshold{opts.gc_threshold}" if opts.gc_threshold else "default gc thresholds"
    print(f"gateway: subprocess on core {GATEWAY_CORE}, SQLite, logs at warning level, {collector}; "
          f"simulators and this script: {pinned}")
    print(f"{opts.devices:,} devices in {opts.workers} simulator processes, {opts.devices_per_socket} per socket, "
          f"{opts.channels} channel(s) each, catalog_subscribe {'on' if opts.subscribe else 'off'}, "
          f"REGISTER rate cap {opts.register_rate:,.0f}/s\n", flush=True)
    if os.cpu_count() == 1:
        print("NOTE: one core only: gateway and load share it, every figure understates the gateway.")
    try:
        rows = run(opts)
    except KeyboardInterrupt:
        print("interrupted; processes stopped")
        sys.exit(130)
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name:<{width}}  {value}" if value else f"{name}")
    print(f"\nload average after the run: {load_average()}")


if __name__ == "__main__":
    main()

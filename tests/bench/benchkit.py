"""What the benchmarks share: running their coroutine on the gateway's event loop (`run`), pinning to a
core, the daemon as its own process, its CPU time, the machine's load, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wire import free_port

REPO = Path(__file__).resolve().parents[2]
GATEWAY_ID = "34020000002000000001"
DOMAIN = "3402000000"
PASSWORD = "bench-password-1234"

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T], *, fewer_collections: bool = False) -> T:
    """Run a benchmark's coroutine on uvloop, the gateway's loop, when it is installed (else asyncio's).
    With `fewer_collections`, under the simulator's garbage-collector thresholds: a benchmark that drives
    DeviceSimulator directly must, or the collector's passes over its transactions dominate the figures."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    collections: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if fewer_collections:
        from gbgw.conformance.simulator.cli import fewer_collections as simulator_thresholds

        collections = simulator_thresholds()
    with collections, asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main)


def pin(core: int) -> str:
    """Pin this process to `core`; says where it runs, for the report."""
    try:
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    except (AttributeError, OSError):
        return "unpinned"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/PID/stat fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GatewayProcess:
    """``python3 -m gb28181 run`` on free loopback ports, memory storage, its log and audit in ``workdir``.

    ``sections`` are merged into that configuration: a mapping is merged key by key (so ``sip`` can add
    keys), anything else replaces.
    """

    def __init__(self, workdir: Path, **sections: Any) -> None:
        self.sip_port, self.api_port = free_port(), free_port()
        config: dict[str, Any] = {
            "sip": {"id": GATEWAY_ID, "domain": DOMAIN, "listen": f"127.0.0.1:{self.sip_port}", "password": PASSWORD},
            "api": {"listen": f"127.0.0.1:{self.api_port}"},
            "storage": {"backend": "memory"},
            "log": {"level": "warning", "format": "json"},
            "audit": {"path": str(workdir / "audit.log")},
        }
        for key, value in sections.items():
            config[key] = {**config[key], **value} if isinstance(value, dict) and key in config else value
        path = workdir / "gateway.yaml"
        path.write_text(json.dumps(config))  # JSON is YAML
        self.log = workdir / "gateway.log"
        self.process = subprocess.Popen([sys.executable, "-m", "gbgw.gb28181", "run", "-c", str(path)], cwd=REPO,
                                        stdout=subprocess.DEVNULL, stderr=self.log.open("w"))
        self.url = f"http://127.0.0.1:{self.api_port}"

    async def ready(self, http: aiohttp.ClientSession) -> None:
        for _ in range(200):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(self.url + "/api/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError("gateway did not start")

    async def channels(self, http: aiohttp.ClientSession, device_id: str, count: int) -> list[str]:
        """The sorted channel IDs of a device once its catalog holds at least `count` (20 s at most)."""
        for _ in range(400):
            async with http.get(f"{self.url}/api/devices/{device_id}/channels") as response:
                if response.status == 200:
                    channels = [c["id"] for c in await response.json()]
                    if len(channels) >= count:
                        return sorted(channels)
            await asyncio.sleep(0.05)
        raise RuntimeError(f"catalog of {device_id} not complete")

    def print_log_tail(self) -> None:
        """What the gateway logged (warnings and above), in one line: a quiet run prints nothing."""
        lines = self.log.read_text().strip().splitlines()
        if lines:
            print(f"gateway log ({len(lines)} lines at warning and above), last: {lines[-1][:300]}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# -- the bare responder: what one core does with no SIP stack at all ------------------------------------

_ECHOED = (b"via:", b"from:", b"to:", b"call-id:", b"cseq:")


def bare_answer(data: bytes) -> bytes:
    """A 200 OK for a request, built as cheaply as Python allows: the five headers a UAC matches on copied
    (RFC 3261 §8.2.6.2), a To tag added, Content-Length 0. No parse, no validation: the ceiling that the
    gateway's answer to the same request is measured against."""
    head = data.partition(b"\r\n\r\n")[0].split(b"\r\n")
    out = [b"SIP/2.0 200 OK"]
    for line in head[1:]:
        lower = line[:9].lower()
        if lower.startswith(_ECHOED):
            out.append(line + b";tag=bare" if lower.startswith(b"to:") else line)
    out.append(b"Content-Length: 0\r\n\r\n")
    return b"\r\n".join(out)


def bare_responder_main(core: int, ready: Any) -> None:
    """A UDP responder on asyncio's DatagramProtocol (uvloop when installed) pinned to ``core``; sends its
    port on ``ready`` (a Connection), then its CPU seconds whenever it receives anything on it."""
    import socket as socket_module

    pin(core)

    class Bare(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.sendto = transport.sendto  # type: ignore[attr-defined]

        def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
            self.sendto(bare_answer(data), addr)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = socket_module.socket(socket_module.AF_INET, socket_module.SOCK_DGRAM)
        sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_RCVBUF, 8 << 20)
        sock.bind(("127.0.0.1", 0))
        await loop.create_datagram_endpoint(Bare, sock=sock)
        done = loop.create_future()

        def on_control() -> None:
            try:
                ready.recv()
            except EOFError:
                loop.remove_reader(ready.fileno())
                done.set_result(None)
                return
            ready.send(cpu_seconds(os.getpid()))

        loop.add_reader(ready.fileno(), on_control)
        ready.send(sock.getsockname()[1])
        await done

    run_loop(main())

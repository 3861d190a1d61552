"""What the benchmarks that run the daemon as its own process share: the process itself, its CPU time,
the machine's load, percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wire import free_port

REPO = Path(__file__).resolve().parents[2]
GATEWAY_ID = "34020000002000000001"
DOMAIN = "3402000000"
PASSWORD = "bench-password-1234"


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
        self.process = subprocess.Popen([sys.executable, "-m", "gbgw.gb28181", "run", "-c", str(path)], cwd=REPO,
                                        stdout=subprocess.DEVNULL, stderr=(workdir / "gateway.log").open("w"))
        self.url = f"http://127.0.0.1:{self.api_port}"

    async def ready(self, http: aiohttp.ClientSession) -> None:
        for _ in range(200):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(self.url + "/api/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError("gateway did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()

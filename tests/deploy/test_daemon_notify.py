"""The daemon as systemd's Type=notify sees it: READY=1 only once it answers, watchdog pings from its
event loop while WatchdogSec= is set, RELOADING=1/READY=1 around SIGHUP, STOPPING=1 on SIGTERM.

The manager's side is a real AF_UNIX datagram socket handed to a real gateway process in
``NOTIFY_SOCKET``, as systemd does.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gb28181"))

from gwproc import DaemonProcess, daemon_config


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    # 0.4 s: pings every 0.2 s, so a short test sees several.
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


async def next_state(sock: socket.socket, wanted: str, timeout: float = 10.0) -> list[str]:
    """Datagrams until one holds ``wanted``; all of them, in order."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            data = await loop.sock_recv(sock, 4096)
            seen.append(data.decode())
            if wanted in seen[-1].splitlines():
                return seen


async def test_ready_watchdog_reload_and_stopping(manager: socket.socket, tmp_path: Path) -> None:
    config, _, _ = daemon_config(tmp_path, log={"level": "warning", "format": "json"})
    process = DaemonProcess.with_config(config, tmp_path / "gateway.yaml", tmp_path / "gateway.log")
    await process.start()
    try:
        # The first datagram is the readiness: no ping before the gateway is up.
        assert (await next_state(manager, "READY=1"))[0].splitlines()[0] == "READY=1"
        pings = await next_state(manager, "WATCHDOG=1")
        pings += await next_state(manager, "WATCHDOG=1")
        assert sum("WATCHDOG=1" in d for d in pings) >= 2

        process.send_signal(signal.SIGHUP)
        around_reload = await next_state(manager, "READY=1")
        assert any("RELOADING=1" in d.splitlines() for d in around_reload), around_reload

        process.send_signal(signal.SIGTERM)
        await next_state(manager, "STOPPING=1")
        assert await process.wait(timeout=20) == 0
    finally:
        await process.ensure_stopped()

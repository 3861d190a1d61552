"""sd_notify against a real AF_UNIX datagram socket, as systemd's manager listens on one."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gbgw.gb28181.observe import systemd


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_each_state_is_one_datagram(manager: socket.socket) -> None:
    assert systemd.ready("12 devices online")
    assert received(manager) == "READY=1\nSTATUS=12 devices online"
    assert systemd.reloading()
    assert received(manager) == "RELOADING=1"
    assert systemd.ready()
    assert received(manager) == "READY=1"
    assert systemd.watchdog_ping()
    assert received(manager) == "WATCHDOG=1"
    assert systemd.stopping()
    assert received(manager) == "STOPPING=1"


def test_status_text_cannot_inject_an_assignment(manager: socket.socket) -> None:
    assert systemd.status("upper lost\nREADY=1")
    assert received(manager) == "STATUS=upper lost READY=1"


def test_abstract_socket_named_with_an_at_sign(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"gbgw-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.ready()
        assert received(sock) == "READY=1"


@pytest.mark.parametrize("value", [None, "", "relative/path"])
def test_nothing_is_sent_without_a_usable_socket(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert not systemd.ready()
    assert not systemd.watchdog_ping()
    assert not systemd.stopping()


def test_a_manager_that_went_away_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert not systemd.watchdog_ping()


@pytest.mark.parametrize(("usec", "pid", "interval"), [
    ("30000000", None, 15.0),
    ("30000000", "self", 15.0),
    ("30000000", "1", None),        # the watchdog is meant for another process
    ("0", None, None),
    (None, None, None),
    ("soon", None, None),
])
def test_watchdog_interval_is_half_the_timeout(monkeypatch: pytest.MonkeyPatch, usec: str | None,
                                               pid: str | None, interval: float | None) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert systemd.watchdog_interval() == interval


async def test_watchdog_pings_come_from_the_running_loop(manager: socket.socket) -> None:
    manager.setblocking(False)
    task = asyncio.create_task(systemd.watchdog_pings(0.01))
    try:
        await asyncio.sleep(0.1)
        pings = []
        while True:
            try:
                pings.append(received(manager))
            except BlockingIOError:
                break
        assert len(pings) >= 3 and set(pings) == {"WATCHDOG=1"}
    finally:
        task.cancel()
    # Nothing else pings: once the task is gone, systemd hears nothing and its watchdog fires.
    await asyncio.sleep(0.05)
    with pytest.raises(BlockingIOError):
        received(manager)

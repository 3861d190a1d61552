"""Media only where authorised (issue 10): a play's ``host`` is an IP literal inside api.media_destinations,
a single receiver, checked before anything is allocated for it.

"Nothing sent" is asserted from outside: a plain UDP socket bound on 127.0.0.1 at the port the refused
request named receives nothing, no session exists and the relay holds no more ports than before. Names
are refused without a lookup: nothing is patched, the 400 simply arrives fast and before any port lease.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from access_harness import PASSWORD, RunningGateway
from media_harness import Sink

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import MediaOptions

# The simulator's first device and its first channel (type 131), as SimulatorConfig numbers them.
DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"
WIDE = {"api": {"media_destinations": ["0.0.0.0/0", "::/0"]}}
"""Every address configured as allowed: the special ones must still be refused."""


class Sniffer:
    """A UDP socket on 127.0.0.1 that only counts what arrives."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    async def assert_silent(self, wait: float = 0.3) -> None:
        await asyncio.sleep(wait)
        with pytest.raises(BlockingIOError):
            self.sock.recv(65536)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sniffer() -> Iterator[Sniffer]:
    sniff = Sniffer()
    yield sniff
    sniff.close()


async def play(gw: RunningGateway, body: Any, channel: str = CHANNEL) -> tuple[int, dict[str, Any], float]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    started = time.monotonic()
    async with gw.http.post(f"{gw.api_url}/api/channels/{channel}/play", data=data,
                            headers={"Content-Type": "application/json"}) as response:
        answer = await response.json()
        return response.status, answer, time.monotonic() - started


def leased(gw: RunningGateway) -> int:
    return gw.gateway.relay.ports.leased


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


REFUSED_WIDE = [
    ("0.0.0.0", 403), ("::", 403),
    ("224.0.0.1", 403), ("239.1.2.3", 403), ("ff02::1", 403),
    ("255.255.255.255", 403),
    ("localhost", 400), ("camera.example.com", 400), ("127.0.3.12\u0000", 400), ("", 400), (" 127.0.0.1", 400),
    ("127.0.0.1:5004", 400), ("[::1]", 400), ("fe80::1%lo", 400),
]


@pytest.mark.parametrize(("host", "status"), REFUSED_WIDE)
async def test_special_addresses_and_non_literals_are_refused_even_when_allowed(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], sniffer: Sniffer, host: str, status: int,
) -> None:
    gw = await gateway_factory(WIDE)
    before = leased(gw)
    answer, body, took = await play(gw, {"host": host, "port": sniffer.port, "transport": "udp"})
    assert answer == status, body
    assert "host" in body["error"], body
    if status == 400:
        assert "not an IP address" in body["error"], body
        # No resolver was asked: a lookup of a name that does not exist would take far longer.
        assert took < 0.5, took
    assert leased(gw) == before
    assert (await gw.api("/api/sessions")) == (200, [])
    await sniffer.assert_silent(0.1)


@pytest.mark.parametrize(("host", "config"), [
    ("10.1.2.3", None),  # default: loopback only
    ("192.168.1.20", None),
    ("::ffff:10.1.2.3", None),  # an IPv4-mapped address is checked as the IPv4 it is
    ("127.255.255.255", None),  # the broadcast address of the default 127.0.0.0/8
    ("127.0.0.1", {"api": {"media_destinations": ["127.0.0.2/32"]}}),
    ("::1", {"api": {"media_destinations": ["127.0.0.0/8"]}}),
])
async def test_hosts_outside_media_destinations_are_forbidden(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], sniffer: Sniffer, host: str,
    config: dict[str, Any] | None,
) -> None:
    gw = await gateway_factory(config)
    answer, body, _ = await play(gw, {"host": host, "port": sniffer.port, "transport": "udp"})
    assert answer == 403, body
    assert leased(gw) == 0
    assert (await gw.api("/api/sessions")) == (200, [])
    await sniffer.assert_silent(0.1)


@pytest.mark.parametrize(("body", "field"), [
    ({"host": "127.0.0.1", "port": 0}, "port"),
    ({"host": "127.0.0.1", "port": 65536}, "port"),
    ({"host": "127.0.0.1", "port": "5004"}, "port"),
    ({"host": "127.0.0.1", "port": True}, "port"),
    ({"host": 2130706433, "port": 5004}, "host"),
    ({"host": "127.0.0.1", "port": 5004, "transport": "sctp"}, "transport"),
    ({"host": "127.0.0.1", "port": 5004, "hots": "x"}, "hots"),
    ({"host": "127.0.0.1", "port": 5004, "ssrc": "abc"}, "ssrc"),
    ({"host": "127.0.0.1", "port": 5004, "ssrc": 10_000_000_000}, "ssrc"),
])
async def test_bad_bodies_are_400_naming_the_field(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], body: dict[str, Any], field: str,
) -> None:
    gw = await gateway_factory()
    answer, error, _ = await play(gw, body)
    assert answer == 400, error
    assert field in error["error"], error
    assert leased(gw) == 0


async def test_a_deeply_nested_body_is_a_400(gateway_factory: Callable[..., Awaitable[RunningGateway]]) -> None:
    gw = await gateway_factory()
    for data in (b"[" * 50_000 + b"]" * 50_000, b'{"host":' + b"[" * 50_000 + b"]" * 50_000 + b"}", b"{", b"\xff"):
        answer, body, _ = await play(gw, data)
        assert answer == 400, body
    assert (await gw.api("/api/health"))[0] == 200


async def test_bad_hosts_leak_neither_descriptors_nor_ports(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], sniffer: Sniffer,
) -> None:
    """Issue 10 item 2 from outside: 40 plays to "127.0.3.12\\0" used to take 24 -> 104 fds for good."""
    gw = await gateway_factory()
    await play(gw, {"host": "127.0.3.12\u0000", "port": sniffer.port})  # the client's own connection opens
    before = open_fds()
    for _ in range(40):
        answer, body, _ = await play(gw, {"host": "127.0.3.12\u0000", "port": sniffer.port, "transport": "udp"})
        assert answer == 400, body
    assert open_fds() <= before
    assert leased(gw) == 0


# -- with a camera streaming: the refusal is what keeps the media away -------------------------------------


pytestmark_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg)")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dest-clip") / "clip.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-t", "1", "-g", "25", "-bf", "0", "-c:v", "libx264", "-f", "h264", str(path)],
                   check=True, timeout=60)
    return path


@pytestmark_ffmpeg
async def test_a_streaming_camera_reaches_only_the_allowed_receiver(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], sniffer: Sniffer, clip: Path,
) -> None:
    gw = await gateway_factory({"media": {"ports": "31000-31099"}, "api": {"media_destinations": ["127.0.0.1/32"]}})
    simulator = DeviceSimulator(SimulatorConfig(server_host="127.0.0.1", server_port=gw.sip_port, password=PASSWORD,
                                                media=MediaOptions(file=clip)))
    await simulator.start()
    allowed = await Sink.open("udp")
    try:
        await simulator.wait_registered(timeout=5)

        async def channel_known() -> bool:
            status, channels = await gw.api(f"/api/devices/{DEVICE}/channels")
            return status == 200 and any(c["id"] == CHANNEL for c in channels)

        await gw.wait_for(channel_known, 5, "the camera's catalog")
        answer, session, _ = await play(gw, allowed.request())
        assert answer == 200, session
        await allowed.first_packet()
        ports = leased(gw)
        outside = Sniffer("127.0.0.5")
        try:
            for host in ("0.0.0.0", "224.0.0.1", "255.255.255.255", "localhost", "127.0.0.1\u0000"):
                answer, body, _ = await play(gw, {"host": host, "port": sniffer.port, "transport": "udp"})
                assert answer in (400, 403), (host, body)
            answer, body, _ = await play(gw, {"host": "127.0.0.5", "port": outside.port, "transport": "udp"})
            assert answer == 403, body
            await outside.assert_silent(0.5)
        finally:
            outside.close()
        await sniffer.assert_silent(0.5)
        assert leased(gw) == ports
        status, sessions = await gw.api("/api/sessions")
        assert status == 200
        assert [s["id"] for s in sessions] == [session["id"]]
        assert len(allowed.packets) > 0
    finally:
        await allowed.close()
        await simulator.stop(unregister=False, timeout=1)

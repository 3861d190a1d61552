"""Upstreams added and removed by SIGHUP, and channels unshared by one, on a real daemon process."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from daemon_rig import catalog_events, daemon_rig, notified, subscribe, upstream_entry
from upper_harness import FakeUpper

from gbgw.gb28181 import manscdp
from gbgw.sip.dialog import Dialog
from gbgw.sip.endpoint import Peer
from gbgw.sip.message import Request, Response

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg)")
REMOVED = "upstream removed from the configuration"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("reload-clip") / "clip.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-t", "2", "-g", "25", "-bf", "0", "-c:v", "libx264", "-f", "h264", str(path)],
                   check=True, timeout=60)
    return path


@pytest.fixture
async def upper() -> AsyncIterator[FakeUpper]:
    fake = await FakeUpper().start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
def sink() -> Iterator[int]:
    """A UDP port the upper receives media on (nobody reads it: the stream only has to run)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def offer(port: int) -> bytes:
    return ("\r\n".join(["v=0", "o=34020000002000000009 0 0 IN IP4 127.0.0.1", "s=Play", "c=IN IP4 127.0.0.1",
                         "t=0 0", f"m=video {port} RTP/AVP 96", "a=recvonly", "a=rtpmap:96 PS/90000",
                         "y=0100000077"]) + "\r\n").encode()


async def play(upper: FakeUpper, channel: str, port: int) -> tuple[Request, Response]:
    """INVITE ``channel`` as the upper, ACK the 200."""
    request = upper.request("INVITE", channel, offer(port), "APPLICATION/SDP",
                            headers=[("Subject", f"{channel}:0100000077,{upper.id}:0")])
    response = await upper.send(request)
    assert response.status == 200, response.status
    gateway = upper.gateway
    assert gateway is not None
    peer = Peer(gateway.transport, gateway.host, gateway.port)
    dialog = Dialog.from_uac(request, response, peer)
    upper.transport.send_ack(dialog.create_ack(request.cseq.seq, via=upper.transport.via(peer.transport)), peer)
    return request, response


def byes(upper: FakeUpper, call_id: str) -> list[Request]:
    return [r.request for r in upper.requests if r.request.method == "BYE" and r.request.call_id == call_id]


def unregistered(upper: FakeUpper) -> bool:
    return any(r.request.get("Expires") == "0" or ";expires=0" in (r.request.get("Contact") or "")
               for r in upper.registers)


async def test_upstream_added_then_removed_by_sighup(tmp_path: Path, clip: Path, upper: FakeUpper,
                                                      sink: int) -> None:
    async with daemon_rig(tmp_path, [], clip=clip) as rig:
        reloaded = await rig.reload(upstreams=[upstream_entry(upper, "city")])
        assert reloaded["applied"] == ["upstreams[city] (added)"]
        await upper.wait(lambda: upper.gateway is not None, 10, "the added upstream's registration")
        await rig.process.wait_log("upstream added")
        assert [r["upstream"] for r in rig.audit("upstream-added")] == ["city"]

        invite, _ = await play(upper, rig.channel(0), sink)
        call_id = invite.call_id or ""

        reloaded = await rig.reload(upstreams=[])
        assert reloaded["applied"] == ["upstreams[city] (removed)"]
        await upper.wait(lambda: byes(upper, call_id), 10, "the BYE of the removed upstream's stream")
        await upper.wait(lambda: unregistered(upper), 10, "REGISTER Expires: 0")
        await rig.process.wait_log("upstream removed")
        (bye,) = [r for r in rig.audit("bye") if r.get("upstream") == "city"]
        assert bye["reason"] == REMOVED and bye["by"] == "gateway"
        # Gone for good: the upper's requests to its old address get nothing back.
        assert not [e for e in rig.process.log_events() if e.get("level") == "error"]


async def test_upstream_changed_is_registered_again(tmp_path: Path, upper: FakeUpper) -> None:
    entry = upstream_entry(upper, "district")
    async with daemon_rig(tmp_path, [entry]) as rig:
        await upper.wait(lambda: upper.gateway is not None, 10, "the registration")
        first = upper.gateway
        moved = {**entry, "listen": f"127.0.0.1:{free_listen_port()}", "keepalive_interval": 7}
        reloaded = await rig.reload(upstreams=[moved])
        assert reloaded["applied"] == ["upstreams[district].listen", "upstreams[district].keepalive_interval"]
        assert "keys" not in reloaded
        await upper.wait(lambda: unregistered(upper), 10, "the old binding's REGISTER Expires: 0")
        await upper.wait(lambda: upper.gateway is not None and upper.gateway != first, 10,
                         "the registration from the new address")
        assert upper.gateway is not None and upper.gateway.port == int(moved["listen"].rsplit(":", 1)[1])


def free_listen_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unsharing_ends_streams_and_notifies_the_catalog(tmp_path: Path, clip: Path, upper: FakeUpper,
                                                               sink: int) -> None:
    async with daemon_rig(tmp_path, [], clip=clip) as rig:
        entrance, garage = rig.channel(0, 1), rig.channel(0, 2)
        entry = upstream_entry(upper, "district", share=[{"ids": [entrance]}])
        await rig.reload(upstreams=[entry])
        await upper.wait(lambda: upper.gateway is not None, 10, "the registration")
        sub, answer = await subscribe(upper, manscdp.query_catalog(7, rig.config["sip"]["id"]), 3600, "Catalog")
        assert answer.status == 200
        invite, _ = await play(upper, entrance, sink)
        call_id = invite.call_id or ""
        before = len(rig.process.log_events())

        reloaded = await rig.reload(upstreams=[{**entry, "share": [{"ids": [garage]}]}])
        assert reloaded["applied"] == ["upstreams[district].share"]
        await upper.wait(lambda: byes(upper, call_id), 10, "the BYE of the unshared channel's stream")
        events = await upper.wait(
            lambda: (found := catalog_events(notified(upper, sub.call_id or "", "Catalog")))
            >= {(entrance, "DEL"), (garage, "ADD")} and found, 10, "catalog NOTIFY DEL and ADD")
        assert (entrance, "ADD") not in events and (garage, "DEL") not in events
        (bye,) = [r for r in rig.audit("bye") if r.get("channel") == entrance]
        assert bye["reason"] == "channel no longer shared" and bye["upstream"] == "district"
        # The link itself stayed: no new registration, no un-REGISTER.
        assert not unregistered(upper)
        assert not [e for e in rig.process.log_events()[before:] if e.get("event") == "upstream removed"]


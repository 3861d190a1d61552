"""Keepalives answered statelessly, seen from outside with raw UDP.

A keepalive from a registered device gets its 200 without a server transaction: a retransmission (same
branch) gets the same 200 again and refreshes liveness again, and nothing is left for Timer J. Anything
unusual (an unregistered sender, another source address, a body that is not a keepalive) still takes the
full path and its answers.
"""

from __future__ import annotations

import asyncio
import os
import socket

from access_harness import DEVICE_ID, DOMAIN, GATEWAY_ID, RunningGateway
from gwproc import keepalive_body
from wire import SipMessage


def keepalive_bytes(port: int, device_id: str = DEVICE_ID, branch: str = "", body: bytes | None = None) -> bytes:
    branch = branch or "z9hG4bK" + os.urandom(6).hex()
    body = keepalive_body(device_id, 7) if body is None else body
    return (
        f"MESSAGE sip:{GATEWAY_ID}@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch={branch}\r\n"
        f"From: <sip:{device_id}@{DOMAIN}>;tag=ka1\r\n"
        f"To: <sip:{GATEWAY_ID}@{DOMAIN}>\r\n"
        f"Call-ID: {branch}@127.0.0.1\r\n"
        "CSeq: 20 MESSAGE\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Type: Application/MANSCDP+xml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class RawUdp:
    """A bare UDP socket on 127.0.0.1 (the device's host): send bytes, read answers."""

    def __init__(self, gateway_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.gateway = ("127.0.0.1", gateway_port)

    async def exchange(self, data: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, data, self.gateway)
        return await asyncio.wait_for(loop.sock_recv(self.sock, 65535), 3.0)

    def close(self) -> None:
        self.sock.close()


async def test_a_retransmitted_keepalive_gets_the_same_200_twice_and_no_transaction(gateway: RunningGateway) -> None:
    await gateway.registered_device()
    endpoint = gateway.gateway.endpoint
    layer = endpoint.transactions
    # The registration's own transactions end before the keepalives are measured.
    held_before = layer.server_count
    stateless_before = endpoint.counters.stateless
    ok_before = await gateway.metric("gb_keepalives_total", result="ok")
    gateway.clock.advance(30)
    raw = RawUdp(gateway.sip_port)
    try:
        request = keepalive_bytes(raw.port)
        first = await raw.exchange(request)
        seen = (await gateway.device())["last_keepalive"]
        gateway.clock.advance(1)
        second = await raw.exchange(request)
    finally:
        raw.close()
    assert first == second
    answer = SipMessage.parse(first)
    assert answer.status == 200
    assert answer.get("Call-ID") == SipMessage.parse(request).get("Call-ID")
    assert answer.get("CSeq") == "20 MESSAGE"
    assert ";tag=" in (answer.get("To") or "")
    assert answer.get("Content-Length") == "0"
    via = answer.get("Via") or ""
    assert f"rport={raw.port}" in via and "branch=" in via
    assert layer.server_count == held_before  # nothing kept for either, so nothing for Timer J
    assert endpoint.counters.stateless - stateless_before == 2
    assert layer.absorbed == 0
    # Both refreshed liveness: the second one, a second later, moved last_keepalive on.
    assert (await gateway.device())["last_keepalive"] != seen
    assert await gateway.metric("gb_keepalives_total", result="ok") - ok_before == 2
    assert (await gateway.device())["online"]


async def test_unusual_keepalives_take_the_full_path(gateway: RunningGateway) -> None:
    await gateway.registered_device()
    endpoint = gateway.gateway.endpoint
    stateless_before = endpoint.counters.stateless
    raw = RawUdp(gateway.sip_port)
    try:
        unknown = SipMessage.parse(await raw.exchange(keepalive_bytes(raw.port, device_id="34020000011328009999")))
        assert unknown.status == 403 and unknown.reason == "Device not registered"
        # Not a keepalive: the full path parses it (a DeviceStatus notify is answered 200 there).
        other = keepalive_bytes(raw.port, body=b"<?xml version=\"1.0\"?>\r\n<Notify><CmdType>Bogus</CmdType>"
                                               b"<SN>1</SN><DeviceID>" + DEVICE_ID.encode() + b"</DeviceID></Notify>")
        assert SipMessage.parse(await raw.exchange(other)).status == 200
        # A compact Via the fast path reads, but two Vias it does not: answered by the full path all the same.
        two_vias = keepalive_bytes(raw.port).replace(
            b"Via: ", b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy1, ", 1
        )
        assert SipMessage.parse(await raw.exchange(two_vias)).status == 200
    finally:
        raw.close()
    assert endpoint.counters.stateless == stateless_before


async def test_a_keepalive_from_another_address_is_refused(gateway: RunningGateway) -> None:
    await gateway.registered_device()
    endpoint = gateway.gateway.endpoint
    stateless_before = endpoint.counters.stateless
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.2", 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendto(sock, keepalive_bytes(sock.getsockname()[1]), ("127.0.0.1", gateway.sip_port))
        answer = SipMessage.parse(await asyncio.wait_for(loop.sock_recv(sock, 65535), 3.0))
    finally:
        sock.close()
    assert answer.status == 403
    assert endpoint.counters.stateless == stateless_before

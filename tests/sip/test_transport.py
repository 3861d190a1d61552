"""The asyncio adapter on real loopback sockets: what only shows with a kernel underneath."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gbgw.sip.endpoint import Peer, SipEndpoint
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request
from gbgw.sip.transport import SipTransport


def _closed_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_tcp_connect_failure_fails_the_request_at_once_with_503() -> None:
    """RFC 3261 §8.1.3.1: an unreachable TCP peer is a 503 now, not a Timer F timeout 32 s later."""
    transport = SipTransport(SipEndpoint(), lambda txn: None)
    await transport.start("127.0.0.1", 0)
    try:
        port = _closed_tcp_port()
        request = Request(
            "MESSAGE",
            f"sip:34020000001320000001@127.0.0.1:{port}",
            [
                ("Via", transport.via("TCP")),
                ("From", "<sip:34020000002000000001@3402000000>;tag=1"),
                ("To", "<sip:34020000001320000001@3402000000>"),
                ("Call-ID", "connect-failure@test"),
                ("CSeq", "1 MESSAGE"),
                ("Max-Forwards", "70"),
            ],
        )
        future = transport.send_request(request, Peer("TCP", "127.0.0.1", port))
        with pytest.raises(SipError) as info:
            await asyncio.wait_for(future, 5)
        assert info.value.status == 503
        assert transport.endpoint.transactions.client_count == 0
    finally:
        await transport.close()


async def test_udp_socket_gets_a_large_receive_buffer() -> None:
    transport = SipTransport(SipEndpoint(), lambda txn: None)
    await transport.start("127.0.0.1", 0)
    try:
        sock = transport._udp.get_extra_info("socket")  # type: ignore[union-attr]
        # Linux reports double the granted size; the default is ~212 KB.
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) > 1 << 20
    finally:
        await transport.close()


async def test_crlf_keepalive_ping_on_tcp_gets_a_pong() -> None:
    """RFC 5626 §4.4.1: CRLFCRLF is answered with CRLF, and the connection stays usable."""
    transport = SipTransport(SipEndpoint(), lambda txn: None)
    _, port = await transport.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(2), 2) == b"\r\n"
        writer.write(
            b"OPTIONS sip:34020000002000000001@127.0.0.1 SIP/2.0\r\n"
            b"Via: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKping1\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: ping@test\r\nCSeq: 1 OPTIONS\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 2)
        assert status.startswith(b"SIP/2.0 200")
        writer.close()
    finally:
        await transport.close()

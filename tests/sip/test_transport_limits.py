"""Boundary limits of the asyncio adapter: per-source rate, sources served, the address we send from."""

from __future__ import annotations

import asyncio
import socket

from gbgw.sip.endpoint import Peer, SipEndpoint
from gbgw.sip.message import Request
from gbgw.sip.transaction import ServerTransaction
from gbgw.sip.transport import SipTransport, SourceRate, TransportLimits


def options(port: int, n: int, transport: str = "UDP") -> bytes:
    return (
        f"OPTIONS sip:gw@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:5999;branch=z9hG4bK-limit-{n}\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:gw@127.0.0.1>\r\n"
        f"Call-ID: limit-{n}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_source_rate_counts_per_source_and_per_second() -> None:
    rate = SourceRate(3)
    assert [rate.admit("10.0.0.1", 100.2) for _ in range(5)] == [True, True, True, False, False]
    assert rate.admit("10.0.0.2", 100.5)  # another source has its own budget
    assert rate.admit("10.0.0.1", 101.0)  # a new second
    assert rate.dropped == 2


async def test_a_flooding_source_is_cut_at_its_rate() -> None:
    seen: list[ServerTransaction] = []
    transport = SipTransport(SipEndpoint(), seen.append, limits=TransportLimits(rate_per_source=50))
    _, port = await transport.start("127.0.0.1", 0)
    flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # OPTIONS is answered by the endpoint itself; count the answers that come back.
        flood.bind(("127.0.0.1", 0))
        flood.setblocking(False)
        for n in range(200):
            flood.sendto(options(port, n), ("127.0.0.1", port))
        loop = asyncio.get_running_loop()
        answers = 0
        try:
            while True:
                await asyncio.wait_for(loop.sock_recv(flood, 4096), 0.5)
                answers += 1
        except TimeoutError:
            pass
        # All 200 land in one or two one-second windows: at most twice the rate gets through.
        assert 50 <= answers <= 100
        assert transport.rate is not None and transport.rate.dropped == 200 - answers
    finally:
        flood.close()
        await transport.close()


async def test_only_accepted_sources_are_served() -> None:
    transport = SipTransport(SipEndpoint(), lambda txn: None, accept_source=lambda host: host == "127.0.0.2")
    _, port = await transport.start("127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    try:
        for source in ("127.0.0.1", "127.0.0.2"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((source, 0))
            sock.setblocking(False)
            sock.sendto(options(port, 1), ("127.0.0.1", port))
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.5)
            except TimeoutError:
                data = b""
            finally:
                sock.close()
            assert data.startswith(b"SIP/2.0 200") == (source == "127.0.0.2")
        assert transport.refused_sources == 1
        # TCP from a refused source is closed at once.
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.1", 0))
        writer.write(options(port, 2, "TCP"))
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
    finally:
        await transport.close()


async def test_tcp_requests_leave_from_the_transport_address() -> None:
    """On a host with a leg in each network, a connection we open must come from the side we serve."""
    accepted: list[tuple[str, int]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    target = server.sockets[0].getsockname()[1]
    transport = SipTransport(SipEndpoint(), lambda txn: None)
    await transport.start("127.0.0.3", 0)
    try:
        request = Request("OPTIONS", f"sip:x@127.0.0.1:{target}", [
            ("Via", transport.via("TCP")), ("From", "<sip:gw@127.0.0.3>;tag=1"), ("To", "<sip:x@127.0.0.1>"),
            ("Call-ID", "bind@test"), ("CSeq", "1 OPTIONS"), ("Max-Forwards", "70")])
        future = transport.send_request(request, Peer("TCP", "127.0.0.1", target))
        for _ in range(100):
            if accepted:
                break
            await asyncio.sleep(0.02)
        future.cancel()
        assert accepted and accepted[0][0] == "127.0.0.3"
    finally:
        await transport.close()
        server.close()


async def test_responses_to_our_requests_are_not_counted_against_the_rate() -> None:
    """A peer answering a burst of our requests must not be cut off by the limit meant for its requests."""
    answered = SipTransport(SipEndpoint(), lambda txn: None, limits=TransportLimits(rate_per_source=5))
    peer = SipTransport(SipEndpoint(), lambda txn: txn.reply(200, now=0.0))
    await answered.start("127.0.0.1", 0)
    _, peer_port = await peer.start("127.0.0.1", 0)
    try:
        futures = []
        for n in range(20):
            request = Request("MESSAGE", f"sip:x@127.0.0.1:{peer_port}", [
                ("Via", answered.via("UDP")), ("From", "<sip:gw@127.0.0.1>;tag=1"), ("To", "<sip:x@127.0.0.1>"),
                ("Call-ID", f"burst-{n}@test"), ("CSeq", "1 MESSAGE"), ("Max-Forwards", "70")])
            futures.append(answered.send_request(request, Peer("UDP", "127.0.0.1", peer_port)))
        responses = await asyncio.wait_for(asyncio.gather(*futures), 3)
        assert [r.status for r in responses] == [200] * 20
        assert answered.rate is not None and answered.rate.dropped == 0
    finally:
        await answered.close()
        await peer.close()

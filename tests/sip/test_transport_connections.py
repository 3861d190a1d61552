"""Stream connection limits of the asyncio adapter: a global cap under the open-file limit, and a deadline
for the first message (issue 10: 18 addresses of 64 connections each filled a 1,024-descriptor limit)."""

from __future__ import annotations

import asyncio
import contextlib
import resource

import pytest

from gbgw.sip.endpoint import SipEndpoint
from gbgw.sip.transport import FD_RESERVE_MIN, SipTransport, TransportLimits, connection_budget


def options(port: int, n: int) -> bytes:
    return (
        f"OPTIONS sip:gw@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-conn-{n}\r\n"
        "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:gw@127.0.0.1>\r\n"
        f"Call-ID: conn-{n}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("configured", "soft", "expected"),
    [
        (0, 1024, 1024 - FD_RESERVE_MIN),  # the usual default: 768
        (0, 65536, 65536 - 65536 // 4),
        (100, 1024, 100),  # a lower wish is kept
        (5000, 1024, 768),  # a higher one is held below the limit
        (0, 200, 16),  # a tiny limit still lets a few devices in
    ],
)
def test_connection_budget_leaves_room_below_the_open_file_limit(configured: int, soft: int, expected: int) -> None:
    assert connection_budget(configured, soft) == expected


def test_the_default_budget_reads_the_process_limit() -> None:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        pytest.skip("no open-file limit")
    assert connection_budget() == connection_budget(0, soft) < soft


async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int, n: int) -> bytes:
    writer.write(options(port, n))
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    except (ConnectionResetError, asyncio.IncompleteReadError):
        return b""


async def test_connections_over_the_global_limit_are_closed_at_once_and_counted() -> None:
    transport = SipTransport(SipEndpoint(), lambda txn: None, limits=TransportLimits(max_connections=3))
    _, port = await transport.start("127.0.0.1", 0)
    streams = []
    try:
        assert transport.max_connections == 3
        # From different source addresses: the per-address limit is not what stops them.
        for n in range(5):
            streams.append(await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{n + 10}", 0)))
        replies = [await answered(reader, writer, port, n) for n, (reader, writer) in enumerate(streams)]
        assert [r.startswith(b"SIP/2.0 200") for r in replies] == [True, True, True, False, False]
        assert transport.over_limit_connections == 2 and transport.connection_count == 3
        # A slot freed is a slot for the next device.
        streams[0][1].close()
        for _ in range(50):
            if transport.connection_count == 2:
                break
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        streams.append((reader, writer))
        assert (await answered(reader, writer, port, 9)).startswith(b"SIP/2.0 200")
    finally:
        for _, writer in streams:
            writer.close()
        await transport.close()


async def test_a_connection_without_a_whole_first_message_is_closed_at_its_deadline() -> None:
    transport = SipTransport(SipEndpoint(), lambda txn: None, limits=TransportLimits(first_message_timeout=0.3))
    _, port = await transport.start("127.0.0.1", 0)
    try:
        silent = await asyncio.open_connection("127.0.0.1", port)
        partial = await asyncio.open_connection("127.0.0.1", port)
        partial[1].write(options(port, 1)[:40])  # a slowloris: a first message that never ends
        pinging = await asyncio.open_connection("127.0.0.1", port)
        pinging[1].write(b"\r\n\r\n")  # pings alone are no first message either
        talking = await asyncio.open_connection("127.0.0.1", port)
        assert (await answered(*talking, port, 2)).startswith(b"SIP/2.0 200")
        for reader, _ in (silent, partial):
            assert await asyncio.wait_for(reader.read(), 3) == b""
        assert await asyncio.wait_for(pinging[0].read(), 3) == b"\r\n"  # its pong, then the close
        assert transport.first_message_timeouts == 3
        await asyncio.sleep(0.4)
        # The one that sent a message is past its deadline for good.
        assert (await answered(*talking, port, 3)).startswith(b"SIP/2.0 200")
        assert transport.connection_count == 1
        for _, writer in (silent, partial, pinging, talking):
            with contextlib.suppress(OSError):
                writer.close()
    finally:
        await transport.close()

"""SIP over TLS (RFC 3261 §26) on loopback, with a throwaway CA and certificates made by ``openssl``.

The device side listens with :meth:`SipTransport.start_tls`; the client side dials ``TLS`` peers with a
context from :func:`sip.tls.client_context`. Plain bytes on the TLS port must cost one closed connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from wire import loopback_pki, self_signed

from gbgw.gb28181.config import ConfigError, GatewayConfig, load_config
from gbgw.sip.endpoint import Peer, SipEndpoint
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request, Response, parse_message
from gbgw.sip.tls import TlsFileError, client_context, server_context
from gbgw.sip.transaction import ServerTransaction
from gbgw.sip.transport import SipTransport, TransportLimits

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make test certificates")


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_key: Path
    foreign_ca: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    signed = loopback_pki(d)
    foreign_ca, foreign_key = self_signed(d, "foreign")
    return Pki(signed.ca, signed.cert, signed.key, foreign_key, foreign_ca)


def request_bytes(method: str, n: int, uri: str = "sips:34020000002000000001@3402000000") -> bytes:
    body = b"<?xml version=\"1.0\"?><Notify><CmdType>Keepalive</CmdType></Notify>" if method == "MESSAGE" else b""
    head = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:5061;rport;branch=z9hG4bKtls{n}\r\n"
        "From: <sips:34020000001320000001@3402000000>;tag=dev\r\n"
        "To: <sips:34020000001320000001@3402000000>\r\n"
        f"Call-ID: tls-{n}@test\r\nCSeq: {n} {method}\r\nMax-Forwards: 70\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    msg = parse_message(head)
    assert isinstance(msg, Response)
    return msg


def gateway_tu(transport_box: list[SipTransport], seen: list[ServerTransaction]) -> Callable[[ServerTransaction], None]:
    def on_request(txn: ServerTransaction) -> None:
        seen.append(txn)
        transport = transport_box[0]
        if txn.request.method == "REGISTER":
            transport.reply_stateless(txn, 401, headers=[("WWW-Authenticate", 'Digest realm="3402000000"')])
        else:
            transport.reply(txn, 200)

    return on_request


async def tls_gateway(pki: Pki, seen: list[ServerTransaction], limits: TransportLimits | None = None) -> SipTransport:
    box: list[SipTransport] = []
    transport = SipTransport(SipEndpoint(), gateway_tu(box, seen), limits=limits)
    box.append(transport)
    await transport.start("127.0.0.1", 0)
    await transport.start_tls("127.0.0.1", 0, server_context(str(pki.cert), str(pki.key)))
    return transport


async def test_a_device_registers_and_sends_message_over_tls(pki: Pki) -> None:
    seen: list[ServerTransaction] = []
    transport = await tls_gateway(pki, seen)
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", transport.tls_port, ssl=client_context(str(pki.ca))
        )
        assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        writer.write(request_bytes("REGISTER", 1))
        assert (await read_response(reader)).status == 401
        writer.write(request_bytes("MESSAGE", 2))
        assert (await read_response(reader)).status == 200
        assert [txn.request.method for txn in seen] == ["REGISTER", "MESSAGE"]
        assert {txn.remote.transport for txn in seen} == {"TLS"}
        assert seen[0].request.uri.startswith("sips:")
        # The 401 was stateless; over a stream nothing was kept anyway.
        assert transport.endpoint.transactions.server_count == 0
        assert transport.connection_peer(*writer.get_extra_info("sockname")[:2]) == seen[0].remote
        writer.close()
    finally:
        await transport.close()


async def test_plain_sip_on_the_tls_port_closes_the_connection_and_counts(pki: Pki) -> None:
    seen: list[ServerTransaction] = []
    transport = await tls_gateway(pki, seen)
    try:
        for garbage in (request_bytes("REGISTER", 1), b"\x16\x03\x01\x00\x05hello", b"GET / HTTP/1.0\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", transport.tls_port)
            writer.write(garbage)
            # Closed by us: EOF, or a reset once TLS has sent its alert.
            with contextlib.suppress(ConnectionResetError):
                await asyncio.wait_for(reader.read(), 5)
            writer.close()
        for _ in range(50):
            if transport.tls_failures == 3 and transport.connection_count == 0:
                break
            await asyncio.sleep(0.05)
        assert transport.tls_failures == 3 and transport.connection_count == 0
        assert seen == []
        # Still serving TLS afterwards.
        reader, writer = await asyncio.open_connection("127.0.0.1", transport.tls_port, ssl=client_context(str(pki.ca)))
        writer.write(request_bytes("MESSAGE", 9))
        assert (await read_response(reader)).status == 200
        writer.close()
    finally:
        await transport.close()


async def test_a_silent_tls_connection_is_closed_at_the_first_message_deadline(pki: Pki) -> None:
    seen: list[ServerTransaction] = []
    transport = await tls_gateway(pki, seen, TransportLimits(first_message_timeout=0.3))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", transport.tls_port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert transport.first_message_timeouts == 1 and transport.tls_failures == 0
        writer.close()
    finally:
        await transport.close()


def message_to(transport: SipTransport, port: int, n: int) -> Request:
    return Request(
        "MESSAGE",
        f"sips:34020000002000000001@127.0.0.1:{port}",
        [
            ("Via", transport.via("TLS")),
            ("From", "<sips:34020000002000000002@3402000000>;tag=up"),
            ("To", "<sips:34020000002000000001@3402000000>"),
            ("Call-ID", f"dial-{n}@test"),
            ("CSeq", f"{n} MESSAGE"),
            ("Max-Forwards", "70"),
        ],
        b"",
    )


async def test_the_transport_dials_a_tls_peer(pki: Pki) -> None:
    seen: list[ServerTransaction] = []
    server = await tls_gateway(pki, seen)
    client = SipTransport(SipEndpoint(), lambda txn: None, tls_client=client_context(str(pki.ca)))
    await client.start("127.0.0.1", 0)
    await client.start_tls("127.0.0.1", 0, server_context(str(pki.cert), str(pki.key)))
    try:
        assert f"SIP/2.0/TLS 127.0.0.1:{client.tls_port};" in client.via("TLS")
        for n in (1, 2):
            future = client.send_request(message_to(client, server.tls_port, n), Peer("TLS", "127.0.0.1", server.tls_port))
            response = await asyncio.wait_for(future, 5)
            assert response.status == 200
        assert client.connection_count == 1  # the second request reused the connection
        assert seen[0].remote.transport == "TLS"
    finally:
        await client.close()
        await server.close()


async def test_a_tls_peer_with_an_unknown_certificate_fails_the_request_with_503(pki: Pki) -> None:
    seen: list[ServerTransaction] = []
    server = await tls_gateway(pki, seen)
    client = SipTransport(SipEndpoint(), lambda txn: None, tls_client=client_context(str(pki.foreign_ca)))
    await client.start("127.0.0.1", 0)
    try:
        future = client.send_request(message_to(client, server.tls_port, 1), Peer("TLS", "127.0.0.1", server.tls_port))
        with pytest.raises(SipError) as info:
            await asyncio.wait_for(future, 5)
        assert info.value.status == 503 and client.tls_failures == 1
        assert seen == []
    finally:
        await client.close()
        await server.close()


async def test_without_a_client_context_a_tls_request_fails_at_once() -> None:
    client = SipTransport(SipEndpoint(), lambda txn: None)
    await client.start("127.0.0.1", 0)
    try:
        future = client.send_request(message_to(client, 5061, 1), Peer("TLS", "127.0.0.1", 5061))
        with pytest.raises(SipError) as info:
            await asyncio.wait_for(future, 5)
        assert info.value.status == 503
    finally:
        await client.close()


def test_context_errors_name_the_file_at_fault(pki: Pki, tmp_path: Path) -> None:
    assert isinstance(server_context(str(pki.cert), str(pki.key)), ssl.SSLContext)
    with pytest.raises(TlsFileError) as info:
        server_context(str(tmp_path / "missing.pem"), str(pki.key))
    assert info.value.role == "cert" and "no such file" in str(info.value)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsFileError) as info:
        server_context(str(garbage), str(pki.key))
    assert info.value.role == "cert"
    with pytest.raises(TlsFileError) as info:
        server_context(str(pki.cert), str(pki.other_key))  # a key of another certificate
    assert info.value.role == "key"
    with pytest.raises(TlsFileError) as info:
        client_context(str(garbage))
    assert info.value.role == "ca"


def load_config_text(text: str) -> GatewayConfig:
    return load_config(yaml.safe_load(text))


def test_config_reads_and_checks_the_tls_keys(pki: Pki, tmp_path: Path) -> None:
    cfg = load_config_text(
        f"sip:\n  tls_listen: 127.0.0.1:5061\n  tls_cert: {pki.cert}\n  tls_key: {pki.key}\n"
        "  max_connections: 500\n  first_message_timeout: 5\n  max_transactions: 1000\n"
    )
    assert cfg.sip.tls_listen is not None and cfg.sip.tls_listen.port == 5061
    assert (cfg.sip.max_connections, cfg.sip.first_message_timeout, cfg.sip.max_transactions) == (500, 5.0, 1000)
    defaults = load_config_text("sip: {}\n").sip
    assert defaults.tls_listen is None and defaults.max_transactions == 200_000
    with pytest.raises(ConfigError) as info:
        load_config_text("sip:\n  tls_listen: 127.0.0.1:5061\n")
    assert info.value.key == "sip.tls_cert"
    with pytest.raises(ConfigError) as info:
        load_config_text(f"sip:\n  tls_listen: 127.0.0.1:5061\n  tls_cert: {pki.cert}\n  tls_key: {tmp_path}/no.key\n")
    assert info.value.key == "sip.tls_key"
    with pytest.raises(ConfigError) as info:
        load_config_text(f"sip:\n  tls_listen: 127.0.0.1:5061\n  tls_cert: {pki.cert}\n  tls_key: {pki.other_key}\n")
    assert info.value.key == "sip.tls_key"
    with pytest.raises(ConfigError) as info:
        load_config_text(f"sip:\n  listen: 127.0.0.1:5060\n  tls_listen: 127.0.0.1:5060\n"
                         f"  tls_cert: {pki.cert}\n  tls_key: {pki.key}\n")
    assert info.value.key == "sip.tls_listen"


def test_sipp_over_tls() -> None:
    sipp = shutil.which("sipp")
    if sipp is None:
        pytest.skip("sipp is not installed")
    usage = subprocess.run([sipp, "-h"], capture_output=True, text=True).stdout
    if "l1" not in usage:
        pytest.skip("this sipp build has no TLS transport (-t l1): Debian builds it without OpenSSL")
    pytest.skip("sipp with TLS found: a TLS scenario is not written yet")

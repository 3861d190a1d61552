"""SIP over TLS on the device side (``sip.tls_listen``, RFC 3261 §26), through the whole gateway.

A device of its own (``asyncio.open_connection`` with a context trusting the test CA, framing by
Content-Length written here, digest from gwproc) registers with digest, keeps alive and answers the
gateway's DeviceInfo and Catalog queries, which must come back over its own TLS connection; the API then
shows it online over TLS with its channels. Plain SIP and bytes that are no ClientHello on the TLS port
cost one closed connection, and the TLS device keeps being served. Certificates are made at test time
with openssl.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from access_harness import DOMAIN, GATEWAY_ID, PASSWORD, RunningGateway
from gwproc import (
    SipMsg,
    catalog_xml,
    challenge_params,
    device_info_xml,
    digest_authorization,
    keepalive_body,
    manscdp_body,
    response_bytes,
    wait_until,
)
from wire import free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

DEVICE_ID = "34020000001188000001"
CHANNEL_IDS = [f"3402000000131800000{n}" for n in range(1, 4)]


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("device-pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", d / "ca.key", "-out", d / "ca.pem", "-days", "2", "-subj", "/CN=gw ca")
    _openssl("req", *ec, "-keyout", d / "gw.key", "-out", d / "gw.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", d / "gw.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
             "-CAcreateserial", "-out", d / "gw.pem", "-days", "2", "-extfile", d / "ext.cnf")
    return Pki(d / "ca.pem", d / "gw.pem", d / "gw.key")


class TlsDevice:
    """A GB/T 28181 device on one TLS connection: requests it sends wait for their final response by
    Call-ID; requests the gateway sends are kept in ``requests`` and answered by ``on_request``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, device_id: str) -> None:
        self.reader = reader
        self.writer = writer
        self.device_id = device_id
        self.host, self.port = writer.get_extra_info("sockname")[:2]
        self.requests: list[SipMsg] = []
        self.on_request: Callable[[SipMsg], None] = lambda request: self.reply(request, 200)
        self._waiting: dict[str, asyncio.Future[SipMsg]] = {}
        self._cseq = 0
        self._reading = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, port: int, ca: Path, device_id: str = DEVICE_ID) -> TlsDevice:
        context = ssl.create_default_context(cafile=str(ca))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        return cls(reader, writer, device_id)

    async def close(self) -> None:
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()

    async def _read(self) -> None:
        while True:
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)", head)
            body = await self.reader.readexactly(int(length.group(1))) if length else b""
            msg = SipMsg.parse(head + body)
            if msg.is_response:
                waiter = self._waiting.get(msg.get("Call-ID") or "")
                if waiter is not None and not waiter.done() and msg.status >= 200:
                    waiter.set_result(msg)
                continue
            self.requests.append(msg)
            self.on_request(msg)

    def reply(self, request: SipMsg, status: int, reason: str = "OK") -> None:
        self.writer.write(response_bytes(request, status, reason, "dev"))

    async def send(self, method: str, call_id: str, headers: list[str], body: bytes = b"") -> SipMsg:
        self._cseq += 1
        lines = [
            f"{method} sips:{GATEWAY_ID}@{DOMAIN} SIP/2.0",
            f"Via: SIP/2.0/TLS {self.host}:{self.port};rport;branch=z9hG4bK{os.urandom(6).hex()}",
            f"From: <sips:{self.device_id}@{DOMAIN}>;tag=dev{self.device_id[-4:]}",
            f"To: <sips:{(self.device_id if method == 'REGISTER' else GATEWAY_ID)}@{DOMAIN}>",
            f"Call-ID: {call_id}",
            f"CSeq: {self._cseq} {method}",
            "Max-Forwards: 70",
            *headers,
            f"Content-Length: {len(body)}",
        ]
        answer: asyncio.Future[SipMsg] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = answer
        try:
            self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            return await asyncio.wait_for(answer, 5)
        finally:
            self._waiting.pop(call_id, None)

    async def register(self, password: str) -> SipMsg:
        contact = f"Contact: <sips:{self.device_id}@{self.host}:{self.port};transport=tls>"
        call_id = f"reg-{self.device_id}-{os.urandom(3).hex()}"
        first = await self.send("REGISTER", call_id, [contact, "Expires: 3600"])
        assert first.status == 401, first.start
        challenge = challenge_params(first.get("WWW-Authenticate") or "")
        auth, _ = digest_authorization(challenge, self.device_id, password, f"sips:{GATEWAY_ID}@{DOMAIN}")
        return await self.send("REGISTER", call_id, [contact, "Expires: 3600", f"Authorization: {auth}"])

    async def message(self, body: bytes) -> SipMsg:
        return await self.send("MESSAGE", f"msg-{os.urandom(4).hex()}", ["Content-Type: Application/MANSCDP+xml"],
                               body)


def answer_queries(device: TlsDevice) -> Callable[[SipMsg], None]:
    """200 to each query MESSAGE, then its Response (DeviceInfo; the Catalog in two pages)."""
    tasks: set[asyncio.Task[Any]] = set()

    async def respond(request: SipMsg) -> None:
        sn = request.sn or "0"
        if request.cmd_type == "DeviceInfo":
            xml = device_info_xml(device.device_id, sn, "tls nvr", "test", "tls", "1.0")
            assert (await device.message(manscdp_body(xml))).status == 200
        elif request.cmd_type == "Catalog":
            items = [{"DeviceID": c, "Name": f"camera {c[-1]}", "ParentID": device.device_id, "Status": "ON"}
                     for c in CHANNEL_IDS]
            for page in (items[:2], items[2:]):
                xml = catalog_xml(device.device_id, sn, page, sum_num=len(items))
                assert (await device.message(manscdp_body(xml))).status == 200

    def on_request(request: SipMsg) -> None:
        device.reply(request, 200)
        if request.method == "MESSAGE" and request.sn is not None:
            task = asyncio.get_running_loop().create_task(respond(request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    return on_request


async def tls_gateway(factory: Callable[..., Awaitable[RunningGateway]], pki: Pki) -> RunningGateway:
    return await factory({"sip": {"tls_listen": f"127.0.0.1:{free_port()}", "tls_cert": str(pki.cert), "tls_key": str(pki.key),
                                  "catalog_subscribe": False}})


async def test_a_device_registers_keeps_alive_and_reports_its_catalog_over_tls(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], pki: Pki
) -> None:
    gateway = await tls_gateway(gateway_factory, pki)
    device = await TlsDevice.connect(gateway.gateway.sip_tls_port, pki.ca)
    try:
        assert device.writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        device.on_request = answer_queries(device)
        ok = await device.register(PASSWORD)
        assert ok.status == 200, ok.start
        assert (await device.message(keepalive_body(DEVICE_ID))).status == 200

        async def channels() -> list[dict[str, Any]] | None:
            status, body = await gateway.api(f"/api/devices/{DEVICE_ID}/channels")
            return body if status == 200 and len(body) == len(CHANNEL_IDS) else None

        listed = await wait_until(channels, 10, "the catalog reported over TLS")
        assert sorted(c["id"] for c in listed) == CHANNEL_IDS
        status, info = await gateway.api(f"/api/devices/{DEVICE_ID}")
        assert status == 200
        assert info["online"] is True and info["registered"] is True
        assert info["transport"].upper() == "TLS"
        assert info["name"] == "tls nvr" and info["catalog_partial"] is False
        assert info["address"] == f"127.0.0.1:{device.port}"
        # The gateway's queries came back over this very connection (none went over UDP or a new socket).
        queries = [r for r in device.requests if r.method == "MESSAGE"]
        assert {r.cmd_type for r in queries} >= {"DeviceInfo", "Catalog"}
        assert all("SIP/2.0/TLS" in (r.get("Via") or "") for r in queries), [r.get("Via") for r in queries]
    finally:
        await device.close()


async def test_plain_sip_and_garbage_on_the_tls_port_are_closed_and_tls_devices_served(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], pki: Pki
) -> None:
    gateway = await tls_gateway(gateway_factory, pki)
    transport = gateway.gateway.transport
    assert transport is not None
    port = gateway.gateway.sip_tls_port
    device = await TlsDevice.connect(port, pki.ca)
    try:
        assert (await device.register(PASSWORD)).status == 200
        plain_register = (
            f"REGISTER sip:{GATEWAY_ID}@{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKplain\r\n"
            f"From: <sip:{DEVICE_ID}@{DOMAIN}>;tag=x\r\nTo: <sip:{DEVICE_ID}@{DOMAIN}>\r\nCall-ID: plain\r\n"
            "CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        # A TLS record header announcing a handshake that is no ClientHello, then random bytes.
        for garbage in (plain_register, b"\x16\x03\x01\x00\x05\x02hello", os.urandom(512)):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(garbage)
            # Closed by the gateway (EOF, or a reset after its alert), never answered in SIP.
            with contextlib.suppress(ConnectionResetError):
                answer = await asyncio.wait_for(reader.read(), 5)
                assert b"SIP/2.0" not in answer
            writer.close()
        async def refused() -> bool:
            return transport.tls_failures >= 3

        await wait_until(refused, 5, "three failed TLS handshakes")
        # The registered TLS device is still served on its connection, and a new TLS device connects.
        assert (await device.message(keepalive_body(DEVICE_ID))).status == 200
        other = await TlsDevice.connect(port, pki.ca, "34020000001188000002")
        try:
            assert (await other.register(PASSWORD)).status == 200
        finally:
            await other.close()
        status, info = await gateway.api(f"/api/devices/{DEVICE_ID}")
        assert status == 200 and info["online"] is True
        assert "Traceback" not in gateway.log_text
    finally:
        await device.close()

"""SIP over TLS on the device side (``sip.tls_listen``, RFC 3261 §26), through the whole gateway.

A device of its own (``asyncio.open_connection`` with a context trusting the test CA, framing by
Content-Length written here, digest from gwproc) registers with digest, keeps alive and answers the
gateway's DeviceInfo and Catalog queries, which must come back over its own TLS connection; the API then
shows it online over TLS with its channels. Played through the API, it answers the gateway's INVITE on that
connection with 200 and a UDP SDP, gets the ACK and later the BYE there, and its PS over RTP reaches the
gateway's offered port. Plain SIP and bytes that are no ClientHello on the TLS port
cost one closed connection, and the TLS device keeps being served. Certificates are made at test time
with openssl.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import ssl
from collections.abc import Awaitable, Callable
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
    set_content_length,
    wait_until,
)
from media_harness import Sink
from wire import LoopbackPki, free_port, loopback_pki

from gbgw.rtp.elementary import StreamType
from gbgw.rtp.packetizer import PsRtpPacketizer
from gbgw.rtp.ps import PsMuxer

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

DEVICE_ID = "34020000001188000001"
CHANNEL_IDS = [f"3402000000131800000{n}" for n in range(1, 4)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LoopbackPki:
    return loopback_pki(tmp_path_factory.mktemp("device-pki"), "gw")


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

    def reply(self, request: SipMsg, status: int, reason: str = "OK", headers: list[tuple[str, str]] | None = None,
              body: bytes = b"") -> None:
        answer = response_bytes(request, status, reason, "dev", headers or [])
        self.writer.write(set_content_length(answer + body) if body else answer)

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


async def tls_gateway(factory: Callable[..., Awaitable[RunningGateway]], pki: LoopbackPki,
                      **sections: dict[str, Any]) -> RunningGateway:
    return await factory({"sip": {"tls_listen": f"127.0.0.1:{free_port()}", "tls_cert": str(pki.cert), "tls_key": str(pki.key),
                                  "catalog_subscribe": False}, **sections})


def ps_over_rtp(ssrc: int, frames: int = 10) -> list[bytes]:
    """``frames`` H.264 access units (SPS, PPS and an IDR slice first, then P slices), muxed as PS and
    packetized as RTP payload type 96, as a camera sends them."""
    muxer = PsMuxer(StreamType.H264)
    packetizer = PsRtpPacketizer(ssrc, 96, 1400)
    idr = b"\x00\x00\x00\x01\x67\x42\xc0\x1e\xda\x02\x80\xbf\xe5\xc0\x44\x00\x00\x03\x00\x04" \
          b"\x00\x00\x00\x01\x68\xce\x3c\x80\x00\x00\x00\x01\x65" + os.urandom(3000)
    units = [idr] + [b"\x00\x00\x00\x01\x41" + os.urandom(800) for _ in range(frames - 1)]
    return [packet for i, unit in enumerate(units)
            for packet in packetizer.packetize(muxer.mux_video(unit, 3600 * i), 3600 * i)]


def sdp_answer(offer: str, device_id: str, port: int) -> tuple[bytes, int, int]:
    """A camera's answer to the gateway's Play offer: sendonly PS over UDP from ``port``, the offered
    y= kept; also the offer's media port and SSRC."""
    media_port = int(re.search(r"(?m)^m=video (\d+) RTP/AVP", offer).group(1))  # type: ignore[union-attr]
    ssrc = re.search(r"(?m)^y=(\d+)", offer)
    ssrc_text = ssrc.group(1) if ssrc else "0100000001"
    body = (f"v=0\r\no={device_id} 0 0 IN IP4 127.0.0.1\r\ns=Play\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=video {port} RTP/AVP 96\r\na=rtpmap:96 PS/90000\r\na=sendonly\r\ny={ssrc_text}\r\n")
    return body.encode(), media_port, int(ssrc_text)


async def test_a_device_registers_keeps_alive_and_reports_its_catalog_over_tls(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], pki: LoopbackPki
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
    gateway_factory: Callable[..., Awaitable[RunningGateway]], pki: LoopbackPki
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


async def test_a_tls_device_plays_its_invite_ack_and_bye_over_tls(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], pki: LoopbackPki
) -> None:
    gateway = await tls_gateway(gateway_factory, pki, media={"idle_timeout": 0.2})
    device = await TlsDevice.connect(gateway.gateway.sip_tls_port, pki.ca)
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind(("127.0.0.1", 0))
    sink = await Sink.open("udp")
    offers: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    queries = answer_queries(device)

    def on_request(request: SipMsg) -> None:
        if request.method == "INVITE":
            body, port, ssrc = sdp_answer(request.body.decode(), DEVICE_ID, media.getsockname()[1])
            device.reply(request, 200, headers=[
                ("Contact", f"<sips:{DEVICE_ID}@{device.host}:{device.port};transport=tls>"),
                ("Content-Type", "APPLICATION/SDP")], body=body)
            offers.put_nowait((port, ssrc))
        elif request.method in ("ACK", "BYE"):
            if request.method == "BYE":
                device.reply(request, 200)
        else:
            queries(request)

    device.on_request = on_request
    try:
        assert (await device.register(PASSWORD)).status == 200
        await wait_until(lambda: _has_channels(gateway), 10, "the catalog reported over TLS")
        channel = CHANNEL_IDS[0]
        play = asyncio.get_running_loop().create_task(
            _post(gateway, f"/api/devices/{DEVICE_ID}/channels/{channel}/play", sink.request()))
        port, ssrc = await asyncio.wait_for(offers.get(), 10)

        async def acked() -> bool:
            return any(r.method == "ACK" for r in device.requests)

        await wait_until(acked, 5, "the ACK over TLS")
        invite = next(r for r in device.requests if r.method == "INVITE")
        ack = next(r for r in device.requests if r.method == "ACK")
        for request in (invite, ack):
            assert "SIP/2.0/TLS" in (request.get("Via") or ""), request.start
        # The API answers once the device's media arrives: a camera starts sending after the ACK.
        for packet in ps_over_rtp(ssrc):
            media.sendto(packet, ("127.0.0.1", port))
            await asyncio.sleep(0.002)
        status, session = await asyncio.wait_for(play, 10)
        assert status == 200, session

        async def packets_in() -> dict[str, Any] | None:
            status, body = await gateway.api(f"/api/sessions/{session['id']}")
            return body if status == 200 and body["device"]["packets_in"] > 0 else None

        shown = await wait_until(packets_in, 5, "the device's packets counted")
        assert shown["device"]["ssrc_received"] == f"{ssrc:010d}"
        await sink.first_packet()
        status, _ = await gateway.api(f"/api/sessions/{session['id']}", "DELETE")
        assert status == 200

        async def bye() -> SipMsg | None:
            return next((r for r in device.requests if r.method == "BYE"), None)

        ended = await wait_until(bye, 5, "the BYE over TLS")
        assert "SIP/2.0/TLS" in (ended.get("Via") or "") and ended.get("Call-ID") == invite.get("Call-ID")
        assert "Traceback" not in gateway.log_text
    finally:
        media.close()
        await sink.close()
        await device.close()


async def _has_channels(gateway: RunningGateway) -> bool:
    status, body = await gateway.api(f"/api/devices/{DEVICE_ID}/channels")
    return status == 200 and len(body) == len(CHANNEL_IDS)


async def _post(gateway: RunningGateway, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with gateway.http.post(gateway.api_url + path, json=body) as response:
        return response.status, await response.json()

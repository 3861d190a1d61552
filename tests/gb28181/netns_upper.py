"""The upper (police) platform of the boundary tests, run inside the police namespace.

``ip netns exec <police> python3 netns_upper.py --host 10.77.2.2 --out DIR --rtp-port N --interface eth0``

It is `upper_harness.FakeUpper` (a registrar with digest that records what the gateway sends) plus:

- a capture of every frame arriving on the namespace's interface, written to ``DIR/police.pcap``: the
  evidence of what reached the police network, whatever socket (or none) it was meant for;
- every SIP message the upper's SIP stack received and where from, in ``DIR/sip.jsonl``;
- a UDP socket on ``--rtp-port`` taking the stream it INVITEs, every datagram with its arrival time and
  source appended to ``DIR/rtp.bin`` (`RTP_RECORD` header, then the datagram). The capture is not the
  place to read the stream from: veth hands a packet socket the gateway's UDP GSO batches unsplit;
- canaries: a TCP listener on ``--canary-port`` and a UDP socket on the port above, which nothing
  outside the police network should ever reach.

The test drives it with one JSON command per line on stdin and reads one JSON event per line on stdout:
``{"cmd": "catalog"}``, ``{"cmd": "invite", "channel": ID, "ssrc": "0100000001"}``, ``{"cmd": "bye"}``,
``{"cmd": "sync"}`` (flush the files), ``{"cmd": "quit"}``. Each answer repeats the command's ``cmd``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from scapy.utils import PcapWriter
from upper_harness import UPPER_ID, FakeUpper

from gbgw.gb28181 import manscdp
from gbgw.gb28181.manscdp import CatalogResponse
from gbgw.sip.dialog import Dialog
from gbgw.sip.endpoint import Peer
from gbgw.sip.message import Request, Response

GATEWAY_ID = "34020000002000000001"
RTP_RECORD = struct.Struct("!d4sHH")
"""Arrival time, source address and port, datagram length."""
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
LINKTYPE_ETHERNET = 1


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Capture:
    """Every frame that arrives on one interface, appended to a pcap file as it comes."""

    def __init__(self, interface: str, path: Path) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((interface, 0))
        self.sock.setblocking(False)
        self.writer = PcapWriter(str(path), linktype=LINKTYPE_ETHERNET, sync=False)
        self.writer.write_header(None)  # write_packet (raw bytes, our own timestamps) does not
        self.frames = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                frame, addr = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            now = time.time()
            self.writer.write_packet(frame, sec=int(now), usec=int((now % 1) * 1e6))
            self.frames += 1

    def flush(self) -> None:
        self._readable()
        self.writer.flush()

    def close(self) -> None:
        self.flush()
        self.writer.close()
        self.sock.close()


class Upper:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.upper = FakeUpper(host=args.host)
        self.sip_log = (self.out / "sip.jsonl").open("a", encoding="utf-8")
        self.rtp_log = (self.out / "rtp.bin").open("ab")
        self.capture = Capture(args.interface, self.out / "police.pcap")
        self.dialog: Dialog | None = None
        self.sn = 1
        self._sockets: list[socket.socket] = []
        self.canary: list[dict[str, Any]] = []
        original = self.upper.endpoint.receive_full

        def receive(data: bytes, source: Peer, now: float) -> Any:
            self.sip_log.write(json.dumps({"time": time.time(), "source": [source.host, source.port],
                                           "transport": source.transport,
                                           "text": data.decode("utf-8", "replace")}) + "\n")
            return original(data, source, now)

        self.upper.endpoint.receive_full = receive  # type: ignore[method-assign]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.capture.start(loop)
        await self.upper.start(self.args.sip_port)
        rtp = self._udp(self.args.rtp_port)
        loop.add_reader(rtp.fileno(), self._record_rtp, rtp)
        rtcp = self._udp(self.args.rtp_port + 1)
        loop.add_reader(rtcp.fileno(), self._drain, rtcp, None)
        canary_udp = self._udp(self.args.canary_port + 1)
        loop.add_reader(canary_udp.fileno(), self._drain, canary_udp, "udp")
        await asyncio.start_server(self._canary_tcp, self.args.host, self.args.canary_port)
        self._announcer = loop.create_task(self._announce_registration())

    def _udp(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((self.args.host, port))
        sock.setblocking(False)
        self._sockets.append(sock)
        return sock

    def _record_rtp(self, sock: socket.socket) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(65536)
            except BlockingIOError:
                return
            self.rtp_log.write(RTP_RECORD.pack(time.time(), socket.inet_aton(addr[0]), addr[1], len(data)) + data)

    def _drain(self, sock: socket.socket, canary: str | None) -> None:
        while True:
            try:
                data, addr = sock.recvfrom(65536)
            except BlockingIOError:
                return
            if canary is not None:
                self.canary.append({"kind": canary, "source": list(addr), "data": data[:64].hex()})

    async def _canary_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.canary.append({"kind": "tcp", "source": list(writer.get_extra_info("peername"))})
        writer.close()

    async def _announce_registration(self) -> None:
        await self.upper.registered.wait()
        gw = self.upper.gateway
        assert gw is not None
        emit("registered", source=[gw.host, gw.port])

    # -- commands ----------------------------------------------------------------------------------

    async def catalog(self, timeout: float) -> dict[str, Any]:
        self.sn += 1
        sn = self.sn
        status = (await self.upper.manscdp(manscdp.query_catalog(sn, GATEWAY_ID))).status
        items: list[str] = []

        def complete() -> bool:
            pages = [CatalogResponse.from_document(doc) for doc in self.upper.documents("Response", "Catalog", sn)]
            items[:] = [item.device_id for page in pages for item in page.items]
            return bool(pages) and len(items) >= (pages[0].sum_num or 0)

        with contextlib.suppress(AssertionError):
            await self.upper.wait(complete, timeout, "the catalog")
        return {"status": status, "items": items}

    async def invite(self, channel: str, ssrc: str) -> dict[str, Any]:
        host = self.args.host
        sdp = (
            f"v=0\r\no={UPPER_ID} 0 0 IN IP4 {host}\r\ns=Play\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
            f"m=video {self.args.rtp_port} RTP/AVP 96 98 97\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\n"
            f"a=rtpmap:98 H264/90000\r\na=rtpmap:97 MPEG4/90000\r\ny={ssrc}\r\n"
        ).encode()
        request = self.upper.request("INVITE", channel, sdp, "APPLICATION/SDP",
                                     [("Subject", f"{channel}:{ssrc},{UPPER_ID}:0")])
        try:
            response = await asyncio.wait_for(self.upper.send(request), 10)
        except Exception as exc:
            return {"status": None, "error": repr(exc)}
        if 200 <= response.status < 300:
            self.dialog = Dialog.from_uac(request, response, self.upper.gateway)
            ack = self.dialog.create_ack(request.cseq.seq, via=self.upper.transport.via("UDP"))
            self.upper.transport.send_ack(ack, self._peer())
        return {"status": response.status, "sdp": response.body.decode("utf-8", "replace")}

    def _peer(self) -> Peer:
        gw = self.upper.gateway
        assert gw is not None
        return Peer(gw.transport, gw.host, gw.port)

    async def bye(self) -> dict[str, Any]:
        if self.dialog is None:
            return {"status": None}
        bye = self.dialog.create_request("BYE", via=self.upper.transport.via("UDP"))
        self.dialog = None
        response: Response = await asyncio.wait_for(self.upper.transport.send_request(bye, self._peer()), 10)
        return {"status": response.status}

    def sync(self) -> dict[str, Any]:
        self.capture.flush()
        self.sip_log.flush()
        self.rtp_log.flush()
        upper = self.upper
        return {
            "frames": self.capture.frames,
            "canary": self.canary,
            "stray_responses": upper.transport.stray_responses,
            "refused_sources": upper.transport.refused_sources,
            "requests": [_summary(r.request, r.source) for r in upper.requests],
        }

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        emit("ready")
        while True:
            line = await reader.readline()
            if not line:
                break
            command = json.loads(line)
            name = command["cmd"]
            if name == "catalog":
                emit(name, **await self.catalog(float(command.get("wait", 5))))
            elif name == "invite":
                emit(name, **await self.invite(command["channel"], command["ssrc"]))
            elif name == "bye":
                emit(name, **await self.bye())
            elif name == "sync":
                emit(name, **self.sync())
            elif name == "quit":
                break
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.bye(), 2)
        await self.upper.close()
        self.capture.close()
        self.sip_log.close()
        self.rtp_log.close()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        emit("quit")


def _summary(request: Request, source: Peer) -> dict[str, Any]:
    return {"method": request.method, "source": [source.host, source.port], "call_id": request.call_id}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--sip-port", type=int, default=5060)
    parser.add_argument("--rtp-port", type=int, default=46000)
    parser.add_argument("--canary-port", type=int, default=7000)
    parser.add_argument("--interface", default="eth0")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    upper = Upper(args)
    await upper.start()
    await upper.serve()


if __name__ == "__main__":
    asyncio.run(main())

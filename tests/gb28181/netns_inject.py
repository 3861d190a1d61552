"""What a hostile host on the device network tries, run inside the device namespace.

``ip netns exec <dev> python3 netns_inject.py reach|inject|flood ...``; prints one JSON line of results.

- ``reach``: ICMP echo, a TCP connection and a UDP datagram to a host of the police network.
- ``inject``: packets crafted with scapy and sent on a raw socket, so their source address can be any:
  SIP requests "from the upper" (spoofed 10.77.2.2) to the gateway's police-side and device-side SIP
  ports, the same from this host's own address, a TCP SYN and a bare data segment, RTP with foreign
  SSRCs and RTCP BYE/RR over both media port ranges (spoofed as the upper, as the camera's address from
  another port, and from this host), malformed SIP and RTP, an oversized fragmented datagram, and a
  bounded flood. Every packet carries ``--marker``, so whatever reaches the police network can be found.
  Answers that come back to this host's own sockets are counted: the gateway must not answer them on its
  police-side address, and must never send media to the address a spoofed INVITE asked for.
- ``probe``: from this host's own address, a SIP MESSAGE and an RTP packet to each given UDP port and a
  TCP connection to each given TCP port; says which were answered or accepted, and which interface
  `rtp.ports.interface_for` finds for an address of this host.
- ``flood``: SIP OPTIONS from one address at a set rate, counting the answers (a first line says it
  has started).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterable

from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.packet import Packet, Raw
from scapy.sendrecv import sr1

FIRST_SN = 77000
"""MANSCDP SNs of the injected queries count up from here (no answer may ever carry one)."""
ATTACK_MEDIA_PORT = 9000
"""Where spoofed INVITEs ask the stream to go (an address of this host): nothing may ever arrive."""


# -- crafting -------------------------------------------------------------------------------------------


def sip_request(method: str, target: str, via: tuple[str, int], marker: str, n: int, *,
                to_id: str, from_id: str, body: bytes = b"", content_type: str | None = None,
                extra: Iterable[tuple[str, str]] = ()) -> bytes:
    lines = [
        f"{method} sip:{to_id}@{target} SIP/2.0",
        f"Via: SIP/2.0/UDP {via[0]}:{via[1]};rport;branch=z9hG4bK{marker}{n}",
        f"From: <sip:{from_id}@3402000000>;tag={marker}{n}",
        f"To: <sip:{to_id}@3402000000>" + (";tag=x" + marker if method == "BYE" else ""),
        f"Call-ID: {marker}-{n}@{via[0]}",
        f"CSeq: {n} {method}",
        f"Contact: <sip:{from_id}@{via[0]}:{via[1]}>",
        "Max-Forwards: 70",
        *(f"{name}: {value}" for name, value in extra),
    ]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def manscdp(root: str, cmd: str, sn: int, device_id: str, extra: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="GB2312"?>\r\n<{root}>\r\n<CmdType>{cmd}</CmdType>\r\n<SN>{sn}</SN>\r\n'
            f"<DeviceID>{device_id}</DeviceID>\r\n{extra}</{root}>\r\n").encode()


def sip_battery(target: str, via: tuple[str, int], marker: str, gateway_id: str, upper_id: str,
                channel: str, first_sn: int) -> list[bytes]:
    """Requests an upper could send (catalog, INVITE toward our address, control, BYE...) plus junk."""
    sdp = (f"v=0\r\no={upper_id} 0 0 IN IP4 {via[0]}\r\ns=Play\r\nc=IN IP4 {via[0]}\r\nt=0 0\r\n"
           f"m=video {ATTACK_MEDIA_PORT} RTP/AVP 96\r\na=recvonly\r\na=rtpmap:96 PS/90000\r\ny=0100000999\r\n"
           ).encode()
    messages = [
        sip_request("MESSAGE", target, via, marker, 1, to_id=gateway_id,
                    body=manscdp("Query", "Catalog", first_sn, gateway_id), content_type="Application/MANSCDP+xml",
                    from_id=upper_id),
        sip_request("MESSAGE", target, via, marker, 2, to_id=gateway_id,
                    body=manscdp("Query", "DeviceInfo", first_sn + 1, gateway_id),
                    content_type="Application/MANSCDP+xml", from_id=upper_id),
        sip_request("MESSAGE", target, via, marker, 3, to_id=channel,
                    body=manscdp("Control", "DeviceControl", first_sn + 2, channel, "<PTZCmd>A50F0108FF000000</PTZCmd>\r\n"),
                    content_type="Application/MANSCDP+xml", from_id=upper_id),
        sip_request("INVITE", target, via, marker, 4, to_id=channel, body=sdp, content_type="APPLICATION/SDP",
                    extra=[("Subject", f"{channel}:0100000999,{upper_id}:0")], from_id=upper_id),
        sip_request("BYE", target, via, marker, 5, to_id=channel, from_id=upper_id),
        sip_request("OPTIONS", target, via, marker, 6, to_id=gateway_id, from_id=upper_id),
        sip_request("REGISTER", target, via, marker, 7, to_id=gateway_id, extra=[("Expires", "3600")], from_id=upper_id),
        sip_request("SUBSCRIBE", target, via, marker, 8, to_id=gateway_id,
                    body=manscdp("Query", "Catalog", first_sn + 3, gateway_id), content_type="Application/MANSCDP+xml",
                    extra=[("Event", "Catalog"), ("Expires", "3600")], from_id=upper_id),
    ]
    junk = [
        f"INVITE sip:{marker} SIP/2.0\r\nVia: nonsense\r\n\r\n".encode(),
        f"SIP/2.0 200 OK\r\nCall-ID: {marker}-stray\r\nCSeq: 1 REGISTER\r\n\r\n".encode(),
        marker.encode() + bytes(range(256)),
        sip_request("MESSAGE", target, via, marker, 9, to_id=gateway_id, body=b"<", from_id=upper_id)
        .replace(b"Content-Length: 1", b"Content-Length: 99999"),
        b"\x00" * 8 + marker.encode(),
    ]
    return messages + junk


def rtp(ssrc: int, seq: int, marker: str, payload_type: int = 96, size: int = 200) -> bytes:
    body = marker.encode().ljust(size, b"\xee")
    return struct.pack("!BBHII", 0x80, payload_type, seq & 0xFFFF, seq * 3600, ssrc) + body


def rtcp_bye(ssrc: int, marker: str) -> bytes:
    reason = marker.encode()[:255]
    text = bytes([len(reason)]) + reason
    text += b"\0" * (-len(text) % 4)
    return struct.pack("!BBHI", 0x81, 203, (4 + len(text)) // 4, ssrc) + text


def rtcp_rr(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def malformed_rtp(marker: str) -> list[bytes]:
    m = marker.encode()
    return [
        b"\x80",  # shorter than a header
        struct.pack("!BBHII", 0x00, 96, 1, 1, 1) + m,  # version 0
        struct.pack("!BBHII", 0x8F, 96, 1, 1, 1) + m,  # 15 CSRCs announced, none there
        struct.pack("!BBHII", 0x90, 96, 1, 1, 1) + struct.pack("!HH", 0xBEDE, 0xFFFF) + m,  # extension overruns
        struct.pack("!BBHII", 0xA0, 96, 1, 1, 1) + m + b"\xff",  # padding longer than the packet
        struct.pack("!BBH", 0x81, 203, 0xFFFF) + m,  # RTCP length overrun
    ]


class Injector:
    """Sends IP packets built with scapy on one raw socket (IP_HDRINCL: the source address is ours to set)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        self.sent: Counter[str] = Counter()

    def send(self, kind: str, packet: Packet) -> None:
        for part in fragment(packet, fragsize=1400) if len(packet) > 1500 else [packet]:
            data = bytes(part)
            for _ in range(50):
                try:
                    self.sock.sendto(data, (part[IP].dst, 0))
                    break
                except BlockingIOError:
                    time.sleep(0.001)
        self.sent[kind] += 1

    def udp(self, kind: str, src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> None:
        self.send(kind, IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / Raw(payload))


def port_range(text: str) -> range:
    low, high = (int(part) for part in text.split("-"))
    return range(low, high + 1)


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def collect(sockets: list[socket.socket], seconds: float) -> dict[int, list[str]]:
    """What arrives on ``sockets`` within ``seconds``: local port -> first bytes of each datagram."""
    got: dict[int, list[str]] = {sock.getsockname()[1]: [] for sock in sockets}
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(sockets, [], [], remaining)
        for sock in ready:
            data = sock.recv(65536)
            got[sock.getsockname()[1]].append(data[:80].decode("latin-1"))
    return got


# -- commands -------------------------------------------------------------------------------------------


def reach(args: argparse.Namespace) -> dict[str, object]:
    echo = sr1(IP(dst=args.target) / ICMP() / Raw(args.marker.encode()), timeout=1, verbose=False)
    tcp_error = ""
    try:
        socket.create_connection((args.target, args.tcp), timeout=1).close()
        tcp = True
    except OSError as exc:
        tcp, tcp_error = False, str(exc)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(args.marker.encode(), (args.target, args.udp))
    return {"icmp": echo is not None, "tcp": tcp, "tcp_error": tcp_error}


def inject(args: argparse.Namespace) -> dict[str, object]:
    out = Injector()
    marker = args.marker
    upper = (args.upper, args.upper_sip)
    police_sip = (args.police_gw, args.police_sip)
    dev_sip = (args.dev_gw, args.dev_sip)
    # This host's own sockets: answers to unspoofed requests, and media a spoofed INVITE might pull here.
    own_sip = listen(args.other, 5070)
    own_media = listen(args.other, ATTACK_MEDIA_PORT)
    sn = FIRST_SN

    # SIP as the upper (spoofed) and as ourselves, to the police side and to the device side.
    for name, source, target in (
        ("sip spoofed upper -> police side", upper, police_sip),
        ("sip own address -> police side", (args.other, 5070), police_sip),
        ("sip spoofed upper -> device side", upper, dev_sip),
    ):
        for message in sip_battery(f"{target[0]}:{target[1]}", source, marker, args.gateway_id,
                                   args.upper_id, args.channel, sn):
            out.udp(name, source, target, message)
        sn += 10
    # An oversized request: fragmented on the wire, over the SIP size limit once reassembled.
    big = sip_request("MESSAGE", f"{police_sip[0]}", upper, marker, 99, to_id=args.gateway_id,
                      from_id=args.upper_id, body=b"<" + marker.encode() * (70000 // len(marker)),
                      content_type="Application/MANSCDP+xml")
    out.udp("sip oversized fragmented", upper, police_sip, big[:65000])
    # TCP toward the police-side SIP port as the upper: a SYN, and data without a connection.
    out.send("tcp syn spoofed upper", IP(src=args.upper, dst=args.police_gw) / TCP(sport=args.upper_sip,
             dport=args.police_sip, flags="S", seq=1000))
    out.send("tcp data spoofed upper", IP(src=args.upper, dst=args.police_gw) / TCP(
        sport=args.upper_sip, dport=args.police_sip, flags="PA", seq=5000, ack=1) / Raw(
        sip_request("OPTIONS", police_sip[0], upper, marker, 50, to_id=args.gateway_id, from_id=args.upper_id)))

    # Media: RTP with foreign SSRCs and RTCP BYE/RR over every port of both ranges.
    ssrc = 0x0BAD0000
    for port in port_range(args.police_media):
        if port & 1:
            for payload in (rtcp_bye(ssrc, marker), rtcp_rr(ssrc)):
                out.udp("rtcp spoofed upper -> police media", (args.upper, args.upper_rtp + 1),
                        (args.police_gw, port), payload)
                out.udp("rtcp own address -> police media", (args.other, 9001), (args.police_gw, port), payload)
        else:
            out.udp("rtp spoofed upper -> police media", (args.upper, args.upper_rtp), (args.police_gw, port),
                    rtp(ssrc, port, marker))
            out.udp("rtp own address -> police media", (args.other, 9002), (args.police_gw, port),
                    rtp(ssrc, port, marker))
    for port in port_range(args.dev_media):
        if port & 1:
            for payload in (rtcp_bye(ssrc, marker), rtcp_rr(ssrc)):
                out.udp("rtcp own address -> device media", (args.other, 9001), (args.dev_gw, port), payload)
                out.udp("rtcp spoofed upper -> device media", (args.upper, 9001), (args.dev_gw, port), payload)
                out.udp("rtcp camera address, other port -> device media", (args.camera, 1), (args.dev_gw, port),
                        payload)
        else:
            for seq in range(3):
                out.udp("rtp own address -> device media", (args.other, 9002), (args.dev_gw, port),
                        rtp(ssrc + seq, port + seq, marker))
                out.udp("rtp camera address, other port -> device media", (args.camera, 1), (args.dev_gw, port),
                        rtp(ssrc + seq, port + seq, marker))
                out.udp("rtp spoofed upper -> device media", (args.upper, args.upper_rtp), (args.dev_gw, port),
                        rtp(ssrc + seq, port + seq, marker))
            for payload in malformed_rtp(marker):
                out.udp("malformed rtp -> device media", (args.other, 9002), (args.dev_gw, port), payload)
    for port in port_range(args.police_media)[::2]:
        for payload in malformed_rtp(marker):
            out.udp("malformed rtp spoofed upper -> police media", (args.upper, args.upper_rtp),
                    (args.police_gw, port), payload)

    # A bounded flood at both SIP ports and the media ranges, spoofed as the upper and from ourselves.
    targets = [police_sip, dev_sip, *((args.police_gw, p) for p in port_range(args.police_media)[::2]),
               *((args.dev_gw, p) for p in port_range(args.dev_media)[::2])]
    for i in range(args.flood):
        target = targets[i % len(targets)]
        source = upper if i % 2 else (args.other, 9003)
        out.udp("flood", source, target, rtp(ssrc ^ i, i, marker) if target[1] != police_sip[1] else marker.encode() * 8)

    answers = collect([own_sip, own_media], args.listen)
    return {"sent": dict(out.sent), "answers": answers[5070], "media": answers[ATTACK_MEDIA_PORT]}


def probe(args: argparse.Namespace) -> dict[str, object]:
    from gbgw.rtp.ports import interface_for

    sock = listen(args.source, 0)
    via = (args.source, sock.getsockname()[1])
    for n, port in enumerate(args.sip):
        sock.sendto(sip_request("MESSAGE", f"{args.target}:{port}", via, "probe", n, to_id=args.gateway_id,
                                from_id="34020000001320009998"), (args.target, port))
    for port in args.rtp:
        sock.sendto(rtp(0x12345678, port, "probe"), (args.target, port))
    answered: list[int] = []
    deadline = time.monotonic() + 0.5
    while (remaining := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], remaining)[0]:
            data, addr = sock.recvfrom(65536)
            if data.startswith(b"SIP/2.0 "):
                answered.append(addr[1])
    tcp: dict[int, bool] = {}
    for port in args.tcp:
        try:
            socket.create_connection((args.target, port), timeout=1, source_address=(args.source, 0)).close()
            tcp[port] = True
        except OSError:
            tcp[port] = False
    return {"answered": answered, "tcp": tcp, "interface_for": interface_for(args.source)}


def flood(args: argparse.Namespace) -> dict[str, object]:
    """OPTIONS from ``--source`` at ``--rate`` per second for ``--seconds``; counts the answers."""
    host, port = args.target.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((args.source, 0))
    sock.setblocking(False)
    via = (args.source, sock.getsockname()[1])
    sent = 0
    answered: set[str] = set()
    tick = 0.02
    per_tick = max(1, int(args.rate * tick))
    print(json.dumps({"started": via[1]}), flush=True)
    start = time.monotonic()
    end = start + args.seconds
    while (now := time.monotonic()) < end + 1.0:
        if now < end and sent < (now - start) * args.rate + per_tick:
            for _ in range(per_tick):
                sent += 1
                message = sip_request("OPTIONS", f"{host}:{port}", via, f"flood{os.getpid()}", sent,
                                      to_id=args.gateway_id, from_id="34020000001320009999")
                try:
                    sock.sendto(message, (host, int(port)))
                except BlockingIOError:
                    sent -= 1
                    break
        ready, _, _ = select.select([sock], [], [], tick)
        while ready:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                break
            for line in data.split(b"\r\n"):
                if line.lower().startswith(b"call-id:"):
                    answered.add(line.split(b":", 1)[1].strip().decode())
    return {"sent": sent, "answered": len(answered), "seconds": args.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("reach")
    p.add_argument("--target", required=True)
    p.add_argument("--tcp", type=int, required=True)
    p.add_argument("--udp", type=int, required=True)
    p.add_argument("--marker", required=True)
    p = sub.add_parser("inject")
    for name in ("--marker", "--upper", "--police-gw", "--dev-gw", "--camera", "--other", "--police-media",
                 "--dev-media", "--gateway-id", "--upper-id", "--channel"):
        p.add_argument(name, required=True)
    for name in ("--upper-sip", "--upper-rtp", "--police-sip", "--dev-sip"):
        p.add_argument(name, type=int, required=True)
    p.add_argument("--flood", type=int, default=2000)
    p.add_argument("--listen", type=float, default=1.0, help="seconds to wait for answers afterwards")
    p = sub.add_parser("probe")
    p.add_argument("--target", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--gateway-id", required=True)
    for name in ("--sip", "--rtp", "--tcp"):
        p.add_argument(name, type=int, nargs="*", default=[])
    p = sub.add_parser("flood")
    p.add_argument("--target", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--gateway-id", required=True)
    args = parser.parse_args()
    result = {"reach": reach, "inject": inject, "probe": probe, "flood": flood}[args.command](args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

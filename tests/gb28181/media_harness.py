"""Media checks shared by the live, cascade and boundary tests: a plain-socket RTP sink (UDP, or TCP with
its own RFC 4571 deframing), RTP parsing, sequence gaps, keyframe detection, and ffprobe as the independent
decoder. Deliberately independent of the project's ``rtp`` package."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PACK_START = b"\x00\x00\x01\xba"


def ffprobe(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )
    streams = json.loads(result.stdout)["streams"]
    assert len(streams) == 1, streams
    return dict(streams[0])


# -- the receiving end ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rtp:
    seq: int
    timestamp: int
    ssrc: int
    marker: bool
    payload_type: int
    payload: bytes


def parse_rtp(data: bytes) -> Rtp:
    """RFC 3550 5.1, written here so the gateway's own RTP code is not what checks it."""
    assert len(data) >= 12 and data[0] >> 6 == 2, data[:16].hex()
    b0, b1, seq, timestamp, ssrc = struct.unpack_from("!BBHII", data)
    start = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        start += 4 + 4 * struct.unpack_from("!H", data, start + 2)[0]
    end = len(data) - (data[-1] if b0 & 0x20 else 0)
    return Rtp(seq, timestamp, ssrc, bool(b1 & 0x80), b1 & 0x7F, data[start:end])


@dataclass
class Sink:
    """A receiver of relayed media on 127.0.0.1: RTP datagrams for ``udp``; RFC 4571 frames over TCP,
    listening for a ``tcp-active`` output (the gateway connects) or connecting to a ``tcp-passive`` one."""

    transport: str
    port: int = 0
    packets: list[tuple[float, Rtp]] = field(default_factory=list)
    closed: bool = False
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _udp: asyncio.DatagramTransport | None = None
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(cls, transport: str) -> Sink:
        sink = cls(transport)
        loop = asyncio.get_running_loop()
        if transport == "udp":
            sink._udp, _ = await loop.create_datagram_endpoint(
                lambda: _SinkProtocol(sink), local_addr=("127.0.0.1", 0)
            )
            sink.port = sink._udp.get_extra_info("sockname")[1]
        elif transport == "tcp-active":
            sink._server = await asyncio.start_server(sink._serve, "127.0.0.1", 0)
            sink.port = sink._server.sockets[0].getsockname()[1]
        return sink

    def request(self, ssrc: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"transport": self.transport}
        if self.transport != "tcp-passive":
            body.update(host="127.0.0.1", port=self.port)
        if ssrc is not None:
            body["ssrc"] = ssrc
        return body

    async def connect(self, port: int) -> None:
        """tcp-passive: connect to the output's local port."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self._tasks.append(asyncio.get_running_loop().create_task(self._read(reader, writer)))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._read(reader, writer)

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                self.received(await reader.readexactly(size))
        self.closed = True

    def received(self, data: bytes) -> None:
        # RTCP (payload types 200-204 in the second byte) may share a TCP connection; only RTP is kept.
        if 192 <= data[1] <= 223:
            return
        self.packets.append((time.monotonic(), parse_rtp(data)))
        self._arrived.set()

    async def first_packet(self, timeout: float = 5.0) -> float:
        """When the first packet arrived (time.monotonic())."""
        await asyncio.wait_for(self._arrived.wait(), timeout)
        return self.packets[0][0]

    def rtp(self, since: int = 0) -> list[Rtp]:
        return [packet for _, packet in self.packets[since:]]

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()


class _SinkProtocol(asyncio.DatagramProtocol):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.sink.received(data)


def gaps(packets: list[Rtp]) -> list[tuple[int, int]]:
    """(previous, next) sequence numbers wherever numbering is not continuous."""
    return [(a.seq, b.seq) for a, b in itertools.pairwise(packets) if (a.seq + 1) & 0xFFFF != b.seq]


def starts_keyframe(payload: bytes) -> bool:
    """A PS pack header followed by a system header (00 00 01 BB) or stream map (00 00 01 BC): GB/T 28181
    Annex C puts those only in front of keyframes."""
    if not payload.startswith(PACK_START) or len(payload) < 18:
        return False
    header = 14 + (payload[13] & 0x07)
    return payload[header : header + 4] in (b"\x00\x00\x01\xbb", b"\x00\x00\x01\xbc")

"""Voice broadcast on the simulated device's side: after a Notify/Broadcast the device INVITEs the audio source
(the platform) with ``m=audio PORT RTP/AVP 8 0`` and keeps the G.711 it receives, for a test to decode. Over
TCP it offers ``TCP/RTP/AVP`` with ``a=setup:passive``: it listens and the platform connects (RFC 4571)."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path
from typing import cast

from gbgw.sip.sdp import SessionDescription


class AudioReceiver(asyncio.DatagramProtocol):
    """The device's audio port: RTP payloads kept in arrival order, with their payload type."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.payload_types: set[int] = set()
        self.ssrcs: set[int] = set()
        self.transport: asyncio.DatagramTransport | None = None
        self.ended: str | None = None
        self._server: asyncio.Server | None = None

    @classmethod
    async def open(cls, host: str, tcp: bool = False) -> AudioReceiver:
        receiver = cls()
        if tcp:
            receiver._server = await asyncio.start_server(receiver._serve, host, 0)
            return receiver
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, 0))
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: receiver, sock=sock)
        return receiver

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                self.datagram_received(await reader.readexactly(size), ("", 0))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return
        count = data[0] & 0x0F
        self.payload_types.add(data[1] & 0x7F)
        self.ssrcs.add(struct.unpack_from("!I", data, 8)[0])
        self.payloads.append(data[12 + 4 * count:])

    @property
    def port(self) -> int:
        if self._server is not None:
            return int(self._server.sockets[0].getsockname()[1])
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def offer(self, device_id: str, host: str, ssrc: str) -> bytes:
        """The INVITE's audio offer: receive only, A-law first then µ-law (GB/T 28181-2016 §9.12)."""
        tcp = self._server is not None
        return SessionDescription.offer(
            "Play", device_id, host, self.port, "TCP/RTP/AVP" if tcp else "RTP/AVP",
            ((8, "PCMA", 8000), (0, "PCMU", 8000)), ssrc, kind="audio",
            setup="passive" if tcp else None, connection="new" if tcp else None,
        ).serialize()

    def save(self, path: Path) -> Path:
        path.write_bytes(b"".join(self.payloads))
        return path

    def close(self, reason: str) -> None:
        self.ended = reason
        if self.transport is not None:
            self.transport.close()
        if self._server is not None:
            self._server.close()

"""Media port allocation: even ports for RTP, the odd port above each for RTCP (RFC 3550 11).

A lease hands back the sockets it bound, not just a number: testing a port by binding it, closing the
socket and binding again later would race with every other process on the host. The cursor moves on
after each lease instead of reusing the lowest free port, so a port freed by a session that just ended
is not handed out again while stray packets of that session may still be on their way to it.
"""

from __future__ import annotations

import contextlib
import re
import socket
from dataclasses import dataclass, field

_RANGE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")

SOCKET_BUFFER = 4 << 20
"""Receive/send buffer asked for on media sockets; the kernel caps it at net.core.[rw]mem_max."""


class PortRangeExhausted(RuntimeError):
    """No even port of the range could be leased: all are in use here or bound by other processes."""


def address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


@dataclass(slots=True, eq=False)
class PortLease:
    """An even port (and the odd one above it) held until `release`; closes the sockets it bound."""

    port: int
    sockets: tuple[socket.socket, ...]
    _owner: PortRange | None = field(default=None, repr=False)

    @property
    def rtcp_port(self) -> int:
        return self.port + 1

    def release(self) -> None:
        """Close the sockets and give the port back; safe to call twice."""
        for sock in self.sockets:
            sock.close()
        if self._owner is not None:
            self._owner._free(self.port)
            self._owner = None


class PortRange:
    """Leases even ports of an inclusive range such as ``"30000-30999"`` (500 RTP/RTCP pairs)."""

    def __init__(self, spec: str | tuple[int, int]) -> None:
        if isinstance(spec, str):
            match = _RANGE.match(spec)
            if match is None:
                raise ValueError(f"port range {spec!r} is not of the form LOW-HIGH")
            low, high = int(match[1]), int(match[2])
        else:
            low, high = spec
        first = low + (low & 1)
        if not 1024 <= first < high <= 65535:
            raise ValueError(f"port range {low}-{high} must hold an even/odd pair within 1024-65535")
        self.low = low
        self.high = high
        self._first = first
        self._pairs = (high - first + 1) // 2
        self._leased: set[int] = set()
        self._cursor = 0

    def __repr__(self) -> str:
        return f"PortRange({self.low}-{self.high}, {len(self._leased)}/{self._pairs} leased)"

    @property
    def capacity(self) -> int:
        """Number of RTP/RTCP pairs in the range."""
        return self._pairs

    @property
    def leased(self) -> int:
        return len(self._leased)

    def lease_udp(self, host: str) -> PortLease:
        """Bind a UDP socket on an even port (RTP) and one on the port above it (RTCP)."""
        return self._lease(host, socket.SOCK_DGRAM, 2)

    def lease_tcp(self, host: str) -> PortLease:
        """Bind one TCP socket on an even port, to listen on or to connect from.

        RTCP over TCP shares the RTP connection (RFC 4571), so the odd port is only reserved, not bound.
        SO_REUSEADDR lets an active connection leave from a port whose previous connection is in
        TIME_WAIT.
        """
        return self._lease(host, socket.SOCK_STREAM, 1)

    def _lease(self, host: str, kind: socket.SocketKind, count: int) -> PortLease:
        family = address_family(host)
        busy = 0
        for _ in range(self._pairs):
            port = self._first + 2 * self._cursor
            self._cursor = (self._cursor + 1) % self._pairs
            if port in self._leased:
                continue
            sockets: list[socket.socket] = []
            try:
                for offset in range(count):
                    sock = socket.socket(family, kind)
                    sockets.append(sock)
                    if kind == socket.SOCK_STREAM:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((host, port + offset))
            except OSError:
                busy += 1
                for sock in sockets:
                    sock.close()
                continue
            for sock in sockets:
                sock.setblocking(False)
                for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            self._leased.add(port)
            return PortLease(port, tuple(sockets), self)
        raise PortRangeExhausted(
            f"no free even port in {self.low}-{self.high} on {host}: "
            f"{len(self._leased)} of {self._pairs} pairs leased here, {busy} bound by other sockets"
        )

    def _free(self, port: int) -> None:
        self._leased.discard(port)

"""Media port allocation: even ports for RTP, the odd port above each for RTCP (RFC 3550 11).

A lease hands back the sockets it bound, not just a number: testing a port by binding it, closing the
socket and binding again later would race with every other process on the host. The cursor moves on
after each lease instead of reusing the lowest free port, so a port freed by a session that just ended
is not handed out again while stray packets of that session may still be on their way to it.

On a host between two networks, a range can be tied to the interface of its side (`interface_for`):
Linux otherwise delivers a packet arriving on the device-side interface to a socket bound to the
police-side address (the weak host model), so a device could aim spoofed media at police-side ports.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import ipaddress
import re
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

_RANGE = re.compile(r"^\s*(\d{1,5})\s*-\s*(\d{1,5})\s*$")

SOCKET_BUFFER = 4 << 20
"""Receive/send buffer asked for on media sockets; the kernel caps it at net.core.[rw]mem_max."""


class PortRangeExhausted(RuntimeError):
    """No even port of the range could be leased: all are in use here or bound by other processes."""


def address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


_SIOCGIFCONF = 0x8912
_IFREQ_SIZE = 16 + max(16, struct.calcsize("LLHBBB0L"))
"""struct ifreq: the name, then a union whose largest member is struct ifmap (24 bytes on 64-bit)."""
_IF_INET6 = Path("/proc/net/if_inet6")


def _ipv4_addresses() -> dict[ipaddress.IPv4Address, str]:
    """Every IPv4 address of the host's interfaces and the interface holding it.

    SIOCGIFCONF rather than SIOCGIFADDR per interface: the latter only gives each interface's primary
    address, and a boundary host may well listen on a secondary one.
    """
    found: dict[ipaddress.IPv4Address, str] = {}
    size = 64 * _IFREQ_SIZE
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while True:
            buf = array.array("B", bytes(size))
            pointer = buf.buffer_info()[0]
            result = fcntl.ioctl(sock.fileno(), _SIOCGIFCONF, struct.pack("iP", size, pointer))
            used = struct.unpack("iP", result)[0]
            if used < size:
                break
            size *= 2  # the kernel filled the buffer: there may be more
    data = buf.tobytes()
    for offset in range(0, used, _IFREQ_SIZE):
        # An alias label ("eth0:1") names the interface before the colon.
        name = data[offset : offset + 16].split(b"\0", 1)[0].decode().split(":", 1)[0]
        found[ipaddress.IPv4Address(data[offset + 20 : offset + 24])] = name
    return found


def _ipv6_addresses() -> dict[ipaddress.IPv6Address, str]:
    """Every IPv6 address of the host's interfaces (from /proc/net/if_inet6) and its interface."""
    found: dict[ipaddress.IPv6Address, str] = {}
    with contextlib.suppress(OSError):
        for line in _IF_INET6.read_text().splitlines():
            fields = line.split()
            if len(fields) == 6:
                found[ipaddress.IPv6Address(bytes.fromhex(fields[0]))] = fields[5]
    return found


def interface_for(address: str) -> str | None:
    """The name of the network interface that holds ``address``; None when no interface does (a name
    or an address this host does not have: binding to it fails anyway, with a clearer error)."""
    address, _, scope = address.partition("%")
    if scope:
        # An IPv6 link-local address names its interface itself (by name or by index).
        try:
            return socket.if_indextoname(int(scope)) if scope.isdigit() else scope
        except OSError:
            return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is None:
            return _ipv6_addresses().get(ip)
        ip = ip.ipv4_mapped
    return _ipv4_addresses().get(ip)


def bind_to_interface(sock: socket.socket, interface: str) -> None:
    """Receive only what arrives on ``interface``, and send only through it (SO_BINDTODEVICE).

    Needs CAP_NET_RAW before Linux 5.7; the OSError then says so rather than leaving a socket that
    takes packets from every side.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    except OSError as exc:
        raise OSError(exc.errno, f"cannot bind a socket to interface {interface!r}: {exc.strerror}") from exc


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
    """Leases even ports of an inclusive range such as ``"30000-30999"`` (500 RTP/RTCP pairs).

    With ``interface`` every leased socket is bound to that network interface (`bind_to_interface`).
    """

    def __init__(self, spec: str | tuple[int, int], interface: str | None = None) -> None:
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
        self.interface = interface
        self._first = first
        self._pairs = (high - first + 1) // 2
        self._leased: set[int] = set()
        self._cursor = 0

    def __repr__(self) -> str:
        on = f" on {self.interface}" if self.interface else ""
        return f"PortRange({self.low}-{self.high}{on}, {len(self._leased)}/{self._pairs} leased)"

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
                for _ in range(count):
                    sockets.append(self._socket(family, kind))
            except OSError:
                # Not a busy port: it would fail on every port of the range.
                for sock in sockets:
                    sock.close()
                raise
            try:
                for offset, sock in enumerate(sockets):
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

    def _socket(self, family: socket.AddressFamily, kind: socket.SocketKind) -> socket.socket:
        sock = socket.socket(family, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.interface is not None:
                # Before bind, so the port never holds a packet that came in on another interface.
                bind_to_interface(sock, self.interface)
        except OSError:
            sock.close()
            raise
        return sock

    def _free(self, port: int) -> None:
        self._leased.discard(port)

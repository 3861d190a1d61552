"""Socket plumbing shared by ingests and outputs: peer host normalisation, the bounded TCP sender,
the RTCP drain, and the guard around callers' callbacks."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable

import structlog

log = structlog.get_logger("rtp.relay")

RTCP_BATCH = 16
"""RTCP datagrams read per reader callback: RTCP comes a few per second, a flood must not starve RTP."""
_RTCP_MAX = 2048


def normalize_host(host: str | None, family: socket.AddressFamily = socket.AF_INET) -> str | None:
    """A configured host in the form the socket module reports peers in, so addresses compare as
    strings: on an IPv6 (dual-stack) socket an IPv4 peer shows up as ``::ffff:a.b.c.d``."""
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if family == socket.AF_INET6 and address.version == 4:
        return f"::ffff:{address}"
    return str(address)


def drain_rtcp(sock: socket.socket, handle: Callable[[bytes, tuple[str, int]], None]) -> None:
    """Read what is queued on a non-blocking RTCP socket (at most `RTCP_BATCH` datagrams) and pass
    each with its source to ``handle``; a failed read (an ICMP error queued by an earlier send) is
    skipped, not fatal."""
    for _ in range(RTCP_BATCH):
        try:
            data, addr = sock.recvfrom(_RTCP_MAX)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            continue
        handle(data, addr)


def run_callback(callback: Callable[..., object], *args: object) -> None:
    """Run a caller's callback; its failure is logged, never allowed to break the relay."""
    try:
        callback(*args)
    except Exception:
        log.exception("relay callback failed", callback=getattr(callback, "__qualname__", repr(callback)))


class StreamSender:
    """Non-blocking writes to a TCP socket with a bounded queue for when the peer falls behind.

    Whole frames are queued or dropped, never parts of one, so RFC 4571 framing survives a slow peer.
    """

    __slots__ = ("_fd", "_loop", "_on_error", "failed", "max_pending", "pending", "sock")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        max_pending: int,
        on_error: Callable[[OSError], None],
    ) -> None:
        self._loop = loop
        self.sock = sock
        self._fd = sock.fileno()
        self.max_pending = max_pending
        self.pending = bytearray()
        self._on_error = on_error
        self.failed = False

    def send(self, frame: bytes | bytearray | memoryview) -> bool:
        """Send or queue ``frame``; False if it was dropped (queue full, or the socket failed)."""
        if self.failed:
            return False
        pending = self.pending
        if pending:
            if len(pending) + len(frame) > self.max_pending:
                return False
            pending += frame
            return True
        try:
            sent = self.sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(exc)
            return False
        if sent < len(frame):
            pending += frame[sent:]
            self._loop.add_writer(self._fd, self._flush)
        return True

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self.pending)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(exc)
            return
        del self.pending[:sent]
        if not self.pending:
            self._loop.remove_writer(self._fd)

    def _fail(self, exc: OSError) -> None:
        self.failed = True
        self.pending.clear()
        self._loop.remove_writer(self._fd)
        # Deferred: a send can fail inside the packet loop, which must not see its output lists change.
        self._loop.call_soon(self._on_error, exc)

    def close(self) -> None:
        self._loop.remove_writer(self._fd)
        self.pending.clear()

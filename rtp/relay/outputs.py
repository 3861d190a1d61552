"""Relay outputs: one receiver of an ingest's stream each, over UDP (GSO batches) or TCP (RFC 4571).

An output only sends what its ingest hands it and watches its receiver (RTCP, the TCP connection);
it reports to the ingest through the two callbacks it is given, ``on_live`` (it can take packets)
and ``on_ended``, and to the caller through ``on_close``. An in-process output has no socket: its
``sink`` is called with each packet (`PacketSink`).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gbgw.rtp.packet import Bye, RtpError, parse_rtcp
from gbgw.rtp.ports import PortLease
from gbgw.rtp.relay.config import MediaTransport
from gbgw.rtp.relay.sockets import StreamSender, drain_rtcp, normalize_host, run_callback
from gbgw.rtp.relay.states import OutputState, StopReason

log = structlog.get_logger("rtp.relay")

_U16 = struct.Struct("!H")

_UDP_SEGMENT = 103
"""Linux UDP GSO (``UDP_SEGMENT``, 4.18+): one sendmsg carries a run of equal-size datagrams."""
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000
_GSO_UNSUPPORTED = {errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EMSGSIZE}
"""Errors meaning the kernel or the route cannot do GSO (rather than a full buffer)."""
_GSO_CMSG: dict[int, list[tuple[int, int, bytes]]] = {}


@dataclass(slots=True)
class OutputStats:
    id: int
    transport: str
    state: str
    receiver: str
    local_port: int
    ssrc: int
    packets: int
    bytes: int
    gop_packets: int
    """Packets of the cached GOP sent when the output started."""
    send_errors: int
    dropped: int
    """TCP: packets dropped because the receiver did not keep up."""
    rtcp_packets: int
    receiver_bye: str | None
    age: float


IN_PROCESS = "in-process"
"""The transport an in-process output reports in its stats (its ``transport`` is None)."""

OutputCloseCallback = Callable[["RelayOutput", StopReason], None]
PacketSink = Callable[[memoryview], None]
"""Takes one RTP packet (header rewritten with the output's SSRC and sequence number) for an in-process
consumer. It is called from inside the packet loop with a view of the receive buffer: it must copy
what it keeps, return quickly and not add or remove outputs or close the ingest."""


class RelayOutput:
    """One receiver of an ingest's stream, with its own SSRC and sequence numbering.

    ``local_port`` is the port to put in the SDP answer: UDP sends from it (its RTCP comes to the port
    above), TCP passive listens on it, TCP active connects from it.
    """

    __slots__ = (
        "_accept_timer",
        "_connect_task",
        "_created",
        "_lease",
        "_listener",
        "_loop",
        "_max_pending",
        "_on_ended",
        "_on_live",
        "_rtcp_sock",
        "_sender",
        "_sink",
        "accept_source",
        "dropped",
        "gop_sent",
        "gso",
        "host",
        "id",
        "last_rtcp",
        "on_close",
        "port",
        "receiver_bye",
        "rtcp_packets",
        "send",
        "send_errors",
        "sent",
        "sent_bytes",
        "seq_base",
        "sock",
        "ssrc",
        "state",
        "transport",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        output_id: int,
        transport: MediaTransport | None,
        host: str | None,
        port: int | None,
        ssrc: int,
        seq_base: int,
        lease: PortLease | None,
        max_pending: int,
        on_live: Callable[[RelayOutput], None],
        on_ended: Callable[[RelayOutput], None],
        on_close: OutputCloseCallback | None,
        sink: PacketSink | None = None,
        accept_source: Callable[[str], bool] | None = None,
    ) -> None:
        """``on_live`` and ``on_ended`` are the ingest's: the output can take packets, the output is
        gone. ``on_close`` is the caller's, told why when the relay (not the caller) ended it. An
        in-process output has no ``transport`` and no ``lease``, and a ``sink``. TCP passive:
        ``accept_source(ip)``, if given, decides who may connect, instead of ``host`` alone."""
        self._loop = loop
        self.id = output_id
        self.transport = transport
        self.host = host
        self.port = port
        self.ssrc = ssrc & 0xFFFFFFFF
        self.seq_base = seq_base & 0xFFFF
        self.on_close = on_close
        self._lease = lease
        self._max_pending = max_pending
        self._on_live = on_live
        self._on_ended = on_ended
        self._sink = sink
        self._created = time.monotonic()
        self.state = OutputState.WAITING
        self.sent = 0
        self.sent_bytes = 0
        self.gop_sent = 0
        self.send_errors = 0
        self.dropped = 0
        self.gso = transport is MediaTransport.UDP
        self.rtcp_packets = 0
        self.last_rtcp = 0.0
        """``time.monotonic()`` of the receiver's last RTCP packet (0: none yet), to notice a dead receiver."""
        self.receiver_bye: str | None = None
        self.sock: socket.socket | None = None
        self.send: Callable[[memoryview], int] = _not_connected
        self._sender: StreamSender | None = None
        self._listener: socket.socket | None = None
        self._rtcp_sock: socket.socket | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._accept_timer: asyncio.TimerHandle | None = None
        self.accept_source = accept_source

    def __repr__(self) -> str:
        return (
            f"<RelayOutput {self.id} {self.transport} {self.receiver} ssrc={self.ssrc} "
            f"{self.state} sent={self.sent}>"
        )

    @property
    def local_port(self) -> int:
        """0 for an in-process output."""
        return self._lease.port if self._lease is not None else 0

    @property
    def receiver(self) -> str:
        return f"{self.host}:{self.port}" if self.host is not None else ""

    @property
    def next_seq(self) -> int:
        """The sequence number the next packet will carry."""
        return (self.seq_base + self.sent) & 0xFFFF

    @property
    def stats(self) -> OutputStats:
        return OutputStats(
            self.id,
            self.transport.value if self.transport is not None else IN_PROCESS,
            self.state.value,
            self.receiver,
            self.local_port,
            self.ssrc,
            self.sent,
            self.sent_bytes,
            self.gop_sent,
            self.send_errors,
            self.dropped,
            self.rtcp_packets,
            self.receiver_bye,
            time.monotonic() - self._created,
        )

    # -- set-up ------------------------------------------------------------------------------------

    def _open(self, loop: asyncio.AbstractEventLoop, connect_timeout: float) -> None:
        if self._lease is None:
            self._on_live(self)
            return
        if self.transport is MediaTransport.UDP:
            sock, self._rtcp_sock = self._lease.sockets
            assert self.host is not None and self.port is not None
            sock.connect((self.host, self.port))
            self.sock = sock
            self.send = sock.send
            loop.add_reader(self._rtcp_sock.fileno(), self._on_rtcp_readable)
            self._on_live(self)
        elif self.transport is MediaTransport.TCP_PASSIVE:
            listener = self._lease.sockets[0]
            listener.listen(4)
            self._listener = listener
            loop.add_reader(listener.fileno(), self._on_accept)
            # A receiver that never connects must not keep the ingest (and the device's stream) alive.
            self._accept_timer = loop.call_later(connect_timeout, self._accept_expired)
        else:
            self._connect_task = loop.create_task(self._connect(loop, connect_timeout))

    async def _connect(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        assert self._lease is not None
        sock = self._lease.sockets[0]
        assert self.host is not None and self.port is not None
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (self.host, self.port)), timeout)
        except (TimeoutError, OSError) as exc:
            log.warning(
                "relay output connect failed", output=self.id, receiver=self.receiver, error=repr(exc)
            )
            self._connect_task = None
            self._end(StopReason.CONNECT_FAILED, notify=True)
            return
        self._connect_task = None
        self._stream_connected(loop, sock)

    def _on_accept(self) -> None:
        listener = self._listener
        if listener is None:
            return
        loop = self._loop
        while True:
            try:
                conn, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("relay output accept failed", output=self.id, error=str(exc))
                return
            if not self._may_connect(addr[0]):
                log.warning("relay output refused connection", output=self.id, peer=f"{addr[0]}:{addr[1]}")
                conn.close()
                continue
            loop.remove_reader(listener.fileno())
            listener.close()
            self._listener = None
            if self._accept_timer is not None:
                self._accept_timer.cancel()
                self._accept_timer = None
            self.host, self.port = normalize_host(addr[0]), addr[1]
            conn.setblocking(False)
            self._stream_connected(loop, conn)
            return

    def _may_connect(self, ip: str) -> bool:
        if self.accept_source is not None:
            return self.accept_source(ip)
        return self.host is None or ip == self.host or normalize_host(ip) == self.host

    def _accept_expired(self) -> None:
        self._accept_timer = None
        if self.state is OutputState.WAITING:
            log.warning("relay output receiver never connected", output=self.id, local_port=self.local_port)
            self._end(StopReason.CONNECT_FAILED, notify=True)

    def _stream_connected(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._sender = StreamSender(loop, sock, self._max_pending, self._on_send_error)
        loop.add_reader(sock.fileno(), self._on_stream_readable)
        self._on_live(self)

    # -- sending -----------------------------------------------------------------------------------

    def send_run(self, view: memoryview, start: int, count: int, size: int) -> None:
        """Send ``count`` packets of ``size`` bytes lying back to back at ``view[start:]``, already
        rewritten with our SSRC and sequence numbers: as one GSO datagram run when there are several,
        else, over TCP, as RFC 4571 frames in one write; in process, to the sink one by one."""
        end = start + count * size
        if self._sink is not None:
            sink = self._sink
            for pos in range(start, end, size):
                try:
                    sink(view[pos : pos + size])
                except Exception:
                    # A failing consumer must not stop the packet loop, which serves every output.
                    if not self.send_errors:
                        log.exception("relay output sink failed", output=self.id)
                    self.send_errors += 1
                    continue
                self.sent += 1
                self.sent_bytes += size
            return
        if self._sender is not None:
            frames = bytearray()
            prefix = _U16.pack(size)
            for pos in range(start, end, size):
                frames += prefix
                frames += view[pos : pos + size]
            if self._sender.send(frames):
                self.sent += count
                self.sent_bytes += end - start
            else:
                self.dropped += count
            return
        if count > 1 and self.gso:
            cmsg = _GSO_CMSG.get(size)
            if cmsg is None:
                cmsg = [(socket.SOL_UDP, _UDP_SEGMENT, struct.pack("=H", size))]
                if len(_GSO_CMSG) < 4096:
                    _GSO_CMSG[size] = cmsg
            try:
                self.sock.sendmsg([view[start:end]], cmsg)  # type: ignore[union-attr]  # live UDP
            except OSError as exc:
                if exc.errno not in _GSO_UNSUPPORTED:
                    self.send_errors += count
                    return
                self.gso = False
                log.info("UDP GSO unavailable, sending packets one by one", output=self.id, error=str(exc))
            else:
                self.sent += count
                self.sent_bytes += end - start
                return
        send = self.send
        for pos in range(start, end, size):
            try:
                send(view[pos : pos + size])
            except OSError:
                self.send_errors += 1
                continue
            self.sent += 1
            self.sent_bytes += size

    def _on_send_error(self, exc: OSError) -> None:
        log.info("relay output send failed", output=self.id, receiver=self.receiver, error=str(exc))
        self._end(StopReason.SOCKET_ERROR, notify=True)

    # -- receiving ---------------------------------------------------------------------------------

    def _on_stream_readable(self) -> None:
        """A TCP receiver may send RTCP; what matters is noticing when it goes away."""
        sock = self.sock
        if sock is None:
            return
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.info("relay output connection failed", output=self.id, error=str(exc))
            self._end(StopReason.SOCKET_ERROR, notify=True)
            return
        if not data:
            log.info("relay output receiver closed the connection", output=self.id, receiver=self.receiver)
            self._end(StopReason.RECEIVER_CLOSED, notify=True)

    def _on_rtcp_readable(self) -> None:
        if self._rtcp_sock is not None:
            drain_rtcp(self._rtcp_sock, self._on_rtcp)

    def _on_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.host is not None and normalize_host(addr[0]) != self.host:
            return
        self.rtcp_packets += 1
        self.last_rtcp = time.monotonic()
        try:
            packets = parse_rtcp(data)
        except RtpError:
            return
        for packet in packets:
            if isinstance(packet, Bye):
                self.receiver_bye = packet.reason or ""
                log.info("relay output receiver sent RTCP BYE", output=self.id, reason=packet.reason)

    # -- teardown ----------------------------------------------------------------------------------

    def _end(self, reason: StopReason, *, notify: bool) -> None:
        if self.state is OutputState.CLOSED:
            return
        self.state = OutputState.CLOSED
        loop = self._loop
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        if self._accept_timer is not None:
            self._accept_timer.cancel()
            self._accept_timer = None
        if self._sender is not None:
            self._sender.close()
        for sock in (self._listener, self.sock, self._rtcp_sock):
            if sock is not None and sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
        lease = self._lease
        if self.sock is not None and lease is not None and self.sock not in lease.sockets:
            self.sock.close()
        self.send = _not_connected
        if lease is not None:
            lease.release()
        self._on_ended(self)
        if notify and self.on_close is not None:
            run_callback(self.on_close, self, reason)


def _not_connected(data: memoryview) -> int:
    raise ConnectionError("relay output is not connected")

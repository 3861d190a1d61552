"""The media relay: one `Ingest` per device stream, any number of `RelayOutput`s fed from it.

An ingest receives RTP from a device over UDP or TCP (RFC 4571; passive = we listen, active = we
connect), keeps out whatever is not the device's stream (other sources, non-RTP bytes, a wrong SSRC
when checked, RTCP, duplicates), counts loss and reordering from the sequence numbers, and hands each
packet to its outputs. Every output has its own SSRC and its own sequence counter (``seq_base + packets
sent``): upper platforms expect continuous numbering from a relay, and an input jump (device restart,
a gap) must not look like loss downstream. Input loss shows in the ingest's stats instead. Timestamps,
marker and payload type pass through untouched.

Latency comes first: packets are forwarded as they arrive. A packet that arrives after a later one is
dropped (counted as reordered and as dropped "late"), because with continuous output numbering a
receiver could not put it back in place; an ingest created with ``reorder_capacity`` holds packets in
a `ReorderWindow` instead, trading up to ``reorder_delay`` of latency for order.

The UDP hot path does not use asyncio datagram transports (the default loop allocates a 256 KiB buffer
per datagram). Each ingest's socket is a non-blocking raw socket registered with ``loop.add_reader``;
the reader drains it in bounded batches with ``recv_into`` straight into the GOP cache (no copy),
rewrites sequence number and SSRC in place with ``struct.pack_into`` and sends the same bytes on a
connected socket per output. Packets that arrive together and have the same size (a camera sends a
frame's packets back to back, all but the last at its MTU) sit next to each other in the buffer and
go out in one ``sendmsg`` with UDP GSO: ~0.35 µs per packet instead of ~0.93 µs for one ``send`` each.
Once the device's source address is known the RTP socket is ``connect``ed to it, so the kernel drops
other senders and ``recv_into`` saves the ~0.3 µs per packet that building the source address tuple
in ``recvfrom_into`` costs; datagrams from other sources are therefore only counted until the source
is latched. Figures are in `Ingest._relay` and tests/bench/bench_relay.py.

The GOP cache is the receive buffer itself: packets are received back to back into an anonymous memory
map (pages are only committed as a GOP grows), their sizes kept in a list. A packet starting a keyframe
(its PS pack header is followed by a system header or stream map, which GB/T 28181 Annex C puts only in
front of I-frames) is moved to the start and the write position follows it; a new output is first sent
the cached packets, so its receiver starts decoding at once.

Callbacks into the caller are never made from inside the packet loop, so they may add or remove outputs
and close ingests freely. Outputs and ingests report how they ended only when the engine ended them
(timeouts, peers closing); what the caller closes itself is not reported back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import ipaddress
import mmap
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import structlog

from gbgw.rtp.framing import DeframerStats, Rfc4571Deframer
from gbgw.rtp.packet import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtpError,
    SenderReport,
    SourceDescription,
    parse_rtcp,
    serialize_rtcp,
)
from gbgw.rtp.ports import PortLease, PortRange, address_family
from gbgw.rtp.reorder import ReorderWindow

log = structlog.get_logger("rtp.relay")

_HEADER = struct.Struct("!BBHII")
_SEQ_TS_SSRC = struct.Struct("!HII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

BATCH = 256
"""Datagrams drained per reader callback: enough to amortise the event loop, few enough to be fair to
the other ingests and timers on the loop."""

_MAX_PACKET = 0xFFFF
_TCP_READ = 256 << 10
_BATCH_AREA = 256 << 10
"""Ring space a batch may fill when no GOP is being cached, before it starts over at 0."""

_UDP_SEGMENT = 103
"""Linux UDP GSO (``UDP_SEGMENT``, 4.18+): one sendmsg carries a run of equal-size datagrams."""
_GSO_MAX_SEGMENTS = 64
_GSO_MAX_BYTES = 65000
_GSO_UNSUPPORTED = {errno.EINVAL, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EMSGSIZE}
"""Errors meaning the kernel or the route cannot do GSO (rather than a full buffer)."""
_GSO_CMSG: dict[int, list[tuple[int, int, bytes]]] = {}

_PACK_START = 0x000001BA
_SYSTEM_HEADER = 0x000001BB
_STREAM_MAP = 0x000001BC

_MAX_DROPOUT = 3000
"""Sequence gaps up to this are loss; larger forward jumps restart numbering (RFC 3550 A.1)."""
_MAX_MISORDER = 100
"""Packets up to this far behind are late or duplicate; further behind also restarts numbering."""
_MISSING_KEPT = 256

_CLOCK_RATE = 90_000

_RTCP_GUESSED = 0
_RTCP_FROM_SDP = 1
_RTCP_FROM_DEVICE = 2
_RTCP_CONFIGURED = 3


class MediaTransport(StrEnum):
    """How RTP travels, seen from the relay: TCP passive = we listen, TCP active = we connect."""

    UDP = "udp"
    TCP_PASSIVE = "tcp-passive"
    TCP_ACTIVE = "tcp-active"


class StopReason(StrEnum):
    MEDIA_TIMEOUT = "media timeout"
    """Packets had been flowing and stopped."""
    NO_MEDIA = "no media after start"
    """Not a single RTP packet from the device within the first-packet timeout."""
    IDLE = "no outputs"
    """The last output left and the idle timeout passed."""
    DEVICE_CLOSED = "device closed the connection"
    RECEIVER_CLOSED = "receiver closed the connection"
    CONNECT_FAILED = "connect failed"
    SOCKET_ERROR = "socket error"
    CLOSED = "closed"
    """Closed by the caller (or with its ingest/engine)."""


class OutputState(StrEnum):
    WAITING = "waiting"
    """TCP: connecting to the receiver, or listening for it."""
    LIVE = "live"
    CLOSED = "closed"


def _normalize_host(host: str | None, family: socket.AddressFamily = socket.AF_INET) -> str | None:
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


@dataclass(slots=True)
class IngestConfig:
    """What the gateway negotiated with the device, and how strict and patient to be with it."""

    transport: MediaTransport = MediaTransport.UDP
    device_host: str | None = None
    """The only host media is accepted from; None accepts the first sender (tests, NAT oddities)."""
    device_port: int | None = None
    """UDP: the port the device sends from, if known. SDP answers give the port it receives on, which
    many devices do not send from, so None (latch the first packet's port) is the usual choice."""
    device_rtcp_port: int | None = None
    """UDP: where receiver reports go; None = the SDP port + 1 given to `Ingest.start`, else where the
    device's RTCP comes from, else the port its RTP comes from + 1."""
    ssrc: int | None = None
    """The SSRC offered in ``y=``."""
    check_ssrc: bool = False
    """Drop packets with another SSRC. Off by default: many devices ignore ``y=``, send 0 or reuse an
    old SSRC; then the first SSRC seen is latched and later changes are counted and followed."""
    media_timeout: float = 10.0
    first_packet_timeout: float = 10.0
    idle_timeout: float = 5.0
    """How long the ingest outlives its last output (0: as soon as the loop gets to it)."""
    gop_cache_bytes: int = 4 << 20
    """0 disables the cache; a GOP larger than this is not cached."""
    reorder_capacity: int = 0
    """UDP only: packets a `ReorderWindow` may hold behind a gap; 0 forwards packets as they come."""
    reorder_delay: float = 0.05
    rtcp_interval: float = 5.0
    """Seconds between receiver reports; 0 sends none (a BYE is still sent when stopping)."""
    connect_timeout: float = 5.0
    """TCP set-up: connecting to a device or receiver, and how long a passive output waits for its
    receiver to connect."""
    max_pending: int = 2 << 20
    """TCP outputs: bytes queued for a slow receiver before whole packets are dropped."""


@dataclass(slots=True)
class IngestStats:
    """A snapshot for the API and metrics. ``packets``/``bytes`` count accepted RTP (headers included)."""

    id: int
    transport: str
    local_port: int
    device: str
    ssrc: int | None
    packets: int
    bytes: int
    rtcp_packets: int
    lost: int
    """Sequence numbers never received (gaps minus packets that turned up late)."""
    reordered: int
    duplicates: int
    sequence_resets: int
    ssrc_changes: int
    keyframes: int
    gop_packets: int
    gop_bytes: int
    gop_overflows: int
    jitter_ms: float
    """RFC 3550 A.8 interarrival jitter, sampled on the first packet of each frame."""
    dropped: dict[str, int]
    age: float
    since_last_packet: float | None
    outputs: int
    device_bye: str | None
    """The reason in the device's RTCP BYE ("" without one); None if it sent none."""
    deframer: DeframerStats | None = None


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


StopCallback = Callable[["Ingest", StopReason], None]
ByeCallback = Callable[["Ingest", str], None]
OutputCloseCallback = Callable[["RelayOutput", StopReason], None]


def _call(callback: Callable[..., object], *args: object) -> None:
    """Run a caller's callback; its failure is logged, never allowed to break the relay."""
    try:
        callback(*args)
    except Exception:
        log.exception("relay callback failed", callback=getattr(callback, "__qualname__", repr(callback)))


class _StreamSender:
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


class RelayOutput:
    """One receiver of an ingest's stream, with its own SSRC and sequence numbering.

    ``local_port`` is the port to put in the SDP answer: UDP sends from it (its RTCP comes to the port
    above), TCP passive listens on it, TCP active connects from it.
    """

    __slots__ = (
        "_accept_timer",
        "_connect_task",
        "_created",
        "_ingest",
        "_lease",
        "_listener",
        "_rtcp_sock",
        "_sender",
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
        ingest: Ingest,
        output_id: int,
        transport: MediaTransport,
        host: str | None,
        port: int | None,
        ssrc: int,
        seq_base: int,
        lease: PortLease,
        on_close: OutputCloseCallback | None,
    ) -> None:
        self._ingest = ingest
        self.id = output_id
        self.transport = transport
        self.host = host
        self.port = port
        self.ssrc = ssrc & 0xFFFFFFFF
        self.seq_base = seq_base & 0xFFFF
        self.on_close = on_close
        self._lease = lease
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
        self._sender: _StreamSender | None = None
        self._listener: socket.socket | None = None
        self._rtcp_sock: socket.socket | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._accept_timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return (
            f"<RelayOutput {self.id} {self.transport} {self.receiver} ssrc={self.ssrc} "
            f"{self.state} sent={self.sent}>"
        )

    @property
    def local_port(self) -> int:
        return self._lease.port

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
            self.transport.value,
            self.state.value,
            self.receiver,
            self._lease.port,
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
        if self.transport is MediaTransport.UDP:
            sock, self._rtcp_sock = self._lease.sockets
            assert self.host is not None and self.port is not None
            sock.connect((self.host, self.port))
            self.sock = sock
            self.send = sock.send
            loop.add_reader(self._rtcp_sock.fileno(), self._on_rtcp_readable)
            self._ingest._output_live(self)
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
        sock = self._lease.sockets[0]
        assert self.host is not None and self.port is not None
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (self.host, self.port)), timeout)
        except (TimeoutError, OSError) as exc:
            log.warning("relay output connect failed", output=self.id, receiver=self.receiver, error=repr(exc))
            self._connect_task = None
            self._end(StopReason.CONNECT_FAILED, notify=True)
            return
        self._connect_task = None
        self._stream_connected(loop, sock)

    def _on_accept(self) -> None:
        listener = self._listener
        if listener is None:
            return
        loop = self._ingest._loop
        while True:
            try:
                conn, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("relay output accept failed", output=self.id, error=str(exc))
                return
            if self.host is not None and _normalize_host(addr[0]) != self.host:
                log.warning("relay output refused connection", output=self.id, peer=f"{addr[0]}:{addr[1]}")
                conn.close()
                continue
            loop.remove_reader(listener.fileno())
            listener.close()
            self._listener = None
            if self._accept_timer is not None:
                self._accept_timer.cancel()
                self._accept_timer = None
            self.host, self.port = _normalize_host(addr[0]), addr[1]
            conn.setblocking(False)
            self._stream_connected(loop, conn)
            return

    def _accept_expired(self) -> None:
        self._accept_timer = None
        if self.state is OutputState.WAITING:
            log.warning("relay output receiver never connected", output=self.id, local_port=self.local_port)
            self._end(StopReason.CONNECT_FAILED, notify=True)

    def _stream_connected(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._sender = _StreamSender(loop, sock, self._ingest.config.max_pending, self._on_send_error)
        loop.add_reader(sock.fileno(), self._on_stream_readable)
        self._ingest._output_live(self)

    # -- sending -----------------------------------------------------------------------------------

    def send_run(self, view: memoryview, start: int, count: int, size: int) -> None:
        """Send ``count`` packets of ``size`` bytes lying back to back at ``view[start:]``, already
        rewritten with our SSRC and sequence numbers: as one GSO datagram run when there are several,
        else, over TCP, as RFC 4571 frames in one write."""
        end = start + count * size
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
        sock = self._rtcp_sock
        if sock is None:
            return
        for _ in range(16):
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if self.host is not None and _normalize_host(addr[0]) != self.host:
                continue
            self.rtcp_packets += 1
            self.last_rtcp = time.monotonic()
            try:
                packets = parse_rtcp(data)
            except RtpError:
                continue
            for packet in packets:
                if isinstance(packet, Bye):
                    self.receiver_bye = packet.reason or ""
                    log.info("relay output receiver sent RTCP BYE", output=self.id, reason=packet.reason)

    # -- teardown ----------------------------------------------------------------------------------

    def _end(self, reason: StopReason, *, notify: bool) -> None:
        if self.state is OutputState.CLOSED:
            return
        self.state = OutputState.CLOSED
        loop = self._ingest._loop
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
        if self.sock is not None and self.sock not in self._lease.sockets:
            self.sock.close()
        self.send = _not_connected
        self._lease.release()
        self._ingest._output_ended(self)
        if notify and self.on_close is not None:
            _call(self.on_close, self, reason)


def _not_connected(data: memoryview) -> int:
    raise ConnectionError("relay output is not connected")


class Ingest:
    """One device stream: bound to a port pair from the engine's range until it stops.

    Create with `RelayEngine.open_ingest`, put ``local_port`` in the INVITE's SDP, call `start` when
    the device has answered, attach outputs with `add_output`.
    """

    def __init__(
        self,
        engine: RelayEngine,
        ingest_id: int,
        config: IngestConfig,
        lease: PortLease,
        on_stop: StopCallback | None,
        on_device_bye: ByeCallback | None,
    ) -> None:
        self._engine = engine
        self._loop = engine.loop
        self.id = ingest_id
        self.config = config
        self._lease = lease
        self.on_stop = on_stop
        self.on_device_bye = on_device_bye
        self.closed = False
        self.stop_reason: StopReason | None = None
        self.stop_detail = ""

        self._family = address_family(engine.bind_host)
        self._device_host = _normalize_host(config.device_host, self._family)
        self._source: tuple[str, int] | None = None
        self._fast = False
        """UDP: the socket is connected to the device and drained of what was queued before, so the
        reader may use the address-free ``recv_into``."""
        self._rtcp_dest: tuple[str, int] | None = None
        self._rtcp_rank = -1
        """How sure we are of ``_rtcp_dest``, see `_set_rtcp_dest`."""
        self._rtp_sock: socket.socket | None = None
        self._rtcp_sock: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._conn_sender: _StreamSender | None = None
        self._deframer: Rfc4571Deframer | None = None
        self._recv_into: Callable[[memoryview], int] | None = None

        cache = max(0, config.gop_cache_bytes)
        self._gop_enabled = cache > 0
        self._gop_limit = cache
        self._area_limit = max(cache, _BATCH_AREA)
        # An anonymous map is committed page by page as it is written, unlike bytearray(n), which
        # zero-fills (and so commits) its whole size up front.
        self._ring = mmap.mmap(-1, self._area_limit + _MAX_PACKET + 1)
        self._view = memoryview(self._ring)
        self._gop_end = 0
        self._gop_sizes: list[int] = []
        self._caching = False
        self._scratch = bytearray(_TCP_READ if config.transport is not MediaTransport.UDP else _MAX_PACKET + 1)
        self._scratch_view = memoryview(self._scratch)

        # Sequence and source tracking; kept as attributes the packet loop loads into locals.
        self._ssrc: int | None = config.ssrc if config.check_ssrc else None
        self._expect = -1
        self._cycles = 0
        self._base_ext = 0
        self._lost = 0
        self._source_lost_base = 0
        self._missing: dict[int, None] = {}
        self._reordered = 0
        self._duplicates = 0
        self._sequence_resets = 0
        self._ssrc_changes = 0
        self._last_ts = -1
        self._prev_frame: tuple[float, int] | None = None
        self._jitter = 0.0
        self._keyframes = 0
        self._gop_overflows = 0
        self._packets = 0
        self._bytes = 0
        self._rtcp_packets = 0
        self._dropped: dict[str, int] = {}
        self._device_bye: str | None = None
        self._last_sr: tuple[int, float] | None = None
        """Middle 32 bits of the device's last SR NTP timestamp and when it arrived, for LSR/DLSR."""
        self._report_prev = (0, 0)
        """(expected, lost) at the previous receiver report, for its fraction lost."""
        self._own_ssrc = random.getrandbits(32)
        self._cname = f"relay-{ingest_id}@{engine.bind_host}"

        self._window: ReorderWindow[bytes] | None = None
        self._window_timer: asyncio.TimerHandle | None = None
        if config.reorder_capacity > 0 and config.transport is MediaTransport.UDP:
            self._window = ReorderWindow(
                config.reorder_capacity, config.reorder_delay, max(_MAX_DROPOUT, config.reorder_capacity)
            )

        self.outputs: list[RelayOutput] = []
        self._udp_live: list[RelayOutput] = []
        self._stream_live: list[RelayOutput] = []
        self._next_output = 1

        now = time.monotonic()
        self._opened = now
        self._first_deadline = now + config.first_packet_timeout
        self._last_packet_at: float | None = None
        self._watchdog_timer: asyncio.TimerHandle | None = None
        self._report_timer: asyncio.TimerHandle | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._connect_task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Ingest {self.id} {self.config.transport} port={self.local_port} device={self.device}>"

    @property
    def local_port(self) -> int:
        return self._lease.port

    @property
    def device(self) -> str:
        if self._source is not None:
            return f"{self._source[0]}:{self._source[1]}"
        return self._device_host or ""

    @property
    def ssrc(self) -> int | None:
        """The SSRC being relayed (the offered one when checked, else the latched one)."""
        return self._ssrc

    # -- lifecycle ---------------------------------------------------------------------------------

    def _open(self) -> None:
        loop = self._loop
        config = self.config
        if config.transport is MediaTransport.UDP:
            self._rtp_sock, self._rtcp_sock = self._lease.sockets
            loop.add_reader(self._rtp_sock.fileno(), self._on_rtp_readable)
            loop.add_reader(self._rtcp_sock.fileno(), self._on_rtcp_readable)
            if self._device_host is not None and config.device_port is not None:
                self._latch((self._device_host, config.device_port))
            if self._device_host is not None and config.device_rtcp_port is not None:
                self._set_rtcp_dest((self._device_host, config.device_rtcp_port), _RTCP_CONFIGURED)
        else:
            self._deframer = Rfc4571Deframer()
            if config.transport is MediaTransport.TCP_PASSIVE:
                self._listener = self._lease.sockets[0]
                self._listener.listen(4)
                loop.add_reader(self._listener.fileno(), self._on_accept)
        self._arm_watchdog()
        if config.rtcp_interval > 0:
            self._report_timer = loop.call_later(config.rtcp_interval, self._send_report)

    async def start(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        rtcp_port: int | None = None,
    ) -> None:
        """The device answered: restart the first-packet timeout from now and learn where it is.

        ``host`` replaces the configured device host; ``port`` is the media port of the device's SDP
        answer. TCP active: connect to it (raises OSError/TimeoutError if that fails). UDP: receiver
        reports go to ``rtcp_port``, else ``port + 1``; the port RTP comes from is still latched from
        the first packet, because many devices do not send from the port they announce.
        """
        if self.closed:
            raise RuntimeError("ingest is closed")
        config = self.config
        if host:
            self._device_host = _normalize_host(host, self._family)
        self._first_deadline = time.monotonic() + config.first_packet_timeout
        if config.transport is MediaTransport.UDP:
            if self._device_host is not None:
                if rtcp_port:
                    self._set_rtcp_dest((self._device_host, rtcp_port), _RTCP_CONFIGURED)
                elif port:
                    self._set_rtcp_dest((self._device_host, port + 1), _RTCP_FROM_SDP)
        elif config.transport is MediaTransport.TCP_ACTIVE:
            if self._device_host is None or not port:
                raise ValueError("TCP active ingest needs the device's host and port to connect to")
            await self._connect_device(self._device_host, port)

    def close(self) -> None:
        """Stop relaying: RTCP BYE to the device, outputs closed, ports released. No callback."""
        self._shutdown(StopReason.CLOSED, "closed by the caller")

    def _stop(self, reason: StopReason, detail: str) -> None:
        """The engine ends the stream: the caller hears of it through ``on_stop``."""
        if self.closed:
            return
        log.info(
            "relay ingest stopped", ingest=self.id, reason=reason.value, detail=detail, device=self.device
        )
        self._shutdown(reason, detail)
        if self.on_stop is not None:
            _call(self.on_stop, self, reason)

    def _shutdown(self, reason: StopReason, detail: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop_reason = reason
        self.stop_detail = detail
        loop = self._loop
        for timer in (self._watchdog_timer, self._report_timer, self._idle_timer, self._window_timer):
            if timer is not None:
                timer.cancel()
        if self._connect_task is not None:
            self._connect_task.cancel()
        with contextlib.suppress(RtpError):
            self._send_rtcp(self._build_report(bye=reason.value))
        notify = reason is not StopReason.CLOSED
        for output in list(self.outputs):
            output._end(reason, notify=notify)
        for sock in (self._rtp_sock, self._rtcp_sock, self._listener, self._conn):
            if sock is not None and sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
        if self._conn_sender is not None:
            self._conn_sender.close()
        if self._conn is not None:
            self._conn.close()
        self._lease.release()
        self._engine._forget(self)

    # -- outputs -----------------------------------------------------------------------------------

    def add_output(
        self,
        transport: MediaTransport,
        host: str | None = None,
        port: int | None = None,
        *,
        ssrc: int,
        seq_base: int | None = None,
        on_close: OutputCloseCallback | None = None,
        bind: tuple[str, PortRange] | None = None,
    ) -> RelayOutput:
        """Relay to a receiver with its own SSRC; numbering starts at ``seq_base`` (random if None).

        ``bind`` (address, port range) puts the output's sockets on another interface than the
        engine's: a gateway between two networks sends toward each upper from that side's address.

        UDP and TCP active need the receiver's ``host:port``. TCP passive listens on the output's
        ``local_port`` and starts when the receiver connects (ending as ``CONNECT_FAILED`` if none does
        within ``connect_timeout``); ``host``, if given, is the only host accepted. Each output starts with the cached GOP, so its receiver starts on a keyframe.
        """
        if self.closed:
            raise RuntimeError("ingest is closed")
        if transport is not MediaTransport.TCP_PASSIVE and (host is None or port is None):
            raise ValueError(f"a {transport} output needs the receiver's host and port")
        engine = self._engine
        bind_host, ports = bind if bind is not None else (engine.bind_host, engine.ports)
        lease = ports.lease_udp(bind_host) if transport is MediaTransport.UDP else ports.lease_tcp(bind_host)
        if seq_base is None:
            seq_base = random.getrandbits(16)
        output = RelayOutput(
            self,
            self._next_output,
            transport,
            _normalize_host(host, address_family(bind_host)),
            port,
            ssrc,
            seq_base,
            lease,
            on_close,
        )
        self._next_output += 1
        self.outputs.append(output)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        try:
            output._open(self._loop, self.config.connect_timeout)
        except OSError:
            output._end(StopReason.SOCKET_ERROR, notify=False)
            raise
        log.info(
            "relay output added",
            ingest=self.id,
            output=output.id,
            transport=transport.value,
            receiver=output.receiver,
            local_port=output.local_port,
            ssrc=output.ssrc,
        )
        return output

    def remove_output(self, output: RelayOutput) -> None:
        """Stop relaying to ``output`` (no callback); the last one leaving starts the idle timer."""
        output._end(StopReason.CLOSED, notify=False)

    def _output_live(self, output: RelayOutput) -> None:
        """The output can take packets: send it the cached GOP, then put it in the live path."""
        if self.closed or output.state is not OutputState.WAITING:
            return
        output.state = OutputState.LIVE
        self._replay_gop(output)
        if output.transport is MediaTransport.UDP:
            self._udp_live.append(output)
        else:
            self._stream_live.append(output)

    def _output_ended(self, output: RelayOutput) -> None:
        for group in (self.outputs, self._udp_live, self._stream_live):
            if output in group:
                group.remove(output)
        if not self.outputs and not self.closed:
            self._idle_timer = self._loop.call_later(max(0.0, self.config.idle_timeout), self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle_timer = None
        if not self.outputs:
            self._stop(StopReason.IDLE, f"no outputs for {self.config.idle_timeout:g} s")

    def _replay_gop(self, output: RelayOutput) -> None:
        if not self._caching:
            return
        sizes = self._gop_sizes
        sent_before = output.sent
        pos = index = 0
        while index < len(sizes):
            size = sizes[index]
            run = 1
            most = min(_GSO_MAX_SEGMENTS, _GSO_MAX_BYTES // size)
            while index + run < len(sizes) and sizes[index + run] == size and run < most:
                run += 1
            self._send_run_to(output, pos, run, size)
            pos += run * size
            index += run
        output.gop_sent = output.sent - sent_before

    def _send_run_to(self, output: RelayOutput, start: int, count: int, size: int) -> None:
        """Rewrite a run of packets for ``output`` (its SSRC, its next sequence numbers) and send it."""
        ring = self._ring
        seq = output.seq_base + output.sent
        ssrc = output.ssrc
        seq16, u32 = _U16.pack_into, _U32.pack_into
        for pos in range(start, start + count * size, size):
            seq16(ring, pos + 2, seq & 0xFFFF)
            u32(ring, pos + 8, ssrc)
            seq += 1
        output.send_run(self._view, start, count, size)

    def _flush(self, start: int, count: int, size: int) -> None:
        """Send a run of received packets to every live output. The packet loop already rewrote them
        for the first UDP output; the others get theirs rewritten in turn, after the previous send."""
        view = self._view
        first = True
        for output in self._udp_live:
            if first:
                output.send_run(view, start, count, size)
                first = False
            else:
                self._send_run_to(output, start, count, size)
        for output in self._stream_live:
            self._send_run_to(output, start, count, size)

    # -- UDP receive -------------------------------------------------------------------------------

    def _on_rtp_readable(self) -> None:
        if self._fast and self._window is None:
            self._relay(None)
            return
        packets = self._read_datagrams()
        if self._window is None:
            if packets:
                self._relay(packets)
        else:
            self._reorder(packets)

    def _read_datagrams(self) -> list[bytes]:
        """Datagrams from the device, copied out; checks the source until the socket is connected."""
        sock = self._rtp_sock
        assert sock is not None
        buf, view = self._scratch, self._scratch_view
        out: list[bytes] = []
        for _ in range(BATCH):
            try:
                if self._fast:
                    size = sock.recv_into(buf)
                else:
                    size, addr = sock.recvfrom_into(buf)
                    if not self._source_ok(addr, buf, size):
                        continue
            except (BlockingIOError, InterruptedError):
                if self._recv_into is not None:
                    # Everything queued before connect() has been checked: the kernel filters now.
                    self._fast = True
                break
            except OSError:
                self._drop("socket error")
                continue
            out.append(bytes(view[:size]))
        return out

    def _source_ok(self, addr: tuple[str, int], buf: bytearray, size: int) -> bool:
        source = self._source
        if source is not None:
            if addr[0] == source[0] and addr[1] == source[1]:
                return True
            self._drop("foreign source")
            return False
        host = self._device_host
        if host is not None and addr[0] != host:
            self._drop("foreign source")
            return False
        # Only an RTP packet teaches us the device's port: not stray bytes from some other socket.
        if size >= 12 and buf[0] >> 6 == 2 and not 192 <= buf[1] <= 223:
            self._latch((addr[0], addr[1]))
        return True

    def _latch(self, source: tuple[str, int]) -> None:
        """Accept RTP only from ``source`` from now on; the kernel enforces it after connect()."""
        assert self._rtp_sock is not None
        self._source = source
        try:
            self._rtp_sock.connect(source)
        except OSError as exc:
            log.warning("relay ingest cannot connect to its device", ingest=self.id, error=str(exc))
            return
        self._recv_into = self._rtp_sock.recv_into
        self._set_rtcp_dest((source[0], source[1] + 1), _RTCP_GUESSED)
        log.info("relay ingest latched device source", ingest=self.id, source=f"{source[0]}:{source[1]}")

    def _reorder(self, packets: list[bytes]) -> None:
        window = self._window
        assert window is not None
        now = self._loop.time()
        released: list[bytes] = []
        before = window.stats.late, window.stats.duplicates
        strict = self._ssrc if self.config.check_ssrc else None
        for data in packets:
            # Only RTP of the relayed source goes into the window; the packet loop drops or handles
            # the rest.
            if len(data) < 12 or data[0] >> 6 != 2 or 192 <= data[1] <= 223:
                released.append(data)
                continue
            if strict is not None and _U32.unpack_from(data, 8)[0] != strict:
                self._drop("wrong ssrc")
                continue
            released += window.push(data[2] << 8 | data[3], data, now)
        late, duplicates = window.stats.late - before[0], window.stats.duplicates - before[1]
        if late:
            self._drop("late", late)
        if duplicates:
            self._drop("duplicate", duplicates)
        if released:
            self._relay(released)
        self._arm_window()

    def _arm_window(self) -> None:
        window = self._window
        if window is None or self.closed:
            return
        deadline = window.deadline()
        if self._window_timer is not None:
            self._window_timer.cancel()
            self._window_timer = None
        if deadline is not None:
            self._window_timer = self._loop.call_at(deadline, self._poll_window)

    def _poll_window(self) -> None:
        self._window_timer = None
        if self._window is None or self.closed:
            return
        released = self._window.poll(self._loop.time())
        if released:
            self._relay(released)
        self._arm_window()

    # -- the packet loop ---------------------------------------------------------------------------

    def _relay(self, packets: list[bytes] | None) -> None:
        """Check, count, cache and forward packets: from the connected UDP socket when ``packets`` is
        None (the hot path), else the given ones (TCP, the reorder window, before the source latch).

        Per packet: one ``recv_into`` at the write position, one header unpack, int compares, one
        ``pack_into`` for the first output; runs of equal-size packets go out with one call per output
        (`_flush`). The rarer cases (first packet of a frame, sequence gaps, SSRC changes, RTCP,
        garbage) are method calls.

        tests/bench/bench_relay.py (1400-byte packets, one UDP output, CPython 3.11 + uvloop, a 2-vCPU
        Xeon VM): 246,000 packets/s reached the sink, limited by the sender (the relay's core was 28%
        idle); 2.6-2.9 µs of process CPU per packet, 3.4 µs with the softirq its sends cause on its core,
        i.e. ~300,000 packets/s on a free core. Without GSO this loop costs 3.7-4.4 µs; a bare
        recv_into/pack_into/send loop with no checks at all 3.5-3.8 µs (5.3 µs with softirq). Added
        latency at 50,000 packets/s: p50 52-82 µs, p99 150-420 µs, as for the bare loop.
        """
        ring = self._ring
        view = self._view
        recv_into = self._recv_into
        unpack = _HEADER.unpack_from
        rewrite = _SEQ_TS_SSRC.pack_into
        flush = self._flush
        udp_outputs = self._udp_live
        first = udp_outputs[0] if udp_outputs else None
        first_ssrc = first.ssrc if first is not None else 0
        first_seq = 0
        sizes = self._gop_sizes
        caching = self._caching
        pos = self._gop_end if caching else 0
        limit = self._gop_limit if caching else self._area_limit
        expect = self._expect
        want_ssrc = self._ssrc
        last_ts = self._last_ts
        run_start = run_count = run_max = 0
        run_size = -1
        count = 0
        volume = 0
        budget = BATCH if packets is None else len(packets)
        for index in range(budget):
            if packets is None:
                try:
                    size = recv_into(view[pos:])  # type: ignore[misc]  # set whenever packets is None
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    self._drop("socket error")
                    continue
            else:
                data = packets[index]
                size = len(data)
                view[pos : pos + size] = data
            b0, b1, seq, ts, ssrc = unpack(ring, pos)
            if size < 12 or b0 & 0xC0 != 0x80 or 191 < b1 < 224:
                self._not_media(pos, size)
                continue
            if ssrc != want_ssrc:
                if not self._ssrc_mismatch(ssrc):
                    continue
                want_ssrc = ssrc
                expect = -1
            if seq == expect:
                expect = seq + 1
                if expect == 0x10000:
                    expect = 0
                    self._cycles += 1
            else:
                accepted, expect = self._resequence(seq, expect)
                if not accepted:
                    continue
            count += 1
            volume += size
            if ts != last_ts:
                last_ts = ts
                if self._frame_start(pos, size, ts):
                    # A keyframe: it becomes the first packet of a new GOP at the start of the ring.
                    if run_count:
                        flush(run_start, run_count, run_size)
                        run_count = 0
                    if pos:
                        view[:size] = bytes(view[pos : pos + size])
                        pos = 0
                    sizes.clear()
                    caching = True
                    limit = self._gop_limit
            if run_count == 0 or size != run_size or run_count == run_max:
                if run_count:
                    flush(run_start, run_count, run_size)
                run_start = pos
                run_count = 0
                run_size = size
                run_max = min(_GSO_MAX_SEGMENTS, _GSO_MAX_BYTES // size)
                if first is not None:
                    first_seq = first.seq_base + first.sent
            if first is not None:
                rewrite(ring, pos + 2, (first_seq + run_count) & 0xFFFF, ts, first_ssrc)
            run_count += 1
            if caching:
                sizes.append(size)
            pos += size
            if pos > limit:
                flush(run_start, run_count, run_size)
                run_count = 0
                if caching:
                    # The GOP outgrew the cache: forget it until the next keyframe.
                    self._gop_overflows += 1
                    caching = False
                    sizes.clear()
                    limit = self._area_limit
                pos = 0
        if run_count:
            flush(run_start, run_count, run_size)
        self._gop_end = pos if caching else 0
        self._caching = caching
        self._expect = expect
        self._ssrc = want_ssrc
        self._last_ts = last_ts
        if count:
            self._packets += count
            self._bytes += volume
            self._last_packet_at = time.monotonic()

    def _drop(self, reason: str, count: int = 1) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + count

    def _not_media(self, p: int, size: int) -> None:
        """RTCP multiplexed on the RTP port or connection (RFC 5761), or bytes that are not RTP."""
        ring = self._ring
        if size >= 8 and ring[p] >> 6 == 2 and 192 <= ring[p + 1] <= 223:
            self._on_rtcp(self._view[p : p + size])
        else:
            self._drop("not rtp")

    def _ssrc_mismatch(self, ssrc: int) -> bool:
        """A packet whose SSRC is not the one relayed: latch it, follow the change, or drop it."""
        current = self._ssrc
        if current is None:
            self._ssrc = ssrc
            if self.config.ssrc is not None and ssrc != self.config.ssrc:
                log.info(
                    "device ignores the offered SSRC", ingest=self.id, offered=self.config.ssrc, sent=ssrc
                )
            self._restart_source()
            return True
        if self.config.check_ssrc:
            self._drop("wrong ssrc")
            return False
        self._ssrc_changes += 1
        log.info("device changed SSRC", ingest=self.id, old=current, new=ssrc)
        self._ssrc = ssrc
        self._restart_source()
        return True

    def _restart_source(self) -> None:
        """Sequence numbering of a new source starts afresh (its first packet sets the base)."""
        self._missing.clear()
        self._prev_frame = None
        self._last_sr = None

    def _resequence(self, seq: int, expect: int) -> tuple[bool, int]:
        """A packet that is not the expected next one: count loss, reordering, duplicates, restarts.

        Returns whether to forward it and the next expected sequence number.
        """
        if expect < 0:
            self._cycles = 0
            self._base_ext = seq
            self._source_lost_base = self._lost
            self._report_prev = (0, 0)
            return True, (seq + 1) & 0xFFFF
        delta = (seq - expect) & 0xFFFF
        if delta < _MAX_DROPOUT:
            self._lost += delta
            if delta <= _MISSING_KEPT:
                missing = self._missing
                for lost_seq in range(expect, expect + delta):
                    missing[lost_seq & 0xFFFF] = None
                if len(missing) > _MISSING_KEPT:
                    for old in list(missing)[: len(missing) - _MISSING_KEPT]:
                        del missing[old]
            following = (seq + 1) & 0xFFFF
            if following < expect:
                self._cycles += 1
            return True, following
        if delta >= 0x10000 - _MAX_MISORDER:
            if seq in self._missing:
                del self._missing[seq]
                self._lost -= 1
                self._reordered += 1
                self._drop("late")
            else:
                self._duplicates += 1
                self._drop("duplicate")
            return False, expect
        # The device restarted its numbering (or reused the SSRC for a new stream): follow it.
        self._sequence_resets += 1
        log.info("device sequence number jumped", ingest=self.id, expected=expect, got=seq)
        return self._resequence(seq, -1)

    def _frame_start(self, p: int, size: int, ts: int) -> bool:
        """First packet of a frame (new timestamp): sample jitter; True if it starts a keyframe and
        the GOP cache is on."""
        now = time.monotonic()
        prev = self._prev_frame
        self._prev_frame = (now, ts)
        if prev is not None:
            elapsed = ((ts - prev[1] + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            transit_change = abs((now - prev[0]) * _CLOCK_RATE - elapsed)
            if transit_change < 10 * _CLOCK_RATE:
                self._jitter += (transit_change - self._jitter) / 16
        ring = self._ring
        start = p + 12
        b0 = ring[p]
        if b0 & 0x1F:
            start += 4 * (b0 & 0x0F)
            if b0 & 0x10:
                if start + 4 > p + size:
                    return False
                start += 4 + 4 * _U16.unpack_from(ring, start + 2)[0]
        end = p + size
        if start + 18 > end or _U32.unpack_from(ring, start)[0] != _PACK_START:
            return False
        marker = ring[start + 4]
        if marker >> 6 == 1:
            header = 14 + (ring[start + 13] & 0x07)
        elif marker >> 4 == 2:
            header = 12  # MPEG-1 pack header
        else:
            return False
        if start + header + 4 > end or _U32.unpack_from(ring, start + header)[0] not in (
            _SYSTEM_HEADER,
            _STREAM_MAP,
        ):
            return False
        self._keyframes += 1
        return self._gop_enabled

    # -- TCP receive -------------------------------------------------------------------------------

    def _on_accept(self) -> None:
        listener = self._listener
        if listener is None:
            return
        while True:
            try:
                conn, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("relay ingest accept failed", ingest=self.id, error=str(exc))
                return
            if self._device_host is not None and _normalize_host(addr[0]) != self._device_host:
                self._drop("foreign connection")
                log.warning("relay ingest refused connection", ingest=self.id, peer=f"{addr[0]}:{addr[1]}")
                conn.close()
                continue
            self._loop.remove_reader(listener.fileno())
            listener.close()
            self._listener = None
            conn.setblocking(False)
            self._adopt_connection(conn, (_normalize_host(addr[0]) or addr[0], addr[1]))
            return

    async def _connect_device(self, host: str, port: int) -> None:
        sock = self._lease.sockets[0]
        task = self._loop.create_task(self._loop.sock_connect(sock, (host, port)))
        self._connect_task = task
        try:
            await asyncio.wait_for(task, self.config.connect_timeout)
        except asyncio.CancelledError:
            if self.closed:
                raise ConnectionError("ingest closed while connecting to the device") from None
            raise
        finally:
            self._connect_task = None
        if self.closed:
            raise ConnectionError("ingest closed while connecting to the device")
        self._adopt_connection(sock, (host, port))

    def _adopt_connection(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        self._conn = conn
        self._source = peer
        self._conn_sender = _StreamSender(self._loop, conn, 64 << 10, self._on_conn_error)
        self._loop.add_reader(conn.fileno(), self._on_tcp_readable)
        log.info("relay ingest connected", ingest=self.id, device=f"{peer[0]}:{peer[1]}")

    def _on_tcp_readable(self) -> None:
        conn, deframer = self._conn, self._deframer
        if conn is None or deframer is None:
            return
        try:
            size = conn.recv_into(self._scratch)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._stop(StopReason.SOCKET_ERROR, f"TCP receive failed: {exc}")
            return
        if size == 0:
            self._stop(StopReason.DEVICE_CLOSED, "the device closed the TCP connection")
            return
        packets = deframer.feed(self._scratch_view[:size])
        if packets:
            self._relay(packets)

    def _on_conn_error(self, exc: OSError) -> None:
        self._stop(StopReason.SOCKET_ERROR, f"TCP send failed: {exc}")

    # -- RTCP --------------------------------------------------------------------------------------

    def _on_rtcp_readable(self) -> None:
        sock = self._rtcp_sock
        if sock is None:
            return
        for _ in range(16):
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if self._device_host is not None and addr[0] != self._device_host:
                self._drop("foreign rtcp")
                continue
            self._set_rtcp_dest((addr[0], addr[1]), _RTCP_FROM_DEVICE)
            self._on_rtcp(data)

    def _set_rtcp_dest(self, dest: tuple[str, int], rank: int) -> None:
        """Where receiver reports go, from the surest source known: configured, else where the device's
        own RTCP comes from (right behind NAT), else its SDP port + 1, else its RTP source port + 1."""
        if rank >= self._rtcp_rank:
            self._rtcp_dest = dest
            self._rtcp_rank = rank

    def _on_rtcp(self, data: bytes | memoryview) -> None:
        self._rtcp_packets += 1
        try:
            packets = parse_rtcp(bytes(data))
        except RtpError as exc:
            self._drop("bad rtcp")
            log.debug("bad RTCP from device", ingest=self.id, error=str(exc))
            return
        for packet in packets:
            if isinstance(packet, SenderReport):
                self._last_sr = ((packet.ntp_timestamp >> 16) & 0xFFFFFFFF, time.monotonic())
            elif isinstance(packet, Bye):
                reason = packet.reason or ""
                self._device_bye = reason
                log.info("device sent RTCP BYE", ingest=self.id, reason=reason, device=self.device)
                if self.on_device_bye is not None:
                    # Deferred: this runs inside the packet loop, which must not see outputs change.
                    self._loop.call_soon(_call, self.on_device_bye, self, reason)

    def _report_block(self) -> ReportBlock | None:
        """RFC 3550 6.4.1 reception report for the device's source, None before its first packet."""
        if self._ssrc is None or self._expect < 0:
            return None
        highest = (self._cycles << 16) + ((self._expect - 1) & 0xFFFF)
        if self._expect == 0:
            highest -= 0x10000
        expected = highest - self._base_ext + 1
        lost = self._lost - self._source_lost_base
        prev_expected, prev_lost = self._report_prev
        self._report_prev = (expected, lost)
        interval = expected - prev_expected
        fraction = ((lost - prev_lost) << 8) // interval if interval > 0 and lost > prev_lost else 0
        last_sr, delay = 0, 0
        if self._last_sr is not None:
            last_sr = self._last_sr[0]
            delay = int((time.monotonic() - self._last_sr[1]) * 65536)
        return ReportBlock(
            self._ssrc, min(fraction, 255), lost, highest & 0xFFFFFFFF, int(self._jitter), last_sr, delay
        )

    def _build_report(self, bye: str | None = None) -> bytes:
        block = self._report_block()
        parts: list[ReceiverReport | SourceDescription | Bye] = [
            ReceiverReport(self._own_ssrc, [block] if block is not None else []),
            SourceDescription.with_cname(self._own_ssrc, self._cname),
        ]
        if bye is not None:
            parts.append(Bye([self._own_ssrc], bye[:255]))
        return serialize_rtcp(parts)

    def _send_rtcp(self, data: bytes) -> None:
        if self._conn_sender is not None:
            self._conn_sender.send(_U16.pack(len(data)) + data)
            return
        if self._rtcp_sock is not None and self._rtcp_dest is not None:
            with contextlib.suppress(OSError):
                self._rtcp_sock.sendto(data, self._rtcp_dest)

    def _send_report(self) -> None:
        self._report_timer = self._loop.call_later(self.config.rtcp_interval, self._send_report)
        if self._ssrc is not None:
            self._send_rtcp(self._build_report())

    # -- timeouts ----------------------------------------------------------------------------------

    def _arm_watchdog(self) -> None:
        config = self.config
        interval = min(1.0, max(0.02, min(config.media_timeout, config.first_packet_timeout) / 4))
        self._watchdog_timer = self._loop.call_later(interval, self._watchdog)

    def _watchdog(self) -> None:
        """Checks timeouts a few times per timeout period instead of re-arming a timer per packet."""
        self._watchdog_timer = None
        now = time.monotonic()
        config = self.config
        if self._last_packet_at is None:
            if now >= self._first_deadline:
                self._stop(
                    StopReason.NO_MEDIA,
                    f"no RTP from the device within {config.first_packet_timeout:g} s of start",
                )
                return
        elif now - self._last_packet_at >= config.media_timeout:
            self._stop(StopReason.MEDIA_TIMEOUT, f"no RTP from the device for {config.media_timeout:g} s")
            return
        self._arm_watchdog()

    # -- stats -------------------------------------------------------------------------------------

    @property
    def stats(self) -> IngestStats:
        window = self._window
        reordered, duplicates = self._reordered, self._duplicates
        if window is not None:
            reordered += window.stats.reordered
            duplicates += window.stats.duplicates
        now = time.monotonic()
        gop_packets = len(self._gop_sizes) if self._caching else 0
        return IngestStats(
            self.id,
            self.config.transport.value,
            self._lease.port,
            self.device,
            self._ssrc,
            self._packets,
            self._bytes,
            self._rtcp_packets,
            self._lost,
            reordered,
            duplicates,
            self._sequence_resets,
            self._ssrc_changes,
            self._keyframes,
            gop_packets,
            self._gop_end if self._caching else 0,
            self._gop_overflows,
            self._jitter / (_CLOCK_RATE / 1000),
            dict(self._dropped),
            now - self._opened,
            None if self._last_packet_at is None else now - self._last_packet_at,
            len(self.outputs),
            self._device_bye,
            None if self._deframer is None else dataclasses.replace(self._deframer.stats),
        )


class RelayEngine:
    """Owns the ingests of one event loop and the port range they and their outputs bind in."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        bind_host: str = "0.0.0.0",
        ports: PortRange | str = "30000-30999",
    ) -> None:
        self.loop = loop
        self.bind_host = bind_host
        self.ports = ports if isinstance(ports, PortRange) else PortRange(ports)
        self._ingests: dict[int, Ingest] = {}
        self._next_id = 1

    def __repr__(self) -> str:
        return f"<RelayEngine {self.bind_host} {self.ports!r} ingests={len(self._ingests)}>"

    @property
    def ingests(self) -> list[Ingest]:
        return list(self._ingests.values())

    def open_ingest(
        self,
        config: IngestConfig,
        *,
        on_stop: StopCallback | None = None,
        on_device_bye: ByeCallback | None = None,
    ) -> Ingest:
        """Bind a port pair for a device stream (raises `PortRangeExhausted` when none is free).

        ``on_stop(ingest, reason)`` is called when the engine ends the stream (timeouts, idle, the
        device closing TCP) so the caller can BYE the device; ``on_device_bye(ingest, reason)`` when
        the device says goodbye over RTCP.
        """
        host = self.bind_host
        if config.transport is MediaTransport.UDP:
            lease = self.ports.lease_udp(host)
        else:
            lease = self.ports.lease_tcp(host)
        ingest = Ingest(self, self._next_id, config, lease, on_stop, on_device_bye)
        self._next_id += 1
        self._ingests[ingest.id] = ingest
        try:
            ingest._open()
        except OSError:
            ingest.close()
            raise
        log.info(
            "relay ingest opened",
            ingest=ingest.id,
            transport=config.transport.value,
            local_port=ingest.local_port,
            device=ingest.device,
        )
        return ingest

    def _forget(self, ingest: Ingest) -> None:
        self._ingests.pop(ingest.id, None)

    def close(self) -> None:
        """Close every ingest and its outputs (no callbacks)."""
        for ingest in list(self._ingests.values()):
            ingest.close()


__all__ = [
    "Ingest",
    "IngestConfig",
    "IngestStats",
    "MediaTransport",
    "OutputState",
    "OutputStats",
    "RelayEngine",
    "RelayOutput",
    "StopReason",
]

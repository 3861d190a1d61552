"""The ingest: one device stream received over UDP or TCP, checked, counted and handed to its outputs.

The packet loop (`Ingest._relay`) is the relay's hot path; see the package docstring for its design
and the figure it reaches. What it needs besides sockets lives elsewhere, so this module is only the
socket engine: RFC 3550 reception statistics in `gbgw.rtp.stats`, the PS keyframe test in
`gbgw.rtp.ps`, sending in `gbgw.rtp.relay.outputs`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import mmap
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import structlog

from gbgw.rtp.framing import DeframerStats, Rfc4571Deframer
from gbgw.rtp.packet import (
    Bye,
    ReceiverReport,
    RtpError,
    SenderReport,
    SourceDescription,
    parse_rtcp,
    payload_offset,
    serialize_rtcp,
)
from gbgw.rtp.ports import PortLease, PortRange, address_family
from gbgw.rtp.ps import starts_keyframe
from gbgw.rtp.relay.config import IngestConfig, MediaTransport
from gbgw.rtp.relay.outputs import (
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENTS,
    IN_PROCESS,
    OutputCloseCallback,
    PacketSink,
    RelayOutput,
)
from gbgw.rtp.relay.sockets import StreamSender, drain_rtcp, normalize_host, run_callback
from gbgw.rtp.relay.states import OutputState, StopReason
from gbgw.rtp.reorder import ReorderWindow
from gbgw.rtp.stats import MAX_DROPOUT, ReceptionStats, SeqOutcome

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


class _RtcpDest(IntEnum):
    """Where the device's receiver reports go, from the least to the surest source."""

    GUESSED = 0
    """Its RTP source port + 1."""
    FROM_SDP = 1
    """Its SDP media port + 1."""
    FROM_DEVICE = 2
    """Where its own RTCP comes from (right behind NAT)."""
    CONFIGURED = 3


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


StopCallback = Callable[["Ingest", StopReason], None]
ByeCallback = Callable[["Ingest", str], None]


class Ingest:
    """One device stream: bound to a port pair from the engine's range until it stops.

    Create with `RelayEngine.open_ingest`, put ``local_port`` in the INVITE's SDP, call `start` when
    the device has answered, attach outputs with `add_output`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        ingest_id: int,
        config: IngestConfig,
        lease: PortLease,
        *,
        bind_host: str,
        ports: PortRange,
        on_closed: Callable[[Ingest], None],
        on_stop: StopCallback | None,
        on_device_bye: ByeCallback | None,
    ) -> None:
        """``bind_host`` and ``ports`` are where outputs bind unless told otherwise; ``on_closed`` is
        the engine's, to forget the ingest; ``on_stop`` and ``on_device_bye`` are the caller's."""
        self._loop = loop
        self._bind_host = bind_host
        self._ports = ports
        self._on_closed = on_closed
        self.id = ingest_id
        self.config = config
        self._lease = lease
        self.on_stop = on_stop
        self.on_device_bye = on_device_bye
        self.closed = False
        self.stop_reason: StopReason | None = None
        self.stop_detail = ""

        self._family = address_family(bind_host)
        self._device_host = normalize_host(config.device_host, self._family)
        self._source: tuple[str, int] | None = None
        self._accept_source: Callable[[str], bool] | None = None
        """Set by `start`: which source addresses may send (or connect); else only ``_device_host``."""
        self._fast = False
        """UDP: the socket is connected to the device and drained of what was queued before, so the
        reader may use the address-free ``recv_into``."""
        self._rtcp_dest: tuple[str, int] | None = None
        self._rtcp_rank: _RtcpDest | None = None
        """How sure we are of ``_rtcp_dest``, see `_set_rtcp_dest`."""
        self._rtp_sock: socket.socket | None = None
        self._rtcp_sock: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._conn_sender: StreamSender | None = None
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
        self._scratch = bytearray(
            _TCP_READ if config.transport is not MediaTransport.UDP else _MAX_PACKET + 1
        )
        self._scratch_view = memoryview(self._scratch)

        # Sequence and source tracking; kept as attributes the packet loop loads into locals.
        self._ssrc: int | None = config.ssrc if config.check_ssrc else None
        self._rx = ReceptionStats()
        self._ssrc_changes = 0
        self._last_ts = -1
        self._keyframes = 0
        self._gop_overflows = 0
        self._packets = 0
        self._bytes = 0
        self._rtcp_packets = 0
        self._dropped: dict[str, int] = {}
        self._device_bye: str | None = None
        self._own_ssrc = random.getrandbits(32)
        self._cname = f"relay-{ingest_id}@{bind_host}"

        self._window: ReorderWindow[bytes] | None = None
        self._window_timer: asyncio.TimerHandle | None = None
        if config.reorder_capacity > 0 and config.transport is MediaTransport.UDP:
            self._window = ReorderWindow(
                config.reorder_capacity, config.reorder_delay, max(MAX_DROPOUT, config.reorder_capacity)
            )

        self.outputs: list[RelayOutput] = []
        self.ended_output_packets = 0
        self.ended_output_bytes = 0
        """What outputs that ended had sent: lifetime totals stay monotonic when a receiver leaves."""
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
                self._set_rtcp_dest((self._device_host, config.device_rtcp_port), _RtcpDest.CONFIGURED)
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
        accept_source: Callable[[str], bool] | None = None,
    ) -> None:
        """The device answered: restart the first-packet timeout from now and learn where it is.

        ``host`` replaces the configured device host; ``port`` is the media port of the device's SDP
        answer. ``accept_source(ip)``, if given, decides from now on which source addresses media is
        taken from (the caller's rule: the SDP address, a network list) instead of ``host`` alone. TCP active: connect to it (raises OSError/TimeoutError if that fails). UDP: receiver
        reports go to ``rtcp_port``, else ``port + 1``; the port RTP comes from is still latched from
        the first packet, because many devices do not send from the port they announce.
        """
        if self.closed:
            raise RuntimeError("ingest is closed")
        config = self.config
        if host:
            self._device_host = normalize_host(host, self._family)
        if accept_source is not None:
            self._accept_source = accept_source
        self._first_deadline = time.monotonic() + config.first_packet_timeout
        if config.transport is MediaTransport.UDP:
            if self._device_host is not None:
                if rtcp_port:
                    self._set_rtcp_dest((self._device_host, rtcp_port), _RtcpDest.CONFIGURED)
                elif port:
                    self._set_rtcp_dest((self._device_host, port + 1), _RtcpDest.FROM_SDP)
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
            run_callback(self.on_stop, self, reason)

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
        self._on_closed(self)

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
        accept_source: Callable[[str], bool] | None = None,
    ) -> RelayOutput:
        """Relay to a receiver with its own SSRC; numbering starts at ``seq_base`` (random if None).

        ``bind`` (address, port range) puts the output's sockets on another interface than the
        engine's: a gateway between two networks sends toward each upper from that side's address.

        UDP and TCP active need the receiver's ``host:port``. TCP passive listens on the output's
        ``local_port`` and starts when the receiver connects (ending as ``CONNECT_FAILED`` if none does
        within ``connect_timeout``); ``host``, if given, is the only host accepted, unless
        ``accept_source(ip)`` is given to decide instead. Each output starts with the cached GOP, so its receiver starts on a keyframe.
        """
        if self.closed:
            raise RuntimeError("ingest is closed")
        if transport is not MediaTransport.TCP_PASSIVE and (host is None or port is None):
            raise ValueError(f"a {transport} output needs the receiver's host and port")
        bind_host, ports = bind if bind is not None else (self._bind_host, self._ports)
        lease = ports.lease_udp(bind_host) if transport is MediaTransport.UDP else ports.lease_tcp(bind_host)
        if seq_base is None:
            seq_base = random.getrandbits(16)
        try:
            output = RelayOutput(
                self._loop,
                self._next_output,
                transport,
                normalize_host(host, address_family(bind_host)),
                port,
                ssrc,
                seq_base,
                lease,
                self.config.max_pending,
                self._output_live,
                self._output_ended,
                on_close,
                accept_source=accept_source,
            )
        except BaseException:
            lease.release()
            raise
        self._next_output += 1
        self.outputs.append(output)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        try:
            output._open(self._loop, self.config.connect_timeout)
        except BaseException:
            # Whatever connect or listen raised (OSError, or TypeError for a host with a NUL in it), nobody
            # else holds this output: its sockets close and its ports go back now, or each failure leaks both.
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

    def add_sink(
        self,
        sink: PacketSink,
        *,
        ssrc: int = 0,
        seq_base: int | None = None,
        on_close: OutputCloseCallback | None = None,
    ) -> RelayOutput:
        """Hand every packet to ``sink`` in this process (see `PacketSink`), starting with the cached
        GOP like any output, so the consumer starts on a keyframe. Counted, listed and removed like
        the socket outputs (`remove_output`); ``on_close`` hears when the ingest stops."""
        if self.closed:
            raise RuntimeError("ingest is closed")
        output = RelayOutput(
            self._loop,
            self._next_output,
            None,
            None,
            None,
            ssrc,
            random.getrandbits(16) if seq_base is None else seq_base,
            None,
            0,
            self._output_live,
            self._output_ended,
            on_close,
            sink,
        )
        self._next_output += 1
        self.outputs.append(output)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        output._open(self._loop, self.config.connect_timeout)
        log.info("relay output added", ingest=self.id, output=output.id, transport=IN_PROCESS)
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
        if output in self.outputs:
            self.ended_output_packets += output.sent
            self.ended_output_bytes += output.sent_bytes
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
            most = min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // size)
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
        if not self._source_permitted(addr[0]):
            self._drop("foreign source")
            return False
        # Only an RTP packet teaches us the device's port: not stray bytes from some other socket.
        if size >= 12 and buf[0] >> 6 == 2 and not 192 <= buf[1] <= 223:
            self._latch((addr[0], addr[1]))
        return True

    def _source_permitted(self, ip: str) -> bool:
        accept = self._accept_source
        if accept is not None:
            return accept(ip)
        host = self._device_host
        return host is None or ip == host or normalize_host(ip) == host

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
        self._set_rtcp_dest((source[0], source[1] + 1), _RtcpDest.GUESSED)
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
        latency at 50,000 packets/s: p50 52-82 µs, p99 150-420 µs, as for the bare loop. Split out of
        the old rtp/relay.py with the loop unchanged, the same benchmark on a loaded 2-vCPU machine
        (load average 3-6) gave 5.3-6.8 µs of relay CPU per packet, against 6.7-8.3 µs for the code
        before the split in the same conditions.
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
        rx = self._rx
        expect = rx.expect
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
            # ReceptionStats.receive, its in-order branch inlined: no call for an in-order packet.
            if seq == expect:
                expect = seq + 1
                if expect == 0x10000:
                    expect = 0
                    rx.cycles += 1
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
                run_max = min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // size)
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
        rx.expect = expect
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
        self._rx.restart_source()

    def _resequence(self, seq: int, expect: int) -> tuple[bool, int]:
        """A packet that is not the expected next one: count loss, reordering, duplicates, restarts.

        Returns whether to forward it and the next expected sequence number.
        """
        rx = self._rx
        rx.expect = expect
        outcome = rx.resequence(seq)
        if outcome is SeqOutcome.LATE or outcome is SeqOutcome.DUPLICATE:
            self._drop(outcome.value)
            return False, expect
        if outcome is SeqOutcome.RESTARTED:
            # The device restarted its numbering (or reused the SSRC for a new stream): follow it.
            log.info("device sequence number jumped", ingest=self.id, expected=expect, got=seq)
        return True, rx.expect

    def _frame_start(self, p: int, size: int, ts: int) -> bool:
        """First packet of a frame (new timestamp): sample jitter; True if it starts a keyframe and
        the GOP cache is on."""
        self._rx.frame(time.monotonic(), ts)
        view = self._view
        start = payload_offset(view, p, size)
        if start < 0 or not starts_keyframe(view, start, p + size):
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
            if not self._source_permitted(addr[0]):
                self._drop("foreign connection")
                log.warning("relay ingest refused connection", ingest=self.id, peer=f"{addr[0]}:{addr[1]}")
                conn.close()
                continue
            self._loop.remove_reader(listener.fileno())
            listener.close()
            self._listener = None
            conn.setblocking(False)
            self._adopt_connection(conn, (normalize_host(addr[0]) or addr[0], addr[1]))
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
        self._conn_sender = StreamSender(self._loop, conn, 64 << 10, self._on_conn_error)
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
        if self._rtcp_sock is not None:
            drain_rtcp(self._rtcp_sock, self._on_rtcp_datagram)

    def _on_rtcp_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._device_host is not None and addr[0] != self._device_host:
            self._drop("foreign rtcp")
            return
        self._set_rtcp_dest((addr[0], addr[1]), _RtcpDest.FROM_DEVICE)
        self._on_rtcp(data)

    def _set_rtcp_dest(self, dest: tuple[str, int], rank: _RtcpDest) -> None:
        """Where receiver reports go, from the surest source known: configured, else where the device's
        own RTCP comes from (right behind NAT), else its SDP port + 1, else its RTP source port + 1."""
        if self._rtcp_rank is None or rank >= self._rtcp_rank:
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
                self._rx.sender_report(packet.ntp_timestamp, time.monotonic())
            elif isinstance(packet, Bye):
                reason = packet.reason or ""
                self._device_bye = reason
                log.info("device sent RTCP BYE", ingest=self.id, reason=reason, device=self.device)
                if self.on_device_bye is not None:
                    # Deferred: this runs inside the packet loop, which must not see outputs change.
                    self._loop.call_soon(run_callback, self.on_device_bye, self, reason)

    def _build_report(self, bye: str | None = None) -> bytes:
        block = self._rx.report_block(self._ssrc, time.monotonic())
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
        rx = self._rx
        reordered, duplicates = rx.reordered, rx.duplicates
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
            rx.lost,
            reordered,
            duplicates,
            rx.sequence_resets,
            self._ssrc_changes,
            self._keyframes,
            gop_packets,
            self._gop_end if self._caching else 0,
            self._gop_overflows,
            rx.jitter_ms,
            dict(self._dropped),
            now - self._opened,
            None if self._last_packet_at is None else now - self._last_packet_at,
            len(self.outputs),
            self._device_bye,
            None if self._deframer is None else dataclasses.replace(self._deframer.stats),
        )

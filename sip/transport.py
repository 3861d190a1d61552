"""asyncio adapters around :class:`~sip.endpoint.SipEndpoint`: UDP and TCP on one address.

Like aioquic's protocol module, this file only moves bytes: each datagram or stream frame is fed to the
endpoint, whatever the endpoint wants sent is sent, events resolve the futures of client requests, and a
single timer handle is re-armed for the layer's next deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import structlog

from gbgw.sip.endpoint import Peer, SipEndpoint
from gbgw.sip.errors import SipError, SipParseError
from gbgw.sip.message import Request, Response, StreamFramer, make_response, new_branch
from gbgw.sip.transaction import (
    AckReceived,
    ClientTransaction,
    ResponseReceived,
    ServerTransaction,
    State,
    StrayResponse,
    TransactionTimeout,
)
from gbgw.sip.uri import format_host_port

log = structlog.get_logger("sip.transport")

RequestHandler = Callable[[ServerTransaction], None]
AckHandler = Callable[[Request, Peer], None]

_UNANSWERED = (State.TRYING, State.PROCEEDING)


class SipTimeout(SipError):
    """No final response before Timer B/F: the peer is gone or unreachable."""

    def __init__(self, reason: str = "No response") -> None:
        super().__init__(reason, status=408)


@dataclass(slots=True)
class TransportLimits:
    """Guards for what a hostile or broken peer can make us hold."""

    max_connections_per_ip: int = 64
    idle_timeout: float = 300.0
    max_buffered: int = 1 << 20
    socket_buffer: int = 8 << 20
    rate_per_source: int = 0
    """Requests per second taken from one source IP (0: no limit); the excess is dropped unparsed."""


class SourceRate:
    """Per-source message counting in one-second windows.

    A fixed window costs one dict lookup per message, which matters on the keepalive path; the price is
    that a source may burst up to twice the rate across a window edge, which a limit meant to stop floods
    (not to meter fair use) can live with.
    """

    __slots__ = ("_counts", "_warned", "_window", "dropped", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self._counts: dict[str, int] = {}
        self._window = -1
        self._warned: set[str] = set()

    def admit(self, host: str, now: float) -> bool:
        window = int(now)
        if window != self._window:
            self._window = window
            self._counts.clear()
            self._warned.clear()
        count = self._counts.get(host, 0) + 1
        self._counts[host] = count
        if count <= self.limit:
            return True
        self.dropped += 1
        if host not in self._warned:
            self._warned.add(host)
            log.warning("source over its message rate; dropping", source=host, limit=self.limit)
        return False


class _Pending:
    """What a client request's caller waits on."""

    __slots__ = ("future", "on_provisional")

    def __init__(self, future: asyncio.Future[Response], on_provisional: Callable[[Response], None] | None):
        self.future = future
        self.on_provisional = on_provisional


class SipTransport:
    """Serves one :class:`SipEndpoint` over UDP and TCP on the same host and port."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        on_request: RequestHandler,
        *,
        on_ack: AckHandler | None = None,
        limits: TransportLimits | None = None,
        accept_source: Callable[[str], bool] | None = None,
        on_connection_lost: Callable[[str, int], None] | None = None,
        interface: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.on_request = on_request
        self.on_ack = on_ack
        self.limits = limits or TransportLimits()
        self.accept_source = accept_source
        """Sources (IPs) that may talk to this address; others are dropped before parsing."""
        self.on_connection_lost = on_connection_lost
        self.interface = interface
        """Network interface the sockets are bound to (SO_BINDTODEVICE): on a host between two networks,
        Linux would otherwise hand this address a packet that came in on the other network's interface."""
        self.rate = SourceRate(self.limits.rate_per_source) if self.limits.rate_per_source else None
        self.refused_sources = 0
        self.host = ""
        self.port = 0
        self._loop = asyncio.get_event_loop()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._conns: dict[int, _TcpConnection] = {}
        self._by_addr: dict[tuple[str, int], int] = {}
        self._per_ip: defaultdict[str, int] = defaultdict(int)
        self._connecting: dict[tuple[str, int], list[bytes]] = {}
        self._next_conn = 1
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._idle_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stray_responses = 0
        self._receiving = False
        self.refused_connections = 0

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on UDP and TCP; with port 0 both use the same ephemeral port."""
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # An ephemeral UDP port may be taken on TCP: then try another one (a fixed port fails at once).
        for attempt in range(20 if port == 0 else 1):
            udp, _ = await self._loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), sock=self._bound_socket(family, socket.SOCK_DGRAM, host, port)
            )
            chosen = udp.get_extra_info("sockname")[1]
            try:
                self._tcp_server = await self._loop.create_server(
                    lambda: _TcpConnection(self), sock=self._bound_socket(family, socket.SOCK_STREAM, host, chosen)
                )
            except OSError:
                udp.close()
                if port != 0 or attempt == 19:
                    raise
                continue
            break
        self._udp = udp
        sock = udp.get_extra_info("socket")
        if sock is not None:
            # The default ~200 KB drops requests in bursts (thousands of devices re-registering after an
            # outage); the kernel caps this at net.core.rmem_max.
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, self.limits.socket_buffer)
        self.host, self.port = host, chosen
        self._idle_task = self._loop.create_task(self._close_idle())
        return self.host, self.port

    def _bound_socket(self, family: socket.AddressFamily, kind: socket.SocketKind, host: str, port: int) -> socket.socket:
        """A non-blocking socket bound to ``host:port`` (and to ``interface`` before that, when set)."""
        sock = socket.socket(family, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.interface is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
                except OSError as exc:
                    # EPERM without CAP_NET_RAW before Linux 5.7, ENODEV for a wrong name.
                    raise OSError(exc.errno, f"cannot bind SIP sockets to interface {self.interface!r}: "
                                             f"{exc.strerror}") from exc
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def close(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for conn in list(self._conns.values()):
            conn.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
            await self._tcp_server.wait_closed()
        if self._udp is not None:
            self._udp.close()
        for task in list(self._tasks):
            task.cancel()

    # -- TU interface --------------------------------------------------------------------------------

    def now(self) -> float:
        return self._loop.time()

    def respond(self, txn: ServerTransaction, response: Response) -> None:
        txn.respond(response, self._loop.time())
        if not self._receiving:
            # Answered later (from a task): nothing else will send it. Inside _receive, its flush does.
            self._flush()

    def reply(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str | None = None,
        *,
        headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> Response:
        response = make_response(txn.request, status, reason, to_tag=self.endpoint.local_tag,
                                 headers=headers, body=body)
        self.respond(txn, response)
        return response

    def via(self, transport: str = "UDP") -> str:
        """A Via value for a request we originate from this address."""
        return f"SIP/2.0/{transport} {format_host_port(self.host, self.port)};rport;branch={new_branch()}"

    def send_request(
        self,
        request: Request,
        peer: Peer,
        *,
        on_provisional: Callable[[Response], None] | None = None,
    ) -> asyncio.Future[Response]:
        """Send ``request`` in a client transaction; the future gets the final response or SipTimeout.

        Over TCP to a peer that connected to us, its connection is reused (it may be behind NAT).
        """
        if peer.reliable and not peer.conn:
            conn = self._by_addr.get((peer.host, peer.port))
            if conn is not None:
                peer = peer._replace(conn=conn)
        future: asyncio.Future[Response] = self._loop.create_future()
        txn = self.endpoint.transactions.send_request(
            request, peer, peer.reliable, self._loop.time(), _Pending(future, on_provisional)
        )
        future.add_done_callback(lambda f: self._forget_if_cancelled(f, txn))
        self._flush()
        return future

    def send_ack(self, ack: Request, peer: Peer) -> None:
        """Send an ACK for a 2xx (it lives outside any transaction, §13.2.2.4)."""
        self.endpoint.transactions.send_stateless(ack.serialize(), peer)
        self._flush()

    def connection_peer(self, host: str, port: int) -> Peer | None:
        """The TCP connection a peer opened to us, if it is still up."""
        conn = self._by_addr.get((host, port))
        return None if conn is None else Peer("TCP", host, port, conn)

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    # -- the request path ----------------------------------------------------------------------------

    def _receive(self, data: bytes, source: Peer) -> None:
        endpoint = self.endpoint
        # Responses are not counted: they answer what we sent (a catalog of thousands of pages brings
        # thousands of 200s a second from the upper), and one matching no transaction is dropped anyway.
        rate = self.rate
        if rate is not None and not data.startswith(b"SIP/2.0 ") and not rate.admit(source.host, self._loop.time()):
            return
        txn = endpoint.receive(data, source, self._loop.time())
        if txn is not None:
            self._receiving = True
            try:
                self.on_request(txn)
            except SipError as exc:
                if txn.state in _UNANSWERED:
                    endpoint.fail(txn, exc, self._loop.time())
            except Exception:
                log.exception("request handler failed", method=txn.request.method)
                if txn.state in _UNANSWERED:
                    txn.reply(500, now=self._loop.time())
            finally:
                self._receiving = False
        self._flush()

    def _flush(self) -> None:
        layer = self.endpoint.transactions
        out = layer.take_output()
        if out:
            udp = self._udp
            for data, peer in out:
                if peer.transport == "UDP":
                    if udp is not None:
                        udp.sendto(data, (peer.host, peer.port))
                else:
                    self._send_stream(data, peer)
        event = layer.next_event()
        while event is not None:
            self._dispatch(event)
            event = layer.next_event()
        deadline = layer.next_deadline()
        if deadline is not None and deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self.endpoint.transactions.handle_timer(self._loop.time())
        self._flush()

    def _dispatch(self, event: object) -> None:
        if isinstance(event, ResponseReceived):
            pending = event.transaction.user_data
            if not isinstance(pending, _Pending) or pending.future.done():
                return
            if event.final:
                pending.future.set_result(event.response)
            elif pending.on_provisional is not None:
                pending.on_provisional(event.response)
        elif isinstance(event, TransactionTimeout):
            txn = event.transaction
            if isinstance(txn, ClientTransaction):
                pending = txn.user_data
                if isinstance(pending, _Pending) and not pending.future.done():
                    pending.future.set_exception(SipTimeout(f"No response to {txn.request.method}"))
            else:
                log.info("no ACK for final response", call_id=txn.request.call_id)
        elif isinstance(event, AckReceived):
            if self.on_ack is not None:
                self.on_ack(event.request, event.remote)
        elif isinstance(event, StrayResponse):
            self.stray_responses += 1

    def _forget_if_cancelled(self, future: asyncio.Future[Response], txn: ClientTransaction) -> None:
        if future.cancelled():
            self.endpoint.transactions.forget(txn)

    # -- TCP -----------------------------------------------------------------------------------------

    def _send_stream(self, data: bytes, peer: Peer) -> None:
        conn = self._conns.get(peer.conn) if peer.conn else None
        if conn is None:
            conn_id = self._by_addr.get((peer.host, peer.port))
            conn = self._conns.get(conn_id) if conn_id is not None else None
        if conn is not None:
            conn.write(data)
            return
        key = (peer.host, peer.port)
        queued = self._connecting.get(key)
        if queued is not None:
            queued.append(data)
            return
        self._connecting[key] = [data]
        task = self._loop.create_task(self._connect(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, key: tuple[str, int]) -> None:
        try:
            # From our own address: on a host with one interface per network, packets must leave from
            # the side this transport serves, whatever the routing table would pick.
            if self.interface is None:
                _, conn = await self._loop.create_connection(
                    lambda: _TcpConnection(self), key[0], key[1], local_addr=(self.host, 0) if self.host else None
                )
            else:
                sock = self._bound_socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                                          socket.SOCK_STREAM, self.host, 0)
                try:
                    await self._loop.sock_connect(sock, key)
                    _, conn = await self._loop.create_connection(lambda: _TcpConnection(self), sock=sock)
                except BaseException:
                    sock.close()
                    raise
        except OSError as exc:
            log.warning("tcp connect failed", peer=f"{key[0]}:{key[1]}", error=str(exc))
            self._connecting.pop(key, None)
            failed = self.endpoint.transactions.transport_failed(
                lambda remote: remote.transport != "UDP" and (remote.host, remote.port) == key
            )
            for txn in failed:
                pending = txn.user_data
                if isinstance(pending, _Pending) and not pending.future.done():
                    pending.future.set_exception(SipError(f"TCP connection failed: {exc.strerror or exc}", 503))
            return
        # _register flushed the queue if the peer's address reads as we dialled it; a host name or another
        # spelling of an IPv6 address does not, so flush here and remember that name for this connection.
        for data in self._connecting.pop(key, []):
            conn.write(data)
        if conn.conn_id and key not in self._by_addr:
            self._by_addr[key] = conn.conn_id
            conn.dialled = key

    def _register(self, conn: _TcpConnection) -> bool:
        host = conn.peer_host
        if self.accept_source is not None and not self.accept_source(host):
            self.refused_sources += 1
            log.info("connection from a source not served here refused", source=host, local=self.port)
            return False
        if self._per_ip[host] >= self.limits.max_connections_per_ip:
            self.refused_connections += 1
            log.warning("too many connections from one address", source=host,
                        limit=self.limits.max_connections_per_ip)
            return False
        self._per_ip[host] += 1
        conn.conn_id = self._next_conn
        self._next_conn += 1
        self._conns[conn.conn_id] = conn
        key = (host, conn.peer_port)
        self._by_addr[key] = conn.conn_id
        for data in self._connecting.pop(key, []):
            conn.write(data)
        return True

    def _unregister(self, conn: _TcpConnection) -> None:
        if self._conns.pop(conn.conn_id, None) is None:
            return
        for key in ((conn.peer_host, conn.peer_port), conn.dialled):
            if key is not None and self._by_addr.get(key) == conn.conn_id:
                del self._by_addr[key]
        self._per_ip[conn.peer_host] -= 1
        if self._per_ip[conn.peer_host] <= 0:
            del self._per_ip[conn.peer_host]
        if self.on_connection_lost is not None:
            self.on_connection_lost(conn.peer_host, conn.peer_port)

    async def _close_idle(self) -> None:
        period = max(self.limits.idle_timeout / 4, 0.05)
        while True:
            await asyncio.sleep(period)
            cutoff = self._loop.time() - self.limits.idle_timeout
            for conn in [c for c in self._conns.values() if c.last_activity < cutoff]:
                log.info("closing idle tcp connection", peer=f"{conn.peer_host}:{conn.peer_port}")
                conn.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    __slots__ = ("_owner",)

    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        owner = self._owner
        if owner.accept_source is not None and not owner.accept_source(addr[0]):
            owner.refused_sources += 1
            return
        try:
            owner._receive(data, Peer("UDP", addr[0], addr[1]))
        except Exception:
            # The event loop must never see an exception from network input.
            log.exception("udp datagram handling failed")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable after sending to a gone device: nothing to do but note it.
        log.debug("udp error", error=str(exc))


class _TcpConnection(asyncio.Protocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner
        self._framer = StreamFramer(owner.endpoint.config.max_message_size)
        self._transport: asyncio.Transport | None = None
        self.conn_id = 0
        self.peer_host = ""
        self.peer_port = 0
        self.dialled: tuple[str, int] | None = None
        self.last_activity = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not an isinstance check: uvloop's TCPTransport does not subclass asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_host, self.peer_port = peer[0], peer[1]
        self.last_activity = self._owner.now()
        if not self._owner._register(self):
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        self.last_activity = self._owner.now()
        framer = self._framer
        pings = framer.pings
        try:
            frames = framer.feed(data)
        except SipParseError as exc:
            # The stream is out of step: no later byte can be trusted, so the connection goes.
            log.warning("closing tcp connection", peer=f"{self.peer_host}:{self.peer_port}", reason=exc.reason)
            self.close()
            return
        if framer.pings != pings:
            # RFC 5626 §4.4.1: a CRLFCRLF ping is answered with one CRLF (the pong keeps NAT bindings up).
            self.write(b"\r\n")
        peer = Peer("TCP", self.peer_host, self.peer_port, self.conn_id)
        for frame in frames:
            try:
                self._owner._receive(frame, peer)
            except Exception:
                log.exception("tcp message handling failed")

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > self._owner.limits.max_buffered:
            log.warning("peer does not read; closing", peer=f"{self.peer_host}:{self.peer_port}")
            self.close()
            return
        transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._owner._unregister(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._unregister(self)

"""asyncio adapters around :class:`~sip.endpoint.SipEndpoint`: UDP and TCP on one address, TLS beside it.

Like aioquic's protocol module, this file only moves bytes: each datagram or stream frame is fed to the
endpoint, whatever the endpoint wants sent is sent, events resolve the futures of client requests, and a
single timer handle is re-armed for the layer's next deadline.

Streams (TCP and TLS alike) are bounded three ways: per source address, in total (so that a few
addresses cannot take every file descriptor the API and the media need, see :func:`connection_budget`),
and in time (a connection that has not sent one whole message within ``first_message_timeout``,
TLS handshake included, is closed). A refused or timed-out connection is closed and counted, never an
exception, and logged at most once per reason every few seconds: a flood must not flood the log too.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import socket
import ssl
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import structlog

from gbgw.sip.endpoint import Peer, SipEndpoint, StatelessHandler
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
MessageTap = Callable[[bool, bytes, Peer], None]
"""Sees every message (inbound: True) admitted or sent, as bytes, before it is parsed or after it is
serialised: for per-peer traces. It runs on the hot path, so it must be cheap and must not raise."""

_UNANSWERED = (State.TRYING, State.PROCEEDING)


class SipTimeout(SipError):
    """No final response before Timer B/F: the peer is gone or unreachable."""

    def __init__(self, reason: str = "No response") -> None:
        super().__init__(reason, status=408)


FD_RESERVE_SHARE = 4
"""One file descriptor in this many (at least FD_RESERVE_MIN) is left to everything but SIP streams."""
FD_RESERVE_MIN = 256


def connection_budget(configured: int = 0, soft_limit: int | None = None) -> int:
    """How many SIP stream connections one process may hold: ``configured``, within the open-file limit.

    Every connection is a file descriptor, and so are the API's connections, the media sockets (two per
    UDP stream, one per TCP stream and relay output), the database and the log files. Once RLIMIT_NOFILE
    is reached, accept() fails everywhere at once: the API drops connections unanswered and no device can
    connect. So SIP streams get at most the soft limit less a reserve of a quarter of it (at least 256):
    768 of the usual 1,024, 49,152 of 65,536. ``configured`` (0: no wish of its own) can only lower that.
    """
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft_limit == resource.RLIM_INFINITY:
            soft_limit = 1 << 20
    budget = max(soft_limit - max(FD_RESERVE_MIN, soft_limit // FD_RESERVE_SHARE), 16)
    return min(configured, budget) if configured > 0 else budget


@dataclass(slots=True)
class TransportLimits:
    """Guards for what a hostile or broken peer can make us hold."""

    max_connections_per_ip: int = 64
    max_connections: int = 0
    """Stream connections (TCP and TLS, in and out) at most; 0 and any larger value are held to
    :func:`connection_budget` of the open-file limit."""
    first_message_timeout: float = 10.0
    """Seconds an accepted connection has to complete its TLS handshake and first SIP message."""
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


DROP_LOG_INTERVAL = 10.0
"""Seconds between two warnings for the same kind of dropped connection (the count in between is logged)."""


class SipTransport:
    """Serves one :class:`SipEndpoint` over UDP and TCP on the same host and port, and TLS on another.

    ``tls_client`` is the context to dial peers whose :class:`Peer` transport is ``TLS`` with
    (:func:`sip.tls.client_context`); without it such a request fails at once with 503.
    """

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
        tls_client: ssl.SSLContext | None = None,
        tap: MessageTap | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.tap = tap
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
        self.tls_client = tls_client
        self.max_connections = connection_budget(self.limits.max_connections)
        self.refused_sources = 0
        self.over_limit_connections = 0
        """Connections closed at once because ``max_connections`` were open."""
        self.first_message_timeouts = 0
        """Accepted connections closed for not completing a first message in time."""
        self.tls_failures = 0
        """TLS handshakes that failed (plain SIP or garbage on the TLS port, bad certificates)."""
        self.host = ""
        self.port = 0
        self.tls_host = ""
        self.tls_port = 0
        self._loop = asyncio.get_event_loop()
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.base_events.Server | None = None
        self._tls_server: asyncio.base_events.Server | None = None
        self._conns: dict[int, _StreamConnection] = {}
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
        self._warned_at: dict[str, float] = {}
        self._unlogged: defaultdict[str, int] = defaultdict(int)

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
                    lambda: _StreamConnection(self, "TCP", inbound=True),
                    sock=self._bound_socket(family, socket.SOCK_STREAM, host, chosen),
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

    async def start_tls(self, host: str, port: int, context: ssl.SSLContext) -> tuple[str, int]:
        """Listen for SIP over TLS (RFC 3261 §26.2) with ``context`` (:func:`sip.tls.server_context`).

        Framing, size limits, source rates and connection limits are those of TCP; the handshake runs
        inside the first-message deadline, and one that fails (plain SIP sent here, say) only closes its
        connection and counts in ``tls_failures``. Call after :meth:`start`.
        """
        self._loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._tls_server = await self._loop.create_server(
            lambda: _StreamConnection(self, "TLS", inbound=True, upgrade=context),
            sock=self._bound_socket(family, socket.SOCK_STREAM, host, port),
        )
        self.tls_host, self.tls_port = host, self._tls_server.sockets[0].getsockname()[1]
        return self.tls_host, self.tls_port

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
        for server in (self._tcp_server, self._tls_server):
            if server is not None:
                server.close()
                await server.wait_closed()
        if self._udp is not None:
            self._udp.close()
        for task in list(self._tasks):
            task.cancel()

    # -- TU interface --------------------------------------------------------------------------------

    def now(self) -> float:
        return self._loop.time()

    def respond(self, txn: ServerTransaction, response: Response, *, stateless: bool = False) -> None:
        """Send ``response``; ``stateless`` keeps nothing after it (see :meth:`reply_stateless`)."""
        txn.respond(response, self._loop.time(), stateless=stateless)
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
        stateless: bool = False,
    ) -> Response:
        response = make_response(txn.request, status, reason, to_tag=self.endpoint.local_tag,
                                 headers=headers, body=body)
        self.respond(txn, response, stateless=stateless)
        return response

    def reply_stateless(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str | None = None,
        *,
        headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> Response:
        """Answer a non-INVITE request and forget it (RFC 3261 §8.2.7): a retransmission comes to the TU
        again and must be answered again, so only for answers that cost nothing to repeat — a 401 whose
        nonce is a stateless HMAC, a 403 — which a flood of unauthenticated requests would otherwise
        make us keep for 64*T1 each. An INVITE is still answered statefully."""
        return self.reply(txn, status, reason, headers=headers, body=body, stateless=True)

    def answer_statelessly(self, handler: StatelessHandler | None) -> None:
        """Let ``handler`` answer messages from their bytes before any parse or transaction (one at a
        time: a later call replaces it). See :mod:`sip.stateless` for what it may answer and why."""
        self.endpoint.stateless = handler

    def via(self, transport: str = "UDP") -> str:
        """A Via value for a request we originate from this address (the TLS one for ``TLS``)."""
        if transport == "TLS" and self.tls_port:
            sent_by = format_host_port(self.tls_host, self.tls_port)
        else:
            sent_by = format_host_port(self.host, self.port)
        return f"SIP/2.0/{transport} {sent_by};rport;branch={new_branch()}"

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
        """The TCP or TLS connection a peer opened to us, if it is still up."""
        conn_id = self._by_addr.get((host, port))
        conn = self._conns.get(conn_id) if conn_id is not None else None
        return None if conn is None else Peer(conn.name, host, port, conn.conn_id)

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
        if self.tap is not None:
            self._tap(True, data, source)
        now = self._loop.time()
        if endpoint.stateless is not None:
            answer = endpoint.answer_stateless(data, source, now)
            if answer is not None:
                # Nothing changed in the transaction layer: sent here, without a _flush (~3 us a keepalive).
                if self.tap is not None:
                    self._tap(False, answer, source)
                if source.transport == "UDP":
                    if self._udp is not None:
                        self._udp.sendto(answer, (source.host, source.port))
                else:
                    self._send_stream(answer, source)
                return
        txn = endpoint.receive_full(data, source, now)
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
            tap = self.tap
            for data, peer in out:
                if tap is not None:
                    self._tap(False, data, peer)
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

    def _tap(self, inbound: bool, data: bytes, peer: Peer) -> None:
        assert self.tap is not None
        try:
            self.tap(inbound, data, peer)
        except Exception:
            # A broken trace must not cost a message.
            self._warn_dropped("tap", "message tap failed", peer=peer.host)

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

    # -- streams (TCP, TLS) --------------------------------------------------------------------------

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
        self._spawn(self._connect(key, peer.transport))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, key: tuple[str, int], transport: str) -> None:
        tls = transport == "TLS"
        context = self.tls_client if tls else None
        if tls and context is None:
            self._connect_failed(key, "no TLS client context configured")
            return
        name = "TLS" if tls else "TCP"
        tls_args: dict[str, Any] = {"ssl": context, "server_hostname": key[0]} if context is not None else {}
        try:
            # From our own address: on a host with one interface per network, packets must leave from
            # the side this transport serves, whatever the routing table would pick.
            if self.interface is None:
                _, conn = await self._loop.create_connection(
                    lambda: _StreamConnection(self, name), key[0], key[1],
                    local_addr=(self.host, 0) if self.host else None, **tls_args,
                )
            else:
                sock = self._bound_socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET,
                                          socket.SOCK_STREAM, self.host, 0)
                try:
                    await self._loop.sock_connect(sock, key)
                    _, conn = await self._loop.create_connection(lambda: _StreamConnection(self, name), sock=sock,
                                                                 **tls_args)
                except BaseException:
                    sock.close()
                    raise
        except OSError as exc:
            # ssl.SSLError (a failed handshake or certificate check) is an OSError too.
            if isinstance(exc, ssl.SSLError):
                self.tls_failures += 1
            log.warning(f"{name.lower()} connect failed", peer=f"{key[0]}:{key[1]}", error=str(exc))
            self._connect_failed(key, f"{name} connection failed: {exc.strerror or exc}")
            return
        if not conn.conn_id:
            # Refused by our own limits (_register logged why).
            self._connect_failed(key, f"{name} connection refused: too many connections")
            return
        # _register flushed the queue if the peer's address reads as we dialled it; a host name or another
        # spelling of an IPv6 address does not, so flush here and remember that name for this connection.
        for data in self._connecting.pop(key, []):
            conn.write(data)
        if key not in self._by_addr:
            self._by_addr[key] = conn.conn_id
            conn.dialled = key

    def _connect_failed(self, key: tuple[str, int], reason: str) -> None:
        self._connecting.pop(key, None)
        failed = self.endpoint.transactions.transport_failed(
            lambda remote: remote.transport != "UDP" and (remote.host, remote.port) == key
        )
        for txn in failed:
            pending = txn.user_data
            if isinstance(pending, _Pending) and not pending.future.done():
                pending.future.set_exception(SipError(reason, 503))

    def _register(self, conn: _StreamConnection) -> bool:
        host = conn.peer_host
        if self.accept_source is not None and not self.accept_source(host):
            self.refused_sources += 1
            log.info("connection from a source not served here refused", source=host, local=self.port)
            return False
        if len(self._conns) >= self.max_connections:
            self.over_limit_connections += 1
            self._warn_dropped("connection limit", "too many connections; closing a new one", source=host,
                               limit=self.max_connections, transport=conn.name)
            return False
        if self._per_ip[host] >= self.limits.max_connections_per_ip:
            self.refused_connections += 1
            self._warn_dropped("per-address limit", "too many connections from one address", source=host,
                               limit=self.limits.max_connections_per_ip, transport=conn.name)
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

    def _unregister(self, conn: _StreamConnection) -> None:
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

    def _warn_dropped(self, kind: str, event: str, **fields: Any) -> None:
        """Log a dropped connection, once per ``kind`` every DROP_LOG_INTERVAL with the count between."""
        now = self._loop.time()
        last = self._warned_at.get(kind)
        if last is not None and now - last < DROP_LOG_INTERVAL:
            self._unlogged[kind] += 1
            return
        self._warned_at[kind] = now
        log.warning(event, dropped_since_last=self._unlogged.pop(kind, 0), **fields)

    async def _close_idle(self) -> None:
        period = max(self.limits.idle_timeout / 4, 0.05)
        while True:
            await asyncio.sleep(period)
            cutoff = self._loop.time() - self.limits.idle_timeout
            for conn in [c for c in self._conns.values() if c.last_activity < cutoff]:
                log.info("closing idle connection", peer=f"{conn.peer_host}:{conn.peer_port}", transport=conn.name)
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


class _StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection. An accepted TLS one starts as TCP and is upgraded in place, so that it
    is counted (and its deadline runs) from accept, not only once its handshake is through."""

    def __init__(
        self, owner: SipTransport, name: str, *, inbound: bool = False, upgrade: ssl.SSLContext | None = None
    ) -> None:
        self._owner = owner
        self.name = name
        self._inbound = inbound
        self._upgrade = upgrade
        self._framer = StreamFramer(owner.endpoint.config.max_message_size)
        self._transport: asyncio.Transport | None = None
        self._ready = upgrade is None
        self._held: list[bytes] = []
        self._deadline: asyncio.TimerHandle | None = None
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
        owner = self._owner
        self.last_activity = owner.now()
        if not owner._register(self):
            self._transport.abort()
            return
        if self._inbound:
            self._deadline = owner._loop.call_later(owner.limits.first_message_timeout, self._first_message_overdue)
        if self._upgrade is not None:
            self._transport.pause_reading()
            owner._spawn(self._handshake(self._upgrade))

    async def _handshake(self, context: ssl.SSLContext) -> None:
        owner = self._owner
        raw = self._transport
        assert raw is not None
        try:
            secure = await owner._loop.start_tls(
                raw, self, context, server_side=True, ssl_handshake_timeout=owner.limits.first_message_timeout
            )
        except (OSError, EOFError) as exc:
            if self.conn_id not in owner._conns:
                return  # the first-message deadline closed it and counted it
            # Plain SIP or any other bytes on the TLS port, a scanner, a client refusing our certificate.
            owner.tls_failures += 1
            owner._warn_dropped("tls handshake", "tls handshake failed; closing", peer=self._peer_text(),
                                error=str(exc) or type(exc).__name__)
            raw.abort()
            self.close()
            return
        if secure is None or self.conn_id not in owner._conns:
            # Closed meanwhile (the first-message deadline, close()).
            if secure is not None:
                secure.abort()
            return
        self._transport = cast(asyncio.Transport, secure)
        self._ready = True
        held, self._held = self._held, []
        for data in held:
            self.write(data)

    def _first_message_overdue(self) -> None:
        self._deadline = None
        owner = self._owner
        owner.first_message_timeouts += 1
        owner._warn_dropped("first message", "no complete first message in time; closing",
                            peer=self._peer_text(), transport=self.name,
                            timeout=owner.limits.first_message_timeout)
        if self._transport is not None:
            self._transport.abort()
        self.close()

    def data_received(self, data: bytes) -> None:
        self.last_activity = self._owner.now()
        framer = self._framer
        pings = framer.pings
        try:
            frames = framer.feed(data)
        except SipParseError as exc:
            # The stream is out of step: no later byte can be trusted, so the connection goes.
            log.warning("closing stream connection", peer=self._peer_text(), transport=self.name, reason=exc.reason)
            self.close()
            return
        if framer.pings != pings:
            # RFC 5626 §4.4.1: a CRLFCRLF ping is answered with one CRLF (the pong keeps NAT bindings up).
            self.write(b"\r\n")
        if not frames:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        peer = Peer(self.name, self.peer_host, self.peer_port, self.conn_id)
        for frame in frames:
            try:
                self._owner._receive(frame, peer)
            except Exception:
                log.exception("stream message handling failed", transport=self.name)

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not self._ready:
            # A request to this peer before its handshake is through waits for it.
            self._held.append(data)
            return
        if transport.get_write_buffer_size() > self._owner.limits.max_buffered:
            log.warning("peer does not read; closing", peer=self._peer_text(), transport=self.name)
            self.close()
            return
        transport.write(data)

    def close(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._transport is not None:
            self._transport.close()
        self._owner._unregister(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._owner._unregister(self)

    def _peer_text(self) -> str:
        return f"{self.peer_host}:{self.peer_port}"

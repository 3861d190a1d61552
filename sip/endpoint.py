"""One SIP endpoint as a sans-IO object: bytes in, new server transactions and events out, bytes to send.

It is the request path every message takes, whatever the transport: parse, validate (a readable but
invalid request gets a 4xx whose reason names the problem), stamp ``received``/``rport`` on the top Via,
match transactions, answer OPTIONS. What is left for the transaction user (TU) is a
:class:`~sip.transaction.ServerTransaction` to answer, and client-side events. Before all that, a TU's
stateless handler may answer a message from its bytes alone (:mod:`sip.stateless`): no parse, no
transaction, for requests whose answer is idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import structlog

from gbgw.sip.errors import SipError, SipParseError
from gbgw.sip.headers import split_commas
from gbgw.sip.message import Request, Response, make_response, new_tag, parse_message
from gbgw.sip.transaction import ServerTransaction, Timers, TransactionLayer

log = structlog.get_logger("sip.endpoint")


class Peer(NamedTuple):
    """Where a message came from or goes to.

    ``conn`` names the TCP connection a message arrived on (0 for UDP), so responses and later
    requests reuse it: a device behind NAT can only be reached over the connection it opened.
    """

    transport: str
    host: str
    port: int
    conn: int = 0

    @property
    def reliable(self) -> bool:
        return self.transport != "UDP"


@dataclass(slots=True)
class EndpointConfig:
    """Behaviour that differs between deployments; defaults suit devices behind NAT."""

    user_agent: str = "gb28181-gateway"
    allow: tuple[str, ...] = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "INFO", "NOTIFY",
                              "SUBSCRIBE", "REGISTER")
    accept: tuple[str, ...] = ("application/sdp", "application/manscdp+xml")
    supported_extensions: frozenset[str] = frozenset()
    max_message_size: int = 65535
    # RFC 3581 sends responses to the source port only when the client asked with `rport`; cameras behind
    # NAT often do not ask, and answering to the Via port then loses the response, so answer the source.
    force_rport: bool = True
    timers: Timers = field(default_factory=Timers)
    max_transactions: int = 200_000
    """Server transactions kept at most (0: no cap); over it a new request gets a stateless 503.
    A completed one costs about 1 KB for 64*T1, so the default bounds them near 200 MB while holding
    6,000 requests/s of steady UDP traffic (keepalives of 360,000 devices a minute)."""
    retry_after: int = 10
    """Seconds a peer refused for overload is told to wait (Retry-After of that 503)."""


StatelessHandler = Callable[[bytes, Peer, float], bytes | None]
"""(raw message, source, now) -> the whole answer to send back, or None to give the message to the full
path. Sees every message before it is parsed, so it must reject what it does not serve in a few
instructions, and must answer only requests whose answer is idempotent (see :mod:`sip.stateless`)."""


@dataclass(slots=True)
class EndpointCounters:
    received: int = 0
    unparseable: int = 0
    rejected: int = 0
    options: int = 0
    stateless: int = 0
    """Requests the stateless handler answered: no parse, no transaction."""


class SipEndpoint:
    """Parsing, validation and transactions for one local SIP address."""

    def __init__(self, config: EndpointConfig | None = None) -> None:
        self.config = config or EndpointConfig()
        self.local_tag = new_tag()
        self.transactions = TransactionLayer(
            self.config.timers, local_tag=self.local_tag,
            max_transactions=self.config.max_transactions, retry_after=self.config.retry_after,
        )
        self.counters = EndpointCounters()
        self.last_error: str | None = None
        self.stateless: StatelessHandler | None = None
        """The TU's stateless answers, tried on each message before anything else."""

    def receive(self, data: bytes, source: Peer, now: float) -> ServerTransaction | None:
        """Feed one datagram or stream frame. Returns a new transaction for the TU to answer, if any.

        A message the stateless handler answers leaves only its answer in the output: no request object,
        no transaction, nothing to expire (its retransmission is answered again the same way).
        """
        answer = self.answer_stateless(data, source, now)
        if answer is not None:
            self.transactions.send_stateless(answer, source)
            return None
        return self.receive_full(data, source, now)

    def answer_stateless(self, data: bytes, source: Peer, now: float) -> bytes | None:
        """The stateless handler's answer to a message (counted as received), or None: then the caller
        must give it to :meth:`receive_full`. For an adapter that sends that answer at once itself."""
        stateless = self.stateless
        if stateless is None:
            return None
        try:
            answer = stateless(data, source, now)
        except Exception:
            # A broken fast path must cost its speed, never the request: the full path answers it.
            log.exception("stateless handler failed")
            return None
        if answer is not None:
            counters = self.counters
            counters.received += 1
            counters.stateless += 1
        return answer

    def receive_full(self, data: bytes, source: Peer, now: float) -> ServerTransaction | None:
        """:meth:`receive` without the stateless handler: parse, validate, match a transaction."""
        self.counters.received += 1
        try:
            msg = parse_message(data, max_size=self.config.max_message_size)
        except ValueError as exc:
            # Nothing trustworthy to answer to: drop and count (RFC 3261 §16.3 spirit for garbage).
            self.counters.unparseable += 1
            self.last_error = _as_sip_error(exc).reason
            return None
        if isinstance(msg, Response):
            self.transactions.receive_response(msg, source, now)
            return None
        return self.receive_request(msg, source, now)

    def receive_request(self, request: Request, source: Peer, now: float) -> ServerTransaction | None:
        layer = self.transactions
        try:
            request.check()
            reply_to = self._stamp_via(request, source)
            method = request.method
            # Require in an ACK or CANCEL is ignored (§8.2.2.3): neither may be refused for it.
            extensions = self._unsupported(request) if method != "ACK" and method != "CANCEL" else None
            if extensions:
                self._stateless(request, reply_to, 420, headers=[("Unsupported", ", ".join(extensions))])
                return None
            answer_options = method == "OPTIONS" and not _in_dialog(request)
            if answer_options:
                # We answer it ourselves, so every address in it must be readable before we do.
                request.check_addresses()
            # Cookie-less (RFC 2543) requests are keyed by From/To tags, whose parse may fail here.
            txn = layer.receive_request(request, reply_to, source.reliable, now)
        except ValueError as exc:
            self.reject(request, source, _as_sip_error(exc))
            return None
        if txn is not None and answer_options:
            self.counters.options += 1
            txn.reply(200, now=now, headers=self._capabilities())
            return None
        return txn

    def reject(self, request: Request, source: Peer, exc: SipError) -> None:
        """Answer an invalid request statelessly, naming the problem in the reason phrase.

        Only a Via is needed: without it the peer could not match the answer, and nobody answers an ACK.
        A request missing Call-ID, From, To or CSeq still gets its 400 (RFC 4475 §3.1.2.18).
        """
        self.counters.rejected += 1
        self.last_error = exc.reason
        if request.method == "ACK" or request.get("Via") is None:
            return
        self._stateless(request, source, exc.status, reason=_reason(exc))

    def fail(self, txn: ServerTransaction, exc: SipError, now: float) -> None:
        """Answer a transaction whose TU raised :class:`SipError`: its status, its text as the reason."""
        self.counters.rejected += 1
        self.last_error = exc.reason
        txn.reply(exc.status, _reason(exc), now=now, headers=[("Server", self.config.user_agent)])

    def _stateless(
        self,
        request: Request,
        to: Peer,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        try:
            request.to  # noqa: B018 - a To we cannot read is echoed as is, without our tag
            to_tag: str | None = self.local_tag
        except SipError:
            to_tag = None
        response = make_response(request, status, reason, to_tag=to_tag, headers=headers or ())
        response.add("Server", self.config.user_agent)
        self.transactions.send_stateless(response.serialize(), to)

    def _capabilities(self) -> list[tuple[str, str]]:
        cfg = self.config
        return [
            ("Allow", ", ".join(cfg.allow)),
            ("Accept", ", ".join(cfg.accept)),
            ("Server", cfg.user_agent),
        ]

    def _unsupported(self, request: Request) -> list[str] | None:
        """The option tags a request requires that we lack; None (no allocation) in the usual case."""
        supported = self.config.supported_extensions
        missing: list[str] | None = None
        for name, value in request.headers:
            if name == "Require" or name == "Proxy-Require":
                for option in split_commas(value):
                    if option.lower() not in supported:
                        if missing is None:
                            missing = []
                        missing.append(option)
        return missing

    def _stamp_via(self, request: Request, source: Peer) -> Peer:
        """Record where the request really came from (RFC 3261 §18.2.1, RFC 3581) and pick the reply peer."""
        via = request.via
        params = via.params
        top = request.get("Via") or ""
        if "," in top:
            top = split_commas(top)[0]
        changed = False
        if "rport" in params:
            if params["rport"] is None and _BARE_RPORT.search(top) is not None:
                top = _BARE_RPORT.sub(f";rport={source.port}", top, count=1)
            else:
                top = ""
            params["rport"] = str(source.port)
            changed = True
        host = via.host
        if host.startswith("["):
            # An IPv6 sent-by is bracketed (RFC 5118); the packet's source address is not.
            host = host[1:-1]
        if host != source.host:
            params["received"] = source.host
            if top:
                top = f"{top};received={source.host}"
            changed = True
        if changed:
            # Edit what the peer sent rather than re-serialize it: cheaper, and keeps its spelling.
            request.replace_top_via(via, top or None)
        if source.reliable or self.config.force_rport or "rport" in params:
            return source
        return Peer(source.transport, source.host, via.port or 5060, source.conn)


_BARE_RPORT = re.compile(r";\s*rport(?=\s*(?:;|$))", re.IGNORECASE)


def _in_dialog(request: Request) -> bool:
    try:
        return request.to.tag is not None
    except SipError:
        return False


def _as_sip_error(exc: ValueError) -> SipError:
    """Any ValueError out of a parser means bad input (an ``int()`` a syntax check let through, say)."""
    # The interpreter's own message (e.g. about int digit limits) is no reason phrase for a peer.
    return exc if isinstance(exc, SipError) else SipParseError("Unreadable value in a header")


def _reason(exc: SipError) -> str:
    """A reason phrase must be one line of printable text; the error text names the problem."""
    text = " ".join(exc.reason.split())
    return text[:120] if text else "Bad Request"

"""SIP transactions (RFC 3261 §17, with the RFC 6026 "Accepted" states) as a sans-IO state machine.

The layer never touches a socket or a clock. The adapter feeds it parsed messages with the remote they came
from and the current time, sends whatever :meth:`TransactionLayer.take_output` returns, and calls
:meth:`TransactionLayer.handle_timer` when :meth:`TransactionLayer.next_deadline` passes.

Memory is the design constraint. At 40,000 requests/s over UDP, Timer J keeps every completed non-INVITE
server transaction for 32 s: over a million of them. A completed one is therefore stored as a bare
``(response bytes, remote)`` tuple in a dict, and its expiry in a FIFO deque (Timer J is the same for every
UDP transaction, so expiries arrive in order and need no heap). Only transactions that still wait for
something (the TU's answer, a retransmission deadline, an ACK) are objects.

Two more bounds keep a flood from growing the tables. A TU may answer a non-INVITE request *statelessly*
(RFC 3261 §8.2.7, §16.11): nothing is kept, and a retransmission reaches the TU again, which suits a 401
challenge whose nonce is an HMAC and needs no memory either. And ``max_transactions`` caps the server
tables: over it, a new request is answered 503 with Retry-After and no state at all. (Cheaper still, the
endpoint's stateless handler answers the bulk of idempotent requests, keepalives, before they are parsed,
so they never reach this layer: see :mod:`sip.stateless`.) An expiry entry is
only queued for a request the TU did not answer before the adapter took the output, so a
request answered at once (statelessly, or over TCP) leaves nothing behind.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from gbgw.sip.errors import SipError
from gbgw.sip.message import Request, Response, make_response

MAGIC_COOKIE = "z9hG4bK"

Remote = Any
"""Where a message came from or goes to: opaque and hashable here (the adapter's address or connection)."""


@dataclass(slots=True)
class Timers:
    """RFC 3261 timer values (seconds). T1 is the RTT estimate; lower it on LANs, raise it over satellites."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:
        return 64 * self.t1


class State(Enum):
    TRYING = "Trying"
    CALLING = "Calling"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


# Each key holds one shared string per method instead of the copy every parsed request brings: a completed
# transaction then costs 56 bytes less. ACK is keyed as the INVITE it acknowledges.
_KEY_METHODS = {
    method: method
    for method in ("INVITE", "MESSAGE", "REGISTER", "NOTIFY", "SUBSCRIBE", "INFO", "BYE", "CANCEL",
                   "OPTIONS", "UPDATE", "PRACK", "REFER", "PUBLISH")
}
_KEY_METHODS["ACK"] = "INVITE"


def transaction_key(request: Request) -> tuple[Any, ...]:
    """The key that matches a request to its server transaction (§17.2.3).

    With the magic cookie the branch and sent-by are unique; ACK for a non-2xx and CANCEL share the
    INVITE's branch, so the method part maps ACK to INVITE and keeps CANCEL apart. Without the cookie
    (RFC 2543 peers) the key is built from the fields §17.2.3 lists.
    """
    via = request.via
    method = request.method
    method = _KEY_METHODS.get(method, method)
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        return (branch, via.host, via.port, method)
    # No To tag for INVITE (and so ACK): the ACK carries our response's tag, which the INVITE lacked.
    # CANCEL is keyed alike so that find_invite, swapping the method, finds a re-INVITE too.
    to_tag = None if method == "INVITE" or method == "CANCEL" else request.to.tag
    return (
        request.uri,
        to_tag,
        request.from_.tag,
        request.call_id,
        request.cseq.seq,
        str(via),
        method,
    )


class ServerTransaction:
    """A request we received and have not answered finally yet (or an INVITE waiting for its ACK)."""

    __slots__ = (
        "_deadline_g",
        "_deadline_h",
        "_interval",
        "_layer",
        "_queued",
        "key",
        "last_response",
        "reliable",
        "remote",
        "request",
        "state",
    )

    def __init__(
        self, layer: TransactionLayer, key: tuple[Any, ...], request: Request, remote: Remote, reliable: bool
    ) -> None:
        self._layer = layer
        self.key = key
        self.request = request
        self.remote = remote
        self.reliable = reliable
        self.state = State.PROCEEDING if request.method == "INVITE" else State.TRYING
        self.last_response: bytes | None = None
        self._interval = 0.0
        self._deadline_g = 0.0
        # The one live timeout (the TU's answer deadline, then Timer H or L): older heap entries are stale.
        self._deadline_h = 0.0
        self._queued = False

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"

    def respond(self, response: Response, now: float, *, stateless: bool = False) -> None:
        """Send ``response`` and move the state machine on; the layer keeps it for retransmissions.

        ``stateless``: keep nothing after a final response, so a retransmission is a new request for the
        TU. Only for answers the TU can give again at no cost (a challenge, a refusal); an INVITE is always
        answered statefully, since its final response waits for an ACK.
        """
        self._layer._respond(self, response, now, stateless)

    def reply(
        self, status: int, reason: str | None = None, *, now: float, stateless: bool = False, **kwargs: Any
    ) -> Response:
        """Build a response to this request (a To tag is added) and send it.

        ``now`` is required: a final answer to an INVITE starts Timers G and H from it.
        """
        response = make_response(self.request, status, reason, to_tag=self._layer.local_tag, **kwargs)
        self._layer._respond(self, response, now, stateless)
        return response

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.request.method} {self.state.value} {self.remote!r}>"


class ClientTransaction:
    """A request we sent and whose final response (or timeout) we wait for."""

    __slots__ = (
        "_interval",
        "_layer",
        "_next_retransmit",
        "ack",
        "data",
        "deadline",
        "key",
        "reliable",
        "remote",
        "request",
        "response",
        "state",
        "user_data",
    )

    def __init__(
        self, layer: TransactionLayer, request: Request, remote: Remote, reliable: bool, now: float
    ) -> None:
        self._layer = layer
        self.request = request
        self.remote = remote
        self.reliable = reliable
        branch = request.via.branch
        if branch is None:
            raise SipError("Client request without a Via branch")
        self.key = (branch, request.cseq.method)
        self.state = State.CALLING if request.method == "INVITE" else State.TRYING
        self.data = request.serialize()
        self.response: Response | None = None
        self.ack: bytes | None = None
        self.user_data: Any = None
        t = layer.timers
        self._interval = t.t1
        self._next_retransmit = now + t.t1
        self.deadline = now + t.b

    @property
    def is_invite(self) -> bool:
        return self.request.method == "INVITE"

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.request.method} {self.state.value} {self.remote!r}>"


@dataclass(slots=True, frozen=True)
class ResponseReceived:
    """A response for one of our client transactions. ``final`` is False for 1xx."""

    transaction: ClientTransaction
    response: Response

    @property
    def final(self) -> bool:
        return self.response.status >= 200


@dataclass(slots=True, frozen=True)
class TransactionTimeout:
    """No final response in time (Timer B/F), or an INVITE we answered 2xx/3xx+ never saw its ACK (H)."""

    transaction: ClientTransaction | ServerTransaction


@dataclass(slots=True, frozen=True)
class AckReceived:
    """The ACK for a 2xx we sent (it is a new transaction by the rules, so the dialog owns it)."""

    request: Request
    remote: Remote


@dataclass(slots=True, frozen=True)
class StrayResponse:
    """A response that matches no client transaction (a late or foreign one): logged, never an error."""

    response: Response
    remote: Remote


Event = ResponseReceived | TransactionTimeout | AckReceived | StrayResponse

_TIMER_RETRANSMIT = 0  # A, E, G, and 2xx retransmission
_TIMER_TIMEOUT = 1  # B, F, H, M, and the TU's answer deadline
_TIMER_END = 2  # D, I, K: absorb stragglers then forget


class TransactionLayer:
    """All transactions of one SIP endpoint.

    ``max_transactions`` (0: no cap) bounds the server transactions kept, answered or not; a new request
    over it gets a stateless 503 with ``Retry-After: retry_after`` and is counted in ``overloaded``.
    """

    def __init__(
        self,
        timers: Timers | None = None,
        local_tag: str = "",
        *,
        max_transactions: int = 0,
        retry_after: int = 10,
    ) -> None:
        self.timers = timers or Timers()
        self.local_tag = local_tag or None
        self.max_transactions = max_transactions
        self.retry_after = retry_after
        self._server: dict[tuple[Any, ...], ServerTransaction] = {}
        # Completed non-INVITE server transactions: key -> (final response bytes, remote).
        self._completed: dict[tuple[Any, ...], tuple[bytes, Remote]] = {}
        # One entry per non-INVITE request, at arrival + 64*T1: the client gives up (Timer F) by then, so
        # no retransmission can follow and the completed entry (or an unanswered transaction) can go.
        # The interval is the same for all, so the deque stays sorted and needs no heap.
        self._expiry: deque[tuple[float, tuple[Any, ...]]] = deque()
        # New non-INVITE transactions whose expiry entry is not queued yet: most are answered before the
        # adapter next takes the output and then need none (stateless, TCP) or one from the answer.
        self._fresh: list[ServerTransaction] = []
        # 2xx-answered INVITEs by (Call-ID, CSeq number), to stop retransmitting when the ACK comes.
        self._accepted: dict[tuple[str | None, int], ServerTransaction] = {}
        self._client: dict[tuple[str, str], ClientTransaction] = {}
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = 0
        self._output: list[tuple[bytes, Remote]] = []
        self._events: deque[Event] = deque()
        self.absorbed = 0
        self.timeouts = 0
        self.overloaded = 0

    # -- adapter interface ---------------------------------------------------------------------------

    def take_output(self) -> list[tuple[bytes, Remote]]:
        """Bytes to send and where, in order; the list is handed over, not copied."""
        if self._fresh:
            self._queue_unanswered()
        out = self._output
        if out:
            self._output = []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def next_deadline(self) -> float | None:
        # Called after every datagram by the adapter, so no temporary list.
        if self._fresh:
            self._queue_unanswered()
        heap, expiry = self._heap, self._expiry
        if heap:
            return min(heap[0][0], expiry[0][0]) if expiry else heap[0][0]
        return expiry[0][0] if expiry else None

    @property
    def server_count(self) -> int:
        return len(self._server) + len(self._completed)

    @property
    def client_count(self) -> int:
        return len(self._client)

    # -- server side ---------------------------------------------------------------------------------

    def receive_request(
        self, request: Request, remote: Remote, reliable: bool, now: float
    ) -> ServerTransaction | None:
        """Match ``request``; return a new transaction for the TU, or None when the layer handled it.

        Retransmissions are absorbed here (the last response is resent). An ACK for a 2xx becomes an
        :class:`AckReceived` event; an ACK for a non-2xx ends its INVITE transaction.
        """
        key = transaction_key(request)
        done = self._completed.get(key)
        if done is not None:
            self.absorbed += 1
            self._output.append(done)
            return None
        txn = self._server.get(key)
        if txn is not None:
            if request.method == "ACK":
                if txn.state is State.ACCEPTED:
                    # An ACK for our 2xx that reuses the INVITE's branch (RFC 2543 peers, and the §17.2.3
                    # key of cookie-less ones) still ends the 2xx retransmissions and belongs to the dialog.
                    self._end_server(txn)
                    self._events.append(AckReceived(request, remote))
                else:
                    self._ack_for_final(txn, now)
            else:
                self.absorbed += 1
                if txn.last_response is not None:
                    self._output.append((txn.last_response, remote))
            return None
        if request.method == "ACK":
            accepted = self._accepted.pop((request.call_id, request.cseq.seq), None)
            if accepted is not None:
                accepted.state = State.TERMINATED
                self._server.pop(accepted.key, None)
            self._events.append(AckReceived(request, remote))
            return None
        if self.max_transactions and len(self._server) + len(self._completed) >= self.max_transactions:
            self.overloaded += 1
            busy = make_response(request, 503, to_tag=self.local_tag,
                                 headers=[("Retry-After", str(self.retry_after))])
            self._output.append((busy.serialize(), remote))
            return None
        txn = ServerTransaction(self, key, request, remote, reliable)
        self._server[key] = txn
        if request.method == "INVITE":
            # Answer at once: our TU may take longer than 200 ms to reach the device (§17.2.1).
            trying = make_response(request, 100).serialize()
            txn.last_response = trying
            self._output.append((trying, remote))
            # A TU that never answers must not leak the transaction.
            txn._deadline_h = now + self.timers.b
            self._schedule(txn._deadline_h, _TIMER_TIMEOUT, txn)
        else:
            txn._deadline_h = now + self.timers.b
            self._fresh.append(txn)
        return txn

    def find_invite(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE transaction a CANCEL refers to (same branch, §9.2)."""
        key = transaction_key(cancel)
        return self._server.get((*key[:-1], "INVITE"))

    def _queue_unanswered(self) -> None:
        """Queue the expiry of new transactions still waiting for their TU (it answers from a task)."""
        for txn in self._fresh:
            if txn.state is State.TRYING or txn.state is State.PROCEEDING:
                self._queue_expiry(txn, txn._deadline_h)
        self._fresh.clear()

    def _queue_expiry(self, txn: ServerTransaction, when: float) -> None:
        expiry = self._expiry
        # Entries queued late (by one flush) may precede a later one by a moment: keep the FIFO sorted,
        # at the cost of that moment more.
        if expiry and expiry[-1][0] > when:
            when = expiry[-1][0]
        expiry.append((when, txn.key))
        txn._queued = True

    def _respond(self, txn: ServerTransaction, response: Response, now: float, stateless: bool = False) -> None:
        if txn.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED, State.ACCEPTED):
            raise SipError(f"Transaction already answered: {txn!r}")
        data = response.serialize()
        sent = (data, txn.remote)
        self._output.append(sent)
        status = response.status
        if status < 200:
            txn.last_response = data
            txn.state = State.PROCEEDING
            return
        t = self.timers
        if not txn.is_invite:
            del self._server[txn.key]
            txn.state = State.TERMINATED
            if not txn.reliable and not stateless:
                # The tuple just queued for sending is the one kept: one allocation less per request.
                self._completed[txn.key] = sent
                if not txn._queued:
                    self._queue_expiry(txn, now + t.b)
            return
        txn.last_response = data
        if status < 300:
            # RFC 6026: keep retransmitting the 2xx (UDP) and absorbing INVITE retransmissions until the
            # ACK arrives or Timer L (64*T1) ends it.
            txn.state = State.ACCEPTED
            self._accepted[(txn.request.call_id, txn.request.cseq.seq)] = txn
        else:
            txn.state = State.COMPLETED
        if not txn.reliable:
            txn._interval = t.t1
            txn._deadline_g = now + t.t1
            self._schedule(txn._deadline_g, _TIMER_RETRANSMIT, txn)
        txn._deadline_h = now + t.b
        self._schedule(txn._deadline_h, _TIMER_TIMEOUT, txn)

    def _ack_for_final(self, txn: ServerTransaction, now: float) -> None:
        if txn.state is State.COMPLETED:
            txn.state = State.CONFIRMED
            self._schedule(now + (0.0 if txn.reliable else self.timers.t4), _TIMER_END, txn)

    # -- client side ---------------------------------------------------------------------------------

    def send_request(
        self, request: Request, remote: Remote, reliable: bool, now: float, user_data: Any = None
    ) -> ClientTransaction:
        """Start a client transaction; its first transmission is in the output at once."""
        txn = ClientTransaction(self, request, remote, reliable, now)
        txn.user_data = user_data
        self._client[txn.key] = txn
        self._output.append((txn.data, remote))
        if not reliable:
            self._schedule(txn._next_retransmit, _TIMER_RETRANSMIT, txn.key)
        self._schedule(txn.deadline, _TIMER_TIMEOUT, txn.key)
        return txn

    def send_stateless(self, data: bytes, remote: Remote) -> None:
        """Send bytes outside any transaction (the ACK for a 2xx, a CRLF keep-alive)."""
        self._output.append((data, remote))

    def receive_response(self, response: Response, remote: Remote, now: float) -> None:
        """Match a response to its client transaction and raise the events the TU needs (§17.1.3)."""
        try:
            branch = response.via.branch
            key = (branch or "", response.cseq.method)
        except SipError:
            self._events.append(StrayResponse(response, remote))
            return
        txn = self._client.get(key)
        if txn is None or len(response.vias) > 1:
            # More than one Via on a response that reaches a UA means it was not meant for us (§8.1.3.3).
            self._events.append(StrayResponse(response, remote))
            return
        status = response.status
        t = self.timers
        if status < 200:
            if txn.state in (State.CALLING, State.TRYING):
                txn.state = State.PROCEEDING
                if not txn.is_invite:
                    txn._interval = t.t2
            if txn.state is State.PROCEEDING:
                txn.response = response
                self._events.append(ResponseReceived(txn, response))
            return
        if txn.is_invite:
            if status >= 300:
                if txn.ack is None:
                    txn.ack = _ack_for(txn.request, response).serialize()
                self._output.append((txn.ack, txn.remote))
                if txn.state is State.COMPLETED:
                    return
                txn.state = State.COMPLETED
                self._schedule(now + (0.0 if txn.reliable else 32.0), _TIMER_END, txn.key)
            else:
                # 2xx retransmissions reach the TU again so the dialog can re-send its ACK (RFC 6026).
                first = txn.state is not State.ACCEPTED
                txn.state = State.ACCEPTED
                if first:
                    self._schedule(now + t.b, _TIMER_END, txn.key)
            txn.response = response
            self._events.append(ResponseReceived(txn, response))
            return
        if txn.state is State.COMPLETED:
            return
        txn.state = State.COMPLETED
        txn.response = response
        # Timer K only absorbs retransmitted responses, which the key alone matches: the request's bytes
        # need not wait with it (thousands of queries a second after a registration burst add up).
        txn.data = b""
        self._events.append(ResponseReceived(txn, response))
        self._schedule(now + (0.0 if txn.reliable else t.t4), _TIMER_END, txn.key)

    def cancel_request(self, txn: ClientTransaction) -> Request:
        """A CANCEL for a pending INVITE (§9.1): same branch, Call-ID, From, To, CSeq number."""
        invite = txn.request
        headers = [(n, v) for n, v in invite.headers if n in ("Via", "Route", "From", "To", "Call-ID")]
        headers.insert(0, ("Max-Forwards", "70"))
        headers.append(("CSeq", f"{invite.cseq.seq} CANCEL"))
        return Request("CANCEL", invite.uri, headers)

    def forget(self, txn: ClientTransaction) -> None:
        """Stop a client transaction early (its TU no longer cares)."""
        txn.state = State.TERMINATED
        self._client.pop(txn.key, None)

    def transport_failed(self, remote_matches: Callable[[Remote], bool]) -> list[ClientTransaction]:
        """End the client transactions whose destination proved unreachable (§8.1.3.1: treat as 503).

        The caller reports them to their TUs; waiting for Timer B/F would only delay the same answer.
        """
        failed = [txn for txn in self._client.values() if remote_matches(txn.remote)]
        for txn in failed:
            self.forget(txn)
        return failed

    # -- timers --------------------------------------------------------------------------------------

    def _schedule(self, when: float, kind: int, txn: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, txn))

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``; cancelled timers are skipped by checking the state."""
        if self._fresh:
            self._queue_unanswered()
        expiry = self._expiry
        completed = self._completed
        server = self._server
        while expiry and expiry[0][0] <= now:
            key = expiry.popleft()[1]
            if completed.pop(key, None) is None:
                stuck = server.get(key)
                # A request answered statelessly may be back under the same key as a newer transaction.
                if stuck is not None and stuck._deadline_h <= now:
                    del server[key]
                    stuck.state = State.TERMINATED
                    self.timeouts += 1
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, kind, entry = heapq.heappop(heap)
            if isinstance(entry, ServerTransaction):
                self._server_timer(entry, kind, now)
            else:
                # Client timers hold the key, not the transaction: a finished one (and its request and
                # response) must be freed at once, not when its last Timer F entry comes up 32 s later.
                client = self._client.get(entry)
                if client is not None:
                    self._client_timer(client, kind, now)

    def _server_timer(self, txn: ServerTransaction, kind: int, now: float) -> None:
        state = txn.state
        if state is State.TERMINATED:
            return
        if kind == _TIMER_RETRANSMIT:
            if state in (State.COMPLETED, State.ACCEPTED) and now >= txn._deadline_g and txn.last_response:
                self._output.append((txn.last_response, txn.remote))
                txn._interval = min(2 * txn._interval, self.timers.t2)
                txn._deadline_g = now + txn._interval
                self._schedule(txn._deadline_g, _TIMER_RETRANSMIT, txn)
            return
        if kind == _TIMER_TIMEOUT:
            if now < txn._deadline_h:
                return
            if state in (State.TRYING, State.PROCEEDING, State.COMPLETED, State.ACCEPTED):
                self.timeouts += 1
                if state in (State.COMPLETED, State.ACCEPTED):
                    self._events.append(TransactionTimeout(txn))
                self._end_server(txn)
            return
        self._end_server(txn)

    def _end_server(self, txn: ServerTransaction) -> None:
        txn.state = State.TERMINATED
        if self._server.get(txn.key) is txn:
            del self._server[txn.key]
        if txn.is_invite:
            self._accepted.pop((txn.request.call_id, txn.request.cseq.seq), None)

    def _client_timer(self, txn: ClientTransaction, kind: int, now: float) -> None:
        state = txn.state
        if state is State.TERMINATED or self._client.get(txn.key) is not txn:
            return
        if kind == _TIMER_RETRANSMIT:
            if state in (State.CALLING, State.TRYING, State.PROCEEDING) and not (
                txn.is_invite and state is State.PROCEEDING
            ):
                self._output.append((txn.data, txn.remote))
                txn._interval = txn._interval * 2 if txn.is_invite else min(2 * txn._interval, self.timers.t2)
                txn._next_retransmit = now + txn._interval
                self._schedule(txn._next_retransmit, _TIMER_RETRANSMIT, txn.key)
            return
        if kind == _TIMER_TIMEOUT:
            if state in (State.CALLING, State.TRYING, State.PROCEEDING):
                self.timeouts += 1
                txn.state = State.TERMINATED
                del self._client[txn.key]
                self._events.append(TransactionTimeout(txn))
            return
        txn.state = State.TERMINATED
        del self._client[txn.key]


def _ack_for(invite: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a 3xx-6xx (§17.1.1.3): same branch, To from the response."""
    headers: list[tuple[str, str]] = [("Via", invite.get_all("Via")[0])]
    headers += [(n, v) for n, v in invite.headers if n == "Route"]
    headers += [
        ("Max-Forwards", "70"),
        ("From", invite.get("From") or ""),
        ("To", response.get("To") or ""),
        ("Call-ID", invite.call_id or ""),
        ("CSeq", f"{invite.cseq.seq} ACK"),
    ]
    return Request("ACK", invite.uri, headers)

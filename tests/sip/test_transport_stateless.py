"""Bounded server-transaction memory, driven through the sans-IO core with bytes and fake times.

A TU may answer a non-INVITE statelessly (RFC 3261 §8.2.7): nothing is kept and a retransmission comes
back to the TU. And ``max_transactions`` caps what is kept: over it a new request gets a stateless 503.
"""

from __future__ import annotations

import gc
import tracemalloc

from gbgw.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from gbgw.sip.message import Request, Response, parse_message
from gbgw.sip.stateless import read_simple
from gbgw.sip.transaction import ServerTransaction, State, Timers, TransactionLayer

T1 = 0.5
UAC = Peer("UDP", "198.51.100.20", 5060)


def register_bytes(n: int = 1, method: str = "REGISTER", host: str = "198.51.100.20") -> bytes:
    return (
        f"{method} sip:34020000002000000001@3402000000 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:5060;rport;branch=z9hG4bK{n:016x}\r\n"
        f"From: <sip:34020000001320000001@3402000000>;tag=t{n}\r\n"
        "To: <sip:34020000001320000001@3402000000>\r\n"
        f"Call-ID: {n}@{host}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
        "Expires: 3600\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def parsed(data: bytes) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def status_of(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


def new_layer(**kw: int) -> TransactionLayer:
    return TransactionLayer(Timers(t1=T1), local_tag="gw", **kw)


def fire_until(layer: TransactionLayer, until: float) -> None:
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        layer.take_output()


def test_a_stateless_answer_keeps_nothing_and_a_retransmission_reaches_the_tu_again() -> None:
    layer = new_layer()
    txn = layer.receive_request(parsed(register_bytes()), UAC, False, now=0.0)
    assert txn is not None
    txn.reply(401, now=0.0, stateless=True, headers=[("WWW-Authenticate", 'Digest realm="3402000000"')])
    [(challenge, remote)] = layer.take_output()
    assert status_of(challenge).status == 401 and remote == UAC
    assert layer.server_count == 0
    assert layer.next_deadline() is None  # no Timer J entry either

    again = layer.receive_request(parsed(register_bytes()), UAC, False, now=0.5)
    assert isinstance(again, ServerTransaction)  # not absorbed: the TU answers it again
    assert layer.absorbed == 0


def test_a_stateful_answer_still_absorbs_retransmissions() -> None:
    layer = new_layer()
    txn = layer.receive_request(parsed(register_bytes()), UAC, False, now=0.0)
    assert txn is not None
    txn.reply(200, now=0.0)
    [(final, _)] = layer.take_output()
    assert layer.receive_request(parsed(register_bytes()), UAC, False, now=0.5) is None
    assert layer.take_output() == [(final, UAC)]
    fire_until(layer, 64 * T1)
    assert layer.server_count == 0


def test_a_late_stateless_answer_does_not_let_the_old_expiry_end_a_newer_transaction() -> None:
    layer = new_layer()
    first = layer.receive_request(parsed(register_bytes()), UAC, False, now=0.0)
    assert first is not None
    layer.take_output()  # the TU answers from a task: the unanswered request's expiry is queued now
    first.reply(401, now=1.0, stateless=True)
    layer.take_output()
    second = layer.receive_request(parsed(register_bytes()), UAC, False, now=20.0)
    assert second is not None
    layer.take_output()
    fire_until(layer, 64 * T1 + 0.1)
    assert second.state is State.TRYING and layer.timeouts == 0  # its own deadline is 20 s + 64*T1
    fire_until(layer, 20.0 + 64 * T1)
    assert second.state is State.TERMINATED and layer.timeouts == 1


def test_an_unanswered_request_is_still_freed_after_64_t1() -> None:
    layer = new_layer()
    txn = layer.receive_request(parsed(register_bytes()), UAC, False, now=2.0)
    assert txn is not None
    assert layer.next_deadline() == 2.0 + 64 * T1
    fire_until(layer, 2.0 + 64 * T1)
    assert layer.server_count == 0 and layer.timeouts == 1


def test_an_invite_is_answered_statefully_even_when_asked_otherwise() -> None:
    layer = new_layer()
    txn = layer.receive_request(parsed(register_bytes(method="INVITE")), UAC, False, now=0.0)
    assert txn is not None
    layer.take_output()  # 100 Trying
    txn.reply(486, now=0.0, stateless=True)
    layer.take_output()
    assert txn.state is State.COMPLETED  # waits for its ACK, retransmitting on Timer G
    assert layer.server_count == 1


def test_over_the_cap_a_new_request_gets_a_stateless_503_with_retry_after() -> None:
    layer = new_layer(max_transactions=2, retry_after=7)
    kept = [layer.receive_request(parsed(register_bytes(n)), UAC, False, now=0.0) for n in (1, 2)]
    assert all(kept)
    assert layer.receive_request(parsed(register_bytes(3)), UAC, False, now=0.0) is None
    [(busy, remote)] = layer.take_output()
    response = status_of(busy)
    assert response.status == 503 and response.get("Retry-After") == "7" and remote == UAC
    assert layer.overloaded == 1 and layer.server_count == 2
    # A retransmission of a kept one is still matched (absorbed), not refused.
    assert layer.receive_request(parsed(register_bytes(1)), UAC, False, now=0.5) is None
    assert layer.take_output() == [] and layer.overloaded == 1
    # An ACK is never answered, cap or not.
    ack = parsed(register_bytes(4, method="ACK"))
    assert layer.receive_request(ack, UAC, False, now=0.5) is None
    assert layer.take_output() == []
    # Room again once one is answered statelessly.
    first = kept[0]
    assert first is not None
    first.reply(401, now=1.0, stateless=True)
    layer.take_output()
    assert layer.receive_request(parsed(register_bytes(5)), UAC, False, now=1.0) is not None


def test_the_endpoint_passes_its_cap_to_the_layer() -> None:
    endpoint = SipEndpoint(EndpointConfig(max_transactions=1, retry_after=3))
    assert endpoint.receive(register_bytes(1), UAC, now=0.0) is not None
    assert endpoint.receive(register_bytes(2), UAC, now=0.0) is None
    [(busy, _)] = endpoint.transactions.take_output()
    assert status_of(busy).status == 503 and status_of(busy).get("Retry-After") == "3"
    assert endpoint.transactions.overloaded == 1


def test_a_flood_of_stateless_challenges_retains_no_memory() -> None:
    """Issue 10: 80,000 REGISTERs at 4,000/s took RSS from 50 to 132 MB (~1 KB kept per 401 for 32 s)."""
    count, rate = 5_000, 4000.0
    endpoint = SipEndpoint()
    layer = endpoint.transactions
    wires = [register_bytes(n, host=f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}") for n in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n, data in enumerate(wires):
            now = n / rate
            txn = endpoint.receive(data, UAC, now)
            assert txn is not None
            txn.reply(401, now=now, stateless=True, headers=[("WWW-Authenticate", 'Digest realm="x", nonce="y"')])
            layer.take_output()
            layer.next_deadline()
        del txn
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert layer.server_count == 0
    print(f"stateless 401: {retained / count:.1f} bytes retained per request")
    assert retained / count < 16


# -- answers straight from the bytes (sip.stateless) and the endpoint's stateless handler ----------------

KEEPALIVE_BODY = b"<?xml version=\"1.0\"?>\r\n<Notify><CmdType>Keepalive</CmdType><SN>1</SN></Notify>\r\n"


def message_bytes(branch: str = "z9hG4bKka1", via_host: str = "198.51.100.20", extra: str = "",
                  body: bytes = KEEPALIVE_BODY, length: int | None = None, via_params: str = ";rport") -> bytes:
    return (
        "MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {via_host}:5060{via_params};branch={branch}\r\n"
        "From: <sip:34020000001320000001@3402000000>;tag=f1\r\n"
        "To: <sip:34020000002000000001@3402000000>\r\n"
        "Call-ID: ka-1@198.51.100.20\r\nCSeq: 20 MESSAGE\r\nMax-Forwards: 70\r\n"
        f"{extra}Content-Type: Application/MANSCDP+xml\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    ).encode() + body


def test_a_plain_request_is_read_and_answered_with_the_headers_a_response_copies() -> None:
    simple = read_simple(message_bytes(), b"MESSAGE")
    assert simple is not None and simple.body == KEEPALIVE_BODY
    raw = simple.answer(UAC, b"gw")
    assert raw.endswith(b"\r\nContent-Length: 0\r\n\r\n")
    answer = status_of(raw)
    assert answer.status == 200
    assert answer.call_id == "ka-1@198.51.100.20"
    assert answer.cseq.seq == 20 and answer.cseq.method == "MESSAGE"
    assert answer.to.tag == "gw" and answer.from_.tag == "f1"
    assert answer.via.branch == "z9hG4bKka1" and answer.via.params["rport"] == "5060"
    assert "received" not in answer.via.params  # sent-by is the source address


def test_the_answer_is_stamped_like_the_full_path_behind_nat() -> None:
    behind_nat = Peer("UDP", "203.0.113.7", 40123)
    fast = status_of(read_simple(message_bytes(via_host="192.168.1.64"), b"MESSAGE").answer(behind_nat, b"gw"))  # type: ignore[union-attr]
    endpoint = SipEndpoint(EndpointConfig(timers=Timers(t1=T1)))
    txn = endpoint.receive(message_bytes(via_host="192.168.1.64"), behind_nat, 0.0)
    assert txn is not None
    full = txn.reply(200, now=0.0)
    assert fast.get("Via") == full.get("Via")
    assert fast.via.params["received"] == "203.0.113.7" and fast.via.params["rport"] == "40123"


def test_anything_unusual_is_left_to_the_full_path() -> None:
    unusual = [
        message_bytes().replace(b"MESSAGE sip:", b"REGISTER sip:", 1),
        message_bytes(length=3),
        message_bytes(extra="Require: 100rel\r\n"),
        message_bytes().replace(b"To: <sip:34020000002000000001@3402000000>", b"To: <sip:x@y>;tag=in-dialog"),
        message_bytes().replace(b"CSeq: 20 MESSAGE", b"CSeq: 20 NOTIFY"),
        message_bytes(extra="Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKproxy\r\n"),
        message_bytes(extra="v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKproxy\r\n"),
        message_bytes(branch="z9hG4bKa, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb"),
        message_bytes(branch="rfc2543-style"),
        message_bytes(via_params=";rport=1234"),
        message_bytes(via_params=";rport;received=10.0.0.9"),
        message_bytes().replace(b"From: <sip:34020000001320000001@3402000000>;tag=f1\r\n",
                                b"From: <sip:34020000001320000001@3402000000>\r\n ;tag=f1\r\n"),
        message_bytes().replace(b"Call-ID:", b"i:"),
        message_bytes().replace(b"\r\n\r\n", b"\r\n"),
    ]
    for data in unusual:
        assert read_simple(data, b"MESSAGE") is None, data
    # Without force_rport a request without rport is answered to its Via port, which only the full path does.
    assert read_simple(message_bytes(via_params=""), b"MESSAGE", force_rport=False) is None
    assert read_simple(message_bytes(via_params=""), b"MESSAGE") is not None


def test_a_stateless_handler_keeps_no_transaction_and_answers_a_retransmission_again() -> None:
    endpoint = SipEndpoint(EndpointConfig(timers=Timers(t1=T1)))
    seen: list[bytes] = []

    def keepalives(data: bytes, source: Peer, now: float) -> bytes | None:
        simple = read_simple(data, b"MESSAGE")
        if simple is None or b"Keepalive" not in simple.body:
            return None
        seen.append(data)
        return simple.answer(source, endpoint.local_tag.encode())

    endpoint.stateless = keepalives
    layer = endpoint.transactions
    data = message_bytes()
    assert endpoint.receive(data, UAC, 0.0) is None
    [(first, remote)] = layer.take_output()
    assert endpoint.receive(data, UAC, 0.5) is None  # the retransmission, same branch
    [(second, _)] = layer.take_output()
    assert first == second and remote == UAC
    assert status_of(first).to.tag == endpoint.local_tag
    assert len(seen) == 2  # the TU saw both: refreshing liveness twice is harmless
    assert layer.server_count == 0 and layer.absorbed == 0 and layer.next_deadline() is None
    assert endpoint.counters.stateless == 2 and endpoint.counters.received == 2
    # Not a keepalive: the full path, a transaction.
    txn = endpoint.receive(message_bytes(branch="z9hG4bKother", body=b"<Query/>"), UAC, 1.0)
    assert isinstance(txn, ServerTransaction)
    assert endpoint.counters.stateless == 2 and endpoint.counters.received == 3


def test_a_failing_stateless_handler_costs_only_its_speed() -> None:
    endpoint = SipEndpoint(EndpointConfig(timers=Timers(t1=T1)))

    def broken(data: bytes, source: Peer, now: float) -> bytes | None:
        raise RuntimeError("bug")

    endpoint.stateless = broken
    assert isinstance(endpoint.receive(message_bytes(), UAC, 0.0), ServerTransaction)

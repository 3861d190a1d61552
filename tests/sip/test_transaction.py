"""Tests for sip.transaction: RFC 3261 §17 (and RFC 6026) driven with parsed messages and fake times.

No sockets and no sleeps: a test feeds messages with an explicit ``now``, fires timers at the exact
deadlines the layer reports, and reads what the layer wants sent. Expected retransmission times are
derived in each test from the RFC's rule (an interval starting at T1 that doubles, capped at T2 where the
RFC caps it), not copied from the code.
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from gbgw.sip.endpoint import Peer
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request, Response, make_response, parse_message
from gbgw.sip.transaction import (
    AckReceived,
    ResponseReceived,
    ServerTransaction,
    State,
    StrayResponse,
    Timers,
    TransactionLayer,
    TransactionTimeout,
)

T1, T2, T4 = 0.5, 4.0, 5.0
UAC = Peer("UDP", "192.168.1.64", 5060)
UAC_TCP = Peer("TCP", "192.168.1.64", 40000, conn=7)
SERVER_URI = "sip:34020000002000000001@3402000000"


def sip_request(
    method: str = "MESSAGE",
    *,
    branch: str | None = "z9hG4bK-1",
    cseq: int = 1,
    call_id: str = "call-1@192.168.1.64",
    from_tag: str = "dev-tag",
    to_tag: str | None = None,
    via_host: str = "192.168.1.64",
    uri: str = SERVER_URI,
    transport: str = "UDP",
) -> Request:
    """A request as a camera sends it, parsed from bytes like one off the wire."""
    branch_param = "" if branch is None else f";branch={branch}"
    to = f"<{SERVER_URI}>" + ("" if to_tag is None else f";tag={to_tag}")
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {via_host}:5060;rport{branch_param}\r\n"
        f"From: <sip:34020000001320000001@3402000000>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def wire(response: Response) -> Response:
    """The response as the other side reads it (serialized, then parsed)."""
    msg = parse_message(response.serialize())
    assert isinstance(msg, Response)
    return msg


def new_layer(timers: Timers | None = None) -> TransactionLayer:
    return TransactionLayer(timers or Timers(t1=T1, t2=T2, t4=T4), local_tag="gw-tag")


def fire_until(layer: TransactionLayer, until: float) -> list[tuple[float, bytes]]:
    """Fire every timer due up to ``until`` at its own deadline; return (time, bytes) sent."""
    sent: list[tuple[float, bytes]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until + 1e-9:
        layer.handle_timer(deadline)
        sent += [(deadline, data) for data, _ in layer.take_output()]
    return sent


def events(layer: TransactionLayer) -> list[object]:
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def backoff(first: float, cap: float | None, until: float) -> list[float]:
    """Send times of a retransmission timer that starts at ``first``, doubles and is capped at ``cap``."""
    times, t, interval = [], 0.0, first
    while t + interval < until:
        t += interval
        times.append(t)
        interval = 2 * interval if cap is None else min(2 * interval, cap)
    return times


def sent_response(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response)
    return msg


# -- server, non-INVITE (§17.2.2) ---------------------------------------------------------------------


def test_server_retransmission_after_final_gets_the_same_bytes() -> None:
    layer = new_layer()
    txn = layer.receive_request(sip_request(), UAC, False, now=0.0)
    assert isinstance(txn, ServerTransaction)
    assert layer.take_output() == []  # a non-INVITE gets no automatic 100
    txn.reply(200, now=0.1)
    [(final, remote)] = layer.take_output()
    assert remote == UAC and sent_response(final).status == 200

    assert layer.receive_request(sip_request(), UAC, False, now=0.6) is None
    assert layer.take_output() == [(final, UAC)]
    assert layer.absorbed == 1


def test_server_retransmission_before_answer_is_absorbed_then_gets_the_provisional() -> None:
    layer = new_layer()
    txn = layer.receive_request(sip_request(), UAC, False, now=0.0)
    assert txn is not None
    assert layer.receive_request(sip_request(), UAC, False, now=0.5) is None
    assert layer.take_output() == []  # Trying: absorbed silently

    txn.reply(100, now=0.6)
    [(provisional, _)] = layer.take_output()
    assert txn.state is State.PROCEEDING
    assert layer.receive_request(sip_request(), UAC, False, now=1.5) is None
    assert layer.take_output() == [(provisional, UAC)]

    txn.reply(200, now=2.0)
    [(final, _)] = layer.take_output()
    assert layer.receive_request(sip_request(), UAC, False, now=2.5) is None
    assert layer.take_output() == [(final, UAC)]


def test_server_completed_state_expires_after_64_t1() -> None:
    layer = new_layer()
    txn = layer.receive_request(sip_request(), UAC, False, now=0.0)
    assert txn is not None
    txn.reply(200, now=0.0)
    layer.take_output()
    assert layer.server_count == 1
    fire_until(layer, 64 * T1 - 0.01)
    assert layer.server_count == 1
    fire_until(layer, 64 * T1)
    assert layer.server_count == 0
    assert layer.next_deadline() is None
    # The client gave up (Timer F) by now, so the same request would be a new transaction.
    assert layer.receive_request(sip_request(), UAC, False, now=64 * T1 + 1) is not None


def test_server_over_tcp_keeps_no_completed_state() -> None:
    layer = new_layer()
    txn = layer.receive_request(sip_request(transport="TCP"), UAC_TCP, True, now=0.0)
    assert txn is not None
    txn.reply(200, now=0.0)
    assert len(layer.take_output()) == 1
    assert layer.server_count == 0


def test_server_transaction_the_tu_never_answers_is_freed_after_64_t1() -> None:
    layer = new_layer()
    txn = layer.receive_request(sip_request(), UAC, False, now=3.0)
    assert txn is not None
    fire_until(layer, 3.0 + 64 * T1 - 0.01)
    assert layer.server_count == 1
    fire_until(layer, 3.0 + 64 * T1)
    assert layer.server_count == 0
    assert layer.timeouts == 1
    with pytest.raises(SipError):
        txn.reply(200, now=40.0)


def test_server_refuses_a_second_final_response() -> None:
    layer = new_layer()
    txn = layer.receive_request(sip_request(), UAC, False, now=0.0)
    assert txn is not None
    txn.reply(200, now=0.0)
    with pytest.raises(SipError):
        txn.reply(500, now=0.1)


# -- server, INVITE (§17.2.1, RFC 6026) ---------------------------------------------------------------


def invite_server(layer: TransactionLayer, now: float = 0.0, **kw: object) -> ServerTransaction:
    txn = layer.receive_request(sip_request("INVITE", **kw), UAC, False, now=now)  # type: ignore[arg-type]
    assert txn is not None
    return txn


def test_invite_gets_100_trying_at_once_without_a_to_tag() -> None:
    layer = new_layer()
    invite_server(layer)
    [(data, remote)] = layer.take_output()
    trying = sent_response(data)
    assert trying.status == 100
    assert remote == UAC
    assert trying.to.tag is None
    assert trying.via.branch == "z9hG4bK-1" and trying.cseq == (1, "INVITE")


def test_invite_error_response_retransmitted_on_timer_g_until_ack() -> None:
    layer = new_layer()
    txn = invite_server(layer)
    layer.take_output()
    txn.reply(486, now=0.0)
    [(busy, _)] = layer.take_output()
    sent = fire_until(layer, 12.0)
    # Timer G: T1, then doubling, capped at T2.
    assert [t for t, _ in sent] == pytest.approx(backoff(T1, T2, 12.0))
    assert [t for t, _ in sent] == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5])
    assert all(data == busy for _, data in sent)

    # INVITE retransmitted while Completed: the final response again.
    assert layer.receive_request(sip_request("INVITE"), UAC, False, now=12.2) is None
    assert layer.take_output() == [(busy, UAC)]

    ack = sip_request("ACK", to_tag="gw-tag")
    assert layer.receive_request(ack, UAC, False, now=12.5) is None
    assert txn.state is State.CONFIRMED
    assert events(layer) == []  # the ACK for a non-2xx is hop-by-hop: nothing for the TU
    assert fire_until(layer, 12.5 + T4 - 0.01) == []  # no more retransmissions
    # A retransmitted ACK is absorbed in Confirmed.
    assert layer.receive_request(ack, UAC, False, now=13.0) is None
    assert layer.take_output() == [] and events(layer) == []
    assert layer.server_count == 1
    fire_until(layer, 12.5 + T4)  # Timer I
    assert layer.server_count == 0
    assert txn.state is State.TERMINATED


def test_invite_error_response_without_ack_times_out_on_timer_h() -> None:
    layer = new_layer()
    txn = invite_server(layer, now=0.0)
    # The TU answers late; Timer H counts from the answer, not from the INVITE.
    txn.reply(480, now=2.0)
    fire_until(layer, 2.0 + 64 * T1 - 0.01)
    assert [e for e in events(layer) if isinstance(e, TransactionTimeout)] == []
    assert txn.state is State.COMPLETED
    fire_until(layer, 2.0 + 64 * T1)
    [timeout] = events(layer)
    assert isinstance(timeout, TransactionTimeout) and timeout.transaction is txn
    assert layer.server_count == 0


def test_invite_2xx_retransmitted_until_the_ack_for_2xx() -> None:
    layer = new_layer()
    txn = invite_server(layer)
    layer.take_output()
    txn.reply(200, now=1.0)
    [(ok, _)] = layer.take_output()
    assert txn.state is State.ACCEPTED
    sent = fire_until(layer, 5.0)
    assert [t for t, _ in sent] == pytest.approx([1.0 + t for t in backoff(T1, T2, 4.0)])
    assert all(data == ok for _, data in sent)

    # An INVITE retransmission while Accepted gets the 2xx again and never reaches the TU.
    assert layer.receive_request(sip_request("INVITE"), UAC, False, now=5.1) is None
    assert layer.take_output() == [(ok, UAC)]

    # The ACK for a 2xx is its own transaction (new branch), matched by Call-ID and CSeq.
    ack = sip_request("ACK", branch="z9hG4bK-ack", to_tag="gw-tag")
    assert layer.receive_request(ack, UAC, False, now=5.2) is None
    [received] = events(layer)
    assert isinstance(received, AckReceived) and received.request is ack and received.remote == UAC
    assert txn.state is State.TERMINATED
    assert fire_until(layer, 40.0) == []
    assert events(layer) == []
    assert layer.server_count == 0


def test_ack_for_2xx_reusing_the_invite_branch_still_reaches_the_tu() -> None:
    layer = new_layer()
    txn = invite_server(layer)
    txn.reply(200, now=0.0)
    layer.take_output()
    layer.receive_request(sip_request("ACK", to_tag="gw-tag"), UAC, False, now=0.2)
    assert [type(e) for e in events(layer)] == [AckReceived]
    assert fire_until(layer, 40.0) == []
    assert events(layer) == []


def test_invite_2xx_never_acked_times_out_on_timer_l() -> None:
    layer = new_layer()
    txn = invite_server(layer)
    txn.reply(200, now=1.0)
    fire_until(layer, 1.0 + 64 * T1 - 0.01)
    assert events(layer) == []
    fire_until(layer, 1.0 + 64 * T1)
    [timeout] = events(layer)
    assert isinstance(timeout, TransactionTimeout) and timeout.transaction is txn
    assert layer.server_count == 0


def test_invite_the_tu_never_answers_is_freed() -> None:
    layer = new_layer()
    invite_server(layer)
    fire_until(layer, 64 * T1)
    assert layer.server_count == 0
    assert layer.timeouts == 1


def test_cancel_finds_its_invite() -> None:
    layer = new_layer()
    txn = invite_server(layer)
    cancel = sip_request("CANCEL")
    cancel_txn = layer.receive_request(cancel, UAC, False, now=0.5)
    assert cancel_txn is not None and cancel_txn is not txn  # CANCEL is its own transaction
    assert layer.find_invite(cancel) is txn
    assert layer.find_invite(sip_request("CANCEL", branch="z9hG4bK-other")) is None
    cancel_txn.reply(200, now=0.5)
    txn.reply(487, now=0.5)
    assert [sent_response(d).status for d, _ in layer.take_output()] == [100, 200, 487]


def test_invite_over_tcp_is_not_retransmitted_and_ack_ends_it() -> None:
    layer = new_layer()
    txn = layer.receive_request(sip_request("INVITE", transport="TCP"), UAC_TCP, True, now=0.0)
    assert txn is not None
    txn.reply(486, now=0.0)
    assert len(layer.take_output()) == 2  # 100 and 486
    assert fire_until(layer, 10.0) == []
    layer.receive_request(sip_request("ACK", to_tag="gw-tag", transport="TCP"), UAC_TCP, True, now=10.0)
    fire_until(layer, 10.0)  # Timer I is zero over TCP
    assert layer.server_count == 0


# -- client, non-INVITE (§17.1.2) ---------------------------------------------------------------------


def our_request(method: str = "MESSAGE", branch: str = "z9hG4bK-ours", transport: str = "UDP") -> Request:
    return sip_request(method, branch=branch, via_host="10.0.0.1", call_id="ours@10.0.0.1",
                       from_tag="gw-from", transport=transport)


def test_client_non_invite_timer_e_backs_off_to_t2_then_timer_f() -> None:
    layer = new_layer()
    request = our_request()
    txn = layer.send_request(request, UAC, False, now=0.0)
    [(first, remote)] = layer.take_output()
    assert remote == UAC and first == request.serialize()
    sent = fire_until(layer, 64 * T1)
    expected = backoff(T1, T2, 64 * T1)
    assert expected[:5] == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5])
    assert [t for t, _ in sent] == pytest.approx(expected)
    assert all(data == first for _, data in sent)
    [timeout] = events(layer)
    assert isinstance(timeout, TransactionTimeout) and timeout.transaction is txn
    assert layer.client_count == 0


def test_client_non_invite_retransmits_every_t2_after_a_provisional() -> None:
    layer = new_layer()
    request = our_request()
    layer.send_request(request, UAC, False, now=0.0)
    layer.take_output()
    assert [t for t, _ in fire_until(layer, 0.6)] == pytest.approx([0.5])
    layer.receive_response(wire(make_response(request, 100)), UAC, now=0.7)
    [provisional] = events(layer)
    assert isinstance(provisional, ResponseReceived) and not provisional.final
    # Timer E, already set for 1.5, fires as set; from then on every T2 (§17.1.2.2).
    sent = fire_until(layer, 10.0)
    assert [t for t, _ in sent] == pytest.approx([1.5, 1.5 + T2, 1.5 + 2 * T2])


def test_client_response_matched_by_branch_and_cseq_method() -> None:
    layer = new_layer()
    request = our_request()
    txn = layer.send_request(request, UAC, False, now=0.0)
    other_branch = our_request(branch="z9hG4bK-someone-else")
    layer.receive_response(wire(make_response(other_branch, 200, to_tag="x")), UAC, now=0.1)
    other_method = our_request()
    other_method.set("CSeq", "1 INFO")
    layer.receive_response(wire(make_response(other_method, 200, to_tag="x")), UAC, now=0.1)
    assert [type(e) for e in events(layer)] == [StrayResponse, StrayResponse]

    layer.receive_response(wire(make_response(request, 200, to_tag="x")), UAC, now=0.2)
    [received] = events(layer)
    assert isinstance(received, ResponseReceived) and received.transaction is txn and received.final


def test_client_response_with_two_vias_is_stray() -> None:
    layer = new_layer()
    request = our_request()
    layer.send_request(request, UAC, False, now=0.0)
    response = make_response(request, 200, to_tag="x")
    response.add("Via", "SIP/2.0/UDP 10.9.9.9;branch=z9hG4bK-proxy")
    layer.receive_response(wire(response), UAC, now=0.1)
    assert [type(e) for e in events(layer)] == [StrayResponse]


def test_client_timer_k_absorbs_retransmitted_finals() -> None:
    layer = new_layer()
    request = our_request()
    layer.send_request(request, UAC, False, now=0.0)
    layer.take_output()
    ok = make_response(request, 200, to_tag="x")
    layer.receive_response(wire(ok), UAC, now=1.0)
    layer.receive_response(wire(ok), UAC, now=2.0)
    assert len([e for e in events(layer) if isinstance(e, ResponseReceived)]) == 1
    assert fire_until(layer, 1.0 + T4 - 0.01) == []  # no request retransmission after the final
    assert layer.client_count == 1
    fire_until(layer, 1.0 + T4)
    assert layer.client_count == 0
    layer.receive_response(wire(ok), UAC, now=7.0)
    assert [type(e) for e in events(layer)] == [StrayResponse]


def test_client_over_tcp_never_retransmits() -> None:
    layer = new_layer()
    request = our_request(transport="TCP")
    layer.send_request(request, UAC_TCP, True, now=0.0)
    assert len(layer.take_output()) == 1
    assert fire_until(layer, 64 * T1) == []
    assert [type(e) for e in events(layer)] == [TransactionTimeout]


def test_client_over_tcp_forgets_at_once_after_the_final() -> None:
    layer = new_layer()
    request = our_request(transport="TCP")
    layer.send_request(request, UAC_TCP, True, now=0.0)
    layer.receive_response(wire(make_response(request, 200, to_tag="x")), UAC_TCP, now=0.3)
    fire_until(layer, 0.3)  # Timer K is zero over TCP
    assert layer.client_count == 0


def test_client_forget_stops_everything() -> None:
    layer = new_layer()
    txn = layer.send_request(our_request(), UAC, False, now=0.0)
    layer.take_output()
    layer.forget(txn)
    assert fire_until(layer, 64 * T1) == []
    assert events(layer) == []
    assert layer.client_count == 0


# -- client, INVITE (§17.1.1, RFC 6026) ---------------------------------------------------------------


def test_client_invite_timer_a_doubles_without_cap_then_timer_b() -> None:
    layer = new_layer()
    txn = layer.send_request(our_request("INVITE"), UAC, False, now=0.0)
    layer.take_output()
    sent = fire_until(layer, 64 * T1)
    expected = backoff(T1, None, 64 * T1)
    assert expected == pytest.approx([0.5, 1.5, 3.5, 7.5, 15.5, 31.5])  # 8 and 16 s gaps: no T2 cap
    assert [t for t, _ in sent] == pytest.approx(expected)
    [timeout] = events(layer)
    assert isinstance(timeout, TransactionTimeout) and timeout.transaction is txn


def test_client_invite_stops_retransmitting_after_a_provisional() -> None:
    layer = new_layer()
    request = our_request("INVITE")
    layer.send_request(request, UAC, False, now=0.0)
    layer.take_output()
    layer.receive_response(wire(make_response(request, 100)), UAC, now=0.2)
    assert fire_until(layer, 30.0) == []
    [trying] = events(layer)
    assert isinstance(trying, ResponseReceived) and not trying.final


def test_client_invite_acks_an_error_response_and_each_retransmission() -> None:
    layer = new_layer()
    request = our_request("INVITE")
    request.add("Route", "<sip:proxy.example.com;lr>")
    txn = layer.send_request(request, UAC, False, now=0.0)
    layer.take_output()
    busy = wire(make_response(request, 486, to_tag="dev-to-tag"))
    layer.receive_response(busy, UAC, now=0.2)
    [(ack_bytes, remote)] = layer.take_output()
    assert remote == UAC
    ack = parse_message(ack_bytes)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.uri == request.uri
    assert ack.via.branch == request.via.branch  # same transaction (§17.1.1.3)
    assert ack.to.tag == "dev-to-tag"
    assert ack.from_.tag == request.from_.tag and ack.call_id == request.call_id
    assert ack.cseq == (request.cseq.seq, "ACK")
    assert ack.get_all("Route") == ["<sip:proxy.example.com;lr>"]
    [final] = events(layer)
    assert isinstance(final, ResponseReceived) and final.transaction is txn

    layer.receive_response(busy, UAC, now=1.0)
    assert layer.take_output() == [(ack_bytes, UAC)]
    assert events(layer) == []  # the TU heard about it once
    assert fire_until(layer, 31.0) == []  # no INVITE retransmission in Completed
    assert layer.client_count == 1
    fire_until(layer, 0.2 + 32.0)  # Timer D
    assert layer.client_count == 0


def test_client_invite_passes_every_2xx_up_and_acks_none() -> None:
    layer = new_layer()
    request = our_request("INVITE")
    layer.send_request(request, UAC, False, now=0.0)
    layer.take_output()
    ok = wire(make_response(request, 200, to_tag="dev-to-tag"))
    layer.receive_response(ok, UAC, now=0.3)
    layer.receive_response(ok, UAC, now=0.8)
    finals = events(layer)
    assert [type(e) for e in finals] == [ResponseReceived, ResponseReceived]  # so the TU re-ACKs
    assert layer.take_output() == []  # the ACK for a 2xx is the dialog's, not the transaction's
    assert fire_until(layer, 0.3 + 64 * T1 - 0.01) == []
    assert layer.client_count == 1
    fire_until(layer, 0.3 + 64 * T1)  # Timer M
    assert layer.client_count == 0


def test_cancel_request_copies_the_invite() -> None:
    layer = new_layer()
    request = our_request("INVITE")
    request.add("Route", "<sip:proxy.example.com;lr>")
    txn = layer.send_request(request, UAC, False, now=0.0)
    cancel = layer.cancel_request(txn)
    assert cancel.method == "CANCEL" and cancel.uri == request.uri
    assert cancel.via.branch == request.via.branch
    assert cancel.cseq == (request.cseq.seq, "CANCEL")
    for name in ("From", "To", "Call-ID", "Route"):
        assert cancel.get(name) == request.get(name)


@pytest.mark.parametrize(("t1", "t2", "t4"), [(0.1, 0.4, 0.6), (1.0, 8.0, 10.0)])
def test_configured_timer_values_are_honoured(t1: float, t2: float, t4: float) -> None:
    layer = new_layer(Timers(t1=t1, t2=t2, t4=t4))
    # Client non-INVITE: Timer E backs off from t1 to t2, Timer F at 64*t1.
    layer.send_request(our_request(), UAC, False, now=0.0)
    layer.take_output()
    sent = fire_until(layer, 64 * t1)
    assert [t for t, _ in sent] == pytest.approx(backoff(t1, t2, 64 * t1))
    assert [type(e) for e in events(layer)] == [TransactionTimeout]

    # Server INVITE: Timer G capped at t2, Timer I is t4.
    txn = invite_server(layer, now=100.0)
    layer.take_output()
    txn.reply(486, now=100.0)
    layer.take_output()
    sent = fire_until(layer, 100.0 + 8 * t1)
    assert [t - 100.0 for t, _ in sent] == pytest.approx(backoff(t1, t2, 8 * t1))
    layer.receive_request(sip_request("ACK", to_tag="gw-tag"), UAC, False, now=101.0 + 8 * t1)
    fire_until(layer, 101.0 + 8 * t1 + t4 - t1 / 10)
    assert txn.state is State.CONFIRMED
    fire_until(layer, 101.0 + 8 * t1 + t4)
    assert txn.state is State.TERMINATED


# -- RFC 2543 peers (§17.2.3 fallback) --------------------------------------------------------------------


def test_cookieless_retransmission_matches_by_the_2543_fields() -> None:
    layer = new_layer()
    txn = layer.receive_request(sip_request(branch="1234"), UAC, False, now=0.0)
    assert txn is not None
    txn.reply(200, now=0.0)
    [(ok, _)] = layer.take_output()
    assert layer.receive_request(sip_request(branch="1234"), UAC, False, now=0.5) is None
    assert layer.take_output() == [(ok, UAC)]
    # Without any branch too.
    assert layer.receive_request(sip_request(branch=None), UAC, False, now=0.0) is not None
    assert layer.receive_request(sip_request(branch=None), UAC, False, now=0.5) is None


def test_cookieless_requests_sharing_a_branch_do_not_collide() -> None:
    layer = new_layer()
    first = layer.receive_request(sip_request(branch="1", cseq=1), UAC, False, now=0.0)
    assert first is not None
    first.reply(200, now=0.0)
    second = layer.receive_request(sip_request(branch="1", cseq=2), UAC, False, now=0.1)
    third = layer.receive_request(sip_request(branch="1", call_id="other@h"), UAC, False, now=0.1)
    assert second is not None and third is not None
    assert len({id(first), id(second), id(third)}) == 3
    # A bare magic cookie is no RFC 3261 branch either.
    assert layer.receive_request(sip_request(branch="z9hG4bK", cseq=5), UAC, False, now=0.2) is not None
    assert layer.receive_request(sip_request(branch="z9hG4bK", cseq=6), UAC, False, now=0.2) is not None


def test_cookieless_invite_matches_its_ack_and_cancel() -> None:
    layer = new_layer()
    txn = layer.receive_request(sip_request("INVITE", branch="77"), UAC, False, now=0.0)
    assert txn is not None
    assert layer.find_invite(sip_request("CANCEL", branch="77")) is txn
    txn.reply(404, now=0.0)
    # The ACK carries our To tag, which the INVITE had not: §17.2.3 leaves the To tag out for ACK.
    layer.receive_request(sip_request("ACK", branch="77", to_tag="gw-tag"), UAC, False, now=0.3)
    assert txn.state is State.CONFIRMED


def test_cookieless_cancel_finds_a_reinvite() -> None:
    layer = new_layer()
    reinvite = sip_request("INVITE", branch="78", cseq=2, to_tag="gw-tag")
    txn = layer.receive_request(reinvite, UAC, False, now=0.0)
    assert txn is not None
    assert layer.find_invite(sip_request("CANCEL", branch="78", cseq=2, to_tag="gw-tag")) is txn


# -- memory -------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_completed_non_invite_transaction_memory() -> None:
    """What Timer J costs: 40,000 req/s keep over a million completed transactions alive."""
    count = 100_000
    layer = new_layer()
    fixed = [
        ("From", "<sip:34020000001320000001@3402000000>;tag=7f3a9c01"),
        ("To", "<sip:34020000002000000001@3402000000>"),
        ("CSeq", "20 MESSAGE"),
        ("Max-Forwards", "70"),
        ("Content-Type", "Application/MANSCDP+xml"),
    ]
    gc.collect()
    # Collections would only walk the growing table again and again; the measure is unaffected.
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            # Fresh strings per request, as the parser and the socket layer give them.
            host = f"192.168.{i >> 8 & 255}.{i & 255}"
            headers = [
                ("Via", f"SIP/2.0/UDP {host}:5060;rport;branch=z9hG4bK{i:016x}"),
                ("Call-ID", f"{i:020d}@{host}"),
                *fixed,
            ]
            request = Request("MESSAGE", SERVER_URI, headers, b"<?xml version=\"1.0\"?><Notify/>")
            txn = layer.receive_request(request, Peer("UDP", host, 5060), False, now=0.0)
            assert txn is not None
            txn.reply(200, now=0.0)
            layer.take_output()
        del request, txn, headers, host
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    assert layer.server_count == count
    per_transaction = retained / count
    print(f"completed non-INVITE server transaction: {per_transaction:.0f} bytes each")
    assert per_transaction < 1024
    fire_until(layer, 64 * T1)
    assert layer.server_count == 0


def test_client_transaction_requires_a_branch() -> None:
    layer = new_layer()
    with pytest.raises(SipError):
        layer.send_request(sip_request(branch=None), UAC, False, now=0.0)


def test_a_finished_client_transaction_is_freed_before_its_timer_f_entry_comes_up() -> None:
    """Regression: the timer heap held finished client transactions (request, bytes, response) until
    Timer F, 32 s later: hundreds of MB at a few thousand requests per second."""
    import gc

    from gbgw.sip.message import Request, Response
    from gbgw.sip.transaction import ClientTransaction, TransactionLayer

    def alive() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, ClientTransaction) and o.key[0] == "z9hG4bKfreed")

    layer = TransactionLayer()
    request = Request(
        "MESSAGE",
        "sip:34020000001320000001@127.0.0.1:5060",
        [
            ("Via", "SIP/2.0/UDP 127.0.0.1:5070;rport;branch=z9hG4bKfreed"),
            ("From", "<sip:34020000002000000001@3402000000>;tag=1"),
            ("To", "<sip:34020000001320000001@3402000000>"),
            ("Call-ID", "freed@test"),
            ("CSeq", "1 MESSAGE"),
        ],
    )
    txn = layer.send_request(request, ("127.0.0.1", 5060), False, 0.0)
    response = Response(200, None, [(n, v) for n, v in request.headers if n != "CSeq"] + [("CSeq", "1 MESSAGE")])
    layer.receive_response(response, ("127.0.0.1", 5060), 0.1)
    while layer.next_event() is not None:
        pass
    layer.take_output()
    del txn, request, response
    layer.handle_timer(0.1 + layer.timers.t4 + 0.01)  # Timer K: the transaction ends
    assert layer.client_count == 0
    assert alive() == 0, "the ended transaction is still referenced (by a pending Timer E/F entry?)"
    assert layer.next_deadline() is not None  # its Timer F entry is still queued, harmlessly

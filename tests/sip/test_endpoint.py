"""Tests for sip.endpoint (and the request path of sip.transport, driven without sockets).

The endpoint is where network bytes first meet the stack: every test here feeds bytes and reads back
what would be sent, with fake times. Invalid requests must get an answer that says what was wrong;
garbage must never raise.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire import FIXTURES

from gbgw.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from gbgw.sip.errors import SipError, SipParseError
from gbgw.sip.headers import CSeq, split_commas
from gbgw.sip.message import Response, parse_message
from gbgw.sip.transaction import ServerTransaction
from gbgw.sip.transport import SipTransport
from gbgw.sip.uri import split_host_port

TORTURE = FIXTURES / "torture"
SRS = FIXTURES / "interop" / "hikvision" / "srs_utest"

# A camera behind NAT: its Via names its private address, the packet comes from the NAT's.
CAMERA = Peer("UDP", "203.0.113.7", 40123)

LINES = {
    "request": "MESSAGE sip:34020000002000000001@3402000000 SIP/2.0",
    "Via": "Via: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1404581137",
    "From": "From: <sip:34020000001320000001@3402000000>;tag=1963289340",
    "To": "To: <sip:34020000002000000001@3402000000>",
    "Call-ID": "Call-ID: 1211617377@192.168.1.64",
    "CSeq": "CSeq: 20 MESSAGE",
    "Max-Forwards": "Max-Forwards: 70",
    "Content-Type": "Content-Type: Application/MANSCDP+xml",
}
BODY = b'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify><CmdType>Keepalive</CmdType></Notify>\r\n'


def message_bytes(*, without: tuple[str, ...] = (), replace: dict[str, str] | None = None,
                  extra: tuple[str, ...] = (), body: bytes = BODY) -> bytes:
    lines = dict(LINES)
    lines.update(replace or {})
    head = [line for name, line in lines.items() if name not in without]
    head += extra
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def options_bytes(*, to: str = "<sip:34020000002000000001@3402000000>", extra: tuple[str, ...] = ()) -> bytes:
    return message_bytes(
        replace={"request": "OPTIONS sip:34020000002000000001@3402000000 SIP/2.0",
                 "CSeq": "CSeq: 7 OPTIONS", "To": f"To: {to}"},
        without=("Content-Type",), extra=extra, body=b"",
    )


def sent(endpoint: SipEndpoint) -> list[tuple[Response, Peer]]:
    out = []
    for data, peer in endpoint.transactions.take_output():
        msg = parse_message(data)
        assert isinstance(msg, Response)
        out.append((msg, peer))
    return out


def only_response(endpoint: SipEndpoint) -> tuple[Response, Peer]:
    responses = sent(endpoint)
    assert len(responses) == 1, responses
    return responses[0]


# -- the normal path ----------------------------------------------------------------------------------------


def test_valid_message_goes_to_the_tu_with_nothing_sent() -> None:
    endpoint = SipEndpoint()
    txn = endpoint.receive(message_bytes(), CAMERA, now=0.0)
    assert isinstance(txn, ServerTransaction)
    assert txn.request.body == BODY
    assert sent(endpoint) == []
    assert endpoint.counters.received == 1 and endpoint.counters.rejected == 0


def test_options_answered_with_allow_and_accept() -> None:
    config = EndpointConfig(accept=("application/sdp", "application/manscdp+xml"))
    endpoint = SipEndpoint(config)
    assert endpoint.receive(options_bytes(), CAMERA, now=0.0) is None
    response, peer = only_response(endpoint)
    assert response.status == 200 and peer == CAMERA
    assert set(split_commas(response.get("Allow") or "")) == set(config.allow)
    assert {"INVITE", "MESSAGE", "REGISTER", "OPTIONS"} <= set(config.allow)
    assert split_commas(response.get("Accept") or "") == ["application/sdp", "application/manscdp+xml"]
    assert response.to.tag  # a final response from a UAS carries a To tag (§8.2.6.2)
    assert response.cseq == (7, "OPTIONS")
    assert endpoint.counters.options == 1


def test_options_inside_a_dialog_is_left_to_the_tu() -> None:
    endpoint = SipEndpoint()
    txn = endpoint.receive(options_bytes(to="<sip:34020000002000000001@3402000000>;tag=abc"), CAMERA, now=0.0)
    assert txn is not None and txn.request.method == "OPTIONS"
    assert sent(endpoint) == []


def test_options_retransmission_gets_the_same_answer() -> None:
    endpoint = SipEndpoint()
    endpoint.receive(options_bytes(), CAMERA, now=0.0)
    [(first, _)] = endpoint.transactions.take_output()
    endpoint.receive(options_bytes(), CAMERA, now=0.5)
    assert endpoint.transactions.take_output() == [(first, CAMERA)]
    assert endpoint.counters.options == 1


# -- invalid requests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["From", "To", "Call-ID", "CSeq"])
def test_missing_header_gets_400_naming_it(missing: str) -> None:
    endpoint = SipEndpoint()
    assert endpoint.receive(message_bytes(without=(missing,)), CAMERA, now=0.0) is None
    response, peer = only_response(endpoint)
    assert response.status == 400
    assert missing in response.reason
    assert peer == CAMERA
    assert response.via.branch == "z9hG4bK1404581137"
    assert endpoint.counters.rejected == 1 and endpoint.transactions.server_count == 0


def test_missing_via_cannot_be_answered() -> None:
    endpoint = SipEndpoint()
    assert endpoint.receive(message_bytes(without=("Via",)), CAMERA, now=0.0) is None
    assert sent(endpoint) == []
    assert endpoint.counters.rejected == 1
    assert endpoint.last_error is not None and "Via" in endpoint.last_error


def test_rfc4475_insufficient_headers_gets_400() -> None:
    # §3.1.2.18: no Call-ID, From or To; "ideally, it will respond with a 400 Bad Request".
    endpoint = SipEndpoint()
    endpoint.receive((TORTURE / "rfc4475" / "insuf.dat").read_bytes(), CAMERA, now=0.0)
    response, _ = only_response(endpoint)
    assert response.status == 400


def test_unknown_require_gets_420_listing_what_is_unsupported() -> None:
    endpoint = SipEndpoint(EndpointConfig(supported_extensions=frozenset({"timer"})))
    data = message_bytes(extra=("Require: timer, foo", "Require: Bar"))
    assert endpoint.receive(data, CAMERA, now=0.0) is None
    response, _ = only_response(endpoint)
    assert response.status == 420
    assert split_commas(response.get("Unsupported") or "") == ["foo", "Bar"]
    assert endpoint.transactions.server_count == 0


def test_supported_require_passes() -> None:
    endpoint = SipEndpoint(EndpointConfig(supported_extensions=frozenset({"timer"})))
    assert endpoint.receive(message_bytes(extra=("Require: Timer",)), CAMERA, now=0.0) is not None
    assert sent(endpoint) == []


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_require_is_ignored_in_ack_and_cancel(method: str) -> None:
    endpoint = SipEndpoint()
    data = message_bytes(
        replace={"request": f"{method} sip:34020000002000000001@3402000000 SIP/2.0", "CSeq": f"CSeq: 20 {method}"},
        extra=("Require: foo",), without=("Content-Type",), body=b"",
    )
    txn = endpoint.receive(data, CAMERA, now=0.0)
    assert all(response.status != 420 for response, _ in sent(endpoint))
    if method == "CANCEL":
        assert txn is not None


def test_unsupported_uri_scheme_gets_416() -> None:
    endpoint = SipEndpoint()
    endpoint.receive(message_bytes(replace={"request": "MESSAGE mailto:camera@example.com SIP/2.0"}), CAMERA, 0.0)
    response, _ = only_response(endpoint)
    assert response.status == 416


def test_rfc4475_unknown_scheme_gets_416() -> None:
    endpoint = SipEndpoint()
    endpoint.receive((TORTURE / "rfc4475" / "unkscm.dat").read_bytes(), CAMERA, now=0.0)
    response, _ = only_response(endpoint)
    assert response.status == 416


def test_bad_version_is_dropped_and_counted_as_unparseable() -> None:
    endpoint = SipEndpoint()
    data = message_bytes(replace={"request": "MESSAGE sip:34020000002000000001@3402000000 SIP/7.0"})
    assert endpoint.receive(data, CAMERA, now=0.0) is None
    assert sent(endpoint) == []
    assert endpoint.counters.unparseable == 1 and endpoint.counters.rejected == 0
    assert endpoint.last_error is not None and "7.0" in endpoint.last_error


def test_ack_that_is_invalid_is_never_answered() -> None:
    endpoint = SipEndpoint()
    data = message_bytes(replace={"request": "ACK sip:34020000002000000001@3402000000 SIP/2.0",
                                  "CSeq": "CSeq: 20 ACK"}, without=("Call-ID",))
    endpoint.receive(data, CAMERA, now=0.0)
    assert sent(endpoint) == []
    assert endpoint.counters.rejected == 1


def test_reject_with_an_unreadable_to_echoes_it_without_a_tag() -> None:
    endpoint = SipEndpoint()
    bad_to = "To: <sip:34020000002000000001@3402000000;tag=1"
    endpoint.receive(message_bytes(replace={"To": bad_to}, without=("Call-ID",)), CAMERA, now=0.0)
    response, _ = only_response(endpoint)
    assert response.status == 400
    assert response.get("To") == bad_to.removeprefix("To: ")


def test_options_with_an_unreadable_contact_gets_400() -> None:
    endpoint = SipEndpoint()
    endpoint.receive(options_bytes(extra=("Contact: <sip:x@[::1>",)), CAMERA, now=0.0)
    response, _ = only_response(endpoint)
    assert response.status == 400
    assert endpoint.counters.options == 0


def test_rfc2543_request_with_an_unreadable_from_gets_400() -> None:
    # Without the magic cookie the transaction key needs the From tag, so the From is read at once.
    endpoint = SipEndpoint()
    data = message_bytes(replace={"Via": "Via: SIP/2.0/UDP 192.168.1.64:5060;branch=2543",
                                  "From": "From: <sip:34020000001320000001@3402000000"})
    assert endpoint.receive(data, CAMERA, now=0.0) is None
    response, _ = only_response(endpoint)
    assert response.status == 400


def test_non_ascii_digits_never_escape_as_value_error() -> None:
    endpoint = SipEndpoint()
    # U+00B2 is a "digit" to str.isdigit but not to int().
    assert endpoint.receive(message_bytes(replace={"CSeq": "CSeq: 2\u00b2 MESSAGE"}), CAMERA, 0.0) is None
    response, _ = only_response(endpoint)
    assert response.status == 400
    endpoint.receive(message_bytes().replace(b"Content-Length: ", b"Content-Length: \xc2\xb2"), CAMERA, 0.0)
    assert endpoint.counters.unparseable == 1


# -- Via stamping and where the response goes (RFC 3261 §18.2, RFC 3581) -----------------------------------


def stamped_via(endpoint: SipEndpoint, via: str, source: Peer) -> dict[str, str | None]:
    txn = endpoint.receive(message_bytes(replace={"Via": f"Via: {via}"}), source, now=0.0)
    assert txn is not None
    txn.reply(200, now=0.0)
    response, _ = only_response(endpoint)
    # What the response carries back is what the request was stamped with.
    assert response.via.params == txn.request.via.params
    return response.via.params


def test_rport_gets_the_source_port_and_received_the_source_address() -> None:
    params = stamped_via(SipEndpoint(), "SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bKa", CAMERA)
    assert params["rport"] == "40123"
    assert params["received"] == "203.0.113.7"


def test_no_received_when_the_via_host_is_the_source() -> None:
    source = Peer("UDP", "192.168.1.64", 5060)
    params = stamped_via(SipEndpoint(), "SIP/2.0/UDP 192.168.1.64:5060;branch=z9hG4bKb", source)
    assert "received" not in params and "rport" not in params


def test_received_when_the_via_names_a_host() -> None:
    source = Peer("UDP", "192.168.1.64", 5060)
    params = stamped_via(SipEndpoint(), "SIP/2.0/UDP camera.local:5060;branch=z9hG4bKc", source)
    assert params["received"] == "192.168.1.64"
    assert "rport" not in params  # not asked for


def test_ipv6_sent_by_matching_the_source_needs_no_received() -> None:
    source = Peer("UDP", "2001:db8::9", 5060)
    params = stamped_via(SipEndpoint(), "SIP/2.0/UDP [2001:db8::9]:5060;branch=z9hG4bKd", source)
    assert "received" not in params


def reply_peer(config: EndpointConfig, via: str, source: Peer) -> Peer:
    endpoint = SipEndpoint(config)
    txn = endpoint.receive(message_bytes(replace={"Via": f"Via: {via}"}), source, now=0.0)
    assert txn is not None
    txn.reply(200, now=0.0)
    _, peer = only_response(endpoint)
    return peer


def test_force_rport_answers_the_source_port_by_default() -> None:
    peer = reply_peer(EndpointConfig(), "SIP/2.0/UDP 192.168.1.64:5060;branch=z9hG4bKe", CAMERA)
    assert peer == CAMERA


def test_without_force_rport_and_rport_the_via_port_is_used() -> None:
    config = EndpointConfig(force_rport=False)
    peer = reply_peer(config, "SIP/2.0/UDP 192.168.1.64:5070;branch=z9hG4bKf", CAMERA)
    assert peer == Peer("UDP", "203.0.113.7", 5070)  # received address, sent-by port (§18.2.2)
    peer = reply_peer(config, "SIP/2.0/UDP 192.168.1.64;branch=z9hG4bKg", CAMERA)
    assert peer == Peer("UDP", "203.0.113.7", 5060)
    peer = reply_peer(config, "SIP/2.0/UDP 192.168.1.64:5070;rport;branch=z9hG4bKh", CAMERA)
    assert peer == CAMERA


def test_tcp_answers_on_the_connection() -> None:
    source = Peer("TCP", "203.0.113.7", 51000, conn=3)
    peer = reply_peer(EndpointConfig(force_rport=False), "SIP/2.0/TCP 192.168.1.64:5060;branch=z9hG4bKi", source)
    assert peer == source


# -- responses and real device messages ----------------------------------------------------------------------


def test_real_device_register_reaches_the_tu() -> None:
    endpoint = SipEndpoint()
    txn = endpoint.receive((SRS / "ProtocolGbSipTest_GbRegisterRequest.sip").read_bytes(), CAMERA, now=0.0)
    assert txn is not None and txn.request.method == "REGISTER"


def test_stray_response_is_counted_not_raised() -> None:
    endpoint = SipEndpoint()
    assert endpoint.receive((SRS / "ProtocolGbSipTest_Gb200OkResponse.sip").read_bytes(), CAMERA, 0.0) is None
    assert endpoint.transactions.next_event() is not None


# -- garbage never raises ----------------------------------------------------------------------------------


def torture_messages() -> list[bytes]:
    return [path.read_bytes() for path in sorted(TORTURE.glob("*/*")) if path.suffix in (".dat", ".sip")]


def test_every_torture_message_is_survived() -> None:
    messages = torture_messages()
    assert len(messages) > 50
    for data in messages:
        for source in (CAMERA, Peer("TCP", "203.0.113.7", 5060, conn=1)):
            endpoint = SipEndpoint()
            endpoint.receive(data, source, now=0.0)
            endpoint.transactions.take_output()
            endpoint.transactions.handle_timer(100.0)


def feed(data: bytes) -> None:
    endpoint = SipEndpoint()
    txn = endpoint.receive(data, CAMERA, now=0.0)
    if txn is not None:
        txn.reply(200, now=0.0)  # what a TU does first with a keepalive
    endpoint.receive(data, CAMERA, now=0.5)  # and as a retransmission
    endpoint.transactions.handle_timer(100.0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    feed(data)


SEEDS = [message_bytes(), options_bytes(), (SRS / "ProtocolGbSipTest_GbInviteRequest.sip").read_bytes(),
         (SRS / "ProtocolGbSipTest_Gb200OkResponse.sip").read_bytes()]
FRAGMENTS = [b";", b",", b"<", b">", b'"', b"\r\n", b" ", b"tag=", b"z9hG4bK", b"[", b":", b"\xc2\xb2",
             b"\r\nRequire: x\r\n", b"\r\nVia: SIP/2.0/UDP h\r\n", b"INVITE", b"ACK", b"\x00", b"%", b"\r\n "]


@st.composite
def mutated(draw: Any) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "delete", "insert", "duplicate"]))
        if action == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 12))]
        elif action == "insert":
            data[at:at] = draw(st.sampled_from(FRAGMENTS))
        else:
            start = draw(st.integers(0, len(data)))
            data[at:at] = data[start : start + draw(st.integers(1, 30))]
    return bytes(data)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_messages_never_raise(data: bytes) -> None:
    feed(data)


# -- the asyncio adapter's request path, without sockets ---------------------------------------------------


class FakeDatagrams:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def close(self) -> None:
        pass


async def test_tu_error_is_answered_once_with_its_reason() -> None:
    def handler(txn: ServerTransaction) -> None:
        raise SipError("Unknown device 34020000001320000001", status=403)

    transport = SipTransport(SipEndpoint(), handler)
    udp = FakeDatagrams()
    transport._udp = udp  # type: ignore[assignment]
    transport._receive(message_bytes(), CAMERA)
    await transport.close()
    assert len(udp.sent) == 1
    response = parse_message(udp.sent[0][0])
    assert isinstance(response, Response)
    assert response.status == 403 and response.reason == "Unknown device 34020000001320000001"
    assert udp.sent[0][1] == (CAMERA.host, CAMERA.port)


async def test_tu_crash_is_answered_500() -> None:
    def handler(txn: ServerTransaction) -> None:
        raise RuntimeError("bug")

    transport = SipTransport(SipEndpoint(), handler)
    udp = FakeDatagrams()
    transport._udp = udp  # type: ignore[assignment]
    transport._receive(message_bytes(), CAMERA)
    await transport.close()
    assert [parse_message(data).status for data, _ in udp.sent] == [500]  # type: ignore[union-attr]


class FakeStream(asyncio.Transport):
    def __init__(self, peername: tuple[str, int]) -> None:
        super().__init__()
        self.peername = peername
        self.data = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peername if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += bytes(data)

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


async def test_tcp_to_a_host_name_sends_what_was_queued_and_reuses_the_connection() -> None:
    transport = SipTransport(SipEndpoint(), lambda txn: None)
    streams: list[FakeStream] = []

    async def create_connection(factory: Any, host: str, port: int, **_: Any) -> tuple[FakeStream, Any]:
        await asyncio.sleep(0)
        protocol = factory()
        stream = FakeStream(("198.51.100.20", port))  # the name resolved to this address
        protocol.connection_made(stream)
        streams.append(stream)
        return stream, protocol

    transport._loop.create_connection = create_connection  # type: ignore[method-assign]
    upper = Peer("TCP", "upper.example.com", 5060)
    transport._send_stream(b"first", upper)
    transport._send_stream(b"second", upper)
    await asyncio.gather(*transport._tasks)
    transport._send_stream(b"third", upper)
    assert len(streams) == 1
    assert streams[0].data == b"firstsecondthird"
    await transport.close()
    assert transport.connection_count == 0
    assert transport.connection_peer("upper.example.com", 5060) is None


# -- message-layer bugs the fuzzing above found (fixed in message.py, headers.py, uri.py) -----------------------


def test_cseq_with_a_non_ascii_digit_is_a_parse_error() -> None:
    with pytest.raises(SipParseError):
        CSeq.parse("2\u00b2 MESSAGE")


def test_port_with_a_non_ascii_digit_is_a_parse_error() -> None:
    with pytest.raises(SipParseError):
        split_host_port("192.168.1.64:506\u00b2")


def test_content_length_with_a_non_ascii_digit_is_a_parse_error() -> None:
    with pytest.raises(SipParseError):
        parse_message(message_bytes().replace(b"Content-Length: ", b"Content-Length: \xc2\xb2"))


def test_max_forwards_with_a_non_ascii_digit_is_a_parse_error() -> None:
    request = parse_message(message_bytes(replace={"Max-Forwards": "Max-Forwards: 7\u00b2"}))
    with pytest.raises(SipParseError):
        request.max_forwards  # noqa: B018

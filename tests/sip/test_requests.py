"""RequestBuilder: the out-of-dialog header block, driven with a fake transport (no sockets)."""

from __future__ import annotations

from gbgw.sip.message import Request, parse_message
from gbgw.sip.requests import RequestBuilder


class FakeTransport:
    def __init__(self, host: str = "192.0.2.10") -> None:
        self.host = host
        self.branches = 0

    def via(self, transport: str = "UDP") -> str:
        self.branches += 1
        return f"SIP/2.0/{transport} {self.host}:5060;rport;branch=z9hG4bK{self.branches}"


LOCAL = "sip:34020000002000000001@3402000000"


def parsed(request: Request) -> Request:
    """The request as a peer reads it, so the headers are checked as they go on the wire."""
    message = parse_message(request.serialize())
    assert isinstance(message, Request)
    return message


def test_header_block_in_order_then_the_callers_headers() -> None:
    builder = RequestBuilder(FakeTransport(), LOCAL, "gb28181-gateway")
    request = builder.build(
        "MESSAGE", "sip:34020000001320000001@192.0.2.20:5060", "sip:34020000001320000001@3402000000",
        transport="TCP", headers=[("Content-Type", "Application/MANSCDP+xml")], body=b"<Query/>",
    )
    names = [name for name, _ in request.headers]
    assert names == ["Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "User-Agent", "Content-Type"]
    wire = parsed(request)
    assert wire.method == "MESSAGE"
    assert wire.uri == "sip:34020000001320000001@192.0.2.20:5060"
    assert wire.via.transport == "TCP"
    assert str(wire.from_.uri) == LOCAL and wire.from_.tag
    assert str(wire.to.uri) == "sip:34020000001320000001@3402000000" and wire.to.tag is None
    assert wire.call_id is not None and wire.call_id.endswith("@192.0.2.10")
    assert wire.cseq.seq == 1 and wire.cseq.method == "MESSAGE"
    assert wire.get("Max-Forwards") == "70"
    assert wire.get("User-Agent") == "gb28181-gateway"
    assert wire.body == b"<Query/>"


def test_cseq_is_the_builders_own_and_counts_across_methods() -> None:
    builder = RequestBuilder(FakeTransport(), LOCAL, "ua", cseq=41)
    first = builder.build("MESSAGE", "sip:a@h", "sip:a@d")
    second = builder.build("INVITE", "sip:b@h", "sip:b@d")
    assert [first.cseq.seq, second.cseq.seq] == [42, 43]
    assert second.cseq.method == "INVITE"
    assert builder.cseq == 43
    other = RequestBuilder(FakeTransport(), LOCAL, "ua")
    assert other.build("MESSAGE", "sip:a@h", "sip:a@d").cseq.seq == 1


def test_fresh_tag_call_id_and_branch_per_request_unless_the_caller_keeps_them() -> None:
    builder = RequestBuilder(FakeTransport(), LOCAL, "ua")
    a = builder.build("MESSAGE", "sip:a@h", "sip:a@d")
    b = builder.build("MESSAGE", "sip:a@h", "sip:a@d")
    assert a.call_id != b.call_id
    assert a.from_.tag != b.from_.tag
    assert a.via.branch != b.via.branch
    kept = [builder.build("REGISTER", "sip:r@d", LOCAL, call_id="cid@h", from_tag="t1") for _ in range(2)]
    assert [r.call_id for r in kept] == ["cid@h", "cid@h"]
    assert [r.from_.tag for r in kept] == ["t1", "t1"]


def test_call_id_host_is_read_when_building_so_a_builder_may_precede_the_bound_transport() -> None:
    transport = FakeTransport(host="")
    builder = RequestBuilder(transport, LOCAL, "ua")
    assert builder.new_call_id().endswith("@localhost")
    transport.host = "198.51.100.7"
    assert builder.build("OPTIONS", "sip:a@h", "sip:a@d").call_id.endswith("@198.51.100.7")  # type: ignore[union-attr]

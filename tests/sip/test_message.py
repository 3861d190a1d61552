"""The SIP message layer: round trips, canonical output, header syntax, URIs, Via, name-addr, datagram rules."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gbgw.sip.errors import SipError, SipParseError
from gbgw.sip.headers import CSeq, NameAddr, Via, canonical_name, parse_params, split_commas
from gbgw.sip.message import Request, Response, make_response, parse_message
from gbgw.sip.uri import SipUri, split_host_port

# -- strategies -------------------------------------------------------------------------------------------

TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
LOWER_TOKEN_CHARS = string.ascii_lowercase + string.digits + "-.!%*_+`'~"
UNRESERVED = string.ascii_letters + string.digits + "-_.!~*'()"

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
param_names = st.text(LOWER_TOKEN_CHARS, min_size=1, max_size=10)
methods = st.one_of(
    st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "MESSAGE", "INFO", "SUBSCRIBE", "NOTIFY"]),
    tokens,
)
escapes = st.sampled_from(["%20", "%40", "%3A", "%00", "%E4%B8%AD"])
# user-unreserved adds "&=+$,;?/" to the unreserved set; ':' would start a password, '@' ends the user.
users = st.lists(
    st.one_of(st.sampled_from(UNRESERVED), st.sampled_from("&=+$,;?/"), escapes), min_size=1, max_size=16
).map("".join)
labels = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=4).map(".".join),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
ports = st.one_of(st.none(), st.integers(1, 65535))
param_values = st.text(UNRESERVED + "[]/:&+$", min_size=1, max_size=12)
params = st.dictionaries(param_names, st.one_of(st.none(), param_values), max_size=3)
uri_headers = st.lists(
    st.tuples(st.text(string.ascii_letters, min_size=1, max_size=8), st.text(UNRESERVED + "[]/?:+$%", max_size=10)),
    min_size=1,
    max_size=2,
).map(lambda pairs: "&".join(f"{n}={v}" for n, v in pairs))

sip_uris = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.one_of(st.none(), users),
    host=hosts,
    port=ports,
    params=params,
    headers=st.one_of(st.none(), uri_headers),
)
tel_uris = st.builds(
    lambda number, p: SipUri(scheme="tel", user=number, params=p),
    st.from_regex(r"\+?[0-9][0-9.()-]{0,14}", fullmatch=True),
    params,
)
# Display names: quotes, backslashes, Chinese and anything printable; no control characters (qdtext).
displays = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=16),
    st.sampled_from(['He said "hi"', "back\\slash", '\\"', "摄像机 01", "大门 \\ 入口", ""]),
)
name_addrs = st.builds(
    NameAddr,
    uri=st.one_of(sip_uris, tel_uris),
    display=st.one_of(st.none(), displays),
    params=st.fixed_dictionaries({}, optional={"tag": tokens, "expires": st.integers(0, 2**32 - 1).map(str)}),
)
received = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str), st.ip_addresses(v=6).map(lambda a: f"[{a}]"))
vias = st.builds(
    Via,
    transport=st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]),
    host=hosts,
    port=ports,
    params=st.fixed_dictionaries(
        {"branch": tokens.map(lambda t: "z9hG4bK" + t)},
        optional={"received": received, "rport": st.one_of(st.none(), st.integers(1, 65535).map(str))},
    ),
)


def _stable(text: str) -> bool:
    # The parser strips a value's surrounding white space (Python's idea of it) and splits on CR/LF.
    return text == text.strip() and "\r" not in text and "\n" not in text


# Header values: printable text, UTF-8 Chinese, and raw bytes that are not UTF-8 (GBK), which the parser
# keeps as surrogate escapes so that they are written back unchanged.
raw_values = st.binary(max_size=24).map(lambda b: b.decode("utf-8", "surrogateescape"))
gbk_values = st.sampled_from(["前门摄像机", "通道 1", "报警输入"]).map(
    lambda t: t.encode("gbk").decode("utf-8", "surrogateescape")
)
header_values = st.one_of(st.text(max_size=24), raw_values, gbk_values).filter(_stable)
extension_names = st.text(string.ascii_letters, min_size=2, max_size=10).map(lambda n: "X-" + n)
bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(["<Name>前门</Name>", "<Name>報警</Name>"]).map(lambda t: t.encode("gbk")),
    st.just(b"v=0\r\n\r\n\r\nblank lines\r\n\r\n"),
)


@st.composite
def common_headers(draw: st.DrawFn, method: str) -> list[tuple[str, str]]:
    headers = [
        ("Via", str(draw(vias))),
        ("From", str(draw(name_addrs))),
        ("To", str(draw(name_addrs))),
        ("Call-ID", draw(tokens) + "@" + draw(hosts)),
        ("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}"),
    ]
    for _ in range(draw(st.integers(0, 4))):
        headers.append((draw(extension_names), draw(header_values)))
    return headers


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(methods)
    uri = str(draw(st.one_of(sip_uris.map(lambda u: SipUri(u.scheme, u.user, u.host, u.port, None, u.params)), tel_uris)))
    return Request(method, uri, draw(common_headers(method)), draw(bodies))


@st.composite
def responses(draw: st.DrawFn) -> Response:
    reason = draw(st.one_of(st.just(""), st.text(max_size=30), gbk_values).filter(_stable))
    return Response(draw(st.integers(100, 699)), reason, draw(common_headers(draw(methods))), draw(bodies))


# -- round trips ------------------------------------------------------------------------------------------


@given(requests())
def test_request_round_trip(req: Request) -> None:
    parsed = parse_message(req.serialize())
    assert isinstance(parsed, Request)
    assert (parsed.method, parsed.uri) == (req.method, req.uri)
    assert parsed.headers == req.headers
    assert parsed.body == req.body
    assert str(parsed.via) == req.headers[0][1]
    assert str(parsed.from_) == req.headers[1][1]
    assert str(parsed.to) == req.headers[2][1]
    assert parsed.cseq.method == req.method


@given(responses())
def test_response_round_trip(resp: Response) -> None:
    parsed = parse_message(resp.serialize())
    assert isinstance(parsed, Response)
    assert (parsed.status, parsed.reason) == (resp.status, resp.reason)
    assert parsed.headers == resp.headers
    assert parsed.body == resp.body


@given(st.one_of(sip_uris, tel_uris))
def test_uri_round_trip(uri: SipUri) -> None:
    assert SipUri.parse(str(uri)) == uri


@given(name_addrs)
def test_name_addr_round_trip(addr: NameAddr) -> None:
    assert NameAddr.parse(str(addr)) == addr


@given(vias)
def test_via_round_trip(via: Via) -> None:
    assert Via.parse(str(via)) == via


@given(st.lists(name_addrs, min_size=1, max_size=4))
def test_contact_list_splits_back_into_its_elements(addrs: list[NameAddr]) -> None:
    joined = ", ".join(str(a) for a in addrs)
    assert [NameAddr.parse(part) for part in split_commas(joined)] == addrs


# -- canonical output -------------------------------------------------------------------------------------

# Standard spellings from RFC 3261 §20 and the RFCs that define the other headers, with compact forms
# (RFC 3261 §7.3.3; o/u RFC 6665, r RFC 3515, b RFC 3892, x RFC 4028, a/j/d RFC 3841, y/n RFC 4474).
SPELLINGS = {
    "Call-ID": ["CALL-ID", "call-id", "Call-Id", "i", "I"],
    "CSeq": ["cseq", "CSEQ", "Cseq"],
    "Via": ["v", "V", "VIA", "vIa"],
    "From": ["f", "FROM"],
    "To": ["t", "TO"],
    "Contact": ["m", "contact"],
    "Content-Type": ["c", "CONTENT-TYPE", "content-type"],
    "Content-Encoding": ["e"],
    "Subject": ["s"],
    "Supported": ["k"],
    "Event": ["o"],
    "Allow-Events": ["u"],
    "Refer-To": ["r"],
    "Referred-By": ["b"],
    "Session-Expires": ["x"],
    "Accept-Contact": ["a"],
    "Reject-Contact": ["j"],
    "Request-Disposition": ["d"],
    "Identity": ["y"],
    "Identity-Info": ["n"],
    "WWW-Authenticate": ["www-authenticate", "Www-Authenticate"],
    "Max-Forwards": ["MAX-FORWARDS", "max-forwards"],
    "MIME-Version": ["mime-version"],
    "User-Agent": ["user-agent"],
    "RSeq": ["rseq"],
    "RAck": ["RACK"],
}
spelled = st.sampled_from([(variant, name) for name, variants in SPELLINGS.items() for variant in variants])


@given(
    st.lists(st.tuples(spelled, header_values), max_size=6),
    bodies,
    st.sampled_from([b"\r\n", b"\n"]),
    st.sampled_from([None, "Content-Length: {}", "l: {}", "content-length   :{}", "L:{}"]),
    st.sampled_from([":", " : ", ":  ", "\t:\t"]),
)
def test_output_is_canonical(
    fields: list[tuple[tuple[str, str], str]],
    body: bytes,
    eol: bytes,
    length_line: str | None,
    colon: str,
) -> None:
    lines = ["MESSAGE sip:34020000002000000001@3402000000 SIP/2.0"]
    lines += [f"{variant}{colon}{value}" for (variant, _), value in fields]
    if length_line is not None:
        lines.append(length_line.format(len(body)))
    data = eol.join(line.encode("utf-8", "surrogateescape") for line in lines) + eol + eol + body

    out = parse_message(data).serialize()

    head, sep, out_body = out.partition(b"\r\n\r\n")
    assert sep and out_body == body
    assert head.count(b"\n") == head.count(b"\r\n"), "bare LF in the output"
    out_lines = head.decode("utf-8", "surrogateescape").split("\r\n")
    assert out_lines[0] == lines[0]
    expected = [f"{name}: {value}" for (_, name), value in fields]
    assert out_lines[1:] == [*expected, f"Content-Length: {len(body)}"]


def test_header_names_are_case_insensitive_on_lookup() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\ncall-ID: x1\r\nCSEQ: 1 OPTIONS\r\nv: SIP/2.0/UDP h\r\n\r\n")
    for name in ("Call-ID", "call-id", "CALL-ID", "i"):
        assert msg.get(name) == "x1"
    assert msg.cseq == CSeq(1, "OPTIONS")
    assert msg.get_all("VIA") == ["SIP/2.0/UDP h"]
    assert "Via" in msg and "Route" not in msg


def test_unknown_header_keeps_its_spelling() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nX-Weird-CASE: 1\r\n\r\n")
    assert msg.headers == [("X-Weird-CASE", "1")]
    assert msg.get("X-Weird-CASE") == "1"
    assert canonical_name("x-weird-case") == "x-weird-case"


# -- header syntax ----------------------------------------------------------------------------------------

INVITE_HEAD = (
    b"INVITE sip:34020000001320000001@3402000000 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1\r\n"
    b"From: <sip:34020000002000000001@3402000000>;tag=a\r\n"
    b"To: <sip:34020000001320000001@3402000000>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 INVITE\r\n"
)


def test_folded_header_lines_unfold_to_one_space() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\n"
        b"Subject: first\r\n second\r\n\tthird\r\n"
        b"Via: SIP/2.0/UDP h;\r\n  branch=z9hG4bKx\r\n"
        b"CSeq:\r\n 7\r\n OPTIONS\r\n\r\n"
    )
    msg = parse_message(data)
    assert msg.get("Subject") == "first second third"
    assert msg.via.branch == "z9hG4bKx"
    assert msg.cseq == CSeq(7, "OPTIONS")


def test_via_list_across_lines_and_commas_keeps_order() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP a1;branch=z9hG4bK1, SIP/2.0/TCP a2:5061;branch=z9hG4bK2\r\n"
        b"Max-Forwards: 70\r\n"
        b"v: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK3,SIP/2.0/UDP a4;branch=z9hG4bK4\r\n\r\n"
    )
    msg = parse_message(data)
    assert [(v.host, v.port, v.branch) for v in msg.vias] == [
        ("a1", None, "z9hG4bK1"),
        ("a2", 5061, "z9hG4bK2"),
        ("[2001:db8::1]", 5062, "z9hG4bK3"),
        ("a4", None, "z9hG4bK4"),
    ]
    assert msg.via.host == "a1"
    assert len(msg.get_all("Via")) == 2


def test_contact_list_with_commas_inside_quotes_and_brackets() -> None:
    data = (
        b"REGISTER sip:r SIP/2.0\r\n"
        b'Contact: "Bell, Alexander \\"AG\\"" <sip:a@h1;x=1,2>;q=0.5, <sip:b@h2>\r\n'
        b"m: sip:c@h3;expires=60\r\n\r\n"
    )
    contacts = parse_message(data).contacts
    assert [c.display for c in contacts] == ['Bell, Alexander "AG"', None, None]
    assert contacts[0].uri.params == {"x": "1,2"} and contacts[0].params == {"q": "0.5"}
    assert contacts[2].params == {"expires": "60"} and contacts[2].uri.params == {}


def test_wildcard_contact() -> None:
    msg = parse_message(b"REGISTER sip:r SIP/2.0\r\nContact: *\r\nExpires: 0\r\n\r\n")
    assert msg.contact is not None and msg.contact.wildcard and str(msg.contact) == "*"
    assert msg.expires == 0


def test_split_commas_respects_quotes_and_escapes() -> None:
    assert split_commas('"a, b" <sip:x@y>, <sip:z@w>') == ['"a, b" <sip:x@y>', "<sip:z@w>"]
    assert split_commas('"a \\", b" <sip:x@y>,<sip:z>') == ['"a \\", b" <sip:x@y>', "<sip:z>"]
    assert split_commas("a, , b,") == ["a", "b"]
    assert split_commas("  ") == []
    with pytest.raises(SipParseError):
        split_commas('"unterminated, <sip:x>')


def test_params_with_quoted_values_and_lws() -> None:
    assert parse_params(' ; Tag = x ;lr; q=0.5') == {"tag": "x", "lr": None, "q": "0.5"}
    assert parse_params(';a="x;y,z\\"" ; b') == {"a": '"x;y,z\\""', "b": None}
    assert parse_params("") == {}


@pytest.mark.parametrize("text", [";;", ";a;;b", "; ;a", ";a=1;;", ';a="q";;b', ";=x", ";a b", ";a=\"x\" junk"])
def test_malformed_params_are_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_params(text)


def test_one_trailing_semicolon_is_tolerated() -> None:
    """Choice: ";tag=1;" is accepted (no ambiguity), while an empty parameter between two others is
    the RFC 4475 badinv01 error."""
    assert parse_params(";tag=1;") == {"tag": "1"}
    assert parse_params(';a="b";') == {"a": '"b"'}


# -- URIs -------------------------------------------------------------------------------------------------


def test_sip_uri_fields() -> None:
    uri = SipUri.parse("sips:34020000001320000001:secret@[2001:db8::1]:5061;transport=tls;lr?Subject=x&Priority=urgent")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sips", "34020000001320000001", "[2001:db8::1]", 5061)
    assert uri.password == "secret" and "secret" not in repr(uri)
    assert uri.params == {"transport": "tls", "lr": None}
    assert uri.transport == "TLS"
    assert uri.headers == "Subject=x&Priority=urgent"


def test_uri_scheme_and_param_names_are_case_insensitive() -> None:
    uri = SipUri.parse("SIP:alice@Example.COM;Transport=UDP;LR")
    assert uri.scheme == "sip" and uri.params == {"transport": "UDP", "lr": None}
    assert uri.host == "Example.COM"  # host case is kept; comparison is the caller's business


def test_uri_user_may_contain_question_mark_and_semicolon() -> None:
    uri = SipUri.parse("sip:a?b;c=d@host;p=1?h=v")
    assert (uri.user, uri.host, uri.params, uri.headers) == ("a?b;c=d", "host", {"p": "1"}, "h=v")


def test_tel_uri() -> None:
    uri = SipUri.parse("tel:+86-10-1234-5678;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.params) == ("tel", "+86-10-1234-5678", {"phone-context": "example.com"})
    assert str(uri) == "tel:+86-10-1234-5678;phone-context=example.com"


def test_unknown_scheme_is_kept_opaque() -> None:
    uri = SipUri.parse("urn:service:sos")
    assert (uri.scheme, uri.host) == ("urn", "service:sos")
    assert str(uri) == "urn:service:sos"


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:user@",
        "sip:@host",
        "sip:host:0",
        "sip:host:65536",
        "sip:host:5o60",
        "sip:host:5²",
        "sip:2001:db8::1",
        "sip:[2001:db8::1",
        "sip:[2001:db8::1]x",
        "sip:us er@host",
        "sip:<host>",
        "no-scheme",
        "1sip:host",
        "tel:",
    ],
)
def test_bad_uris_are_errors(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(text)
    assert info.value.status == 400


def test_split_host_port() -> None:
    assert split_host_port("[::1]:5060") == ("[::1]", 5060)
    assert split_host_port("[::1]") == ("[::1]", None)
    assert split_host_port(" host : 5060 ") == ("host", 5060)
    assert split_host_port("192.0.2.1") == ("192.0.2.1", None)
    with pytest.raises(SipParseError):
        split_host_port("::1")


# -- Via --------------------------------------------------------------------------------------------------


def test_via_fields_and_rport_with_and_without_value() -> None:
    via = Via.parse("SIP/2.0/udp 192.168.1.64:5060;rport;branch=z9hG4bK1;received=10.0.0.1")
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "192.168.1.64", 5060, "z9hG4bK1")
    assert via.params == {"rport": None, "branch": "z9hG4bK1", "received": "10.0.0.1"}
    answered = Via.parse("SIP/2.0/UDP 192.168.1.64:5060;rport=61378;received=192.168.1.13;branch=z9hG4bK2")
    assert answered.params["rport"] == "61378" and answered.params["received"] == "192.168.1.13"


def test_via_with_lws_around_slashes_and_ipv6_received() -> None:
    via = Via.parse("SIP / 2.0 / TCP   [2001:db8::9:1]:6050 ; branch = z9hG4bKx ; received=2001:db8::9:255")
    assert (via.transport, via.host, via.port) == ("TCP", "[2001:db8::9:1]", 6050)
    assert via.params == {"branch": "z9hG4bKx", "received": "2001:db8::9:255"}
    assert str(via) == "SIP/2.0/TCP [2001:db8::9:1]:6050;branch=z9hG4bKx;received=2001:db8::9:255"


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP",
        "SIP/3.0/UDP host",
        "HTTP/2.0/UDP host",
        "SIP/2.0 host",
        "SIP/2.0/UDP host;;branch=1",
        "SIP/2.0/U@P host",
        "SIP/2.0/UDP host:0",
        "SIP/2.0/UDP host:70000;branch=z9hG4bK1",
        "SIP/2.0/UDP [::1]:65536",
        "SIP / 2.0 / UDP host:0",
    ],
)
def test_bad_vias_are_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(text)


# -- name-addr --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "display", "uri", "tag"),
    [
        ("<sip:34020000001320000001@3402000000>;tag=1", None, "sip:34020000001320000001@3402000000", "1"),
        ('"Camera 01" <sip:c@h>;tag=2', "Camera 01", "sip:c@h", "2"),
        ('"" <sip:c@h>', "", "sip:c@h", None),
        ("Camera 01 <sip:c@h>", "Camera 01", "sip:c@h", None),
        ('"a \\"b\\" \\\\ c"<sip:c@h>', 'a "b" \\ c', "sip:c@h", None),
        ('"前门摄像机" <sip:c@h>;tag=3', "前门摄像机", "sip:c@h", "3"),
        ("sip:c@h;tag=4", None, "sip:c@h", "4"),
        ("  <tel:+8610>  ;  TAG = 5 ", None, "tel:+8610", "5"),
    ],
)
def test_name_addr_forms(text: str, display: str | None, uri: str, tag: str | None) -> None:
    addr = NameAddr.parse(text)
    assert (addr.display, str(addr.uri), addr.tag) == (display, uri, tag)


@pytest.mark.parametrize(
    "text",
    ['"open <sip:c@h>', '"quoted" sip:c@h', "Bell, Alexander <sip:c@h>", "<sip:c@h", "sip:c@h?Route=x", "sip:a@h,b"],
)
def test_bad_name_addrs_are_errors(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


def test_name_addr_is_written_in_name_addr_form() -> None:
    assert str(NameAddr.parse("sip:c@h;tag=1")) == "<sip:c@h>;tag=1"
    assert str(NameAddr.parse('Camera <sip:c@h>')) == '"Camera" <sip:c@h>'


# -- datagram rules (RFC 3261 §7.5, §18.3) ---------------------------------------------------------------


def test_bare_lf_message_equals_crlf_message() -> None:
    crlf = INVITE_HEAD + b"Content-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0"
    a, b = parse_message(crlf), parse_message(crlf.replace(b"\r\n", b"\n"))
    assert a.headers == b.headers and a.start_line() == b.start_line()
    assert a.body == b.body == b"v=0"


def test_bare_lf_head_with_crlf_body_splits_at_the_first_blank_line() -> None:
    body = b"line\r\n\r\nafter a blank line\r\n"
    data = (INVITE_HEAD + b"Content-Length: %d\r\n\r\n" % len(body)).replace(b"\r\n", b"\n") + body
    msg = parse_message(data)
    assert msg.body == body and msg.call_id == "c1"


def test_header_only_datagram_without_final_blank_line() -> None:
    for tail in (b"", b"\r\n"):
        msg = parse_message(INVITE_HEAD.rstrip(b"\r\n") + tail)
        assert isinstance(msg, Request) and msg.body == b""
        assert msg.call_id == "c1"
        msg.check()


def test_body_longer_than_content_length_is_cut() -> None:
    msg = parse_message(INVITE_HEAD + b"Content-Length: 4\r\n\r\nabcdefgh")
    assert msg.body == b"abcd"


def test_content_length_larger_than_body_is_an_error() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(INVITE_HEAD + b"Content-Length: 9\r\n\r\nabcdefgh")
    assert info.value.status == 400


def test_missing_content_length_takes_the_rest_of_the_datagram() -> None:
    assert parse_message(INVITE_HEAD + b"\r\n\x00\xff body\r\n").body == b"\x00\xff body\r\n"


@pytest.mark.parametrize("value", [b"-1", b"abc", b"", b"1 2", b"0x10", "²".encode(), "٣".encode()])
def test_bad_content_length_is_an_error(value: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_message(INVITE_HEAD + b"Content-Length: " + value + b"\r\n\r\n")


def test_max_size_is_513() -> None:
    data = INVITE_HEAD + b"Content-Length: 100\r\n\r\n" + b"x" * 100
    assert parse_message(data, max_size=len(data)).body == b"x" * 100
    with pytest.raises(SipParseError) as info:
        parse_message(data, max_size=len(data) - 1)
    assert info.value.status == 513


def test_leading_crlfs_are_skipped() -> None:
    msg = parse_message(b"\r\n\r\n\n" + INVITE_HEAD + b"\r\n")
    assert isinstance(msg, Request) and msg.method == "INVITE"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"\r\n\r\n", 400),
        (b"INVITE sip:a@b\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0 extra\r\n\r\n", 400),
        (b"INV ITE sip:a@b SIP/2.0\r\n\r\n", 400),
        (b"IN<VITE sip:a@b SIP/2.0\r\n\r\n", 400),
        (b"INVITE sip:a@b HTTP/1.1\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/3.0\r\n\r\n", 505),
        (b"SIP/2.0 20 OK\r\n\r\n", 400),
        (b"SIP/2.0 099 Low\r\n\r\n", 400),
        (b"SIP/2.0 700 High\r\n\r\n", 400),
        (b"SIP/1.0 200 OK\r\n\r\n", 400),
        ("SIP/2.0 2²0 OK\r\n\r\n".encode(), 400),
        (b"INVITE sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nBad Name: x\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 0\r\nl: 0\r\n\r\n", 400),
    ],
)
def test_unreadable_messages(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == status
    assert info.value.reason == str(info.value)


def test_response_reason_phrases() -> None:
    assert parse_message(b"SIP/2.0 101 Dialog Establishement\r\n\r\n").reason == "Dialog Establishement"  # type: ignore[union-attr]
    assert Response(200).reason == "OK" and Response(299).reason == ""
    assert Response(200, "").start_line() == "SIP/2.0 200 "


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    """Network input yields a message or a SipError, never another exception."""
    try:
        msg = parse_message(data)
    except SipError:
        return
    if isinstance(msg, Request):
        try:
            msg.check()
            msg.check_addresses()
        except SipError:
            pass


@given(requests(), st.integers(0, 10**6))
@settings(max_examples=60)
def test_mutated_requests_never_crash(req: Request, seed: int) -> None:
    data = bytearray(req.serialize())
    position = seed % len(data)
    data[position] = (data[position] + 1 + seed // len(data)) % 256
    try:
        msg = parse_message(bytes(data))
        if isinstance(msg, Request):
            msg.check()
            msg.check_addresses()
            make_response(msg, 400, to_tag="t").serialize()
    except SipError:
        pass


# -- structured access and validation ------------------------------------------------------------------


def test_numeric_headers() -> None:
    msg = parse_message(INVITE_HEAD + b"Max-Forwards: 0070\r\nExpires: 4294967295\r\n\r\n")
    assert msg.max_forwards == 70 and msg.expires == 2**32 - 1
    assert parse_message(INVITE_HEAD + b"\r\n").max_forwards is None
    # Unicode digits pass str.isdigit() and must still be refused as numbers ("²" is not even int()-able).
    bad = ["Max-Forwards: 256", "Max-Forwards: -1", "Expires: 4294967296", "Expires: soon", "Max-Forwards: ²", "Expires: ٣"]
    for header in (line.encode() for line in bad):
        with pytest.raises(SipParseError):
            parse_message(INVITE_HEAD + header + b"\r\n\r\n").check()  # type: ignore[union-attr]


def test_cseq_range() -> None:
    """RFC 3261 §8.1.1.5: a CSeq number is a 32-bit unsigned integer (only the initial value must be
    below 2**31, and a peer's later requests may pass it)."""
    assert CSeq.parse("4294967295 INVITE") == CSeq(2**32 - 1, "INVITE")
    assert CSeq.parse(" 0009 \t INVITE ") == CSeq(9, "INVITE")
    assert CSeq.parse("9\tINVITE") == CSeq(9, "INVITE")  # LWS may be a tab
    for bad in ("4294967296 INVITE", "1", "-1 INVITE", "1 INVITE extra", "x INVITE", "1 IN<VITE", "² INVITE"):
        with pytest.raises(SipParseError):
            CSeq.parse(bad)


def test_content_type_is_lower_case_without_parameters() -> None:
    msg = parse_message(INVITE_HEAD + b"Content-Type: Application/MANSCDP+xml ; charset=GB2312\r\n\r\n")
    assert msg.content_type == "application/manscdp+xml"
    assert parse_message(INVITE_HEAD + b"\r\n").content_type is None


def test_check_accepts_a_minimal_request_and_tel_uri() -> None:
    for uri in (b"sip:34020000001320000001@3402000000", b"tel:+8610", b"SIPS:a@b"):
        msg = parse_message(INVITE_HEAD.replace(b"sip:34020000001320000001@3402000000 SIP", uri + b" SIP", 1))
        assert isinstance(msg, Request)
        msg.check()
        msg.check_addresses()


@pytest.mark.parametrize(
    ("edit", "status"),
    [
        ((b"Call-ID: c1\r\n", b""), 400),
        ((b"CSeq: 1 INVITE\r\n", b"CSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n"), 400),
        ((b"CSeq: 1 INVITE\r\n", b"CSeq: 1 BYE\r\n"), 400),
        ((b"To: <sip:34020000001320000001@3402000000>\r\n", b"To: <a>\r\nTo: <b>\r\n"), 400),
        ((b"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1\r\n", b""), 400),
        ((b"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK1\r\n", b"Via: SIP/2.0/UDP\r\n"), 400),
        ((b"sip:34020000001320000001@3402000000 SIP", b"http://example.com SIP"), 416),
        ((b"sip:34020000001320000001@3402000000 SIP", b"sip:a@b?Route=x SIP"), 400),
    ],
)
def test_check_rejects(edit: tuple[bytes, bytes], status: int) -> None:
    msg = parse_message(INVITE_HEAD.replace(*edit, 1) + b"\r\n")
    assert isinstance(msg, Request)
    with pytest.raises(SipParseError) as info:
        msg.check()
    assert info.value.status == status


def test_header_editing() -> None:
    msg = parse_message(INVITE_HEAD + b"Route: <sip:p1;lr>\r\nRoute: <sip:p2;lr>\r\n\r\n")
    assert msg.values("Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    msg.set("route", "<sip:p3;lr>")
    assert msg.get_all("Route") == ["<sip:p3;lr>"]
    msg.remove("ROUTE")
    assert "Route" not in msg
    msg.prepend("v", "SIP/2.0/TCP gw;branch=z9hG4bKgw")
    assert msg.via.host == "gw" and msg.headers[0] == ("Via", "SIP/2.0/TCP gw;branch=z9hG4bKgw")
    msg.add("x-extra", "1")
    assert msg.headers[-1] == ("x-extra", "1")


def test_replace_top_via_keeps_the_rest() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h1;rport;branch=z9hG4bK1, SIP/2.0/UDP h2\r\n\r\n")
    via = msg.via
    via.params["rport"] = "5060"
    via.params["received"] = "10.0.0.9"
    msg.replace_top_via(via)
    again = parse_message(msg.serialize())
    assert [str(v) for v in again.vias] == ["SIP/2.0/UDP h1;rport=5060;branch=z9hG4bK1;received=10.0.0.9", "SIP/2.0/UDP h2"]


# -- responses built from requests (RFC 3261 §8.2.6) ----------------------------------------------------


def test_make_response_copies_what_rfc3261_requires() -> None:
    data = INVITE_HEAD.replace(b"CSeq", b"Via: SIP/2.0/UDP proxy;branch=z9hG4bK0\r\nCSeq") + b"Max-Forwards: 70\r\n\r\n"
    req = parse_message(data)
    assert isinstance(req, Request)
    resp = make_response(req, 200, to_tag="t1", headers=[("contact", "<sip:gw@10.0.0.1>")], body=b"v=0\r\n")
    parsed = parse_message(resp.serialize())
    assert isinstance(parsed, Response) and (parsed.status, parsed.reason) == (200, "OK")
    assert parsed.get_all("Via") == req.get_all("Via")
    assert parsed.from_ == req.from_ and parsed.to.tag == "t1"
    assert parsed.call_id == "c1" and parsed.cseq == CSeq(1, "INVITE")
    assert parsed.get("Max-Forwards") is None
    assert parsed.get("Contact") == "<sip:gw@10.0.0.1>" and parsed.body == b"v=0\r\n"


def test_make_response_to_tag_rules() -> None:
    req = parse_message(INVITE_HEAD + b"\r\n")
    assert isinstance(req, Request)
    assert make_response(req, 100, to_tag="t1").to.tag is None  # 100 Trying never gets a tag
    in_dialog = parse_message(INVITE_HEAD.replace(b"3402000000>\r\nCall", b"3402000000>;tag=old\r\nCall") + b"\r\n")
    assert isinstance(in_dialog, Request)
    assert make_response(in_dialog, 200, to_tag="new").to.tag == "old"


def test_make_response_to_a_malformed_to_still_answers() -> None:
    """A 400 for a request whose To cannot be parsed copies the To as it came instead of failing."""
    bad_to = b'To: "unterminated <sip:34020000001320000001@3402000000>;tag=9\r\n'
    req = parse_message(INVITE_HEAD.replace(b"To: <sip:34020000001320000001@3402000000>\r\n", bad_to) + b"\r\n")
    assert isinstance(req, Request)
    with pytest.raises(SipParseError):
        req.check_addresses()
    resp = make_response(req, 400, to_tag="t1")
    assert resp.get("To") == bad_to[4:-2].decode()


def test_non_standard_header_names_are_found_in_any_case() -> None:
    """GB/T 28181-2022 devices send e.g. X-GB-Ver; names are case-insensitive (RFC 3261 §7.3.5)."""
    from gbgw.sip.message import parse_message as _parse

    msg = _parse(
        b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\nX-GB-Ver: 3.0\r\nContent-Length: 0\r\n\r\n"
    )
    assert msg.get("x-gb-ver") == "3.0"
    assert msg.get("X-GB-VER") == "3.0"
    assert msg.get_all("x-gb-ver") == ["3.0"]

"""StreamFramer: cutting SIP messages out of a TCP byte stream by Content-Length (RFC 3261 §18.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gbgw.sip.errors import SipParseError
from gbgw.sip.message import Request, StreamFramer, parse_message


def message(call_id: str, body: bytes = b"", *, length_header: str = "Content-Length: {}", eol: bytes = b"\r\n") -> bytes:
    lines = [
        "MESSAGE sip:34020000002000000001@3402000000 SIP/2.0",
        "Via: SIP/2.0/TCP 192.168.1.64:5060;rport;branch=z9hG4bK" + call_id,
        "From: <sip:34020000001320000001@3402000000>;tag=1",
        "To: <sip:34020000002000000001@3402000000>",
        f"Call-ID: {call_id}",
        "CSeq: 20 MESSAGE",
        "Content-Type: Application/MANSCDP+xml",
        length_header.format(len(body)),
    ]
    return eol.join(line.encode() for line in lines) + eol + eol + body


KEEPALIVE = message("k1", b'<?xml version="1.0" encoding="GB2312"?>\r\n<Notify><CmdType>Keepalive</CmdType></Notify>\r\n')
CATALOG = message("c1", "<Name>前门</Name>\r\n\r\n<Name>后门</Name>".encode("gbk"))
EMPTY = message("e1")
STREAM = [KEEPALIVE, CATALOG, EMPTY]


def feed_in_chunks(framer: StreamFramer, data: bytes, cuts: list[int]) -> list[bytes]:
    out: list[bytes] = []
    previous = 0
    for cut in [*sorted(cuts), len(data)]:
        out += framer.feed(data[previous:cut])
        previous = cut
    return out


def test_whole_stream_in_one_read() -> None:
    framer = StreamFramer()
    assert framer.feed(b"".join(STREAM)) == STREAM
    assert framer.buffered == 0


def test_split_at_every_byte_boundary() -> None:
    data = b"".join(STREAM)
    for cut in range(len(data) + 1):
        framer = StreamFramer()
        assert framer.feed(data[:cut]) + framer.feed(data[cut:]) == STREAM, cut
        assert framer.buffered == 0


def test_one_byte_at_a_time() -> None:
    framer = StreamFramer()
    data = b"".join(STREAM)
    frames = [frame for i in range(len(data)) for frame in framer.feed(data[i : i + 1])]
    assert frames == STREAM


bodies = st.one_of(
    st.binary(max_size=120),
    st.just(b"\r\n\r\nContent-Length: 99\r\n\r\n"),  # what a naive framer would take for a head
    st.sampled_from(["<Name>摄像机</Name>", "报警"]).map(lambda t: t.encode("gbk")),
)
messages = st.builds(
    message,
    st.text("abcdef0123456789", min_size=1, max_size=8),
    bodies,
    length_header=st.sampled_from(["Content-Length: {}", "l:{}", "content-length :  {}", "CONTENT-LENGTH:{}"]),
)
pings = st.sampled_from([b"", b"", b"\r\n\r\n", b"\r\n\r\n\r\n\r\n", b"\r\n"])


@given(st.lists(st.tuples(pings, messages), min_size=1, max_size=5), st.lists(st.integers(0, 4000), max_size=12))
def test_random_chunking_yields_exactly_the_messages(items: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    data = b"".join(ping + msg for ping, msg in items)
    framer = StreamFramer()
    frames = feed_in_chunks(framer, data, [c % (len(data) + 1) for c in cuts])
    assert frames == [msg for _, msg in items]
    assert framer.buffered == 0
    # CRLFCRLF is a ping (RFC 5626 §4.4.1); a lone CRLF is a pong and is not counted.
    assert framer.pings == sum(ping.count(b"\r\n\r\n") for ping, _ in items)
    for frame in frames:
        assert isinstance(parse_message(frame), Request)


def test_keepalive_pings_between_messages() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.feed(KEEPALIVE + b"\r\n\r\n\r\n\r\n" + EMPTY) == [KEEPALIVE, EMPTY]
    assert framer.pings == 3
    assert framer.buffered == 0


def test_ping_split_across_reads_is_counted_once() -> None:
    framer = StreamFramer()
    for byte in b"\r\n\r\n":
        assert framer.feed(bytes([byte])) == []
    assert framer.pings == 1


def test_body_exactly_at_the_read_boundary() -> None:
    framer = StreamFramer()
    assert framer.feed(CATALOG[:-1]) == []
    assert framer.buffered == len(CATALOG) - 1
    assert framer.feed(CATALOG[-1:]) == [CATALOG]
    assert framer.feed(CATALOG) == [CATALOG]
    assert framer.buffered == 0


def test_head_complete_body_pending() -> None:
    framer = StreamFramer()
    head_end = CATALOG.index(b"\r\n\r\n") + 4
    assert framer.feed(CATALOG[:head_end]) == []
    assert framer.feed(CATALOG[head_end:]) == [CATALOG]


def test_missing_content_length_frames_a_header_only_message() -> None:
    """RFC 3261 §18.3 makes Content-Length mandatory on streams; without it the message is taken to
    have no body rather than to swallow the stream."""
    no_length = EMPTY.replace(b"Content-Length: 0\r\n", b"")
    framer = StreamFramer()
    assert framer.feed(no_length + KEEPALIVE) == [no_length, KEEPALIVE]


def test_bare_lf_messages() -> None:
    lf = message("lf1", b"abc\r\n\r\ndef", eol=b"\n")
    framer = StreamFramer()
    # A bare-LF message followed by a CRLF one: its blank line comes first, not the next message's.
    assert framer.feed(lf + KEEPALIVE + lf) == [lf, KEEPALIVE, lf]
    assert parse_message(lf).body == b"abc\r\n\r\ndef"


def test_oversize_header_block_without_blank_line_is_an_error() -> None:
    framer = StreamFramer(max_size=1000)
    assert framer.feed(b"MESSAGE sip:a@b SIP/2.0\r\n" + b"X-Filler: " + b"x" * 900 + b"\r\n") == []
    with pytest.raises(SipParseError) as info:
        framer.feed(b"Y" * 100)
    assert info.value.status == 513


def test_content_length_beyond_max_size_is_refused_before_the_body_arrives() -> None:
    framer = StreamFramer(max_size=1000)
    with pytest.raises(SipParseError) as info:
        framer.feed(message("big", b"").replace(b"Content-Length: 0", b"Content-Length: 5000"))
    assert info.value.status == 513


def test_message_of_exactly_max_size_passes() -> None:
    assert StreamFramer(max_size=len(CATALOG)).feed(CATALOG) == [CATALOG]
    with pytest.raises(SipParseError):
        StreamFramer(max_size=len(CATALOG) - 1).feed(CATALOG)


@pytest.mark.parametrize("value", [b"-1", b"abc", b"", b"1.5", b"0x10", "²".encode()])
def test_bad_content_length_is_an_error(value: bytes) -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(EMPTY.replace(b"Content-Length: 0", b"Content-Length: " + value))


def test_two_content_lengths_are_an_error() -> None:
    """RFC 4475 §3.3.9: over TCP the body's extent is unknowable, so the connection must be closed."""
    with pytest.raises(SipParseError):
        StreamFramer().feed(EMPTY.replace(b"Content-Length: 0\r\n", b"Content-Length: 0\r\nl: 5\r\n") + b"12345")


def test_content_length_in_a_header_value_is_not_a_length() -> None:
    tricky = message("t1", b"body").replace(b"Content-Type:", b"Subject: Content-Length: 99\r\nContent-Type:")
    assert StreamFramer().feed(tricky + EMPTY) == [tricky, EMPTY]

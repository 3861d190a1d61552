"""SIP requests and responses: parsing from bytes, access to headers, canonical serialization.

Headers are kept as a list of ``(canonical name, raw value)`` pairs and structured values (Via, CSeq,
From/To...) are parsed only when asked for and then cached: the hot path (a keepalive MESSAGE answered
200) touches four headers and must not pay for the rest. Bodies stay bytes, because GB/T 28181 bodies are
often GB2312/GBK and only the MANSCDP layer knows how to decode them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from gbgw.sip.errors import SipParseError
from gbgw.sip.headers import (
    CANONICAL_NAMES,
    SINGLE_HEADERS,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    is_token,
    split_commas,
)
from gbgw.sip.uri import SipUri

MAX_MESSAGE_SIZE = 65535
SIP_VERSION = "SIP/2.0"
SUPPORTED_SCHEMES = frozenset({"sip", "sips", "tel"})

REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# Headers a response copies from its request (RFC 3261 §8.2.6.2).
_COPIED_TO_RESPONSE = ("Via", "From", "To", "Call-ID", "CSeq")
_COPIED_SET = frozenset(_COPIED_TO_RESPONSE)
_REQUIRED_IN_REQUEST = ("Via", "From", "To", "Call-ID", "CSeq")


def new_branch() -> str:
    """A Via branch with the RFC 3261 magic cookie, unique enough for transaction matching."""
    return "z9hG4bK" + os.urandom(8).hex()


def new_tag() -> str:
    return os.urandom(5).hex()


def new_call_id(host: str) -> str:
    return f"{os.urandom(10).hex()}@{host}"


class Message:
    """What requests and responses share: headers and body."""

    __slots__ = ("_cache", "_cseq", "_first", "_multi", "_via", "body", "headers")

    def __init__(self, headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body
        self._cache: dict[str, Any] | None = None
        # The two values every message's processing reads get plain slots instead of the cache dict.
        self._via: Via | None = None
        self._cseq: CSeq | None = None
        # First value of each header and the names that occur more than once: built by the parser in the
        # same pass that reads the lines, so lookups on the hot path are one dict access.
        self._first: dict[str, str] | None = None
        self._multi: set[str] | None = None

    # -- raw access ----------------------------------------------------------------------------------

    def _index(self) -> dict[str, str]:
        first = self._first
        if first is None:
            first = {}
            multi: set[str] = set()
            for n, v in self.headers:
                if n in first:
                    multi.add(n)
                else:
                    first[n] = v
            self._first = first
            self._multi = multi or None
        return first

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of a header (names are case-insensitive; compact forms are accepted)."""
        name = _EXACT_NAMES.get(name) or canonical_name(name)
        value = self._index().get(name)
        if value is None and name not in _EXACT_NAMES:
            # A non-standard name keeps the spelling it arrived with; compare it case-insensitively.
            lowered = name.lower()
            for n, v in self.headers:
                if n.lower() == lowered:
                    return v
        return default if value is None else value

    def repeated(self, name: str) -> bool:
        """Whether the header occurs on more than one line."""
        self._index()
        return self._multi is not None and canonical_name(name) in self._multi

    def get_all(self, name: str) -> list[str]:
        """Every line of a header, in order, without splitting on commas."""
        name = canonical_name(name)
        if name in _EXACT_NAMES:
            return [v for n, v in self.headers if n == name]
        lowered = name.lower()
        return [v for n, v in self.headers if n.lower() == lowered]

    def values(self, name: str) -> list[str]:
        """The list elements of a list header (RFC 3261 §7.3.1) across all its lines."""
        out: list[str] = []
        for line in self.get_all(name):
            out.extend(split_commas(line))
        return out

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def set(self, name: str, value: str) -> None:
        """Replace every line of ``name`` by one line, at the position of the first."""
        name = canonical_name(name)
        out: list[tuple[str, str]] = []
        placed = False
        for n, v in self.headers:
            if n == name:
                if not placed:
                    out.append((name, value))
                    placed = True
            else:
                out.append((n, v))
        if not placed:
            out.append((name, value))
        self.headers = out
        self._invalidate()

    def add(self, name: str, value: str) -> None:
        self.headers.append((canonical_name(name), value))
        self._invalidate()

    def prepend(self, name: str, value: str) -> None:
        self.headers.insert(0, (canonical_name(name), value))
        self._invalidate()

    def remove(self, name: str) -> None:
        name = canonical_name(name)
        self.headers = [(n, v) for n, v in self.headers if n != name]
        self._invalidate()

    def _invalidate(self) -> None:
        self._cache = None
        self._via = None
        self._cseq = None
        self._first = None
        self._multi = None

    def replace_top_via(self, via: Via, text: str | None = None) -> None:
        """Write back a modified top Via (``received``/``rport``), keeping the entries after it.

        ``text`` is the new top entry as it should appear on the wire (default: ``str(via)``); the
        endpoint passes an edited copy of what the peer sent, which is cheaper and keeps its spelling.
        """
        headers = self.headers
        for i, (name, value) in enumerate(headers):
            if name == "Via":
                rest = split_commas(value)[1:] if "," in value else []
                value = ", ".join([text or str(via), *rest]) if rest else text or str(via)
                headers[i] = ("Via", value)
                if self._first is not None:
                    self._first["Via"] = value
                break
        if self._cache is not None:
            self._cache.pop("vias", None)
        self._via = via

    # -- structured access (parsed on first use) -----------------------------------------------------

    def _cached(self, key: str) -> Any:
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        if key in cache:
            return cache[key]
        value = _PARSERS[key](self)
        cache[key] = value
        return value

    @property
    def call_id(self) -> str | None:
        return self.get("Call-ID")

    @property
    def cseq(self) -> CSeq:
        cseq = self._cseq
        if cseq is None:
            value = self.get("CSeq")
            if value is None:
                raise SipParseError("Missing CSeq header")
            cseq = self._cseq = CSeq.parse(value)
        return cseq

    @property
    def vias(self) -> list[Via]:
        return self._cached("vias")

    @property
    def via(self) -> Via:
        """The top Via: the one that names this hop's transaction and where responses go."""
        via = self._via
        if via is None:
            first = self.get("Via")
            if first is None:
                raise SipParseError("Missing Via header")
            via = self._via = Via.parse(first if "," not in first else split_commas(first)[0])
        return via

    @property
    def from_(self) -> NameAddr:
        return self._cached("from")

    @property
    def to(self) -> NameAddr:
        return self._cached("to")

    @property
    def contacts(self) -> list[NameAddr]:
        return self._cached("contacts")

    @property
    def contact(self) -> NameAddr | None:
        contacts = self.contacts
        return contacts[0] if contacts else None

    @property
    def content_type(self) -> str | None:
        """The media type, lower-cased and without parameters (devices vary the case)."""
        value = self.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    @property
    def expires(self) -> int | None:
        return self._cached("expires")

    @property
    def max_forwards(self) -> int | None:
        return self._cached("max_forwards")

    # -- output --------------------------------------------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError

    def serialize(self) -> bytes:
        """Canonical bytes: CRLF line ends, standard names, a Content-Length that matches the body."""
        head = "\r\n".join([self.start_line(), *[f"{n}: {v}" for n, v in self.headers]])
        body = self.body
        return f"{head}\r\nContent-Length: {len(body)}\r\n\r\n".encode("utf-8", "surrogateescape") + body

    def __bytes__(self) -> bytes:
        return self.serialize()


class Request(Message):
    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    @property
    def request_uri(self) -> SipUri:
        return self._cached("ruri")

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"

    def check(self) -> None:
        """Raise :class:`SipParseError` (carrying the status to answer) if this request is unusable.

        Done apart from parsing so that a request that is readable but wrong still yields the fields a
        4xx answer needs (Via, From, To, Call-ID, CSeq). Only what every request's processing relies on
        is checked here (presence, duplicates, CSeq, Via, Request-URI, numeric fields); From, To and
        Contact are parsed when first used, and a syntax error there raises the same way then, so the
        hot keepalive path does not pay for two name-addr parses it may not need.
        """
        first = self._index()
        multi = self._multi
        if multi is not None:
            for name in sorted(multi & SINGLE_HEADERS):
                raise SipParseError(f"Multiple {name} headers")
        for name in _REQUIRED_IN_REQUEST:
            if name not in first:
                raise SipParseError(f"Missing {name} header")
        if self.cseq.method != self.method:
            raise SipParseError("CSeq method does not match the request method")
        self.via  # noqa: B018 - parsing is the check
        for name, limit in _NUMERIC_LIMITS:
            value = first.get(name)
            if value is not None and (not value.isascii() or not value.isdigit() or int(value) > limit):
                raise SipParseError(f"Bad {name} value {value!r}")
        scheme = self.uri.partition(":")[0].lower()
        if scheme not in SUPPORTED_SCHEMES:
            raise SipParseError(f"Unsupported URI scheme {scheme!r}", status=416)
        # Headers follow the host; a '?' in the user part is legal (RFC 4475 §3.1.1.2).
        if "?" in self.uri[self.uri.rfind("@") + 1 :]:
            raise SipParseError("Request-URI must not contain headers")

    def check_addresses(self) -> None:
        """Parse From, To, Contact and the Request-URI so that a syntax error there surfaces now."""
        self.from_  # noqa: B018 - parsing is the check
        self.to  # noqa: B018
        self.contacts  # noqa: B018
        self.request_uri  # noqa: B018


class Response(Message):
    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = REASON_PHRASES.get(status, "") if reason is None else reason

    def start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to ``request`` with the headers RFC 3261 §8.2.6 copies, plus ``headers``.

    ``to_tag`` is added to To unless the request already has one (in-dialog) or the response is 100.
    """
    first = request._index()
    if request._multi is None and first.keys() >= _COPIED_SET:
        # Every header once (the usual case): copy by lookup instead of scanning the list.
        to = first["To"]
        if to_tag is not None and status > 100 and not _has_tag(to):
            to = f"{to};tag={to_tag}"
        copied = [
            ("Via", first["Via"]),
            ("From", first["From"]),
            ("To", to),
            ("Call-ID", first["Call-ID"]),
            ("CSeq", first["CSeq"]),
        ]
    else:
        copied = []
        for n, v in request.headers:
            if n in _COPIED_TO_RESPONSE:
                if n == "To" and to_tag is not None and status > 100 and not _has_tag(v):
                    v = f"{v};tag={to_tag}"
                copied.append((n, v))
    copied.extend((canonical_name(n), v) for n, v in headers)
    return Response(status, reason, copied, body)


def _has_tag(value: str) -> bool:
    """Whether a From/To value carries a tag, without a full parse (hot path)."""
    gt = value.rfind(">")
    tail = value[gt + 1 :] if gt >= 0 else value
    if "tag" not in tail.lower():
        return False
    try:
        return "tag" in NameAddr.parse(value).params
    except SipParseError:
        # The request is being refused for this very field: copy it as sent rather than fail to answer.
        return True


_NUMERIC_LIMITS = (("Max-Forwards", 255), ("Expires", 2**32 - 1))


def _int_header(msg: Message, name: str, limit: int) -> int | None:
    value = msg.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or int(value) > limit:
        raise SipParseError(f"Bad {name} value {value!r}")
    return int(value)


def _parse_vias(msg: Message) -> list[Via]:
    vias = [Via.parse(v) for v in msg.values("Via")]
    if not vias:
        raise SipParseError("Missing Via header")
    return vias


def _parse_name_addr(msg: Message, name: str) -> NameAddr:
    value = msg.get(name)
    if value is None:
        raise SipParseError(f"Missing {name} header")
    return NameAddr.parse(value)


def _parse_ruri(msg: Message) -> SipUri:
    assert isinstance(msg, Request)
    return SipUri.parse(msg.uri)


_PARSERS = {
    "vias": _parse_vias,
    "from": lambda m: _parse_name_addr(m, "From"),
    "to": lambda m: _parse_name_addr(m, "To"),
    "contacts": lambda m: [NameAddr.parse(v) for v in m.values("Contact")],
    "expires": lambda m: _int_header(m, "Expires", 2**32 - 1),
    "max_forwards": lambda m: _int_header(m, "Max-Forwards", 255),
    "ruri": _parse_ruri,
}


# -- parsing -----------------------------------------------------------------------------------------

_CONTENT_LENGTH_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def _blank_line(data: bytes | bytearray) -> tuple[int, int]:
    """Where the header block ends and the length of the blank line that ends it (-1 if none yet).

    Bare-LF messages, which some embedded stacks send, end with LFLF. The earlier ending wins, so a
    CRLFCRLF in a bare-LF message's body, or in the next message on a stream, is not taken for it; a
    first line ending in CRLF says the message is CRLF throughout (the hot path: one search).
    """
    first = data.find(b"\n")
    if first > 0 and data[first - 1] == 13:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return end, 4
    lf = data.find(b"\n\n")
    crlf = data.find(b"\r\n\r\n", 0, lf if lf >= 0 else len(data))
    return (crlf, 4) if crlf >= 0 else (lf, 2)


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    end, sep = _blank_line(data)
    if end >= 0:
        return data[:end], data[end + sep :]
    # No blank line: a header-only datagram whose sender dropped the final CRLF.
    return data.rstrip(b"\r\n"), b""


def _header_lines(head: str) -> list[str]:
    crlf = head.count("\r\n")
    if crlf == head.count("\n") and "\n " not in head and "\n\t" not in head:
        return head.split("\r\n") if crlf else head.split("\r") if "\r" in head else [head]
    # Folded lines (RFC 3261 §7.3.1), bare LF or mixed line ends: unfold slowly, it is rare.
    unfolded: list[str] = []
    for line in head.replace("\r\n", "\n").split("\n"):
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] = unfolded[-1] + " " + line.strip()
        else:
            unfolded.append(line)
    return unfolded


def parse_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> Request | Response:
    """Parse one whole SIP message (one datagram, or one frame cut by :class:`StreamFramer`).

    Raises :class:`SipParseError` when the bytes cannot be read as SIP. A body longer than
    Content-Length is cut (RFC 3261 §18.3); a shorter one is an error.
    """
    if len(data) > max_size:
        raise SipParseError("Message too large", status=513)
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("Empty message")
    raw_head, body = _split_head(data)
    head = raw_head.decode("utf-8", "surrogateescape")
    lines = _header_lines(head)
    first = lines[0]

    msg: Request | Response
    if first.startswith("SIP/") or first[:4].upper() == "SIP/":
        parts = first.split(" ", 2)
        if len(parts) < 2 or parts[0].upper() != SIP_VERSION:
            raise SipParseError(f"Bad status line {first!r}")
        code = parts[1]
        if len(code) != 3 or not code.isascii() or not code.isdigit() or not 100 <= int(code) <= 699:
            raise SipParseError(f"Bad status code {code!r}")
        msg = Response(int(code), parts[2] if len(parts) == 3 else "")
    else:
        parts = first.split(" ")
        if len(parts) != 3:
            raise SipParseError(f"Bad request line {first!r}")
        method, uri, version = parts
        if not is_token(method):
            raise SipParseError(f"Bad method {method!r}")
        if version.upper() != SIP_VERSION:
            if version[:4].upper() == "SIP/":
                raise SipParseError(f"SIP version {version} not supported", status=505)
            raise SipParseError(f"Bad request line {first!r}")
        if not uri or "<" in uri or ">" in uri:
            raise SipParseError(f"Bad Request-URI {uri!r}")
        msg = Request(method, uri)

    headers = msg.headers
    index: dict[str, str] = {}
    multi: set[str] | None = None
    content_length: int | None = None
    exact = _EXACT_NAMES
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise SipParseError(f"Malformed header line {line[:40]!r}")
        # Most peers spell names the standard way: one dict hit, no strip/lower on the hot path.
        cname = exact.get(name)
        if cname is None:
            name = name.strip()
            cname = CANONICAL_NAMES.get(name.lower())
            if cname is None:
                if not is_token(name):
                    raise SipParseError(f"Bad header name {name[:40]!r}")
                cname = name
        value = value.strip()
        if cname == "Content-Length":
            if content_length is not None:
                raise SipParseError("Multiple Content-Length headers")
            if not value.isascii() or not value.isdigit():
                raise SipParseError(f"Bad Content-Length {value!r}")
            content_length = int(value)
            continue
        headers.append((cname, value))
        if cname in index:
            if multi is None:
                multi = set()
            multi.add(cname)
        else:
            index[cname] = value
    msg._first = index
    msg._multi = multi

    if content_length is not None:
        if content_length > len(body):
            raise SipParseError("Content-Length larger than the body")
        if content_length < len(body):
            body = body[:content_length]
    msg.body = body
    return msg


_EXACT_NAMES: dict[str, str] = {name: name for name in CANONICAL_NAMES.values()}


class StreamFramer:
    """Cuts SIP messages out of a TCP byte stream using Content-Length (RFC 3261 §18.3).

    Sans-IO: ``feed`` bytes, get whole messages. A message larger than ``max_size`` raises, and the
    caller closes the connection since the stream can no longer be trusted to be in step.
    """

    __slots__ = ("_buf", "_crlf_run", "max_size", "pings")

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self.max_size = max_size
        self.pings = 0
        self._crlf_run = 0

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while buf:
            start = 0
            while start < len(buf) and buf[start] in (13, 10):
                start += 1
            if start:
                # Bare CRLFs between messages are RFC 5626 keep-alive pings (CRLFCRLF each), counted
                # across reads since a ping may arrive split.
                run = self._crlf_run + start
                self.pings += run // 4 - self._crlf_run // 4
                self._crlf_run = run
                del buf[:start]
                continue
            self._crlf_run = 0
            end, sep = _blank_line(buf)
            if end < 0:
                if len(buf) > self.max_size:
                    raise SipParseError("Message too large", status=513)
                break
            head = bytes(buf[:end])
            found = _CONTENT_LENGTH_RE.findall(head)
            length = 0
            if found:
                if len(found) > 1:
                    # Which one frames the body is unknowable (RFC 4475 §3.3.9): the stream is lost.
                    raise SipParseError("Multiple Content-Length headers")
                text = found[0].strip()
                if not text.isascii() or not text.isdigit():
                    raise SipParseError(f"Bad Content-Length {text!r}")
                length = int(text)
            total = end + sep + length
            if total > self.max_size:
                raise SipParseError("Message too large", status=513)
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)

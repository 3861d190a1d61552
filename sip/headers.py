"""Header names and the structured headers SIP relies on: Via, name-addr (From/To/Contact/Route), CSeq.

Parsing is liberal in white space and case, as RFC 3261 §7.3.1 and real cameras require; writing is
canonical so what we send is what the strictest peer expects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from gbgw.sip.errors import SipParseError
from gbgw.sip.uri import SipUri, format_host_port, split_host_port

TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")

# Compact forms (RFC 3261 §7.3.3 and later RFCs) and standard spellings, keyed by lower-case name.
COMPACT_FORMS = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}
_STANDARD = (
    "Accept Accept-Encoding Accept-Language Alert-Info Allow Allow-Events Authentication-Info Authorization "
    "Call-ID Call-Info Contact Content-Disposition Content-Encoding Content-Language Content-Length "
    "Content-Type CSeq Date Error-Info Event Expires From In-Reply-To Max-Forwards Min-Expires MIME-Version "
    "Monitor Organization Priority Proxy-Authenticate Proxy-Authorization Proxy-Require Record-Route "
    "Refer-To Referred-By Reply-To Require Retry-After Route RSeq RAck Server Session-Expires Subject "
    "Subscription-State Supported Timestamp To Unsupported User-Agent Via Warning WWW-Authenticate "
    "Min-SE P-Asserted-Identity Path Privacy Reason Replaces SIP-ETag SIP-If-Match Security-Client "
    "Security-Server Security-Verify Service-Route Identity Identity-Info Accept-Contact Reject-Contact "
    "Request-Disposition"
).split()
CANONICAL_NAMES: dict[str, str] = {name.lower(): name for name in _STANDARD}
CANONICAL_NAMES.update(COMPACT_FORMS)

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1), so several lines may be combined.
LIST_HEADERS = frozenset(
    "Via Contact Route Record-Route Allow Supported Require Proxy-Require Unsupported Accept "
    "Accept-Encoding Accept-Language Allow-Events Content-Encoding Path Service-Route In-Reply-To "
    "Warning Call-Info Alert-Info Error-Info".split()
)
# Headers of which a request may carry only one: a second one makes the request invalid (RFC 4475 §3.3.9).
SINGLE_HEADERS = frozenset("Call-ID CSeq From To Max-Forwards Content-Length Content-Type Expires".split())


def canonical_name(name: str) -> str:
    """The standard spelling of a header name; unknown names keep the spelling they arrived with."""
    return CANONICAL_NAMES.get(name.lower(), name)


_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


def is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def _skip_quoted(text: str, i: int) -> int:
    """Index just past the quoted string that starts at ``text[i] == '"'``."""
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    raise SipParseError(f"Unterminated quoted string in {text!r}")


def split_commas(value: str) -> list[str]:
    """Split a list header on commas that are outside quotes and angle brackets."""
    if "," not in value:
        return [value.strip()] if value.strip() else []
    parts: list[str] = []
    start = 0
    i = 0
    n = len(value)
    depth = 0
    while i < n:
        c = value[i]
        if c == '"':
            i = _skip_quoted(value, i)
            continue
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "," and depth == 0:
            part = value[start:i].strip()
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    part = value[start:].strip()
    if part:
        parts.append(part)
    return parts


# Parameter names seen on every message: known tokens, so the syntax check can be skipped for them.
_COMMON_PARAMS = frozenset({"branch", "rport", "received", "tag", "lr", "transport", "expires", "maddr"})


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` (leading ``;`` optional) with LWS around ``;`` and ``=``.

    Names are lower-cased (case-insensitive per RFC 3261); quoted values keep their quotes so they are
    written back exactly.
    """
    params: dict[str, str | None] = {}
    if '"' not in text:
        # Fast path: no quoted values, so ';' and '=' cannot appear inside a value.
        parts = text.split(";")
        last = len(parts) - 1
        for k, part in enumerate(parts):
            name, sep, raw = part.partition("=")
            name = name.strip()
            if not name:
                # Only the optional leading ';' and one trailing ';' may enclose nothing: an empty
                # parameter between two others is RFC 4475 §3.1.2.1's extraneous separator.
                if sep or part.strip() or 0 < k < last:
                    raise SipParseError(f"Bad parameter in {text!r}")
                continue
            if name not in _COMMON_PARAMS and _TOKEN_RE.fullmatch(name) is None:
                raise SipParseError(f"Bad parameter in {text!r}")
            params[name.lower()] = raw.strip() if sep else None
        return params
    i = 0
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ";":
            i += 1
            while i < n and text[i] in " \t":
                i += 1
        if i >= n:
            break
        if text[i] == ";":
            raise SipParseError(f"Bad parameter in {text!r}")
        start = i
        while i < n and text[i] not in "=; \t":
            i += 1
        name = text[start:i].lower()
        while i < n and text[i] in " \t":
            i += 1
        value: str | None = None
        if i < n and text[i] == "=":
            i += 1
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] == '"':
                end = _skip_quoted(text, i)
                value = text[i:end]
                i = end
            else:
                start = i
                while i < n and text[i] != ";":
                    i += 1
                value = text[start:i].strip()
        if not name or not is_token(name):
            raise SipParseError(f"Bad parameter in {text!r}")
        params[name] = value
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] != ";":
            raise SipParseError(f"Bad parameter in {text!r}")
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def unquote_string(text: str) -> str:
    """The content of a quoted-string, with backslash escapes resolved."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = text[1:-1]
        if "\\" in text:
            out = []
            i = 0
            while i < len(text):
                if text[i] == "\\" and i + 1 < len(text):
                    i += 1
                out.append(text[i])
                i += 1
            text = "".join(out)
    return text


def quote_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(slots=True)
class NameAddr:
    """``"Display" <sip:user@host>;tag=x``: the value of From, To, Contact, Route, Record-Route."""

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    wildcard: bool = False

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        value = value.strip()
        if value == "*":
            return cls(uri=SipUri(scheme="sip"), wildcard=True)
        display: str | None = None
        rest = value
        if value.startswith('"'):
            end = _skip_quoted(value, 0)
            display = unquote_string(value[:end])
            rest = value[end:].lstrip()
            if not rest.startswith("<"):
                raise SipParseError(f"Quoted display name without <URI> in {value!r}")
        lt = rest.find("<")
        if lt >= 0:
            if display is None:
                name = rest[:lt].strip()
                if name:
                    if not all(is_token(word) for word in name.split()):
                        raise SipParseError(f"Display name must be quoted: {name!r}")
                    display = name
            gt = rest.find(">", lt)
            if gt < 0:
                raise SipParseError(f"Unterminated <URI> in {value!r}")
            uri = SipUri.parse(rest[lt + 1 : gt])
            params = parse_params(rest[gt + 1 :])
        else:
            # addr-spec form: parameters after the URI belong to the header, not to the URI (§20.10).
            semi = rest.find(";")
            uri_text, param_text = (rest, "") if semi < 0 else (rest[:semi], rest[semi:])
            # Spaces inside an addr-spec are invalid, but RFC 4475 §3.1.2.14 lets a liberal element
            # ignore them, and some embedded stacks emit them; an escaped header would need <> (§20).
            uri_text = "".join(uri_text.split())
            if "," in uri_text or "?" in uri_text:
                raise SipParseError(f"Address with headers or commas must be in <>: {value!r}")
            uri = SipUri.parse(uri_text)
            params = parse_params(param_text)
        return cls(uri=uri, display=display, params=params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        head = "" if self.display is None else f"{quote_string(self.display)} "
        return f"{head}<{self.uri}>{format_params(self.params)}"


@dataclass(slots=True)
class Via:
    """One Via entry. ``host``/``port`` is the sent-by; ``received``/``rport`` are what a server adds."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> Via:
        match = _VIA_FAST.match(value)
        if match is not None:
            transport, host, port, param_text = match.groups()
            if port and not 0 < int(port) < 65536:
                raise SipParseError(f"Bad port in Via {value!r}")
            return cls(
                transport=transport.upper(),
                host=host,
                port=int(port) if port else None,
                params=parse_params(param_text) if param_text else {},
            )
        protocol, sep, rest = _split_sent_protocol(value)
        if not sep:
            raise SipParseError(f"Bad Via {value!r}")
        semi = rest.find(";")
        sent_by, param_text = (rest, "") if semi < 0 else (rest[:semi], rest[semi:])
        host, port = split_host_port(sent_by)
        if not host or any(c in host for c in " \t"):
            raise SipParseError(f"Bad Via sent-by {sent_by!r}")
        return cls(transport=protocol, host=host, port=port, params=parse_params(param_text))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {format_host_port(self.host, self.port)}{format_params(self.params)}"


# The form every real device sends; anything else (LWS around slashes, folded values) takes the slow path.
_VIA_FAST = re.compile(r"SIP/2\.0/([A-Za-z]+) ([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?(;[^\s\"]*)?$")


def _split_sent_protocol(value: str) -> tuple[str, bool, str]:
    """Read ``SIP / 2.0 / UDP`` with any LWS around the slashes; return (transport, ok, rest)."""
    parts = value.split("/", 2)
    if len(parts) != 3 or parts[0].strip().upper() != "SIP" or parts[1].strip() != "2.0":
        return "", False, ""
    tail = parts[2].lstrip()
    i = 0
    while i < len(tail) and tail[i] not in " \t":
        i += 1
    transport = tail[:i].upper()
    if not is_token(transport):
        return "", False, ""
    return transport, True, tail[i:].strip()


class CSeq(NamedTuple):
    """``CSeq: 20 MESSAGE``. A named tuple: built on every request, and tuples are the cheapest record."""

    seq: int
    method: str

    @classmethod
    def parse(cls, value: str) -> CSeq:
        # LWS between number and method may be a tab as well as a space.
        number, _, method = value.strip().replace("\t", " ").partition(" ")
        method = method.strip()
        if not number.isascii() or not number.isdigit() or _TOKEN_RE.fullmatch(method) is None:
            raise SipParseError(f"Bad CSeq {value!r}")
        seq = int(number)
        # Any 32-bit unsigned value is valid (RFC 3261 §20.16); only a sender's first must be < 2**31.
        if seq >= 2**32:
            raise SipParseError(f"CSeq number too large: {number}")
        return cls(seq, method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

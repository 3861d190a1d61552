"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), parsed leniently and written canonically."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from gbgw.sip.errors import SipParseError

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_FORBIDDEN_IN_URI = re.compile(r"[ \t\r\n<>\"]")


def split_host_port(hostport: str) -> tuple[str, int | None]:
    """Split ``host[:port]``, where host may be an IPv6 reference in brackets (RFC 5118).

    The brackets are kept on the returned host so that writing ``host:port`` back stays unambiguous.
    """
    hostport = hostport.strip()
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipParseError(f"Unterminated IPv6 reference in {hostport!r}")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise SipParseError(f"Bad host:port {hostport!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = hostport.partition(":")
        if not sep:
            return host, None
        if ":" in port_text:
            raise SipParseError(f"IPv6 address without brackets in {hostport!r}")
    port_text = port_text.strip()
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SipParseError(f"Bad port in {hostport!r}")
    return host.strip(), int(port_text)


def format_host_port(host: str, port: int | None) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def _split_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        params[name.strip().lower()] = value.strip() if sep else None
    return params


@dataclass(slots=True)
class SipUri:
    """A URI as found in a Request-URI, From/To/Contact/Route.

    ``user`` keeps percent-escapes as received (escaping is significant in comparison rules and devices
    never use it); ``params`` keys are lower-cased because parameter names are case-insensitive.
    """

    scheme: str
    user: str | None = None
    host: str = ""
    port: int | None = None
    password: str | None = field(default=None, repr=False)
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        text = text.strip()
        if _FORBIDDEN_IN_URI.search(text) is not None:
            raise SipParseError(f"Invalid character in URI {text!r}")
        scheme, sep, rest = text.partition(":")
        if not sep or _SCHEME_RE.fullmatch(scheme) is None:
            raise SipParseError(f"URI without a scheme: {text!r}")
        scheme = scheme.lower()
        if scheme == "tel":
            number, _, params = rest.partition(";")
            if not number:
                raise SipParseError(f"Empty tel URI {text!r}")
            return cls(scheme=scheme, user=number, params=_split_params(params))
        if scheme not in ("sip", "sips"):
            # Callers decide what an unknown scheme means (416 for a Request-URI); keep it opaque.
            return cls(scheme=scheme, host=rest)
        user: str | None = None
        password: str | None = None
        # '@' cannot appear unescaped after the userinfo, while '?' and ';' can appear inside it
        # (RFC 4475 §3.1.1.2), so the userinfo is cut off before looking for headers or parameters.
        at = rest.rfind("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user, colon, pw = userinfo.partition(":")
            if colon:
                password = pw
            if not user:
                raise SipParseError(f"Empty user part in URI {text!r}")
        rest, qmark, headers = rest.partition("?")
        if rest.startswith("["):
            close = rest.find("]")
            semi = rest.find(";", close if close >= 0 else 0)
        else:
            semi = rest.find(";")
        hostport, params = (rest, "") if semi < 0 else (rest[:semi], rest[semi + 1 :])
        host, port = split_host_port(hostport)
        if not host:
            raise SipParseError(f"URI without a host: {text!r}")
        return cls(
            scheme=scheme,
            user=user,
            host=host,
            port=port,
            password=password,
            params=_split_params(params),
            headers=headers if qmark else None,
        )

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unquote(self.user)

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.upper() if value else None

    def __str__(self) -> str:
        if self.scheme == "tel":
            out = f"tel:{self.user}"
        elif self.scheme not in ("sip", "sips"):
            return f"{self.scheme}:{self.host}"
        else:
            userinfo = ""
            if self.user is not None:
                userinfo = self.user if self.password is None else f"{self.user}:{self.password}"
                userinfo += "@"
            out = f"{self.scheme}:{userinfo}{format_host_port(self.host, self.port)}"
        for name, value in self.params.items():
            out += f";{name}" if value is None else f";{name}={value}"
        if self.headers is not None:
            out += f"?{self.headers}"
        return out

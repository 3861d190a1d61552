"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 3261 section 22), sans-IO.

Parses Authorization/Proxy-Authorization and WWW-Authenticate/Proxy-Authenticate values the way real
devices write them, issues stateless challenges, verifies answers, and answers challenges as a client.
Nothing here touches a socket or a clock: every time-dependent call takes `now` (wall-clock seconds).

Hashing encodes strings as UTF-8 with ``surrogateescape``, so a SIP layer that decodes header bytes as
UTF-8 with ``surrogateescape`` gets the exact bytes the device hashed back.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "DigestAlgorithm",
    "DigestChallenge",
    "DigestClient",
    "DigestCredentials",
    "DigestError",
    "DigestResult",
    "DigestServer",
    "answer_challenge",
    "parse_challenge",
    "parse_credentials",
]


class DigestError(ValueError):
    """A header value that is not a usable Digest challenge/credential; `reason` says why (safe to log)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DigestAlgorithm(enum.StrEnum):
    """The algorithms we can compute; the value is the canonical spelling sent on the wire."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA256 = "SHA-256"
    SHA256_SESS = "SHA-256-sess"

    @property
    def is_session(self) -> bool:
        return self is DigestAlgorithm.MD5_SESS or self is DigestAlgorithm.SHA256_SESS


_ALGORITHMS = {a.value.lower(): a for a in DigestAlgorithm}

_HASHES: dict[DigestAlgorithm, Callable[[bytes], hashlib._Hash]] = {
    DigestAlgorithm.MD5: hashlib.md5,
    DigestAlgorithm.MD5_SESS: hashlib.md5,
    DigestAlgorithm.SHA256: hashlib.sha256,
    DigestAlgorithm.SHA256_SESS: hashlib.sha256,
}


class DigestResult(enum.Enum):
    """Outcome of DigestServer.verify and what the caller should answer."""

    OK = "ok"
    BAD_RESPONSE = "bad_response"  # wrong password (or uri/method differs from what was signed): 401/403
    STALE = "stale"  # valid password but expired or replayed nonce: 401 with challenge(now, stale=True)
    BAD_NONCE = "bad_nonce"  # nonce we never issued (forged, other secret, other realm): 401 fresh challenge
    BAD_REALM = "bad_realm"  # answered for another realm: 401 fresh challenge
    MALFORMED = "malformed"  # unsupported qop, missing cnonce for -sess, undecodable text: 400


@dataclass(slots=True, frozen=True)
class DigestCredentials:
    """An Authorization/Proxy-Authorization value.

    `uri` is what the client signed; it often differs in form from the Request-URI (devices write the
    domain, the server IP, or the full URI), so it is verified as given and kept for logging.
    `nc` is kept as sent because the hash covers its exact spelling.
    """

    username: str
    realm: str
    nonce: str = field(repr=False)
    uri: str
    response: str = field(repr=False)
    algorithm: DigestAlgorithm = DigestAlgorithm.MD5
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = field(default=None, repr=False)
    opaque: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    def serialize(self) -> str:
        parts = [
            f"Digest username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
            f"algorithm={self.algorithm.value}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc}")
        parts.extend(f"{name}={_quote(value)}" for name, value in self.params.items())
        return ", ".join(parts)


@dataclass(slots=True, frozen=True)
class DigestChallenge:
    """A WWW-Authenticate/Proxy-Authenticate value. `qop` lists the offered options, lower-cased."""

    realm: str
    nonce: str = field(repr=False)
    algorithm: DigestAlgorithm = DigestAlgorithm.MD5
    qop: tuple[str, ...] = ()
    stale: bool = False
    opaque: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    def serialize(self) -> str:
        # algorithm is always written: some devices refuse a challenge without it.
        parts = [
            f"Digest realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"algorithm={self.algorithm.value}",
        ]
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        parts.extend(f"{name}={_quote(value)}" for name, value in self.params.items())
        return ", ".join(parts)


# RFC 7230 token characters.
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")
# Separators are any run of commas and LWS: devices add spaces, tabs, folded lines, stray or missing
# commas. An unquoted value cannot hold whitespace, so a missing comma is still unambiguous.
_PARAM = re.compile(rf'[\s,]*({_TOKEN})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))', re.DOTALL)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_HEX = re.compile(r"[0-9A-Fa-f]+")


def _parse_params(value: str, kind: str) -> dict[str, str]:
    scheme = _SCHEME.match(value)
    if scheme is None:
        raise DigestError(f"{kind}: no authentication scheme")
    if scheme.group(1).lower() != "digest":
        raise DigestError(f"{kind}: scheme {scheme.group(1)[:20]!r} is not Digest")
    params: dict[str, str] = {}
    pos = scheme.end()
    end = len(value)
    while pos < end:
        m = _PARAM.match(value, pos)
        if m is None:
            if value[pos:].strip(" \t\r\n,"):
                raise DigestError(f"{kind}: unparsable text at offset {pos}")
            break
        name = m.group(1).lower()
        if name in params:
            raise DigestError(f"{kind}: duplicate parameter {name!r}")
        quoted = m.group(2)
        if quoted is None:
            params[name] = m.group(3)
        else:
            params[name] = _ESCAPE.sub(r"\1", quoted) if "\\" in quoted else quoted
        pos = m.end()
    return params


def _algorithm(params: dict[str, str], kind: str) -> DigestAlgorithm:
    text = params.pop("algorithm", None)
    if text is None:
        return DigestAlgorithm.MD5
    algorithm = _ALGORITHMS.get(text.lower())
    if algorithm is None:
        raise DigestError(f"{kind}: unsupported algorithm {text[:20]!r}")
    return algorithm


def _required(params: dict[str, str], name: str, kind: str) -> str:
    value = params.pop(name, None)
    if value is None:
        raise DigestError(f"{kind}: missing {name}")
    return value


def parse_credentials(value: str) -> DigestCredentials:
    """Parse an Authorization/Proxy-Authorization value; raises DigestError if unusable."""
    kind = "credentials"
    params = _parse_params(value, kind)
    username = _required(params, "username", kind)
    realm = _required(params, "realm", kind)
    nonce = _required(params, "nonce", kind)
    uri = _required(params, "uri", kind)
    response = _required(params, "response", kind)
    if not nonce:
        raise DigestError(f"{kind}: empty nonce")
    if _HEX.fullmatch(response) is None:
        raise DigestError(f"{kind}: response is not hexadecimal")
    algorithm = _algorithm(params, kind)
    qop = params.pop("qop", None)
    nc = params.pop("nc", None)
    cnonce = params.pop("cnonce", None)
    if qop is not None:
        qop = qop.lower()
        if nc is None or cnonce is None:
            raise DigestError(f"{kind}: qop without nc or cnonce")
    if nc is not None and (len(nc) > 8 or _HEX.fullmatch(nc) is None):
        raise DigestError(f"{kind}: nc is not 1-8 hex digits")
    return DigestCredentials(
        username=username,
        realm=realm,
        nonce=nonce,
        uri=uri,
        response=response.lower(),
        algorithm=algorithm,
        qop=qop,
        nc=nc,
        cnonce=cnonce,
        opaque=params.pop("opaque", None),
        params=params,
    )


def parse_challenge(value: str) -> DigestChallenge:
    """Parse a WWW-Authenticate/Proxy-Authenticate value; raises DigestError if unusable.

    An unsupported algorithm raises too, so a caller facing several challenges skips to the next.
    """
    kind = "challenge"
    params = _parse_params(value, kind)
    realm = _required(params, "realm", kind)
    nonce = _required(params, "nonce", kind)
    if not nonce:
        raise DigestError(f"{kind}: empty nonce")
    algorithm = _algorithm(params, kind)
    qop_text = params.pop("qop", None)
    qop = tuple(q for q in (p.strip().lower() for p in qop_text.split(",")) if q) if qop_text else ()
    stale = params.pop("stale", "false").lower() == "true"
    return DigestChallenge(
        realm=realm,
        nonce=nonce,
        algorithm=algorithm,
        qop=qop,
        stale=stale,
        opaque=params.pop("opaque", None),
        params=params,
    )


def _quote(value: str) -> str:
    # A CR/LF taken from a hostile challenge must not let us inject headers into our own request.
    if "\r" in value or "\n" in value or "\0" in value:
        raise DigestError("control character in a digest parameter value")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _response(
    algorithm: DigestAlgorithm,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nc: str | None,
    cnonce: str | None,
) -> str:
    h = _HASHES[algorithm]
    ha1 = h(_encode(f"{username}:{realm}:{password}")).hexdigest()
    if algorithm.is_session:
        ha1 = h(_encode(f"{ha1}:{nonce}:{cnonce}")).hexdigest()
    ha2 = h(_encode(f"{method}:{uri}")).hexdigest()
    if qop is None:
        return h(_encode(f"{ha1}:{nonce}:{ha2}")).hexdigest()
    return h(_encode(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")).hexdigest()


def answer_challenge(
    challenge: DigestChallenge,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str | None = None,
    nc: int = 1,
) -> str:
    """Build the Authorization value answering `challenge`.

    Uses qop=auth when offered (auth-int alone raises DigestError: we do not hash bodies), echoes the
    algorithm (MD5 when the challenge named none, as eXosip does) and the opaque. A cnonce is drawn
    when needed and not given.
    """
    if not 1 <= nc <= 0xFFFFFFFF:
        raise ValueError(f"nc out of range: {nc}")
    qop: str | None = None
    if challenge.qop:
        if "auth" not in challenge.qop:
            raise DigestError(f"challenge offers only qop={','.join(challenge.qop)[:40]}")
        qop = "auth"
    if qop is not None or challenge.algorithm.is_session:
        if cnonce is None:
            cnonce = secrets.token_hex(8)
    else:
        cnonce = None
    nc_text = f"{nc:08x}" if qop is not None else None
    response = _response(
        challenge.algorithm, username, challenge.realm, password, method, uri,
        challenge.nonce, qop, nc_text, cnonce,
    )
    return DigestCredentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        opaque=challenge.opaque,
    ).serialize()


class DigestClient:
    """Answers challenges for one account, counting nc per nonce so repeated requests
    (e.g. REGISTER refreshes to an upper platform) reuse a nonce without being taken for replays."""

    __slots__ = ("_nc", "_nonce", "_password", "_username")

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password
        self._nonce: str | None = None
        self._nc = 0

    def authorization(self, challenge: DigestChallenge, method: str, uri: str) -> str:
        if challenge.nonce != self._nonce:
            self._nonce = challenge.nonce
            self._nc = 0
        self._nc += 1
        return answer_challenge(challenge, method, uri, self._username, self._password, nc=self._nc)


# Nonce layout (hex on the wire, the most conservative alphabet for device firmware):
# 6 bytes issue time in ms | 6 random bytes | 12 bytes truncated HMAC-SHA256(secret, realm, time, random).
_TIME_LEN = 6
_SALT_LEN = 6
_MAC_LEN = 12
_NONCE_HEX_LEN = 2 * (_TIME_LEN + _SALT_LEN + _MAC_LEN)
# Nodes sharing the secret check each other's nonces; allow this much clock difference between them.
_CLOCK_SKEW = 30.0
# hash() of a tuple is never -1 in CPython, so it safely marks "this nonce may not be reused".
_NO_REUSE = -1


class DigestServer:
    """Issues and checks Digest challenges for one realm without per-challenge state.

    Nonces carry their issue time and an HMAC under `secret`, so any node holding the secret checks
    them and nothing is stored when a challenge is sent. `now` must be wall-clock seconds (time.time())
    when several nodes share a secret.

    Replay semantics (the only state, kept for nonces that have been *used*, per node):
    - with qop=auth, nc must strictly increase per nonce;
    - without qop the response is the same for every use, so a replay cannot be told from a refresh.
      eXosip-based and Hikvision devices re-REGISTER with the previous nonce and no new 401, so when
      `refresh_reuse` is on (default) and the caller passes `call_id`, a nonce may be reused by the
      same (username, Call-ID) that first used it; otherwise it is accepted once. Either way it dies
      after `nonce_ttl`, which bounds what a captured request is worth.
    A refused reuse returns STALE, so the device re-authenticates with a fresh nonce without user action.
    Call verify once per transaction: the transaction layer absorbs retransmissions, which would
    otherwise look like replays.

    The used-nonce store is two generation dicts of small tuples, rotated every nonce_ttl + skew: an
    entry outlives its nonce's validity, memory is bounded by two generations of successful auths,
    and dropping expired entries is one dict swap, with no timer.
    """

    __slots__ = ("_generation", "_mac", "_nonce_ttl", "_previous", "_qop", "_realm",
                 "_refresh_reuse", "_rotate_at", "_used")

    def __init__(
        self,
        realm: str,
        secret: bytes,
        nonce_ttl: float = 300.0,
        qop: bool = False,
        *,
        refresh_reuse: bool = True,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("digest secret must be at least 16 bytes")
        if nonce_ttl <= 0:
            raise ValueError("nonce_ttl must be positive")
        self._realm = realm
        self._nonce_ttl = nonce_ttl
        self._qop = qop
        self._refresh_reuse = refresh_reuse
        self._mac = hmac.new(secret, _encode(realm) + b"\0", hashlib.sha256)
        self._generation = nonce_ttl + _CLOCK_SKEW
        self._used: dict[str, tuple[int, int]] = {}
        self._previous: dict[str, tuple[int, int]] = {}
        self._rotate_at: float | None = None

    @property
    def realm(self) -> str:
        return self._realm

    @property
    def tracked_nonces(self) -> int:
        """How many used nonces are remembered for replay checks (for a gauge)."""
        return len(self._used) + len(self._previous)

    def _sign(self, stamp: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(stamp)
        return mac.digest()[:_MAC_LEN]

    def challenge(self, now: float, stale: bool = False) -> str:
        """A WWW-Authenticate/Proxy-Authenticate value with a fresh nonce."""
        stamp = int(now * 1000).to_bytes(_TIME_LEN, "big") + secrets.token_bytes(_SALT_LEN)
        nonce = (stamp + self._sign(stamp)).hex()
        return DigestChallenge(
            realm=self._realm,
            nonce=nonce,
            algorithm=DigestAlgorithm.MD5,
            qop=("auth",) if self._qop else (),
            stale=stale,
        ).serialize()

    def verify(
        self,
        creds: DigestCredentials,
        method: str,
        password: str,
        now: float,
        *,
        call_id: str | None = None,
    ) -> DigestResult:
        """Check `creds` for a request with `method`, given the password looked up for creds.username.

        A client that ignores an offered qop is accepted (RFC 2069 compatibility) under the no-qop
        replay rule. Order follows RFC 2617: a correct response on an expired nonce is STALE, a wrong
        one BAD_RESPONSE, so devices with the right password re-authenticate silently.
        """
        if creds.realm != self._realm:
            return DigestResult.BAD_REALM
        if creds.qop is not None and (creds.qop != "auth" or creds.nc is None or creds.cnonce is None):
            return DigestResult.MALFORMED
        if creds.algorithm.is_session and creds.cnonce is None:
            return DigestResult.MALFORMED
        nonce = creds.nonce
        if len(nonce) != _NONCE_HEX_LEN:
            return DigestResult.BAD_NONCE
        try:
            raw = bytes.fromhex(nonce)
        except ValueError:
            return DigestResult.BAD_NONCE
        stamp = raw[: _TIME_LEN + _SALT_LEN]
        if not hmac.compare_digest(raw[_TIME_LEN + _SALT_LEN :], self._sign(stamp)):
            return DigestResult.BAD_NONCE
        age = now - int.from_bytes(stamp[:_TIME_LEN], "big") / 1000.0
        if age < -_CLOCK_SKEW:
            return DigestResult.BAD_NONCE
        try:
            expected = _response(
                creds.algorithm, creds.username, creds.realm, password, method, creds.uri,
                nonce, creds.qop, creds.nc, creds.cnonce,
            ).encode()
            matches = hmac.compare_digest(expected, creds.response.encode("ascii"))
        except UnicodeEncodeError:
            return DigestResult.MALFORMED
        if not matches:
            return DigestResult.BAD_RESPONSE
        if age > self._nonce_ttl:
            return DigestResult.STALE
        return self._record_use(creds, now, call_id)

    def _record_use(self, creds: DigestCredentials, now: float, call_id: str | None) -> DigestResult:
        if self._rotate_at is None or now >= self._rotate_at:
            if self._rotate_at is not None and now < self._rotate_at + self._generation:
                self._previous = self._used
            else:
                self._previous = {}
            self._used = {}
            self._rotate_at = now + self._generation
        nonce = creds.nonce
        entry = self._used.get(nonce)
        if entry is None:
            entry = self._previous.get(nonce)
        if creds.nc is not None:
            nc = int(creds.nc, 16)
            # A nonce first used without qop (last nc -1) cannot switch to counting.
            if entry is not None and (entry[0] < 0 or nc <= entry[0]):
                return DigestResult.STALE
            self._used[nonce] = (nc, 0)
            return DigestResult.OK
        binding = hash((creds.username, call_id)) if self._refresh_reuse and call_id is not None else _NO_REUSE
        if entry is not None and (entry[0] >= 0 or binding == _NO_REUSE or entry[1] != binding):
            return DigestResult.STALE
        if entry is None:
            self._used[nonce] = (-1, binding)
        return DigestResult.OK

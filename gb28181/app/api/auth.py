"""Who may call which route: bearer tokens, roles, and a brake on guessing.

The rule of each route is the ``RouteDoc`` its handler declares (``route_doc``), so the route table, this
check and the OpenAPI document cannot disagree. Roles are checked before a body is read: a viewer's
play request is a 403 whatever it carries.

Only the SHA-256 of each token is configured. A presented token is hashed once and compared with every
configured digest (``hmac.compare_digest``, all of them, whatever matched first), so the answer's timing
says nothing about which token, or how much of one, was right. The token itself is never logged, put in
the audit trail or echoed back: records name the token's ``name``.

Wrong tokens are what a guesser sends, so only they count toward the per-source brake
(``FAILURE_LIMIT`` in ``FAILURE_WINDOW`` seconds, then 429 for ``BLOCK_SECONDS``); a missing token or a
role too low is a client's mistake and is counted in the metric only.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from gbgw.gb28181.app.api.common import Handler, Role, RouteDoc, doc_of, error
from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.config import ApiRole, ApiToken

log = structlog.get_logger("gb28181.api")

REALM = "gb28181-gateway"
CHALLENGE = {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
FAILURE_LIMIT = 20
FAILURE_WINDOW = 60.0
BLOCK_SECONDS = 60.0
MAX_SOURCES = 10_000
"""Sources whose recent failures are remembered: a bound on the brake's own memory under a spread attack."""
MAX_TOKEN_LENGTH = 4096

ROLES = {ApiRole.VIEWER: Role.VIEWER, ApiRole.OPERATOR: Role.OPERATOR, ApiRole.ADMIN: Role.ADMIN}
"""The configuration's role names to the ordered roles routes declare."""


class AuthFailure(enum.Enum):
    """Why a request was refused: the ``reason`` label of ``gb_api_auth_failures_total``."""

    MISSING = "missing"
    INVALID = "invalid"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"


@dataclass(slots=True)
class _Source:
    window_start: float
    failures: int = 0
    blocked_until: float = 0.0


class FailureBrake:
    """Wrong-token failures per source address in fixed windows; a source over the limit is blocked."""

    def __init__(self, limit: int = FAILURE_LIMIT, window: float = FAILURE_WINDOW, block: float = BLOCK_SECONDS,
                 max_sources: int = MAX_SOURCES, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.block = block
        self.max_sources = max_sources
        self.clock = clock
        self._sources: dict[str, _Source] = {}

    def blocked(self, source: str) -> bool:
        entry = self._sources.get(source)
        return entry is not None and entry.blocked_until > self.clock()

    def fail(self, source: str) -> bool:
        """Count one failure; True when it starts a block."""
        now = self.clock()
        entry = self._sources.get(source)
        if entry is None:
            if len(self._sources) >= self.max_sources:
                self._forget(now)
            entry = self._sources[source] = _Source(now)
        elif now - entry.window_start >= self.window:
            entry.window_start, entry.failures = now, 0
        entry.failures += 1
        if entry.failures >= self.limit and entry.blocked_until <= now:
            entry.blocked_until = now + self.block
            return True
        return False

    def _forget(self, now: float) -> None:
        stale = [ip for ip, e in self._sources.items() if e.blocked_until <= now and now - e.window_start >= self.window]
        for ip in stale:
            del self._sources[ip]
        if len(self._sources) >= self.max_sources:
            # Everyone is recent: the oldest window goes, a block already running included.
            del self._sources[min(self._sources, key=lambda ip: self._sources[ip].window_start)]


class TokenTable:
    """The configured tokens by digest, looked up without revealing anything through timing."""

    def __init__(self, tokens: tuple[ApiToken, ...]) -> None:
        self.tokens = tokens

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def find(self, presented: str) -> ApiToken | None:
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found


def bearer(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header (scheme in any case), None without one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


class ApiGuard:
    """The authorisation middleware's state: tokens, the brake, the failure counter, the audit trail."""

    def __init__(self, tokens: TokenTable, audit: AuditLog, registry: CollectorRegistry,
                 brake: FailureBrake | None = None) -> None:
        self.tokens = tokens
        self.audit = audit
        self.brake = brake or FailureBrake()
        self.failures = Counter("gb_api_auth_failures", "API requests refused by authentication or role",
                                ["reason"], registry=registry)
        for reason in AuthFailure:
            self.failures.labels(reason.value)

    def refuse(self, request: web.Request, reason: AuthFailure, status: int, message: str) -> web.Response:
        self.failures.labels(reason.value).inc()
        source = request.remote or ""
        if reason is AuthFailure.INVALID and self.brake.fail(source):
            log.warning("api source blocked after repeated wrong tokens", source=source,
                        failures=self.brake.limit, seconds=self.brake.block)
        elif reason is not AuthFailure.RATE_LIMITED:
            log.info("api request refused", source=source, reason=reason.value, method=request.method,
                     path=request.path)
        if status == 401:
            return error(status, message, headers=CHALLENGE)
        if status == 429:
            return error(status, message, headers={"Retry-After": str(int(self.brake.block))})
        return error(status, message)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None:
            return await handler(request)  # no route: the error middleware answers the JSON 404/405
        doc = doc_of(request.match_info.route.handler)
        assert doc is not None, "make_app refuses a route without route_doc"
        if doc.public:
            return await handler(request)
        token = None
        if self.tokens:
            refused = self.check(request, doc)
            if isinstance(refused, web.Response):
                return refused
            token = refused
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return await handler(request)
        return await self._audited(request, handler, token)

    def check(self, request: web.Request, doc: RouteDoc) -> ApiToken | web.Response:
        source = request.remote or ""
        if self.brake.blocked(source):
            return self.refuse(request, AuthFailure.RATE_LIMITED, 429,
                               "too many wrong tokens from this address; try again later")
        presented = bearer(request)
        if presented is None:
            return self.refuse(request, AuthFailure.MISSING, 401, "this route needs Authorization: Bearer <token>")
        token = self.tokens.find(presented)
        if token is None:
            return self.refuse(request, AuthFailure.INVALID, 401, "the token is not valid")
        needed = doc.required_role(request.method)
        if ROLES[token.role] < needed:
            return self.refuse(request, AuthFailure.FORBIDDEN, 403,
                               f"the token {token.name!r} is {token.role.value}; this route needs {needed.name.lower()}")
        return token

    async def _audited(self, request: web.Request, handler: Handler, token: ApiToken | None) -> web.StreamResponse:
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            self.audit.record("api_request", result="ok" if status < 400 else str(status),
                              token_name=token.name if token is not None else None,
                              role=token.role.value if token is not None else None,
                              method=request.method, path=request.path, source=request.remote, status=status)

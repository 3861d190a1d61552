"""What every resource's handlers share: the services they are given, and the one place that turns a
failure into a JSON answer.

A handler raises instead of building error responses: :class:`ApiError` for a request the API refuses
(bad body, unknown name), :class:`~gbgw.gb28181.devices.requests.AccessError` (and its play subclass) for a
request a device or the media side could not serve, whose HTTP status comes from the stage table.
"""

from __future__ import annotations

import base64
import binascii
import functools
import heapq
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import structlog
from aiohttp import web

from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.cascade.uppers import Cascade
from gbgw.gb28181.config import ApiConfig
from gbgw.gb28181.devices.diagnostics import DeviceDiagnostics
from gbgw.gb28181.devices.requests import AccessError, DeviceRequests
from gbgw.gb28181.ids import GbId, InvalidGbId
from gbgw.gb28181.media.history import HistorySessions
from gbgw.gb28181.media.live import LiveStreams
from gbgw.gb28181.media.stages import stage_of
from gbgw.gb28181.observe.health import Health
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.history import TransitionHistory
from gbgw.registry.model import Device
from gbgw.registry.storage import Storage

if TYPE_CHECKING:
    # aiortc is the optional ``console`` extra: only the WHEP handlers import it, when called.
    from gbgw.gb28181.webrtc import WhepViewers

log = structlog.get_logger("gb28181.api")

dumps = functools.partial(json.dumps, ensure_ascii=False)
"""Every answer's JSON encoder (``web.json_response(..., dumps=dumps)``): UTF-8 as it is, since Chinese
names escaped as ``\\uXXXX`` are six bytes a character and unreadable in curl and logs."""

# A stage this table does not know is still a device that failed us: 502 Bad Gateway.
UNKNOWN_STAGE_STATUS = 502


@dataclass(frozen=True, slots=True)
class ApiServices:
    """Everything the API reads or drives, built by the daemon."""

    registry: DeviceRegistry
    storage: Storage
    metrics: GatewayMetrics
    requests: DeviceRequests
    live: LiveStreams
    cascade: Cascade
    tasks: BackgroundTasks
    clock: Callable[[], float]
    audit: AuditLog
    """Where every authorised state-changing request is written, naming the token that made it."""
    config: ApiConfig
    """Tokens and ``media_destinations``; the listener and TLS are the daemon's."""
    history: HistorySessions | None = None
    """Playback and download sessions (``recording`` routes answer 503 without them)."""
    availability: TransitionHistory | None = None
    """The devices' online/offline history (``/api/reports`` answers 503 without it)."""
    diagnostics: DeviceDiagnostics | None = None
    """SIP traces, refused registrations (``/api/devices/{id}/trace``, ``/api/registrations``)."""
    whep: WhepViewers | None = None
    """Browser viewers (WHEP; ``/whep`` routes answer 503 without them: the ``console`` extra is missing)."""
    health: Health = field(default_factory=Health)
    """The components' ok/degraded states behind ``/api/health``."""


SERVICES: web.AppKey[ApiServices] = web.AppKey("services", ApiServices)


def services(request: web.Request) -> ApiServices:
    return request.app[SERVICES]


class ApiError(Exception):
    """A request the API answers ``status`` with ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str, stage: str | None = None, headers: Mapping[str, str] | None = None,
          **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if stage is not None:
        body["stage"] = stage
    body.update(extra)
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


def failure(exc: AccessError) -> web.Response:
    """A failed device or play request: the stage's HTTP status, the stage and the device's SIP status."""
    stage = stage_of(exc.stage)
    status = stage.http_status if stage is not None else UNKNOWN_STAGE_STATUS
    return error(status, exc.detail, exc.stage, device_status=exc.status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)
T = TypeVar("T")


class Role(IntEnum):
    """What a token may do; each role may also do everything of the roles below it."""

    VIEWER = 1
    """reads: every GET route"""
    OPERATOR = 2
    """also plays, plays back, downloads and controls cameras: the other methods"""
    ADMIN = 3
    """also changes configuration and reboots or upgrades devices: routes that say so"""


Answer = Any
"""A msgspec type (a Struct, ``list[Struct]``, a union of a list and a Struct...), or a mapping of media
types to such types. ``Any``: a union such as ``list[A] | B`` is a value, not a ``type``, to mypy."""


@dataclass(frozen=True, slots=True)
class RouteDoc:
    """What a handler declares about itself: the one source of its OpenAPI entry and its access rule."""

    summary: str
    role: Role | None = None
    """None: VIEWER for GET/HEAD, OPERATOR for every other method."""
    body: type | None = None
    """The msgspec Struct its JSON body decodes into (``read_body``)."""
    answer: Answer | None = None
    """The msgspec type of its 2xx JSON answer; or by media type, for an answer that is not JSON (or
    not only: ``{"application/json": Report, "text/csv": str}``)."""
    public: bool = False
    """Answered without a token (``/api/health``)."""

    def required_role(self, method: str) -> Role:
        if self.role is not None:
            return self.role
        return Role.VIEWER if method in ("GET", "HEAD") else Role.OPERATOR


def route_doc(
    summary: str, *, role: Role | None = None, body: type | None = None, answer: Answer | None = None,
    public: bool = False,
) -> Callable[[H], H]:
    """Declare a handler's summary, access rule and body/answer types (put it below ``@routes.get(...)``)."""

    def mark(handler: H) -> H:
        handler.route_doc = RouteDoc(summary, role, body, answer, public)  # type: ignore[attr-defined]
        return handler

    return mark


def doc_of(handler: Any) -> RouteDoc | None:
    doc = getattr(handler, "route_doc", None)
    return doc if isinstance(doc, RouteDoc) else None


async def read_body(request: web.Request, kind: type[T]) -> T:
    """The request's JSON body decoded into ``kind``; a 400 naming the field and what it expects otherwise.

    Decoding straight into the declared type refuses a wrong shape at its first byte, so a 50,000-deep
    array never becomes 50,000 nested Python lists."""
    raw = await request.read()
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"invalid body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"the body must be JSON: {exc}") from None


@web.middleware
async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as a JSON object, aiohttp's own too (unknown path, wrong method, body too large)."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error(exc.status, exc.message)
    except AccessError as exc:
        return failure(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error(exc.status, exc.reason, headers=allow)
    except Exception:
        # A bug, not a refusal: logged with its traceback, answered without it.
        log.exception("api handler failed", method=request.method, path=request.path)
        return error(500, "internal error (logged)")


def device_or_404(request: web.Request) -> Device:
    """The device the path names; an unknown one ends the request with a JSON 404."""
    device_id = request.match_info["device_id"]
    device = services(request).registry.get(device_id)
    if device is None:
        raise ApiError(404, f"no device {device_id}")
    return device


IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def media_destination(request: web.Request, key: str, host: str) -> str:
    """``host`` as the address media may be sent to, checked before anything is allocated for it.

    400 unless it is an IP literal: a name would make the gateway resolve it, and the answer (or a NUL
    byte inside it) would reach the socket unchecked. 403 unless it is inside ``api.media_destinations``
    and one receiver: the unspecified, multicast and broadcast addresses are refused even when a
    configured network contains them, since they would reach this host or a whole network instead."""
    try:
        address: IpAddress = ipaddress.ip_address(host)
    except ValueError:
        raise ApiError(400, f"{key}: {host!r} is not an IP address (host names are not resolved)") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise ApiError(400, f"{key}: {host!r} is not an IP address without a zone")
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast or address == _LIMITED_BROADCAST:
        raise ApiError(403, f"{key}: {address} is not a single receiver (unspecified, multicast or broadcast)")
    networks = [n for n in services(request).config.media_destinations if address in n]
    if not networks:
        raise ApiError(403, f"{key}: {address} is not inside api.media_destinations")
    for network in networks:
        if isinstance(network, ipaddress.IPv4Network) and network.prefixlen < 31 and address == network.broadcast_address:
            raise ApiError(403, f"{key}: {address} is the broadcast address of {network}")
    return str(address)


MAX_PAGE = 1000
"""The most items one page holds: 1,000 device records are about 1 MB of JSON."""
_YES = ("1", "true", "yes", "on")
_NO = ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Listing:
    """A list route's ``?online=&industry=&q=&limit=&cursor=``, read once and checked (400 otherwise).

    ``industry``: 2-digit codes (digits 9-10 of the ID), comma-separated. ``q``: a case-insensitive part of
    the ID or the name. Without ``limit`` the answer is the whole filtered list, as before pagination
    existed; with it, ``{"items": [...], "next": cursor|null}`` in ID order.
    """

    online: bool | None = None
    industries: frozenset[str] = frozenset()
    q: str = ""
    limit: int | None = None
    after: str = ""
    """The last ID the previous page held: the next starts after it, so inserts elsewhere shift nothing."""

    @classmethod
    def of(cls, request: web.Request) -> Listing:
        query = request.query
        online: bool | None = None
        if "online" in query:
            word = query["online"].lower()
            if word not in _YES + _NO:
                raise ApiError(400, f"online: {query['online']!r} is not true or false")
            online = word in _YES
        industries = frozenset(code.strip() for code in query.get("industry", "").split(",") if code.strip())
        for code in industries:
            if not (len(code) == 2 and code.isascii() and code.isdigit()):
                raise ApiError(400, f"industry: {code!r} is not a 2-digit industry code (e.g. 01, 11)")
        limit: int | None = None
        if "limit" in query:
            text = query["limit"]
            if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_PAGE):
                raise ApiError(400, f"limit: {text!r} is not a whole number from 1 to {MAX_PAGE}")
            limit = int(text)
        after = ""
        if "cursor" in query:
            if limit is None:
                raise ApiError(400, "cursor: only with limit (the cursor is the previous page's next)")
            after = _cursor_id(query["cursor"])
        return cls(online, industries, query.get("q", "").strip().casefold(), limit, after)

    def wants(self, item_id: str, name: str | None, online: bool) -> bool:
        if self.online is not None and online != self.online:
            return False
        if self.industries and item_id[8:10] not in self.industries:
            return False
        return not self.q or self.q in item_id.casefold() or self.q in (name or "").casefold()

    def answer(self, items: Iterable[T], item_id: Callable[[T], str], render: Callable[[T], Any]) -> Any:
        """The plain list without ``limit``; else one page in ID order and the cursor of the next."""
        if self.limit is None:
            return [render(item) for item in items]
        after = self.after
        # The page's smallest IDs above the cursor: O(n log limit), no sort of 100,000 devices per page.
        page = heapq.nsmallest(self.limit + 1, (i for i in items if item_id(i) > after), key=item_id)
        more = len(page) > self.limit
        page = page[: self.limit]
        return {"items": [render(item) for item in page],
                "next": _cursor(item_id(page[-1])) if more else None}


def _cursor(last_id: str) -> str:
    # Opaque on purpose: clients pass it back and may not build their own, so its form can change.
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def _cursor_id(cursor: str) -> str:
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, f"cursor: {cursor!r} is not a cursor this API handed out") from None


MAX_SSRC = 0xFFFF_FFFF
"""RTP's SSRC is 32 bits: a larger number (the 10 digits of ``y=`` reach 9,999,999,999) would wrap."""


def ssrc_of(value: int | str | None) -> int | None:
    """A request's ``ssrc`` (a number, or its 10-digit ``y=`` text) as the SSRC; 400 unless it fits RTP's
    32 bits, so a receiver never gets a stream under an SSRC other than the one it asked for."""
    if value is None:
        return None
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ApiError(400, f"ssrc: {value!r} is not a number (write it as in y=, e.g. 0100000001)")
    ssrc = int(value)
    if not 0 <= ssrc <= MAX_SSRC:
        raise ApiError(400, f"ssrc: {value!r} is outside RTP's 32 bits (0 to {MAX_SSRC})")
    return ssrc


def iso(ts: float) -> str | None:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds") if ts else None


def decoded_id(value: str) -> dict[str, Any] | None:
    try:
        gb = GbId.parse(value)
    except InvalidGbId:
        return None
    return {
        "industry": gb.industry,
        "industry_name": gb.industry_name,
        "type": gb.type,
        "type_name": gb.type_name,
        "network": gb.network,
        "network_name": gb.network_name,
        "civil_code": gb.civil_code,
    }

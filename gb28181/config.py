"""The gateway's configuration: YAML in, validated dataclasses out.

Every error names the key (as a dotted path), the value found and what was expected, because the person
reading it is an administrator at a console, not a developer with a traceback. Every problem of a file is
reported in one run (``ConfigErrors``), in file order, so fixing a file is one round trip, not one per key.
With no file at all the embedded defaults run a working gateway on loopback with SQLite in the working
directory.

Checks come in three layers: each value on its own (type, range, pattern), values against each other
(an ID against its domain, two listeners on one address), and, with ``check_host``, values against this
machine (an address no interface has). The last is optional because a file may be checked on another
machine than the one it is for.
"""

from __future__ import annotations

import contextlib
import difflib
import enum
import hashlib
import hmac
import ipaddress
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from gbgw.gb28181.ids import GbId, type_name
from gbgw.gb28181.observe.event_types import EventType, Webhook
from gbgw.sip.tls import TlsFileError, client_context, server_context

T = TypeVar("T")
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_ID_RE = re.compile(r"\d{20}")
_DOMAIN_RE = re.compile(r"\d{10}")
STREAM_TRANSPORTS = ("udp", "tcp-passive", "tcp-active")
ENCODINGS = ("GB2312", "GBK", "GB18030", "UTF-8")
DEFAULT_PASSWORD = "12345678"
"""The password every GB/T 28181 manual prints: in force on a reachable address, anyone may register."""


class ConfigError(ValueError):
    """A configuration problem, phrased as ``key: value is wrong: expected ...``."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        self.errors: tuple[ConfigError, ...] = (self,)
        if value is _MISSING:
            shown = "missing"
        elif key.rsplit(".", 1)[-1] in _SECRET_KEYS:
            # The message reaches consoles and logs (a refused SIGHUP reload): a mistyped secret stays out.
            shown = "the value given"
        else:
            shown = repr(value)
        super().__init__(f"{key}: {shown} is not valid: expected {expected}")


class ConfigErrors(ConfigError):
    """Every problem of one configuration, in file order. ``key``, ``value`` and ``expected`` are the
    first one's, so a caller that handles one error keeps working; ``errors`` holds them all. With a
    single problem the message is exactly that problem's."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        first = errors[0]
        self.key = first.key
        self.value = first.value
        self.expected = first.expected
        self.errors = tuple(errors)
        if len(errors) == 1:
            text = str(first)
        else:
            text = f"{len(errors)} errors:\n" + "\n".join(f"  {error}" for error in errors)
        ValueError.__init__(self, text)


_MISSING: Any = object()
_SECRET_KEYS = frozenset({"password", "token"})
"""Keys whose values never appear in an error, and which may be given as ``{file: PATH}`` or ``{env: NAME}``."""


def bind_error(key: str, address: object, exc: OSError) -> ConfigError:
    """A listener that failed to open, as one line naming its key: what ``run`` prints instead of a traceback."""
    # asyncio's own wording repeats the address; the errno's text is what the administrator needs.
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return ConfigError(key, str(address), f"an address this gateway can listen on ({reason})")


@dataclass(slots=True, frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def host_timezone() -> str:
    """The host's IANA zone name: ``TZ``, else the ``/etc/localtime`` link, else ``/etc/timezone``, else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(os.readlink("/etc/localtime").partition("zoneinfo/")[2])
    with contextlib.suppress(OSError, UnicodeError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    for name in candidates:
        if name and _known_zone(name):
            return name
    return "UTC"


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(slots=True)
class SipConfig:
    id: str = "34020000002000000001"
    domain: str = "3402000000"
    listen: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 5060))
    password: str = field(default=DEFAULT_PASSWORD, repr=False)
    realm: str = ""
    allowlist: bool = False
    register_min_expires: int = 60
    register_max_expires: int = 86400
    keepalive_interval: int = 60
    keepalive_misses: int = 3
    lockout_failures: int = 5
    lockout_seconds: int = 300
    nonce_ttl: int = 300
    encoding: str = "GB2312"
    max_message_size: int = 65535
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    catalog_subscribe: bool = True
    catalog_subscribe_expires: int = 3600
    alarm_subscribe: bool = False
    """Subscribe to each device's alarms when it comes online: many IPCs report alarms only then."""
    position_subscribe_interval: int = 0
    """Subscribe to each device's MobilePosition reports every this many seconds; 0 does not."""
    event_subscribe_expires: int = 3600
    """Expires asked for alarm and position subscriptions (refreshed at 80% of what the device grants)."""
    catalog_first_wait: float = 30.0
    catalog_gap_timeout: float = 5.0
    query_timeout: float = 10.0
    user_agent: str = "gb28181-gateway"
    rate_limit: int = 10000
    """Messages per second accepted from one source IP; thousands of cameras may share one NAT address."""
    max_connections: int = 0
    """TCP and TLS connections at most; 0 (or more than it allows) takes the open-file limit less a
    reserve for the API and media (sip.transport.connection_budget: 768 of 1,024)."""
    first_message_timeout: float = 10.0
    """Seconds a new TCP/TLS connection has to finish its TLS handshake and first SIP message."""
    max_transactions: int = 200_000
    """Server transactions kept at most; over it new requests get a stateless 503 with Retry-After."""
    tls_listen: HostPort | None = None
    """SIP over TLS for devices (RFC 3261 §26): off unless set; needs tls_cert and tls_key."""
    tls_cert: str = ""
    tls_key: str = ""
    timezone: str = field(default_factory=host_timezone)
    """IANA zone of the devices' wall clocks: GB/T 28181 times (Date, RecordInfo, playback t=) carry no offset."""
    time_source: str = "host"
    """Where the Date given to registering devices comes from: ``host`` (this machine's clock) or ``upstream``
    (this clock plus the offset measured from the upper platforms' REGISTER 200 Date)."""

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class MediaSourceKind(enum.Enum):
    SIGNALLING = "signalling"
    """Media only from the peer's SIP signalling address: the strictest, and today's behaviour."""
    SDP = "sdp"
    """Also from the address the peer's SDP ``c=`` line gives (a media server on another host)."""
    NETWORKS = "networks"
    """From any address inside the listed networks (wildcard-bound media servers, multi-homed NVRs)."""


@dataclass(slots=True, frozen=True)
class MediaSourceRule:
    """Where a peer's media may come from (issue 10, item 7).

    The trade-off: ``signalling`` refuses a lower platform whose media server runs on another host than
    its SIP server (WVP-pro with ZLMediaKit, LiveGBS) and an upper whose media server connects from
    another address than it advertises; ``sdp`` admits those, but the SDP is the peer's own word, so a
    peer that can signal can point us at any source; a network list admits exactly what the
    administrator knows the peer's media hosts to be, and nothing follows the peer's word.
    """

    kind: MediaSourceKind = MediaSourceKind.SIGNALLING
    networks: tuple[IpNetwork, ...] = ()

    def permits(self, source_ip: str, signalling_ip: str, sdp_ip: str | None) -> bool:
        """May media from ``source_ip`` be taken for a peer signalling from ``signalling_ip`` whose SDP
        gave ``sdp_ip`` (None or "" when it gave none)? Unparseable addresses are never permitted."""
        source = _plain_ip(source_ip)
        if source is None:
            return False
        if self.kind is MediaSourceKind.NETWORKS:
            return any(source in network for network in self.networks)
        if source == _plain_ip(signalling_ip):
            return True
        # A NAT'd device's SDP names its private address while media comes from the NAT's, which is the
        # signalling address: so ``sdp`` widens ``signalling`` rather than replacing it.
        return self.kind is MediaSourceKind.SDP and bool(sdp_ip) and source == _plain_ip(str(sdp_ip))

    def __str__(self) -> str:
        if self.kind is MediaSourceKind.NETWORKS:
            return ", ".join(str(network) for network in self.networks)
        return self.kind.value


def _plain_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address, with IPv4-mapped IPv6 (``::ffff:10.0.0.1``, from dual-stack sockets) as plain IPv4."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


TIME_SOURCES = ("host", "upstream")
SUBSTREAM_FORMS = ("streamnumber", "stream", "streamprofile", "streamMode")
"""The SDP attributes a sub-stream is asked for with (gb28181.media.substreams says which devices read which)."""


@dataclass(slots=True)
class MediaConfig:
    ip: str = "127.0.0.1"
    ports: str = "30000-30999"
    first_packet_timeout: float = 10.0
    media_timeout: float = 10.0
    idle_timeout: float = 5.0
    reinvite: bool = True
    ssrc_check: bool = False
    stream_transport: str = "udp"
    media_source: MediaSourceRule = MediaSourceRule()
    """Default for devices and upstreams that do not set their own ``media_source``."""
    substream_attributes: tuple[str, ...] = SUBSTREAM_FORMS
    """The SDP forms a sub-stream choice is offered in (``gb28181.media.substreams``)."""


@dataclass(slots=True)
class StorageConfig:
    backend: str = "sqlite"
    path: str = "gateway.db"
    history_days: int = 30
    """Days of per-device online/offline transitions kept for the availability report."""


class ApiRole(enum.Enum):
    """What a token may do; each role includes the ones before it."""

    VIEWER = "viewer"
    """GET routes and the event stream."""
    OPERATOR = "operator"
    """Also play, play back, download and control cameras."""
    ADMIN = "admin"
    """Also change configuration and reboot or upgrade devices."""

    def includes(self, needed: ApiRole) -> bool:
        order = tuple(ApiRole)
        return order.index(self) >= order.index(needed)


@dataclass(slots=True, frozen=True)
class ApiToken:
    """One bearer token of the API. Only its SHA-256 is kept: no dump, repr or log can show the token."""

    name: str
    role: ApiRole
    digest: bytes = field(repr=False)

    def matches(self, presented: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self.digest)


@dataclass(slots=True, frozen=True)
class TlsFiles:
    cert: str
    key: str


DEFAULT_MEDIA_DESTINATIONS: tuple[IpNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(slots=True)
class ApiConfig:
    listen: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 8080))
    tokens: tuple[ApiToken, ...] = ()
    tls: TlsFiles | None = None
    """HTTPS with this certificate and key; plain HTTP without."""
    media_destinations: tuple[IpNetwork, ...] = DEFAULT_MEDIA_DESTINATIONS
    """Where play/playback/download may send media when the API is asked to."""

    def token_for(self, presented: str) -> ApiToken | None:
        """The token matching ``presented``. Every token is compared (constant time each), so how long
        this takes says nothing about which one, or how much of one, matched."""
        found = None
        for token in self.tokens:
            if token.matches(presented):
                found = token
        return found


@dataclass(slots=True)
class MetricsConfig:
    listen: HostPort | None = None
    """A listener of its own for ``/metrics`` (no token needed there); None: on the API, with a token."""


@dataclass(slots=True)
class ConsoleConfig:
    """The web console and its WebRTC (WHEP) preview."""

    address: str | None = None
    """Where browsers reach the media (host ICE candidates); None: the host of ``api.listen`` (which is
    never a wildcard)."""
    max_viewers: int = 16
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs for browsers behind NAT; none on a LAN."""
    transcode_h265: bool = False
    """H.265 channels transcoded to H.264 for the preview (PyAV: about 0.3 of a core per 720p25 stream,
    0.6 per 1080p25); off, the console says why such a channel cannot be previewed."""

    def host(self, api: ApiConfig) -> str:
        return self.address or api.listen.host


@dataclass(slots=True)
class EventsConfig:
    webhooks: tuple[Webhook, ...] = ()
    """Each event POSTed as JSON to these URLs (hosts inside ``api.media_destinations``)."""
    queue: int = 1000
    """Events kept per webhook while its receiver is down; the oldest go first."""


@dataclass(slots=True)
class LogConfig:
    level: str = "info"
    format: str = "auto"


@dataclass(slots=True)
class DeviceCredential:
    id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    name: str | None = None
    stream_transport: str | None = None
    media_source: MediaSourceRule = MediaSourceRule()
    """Resolved when read: the device's own rule, else media.media_source."""


@dataclass(slots=True, frozen=True)
class ShareRule:
    """One ``share:`` rule of an upstream. Every criterion given must match; ``None`` means not given.

    GB/T 28181 IDs carry their meaning by position: digits 1-8 the centre (civil) code, 9-10 the
    industry, 11-13 the type (131 camera, 132 IPC, 134 alarm input...), so policy can be written
    without listing cameras one by one.
    """

    prefix: tuple[str, ...] | None = None
    industry: tuple[str, ...] | None = None
    type: tuple[str, ...] | None = None
    ids: frozenset[str] | None = None
    control: bool = False

    def matches(self, channel_id: str) -> bool:
        if self.ids is not None and channel_id not in self.ids:
            return False
        if self.prefix is not None and not channel_id.startswith(self.prefix):
            return False
        if self.industry is not None and channel_id[8:10] not in self.industry:
            return False
        return self.type is None or channel_id[10:13] in self.type


@dataclass(slots=True, frozen=True)
class IdRule:
    """Rewrite an ID prefix toward an upper (``from`` -> ``to``, same length keeps IDs 20 digits)."""

    source: str
    target: str


@dataclass(slots=True)
class UpstreamConfig:
    """One upper platform the gateway registers to (police station, district, city)."""

    name: str
    id: str
    domain: str
    address: HostPort
    listen: HostPort
    media_ip: str
    transport: str = "udp"
    media_ports: str = "40000-40999"
    password: str = field(default="", repr=False)
    username: str = ""
    realm: str = ""
    register_expires: int = 3600
    keepalive_interval: int = 60
    keepalive_misses: int = 3
    enabled: bool = True
    share: tuple[ShareRule, ...] = ()
    channel_ids: dict[str, str] = field(default_factory=dict)
    channel_id_rule: IdRule | None = None
    channel_names: dict[str, str] = field(default_factory=dict)
    catalog_max_bytes: int = 1300
    rate_limit: int = 5000
    alarms: bool = True
    alarm_retry_max: float = 300.0
    """Seconds between alarm delivery attempts grow up to this while the upper does not accept them."""
    media_source: MediaSourceRule = MediaSourceRule()
    """Where the upper's media connections may come from (TCP passive); resolved like a device's."""
    tls_ca: str = ""
    """``transport: tls``: the PEM CA file the upper's certificate is verified against (the system store
    without one); the upper is dialled by its address, which the certificate must name (IP SAN)."""
    tls_cert: str = ""
    """Our client certificate (PEM), for an upper that asks for one; optional."""
    tls_key: str = ""
    """Its private key, unless it is in ``tls_cert``."""


_UPSTREAM_DEFAULTS = UpstreamConfig(name="", id="", domain="", address=HostPort("", 0), listen=HostPort("", 0),
                                    media_ip="")


@dataclass(slots=True)
class AuditConfig:
    path: str = "audit.log"
    """File of cross-boundary actions, one JSON object per line ("-" = standard error)."""


@dataclass(slots=True)
class GatewayConfig:
    sip: SipConfig = field(default_factory=SipConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    log: LogConfig = field(default_factory=LogConfig)
    devices: list[DeviceCredential] = field(default_factory=list)
    upstreams: list[UpstreamConfig] = field(default_factory=list)
    audit: AuditConfig = field(default_factory=AuditConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    events: EventsConfig = field(default_factory=EventsConfig)

    @property
    def realm(self) -> str:
        return self.sip.realm or self.sip.domain

    def credential(self, device_id: str) -> DeviceCredential | None:
        for cred in self.devices:
            if cred.id == device_id:
                return cred
        return None

    def media_source(self, device_id: str) -> MediaSourceRule:
        """The media source rule of a device, listed or not."""
        cred = self.credential(device_id)
        return cred.media_source if cred is not None else self.media.media_source


# -- reading -----------------------------------------------------------------------------------------


class _Problems:
    """The errors of one load, kept in file order so that all of them are reported at once."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, error: ConfigError) -> None:
        self.errors.extend(error.errors)

    def ok(self, *keys: str) -> bool:
        """No error at, above or under any of ``keys``: a check across values runs only on values that
        were read as given, or a defaulted one would produce a second, misleading error."""
        return not any(_related(error.key, key) for error in self.errors for key in keys)

    def raise_any(self) -> None:
        if self.errors:
            raise ConfigErrors(self.errors)


def _related(a: str, b: str) -> bool:
    if len(a) > len(b):
        a, b = b, a
    return a == b or a == "" or b.startswith((a + ".", a + "["))


class _Section:
    """Typed reads from one mapping, with errors that carry the dotted key.

    With ``problems`` a bad value is recorded and its default used, so reading goes on and every error
    is found; without, the first error is raised (the small mappings inside one value, such as
    ``{file: PATH}``, whose one error is that value's).
    """

    def __init__(self, data: Any, path: str, problems: _Problems | None = None) -> None:
        self.path = path
        self.problems = problems
        self.used: set[str] = set()
        if data is None or data is _MISSING:
            data = {}
        self.valid = isinstance(data, dict)
        """False when the value was not a mapping (reported): its keys are then not reported missing too."""
        if not self.valid:
            self.report(ConfigError(path or "(top level)", data, "a mapping of keys to values"))
            data = {}
        self.data: dict[str, Any] = data

    def report(self, error: ConfigError) -> None:
        if self.problems is None:
            raise error
        self.problems.add(error)

    def ok(self, *names: str) -> bool:
        return self.problems is None or self.problems.ok(*(self.key(name) for name in names))

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str) -> Any:
        self.used.add(name)
        return self.data.get(name, _MISSING)

    def get(self, name: str, default: T, convert: Callable[[str, Any], T]) -> T:
        value = self.raw(name)
        if value is _MISSING or value is None:
            return default
        try:
            return convert(self.key(name), value)
        except ConfigError as exc:
            self.report(exc)
            return default

    def require(self, name: str, convert: Callable[[str, Any], T]) -> T | None:
        """A key without a default: missing is an error; None when missing or wrong."""
        if self.data.get(name) is None:
            self.used.add(name)
            self.report(ConfigError(self.key(name), _MISSING, "a value (this key is required)"))
            return None
        return self.get(name, None, convert)

    def section(self, name: str) -> _Section:
        return _Section(self.raw(name), self.key(name), self.problems)

    def finish(self) -> None:
        known = sorted(self.used)
        for name in self.data:
            if name not in self.used:
                expected = f"a known key here ({', '.join(known)})"
                close = difflib.get_close_matches(str(name), known, n=1)
                if close:
                    expected += f"; did you mean {close[0]}?"
                self.report(ConfigError(self.key(str(name)), self.data[name], expected))


def _string(pattern: re.Pattern[str] | None = None, what: str = "a string") -> Callable[[str, Any], str]:
    def convert(key: str, value: Any) -> str:
        if isinstance(value, _WrittenInt | _WrittenFloat):
            text = value.text
        elif isinstance(value, bool) or not isinstance(value, str | int):
            raise ConfigError(key, value, what)
        else:
            text = str(value)
        if pattern is not None and pattern.fullmatch(text) is None:
            raise ConfigError(key, value, what)
        return text

    return convert


def _choice(options: tuple[str, ...], fold: Callable[[str], str] = str.lower) -> Callable[[str, Any], str]:
    def convert(key: str, value: Any) -> str:
        if not isinstance(value, str) or fold(value) not in options:
            raise ConfigError(key, value, "one of " + ", ".join(options))
        return fold(value)

    return convert


def _number(kind: type, low: float, high: float) -> Callable[[str, Any], Any]:
    def convert(key: str, value: Any) -> Any:
        ok_types = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types) or not low <= value <= high:
            what = "an integer" if kind is int else "a number"
            raise ConfigError(key, value, f"{what} from {low:g} to {high:g}")
        return kind(value)

    return convert


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "true or false")
    return value


def _secret(check: Callable[[str, Any], str]) -> Callable[[str, Any], str]:
    """A password or token: a string, or kept out of the configuration file so that file may be
    world-readable: ``{file: PATH}`` (its content, trailing newline stripped; a relative path is from the
    working directory) or ``{env: NAME}``. Read at every load, so SIGHUP picks up a changed secret."""

    def convert(key: str, value: Any) -> str:
        return check(key, _read_secret(key, value) if isinstance(value, dict) else value)

    return convert


def _read_secret(key: str, value: dict[Any, Any]) -> str:
    sec = _Section(value, key)
    path = sec.get("file", None, _string(re.compile(r".+"), "a path to a file holding the secret"))
    name = sec.get("env", None, _string(re.compile(r"[A-Za-z_][A-Za-z0-9_]*"), "an environment variable name"))
    sec.finish()
    if (path is None) == (name is None):
        raise ConfigError(key, value, "a string, {file: PATH} or {env: NAME} (exactly one of file, env)")
    if path is not None:
        return _read_secret_file(sec.key("file"), path)
    found = os.environ.get(str(name))
    if not found:
        state = "unset" if found is None else "empty"
        raise ConfigError(sec.key("env"), name, f"a variable set in the gateway's environment (it is {state})")
    return found


def _read_secret_file(key: str, path: str) -> str:
    try:
        secret = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(key, path, f"a readable file holding the secret ({reason})") from exc
    if not secret:
        raise ConfigError(key, path, "a file holding the secret (it is empty)")
    return secret


def parse_host_port(key: str, value: Any) -> HostPort:
    """``host:port`` or ``[v6]:port``; the host must be an address we can bind, given explicitly."""
    if not isinstance(value, str):
        raise ConfigError(key, value, 'an address "host:port", e.g. "127.0.0.1:5060"')
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]\s]+):(\d{1,5})", value.strip())
    if match is None:
        raise ConfigError(key, value, 'an address "host:port", e.g. "127.0.0.1:5060"')
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if host in ("0.0.0.0", "::", "*"):
        # The address goes into Via, Contact and SDP, where a wildcard cannot be reached (and on a boundary
        # host each side must be bound to its own interface anyway).
        raise ConfigError(key, value, "a specific local address, not a wildcard (it is advertised to peers)")
    if not 0 < port < 65536:
        raise ConfigError(key, value, "a port from 1 to 65535")
    return HostPort(host, port)


def _timezone(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _known_zone(value):
        raise ConfigError(key, value, 'an IANA time zone name known to this host, e.g. "Asia/Shanghai"')
    return value


def _network(key: str, value: Any) -> IpNetwork:
    what = 'a network in CIDR form, e.g. "10.1.0.0/24", or one address'
    if not isinstance(value, str):
        raise ConfigError(key, value, what)
    try:
        # strict=False: "10.1.0.5/24" means the network 10.1.0.0/24, as administrators often write it.
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as exc:
        raise ConfigError(key, value, what) from exc


def _networks(key: str, value: Any) -> tuple[IpNetwork, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, value, 'a list of networks in CIDR form, e.g. ["127.0.0.0/8"]')
    return tuple(_network(f"{key}[{i}]", item) for i, item in enumerate(value))


def _media_source(key: str, value: Any) -> MediaSourceRule:
    if isinstance(value, str) and value.strip().lower() in ("signalling", "sdp"):
        return MediaSourceRule(MediaSourceKind(value.strip().lower()))
    if isinstance(value, str) and re.search(r"[\d:]", value):
        return MediaSourceRule(MediaSourceKind.NETWORKS, (_network(key, value),))
    if not isinstance(value, list) or not value:
        raise ConfigError(key, value, 'signalling, sdp, or a non-empty list of networks, e.g. ["10.1.0.0/24"]')
    return MediaSourceRule(MediaSourceKind.NETWORKS, _networks(key, value))


def _read_sip(sec: _Section) -> SipConfig:
    d = SipConfig()
    cfg = SipConfig(
        id=sec.get("id", d.id, _string(_ID_RE, "a 20-digit GB/T 28181 ID")),
        domain=sec.get("domain", d.domain, _string(_DOMAIN_RE, "a 10-digit SIP domain")),
        listen=sec.get("listen", d.listen, parse_host_port),
        password=sec.get("password", d.password, _secret(_string(re.compile(r".{1,128}"),
                                                                  "a password of 1 to 128 characters"))),
        realm=sec.get("realm", d.realm, _string()),
        allowlist=sec.get("allowlist", d.allowlist, _bool),
        register_min_expires=sec.get("register_min_expires", d.register_min_expires, _number(int, 10, 86400)),
        register_max_expires=sec.get("register_max_expires", d.register_max_expires, _number(int, 10, 604800)),
        keepalive_interval=sec.get("keepalive_interval", d.keepalive_interval, _number(int, 5, 3600)),
        keepalive_misses=sec.get("keepalive_misses", d.keepalive_misses, _number(int, 1, 100)),
        lockout_failures=sec.get("lockout_failures", d.lockout_failures, _number(int, 0, 1000)),
        lockout_seconds=sec.get("lockout_seconds", d.lockout_seconds, _number(int, 1, 86400)),
        nonce_ttl=sec.get("nonce_ttl", d.nonce_ttl, _number(int, 10, 3600)),
        encoding=sec.get("encoding", d.encoding, _choice(ENCODINGS, str.upper)),
        max_message_size=sec.get("max_message_size", d.max_message_size, _number(int, 1024, 1 << 20)),
        t1=sec.get("t1", d.t1, _number(float, 0.05, 10)),
        t2=sec.get("t2", d.t2, _number(float, 0.5, 60)),
        t4=sec.get("t4", d.t4, _number(float, 0.5, 60)),
        catalog_subscribe=sec.get("catalog_subscribe", d.catalog_subscribe, _bool),
        catalog_subscribe_expires=sec.get(
            "catalog_subscribe_expires", d.catalog_subscribe_expires, _number(int, 60, 86400)
        ),
        alarm_subscribe=sec.get("alarm_subscribe", d.alarm_subscribe, _bool),
        position_subscribe_interval=sec.get(
            "position_subscribe_interval", d.position_subscribe_interval, _number(int, 0, 86400)
        ),
        event_subscribe_expires=sec.get(
            "event_subscribe_expires", d.event_subscribe_expires, _number(int, 60, 86400)
        ),
        catalog_first_wait=sec.get("catalog_first_wait", d.catalog_first_wait, _number(float, 0.1, 600)),
        catalog_gap_timeout=sec.get("catalog_gap_timeout", d.catalog_gap_timeout, _number(float, 0.1, 600)),
        query_timeout=sec.get("query_timeout", d.query_timeout, _number(float, 0.1, 600)),
        user_agent=sec.get("user_agent", d.user_agent, _string()),
        rate_limit=sec.get("rate_limit", d.rate_limit, _number(int, 0, 10_000_000)),
        max_connections=sec.get("max_connections", d.max_connections, _number(int, 0, 10_000_000)),
        first_message_timeout=sec.get("first_message_timeout", d.first_message_timeout, _number(float, 0.5, 600)),
        max_transactions=sec.get("max_transactions", d.max_transactions, _number(int, 0, 100_000_000)),
        tls_listen=sec.get("tls_listen", d.tls_listen, parse_host_port),
        tls_cert=sec.get("tls_cert", d.tls_cert, _string(re.compile(r".+"), "a path to a PEM certificate file")),
        tls_key=sec.get("tls_key", d.tls_key, _string(re.compile(r".+"), "a path to a PEM private key file")),
        timezone=sec.get("timezone", d.timezone, _timezone),
        time_source=sec.get("time_source", d.time_source, _choice(TIME_SOURCES)),
    )
    if sec.ok("tls_listen", "tls_cert", "tls_key", "listen"):
        _check_sip_tls(sec, cfg)
    if cfg.register_min_expires > cfg.register_max_expires and sec.ok("register_min_expires", "register_max_expires"):
        sec.report(ConfigError(
            sec.key("register_min_expires"), cfg.register_min_expires,
            f"a value no greater than sip.register_max_expires ({cfg.register_max_expires})",
        ))
    if sec.ok("id"):
        _check_own_id(sec, cfg)
    sec.finish()
    return cfg


def _check_own_id(sec: _Section, cfg: SipConfig) -> None:
    """The gateway's ID must say "platform", and its first 10 digits are its domain (GB/T 28181 §6.1.2
    makes the SIP domain the server ID's first 10 digits).

    Devices configured with a server ID of another type, or a domain that does not match it, register
    to a gateway that answers under another identity than the one they were given: some refuse it,
    some keep retrying, and the upper platform files the gateway under the wrong centre. Both are errors.
    The domain check is an error, not a warning, because sip.domain is always the 10-digit form here;
    were the ``3402000000.spvmn.cn`` form admitted, only its 10 digits would be compared.
    """
    code = cfg.id[10:13]
    if not GbId.parse(cfg.id).is_platform:
        sec.report(ConfigError(
            sec.key("id"), cfg.id,
            f"the ID of a platform: type code (digits 11-13) 200 SIP server, 209 access gateway or another "
            f"2xx platform type, not {code} ({type_name(code)})"))
    elif sec.ok("domain") and cfg.id[:10] != cfg.domain:
        unset = "" if sec.data.get("domain") is not None else f"; sip.domain is not set and defaults to {cfg.domain}"
        sec.report(ConfigError(
            sec.key("domain"), cfg.domain,
            f"the first 10 digits of sip.id ({cfg.id[:10]}), as GB/T 28181 makes the domain the server ID's "
            f"prefix{unset}"))


def _check_sip_tls(sec: _Section, cfg: SipConfig) -> None:
    """With sip.tls_listen set, the certificate and key must exist and load now, not at the first device."""
    if cfg.tls_listen is None:
        return
    if cfg.tls_listen.port == cfg.listen.port and cfg.tls_listen.host == cfg.listen.host:
        sec.report(ConfigError(sec.key("tls_listen"), str(cfg.tls_listen),
                               "a port of its own (sip.listen has TCP on it)"))
    missing = [name for name in ("tls_cert", "tls_key") if not getattr(cfg, name)]
    for name in missing:
        sec.report(ConfigError(sec.key(name), _MISSING, "a PEM file path when sip.tls_listen is set"))
    if not missing:
        _check_tls_files(sec, cfg.tls_cert, cfg.tls_key, "tls_cert", "tls_key")


def _check_tls_files(sec: _Section, cert: str, key: str, cert_name: str, key_name: str) -> None:
    try:
        server_context(cert, key)
    except TlsFileError as exc:
        name = key_name if exc.role == "key" else cert_name
        sec.report(ConfigError(sec.key(name), exc.path, f"a readable PEM file ({exc.reason})"))


def _check_upstream_tls(sec: _Section, cfg: UpstreamConfig) -> None:
    """The CA and client certificate load now, not at the first REGISTER; they mean nothing without TLS."""
    given = [name for name in ("tls_ca", "tls_cert", "tls_key") if getattr(cfg, name)]
    if cfg.transport != "tls":
        for name in given:
            sec.report(ConfigError(sec.key(name), getattr(cfg, name), "set only with transport: tls"))
        return
    if cfg.tls_key and not cfg.tls_cert:
        sec.report(ConfigError(sec.key("tls_cert"), _MISSING, "the client certificate tls_key belongs to"))
        return
    try:
        client_context(cfg.tls_ca or None, cfg.tls_cert or None, cfg.tls_key or None)
    except TlsFileError as exc:
        name = {"ca": "tls_ca", "cert": "tls_cert"}.get(exc.role, "tls_key" if cfg.tls_key else "tls_cert")
        sec.report(ConfigError(sec.key(name), exc.path, f"a readable PEM file ({exc.reason})"))


_PORT_RANGE_RE = re.compile(r"(\d{1,5})-(\d{1,5})")
_IP_RE = re.compile(r"[0-9A-Fa-f:.]+")
_ICE_URL_RE = re.compile(r"(stun|turns?):\S+")


def _port_range(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else ""
    match = _PORT_RANGE_RE.fullmatch(text.strip())
    what = 'a port range "LOW-HIGH" within 1024-65535 holding at least 2 ports, e.g. "30000-30999"'
    if match is None:
        raise ConfigError(key, value, what)
    low, high = int(match[1]), int(match[2])
    if not 1024 <= low < high <= 65535:
        raise ConfigError(key, value, what)
    return f"{low}-{high}"


def _media_ip(key: str, value: Any) -> str:
    if not isinstance(value, str) or _IP_RE.fullmatch(value) is None or value in ("0.0.0.0", "::"):
        raise ConfigError(key, value, "a specific IP address (it is put in SDP toward devices)")
    return value


def _read_media(sec: _Section) -> MediaConfig:
    d = MediaConfig()
    cfg = MediaConfig(
        ip=sec.get("ip", d.ip, _media_ip),
        ports=sec.get("ports", d.ports, _port_range),
        first_packet_timeout=sec.get("first_packet_timeout", d.first_packet_timeout, _number(float, 0.5, 120)),
        media_timeout=sec.get("media_timeout", d.media_timeout, _number(float, 1, 600)),
        idle_timeout=sec.get("idle_timeout", d.idle_timeout, _number(float, 0, 3600)),
        reinvite=sec.get("reinvite", d.reinvite, _bool),
        ssrc_check=sec.get("ssrc_check", d.ssrc_check, _bool),
        stream_transport=sec.get("stream_transport", d.stream_transport, _choice(STREAM_TRANSPORTS)),
        media_source=sec.get("media_source", d.media_source, _media_source),
        substream_attributes=sec.get("substream_attributes", d.substream_attributes, _substream_forms),
    )
    sec.finish()
    return cfg


def _substream_forms(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(v in SUBSTREAM_FORMS for v in value):
        raise ConfigError(key, value, "a non-empty list of " + ", ".join(SUBSTREAM_FORMS))
    return tuple(value)


def _ice_servers(key: str, value: Any) -> tuple[str, ...]:
    what = "a list of stun:, turn: or turns: URLs"
    if not isinstance(value, list) or not all(isinstance(v, str) and _ICE_URL_RE.fullmatch(v) for v in value):
        raise ConfigError(key, value, what)
    return tuple(value)


def _read_console(sec: _Section) -> ConsoleConfig:
    d = ConsoleConfig()
    cfg = ConsoleConfig(
        address=sec.get("address", d.address, _media_ip),
        max_viewers=sec.get("max_viewers", d.max_viewers, _number(int, 1, 1000)),
        ice_servers=sec.get("ice_servers", d.ice_servers, _ice_servers),
        transcode_h265=sec.get("transcode_h265", d.transcode_h265, _bool),
    )
    sec.finish()
    return cfg


_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def _webhook_url(destinations: tuple[IpNetwork, ...]) -> Callable[[str, Any], str]:
    """An http(s) URL whose host is an IP literal inside ``destinations`` and one receiver: the rule
    ``api.media_destinations`` sets for media, so the API cannot be made to send anywhere else."""

    def convert(key: str, value: Any) -> str:
        if not isinstance(value, str):
            raise ConfigError(key, value, "an http:// or https:// URL")
        try:
            parts = urllib.parse.urlsplit(value)
            host = parts.hostname or ""
            parts.port  # noqa: B018 (a bad port raises only when read)
        except ValueError:
            raise ConfigError(key, value, "an http:// or https:// URL") from None
        if parts.scheme not in ("http", "https") or not host:
            raise ConfigError(key, value, "an http:// or https:// URL")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(key, value, "a URL whose host is an IP address (names are not resolved)") from None
        if address.is_unspecified or address.is_multicast or address == _BROADCAST:
            raise ConfigError(key, value, "a URL whose host is one receiver (not unspecified, multicast, broadcast)")
        inside = [n for n in destinations if address in n]
        if not inside or any(isinstance(n, ipaddress.IPv4Network) and n.prefixlen < 31
                             and address == n.broadcast_address for n in inside):
            raise ConfigError(key, value, "a URL whose host is inside api.media_destinations")
        return value

    return convert


def _event_types(key: str, value: Any) -> frozenset[EventType]:
    names = ", ".join(t.value for t in EventType)
    if not isinstance(value, list) or not value:
        raise ConfigError(key, value, f"a non-empty list of event types ({names})")
    try:
        return frozenset(EventType(v) for v in value)
    except ValueError:
        raise ConfigError(key, value, f"a list of event types ({names})") from None


def _read_events(sec: _Section, destinations: tuple[IpNetwork, ...]) -> EventsConfig:
    d = EventsConfig()
    hooks: list[Webhook] = []
    value = sec.raw("webhooks")
    if isinstance(value, list):
        for i, item in enumerate(value):
            hook = _Section(item, f"{sec.key('webhooks')}[{i}]", sec.problems)
            url = hook.require("url", _webhook_url(destinations))
            types = hook.get("events", None, _event_types)
            hook.finish()
            if url is not None:
                hooks.append(Webhook(url, types))
    elif value is not _MISSING and value is not None:
        sec.report(ConfigError(sec.key("webhooks"), value, "a list of {url, events} mappings"))
    cfg = EventsConfig(webhooks=tuple(hooks), queue=sec.get("queue", d.queue, _number(int, 1, 1_000_000)))
    sec.finish()
    return cfg


def _read_storage(sec: _Section) -> StorageConfig:
    d = StorageConfig()
    cfg = StorageConfig(
        backend=sec.get("backend", d.backend, _choice(("sqlite", "memory"))),
        path=sec.get("path", d.path, _string()),
        history_days=sec.get("history_days", d.history_days, _number(int, 1, 3660)),
    )
    sec.finish()
    return cfg


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback literal; a name other than localhost is not taken on trust."""
    if host == "localhost":
        return True
    address = _plain_ip(host)
    return address is not None and address.is_loopback


_TOKEN_TEXT = _string(re.compile(r"\S{16,4096}"), "a token of at least 16 characters, without spaces")


def _token_digest(key: str, value: Any) -> bytes:
    return hashlib.sha256(_secret(_TOKEN_TEXT)(key, value).encode()).digest()


def _token_file_digest(key: str, value: Any) -> bytes:
    path = _string(re.compile(r".+"), "a path to a file holding the token")(key, value)
    text = _read_secret_file(key, path)
    if re.fullmatch(r"\S{16,4096}", text) is None:
        raise ConfigError(key, path, "a file holding a token of at least 16 characters, without spaces")
    return hashlib.sha256(text.encode()).digest()


def _sha256_hex(key: str, value: Any) -> bytes:
    what = "the token's SHA-256 as 64 hex digits (printf %s TOKEN | sha256sum)"
    return bytes.fromhex(_string(re.compile(r"[0-9A-Fa-f]{64}"), what)(key, value))


_TOKEN_READERS: dict[str, Callable[[str, Any], bytes]] = {
    "sha256": _sha256_hex, "token_file": _token_file_digest, "token": _token_digest}


def _role(key: str, value: Any) -> ApiRole:
    return ApiRole(_choice(tuple(role.value for role in ApiRole))(key, value))


def _read_tokens(api: _Section) -> tuple[ApiToken, ...]:
    value = api.raw("tokens")
    path = api.key("tokens")
    if value is _MISSING or value is None:
        return ()
    if not isinstance(value, list):
        api.report(ConfigError(path, value, "a list of tokens, each {name, role, sha256 | token_file | token}"))
        return ()
    tokens: list[ApiToken] = []
    names: dict[str, int] = {}
    digests: dict[bytes, str] = {}
    for i, item in enumerate(value):
        sec = _Section(item, f"{path}[{i}]", api.problems)
        if not sec.valid:
            continue
        name = sec.require("name", _string(re.compile(r"[\w.-]{1,32}"), "a name of letters, digits, '.', '-' or '_'"))
        role = sec.require("role", _role)
        given = [source for source in _TOKEN_READERS if sec.data.get(source) is not None]
        for source in _TOKEN_READERS:
            sec.raw(source)
        digest = sec.get(given[0], None, _TOKEN_READERS[given[0]]) if given else None
        sec.finish()
        if not given:
            sec.report(ConfigError(sec.key("sha256"), _MISSING, "one of sha256, token_file, token for each token"))
        for extra in given[1:]:
            sec.report(ConfigError(sec.key(extra), sec.data[extra],
                                   f"no second token source ({given[0]} is given: one of sha256, token_file, token)"))
        if name is not None and name in names:
            sec.report(ConfigError(sec.key("name"), name, f"a name of its own ({path}[{names[name]}] has it)"))
        if digest is not None and digest in digests:
            # Two names for one token would make the audit trail name the wrong holder.
            sec.report(ConfigError(sec.key(given[0]), sec.data[given[0]],
                                   f"a token of its own (the same token as {digests[digest]})"))
        if name is None or role is None or digest is None or len(given) != 1:
            continue
        names[name] = i
        digests[digest] = sec.path
        tokens.append(ApiToken(name, role, digest))
    return tuple(tokens)


def _read_api(sec: _Section) -> ApiConfig:
    d = ApiConfig()
    listen = sec.get("listen", d.listen, parse_host_port)
    tokens = _read_tokens(sec)
    tls = None
    tls_sec = sec.section("tls")
    if sec.data.get("tls") is not None and sec.ok("tls"):
        cert = tls_sec.require("cert", _string(re.compile(r".+"), "a path to a PEM certificate file"))
        key = tls_sec.require("key", _string(re.compile(r".+"), "a path to a PEM private key file"))
        if cert is not None and key is not None:
            _check_tls_files(tls_sec, cert, key, "cert", "key")
            tls = TlsFiles(cert, key)
    tls_sec.finish()
    cfg = ApiConfig(
        listen=listen,
        tokens=tokens,
        tls=tls,
        media_destinations=sec.get("media_destinations", d.media_destinations, _networks),
    )
    if not tokens and sec.ok("listen", "tokens") and not is_loopback(listen.host):
        # Without tokens anyone who reaches the API lists every camera and sends streams anywhere.
        sec.report(ConfigError(sec.key("tokens"), _MISSING,
                               f"a list of tokens (required when api.listen is not a loopback address; it is {listen})"))
    sec.finish()
    return cfg


def _read_devices(top: _Section, media_source: MediaSourceRule) -> list[DeviceCredential]:
    value = top.raw("devices")
    if value is _MISSING or value is None:
        return []
    if not isinstance(value, list):
        top.report(ConfigError("devices", value, "a list of devices, each with at least an id"))
        return []
    devices: list[DeviceCredential] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        sec = _Section(item, f"devices[{i}]", top.problems)
        if not sec.valid:
            continue
        device_id = sec.require("id", _string(_ID_RE, "a 20-digit GB/T 28181 ID"))
        cred = DeviceCredential(
            id=device_id or "",
            username=sec.get("username", None, _string()),
            password=sec.get("password", None, _secret(_string())),
            name=sec.get("name", None, _string()),
            stream_transport=sec.get("stream_transport", None, _choice(STREAM_TRANSPORTS)),
            media_source=sec.get("media_source", media_source, _media_source),
        )
        if device_id is not None and device_id in seen:
            sec.report(ConfigError(sec.key("id"), device_id, "an ID listed only once"))
        elif device_id is not None:
            seen.add(device_id)
            devices.append(cred)
        sec.finish()
    return devices


_CODE_LISTS = {"industry": re.compile(r"\d{2}"), "type": re.compile(r"\d{3}")}


def _codes(pattern: re.Pattern[str], what: str) -> Callable[[str, Any], tuple[str, ...]]:
    """A code or a list of codes (``industry: "01"`` and ``industry: ["01", "11"]`` both work)."""
    one = _string(pattern, what)

    def convert(key: str, value: Any) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ConfigError(key, value, f"{what}, or a non-empty list of them")
        return tuple(one(f"{key}[{i}]", item) for i, item in enumerate(items))

    return convert


def _read_share(up: _Section) -> tuple[ShareRule, ...]:
    value = up.raw("share")
    path = up.key("share")
    if value is _MISSING or value is None:
        return ()
    if not isinstance(value, list):
        up.report(ConfigError(path, value, "a list of share rules (prefix, industry, type, ids, control)"))
        return ()
    rules = []
    for i, item in enumerate(value):
        sec = _Section(item, f"{path}[{i}]", up.problems)
        if not sec.valid:
            continue
        id_list = sec.get("ids", None, _codes(_ID_RE, "a 20-digit channel ID"))
        rule = ShareRule(
            prefix=sec.get("prefix", None, _codes(re.compile(r"\d{0,20}"), "an ID prefix of up to 20 digits")),
            industry=sec.get("industry", None, _codes(_CODE_LISTS["industry"], "a 2-digit industry code")),
            type=sec.get("type", None, _codes(_CODE_LISTS["type"], "a 3-digit type code")),
            ids=frozenset(id_list) if id_list is not None else None,
            control=sec.get("control", False, _bool),
        )
        sec.finish()
        criteria = ("prefix", "industry", "type", "ids")
        if all(sec.data.get(name) is None for name in criteria):
            sec.report(ConfigError(sec.path, item,
                                   'at least one of prefix, industry, type, ids (prefix: "" shares all)'))
        elif sec.ok(*criteria):
            rules.append(rule)
    return tuple(rules)


def _id_table(what: str) -> Callable[[str, Any], dict[str, str]]:
    def convert(key: str, value: Any) -> dict[str, str]:
        if not isinstance(value, dict):
            raise ConfigError(key, value, f"a mapping of channel ID to {what}")
        table: dict[str, str] = {}
        for k, v in value.items():
            channel = _string(_ID_RE, "a 20-digit channel ID")(f"{key} (key)", k)
            if what == "ID":
                table[channel] = _string(_ID_RE, "a 20-digit ID")(f"{key}.{channel}", v)
            else:
                table[channel] = _string(re.compile(r".{1,64}", re.S), "a name of 1 to 64 characters")(
                    f"{key}.{channel}", v)
        if what == "ID" and len(set(table.values())) != len(table):
            raise ConfigError(key, value, "distinct target IDs (two channels cannot share one ID upstream)")
        return table

    return convert


def _id_rule(key: str, value: Any) -> IdRule:
    sec = _Section(value, key)
    digits = _string(re.compile(r"\d{1,20}"), "an ID prefix of digits")
    source = sec.get("from", "", digits)
    target = sec.get("to", "", digits)
    sec.finish()
    if not source or len(source) != len(target):
        raise ConfigError(key, value, 'from: and to: prefixes of the same length (IDs stay 20 digits)')
    return IdRule(source, target)


def _read_upstreams(top: _Section, sip: SipConfig, media_source: MediaSourceRule) -> list[UpstreamConfig]:
    value = top.raw("upstreams")
    if value is _MISSING or value is None:
        return []
    if not isinstance(value, list):
        top.report(ConfigError("upstreams", value, "a list of upper platforms"))
        return []
    result: list[UpstreamConfig] = []
    names: set[str] = set()
    listens: set[HostPort] = set()
    d = _UPSTREAM_DEFAULTS
    sip_ok = top.ok("sip.listen", "sip.id")
    for i, item in enumerate(value):
        sec = _Section(item, f"upstreams[{i}]", top.problems)
        if not sec.valid:
            continue
        name = sec.require("name", _string(re.compile(r"[\w.-]{1,32}"), "a name of letters, digits, '.', '-' or '_'"))
        up_id = sec.require("id", _string(_ID_RE, "a 20-digit GB/T 28181 ID"))
        address = sec.require("address", parse_host_port)
        listen = sec.require("listen", parse_host_port)
        media_ip = sec.require("media_ip", _media_ip)
        cfg = UpstreamConfig(
            name=name or "",
            id=up_id or "",
            address=address or d.address,
            listen=listen or d.listen,
            media_ip=media_ip or "",
            domain=sec.get("domain", (up_id or "")[:10], _string(_DOMAIN_RE, "a 10-digit SIP domain")),
            transport=sec.get("transport", d.transport, _choice(("udp", "tcp", "tls"))),
            media_ports=sec.get("media_ports", d.media_ports, _port_range),
            password=sec.get("password", "", _secret(_string(re.compile(r".{1,128}"),
                                                             "a password of 1 to 128 characters"))),
            username=sec.get("username", sip.id, _string(re.compile(r"\S{1,64}"), "a user name")),
            realm=sec.get("realm", "", _string()),
            register_expires=sec.get("register_expires", d.register_expires, _number(int, 60, 86400)),
            keepalive_interval=sec.get("keepalive_interval", d.keepalive_interval, _number(int, 5, 3600)),
            keepalive_misses=sec.get("keepalive_misses", d.keepalive_misses, _number(int, 1, 100)),
            enabled=sec.get("enabled", True, _bool),
            share=_read_share(sec),
            channel_ids=sec.get("channel_ids", {}, _id_table("ID")),
            channel_id_rule=sec.get("channel_id_rule", None, _id_rule),
            channel_names=sec.get("channel_names", {}, _id_table("name")),
            catalog_max_bytes=sec.get("catalog_max_bytes", d.catalog_max_bytes, _number(int, 900, 60000)),
            rate_limit=sec.get("rate_limit", d.rate_limit, _number(int, 0, 10_000_000)),
            alarms=sec.get("alarms", True, _bool),
            alarm_retry_max=sec.get("alarm_retry_max", d.alarm_retry_max, _number(float, 1, 3600)),
            media_source=sec.get("media_source", media_source, _media_source),
            tls_ca=sec.get("tls_ca", "", _string(re.compile(r".+"), "a path to a PEM CA certificate file")),
            tls_cert=sec.get("tls_cert", "", _string(re.compile(r".+"), "a path to a PEM certificate file")),
            tls_key=sec.get("tls_key", "", _string(re.compile(r".+"), "a path to a PEM private key file")),
        )
        if sec.ok("transport", "tls_ca", "tls_cert", "tls_key"):
            _check_upstream_tls(sec, cfg)
        sec.finish()
        if name is not None:
            if name in names:
                sec.report(ConfigError(sec.key("name"), name, "a name used by one upstream only"))
            names.add(name)
        if listen is not None:
            if listen in listens or (sip_ok and listen == sip.listen):
                sec.report(ConfigError(sec.key("listen"), str(listen),
                                       "an address of its own (not sip.listen, not another upstream's listen)"))
            listens.add(listen)
        if up_id is not None and sip_ok and up_id == sip.id:
            sec.report(ConfigError(sec.key("id"), up_id, f"the upper platform's ID, not the gateway's own ({sip.id})"))
        if None not in (name, up_id, address, listen, media_ip):
            result.append(cfg)
    return result


def _check_listeners(cfg: GatewayConfig, problems: _Problems) -> None:
    """The API and metrics listeners need a TCP port no SIP listener (nor each other) holds: sharing one
    fails at start with EADDRINUSE, or, across reuse options, sends HTTP to the SIP parser."""
    taken: list[tuple[str, HostPort]] = [("sip.listen", cfg.sip.listen)]
    if cfg.sip.tls_listen is not None:
        taken.append(("sip.tls_listen", cfg.sip.tls_listen))
    taken += [(f"upstreams[{i}].listen", up.listen) for i, up in enumerate(cfg.upstreams)]
    for key, address in (("api.listen", cfg.api.listen), ("metrics.listen", cfg.metrics.listen)):
        if address is None or not problems.ok(key):
            continue
        for other, held in taken:
            if held == address and problems.ok(other):
                problems.add(ConfigError(key, str(address), f"an address and port of its own ({other} has it)"))
                break
        taken.append((key, address))


def _check_host(cfg: GatewayConfig, problems: _Problems) -> None:
    """Every address the gateway binds must belong to this host: found now, naming the key, rather than
    as a traceback from the first socket that fails to bind."""
    addresses: list[tuple[str, str, str]] = [
        ("sip.listen", cfg.sip.listen.host, str(cfg.sip.listen)),
        ("media.ip", cfg.media.ip, cfg.media.ip),
        ("api.listen", cfg.api.listen.host, str(cfg.api.listen)),
    ]
    if cfg.sip.tls_listen is not None:
        addresses.append(("sip.tls_listen", cfg.sip.tls_listen.host, str(cfg.sip.tls_listen)))
    if cfg.metrics.listen is not None:
        addresses.append(("metrics.listen", cfg.metrics.listen.host, str(cfg.metrics.listen)))
    if cfg.console.address is not None:
        addresses.append(("console.address", cfg.console.address, cfg.console.address))
    for i, up in enumerate(cfg.upstreams):
        addresses.append((f"upstreams[{i}].listen", up.listen.host, str(up.listen)))
        addresses.append((f"upstreams[{i}].media_ip", up.media_ip, up.media_ip))
    for key, host, shown in addresses:
        if not problems.ok(key):
            continue
        reason = local_address_problem(host)
        if reason is not None:
            problems.add(ConfigError(key, shown, f"an address of this host ({reason})"))


def local_address_problem(host: str) -> str | None:
    """Why ``host`` cannot be bound here, or None. A UDP socket bound to port 0 asks the kernel without
    taking a port anyone uses; loopback is always taken as bindable."""
    if is_loopback(host):
        return None
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        return f"the name does not resolve: {exc.strerror}"
    family, kind, proto, _name, address = infos[0]
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.bind(address)
    except OSError as exc:
        return f"binding to it failed: {exc.strerror or exc}"
    return None


def load_config(data: Any, *, check_host: bool = False) -> GatewayConfig:
    """Validate a parsed YAML document (None means: all defaults). Raises :class:`ConfigErrors` with
    every problem found. ``check_host`` also checks each address to bind against this machine."""
    problems = _Problems()
    top = _Section(data, "", problems)
    storage_cfg = _read_storage(top.section("storage"))
    api_cfg = _read_api(top.section("api"))
    logsec = top.section("log")
    log_cfg = LogConfig(
        level=logsec.get("level", "info", _choice(("debug", "info", "warning", "error"))),
        format=logsec.get("format", "auto", _choice(("auto", "console", "json"))),
    )
    logsec.finish()
    auditsec = top.section("audit")
    audit_cfg = AuditConfig(path=auditsec.get("path", AuditConfig().path, _string(re.compile(r".+"), "a file path")))
    auditsec.finish()
    metricsec = top.section("metrics")
    metrics_cfg = MetricsConfig(listen=metricsec.get("listen", None, parse_host_port))
    metricsec.finish()
    sip_cfg = _read_sip(top.section("sip"))
    media_cfg = _read_media(top.section("media"))
    console_cfg = _read_console(top.section("console"))
    events_cfg = _read_events(top.section("events"), api_cfg.media_destinations)
    cfg = GatewayConfig(
        sip=sip_cfg,
        media=media_cfg,
        storage=storage_cfg,
        api=api_cfg,
        log=log_cfg,
        devices=_read_devices(top, media_cfg.media_source),
        upstreams=_read_upstreams(top, sip_cfg, media_cfg.media_source),
        audit=audit_cfg,
        metrics=metrics_cfg,
        console=console_cfg,
        events=events_cfg,
    )
    top.finish()
    _check_listeners(cfg, problems)
    if check_host:
        _check_host(cfg, problems)
    problems.raise_any()
    return cfg


def config_warnings(cfg: GatewayConfig) -> list[str]:
    """What is valid but unsafe on a reachable address; ``check-config`` prints these, ``run`` logs them."""
    found: list[str] = []
    listen = cfg.sip.listen
    if not is_loopback(listen.host):
        # With the allowlist on and a password per listed device, the default password is never asked for.
        default_used = not cfg.sip.allowlist or any(device.password is None for device in cfg.devices)
        if cfg.sip.password == DEFAULT_PASSWORD and default_used:
            found.append(f"sip.password: the published default password is in force on sip.listen {listen}: "
                         "any device that knows it can register; set sip.password or one per device")
        if not cfg.sip.allowlist:
            found.append(f"sip.allowlist: off on sip.listen {listen}: any device ID is accepted; list the "
                         "devices under devices and set sip.allowlist: true")
    if cfg.api.tokens and cfg.api.tls is None and not is_loopback(cfg.api.listen.host):
        found.append(f"api.tls: not set while api.listen {cfg.api.listen} is not a loopback address: bearer "
                     "tokens cross the network in clear")
    return found


class _WrittenInt(int):
    """A YAML number that keeps its text. YAML 1.1 reads an unquoted 00000000 as 0, 01234567 as 342391
    and 12:34:56 as 45296: a password or ID written that way must be what the administrator typed."""

    text = ""


class _WrittenFloat(float):
    text = ""


def _number_as_written(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | float:
    value = loader.construct_yaml_int(node) if node.tag.endswith(":int") else loader.construct_yaml_float(node)
    kept = _WrittenInt(value) if isinstance(value, int) else _WrittenFloat(value)
    kept.text = node.value
    return kept


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: PyYAML silently keeps the last value,
    so a second ``password:`` pasted under a device would quietly win."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"found key {key!r} twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _number_as_written)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _number_as_written)


def load_config_file(path: str | Path, *, check_host: bool = False) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("--config", str(path), f"a readable file ({exc.strerror})") from exc
    try:
        # yaml.load with a SafeLoader subclass: as safe as safe_load, no arbitrary objects.
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        # Not str(exc): that quotes the offending line, which may hold a password.
        problem = getattr(exc, "problem", None) or type(exc).__name__
        context = getattr(exc, "context", None)
        begun = getattr(exc, "context_mark", None)
        if context and begun is not None:
            context += f" (from line {begun.line + 1}, column {begun.column + 1})"
        detail = f"{context}: {problem}" if context else problem
        raise ConfigError(str(path), "(file contents)", f"valid YAML{where}: {detail}") from exc
    return load_config(data, check_host=check_host)

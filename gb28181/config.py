"""The gateway's configuration: YAML in, validated dataclasses out.

Every error names the key (as a dotted path), the value found and what was expected, because the person
reading it is an administrator at a console, not a developer with a traceback. With no file at all the
embedded defaults run a working gateway on loopback with SQLite in the working directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gbgw.sip.tls import TlsFileError, server_context

T = TypeVar("T")

_ID_RE = re.compile(r"\d{20}")
_DOMAIN_RE = re.compile(r"\d{10}")
STREAM_TRANSPORTS = ("udp", "tcp-passive", "tcp-active")
ENCODINGS = ("GB2312", "GBK", "GB18030", "UTF-8")


class ConfigError(ValueError):
    """A configuration problem, phrased as ``key: value is wrong: expected ...``."""

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        if value is _MISSING:
            shown = "missing"
        elif key.rsplit(".", 1)[-1] in _SECRET_KEYS:
            # The message reaches consoles and logs (a refused SIGHUP reload): a mistyped secret stays out.
            shown = "the value given"
        else:
            shown = repr(value)
        super().__init__(f"{key}: {shown} is not valid: expected {expected}")


_MISSING: Any = object()
_SECRET_KEYS = frozenset({"password", "token"})
"""Keys whose values never appear in an error, and which may be given as ``{file: PATH}`` or ``{env: NAME}``."""


@dataclass(slots=True, frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(slots=True)
class SipConfig:
    id: str = "34020000002000000001"
    domain: str = "3402000000"
    listen: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 5060))
    password: str = field(default="12345678", repr=False)
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


@dataclass(slots=True)
class StorageConfig:
    backend: str = "sqlite"
    path: str = "gateway.db"


@dataclass(slots=True)
class ApiConfig:
    listen: HostPort = field(default_factory=lambda: HostPort("127.0.0.1", 8080))


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

    @property
    def realm(self) -> str:
        return self.sip.realm or self.sip.domain

    def credential(self, device_id: str) -> DeviceCredential | None:
        for cred in self.devices:
            if cred.id == device_id:
                return cred
        return None


# -- reading -----------------------------------------------------------------------------------------


class _Section:
    """Typed reads from one mapping, with errors that carry the dotted key."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None or data is _MISSING:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(path or "(top level)", data, "a mapping of keys to values")
        self.data: dict[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str) -> Any:
        self.used.add(name)
        return self.data.get(name, _MISSING)

    def get(self, name: str, default: T, convert: Callable[[str, Any], T]) -> T:
        value = self.raw(name)
        if value is _MISSING or value is None:
            return default
        return convert(self.key(name), value)

    def section(self, name: str) -> _Section:
        return _Section(self.raw(name), self.key(name))

    def finish(self) -> None:
        for name in self.data:
            if name not in self.used:
                known = ", ".join(sorted(self.used))
                raise ConfigError(self.key(str(name)), self.data[name], f"a known key here ({known})")


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
        try:
            secret = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(sec.key("file"), path, f"a readable file holding the secret ({reason})") from exc
        if not secret:
            raise ConfigError(sec.key("file"), path, "a file holding the secret (it is empty)")
        return secret
    found = os.environ.get(str(name))
    if not found:
        state = "unset" if found is None else "empty"
        raise ConfigError(sec.key("env"), name, f"a variable set in the gateway's environment (it is {state})")
    return found


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
    )
    _check_sip_tls(sec, cfg)
    if cfg.register_min_expires > cfg.register_max_expires:
        raise ConfigError(
            sec.key("register_min_expires"), cfg.register_min_expires,
            f"a value no greater than sip.register_max_expires ({cfg.register_max_expires})",
        )
    sec.finish()
    return cfg


def _check_sip_tls(sec: _Section, cfg: SipConfig) -> None:
    """With sip.tls_listen set, the certificate and key must exist and load now, not at the first device."""
    if cfg.tls_listen is None:
        return
    if cfg.tls_listen.port == cfg.listen.port and cfg.tls_listen.host == cfg.listen.host:
        raise ConfigError(sec.key("tls_listen"), str(cfg.tls_listen), "a port of its own (sip.listen has TCP on it)")
    for name in ("tls_cert", "tls_key"):
        if not getattr(cfg, name):
            raise ConfigError(sec.key(name), _MISSING, "a PEM file path when sip.tls_listen is set")
    try:
        server_context(cfg.tls_cert, cfg.tls_key)
    except TlsFileError as exc:
        name = "tls_key" if exc.role == "key" else "tls_cert"
        raise ConfigError(sec.key(name), exc.path, f"a readable PEM file ({exc.reason})") from exc


_PORT_RANGE_RE = re.compile(r"(\d{1,5})-(\d{1,5})")
_IP_RE = re.compile(r"[0-9A-Fa-f:.]+")


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
    )
    sec.finish()
    return cfg


def _read_devices(value: Any) -> list[DeviceCredential]:
    if value is _MISSING or value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError("devices", value, "a list of devices, each with at least an id")
    devices: list[DeviceCredential] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        sec = _Section(item, f"devices[{i}]")
        device_id = sec.get("id", "", _string(_ID_RE, "a 20-digit GB/T 28181 ID"))
        if not device_id:
            raise ConfigError(sec.key("id"), _MISSING, "a 20-digit GB/T 28181 ID")
        if device_id in seen:
            raise ConfigError(sec.key("id"), device_id, "an ID listed only once")
        seen.add(device_id)
        devices.append(
            DeviceCredential(
                id=device_id,
                username=sec.get("username", None, _string()),
                password=sec.get("password", None, _secret(_string())),
                name=sec.get("name", None, _string()),
                stream_transport=sec.get("stream_transport", None, _choice(STREAM_TRANSPORTS)),
            )
        )
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


def _read_share(value: Any, path: str) -> tuple[ShareRule, ...]:
    if value is _MISSING or value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(path, value, "a list of share rules (prefix, industry, type, ids, control)")
    rules = []
    for i, item in enumerate(value):
        sec = _Section(item, f"{path}[{i}]")
        id_list = sec.get("ids", None, _codes(_ID_RE, "a 20-digit channel ID"))
        rule = ShareRule(
            prefix=sec.get("prefix", None, _codes(re.compile(r"\d{0,20}"), "an ID prefix of up to 20 digits")),
            industry=sec.get("industry", None, _codes(_CODE_LISTS["industry"], "a 2-digit industry code")),
            type=sec.get("type", None, _codes(_CODE_LISTS["type"], "a 3-digit type code")),
            ids=frozenset(id_list) if id_list is not None else None,
            control=sec.get("control", False, _bool),
        )
        sec.finish()
        if rule.prefix is None and rule.industry is None and rule.type is None and rule.ids is None:
            raise ConfigError(sec.path, item, 'at least one of prefix, industry, type, ids (prefix: "" shares all)')
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


def _read_upstreams(value: Any, sip: SipConfig) -> list[UpstreamConfig]:
    if value is _MISSING or value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError("upstreams", value, "a list of upper platforms")
    result: list[UpstreamConfig] = []
    names: set[str] = set()
    listens: set[HostPort] = set()
    for i, item in enumerate(value):
        sec = _Section(item, f"upstreams[{i}]")
        required: dict[str, Any] = {}
        for key, convert in (
            ("name", _string(re.compile(r"[\w.-]{1,32}"), "a name of letters, digits, '.', '-' or '_'")),
            ("id", _string(_ID_RE, "a 20-digit GB/T 28181 ID")),
            ("address", parse_host_port),
            ("listen", parse_host_port),
            ("media_ip", _media_ip),
        ):
            found = sec.get(key, None, convert)
            if found is None:
                raise ConfigError(sec.key(key), _MISSING, "a value (this key is required)")
            required[key] = found
        d = UpstreamConfig(**required, domain="")
        cfg = UpstreamConfig(
            **required,
            domain=sec.get("domain", required["id"][:10], _string(_DOMAIN_RE, "a 10-digit SIP domain")),
            transport=sec.get("transport", d.transport, _choice(("udp", "tcp"))),
            media_ports=sec.get("media_ports", d.media_ports, _port_range),
            password=sec.get("password", "", _secret(_string(re.compile(r".{1,128}"),
                                                             "a password of 1 to 128 characters"))),
            username=sec.get("username", sip.id, _string(re.compile(r"\S{1,64}"), "a user name")),
            realm=sec.get("realm", "", _string()),
            register_expires=sec.get("register_expires", d.register_expires, _number(int, 60, 86400)),
            keepalive_interval=sec.get("keepalive_interval", d.keepalive_interval, _number(int, 5, 3600)),
            keepalive_misses=sec.get("keepalive_misses", d.keepalive_misses, _number(int, 1, 100)),
            enabled=sec.get("enabled", True, _bool),
            share=_read_share(sec.raw("share"), sec.key("share")),
            channel_ids=sec.get("channel_ids", {}, _id_table("ID")),
            channel_id_rule=sec.get("channel_id_rule", None, _id_rule),
            channel_names=sec.get("channel_names", {}, _id_table("name")),
            catalog_max_bytes=sec.get("catalog_max_bytes", d.catalog_max_bytes, _number(int, 900, 60000)),
            rate_limit=sec.get("rate_limit", d.rate_limit, _number(int, 0, 10_000_000)),
            alarms=sec.get("alarms", True, _bool),
            alarm_retry_max=sec.get("alarm_retry_max", d.alarm_retry_max, _number(float, 1, 3600)),
        )
        sec.finish()
        if cfg.name in names:
            raise ConfigError(sec.key("name"), cfg.name, "a name used by one upstream only")
        names.add(cfg.name)
        if cfg.listen in listens or cfg.listen == sip.listen:
            raise ConfigError(sec.key("listen"), str(cfg.listen),
                              "an address of its own (not sip.listen, not another upstream's listen)")
        listens.add(cfg.listen)
        if cfg.id == sip.id:
            raise ConfigError(sec.key("id"), cfg.id, f"the upper platform's ID, not the gateway's own ({sip.id})")
        result.append(cfg)
    return result


def load_config(data: Any) -> GatewayConfig:
    """Validate a parsed YAML document (None means: all defaults)."""
    top = _Section(data, "")
    storage = top.section("storage")
    storage_cfg = StorageConfig(
        backend=storage.get("backend", "sqlite", _choice(("sqlite", "memory"))),
        path=storage.get("path", "gateway.db", _string()),
    )
    storage.finish()
    api = top.section("api")
    api_cfg = ApiConfig(listen=api.get("listen", ApiConfig().listen, parse_host_port))
    api.finish()
    logsec = top.section("log")
    log_cfg = LogConfig(
        level=logsec.get("level", "info", _choice(("debug", "info", "warning", "error"))),
        format=logsec.get("format", "auto", _choice(("auto", "console", "json"))),
    )
    logsec.finish()
    auditsec = top.section("audit")
    audit_cfg = AuditConfig(path=auditsec.get("path", AuditConfig().path, _string(re.compile(r".+"), "a file path")))
    auditsec.finish()
    sip_cfg = _read_sip(top.section("sip"))
    cfg = GatewayConfig(
        sip=sip_cfg,
        media=_read_media(top.section("media")),
        storage=storage_cfg,
        api=api_cfg,
        log=log_cfg,
        devices=_read_devices(top.raw("devices")),
        upstreams=_read_upstreams(top.raw("upstreams"), sip_cfg),
        audit=audit_cfg,
    )
    top.finish()
    return cfg


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


def load_config_file(path: str | Path) -> GatewayConfig:
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
    return load_config(data)

"""The gateway's configuration: YAML in, validated dataclasses out.

Every error names the key (as a dotted path), the value found and what was expected, because the person
reading it is an administrator at a console, not a developer with a traceback. With no file at all the
embedded defaults run a working gateway on loopback with SQLite in the working directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

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
        elif key.rsplit(".", 1)[-1] == "password":
            # The message reaches consoles and logs (a refused SIGHUP reload): a mistyped secret stays out.
            shown = "the value given"
        else:
            shown = repr(value)
        super().__init__(f"{key}: {shown} is not valid: expected {expected}")


_MISSING: Any = object()


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


@dataclass(slots=True)
class GatewayConfig:
    sip: SipConfig = field(default_factory=SipConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    log: LogConfig = field(default_factory=LogConfig)
    devices: list[DeviceCredential] = field(default_factory=list)

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
        password=sec.get("password", d.password, _string(re.compile(r".{1,128}"), "a password of 1 to 128 characters")),
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
    )
    if cfg.register_min_expires > cfg.register_max_expires:
        raise ConfigError(
            sec.key("register_min_expires"), cfg.register_min_expires,
            f"a value no greater than sip.register_max_expires ({cfg.register_max_expires})",
        )
    sec.finish()
    return cfg


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
                password=sec.get("password", None, _string()),
                name=sec.get("name", None, _string()),
                stream_transport=sec.get("stream_transport", None, _choice(STREAM_TRANSPORTS)),
            )
        )
        sec.finish()
    return devices


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
    cfg = GatewayConfig(
        sip=_read_sip(top.section("sip")),
        media=_read_media(top.section("media")),
        storage=storage_cfg,
        api=api_cfg,
        log=log_cfg,
        devices=_read_devices(top.raw("devices")),
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

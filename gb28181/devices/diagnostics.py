"""Vendor diagnostics: why does this camera not work? Answered from the gateway's side of the exchange.

- :class:`SipTrace` keeps each device's last messages both ways (a tap on the device-side transport), keyed
  by the device ID the message names, so a device that never got registered has one too (its claimed ID).
  Secrets are blanked before anything is kept: digest ``response``/``nonce``/``cnonce``, any
  ``password=`` and ``<...Password>`` element. Keepalives and their 200s are only counted: they are 95 % of
  a device's traffic and say nothing a counter does not.
- :class:`RegistrationFailures` remembers recent refused REGISTERs by (claimed ID, source address), read
  off the refusals the tap sees go out, so every refusal of the registrar is covered whatever its branch.
- :func:`registration_warnings` flags what works now but explains failures elsewhere: a REGISTER sent to
  another server ID or domain, a private Contact behind NAT, a clock far off, a new source address.

Memory is bounded: ``per_device`` messages of at most ``max_bytes`` each, for ``devices`` known devices
and ``unknown`` claimed IDs (least recently heard of forgotten first; unknown IDs have their own, smaller
pool, so a flood of invented IDs cannot push real cameras' traces out). With the defaults (40 x 2 KiB,
256 + 64) that is 26 MiB at worst, typically a fifth of it. The tap costs a regex search for the From or To
user and a dict lookup per message (about 2 us); everything else happens only for non-keepalive messages.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from gbgw.registry.model import Device, DeviceWarning
from gbgw.sip.endpoint import Peer
from gbgw.sip.errors import SipParseError
from gbgw.sip.message import Request
from gbgw.sip.uri import SipUri

_HEADER_USER = {
    name: re.compile(rb"\n(?:" + name + rb")[ \t]*:[^\n]*?sips?:([^@;>\s:]+)@", re.IGNORECASE)
    for name in (rb"from|f", rb"to|t")
}
_CALL_ID = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)", re.IGNORECASE)
_CSEQ_METHOD = re.compile(rb"\ncseq[ \t]*:[ \t]*\d+[ \t]+([A-Za-z]+)", re.IGNORECASE)
_DIGEST_SECRET = re.compile(rb'\b(nonce|cnonce|response|password)([ \t]*=[ \t]*)("[^"]*"?|[^,\s]*)', re.IGNORECASE)
_XML_SECRET = re.compile(rb"<(\w*pass(?:word|wd)\w*)>[^<]*", re.IGNORECASE)
_KEEPALIVE = b">Keepalive<"
# Statuses of a REGISTER answer that are part of a normal registration, not a refusal.
_CHALLENGES = (401, 407)

CLOCK_SKEW_LIMIT = 60.0
"""Seconds a device's Date may be off before it is flagged (records and alarms carry its clock)."""
NEW_ADDRESS_KEPT = 86400.0
"""How long a "re-registered from a new address" warning stays on the device."""


def redact(data: bytes) -> bytes:
    """``data`` with digest secrets and password elements blanked (also inside a cut-off last value)."""
    data = _DIGEST_SECRET.sub(rb"\1\2<redacted>", data)
    return _XML_SECRET.sub(rb"<\1><redacted>", data)


def _header_user(kind: bytes, data: bytes) -> str | None:
    match = _HEADER_USER[kind].search(data)
    return match.group(1).decode("ascii", "replace") if match is not None else None


def _call_id(data: bytes) -> bytes:
    match = _CALL_ID.search(data)
    return match.group(1).strip() if match is not None else b""


def peer_text(peer: Peer) -> str:
    host = f"[{peer.host}]" if ":" in peer.host else peer.host
    return f"{host}:{peer.port}/{peer.transport}"


@dataclass(slots=True, frozen=True)
class TraceEntry:
    at: float
    inbound: bool
    peer: str
    data: bytes
    """Redacted, and cut at the trace's ``max_bytes``."""
    size: int
    """The message's real length."""

    @property
    def text(self) -> str:
        """As a person reads it: UTF-8, or GB18030 (a superset of GB2312/GBK) for Chinese device bodies."""
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return self.data.decode("gb18030", "replace")


class DeviceTrace:
    __slots__ = ("keepalive_call_id", "keepalives", "keepalives_answered", "messages")

    def __init__(self, size: int) -> None:
        self.messages: deque[TraceEntry] = deque(maxlen=size)
        self.keepalives = 0
        self.keepalives_answered = 0
        self.keepalive_call_id = b""


@dataclass(slots=True)
class FailedRegistration:
    device_id: str
    """As claimed in the REGISTER's To (or From): unknown and malformed IDs included."""
    source: str
    status: int
    reason: str
    first_at: float
    last_at: float
    count: int = 1


class RegistrationFailures:
    """The last ``capacity`` (claimed ID, source host) pairs whose REGISTER was refused, newest last."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._by_key: OrderedDict[tuple[str, str], FailedRegistration] = OrderedDict()
        self._listeners: list[Callable[[FailedRegistration], None]] = []

    def add_listener(self, listener: Callable[[FailedRegistration], None]) -> None:
        """Called with each refusal as it is recorded (the live events)."""
        self._listeners.append(listener)

    def record(self, device_id: str, peer: Peer, status: int, reason: str, now: float) -> None:
        key = (device_id, peer.host)
        entry = self._by_key.get(key)
        if entry is None:
            entry = self._by_key[key] = FailedRegistration(device_id, peer_text(peer), status, reason, now, now)
            if len(self._by_key) > self.capacity:
                self._by_key.popitem(last=False)
        else:
            self._by_key.move_to_end(key)
            entry.source, entry.status, entry.reason, entry.last_at = peer_text(peer), status, reason, now
            entry.count += 1
        for listener in self._listeners:
            listener(entry)

    def recent(self, device_id: str | None = None) -> list[FailedRegistration]:
        """Newest first."""
        found = reversed(self._by_key.values())
        return [f for f in found if device_id is None or f.device_id == device_id]


class SipTrace:
    """``tap`` is the device-side `SipTransport`'s tap; ``resolve`` maps an ID a message names (device or
    channel) to its device's ID, None for an ID the registry does not know."""

    def __init__(
        self,
        clock: Callable[[], float],
        resolve: Callable[[str], str | None],
        failures: RegistrationFailures,
        *,
        per_device: int = 40,
        devices: int = 256,
        unknown: int = 64,
        max_bytes: int = 2048,
    ) -> None:
        self._clock = clock
        self._resolve = resolve
        self.failures = failures
        self.per_device = per_device
        self.max_bytes = max_bytes
        self._known: OrderedDict[str, DeviceTrace] = OrderedDict()
        self._unknown: OrderedDict[str, DeviceTrace] = OrderedDict()
        self._capacity = {id(self._known): devices, id(self._unknown): unknown}

    def get(self, device_id: str) -> DeviceTrace | None:
        return self._known.get(device_id) or self._unknown.get(device_id)

    def _entry(self, claimed: str) -> DeviceTrace:
        device_id = self._resolve(claimed)
        pool, key = (self._known, device_id) if device_id is not None else (self._unknown, claimed)
        entry = pool.get(key)
        if entry is None:
            if device_id is not None:
                # Traced while unknown (its failed REGISTERs), now a device: keep that history.
                entry = self._unknown.pop(key, None)
            if entry is None:
                entry = DeviceTrace(self.per_device)
            pool[key] = entry
            if len(pool) > self._capacity[id(pool)]:
                pool.popitem(last=False)
        else:
            pool.move_to_end(key)
        return entry

    def tap(self, inbound: bool, data: bytes, peer: Peer) -> None:
        request = not data.startswith(b"SIP/2.0 ")
        # The device's own ID is the From of what it sends and of our answers to it, the To otherwise.
        claimed = _header_user(b"from|f" if inbound == request else b"to|t", data)
        if claimed is None:
            return
        entry = self._entry(claimed)
        if request:
            if inbound and _KEEPALIVE in data:
                entry.keepalives += 1
                entry.keepalive_call_id = _call_id(data)
                return
        elif not inbound:
            if entry.keepalive_call_id and data.startswith(b"SIP/2.0 200") and _call_id(data) == entry.keepalive_call_id:
                entry.keepalives_answered += 1
                return
            self._check_refusal(data, peer, claimed)
        now = self._clock()
        kept = data if len(data) <= self.max_bytes else data[: self.max_bytes]
        entry.messages.append(TraceEntry(now, inbound, peer_text(peer), redact(kept), len(data)))

    def _check_refusal(self, data: bytes, peer: Peer, claimed: str) -> None:
        status_text = data[8:11]
        if not status_text.isdigit():
            return
        status = int(status_text)
        if status < 400 or status in _CHALLENGES:
            return
        method = _CSEQ_METHOD.search(data)
        if method is None or method.group(1).upper() != b"REGISTER":
            return
        line = data[: data.find(b"\r\n")] if b"\r\n" in data else data
        reason = line[12:].decode("utf-8", "replace").strip()
        self.failures.record(claimed, peer, status, reason, self._clock())


class WarningKind(StrEnum):
    FOREIGN_SERVER_ID = "foreign_server_id"
    FOREIGN_DOMAIN = "foreign_domain"
    PRIVATE_CONTACT = "private_contact"
    CLOCK_SKEW = "clock_skew"
    NEW_ADDRESS = "new_address"


def _is_private(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_private or address.is_unspecified or address in ipaddress.ip_network("100.64.0.0/10")


def device_clock(value: str) -> float | None:
    """A Date header as epoch seconds: RFC 3261's RFC 1123 form, or GB/T 28181's local ``YYYY-MM-DDTHH:MM:SS``."""
    value = value.strip()
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def registration_warnings(
    request: Request, source: Peer, previous: tuple[str, int] | None, server_id: str, domain: str, now: float
) -> list[DeviceWarning]:
    """What an accepted REGISTER shows. ``previous`` is the (host, port) of a registration it replaces
    while still valid."""
    found: list[DeviceWarning] = []
    try:
        ruri: SipUri | None = request.request_uri
    except SipParseError:
        ruri = None
    if ruri is not None:
        if ruri.user and ruri.user != server_id:
            found.append(DeviceWarning(
                WarningKind.FOREIGN_SERVER_ID,
                f"REGISTER sent to server ID {ruri.user}, this gateway is {server_id} (sip.id): set the device's "
                "SIP server ID; some firmware drops requests from a server ID it was not told", now))
        if ruri.host.isdigit() and ruri.host != domain:
            found.append(DeviceWarning(
                WarningKind.FOREIGN_DOMAIN,
                f"REGISTER sent to domain {ruri.host}, this gateway's is {domain} (sip.domain): set the device's "
                "SIP server domain", now))
    contact = request.contact
    if contact is not None and contact.uri.host and contact.uri.host != source.host and _is_private(contact.uri.host):
        found.append(DeviceWarning(
            WarningKind.PRIVATE_CONTACT,
            f"Contact {contact.uri.host}:{contact.uri.port or 5060} is a private address and the REGISTER came "
            f"from {peer_text(source)}: the device is behind NAT; the gateway answers and sends to the source "
            "address, so keepalives must keep the NAT binding open (UDP) or the device should register over TCP",
            now))
    date = request.get("Date")
    clock = device_clock(date) if date else None
    if clock is not None and abs(clock - now) > CLOCK_SKEW_LIMIT:
        found.append(DeviceWarning(
            WarningKind.CLOCK_SKEW,
            f"the device's clock (Date: {date}) is {clock - now:+.0f} s off the gateway's: record searches and "
            "alarm times will be shifted; let it set its clock from the 200's Date or NTP", now))
    if previous is not None and previous != (source.host, source.port):
        host, port = previous
        found.append(DeviceWarning(
            WarningKind.NEW_ADDRESS,
            f"re-registered from {peer_text(source)} while registered from {host}:{port}: a NAT rebinding, a "
            "DHCP change, or two devices configured with the same ID", now))
    return found


_DEVICE_TIME_SKEW = "the device's clock (DeviceTime: "
"""How a clock skew seen in DeviceStatus begins, told apart from one a REGISTER's Date showed."""


def note_device_time(device: Device, device_time: str | None, now: float) -> None:
    """A DeviceStatus answer's ``DeviceTime``: set the device's clock-skew warning when it is more than
    `CLOCK_SKEW_LIMIT` off, clear it when it is not (devices that send no Date in REGISTER show their
    clock only here)."""
    clock = device_clock(device_time) if device_time else None
    if clock is None:
        return
    others = tuple(w for w in device.warnings if w.kind != WarningKind.CLOCK_SKEW)
    if abs(clock - now) <= CLOCK_SKEW_LIMIT:
        device.warnings = others
        return
    device.warnings = (*others, DeviceWarning(
        WarningKind.CLOCK_SKEW,
        f"{_DEVICE_TIME_SKEW}{device_time}) is {clock - now:+.0f} s off the gateway's: record "
        "searches and alarm times will be shifted; let it set its clock from the 200's Date or NTP", now))


class RegistrationInspector:
    """The registrar's ``on_accepted`` hook: sets each accepted device's ``warnings`` (runtime only, like
    ``online``). A warning not shown again by the next REGISTER is dropped, except a new address, kept for
    `NEW_ADDRESS_KEPT` since the next REGISTER comes from the new address by definition, and a clock skew
    DeviceStatus showed while REGISTERs carry no Date to show the clock by."""

    def __init__(self, server_id: Callable[[], str], domain: Callable[[], str]) -> None:
        self._server_id = server_id
        self._domain = domain

    def __call__(self, request: Request, source: Peer, previous: tuple[str, int] | None, device: Device,
                 now: float) -> None:
        found = registration_warnings(request, source, previous, self._server_id(), self._domain(), now)
        kinds = {w.kind for w in found}
        # A clock skew seen in DeviceStatus stays until a Date or a DeviceTime shows the clock again.
        dated = request.get("Date") is not None
        kept = [
            w for w in device.warnings
            if w.kind not in kinds and (
                (w.kind == WarningKind.NEW_ADDRESS and now - w.at < NEW_ADDRESS_KEPT)
                or (w.kind == WarningKind.CLOCK_SKEW and not dated and w.detail.startswith(_DEVICE_TIME_SKEW)))
        ]
        device.warnings = (*kept, *found)


@dataclass(frozen=True, slots=True)
class DeviceDiagnostics:
    """The three parts, built together by the daemon: ``trace.tap`` goes to the device-side transport,
    ``inspector`` to the registrar."""

    trace: SipTrace
    failures: RegistrationFailures
    inspector: RegistrationInspector

    @classmethod
    def build(cls, clock: Callable[[], float], resolve: Callable[[str], str | None],
              server_id: Callable[[], str], domain: Callable[[], str]) -> DeviceDiagnostics:
        failures = RegistrationFailures()
        return cls(SipTrace(clock, resolve, failures), failures, RegistrationInspector(server_id, domain))

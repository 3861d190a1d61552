"""Plain records for devices, channels, alarms and positions.

They hold values only: no SIP, no XML. The gateway parses network input into these and the
storage backends persist them. `Device` and `Channel` are slotted because one node keeps
100,000+ devices in memory (see tests/bench/bench_registry.py for the bytes per device).
An empty string means "the device did not say"; `None` is used where zero would be a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, kw_only=True)
class Device:
    """A registered (or once registered) device: camera, NVR, alarm box or lower platform."""

    id: str
    name: str = ""
    manufacturer: str = ""
    model: str = ""
    firmware: str = ""
    transport: str = "UDP"
    """Signalling transport the device registered over: "UDP", "TCP" or "TLS"."""
    host: str = ""
    """Where to send requests: the source address of the REGISTER, not its Contact (NAT)."""
    port: int = 0
    username: str | None = None
    """Digest username, when the device authenticates with something other than its ID."""
    registered_at: float = 0.0
    expires_at: float = 0.0
    last_keepalive: float = 0.0
    online: bool = False
    """Runtime state only: never persisted, every device starts offline after a restart."""
    channel_count: int = 0
    """Number of channels the registry holds for the device."""
    catalog_partial: bool = False
    """The last catalog lacked items the device announced (SumNum not reached)."""
    stream_transport: str | None = None
    """Per-device media transport override ("UDP", "TCP-ACTIVE", "TCP-PASSIVE"); None = default."""
    keepalive_interval: float | None = None
    """Per-device keepalive period in seconds; None = the registry default."""
    charset: str | None = None
    """Encoding of the device's MANSCDP bodies (e.g. "GB2312"), so answers can match it."""
    warnings: tuple[DeviceWarning, ...] = ()
    """Runtime only, like ``online``: what its last registrations showed that may explain trouble."""


@dataclass(slots=True, frozen=True)
class DeviceWarning:
    """Something a device does that works now but explains failures elsewhere (NAT, a foreign server ID)."""

    kind: str
    detail: str
    at: float
    """When it was last seen (epoch seconds)."""


@dataclass(slots=True, frozen=True)
class Transition:
    """A device going online or offline, for the availability history (``reason``: a StatusReason)."""

    device_id: str
    at: float
    online: bool
    reason: str


@dataclass(slots=True, kw_only=True)
class Channel:
    """One catalog item of a device. The registry treats instances as values: it replaces, never mutates."""

    id: str
    device_id: str
    name: str = ""
    parent_id: str = ""
    manufacturer: str = ""
    model: str = ""
    owner: str = ""
    civil_code: str = ""
    address: str = ""
    status: str = "ON"
    """Either "ON" or "OFF"."""
    longitude: float | None = None
    latitude: float | None = None
    ptz_type: int | None = None
    parental: bool = False
    business_group_id: str = ""
    raw: dict[str, str] = field(default_factory=dict)
    """Catalog fields without an attribute above, kept verbatim so a cascade can pass them on."""


@dataclass(slots=True, kw_only=True)
class Alarm:
    """An alarm notification as received. Codes stay strings: devices send values outside the standard."""

    device_id: str
    channel_id: str
    sn: str
    priority: str
    method: str
    alarm_type: str
    time: str
    """Alarm time as the device wrote it."""
    description: str
    longitude: float | None
    latitude: float | None
    received_at: float
    id: int | None = None
    """Assigned by the storage on insert."""


@dataclass(slots=True, kw_only=True)
class MobilePosition:
    """A position report of a mobile device."""

    device_id: str
    time: str
    """Position time as the device wrote it."""
    longitude: float
    latitude: float
    speed: float | None
    direction: float | None
    altitude: float | None
    received_at: float

"""What the simulated devices are and where they register: `SimulatorConfig`, the IDs of devices,
channels and alarm inputs, and the names their catalogs carry. Invalid values raise ValueError, so the
command line and a test see the same message.

The simulator does not share the gateway's configuration parser: it is a separate tool, and a device
takes any server address it is given (only the wildcard, which cannot be reached, is refused).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gbgw.conformance.simulator.media import MediaOptions
from gbgw.gb28181.manscdp.text import codec_for
from gbgw.sip.errors import SipParseError
from gbgw.sip.uri import split_host_port

ENCODINGS = ("GB2312", "GBK", "GB18030", "UTF-8")
"""Charsets of MANSCDP bodies devices send (GB2312 as most cameras do)."""
MANUFACTURER = "Simulator"
# Channel names as Chinese integrators write them, to exercise GB2312/UTF-8 handling end to end.
PLACES = ("大门", "停车场", "大堂", "电梯厅", "周界", "南门", "北门", "仓库", "收银台", "走廊")
FAULTS = {
    "wrong-digest": "answer digest challenges computed with a wrong password",
    "slow-keepalive": "send keepalives at three times the configured interval",
    "sumnum": "announce one catalog item more in SumNum than the pages carry",
    "record-pages": "leave the last RecordInfo page out",
    "guard-result": "accept guard commands (SetGuard/ResetGuard) with 200 but never send their Result",
    "ssrc": "answer the offered y= but send RTP with another SSRC",
    "no-psm": "send PS without the program stream map",
    "no-media-status": "never announce the end of a played-back or downloaded range (no MediaStatus 121)",
}
"""Deliberate breaks of the standard, one item each, for testing conformance tools against a device that
fails in a known way (``--fault``)."""

@dataclass(slots=True, kw_only=True)
class SimulatorConfig:
    """What the simulated devices are and where they register. Invalid values raise ValueError."""

    server_host: str
    server_port: int
    transport: str = "UDP"
    count: int = 1
    channels: int = 1
    id_prefix: str = "3402000000132"
    start: int = 1
    domain: str = "3402000000"
    server_id: str = "34020000002000000001"
    password: str = field(default="12345678", repr=False)
    username_differs: bool = False
    expires: int = 3600
    keepalive_interval: float = 60.0
    keepalive_misses: int = 3
    """Consecutive keepalive timeouts after which a device registers again."""
    devices_per_socket: int = 1000
    catalog_page_size: int = 2
    records: int = 3
    """Recordings a RecordInfo query finds per channel, spread evenly over the time asked."""
    record_page_size: int = 2
    """RecordInfo items per answer MESSAGE (Hikvision sends 2)."""
    record_window: float = 0.0
    """Seconds of past the channels have recorded: `records` recordings cover the last ``record_window``
    seconds before the device's clock and a query lists those it overlaps, as an NVR does; 0 spreads them
    over whatever time is asked."""
    record_shift: float = 0.0
    """Seconds added to every time a RecordInfo answer writes (28800: a Hikvision NVR in China writing
    its records shifted by the UTC offset)."""
    presets: int = 3
    """Presets each channel has (PresetQuery)."""
    unanswered: tuple[str, ...] = ()
    """CmdTypes of queries and controls the devices accept with 200 but never answer, as a hung device does."""
    encoding: str = "GB2312"
    register_rate: float = 2000.0
    """First REGISTER legs sent per second, for registrations, refreshes and re-registrations alike."""
    retry_interval: float = 30.0
    """Wait after a failed registration before trying again."""
    bind: str = "127.0.0.1"
    user_agent: str = "IP Camera"
    """Hikvision IPCs send "IP Camera"; gateways special-case vendors by it, so it is configurable."""
    t1: float = 0.5
    """SIP T1; a keepalive times out after 64 * T1 (Timer F)."""
    media: MediaOptions = field(default_factory=MediaOptions)
    faults: frozenset[str] = frozenset()
    """Names from `FAULTS`; the media ones are also given to `MediaOptions.faults`."""
    alarm_interval: float = 0.0
    """Seconds between the alarms every registered device raises (a NOTIFY in its alarm subscription while
    there is one, else a MESSAGE), as a camera watching a busy scene does; 0 raises none."""

    def __post_init__(self) -> None:
        unknown = sorted(self.faults - FAULTS.keys())
        if unknown:
            raise ValueError(f"unknown faults {unknown}; known: {sorted(FAULTS)}")
        self.transport = self.transport.upper()
        if self.transport not in ("UDP", "TCP"):
            raise ValueError(f"transport must be UDP or TCP, not {self.transport!r}")
        if not (self.id_prefix.isascii() and self.id_prefix.isdigit() and 13 <= len(self.id_prefix) <= 19):
            raise ValueError(f"id prefix must be 13 to 19 digits (centre, industry, type...), not {self.id_prefix!r}")
        if self.id_prefix[10:13] == "131":
            raise ValueError("the id prefix's type must not be 131: that is the type of the channels")
        if self.count < 1 or self.start < 1 or self.channels < 0:
            raise ValueError("count and start must be at least 1, channels at least 0")
        last = self.start + self.count - 1
        if last >= 10 ** (20 - len(self.id_prefix)):
            raise ValueError(f"device number {last} does not fit after the {len(self.id_prefix)}-digit prefix")
        if last * self.channels >= 10**7:
            raise ValueError(f"{last} devices x {self.channels} channels exceed the 7-digit channel numbers")
        if not (len(self.domain) == 10 and self.domain.isascii() and self.domain.isdigit()):
            raise ValueError(f"domain must be 10 digits, not {self.domain!r}")
        if not (len(self.server_id) == 20 and self.server_id.isascii() and self.server_id.isdigit()):
            raise ValueError(f"server ID must be 20 digits, not {self.server_id!r}")
        if self.expires < 1 or self.keepalive_interval <= 0 or self.keepalive_misses < 1:
            raise ValueError("expires, keepalive interval and keepalive misses must be positive")
        if self.devices_per_socket < 1 or self.catalog_page_size < 1 or self.record_page_size < 1:
            raise ValueError("devices per socket and catalog and record page sizes must be at least 1")
        if self.record_window < 0 or self.alarm_interval < 0:
            raise ValueError("the record window and the alarm interval must not be negative")
        if self.records < 0 or not 0 <= self.presets <= 255:
            raise ValueError("records must be at least 0, presets 0 to 255")
        if self.register_rate <= 0 or self.retry_interval <= 0 or self.t1 <= 0:
            raise ValueError("register rate, retry interval and T1 must be positive")
        try:
            codec_for(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {self.encoding!r}") from None

    @property
    def keepalive_period(self) -> float:
        """Seconds between the keepalives actually sent (the "slow-keepalive" fault stretches them)."""
        return self.keepalive_interval * (3 if "slow-keepalive" in self.faults else 1)

    def device_id(self, number: int) -> str:
        return f"{self.id_prefix}{number:0{20 - len(self.id_prefix)}d}"

    def channel_id(self, number: int, channel: int) -> str:
        """Channel `channel` (1-based) of device `number`: type 131 (camera) in the device's centre and
        industry, numbered so that channels of all devices (of any --start range) never collide."""
        return f"{self.id_prefix[:10]}131{(number - 1) * self.channels + channel:07d}"

    def alarm_input_id(self, number: int) -> str:
        """The device's alarm input (type 134), reported in DeviceStatus as the captures show."""
        return f"{self.id_prefix[:10]}134{number:07d}"

    def locate(self, gb_id: str) -> tuple[int, int] | None:
        """(device number, channel) for a device ID (channel 0) or a channel ID of ours, else None."""
        if len(gb_id) != 20 or not (gb_id.isascii() and gb_id.isdigit()):
            return None
        if gb_id.startswith(self.id_prefix):
            number = int(gb_id[len(self.id_prefix) :])
            if self.start <= number < self.start + self.count:
                return number, 0
        if self.channels and gb_id.startswith(self.id_prefix[:10]) and gb_id[10:13] == "131":
            serial = int(gb_id[13:]) - 1
            number, channel = divmod(serial, self.channels)
            number += 1
            if serial >= 0 and self.start <= number < self.start + self.count:
                return number, channel + 1
        return None

    def username(self, device_id: str) -> str:
        return digest_username(device_id) if self.username_differs else device_id


def digest_username(device_id: str) -> str:
    """The digest username of a device configured like a Hikvision IPC whose "SIP user authentication ID"
    differs from its device ID: the device ID with its network digit (the 14th) set to 8, or 7 if it
    already is 8. A registrar maps it back to the device with the same rule."""
    network = "7" if device_id[13] == "8" else "8"
    return f"{device_id[:13]}{network}{device_id[14:]}"


def channel_name(channel: int) -> str:
    """"通道1 大门", "通道2 停车场", ...: the Chinese names a catalog carries."""
    return f"通道{channel} {PLACES[(channel - 1) % len(PLACES)]}"


def parse_server_address(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` of the server devices register to; ValueError says what is wrong."""
    try:
        host, port = split_host_port(text)
    except SipParseError as exc:
        raise ValueError(f'{text!r} is not an address "host:port" ({exc})') from None
    host = host.removeprefix("[").removesuffix("]")
    if port is None or not host:
        raise ValueError(f'{text!r} is not an address "host:port", e.g. "127.0.0.1:5060"')
    if host in ("0.0.0.0", "::", "*"):
        # The devices send to it and name it in their requests; a wildcard is neither.
        raise ValueError(f"{text!r} is a wildcard: devices need the server's own address")
    return host, port

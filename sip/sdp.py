"""SDP session descriptions (RFC 4566) with the GB/T 28181 `y=` (SSRC) and `f=` (media parameters) lines.

Sans-IO: bytes in, objects out, bytes back. Parsing is liberal because real cameras bend the format
(empty addresses, LF line ends, trailing blanks, `a=setup` on UDP, empty `f=`, `y=` in odd places): only
a missing or non-numeric `v=` and an `m=` line whose port or payload types are not numbers are fatal. Any other line that
cannot be understood is kept verbatim as an unknown line of its section, so it survives a round trip and
can be logged. Serializing is canonical: RFC 4566 line order, CRLF, and the GB lines after the media
section, where GB/T 28181 devices look for them (Annex F).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

_DIRECTIONS = frozenset({"sendonly", "recvonly", "sendrecv", "inactive"})
_SETUP_ROLES = frozenset({"active", "passive", "actpass"})
_CONNECTION_MODES = frozenset({"new", "existing"})
# Devices put their SIP credentials in the answer (eXosip cameras do); they must never reach a log.
_SECRET_ATTRIBUTES = frozenset({"username", "password"})
_ADDRTYPES = frozenset({"IP4", "IP6"})
_UNSPECIFIED_ADDRESSES = frozenset({"", "0.0.0.0", "::"})
# GB/T 28181-2016 Annex F: v/codec/resolution/frame rate/bitrate type/bitrate a/codec/bitrate/sample rate,
# every field may be empty but no separator may be left out. A field is at most "4294967296".
_PARAM = r"([0-9]{0,10})"
_MEDIA_PARAMS = re.compile("v/" + "/".join([_PARAM] * 5) + "a/" + "/".join([_PARAM] * 3))
_MAX_LINE_IN_ERROR = 200


class SdpError(ValueError):
    """A session description that cannot be used at all (no `v=`, an `m=` line without numbers).

    `status_code` is the SIP response the request carrying it should get; `line` is the offending line
    (None when a line is missing), for the log.
    """

    status_code = 400

    def __init__(self, reason: str, line: str | None = None) -> None:
        shown = line if line is None or len(line) <= _MAX_LINE_IN_ERROR else line[:_MAX_LINE_IN_ERROR] + "..."
        super().__init__(reason if shown is None else f"{reason}: {shown!r}")
        self.reason = reason
        self.line = line


class Attribute(NamedTuple):
    """One `a=` line: `a=name:value`, or a flag `a=name` (value None). Compares equal to a plain tuple."""

    name: str
    value: str | None

    def __repr__(self) -> str:
        if self.value and self.name.lower() in _SECRET_ATTRIBUTES:
            return f"Attribute(name={self.name!r}, value='***')"
        return f"Attribute(name={self.name!r}, value={self.value!r})"


@dataclass(slots=True)
class Origin:
    """The `o=` line. Session id and version stay strings so a device's own spelling is echoed unchanged."""

    username: str
    sess_id: str
    sess_version: str
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = ""

    @classmethod
    def parse(cls, value: str) -> Origin | None:
        """The origin in an `o=` value, or None when it has too few fields to be one.

        An empty address (`o=- 0 0 IN IP4`) is accepted, and a username with spaces is joined back.
        """
        parts = value.split()
        if len(parts) >= 5 and parts[-1].upper() in _ADDRTYPES:
            return cls(" ".join(parts[:-4]), parts[-4], parts[-3], parts[-2], parts[-1], "")
        if len(parts) >= 6:
            return cls(" ".join(parts[:-5]), parts[-5], parts[-4], parts[-3], parts[-2], parts[-1])
        return None

    def serialize(self) -> str:
        head = f"{self.username} {self.sess_id} {self.sess_version} {self.nettype} {self.addrtype}"
        return f"{head} {self.address}" if self.address else head


@dataclass(slots=True)
class Connection:
    """A `c=` line. `address` may be empty (some devices answer `c=IN IP4 `) or carry `/ttl/count`."""

    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = ""

    @classmethod
    def parse(cls, value: str) -> Connection | None:
        parts = value.split()
        if len(parts) == 3:
            return cls(parts[0], parts[1], parts[2])
        if len(parts) == 2:
            return cls(parts[0], parts[1], "")
        return None

    def serialize(self) -> str:
        head = f"{self.nettype} {self.addrtype}"
        return f"{head} {self.address}" if self.address else head


@dataclass(slots=True, frozen=True)
class MediaParams:
    """The GB/T 28181 `f=` line (Annex F). Each field is the standard's code number, None when left empty.

    Video codec 1 MPEG-4, 2 H.264, 3 SVAC, 4 3GP; resolution 1 QCIF .. 6 1080P; bitrate type 1 CBR,
    2 VBR; bitrates in kbit/s (video) or as the audio rate code; audio codec 1 G.711, 2 G.723.1, 3 G.729,
    4 G.722.1; sample rate code 1 8 kHz .. 4 32 kHz.
    """

    video_codec: int | None = None
    resolution: int | None = None
    frame_rate: int | None = None
    bitrate_type: int | None = None
    video_bitrate: int | None = None
    audio_codec: int | None = None
    audio_bitrate: int | None = None
    sample_rate: int | None = None

    @classmethod
    def parse(cls, text: str) -> MediaParams | None:
        """The parameters in an `f=` value, or None when it is not in the standard's form (empty too)."""
        match = _MEDIA_PARAMS.fullmatch(text.strip())
        if match is None:
            return None
        return cls(*(int(group) if group else None for group in match.groups()))

    def serialize(self) -> str:
        v = ["" if n is None else str(n) for n in (
            self.video_codec, self.resolution, self.frame_rate, self.bitrate_type, self.video_bitrate,
            self.audio_codec, self.audio_bitrate, self.sample_rate,
        )]
        return f"v/{v[0]}/{v[1]}/{v[2]}/{v[3]}/{v[4]}a/{v[5]}/{v[6]}/{v[7]}"


def _attribute_line(attribute: tuple[str, str | None]) -> str:
    name, value = attribute
    return "a=" + name if value is None else f"a={name}:{value}"


def _first_value(attributes: Iterable[tuple[str, str | None]], name: str) -> str | None:
    """Value of the first attribute called `name` (any case), None if absent or a bare flag."""
    for attr_name, value in attributes:
        if attr_name.lower() == name:
            return value
    return None


def _lowered(attributes: Iterable[tuple[str, str | None]], name: str) -> str | None:
    value = _first_value(attributes, name)
    return value.strip().lower() if value else None


def _int_value(attributes: Iterable[tuple[str, str | None]], name: str) -> int | None:
    value = _first_value(attributes, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _direction(attributes: Iterable[tuple[str, str | None]]) -> str | None:
    for name, value in attributes:
        if value is None and name.lower() in _DIRECTIONS:
            return name.lower()
    return None


def _masked_repr(obj: Any) -> str:
    """Dataclass-style repr that shows attribute lists through Attribute, so credentials stay hidden."""
    parts = []
    for f in fields(obj):
        if not f.repr:
            continue
        value = getattr(obj, f.name)
        if f.name == "attributes":
            value = [Attribute(*attr) for attr in value]
        parts.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


def _decode(data: bytes) -> str:
    # SDP text is UTF-8 (RFC 4566), but devices write s=/i= in their GB charset.
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


@dataclass(slots=True, repr=False)
class MediaDescription:
    """One `m=` section with its `i= c= b= k= a=` lines.

    `proto` is kept as sent (`TCP/RTP/AVP`, `tcp/rtp/avp`...); `is_tcp` is what callers should test.
    Attribute helpers read the first matching attribute, case-insensitively, and never raise.
    """

    kind: str
    port: int
    proto: str
    formats: list[int] = field(default_factory=list)
    port_count: int | None = None
    info: str | None = None
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    key: str | None = field(default=None, repr=False)
    attributes: list[Attribute] = field(default_factory=list)
    unknown_lines: list[str] = field(default_factory=list)

    __repr__ = _masked_repr

    @classmethod
    def _from_m_line(cls, line: str) -> MediaDescription:
        parts = line[2:].split()
        if len(parts) < 3:
            raise SdpError("m= line needs media, port and transport", line)
        port_text, _, count_text = parts[1].partition("/")
        try:
            port = int(port_text)
            port_count = int(count_text) if count_text else None
            formats = [int(fmt) for fmt in parts[3:]]
        except ValueError:
            raise SdpError("m= line has a port or payload type that is not a number", line) from None
        if not 0 <= port <= 65535:
            raise SdpError("m= line has a port out of range", line)
        return cls(parts[0], port, parts[2], formats, port_count)

    def _take(self, kind: str, value: str) -> bool:
        """Store a media-level line; False when it is not one this section understands."""
        if kind == "c":
            if self.connection is None:
                self.connection = Connection.parse(value)
                return self.connection is not None
        elif kind == "b":
            self.bandwidths.append(value)
            return True
        elif kind == "i":
            if self.info is None:
                self.info = value
                return True
        elif kind == "k" and self.key is None:
            self.key = value
            return True
        return False

    def _serialize_into(self, out: list[str]) -> None:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        out.append(" ".join([f"m={self.kind}", port, self.proto, *map(str, self.formats)]))
        if self.info is not None:
            out.append("i=" + self.info)
        if self.connection is not None:
            out.append("c=" + self.connection.serialize())
        out.extend("b=" + b for b in self.bandwidths)
        if self.key is not None:
            out.append("k=" + self.key)
        out.extend(map(_attribute_line, self.attributes))
        out.extend(self.unknown_lines)

    @property
    def is_tcp(self) -> bool:
        """RTP over TCP (RFC 4571 framing), whatever the case of the transport."""
        return self.proto.upper().startswith("TCP/")

    @property
    def rtpmap(self) -> dict[int, tuple[str, int]]:
        """Payload type -> (encoding name, clock rate) from the well-formed `a=rtpmap` lines."""
        result: dict[int, tuple[str, int]] = {}
        for name, value in self.attributes:
            if value is None or name.lower() != "rtpmap":
                continue
            pt, _, encoding = value.strip().partition(" ")
            encoding_name, _, rest = encoding.strip().partition("/")
            try:
                result[int(pt)] = (encoding_name, int(rest.partition("/")[0]))
            except ValueError:
                continue
        return result

    @property
    def setup(self) -> str | None:
        """RFC 4145 role in lower case (`active`, `passive`, `actpass`), as sent even when not one of them."""
        return _lowered(self.attributes, "setup")

    @property
    def connection_attr(self) -> str | None:
        """`a=connection` in lower case: `new` or `existing` (RFC 4145)."""
        return _lowered(self.attributes, "connection")

    @property
    def direction(self) -> str | None:
        """The media-level direction attribute, None if there is none (see SessionDescription.direction_of)."""
        return _direction(self.attributes)

    @property
    def downloadspeed(self) -> int | None:
        return _int_value(self.attributes, "downloadspeed")

    @property
    def filesize(self) -> int | None:
        return _int_value(self.attributes, "filesize")

    @property
    def streamnumber(self) -> int | None:
        return _int_value(self.attributes, "streamnumber")

    @property
    def streamprofile(self) -> int | None:
        return _int_value(self.attributes, "streamprofile")

    def attribute(self, name: str) -> str | None:
        """Value of the first `a=name:value` line (name in any case), None if absent or a bare flag."""
        return _first_value(self.attributes, name.lower())


@dataclass(slots=True, repr=False)
class SessionDescription:
    """A whole SDP body. Fields missing from the input are None (or empty lists).

    `ssrc` is the GB `y=` value as sent (normally ten digits, the first 0 for live, 1 for history);
    `media_params_text` is the raw `f=` value. A description holds one of each, wherever they appeared;
    if a body repeats one, the last counts and the earlier ones are kept as unknown lines where they were.
    """

    version: int = 0
    origin: Origin | None = None
    session_name: str | None = None
    info: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[str] = field(default_factory=list)
    timing: tuple[int, int] | None = None
    repeats: list[str] = field(default_factory=list)
    zone: str | None = None
    key: str | None = field(default=None, repr=False)
    attributes: list[Attribute] = field(default_factory=list)
    unknown_lines: list[str] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    ssrc: str | None = None
    media_params_text: str | None = None

    __repr__ = _masked_repr

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body; raises SdpError only when there is no `v=` or an `m=` line is unusable."""
        text = data if isinstance(data, str) else _decode(bytes(data))
        desc = cls()
        media: MediaDescription | None = None
        unknown = desc.unknown_lines
        attributes = desc.attributes
        has_version = False
        # Each y=/f= line is also put among the unknown lines of its section; only the last of each is
        # taken out again at the end, so earlier repeats stay where they were and round trips are stable.
        ssrc_slot: tuple[list[str], int] | None = None
        params_slot: tuple[list[str], int] | None = None
        # Bare CR line ends exist too; a CRLF just leaves an empty line, skipped like blank lines.
        for raw in text.replace("\r", "\n").split("\n"):
            line = raw.strip()
            if len(line) < 2 or line[1] != "=":
                if line:
                    unknown.append(line)
                continue
            kind = line[0]
            value = line[2:]
            if kind == "a":
                name, sep, attr_value = value.partition(":")
                attributes.append(Attribute(name, attr_value if sep else None))
            elif kind == "m":
                media = MediaDescription._from_m_line(line)
                desc.media.append(media)
                unknown = media.unknown_lines
                attributes = media.attributes
            elif kind == "y":
                desc.ssrc = value.strip()
                unknown.append(line)
                ssrc_slot = (unknown, len(unknown) - 1)
            elif kind == "f":
                desc.media_params_text = value.strip()
                unknown.append(line)
                params_slot = (unknown, len(unknown) - 1)
            elif media is not None:
                if not media._take(kind, value):
                    unknown.append(line)
            elif kind == "v" and not has_version:
                try:
                    desc.version = int(value)
                except ValueError:
                    raise SdpError("v= line is not a number", line) from None
                has_version = True
            elif not desc._take(kind, value):
                unknown.append(line)
        if not has_version:
            raise SdpError("no v= line in session description")
        # Delete the later slot first: when both are in one section, the other's index stays valid.
        slots: tuple[tuple[list[str], int] | None, ...]
        if ssrc_slot is not None and params_slot is not None and ssrc_slot[1] > params_slot[1]:
            slots = (ssrc_slot, params_slot)
        else:
            slots = (params_slot, ssrc_slot)
        for slot in slots:
            if slot is not None:
                del slot[0][slot[1]]
        return desc

    def _take(self, kind: str, value: str) -> bool:
        """Store a session-level line; False when it is a repeat or cannot be understood."""
        if kind == "o":
            if self.origin is None:
                self.origin = Origin.parse(value)
                return self.origin is not None
        elif kind == "s":
            if self.session_name is None:
                self.session_name = value
                return True
        elif kind == "c":
            if self.connection is None:
                self.connection = Connection.parse(value)
                return self.connection is not None
        elif kind == "t":
            if self.timing is None:
                times = value.split()
                if len(times) != 2:
                    return False
                try:
                    self.timing = (int(times[0]), int(times[1]))
                except ValueError:
                    return False
                return True
        elif kind == "u":
            if self.uri is None:
                self.uri = value
                return True
        elif kind == "i":
            if self.info is None:
                self.info = value
                return True
        elif kind == "b":
            self.bandwidths.append(value)
            return True
        elif kind == "e":
            self.emails.append(value)
            return True
        elif kind == "p":
            self.phones.append(value)
            return True
        elif kind == "r":
            self.repeats.append(value)
            return True
        elif kind == "z":
            if self.zone is None:
                self.zone = value
                return True
        elif kind == "k" and self.key is None:
            self.key = value
            return True
        return False

    def serialize(self) -> bytes:
        """Canonical SDP: RFC 4566 order, CRLF after every line, `y=` and `f=` after the media."""
        out = [f"v={self.version}"]
        if self.origin is not None:
            out.append("o=" + self.origin.serialize())
        if self.session_name is not None:
            # RFC 4566 5.3: a session without a name still says "s= ".
            out.append("s=" + (self.session_name or " "))
        if self.info is not None:
            out.append("i=" + self.info)
        if self.uri is not None:
            out.append("u=" + self.uri)
        out.extend("e=" + e for e in self.emails)
        out.extend("p=" + p for p in self.phones)
        if self.connection is not None:
            out.append("c=" + self.connection.serialize())
        out.extend("b=" + b for b in self.bandwidths)
        if self.timing is not None:
            out.append(f"t={self.timing[0]} {self.timing[1]}")
        out.extend("r=" + r for r in self.repeats)
        if self.zone is not None:
            out.append("z=" + self.zone)
        if self.key is not None:
            out.append("k=" + self.key)
        out.extend(map(_attribute_line, self.attributes))
        out.extend(self.unknown_lines)
        for media in self.media:
            media._serialize_into(out)
        if self.ssrc is not None:
            out.append("y=" + self.ssrc)
        if self.media_params_text is not None:
            out.append("f=" + self.media_params_text)
        out.append("")
        text = "\r\n".join(out)
        # A field holding a line break would smuggle extra lines into what we send.
        if text.count("\n") != len(out) - 1 or text.count("\r") != len(out) - 1:
            raise ValueError("an SDP field contains a line break")
        return text.encode()

    @property
    def ssrc_int(self) -> int | None:
        """The `y=` SSRC as a number, None when absent or not up to ten decimal digits."""
        ssrc = self.ssrc
        if ssrc and len(ssrc) <= 10 and ssrc.isascii() and ssrc.isdigit():
            return int(ssrc)
        return None

    @property
    def media_params(self) -> MediaParams | None:
        """The `f=` line parsed, None when absent, empty or not in the standard's form."""
        return None if self.media_params_text is None else MediaParams.parse(self.media_params_text)

    @property
    def direction(self) -> str | None:
        """The session-level direction attribute, None if there is none."""
        return _direction(self.attributes)

    def direction_of(self, media: MediaDescription) -> str:
        """Effective direction of `media`: its own, else the session's, else RFC 4566's `sendrecv`."""
        return media.direction or self.direction or "sendrecv"

    def address_of(self, media: MediaDescription) -> str:
        """Address the media is sent to or from: its own `c=`, else the session's; "" when none is given."""
        connection = media.connection or self.connection
        return connection.address if connection is not None else ""

    @classmethod
    def offer(
        cls,
        session_name: str,
        origin_user: str,
        address: str,
        port: int,
        proto: str,
        payloads: Sequence[tuple[int, str, int]],
        ssrc: str | int | None,
        *,
        kind: str = "video",
        setup: str | None = None,
        connection: str | None = None,
        direction: str | None = "recvonly",
        time: tuple[int, int] = (0, 0),
        uri: str | None = None,
        media_params: MediaParams | str | None = None,
        attributes: Iterable[tuple[str, str | None]] = (),
    ) -> SessionDescription:
        """A GB/T 28181 INVITE offer with one media section, as upper platforms and devices expect it.

        `payloads` are (payload type, encoding, clock rate), e.g. (96, "PS", 90000); `setup` and
        `connection` become `a=setup`/`a=connection` (RFC 4145, for TCP/RTP/AVP); `attributes` are
        extra media attributes such as ("downloadspeed", "4"). Raises ValueError for values that would
        make the offer unusable: an unspecified address, an SSRC that is not ten digits, unknown roles.
        """
        if address in _UNSPECIFIED_ADDRESSES:
            raise ValueError(f"offer needs a reachable address, not {address!r}")
        if isinstance(ssrc, int):
            if not 0 <= ssrc <= 9_999_999_999:
                raise ValueError(f"SSRC {ssrc} does not fit in ten digits")
            ssrc = f"{ssrc:010d}"
        elif ssrc is not None and not (len(ssrc) == 10 and ssrc.isascii() and ssrc.isdigit()):
            raise ValueError(f"SSRC must be ten digits, not {ssrc!r}")
        if setup is not None and setup not in _SETUP_ROLES:
            raise ValueError(f"setup must be one of {sorted(_SETUP_ROLES)}, not {setup!r}")
        if connection is not None and connection not in _CONNECTION_MODES:
            raise ValueError(f"connection must be one of {sorted(_CONNECTION_MODES)}, not {connection!r}")
        if direction is not None and direction not in _DIRECTIONS:
            raise ValueError(f"direction must be one of {sorted(_DIRECTIONS)}, not {direction!r}")
        addrtype = "IP6" if ":" in address else "IP4"
        media = MediaDescription(kind, port, proto, [pt for pt, _, _ in payloads])
        media_attributes = media.attributes
        if direction is not None:
            media_attributes.append(Attribute(direction, None))
        media_attributes.extend(Attribute("rtpmap", f"{pt} {name}/{clock}") for pt, name, clock in payloads)
        if setup is not None:
            media_attributes.append(Attribute("setup", setup))
        if connection is not None:
            media_attributes.append(Attribute("connection", connection))
        media_attributes.extend(Attribute(name, value) for name, value in attributes)
        return cls(
            origin=Origin(origin_user, "0", "0", "IN", addrtype, address),
            session_name=session_name,
            uri=uri,
            connection=Connection("IN", addrtype, address),
            timing=time,
            media=[media],
            ssrc=ssrc,
            media_params_text=media_params.serialize() if isinstance(media_params, MediaParams) else media_params,
        )


HISTORY_SESSIONS = frozenset({"Playback", "Download"})


def history_offer(
    session_name: str,
    channel_id: str,
    start: int,
    end: int,
    origin_user: str,
    address: str,
    port: int,
    proto: str,
    payloads: Sequence[tuple[int, str, int]],
    ssrc: str,
    *,
    setup: str | None = None,
    connection: str | None = None,
    download_speed: int | None = None,
    uri_param: int = 0,
) -> SessionDescription:
    """A GB/T 28181 playback or download offer (9.8.2, 9.9): `s=Playback`/`s=Download`, `u=CHANNEL:0`,
    `t=START END` in seconds since the Unix epoch (the GB form, not NTP), `y=` with the history prefix
    `1`, and `a=downloadspeed:N` for a download. ValueError for anything a device could not act on."""
    if session_name not in HISTORY_SESSIONS:
        raise ValueError(f"a history offer is {sorted(HISTORY_SESSIONS)}, not {session_name!r}")
    if not channel_id or any(c.isspace() or c == ":" for c in channel_id):
        raise ValueError(f"channel id {channel_id!r} cannot go in u=")
    if not 0 <= start < end:
        raise ValueError(f"t= needs 0 <= start < end, not {start} {end}")
    if not (len(ssrc) == 10 and ssrc.isascii() and ssrc.isdigit() and ssrc[0] == "1"):
        raise ValueError(f"a history SSRC is ten digits starting with 1, not {ssrc!r}")
    attributes: list[tuple[str, str | None]] = []
    if download_speed is not None:
        if session_name != "Download":
            raise ValueError("a=downloadspeed belongs to a Download offer only")
        if download_speed < 1:
            raise ValueError(f"download speed must be at least 1, not {download_speed}")
        attributes.append(("downloadspeed", str(download_speed)))
    return SessionDescription.offer(
        session_name,
        origin_user,
        address,
        port,
        proto,
        payloads,
        ssrc,
        setup=setup,
        connection=connection,
        time=(start, end),
        uri=f"{channel_id}:{uri_param}",
        attributes=attributes,
    )

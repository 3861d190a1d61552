"""MANSCDP bodies (GB/T 28181-2016 Annex A): read what devices and platforms send, build what we send.

Every body becomes a `ManscdpDocument`: its root (Query, Control, Notify or Response), CmdType, SN and
DeviceID, the whole tree as an `xml.etree.ElementTree.Element`, the charset to answer in, and a list of
what had to be repaired to read it (for the log). `typed()` turns the commands the gateway acts on into
slotted dataclasses; anything else stays usable through the tree.

Typed fields are None when a value is absent, unparsable or a placeholder: devices fill mandatory fields
they know nothing about with "null", an empty element, or the element's own name
(`<Manufacturer>Manufacturer</Manufacturer>`, `<Owner>Owner</Owner>`). The tree keeps the raw text.

Safety: no DTD is ever processed (see xmltext), bodies over `max_size` are refused before decoding, and
nothing read from the network raises anything but ManscdpError.
"""

from __future__ import annotations

import copy
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, ClassVar, TypeAlias

from gbgw.gb28181.manscdp.text import XmlTextError, codec_for, decode_body, read_element, to_text, xml_safe

__all__ = [
    "DEFAULT_MAX_SIZE",
    "ROOTS",
    "AlarmNotify",
    "AlarmStatusItem",
    "CatalogItem",
    "CatalogNotify",
    "CatalogResponse",
    "ConfigDownloadResponse",
    "DeviceControl",
    "DeviceInfoResponse",
    "DeviceStatusResponse",
    "DragZoom",
    "HomePosition",
    "KeepaliveNotify",
    "ManscdpDocument",
    "ManscdpError",
    "MediaStatusNotify",
    "MobilePositionNotify",
    "PresetItem",
    "PresetQueryResponse",
    "PtzCmd",
    "RecordInfoResponse",
    "RecordItem",
    "ResultResponse",
    "build",
    "catalog_pages",
    "catalog_pages_within",
    "control_alarm_reset",
    "control_drag_zoom",
    "control_guard",
    "control_home_position",
    "control_iframe",
    "control_ptz",
    "control_record",
    "control_tele_boot",
    "device_config",
    "encode_body",
    "format_time",
    "is_placeholder",
    "notify_alarm",
    "notify_broadcast",
    "notify_catalog",
    "notify_keepalive",
    "notify_media_status",
    "parse",
    "parse_text",
    "parse_time",
    "query_alarm",
    "query_catalog",
    "query_config_download",
    "query_device_info",
    "query_device_status",
    "query_mobile_position",
    "query_preset",
    "query_record_info",
    "response_catalog",
    "response_device_info",
    "response_device_status",
    "response_result",
    "typed",
]

ROOTS = ("Query", "Control", "Notify", "Response")
DEFAULT_MAX_SIZE = 256 * 1024

_ROOT_BY_LOWER = {root.lower(): root for root in ROOTS}
_CMD_TYPES = (
    "Keepalive",
    "Catalog",
    "DeviceInfo",
    "DeviceStatus",
    "RecordInfo",
    "Alarm",
    "MobilePosition",
    "MediaStatus",
    "PresetQuery",
    "ConfigDownload",
    "DeviceControl",
    "DeviceConfig",
    "Broadcast",
)
_CMD_TYPE_BY_LOWER = {cmd.lower(): cmd for cmd in _CMD_TYPES}


class ManscdpError(ValueError):
    """A body that cannot be used. `status` is the SIP status to answer the carrying request with."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# ---------------------------------------------------------------------------------------------------------
# Values


_PLACEHOLDERS = frozenset({"null", "(null)", "none", "nil", "n/a"})


def is_placeholder(tag: str, value: str) -> bool:
    """Whether a device wrote `value` only to fill the mandatory element `tag`."""
    value = value.strip()
    if not value:
        return True
    lowered = value.lower()
    return lowered in _PLACEHOLDERS or lowered == tag.lower()


def _str(tag: str, text: str | None) -> str | None:
    if text is None:
        return None
    value = text.strip()
    length = len(value)
    if not length:
        return None
    # Lower-casing only when the length could match keeps this cheap: it runs for every catalog field.
    if length <= 6 and value.lower() in _PLACEHOLDERS:
        return None
    if length == len(tag) and value.lower() == tag.lower():
        return None
    return value


def _int(tag: str, text: str | None) -> int | None:
    if text is None:
        return None
    value = text.strip()
    # The length cap keeps int() away from its quadratic-time conversion of huge digit strings.
    if value.isdigit() and len(value) <= 18 and value.isascii():
        return int(value)
    digits = value[1:] if value[:1] in ("-", "+") else ""
    if digits.isdigit() and len(digits) <= 18 and digits.isascii():
        return int(value)
    return None


def _float(tag: str, text: str | None) -> float | None:
    if text is None:
        return None
    value = text.strip()
    if not value or len(value) > 40:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _raw(tag: str, text: str | None) -> str | None:
    """Stripped text, placeholders kept: for values where "Name"-like words are legitimate."""
    if text is None:
        return None
    value = text.strip()
    return value or None


def parse_time(value: str | None) -> datetime | None:
    """A MANSCDP dateTime ("2025-04-22T11:26:02", also with a space, fraction or offset) or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def format_time(value: datetime | str) -> str:
    """The form devices expect: local time, seconds precision, no offset ("2025-04-22T11:26:02")."""
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def _number(value: float) -> str:
    text = repr(value)
    if "e" in text or "E" in text:
        # Devices parse plain decimals only.
        text = format(value, ".10f").rstrip("0").rstrip(".")
    return text


def _child_text(element: ET.Element, tag: str) -> str | None:
    child = element.find(tag)
    if child is None:
        return None
    return (child.text or "").strip()


def _leaves(element: ET.Element) -> dict[str, str]:
    """Every leaf under `element` by tag, first occurrence winning: for flat commands whose optional
    fields devices put either directly under the root or inside <Info>."""
    found: dict[str, str] = {}
    for node in element.iter():
        if not len(node) and node.tag not in found:
            found[node.tag] = node.text or ""
    return found


def _attribute(element: ET.Element, name: str) -> str | None:
    value = element.get(name)
    if value is None:
        value = element.get(name.lower())
    return value


# ---------------------------------------------------------------------------------------------------------
# The document


@dataclass(slots=True)
class ManscdpDocument:
    """One MANSCDP body. `element` is the root element and is what gets serialized; the header fields
    are read from it when parsing and written to it when building."""

    root: str
    cmd_type: str
    sn: int | None
    device_id: str
    element: ET.Element = field(repr=False)
    encoding: str = "GB2312"
    repairs: list[str] = field(default_factory=list)

    def text(self, path: str) -> str | None:
        """Stripped text at an ElementPath (e.g. "Info/AlarmType"); None when absent."""
        value = self.element.findtext(path)
        return None if value is None else value.strip()

    def typed(self) -> TypedMessage | None:
        """The typed form of this command, or None when the gateway has no typed form for it."""
        return typed(self)

    def with_header(self, *, sn: int | None = None, device_id: str | None = None) -> ManscdpDocument:
        """A copy with a new SN and/or DeviceID, for relaying a command under our own numbering."""
        element = copy.deepcopy(self.element)
        new_sn = self.sn if sn is None else sn
        new_device_id = self.device_id if device_id is None else device_id
        if sn is not None:
            _set_header(element, "SN", str(sn))
        if device_id is not None:
            _set_header(element, "DeviceID", device_id)
        return ManscdpDocument(
            self.root, self.cmd_type, new_sn, new_device_id, element, self.encoding, list(self.repairs)
        )


def _set_header(element: ET.Element, tag: str, value: str) -> None:
    child = element.find(tag)
    if child is None:
        child = ET.Element(tag)
        position = 1 if tag == "SN" else 2
        element.insert(min(position, len(element)), child)
    child.text = value


def parse(body: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> ManscdpDocument:
    """Decode and read a MANSCDP body. Raises ManscdpError (with the SIP status to answer) when the body
    is too large, is not XML even tolerantly, carries a DTD, has a foreign root, or lacks a CmdType."""
    if len(body) > max_size:
        raise ManscdpError(f"body of {len(body)} bytes exceeds the {max_size}-byte limit", status=413)
    decoded = decode_body(body)
    repairs = []
    if decoded.replaced:
        repairs.append(f"{decoded.replaced} undecodable byte sequences replaced ({decoded.encoding})")
    return parse_text(decoded.text, encoding=decoded.encoding, repairs=repairs)


def parse_text(text: str, *, encoding: str = "UTF-8", repairs: list[str] | None = None) -> ManscdpDocument:
    """Read an already decoded body; `encoding` is recorded as the charset to answer in."""
    found = [] if repairs is None else repairs
    try:
        element, reader_repairs = read_element(text)
    except XmlTextError as exc:
        raise ManscdpError(str(exc)) from None
    found.extend(reader_repairs)
    root = _ROOT_BY_LOWER.get(element.tag.lower())
    if root is None:
        raise ManscdpError(f"root element <{element.tag}> is not one of {', '.join(ROOTS)}")
    if element.tag != root:
        found.append(f"root <{element.tag}> read as <{root}>")
        element.tag = root
    cmd_text = _child_text(element, "CmdType")
    if not cmd_text:
        raise ManscdpError(f"<{root}> has no CmdType")
    cmd_type = _CMD_TYPE_BY_LOWER.get(cmd_text.lower(), cmd_text)
    sn_text = _child_text(element, "SN")
    sn = _int("SN", sn_text)
    if sn is None or sn < 0:
        sn = None
        found.append("SN missing" if sn_text is None else f"SN {sn_text!r} is not a number")
    device_id = _child_text(element, "DeviceID") or ""
    return ManscdpDocument(root, cmd_type, sn, device_id, element, encoding, found)


def encode_body(doc: ManscdpDocument, encoding: str = "GB2312") -> bytes:
    """Serialize with `<?xml version="1.0" encoding="..."?>`. GB2312 and GBK are written with the GB18030
    codec so that characters outside them survive; characters the charset cannot hold become references.
    Answer a device in the charset it used (`request.encoding`)."""
    label, codec = codec_for(encoding)
    text = f'<?xml version="1.0" encoding="{label}"?>\n{to_text(doc.element)}\n'
    return text.encode(codec, "xmlcharrefreplace")


# ---------------------------------------------------------------------------------------------------------
# Typed commands


_Converter = Callable[[str, "str | None"], Any]

# (tag, attribute, converter, whether the standard puts it inside <Item><Info>)
_ITEM_FIELDS: tuple[tuple[str, str, _Converter, bool], ...] = (
    ("DeviceID", "device_id", _raw, False),
    ("Event", "event", _raw, False),
    ("Name", "name", _str, False),
    ("Manufacturer", "manufacturer", _str, False),
    ("Model", "model", _str, False),
    ("Owner", "owner", _str, False),
    ("CivilCode", "civil_code", _str, False),
    ("Block", "block", _str, False),
    ("Address", "address", _str, False),
    ("Parental", "parental", _int, False),
    ("ParentID", "parent_id", _str, False),
    ("SafetyWay", "safety_way", _int, False),
    ("RegisterWay", "register_way", _int, False),
    ("CertNum", "cert_num", _str, False),
    ("Certifiable", "certifiable", _int, False),
    ("ErrCode", "err_code", _int, False),
    ("EndTime", "end_time", _str, False),
    ("Secrecy", "secrecy", _int, False),
    ("IPAddress", "ip_address", _str, False),
    ("Port", "port", _int, False),
    ("Password", "password", _raw, False),
    ("Status", "status", _raw, False),
    ("Longitude", "longitude", _float, False),
    ("Latitude", "latitude", _float, False),
    ("PTZType", "ptz_type", _int, True),
    ("PositionType", "position_type", _int, True),
    ("RoomType", "room_type", _int, True),
    ("UseType", "use_type", _int, True),
    ("SupplyLightType", "supply_light_type", _int, True),
    ("DirectionType", "direction_type", _int, True),
    ("Resolution", "resolution", _str, True),
    ("BusinessGroupID", "business_group_id", _str, True),
    ("DownloadSpeed", "download_speed", _str, True),
    ("SVCSpaceSupportMode", "svc_space_support_mode", _int, True),
    ("SVCTimeSupportMode", "svc_time_support_mode", _int, True),
)
_ITEM_BY_TAG: dict[str, tuple[str, _Converter]] = {
    tag: (attr, conv) for tag, attr, conv, _info in _ITEM_FIELDS
}


@dataclass(slots=True)
class CatalogItem:
    """One <Item> of a catalog (itemType, A.2.1 g), also carrying the Event of a catalog notification.

    Fields the standard puts in <Info> are accepted at either level. Elements it does not define
    (Dahua's StreamNum, for instance) are kept in `extra`.
    """

    device_id: str
    event: str | None = None
    name: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    owner: str | None = None
    civil_code: str | None = None
    block: str | None = None
    address: str | None = None
    parental: int | None = None
    parent_id: str | None = None
    safety_way: int | None = None
    register_way: int | None = None
    cert_num: str | None = None
    certifiable: int | None = None
    err_code: int | None = None
    end_time: str | None = None
    secrecy: int | None = None
    ip_address: str | None = None
    port: int | None = None
    password: str | None = field(default=None, repr=False)
    status: str | None = None
    longitude: float | None = None
    latitude: float | None = None
    ptz_type: int | None = None
    position_type: int | None = None
    room_type: int | None = None
    use_type: int | None = None
    supply_light_type: int | None = None
    direction_type: int | None = None
    resolution: str | None = None
    business_group_id: str | None = None
    download_speed: str | None = None
    svc_space_support_mode: int | None = None
    svc_time_support_mode: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def online(self) -> bool | None:
        """Status read liberally: devices write ON/OFF, ONLINE/OFFLINE or OK."""
        if self.status is None:
            return None
        status = self.status.upper()
        if status in ("ON", "ONLINE", "OK"):
            return True
        if status in ("OFF", "OFFLINE"):
            return False
        return None

    @classmethod
    def from_element(cls, item: ET.Element) -> CatalogItem:
        values: dict[str, Any] = {}
        extra: dict[str, str] = {}
        by_tag = _ITEM_BY_TAG
        # iter() walks the subtree in C and in document order, so <Info> fields are found wherever
        # the device put them; the first occurrence of a tag wins.
        for node in item.iter():
            tag = node.tag
            spec = by_tag.get(tag)
            if spec is None:
                text = node.text
                if text and not len(node) and not text.isspace() and tag not in extra:
                    extra[tag] = text.strip()
                continue
            attr, convert = spec
            if attr not in values:
                values[attr] = convert(tag, node.text)
        device_id = values.pop("device_id", None) or ""
        return cls(device_id, **values, extra=extra)

    def to_element(self) -> ET.Element:
        item = ET.Element("Item")
        info: ET.Element | None = None
        for tag, attr, _conv, in_info in _ITEM_FIELDS:
            value = getattr(self, attr)
            if value is None:
                continue
            if in_info:
                if info is None:
                    info = ET.Element("Info")
                _append(info, tag, value)
            else:
                _append(item, tag, value)
        for tag, value in self.extra.items():
            _append(item, tag, value)
        if info is not None:
            item.append(info)
        return item


def _items(element: ET.Element, list_tag: str) -> tuple[ET.Element | None, list[ET.Element]]:
    container = element.find(list_tag)
    if container is None:
        return None, []
    return container, [child for child in container if child.tag == "Item"]


@dataclass(slots=True)
class CatalogResponse:
    """A Catalog answer (one message of possibly several: assemble by (device, SN) until SumNum items)."""

    sn: int | None
    device_id: str
    sum_num: int | None
    num: int | None
    items: list[CatalogItem]

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> CatalogResponse:
        container, items = _items(doc.element, "DeviceList")
        num = _int("Num", _attribute(container, "Num")) if container is not None else None
        return cls(
            doc.sn,
            doc.device_id,
            _int("SumNum", _child_text(doc.element, "SumNum")),
            num,
            [CatalogItem.from_element(item) for item in items],
        )


@dataclass(slots=True)
class CatalogNotify:
    """A catalog change notification (SUBSCRIBE Catalog); each item carries an Event:
    ON, OFF, VLOST, DEFECT, ADD, DEL or UPDATE."""

    sn: int | None
    device_id: str
    sum_num: int | None
    num: int | None
    items: list[CatalogItem]

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> CatalogNotify:
        response = CatalogResponse.from_document(doc)
        return cls(response.sn, response.device_id, response.sum_num, response.num, response.items)


@dataclass(slots=True)
class KeepaliveNotify:
    """Keepalive (A.2.5 a); `fault_devices` lists the IDs in <Info> that are not working."""

    sn: int | None
    device_id: str
    status: str | None
    fault_devices: list[str]

    @property
    def ok(self) -> bool:
        return (self.status or "").upper() == "OK"

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> KeepaliveNotify:
        info = doc.element.find("Info")
        faults: list[str] = []
        if info is not None:
            faults = [text for node in info.iter("DeviceID") if (text := (node.text or "").strip())]
        return cls(doc.sn, doc.device_id, _raw("Status", _child_text(doc.element, "Status")), faults)


@dataclass(slots=True)
class ResultResponse:
    """A Response that only reports a Result (DeviceControl, DeviceConfig, Alarm, Broadcast, the Catalog
    subscription acknowledgement, ...)."""

    cmd_type: str
    sn: int | None
    device_id: str
    result: str | None

    @property
    def ok(self) -> bool:
        return (self.result or "").upper() == "OK"

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> ResultResponse:
        return cls(doc.cmd_type, doc.sn, doc.device_id, _raw("Result", _child_text(doc.element, "Result")))


@dataclass(slots=True)
class DeviceInfoResponse:
    sn: int | None
    device_id: str
    result: str | None
    device_name: str | None
    manufacturer: str | None
    model: str | None
    firmware: str | None
    channel: int | None

    @property
    def ok(self) -> bool:
        return (self.result or "").upper() == "OK"

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> DeviceInfoResponse:
        e = doc.element
        return cls(
            doc.sn,
            doc.device_id,
            _raw("Result", _child_text(e, "Result")),
            _str("DeviceName", _child_text(e, "DeviceName")),
            _str("Manufacturer", _child_text(e, "Manufacturer")),
            _str("Model", _child_text(e, "Model")),
            _str("Firmware", _child_text(e, "Firmware")),
            _int("Channel", _child_text(e, "Channel")),
        )


@dataclass(slots=True)
class AlarmStatusItem:
    device_id: str
    duty_status: str | None


@dataclass(slots=True)
class DeviceStatusResponse:
    """DeviceStatus answer (A.2.6 g). `alarm_status` comes from <Alarmstatus> (the standard's spelling)
    or <AlarmStatus> (what some devices write)."""

    sn: int | None
    device_id: str
    result: str | None
    online: str | None
    status: str | None
    reason: str | None
    encode: str | None
    record: str | None
    device_time: str | None
    alarm_status: list[AlarmStatusItem]

    @property
    def is_online(self) -> bool | None:
        if self.online is None:
            return None
        return self.online.upper() in ("ONLINE", "ON")

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> DeviceStatusResponse:
        e = doc.element
        _container, items = _items(e, "Alarmstatus")
        if not items:
            _container, items = _items(e, "AlarmStatus")
        alarms = [
            AlarmStatusItem(
                _raw("DeviceID", _child_text(item, "DeviceID")) or "",
                _raw("DutyStatus", _child_text(item, "DutyStatus")),
            )
            for item in items
        ]
        return cls(
            doc.sn,
            doc.device_id,
            _raw("Result", _child_text(e, "Result")),
            _raw("Online", _child_text(e, "Online")),
            _raw("Status", _child_text(e, "Status")),
            _str("Reason", _child_text(e, "Reason")),
            _raw("Encode", _child_text(e, "Encode")),
            _raw("Record", _child_text(e, "Record")),
            _raw("DeviceTime", _child_text(e, "DeviceTime")),
            alarms,
        )


@dataclass(slots=True)
class AlarmNotify:
    """Alarm notification (A.2.5 b). Method: 1 telephone, 2 device, 3 SMS, 4 GPS, 5 video, 6 device fault,
    7 other; `alarm_type` refines 2, 5 and 6. Devices also put AlarmType outside <Info>: both are read."""

    sn: int | None
    device_id: str
    alarm_priority: int | None
    alarm_method: int | None
    alarm_time: str | None
    alarm_description: str | None
    longitude: float | None
    latitude: float | None
    alarm_type: int | None
    event_type: int | None

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> AlarmNotify:
        leaves = _leaves(doc.element)
        get = leaves.get
        return cls(
            doc.sn,
            doc.device_id,
            _int("AlarmPriority", get("AlarmPriority")),
            _int("AlarmMethod", get("AlarmMethod")),
            _raw("AlarmTime", get("AlarmTime")),
            _str("AlarmDescription", get("AlarmDescription")),
            _float("Longitude", get("Longitude")),
            _float("Latitude", get("Latitude")),
            _int("AlarmType", get("AlarmType")),
            _int("EventType", get("EventType")),
        )


@dataclass(slots=True)
class MobilePositionNotify:
    sn: int | None
    device_id: str
    time: str | None
    longitude: float | None
    latitude: float | None
    speed: float | None
    direction: float | None
    altitude: float | None

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> MobilePositionNotify:
        e = doc.element
        return cls(
            doc.sn,
            doc.device_id,
            _raw("Time", _child_text(e, "Time")),
            _float("Longitude", _child_text(e, "Longitude")),
            _float("Latitude", _child_text(e, "Latitude")),
            _float("Speed", _child_text(e, "Speed")),
            _float("Direction", _child_text(e, "Direction")),
            _float("Altitude", _child_text(e, "Altitude")),
        )


@dataclass(slots=True)
class MediaStatusNotify:
    sn: int | None
    device_id: str
    notify_type: str | None

    @property
    def end_of_file(self) -> bool:
        """NotifyType 121: the history media file has been sent completely."""
        return self.notify_type == "121"

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> MediaStatusNotify:
        return cls(doc.sn, doc.device_id, _raw("NotifyType", _child_text(doc.element, "NotifyType")))


@dataclass(slots=True)
class RecordItem:
    """One recording (itemFileType, A.2.1 h)."""

    device_id: str
    name: str | None = None
    file_path: str | None = None
    address: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    secrecy: int | None = None
    type: str | None = None
    recorder_id: str | None = None
    file_size: int | None = None

    @classmethod
    def from_element(cls, item: ET.Element) -> RecordItem:
        return cls(
            _raw("DeviceID", _child_text(item, "DeviceID")) or "",
            _str("Name", _child_text(item, "Name")),
            _str("FilePath", _child_text(item, "FilePath")),
            _str("Address", _child_text(item, "Address")),
            _raw("StartTime", _child_text(item, "StartTime")),
            _raw("EndTime", _child_text(item, "EndTime")),
            _int("Secrecy", _child_text(item, "Secrecy")),
            _raw("Type", _child_text(item, "Type")),
            _str("RecorderID", _child_text(item, "RecorderID")),
            _int("FileSize", _child_text(item, "FileSize")),
        )


@dataclass(slots=True)
class RecordInfoResponse:
    """A RecordInfo answer (one message of possibly several, like a catalog)."""

    sn: int | None
    device_id: str
    name: str | None
    sum_num: int | None
    num: int | None
    items: list[RecordItem]

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> RecordInfoResponse:
        container, items = _items(doc.element, "RecordList")
        num = _int("Num", _attribute(container, "Num")) if container is not None else None
        return cls(
            doc.sn,
            doc.device_id,
            _str("Name", _child_text(doc.element, "Name")),
            _int("SumNum", _child_text(doc.element, "SumNum")),
            num,
            [RecordItem.from_element(item) for item in items],
        )


@dataclass(slots=True)
class PresetItem:
    preset_id: str
    preset_name: str | None


@dataclass(slots=True)
class PresetQueryResponse:
    sn: int | None
    device_id: str
    num: int | None
    items: list[PresetItem]

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> PresetQueryResponse:
        container, items = _items(doc.element, "PresetList")
        num = _int("Num", _attribute(container, "Num")) if container is not None else None
        presets = [
            PresetItem(
                _raw("PresetID", _child_text(item, "PresetID")) or "",
                _raw("PresetName", _child_text(item, "PresetName")),
            )
            for item in items
        ]
        return cls(doc.sn, doc.device_id, num, presets)


@dataclass(slots=True)
class ConfigDownloadResponse:
    """ConfigDownload answer, kept generic: each configuration section (BasicParam, VideoParamOpt,
    SVACEncodeConfig, ...) as its leaves by tag. Sections can hold the device's SIP password, hence no repr."""

    sn: int | None
    device_id: str
    result: str | None
    sections: dict[str, dict[str, str]] = field(repr=False)

    def _basic_int(self, tag: str) -> int | None:
        return _int(tag, self.sections.get("BasicParam", {}).get(tag))

    @property
    def expiration(self) -> int | None:
        return self._basic_int("Expiration")

    @property
    def heart_beat_interval(self) -> int | None:
        return self._basic_int("HeartBeatInterval")

    @property
    def heart_beat_count(self) -> int | None:
        return self._basic_int("HeartBeatCount")

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> ConfigDownloadResponse:
        sections = {
            child.tag: {tag: text.strip() for tag, text in _leaves(child).items() if tag != child.tag}
            for child in doc.element
            if len(child)
        }
        return cls(doc.sn, doc.device_id, _raw("Result", _child_text(doc.element, "Result")), sections)


@dataclass(slots=True)
class DragZoom:
    """Zoom into (or out of) a box drawn on the player window; pixels, origin top left (A.2.3 a)."""

    length: int
    width: int
    mid_point_x: int
    mid_point_y: int
    length_x: int
    length_y: int

    _TAGS: ClassVar[tuple[str, ...]] = ("Length", "Width", "MidPointX", "MidPointY", "LengthX", "LengthY")

    @classmethod
    def from_element(cls, element: ET.Element) -> DragZoom | None:
        """None unless all six values are present: a partial box cannot be acted on."""
        values: list[int] = []
        for tag in cls._TAGS:
            value = _int(tag, _child_text(element, tag))
            if value is None:
                return None
            values.append(value)
        return cls(*values)

    def fields(self) -> list[tuple[str, int]]:
        values = (self.length, self.width, self.mid_point_x, self.mid_point_y, self.length_x, self.length_y)
        return list(zip(self._TAGS, values, strict=True))


@dataclass(slots=True)
class HomePosition:
    """Home (guard) position: enable, auto-return seconds, preset index 0-255."""

    enabled: int | None
    reset_time: int | None = None
    preset_index: int | None = None

    @classmethod
    def from_element(cls, element: ET.Element) -> HomePosition:
        return cls(
            _int("Enabled", _child_text(element, "Enabled")),
            _int("ResetTime", _child_text(element, "ResetTime")),
            _int("PresetIndex", _child_text(element, "PresetIndex")),
        )


@dataclass(slots=True)
class DeviceControl:
    """A DeviceControl command (A.2.3 a), so that a boundary policy can tell PTZ from reboot."""

    sn: int | None
    device_id: str
    ptz_cmd: str | None = None
    tele_boot: bool = False
    record_cmd: str | None = None
    guard_cmd: str | None = None
    alarm_cmd: str | None = None
    iframe: bool = False
    drag_zoom_in: DragZoom | None = None
    drag_zoom_out: DragZoom | None = None
    home_position: HomePosition | None = None
    control_priority: int | None = None
    alarm_method: str | None = None
    alarm_type: str | None = None

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> DeviceControl:
        e = doc.element
        zoom_in = e.find("DragZoomIn")
        zoom_out = e.find("DragZoomOut")
        home = e.find("HomePosition")
        info = e.find("Info")
        if info is None:
            info = ET.Element("Info")
        info_text = partial(_child_text, info)
        return cls(
            doc.sn,
            doc.device_id,
            ptz_cmd=_raw("PTZCmd", _child_text(e, "PTZCmd")),
            tele_boot=e.find("TeleBoot") is not None,
            record_cmd=_raw("RecordCmd", _child_text(e, "RecordCmd")),
            guard_cmd=_raw("GuardCmd", _child_text(e, "GuardCmd")),
            alarm_cmd=_raw("AlarmCmd", _child_text(e, "AlarmCmd")),
            iframe=e.find("IFameCmd") is not None or e.find("IFrameCmd") is not None,
            drag_zoom_in=DragZoom.from_element(zoom_in) if zoom_in is not None else None,
            drag_zoom_out=DragZoom.from_element(zoom_out) if zoom_out is not None else None,
            home_position=HomePosition.from_element(home) if home is not None else None,
            control_priority=_int("ControlPriority", info_text("ControlPriority")),
            alarm_method=_raw("AlarmMethod", info_text("AlarmMethod")),
            alarm_type=_raw("AlarmType", info_text("AlarmType")),
        )


TypedMessage: TypeAlias = (
    KeepaliveNotify
    | CatalogResponse
    | CatalogNotify
    | ResultResponse
    | DeviceInfoResponse
    | DeviceStatusResponse
    | AlarmNotify
    | MobilePositionNotify
    | MediaStatusNotify
    | RecordInfoResponse
    | PresetQueryResponse
    | ConfigDownloadResponse
    | DeviceControl
)


def _catalog_response(doc: ManscdpDocument) -> CatalogResponse | ResultResponse:
    # The same CmdType answers both the query (a list) and a Catalog SUBSCRIBE (just a Result).
    if doc.element.find("DeviceList") is None and doc.element.find("SumNum") is None:
        return ResultResponse.from_document(doc)
    return CatalogResponse.from_document(doc)


_TYPED: dict[tuple[str, str], Callable[[ManscdpDocument], TypedMessage]] = {
    ("Notify", "Keepalive"): KeepaliveNotify.from_document,
    ("Notify", "Catalog"): CatalogNotify.from_document,
    ("Notify", "Alarm"): AlarmNotify.from_document,
    ("Notify", "MobilePosition"): MobilePositionNotify.from_document,
    ("Notify", "MediaStatus"): MediaStatusNotify.from_document,
    ("Response", "Catalog"): _catalog_response,
    ("Response", "DeviceInfo"): DeviceInfoResponse.from_document,
    ("Response", "DeviceStatus"): DeviceStatusResponse.from_document,
    ("Response", "RecordInfo"): RecordInfoResponse.from_document,
    ("Response", "PresetQuery"): PresetQueryResponse.from_document,
    ("Response", "ConfigDownload"): ConfigDownloadResponse.from_document,
    ("Control", "DeviceControl"): DeviceControl.from_document,
}


def typed(doc: ManscdpDocument) -> TypedMessage | None:
    """The typed form of a document, or None for commands without one (the tree still has everything)."""
    convert = _TYPED.get((doc.root, doc.cmd_type))
    if convert is not None:
        return convert(doc)
    if doc.root == "Response" and doc.element.find("Result") is not None:
        return ResultResponse.from_document(doc)
    return None


# ---------------------------------------------------------------------------------------------------------
# PTZ command codes (A.3)


@dataclass(frozen=True, slots=True)
class PtzCmd:
    """The 8-byte front-end control code carried as 16 hex digits in <PTZCmd> (A.3.1).

    Byte 1 is A5H; byte 2 is version 0 plus a check nibble; byte 3 and the low nibble of byte 7 hold a
    12-bit address the standard says receivers ignore (devices and platforms send 1); byte 4 is the
    instruction, bytes 5 and 6 its data, the high nibble of byte 7 a third datum; byte 8 the sum of bytes
    1-7 modulo 256.
    """

    instruction: int
    data1: int = 0
    data2: int = 0
    data3: int = 0
    address: int = 1

    def serialize(self) -> str:
        if not (
            0 <= self.instruction <= 0xFF
            and 0 <= self.data1 <= 0xFF
            and 0 <= self.data2 <= 0xFF
            and 0 <= self.data3 <= 0xF
            and 0 <= self.address <= 0xFFF
        ):
            raise ValueError(f"PTZ command field out of range: {self!r}")
        # Check nibble: (high nibble of byte 1 + low nibble of byte 1 + version) % 16 = (0xA + 0x5 + 0) % 16.
        body = bytes(
            (
                0xA5,
                0x0F,
                self.address & 0xFF,
                self.instruction,
                self.data1,
                self.data2,
                (self.data3 << 4) | (self.address >> 8),
            )
        )
        return (body + bytes((sum(body) & 0xFF,))).hex().upper()

    @classmethod
    def parse(cls, text: str) -> PtzCmd:
        """Read and verify a code; raises ManscdpError naming what is wrong."""
        value = text.strip()
        try:
            code = bytes.fromhex(value)
        except ValueError:
            raise ManscdpError(f"PTZCmd {text!r} is not hexadecimal") from None
        if len(code) != 8:
            raise ManscdpError(f"PTZCmd {text!r} is not 8 bytes")
        if code[0] != 0xA5:
            raise ManscdpError(f"PTZCmd {text!r} does not start with A5")
        if (code[1] & 0x0F) != ((0xA + 0x5 + (code[1] >> 4)) & 0x0F):
            raise ManscdpError(f"PTZCmd {text!r} has a wrong check nibble in byte 2")
        if sum(code[:7]) & 0xFF != code[7]:
            raise ManscdpError(f"PTZCmd {text!r} has a wrong checksum")
        return cls(code[3], code[4], code[5], code[6] >> 4, code[2] | ((code[6] & 0x0F) << 8))

    @property
    def kind(self) -> str:
        """The instruction family (A.3.2-A.3.7): ptz, fi (focus/iris), preset, cruise, scan, auxiliary or unknown."""
        instruction = self.instruction
        if instruction & 0xC0 == 0:
            return "ptz"
        if instruction & 0xF0 == 0x40:
            return "fi"
        if 0x81 <= instruction <= 0x83:
            return "preset"
        if 0x84 <= instruction <= 0x88:
            return "cruise"
        if instruction in (0x89, 0x8A):
            return "scan"
        if instruction in (0x8C, 0x8D):
            return "auxiliary"
        return "unknown"

    @classmethod
    def move(
        cls,
        *,
        pan: int = 0,
        tilt: int = 0,
        zoom: int = 0,
        pan_speed: int = 0x80,
        tilt_speed: int = 0x80,
        zoom_speed: int = 0x8,
    ) -> PtzCmd:
        """Pan (-1 left, +1 right), tilt (-1 down, +1 up), zoom (-1 out, +1 in); all 0 stops (A.3.2)."""
        instruction = 0
        if zoom > 0:
            instruction |= 0x10
        elif zoom < 0:
            instruction |= 0x20
        if tilt > 0:
            instruction |= 0x08
        elif tilt < 0:
            instruction |= 0x04
        if pan < 0:
            instruction |= 0x02
        elif pan > 0:
            instruction |= 0x01
        return cls(
            instruction,
            pan_speed if pan else 0,
            tilt_speed if tilt else 0,
            zoom_speed if zoom else 0,
        )

    @classmethod
    def stop(cls) -> PtzCmd:
        return cls(0)

    @classmethod
    def focus_iris(
        cls, *, focus: int = 0, iris: int = 0, focus_speed: int = 0x80, iris_speed: int = 0x80
    ) -> PtzCmd:
        """Focus (-1 near, +1 far) and iris (-1 close, +1 open); both 0 stops (A.3.3)."""
        instruction = 0x40
        if iris < 0:
            instruction |= 0x08
        elif iris > 0:
            instruction |= 0x04
        if focus < 0:
            instruction |= 0x02
        elif focus > 0:
            instruction |= 0x01
        return cls(instruction, focus_speed if focus else 0, iris_speed if iris else 0)

    @classmethod
    def preset(cls, action: str, index: int) -> PtzCmd:
        """Preset "set", "call" or "delete" for index 1-255 (A.3.4)."""
        codes = {"set": 0x81, "call": 0x82, "delete": 0x83}
        if action not in codes:
            raise ValueError(f"preset action must be one of {sorted(codes)}, not {action!r}")
        if not 1 <= index <= 255:
            raise ValueError(f"preset index {index} outside 1-255")
        return cls(codes[action], 0, index)


# ---------------------------------------------------------------------------------------------------------
# Building

Field: TypeAlias = "str | int | float | ET.Element | Mapping[str, Field] | None"


def _append(parent: ET.Element, tag: str, value: Field) -> None:
    if value is None:
        return
    if isinstance(value, ET.Element):
        parent.append(value)
        return
    child = ET.SubElement(parent, tag)
    if isinstance(value, Mapping):
        for sub_tag, sub_value in value.items():
            _append(child, sub_tag, sub_value)
    elif isinstance(value, bool):
        raise TypeError(f"<{tag}>: MANSCDP has no boolean type; pass 0/1 or the command's words")
    elif isinstance(value, int):
        child.text = str(value)
    elif isinstance(value, float):
        child.text = _number(value)
    else:
        child.text = xml_safe(value)


def build(
    root: str,
    cmd_type: str,
    sn: int | None,
    device_id: str | None,
    fields: Mapping[str, Field] | Iterable[tuple[str, Field]] = (),
) -> ManscdpDocument:
    """Any MANSCDP document: header (CmdType, SN, DeviceID; None leaves SN or DeviceID out) then `fields`
    in order; a Mapping value becomes a nested element, an Element is appended as is, None is skipped."""
    if root not in ROOTS:
        raise ValueError(f"root must be one of {ROOTS}, not {root!r}")
    element = ET.Element(root)
    _append(element, "CmdType", cmd_type)
    _append(element, "SN", sn)
    _append(element, "DeviceID", device_id)
    pairs = fields.items() if isinstance(fields, Mapping) else fields
    for tag, value in pairs:
        _append(element, tag, value)
    return ManscdpDocument(root, cmd_type, sn, device_id or "", element)


def _time(value: datetime | str | None) -> str | None:
    return None if value is None else format_time(value)


def query_catalog(
    sn: int,
    device_id: str,
    *,
    start_time: datetime | str | None = None,
    end_time: datetime | str | None = None,
) -> ManscdpDocument:
    return build(
        "Query", "Catalog", sn, device_id, [("StartTime", _time(start_time)), ("EndTime", _time(end_time))]
    )


def query_device_info(sn: int, device_id: str) -> ManscdpDocument:
    return build("Query", "DeviceInfo", sn, device_id)


def query_device_status(sn: int, device_id: str) -> ManscdpDocument:
    return build("Query", "DeviceStatus", sn, device_id)


def query_record_info(
    sn: int,
    device_id: str,
    start_time: datetime | str,
    end_time: datetime | str,
    *,
    file_path: str | None = None,
    address: str | None = None,
    secrecy: int | None = None,
    type: str | None = "all",
    recorder_id: str | None = None,
    indistinct_query: int | None = None,
) -> ManscdpDocument:
    """Recording search (A.2.4 d). `type` is time, alarm, manual or all."""
    return build(
        "Query",
        "RecordInfo",
        sn,
        device_id,
        [
            ("StartTime", format_time(start_time)),
            ("EndTime", format_time(end_time)),
            ("FilePath", file_path),
            ("Address", address),
            ("Secrecy", secrecy),
            ("Type", type),
            ("RecorderID", recorder_id),
            ("IndistinctQuery", indistinct_query),
        ],
    )


def query_preset(sn: int, device_id: str) -> ManscdpDocument:
    return build("Query", "PresetQuery", sn, device_id)


def query_config_download(sn: int, device_id: str, config_types: str | Sequence[str]) -> ManscdpDocument:
    """ConfigType is BasicParam, VideoParamOpt, SVACEncodeConfig, SVACDecodeConfig, or several joined by '/'."""
    joined = config_types if isinstance(config_types, str) else "/".join(config_types)
    return build("Query", "ConfigDownload", sn, device_id, [("ConfigType", joined)])


def query_mobile_position(sn: int, device_id: str, *, interval: int | None = None) -> ManscdpDocument:
    return build("Query", "MobilePosition", sn, device_id, [("Interval", interval)])


def query_alarm(
    sn: int,
    device_id: str,
    *,
    start_priority: int | None = None,
    end_priority: int | None = None,
    method: str | None = None,
    alarm_type: str | None = None,
    start_time: datetime | str | None = None,
    end_time: datetime | str | None = None,
) -> ManscdpDocument:
    """Alarm query / subscription body (A.2.4 e); priority 0 and method "0" mean all."""
    return build(
        "Query",
        "Alarm",
        sn,
        device_id,
        [
            ("StartAlarmPriority", start_priority),
            ("EndAlarmPriority", end_priority),
            ("AlarmMethod", method),
            ("AlarmType", alarm_type),
            ("StartAlarmTime", _time(start_time)),
            ("EndAlarmTime", _time(end_time)),
        ],
    )


def control_ptz(
    sn: int, device_id: str, ptz_cmd: PtzCmd | str, *, control_priority: int | None = None
) -> ManscdpDocument:
    code = ptz_cmd.serialize() if isinstance(ptz_cmd, PtzCmd) else ptz_cmd
    info = None if control_priority is None else {"ControlPriority": control_priority}
    return build("Control", "DeviceControl", sn, device_id, [("PTZCmd", code), ("Info", info)])


def control_tele_boot(sn: int, device_id: str) -> ManscdpDocument:
    return build("Control", "DeviceControl", sn, device_id, [("TeleBoot", "Boot")])


def control_record(sn: int, device_id: str, *, record: bool) -> ManscdpDocument:
    return build(
        "Control", "DeviceControl", sn, device_id, [("RecordCmd", "Record" if record else "StopRecord")]
    )


def control_guard(sn: int, device_id: str, *, guard: bool) -> ManscdpDocument:
    return build(
        "Control", "DeviceControl", sn, device_id, [("GuardCmd", "SetGuard" if guard else "ResetGuard")]
    )


def control_alarm_reset(
    sn: int, device_id: str, *, alarm_method: str | None = None, alarm_type: str | None = None
) -> ManscdpDocument:
    info = None
    if alarm_method is not None or alarm_type is not None:
        info = {"AlarmMethod": alarm_method, "AlarmType": alarm_type}
    return build("Control", "DeviceControl", sn, device_id, [("AlarmCmd", "ResetAlarm"), ("Info", info)])


def control_iframe(sn: int, device_id: str) -> ManscdpDocument:
    # "IFameCmd" is the standard's spelling (A.2.3 a); devices look for exactly that.
    return build("Control", "DeviceControl", sn, device_id, [("IFameCmd", "Send")])


def control_drag_zoom(sn: int, device_id: str, zoom: DragZoom, *, zoom_in: bool) -> ManscdpDocument:
    tag = "DragZoomIn" if zoom_in else "DragZoomOut"
    return build("Control", "DeviceControl", sn, device_id, [(tag, dict(zoom.fields()))])


def control_home_position(sn: int, device_id: str, home: HomePosition) -> ManscdpDocument:
    fields = {"Enabled": home.enabled, "ResetTime": home.reset_time, "PresetIndex": home.preset_index}
    return build("Control", "DeviceControl", sn, device_id, [("HomePosition", fields)])


def device_config(sn: int, device_id: str, sections: Mapping[str, Field]) -> ManscdpDocument:
    """DeviceConfig (A.2.3 b), e.g. {"BasicParam": {"Name": ..., "HeartBeatInterval": 60}}."""
    return build("Control", "DeviceConfig", sn, device_id, sections)


def response_result(cmd_type: str, sn: int | None, device_id: str, *, ok: bool = True) -> ManscdpDocument:
    """The bare answer `<Response><CmdType/><SN/><DeviceID/><Result>OK|ERROR</Result></Response>`."""
    return build("Response", cmd_type, sn, device_id, [("Result", "OK" if ok else "ERROR")])


def _catalog_document(
    root: str, sn: int, device_id: str, items: Sequence[CatalogItem], sum_num: int | None
) -> ManscdpDocument:
    device_list = ET.Element("DeviceList", Num=str(len(items)))
    for item in items:
        device_list.append(item.to_element())
    total = len(items) if sum_num is None else sum_num
    return build(root, "Catalog", sn, device_id, [("SumNum", total), ("DeviceList", device_list)])


def response_catalog(
    sn: int, device_id: str, items: Sequence[CatalogItem], *, sum_num: int | None = None
) -> ManscdpDocument:
    """One Catalog answer message; `sum_num` is the total over all messages (default: these items)."""
    return _catalog_document("Response", sn, device_id, items, sum_num)


def catalog_pages(
    sn: int, device_id: str, items: Sequence[CatalogItem], per_page: int
) -> list[ManscdpDocument]:
    """A catalog split over several answers of at most `per_page` items, each stating the full SumNum."""
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    if not items:
        return [response_catalog(sn, device_id, [], sum_num=0)]
    total = len(items)
    return [
        response_catalog(sn, device_id, items[start : start + per_page], sum_num=total)
        for start in range(0, total, per_page)
    ]


def notify_catalog(
    sn: int, device_id: str, items: Sequence[CatalogItem], *, sum_num: int | None = None
) -> ManscdpDocument:
    """A catalog change notification; set `event` on each item."""
    return _catalog_document("Notify", sn, device_id, items, sum_num)


def response_device_info(
    sn: int,
    device_id: str,
    *,
    device_name: str | None = None,
    manufacturer: str | None = None,
    model: str | None = None,
    firmware: str | None = None,
    channel: int | None = None,
    ok: bool = True,
) -> ManscdpDocument:
    return build(
        "Response",
        "DeviceInfo",
        sn,
        device_id,
        [
            ("DeviceName", device_name),
            ("Result", "OK" if ok else "ERROR"),
            ("Manufacturer", manufacturer),
            ("Model", model),
            ("Firmware", firmware),
            ("Channel", channel),
        ],
    )


def response_device_status(
    sn: int,
    device_id: str,
    *,
    online: bool,
    status_ok: bool = True,
    reason: str | None = None,
    encode: bool | None = None,
    record: bool | None = None,
    device_time: datetime | str | None = None,
    alarm_status: Sequence[AlarmStatusItem] = (),
    ok: bool = True,
) -> ManscdpDocument:
    def on_off(value: bool | None) -> str | None:
        return None if value is None else ("ON" if value else "OFF")

    alarms = None
    if alarm_status:
        alarms = ET.Element("Alarmstatus", Num=str(len(alarm_status)))
        for alarm in alarm_status:
            _append(alarms, "Item", {"DeviceID": alarm.device_id, "DutyStatus": alarm.duty_status})
    return build(
        "Response",
        "DeviceStatus",
        sn,
        device_id,
        [
            ("Result", "OK" if ok else "ERROR"),
            ("Online", "ONLINE" if online else "OFFLINE"),
            ("Status", "OK" if status_ok else "ERROR"),
            ("Reason", reason),
            ("Encode", on_off(encode)),
            ("Record", on_off(record)),
            ("DeviceTime", _time(device_time)),
            ("Alarmstatus", alarms),
        ],
    )


def notify_keepalive(
    sn: int, device_id: str, *, ok: bool = True, fault_devices: Sequence[str] = ()
) -> ManscdpDocument:
    info = ET.Element("Info")
    for fault in fault_devices:
        _append(info, "DeviceID", fault)
    fields: list[tuple[str, Field]] = [("Status", "OK" if ok else "ERROR")]
    if fault_devices:
        fields.append(("Info", info))
    return build("Notify", "Keepalive", sn, device_id, fields)


def notify_alarm(
    sn: int,
    device_id: str,
    *,
    priority: int,
    method: int,
    time: datetime | str,
    description: str | None = None,
    longitude: float | None = None,
    latitude: float | None = None,
    alarm_type: int | None = None,
    event_type: int | None = None,
) -> ManscdpDocument:
    info: dict[str, Field] | None = None
    if alarm_type is not None or event_type is not None:
        param = None if event_type is None else {"EventType": event_type}
        info = {"AlarmType": alarm_type, "AlarmTypeParam": param}
    return build(
        "Notify",
        "Alarm",
        sn,
        device_id,
        [
            ("AlarmPriority", priority),
            ("AlarmMethod", method),
            ("AlarmTime", format_time(time)),
            ("AlarmDescription", description),
            ("Longitude", longitude),
            ("Latitude", latitude),
            ("Info", info),
        ],
    )


def notify_broadcast(sn: int, source_id: str, target_id: str) -> ManscdpDocument:
    """Voice broadcast invitation (A.2.5 d): no DeviceID, a SourceID and a TargetID."""
    return build("Notify", "Broadcast", sn, None, [("SourceID", source_id), ("TargetID", target_id)])


def notify_media_status(sn: int, device_id: str, notify_type: str = "121") -> ManscdpDocument:
    return build("Notify", "MediaStatus", sn, device_id, [("NotifyType", notify_type)])


def catalog_pages_within(
    root: str,
    sn: int,
    device_id: str,
    items: Sequence[CatalogItem],
    max_bytes: int,
    encoding: str = "GB2312",
    *,
    sum_num: int | None = None,
) -> list[ManscdpDocument]:
    """A catalog split over as few documents as fit: each one's `encode_body(doc, encoding)` is at most
    `max_bytes` bytes (an item too large for any page still travels, alone on its page).

    Root "Response": every page states the full SumNum (Annex M): `sum_num`, when these items are one
    part of a larger answer, else their number; an empty catalog is one page with SumNum 0 and no list.
    Root "Notify": SumNum equals the page's own Num (Annex P.4.2.2); nothing to notify is no page at all.

    Sizes are counted, not tried: each item is serialized once, indented as `to_text` will indent it at
    its depth in the page (level 2), so packing costs one serialization per item and none per attempt.
    """
    if root not in ("Response", "Notify"):
        raise ValueError(f"a catalog page is a Response or a Notify, not {root!r}")
    if not items:
        return [build(root, "Catalog", sn, device_id, [("SumNum", 0)])] if root == "Response" else []
    _, codec = codec_for(encoding)
    elements: list[ET.Element] = []
    sizes: list[int] = []
    for item in items:
        element = item.to_element()
        ET.indent(element, space="  ", level=2)
        elements.append(element)
        # In the page, every item follows a newline and its four spaces of indentation.
        sizes.append(len(ET.tostring(element, encoding="unicode").encode(codec, "xmlcharrefreplace")) + 5)
    total = len(items) if sum_num is None else sum_num
    notify = root == "Notify"
    # Everything but the items, measured on a one-item page (Num="1", and SumNum="1" for a Notify); a
    # longer page only has longer numbers there.
    probe = _catalog_page(root, sn, device_id, elements[:1], 1 if notify else total)
    base = len(encode_body(probe, encoding)) - sizes[0]
    numbers = 2 if notify else 1
    bounds: list[tuple[int, int]] = []
    start = used = 0
    for index, size in enumerate(sizes):
        count = index - start + 1
        if count > 1 and base + (len(str(count)) - 1) * numbers + used + size > max_bytes:
            bounds.append((start, index))
            start, used = index, 0
        used += size
    bounds.append((start, len(items)))
    return [
        _catalog_page(root, sn, device_id, elements[first:end], end - first if notify else total)
        for first, end in bounds
    ]


def _catalog_page(root: str, sn: int, device_id: str, elements: Sequence[ET.Element], sum_num: int) -> ManscdpDocument:
    device_list = ET.Element("DeviceList", Num=str(len(elements)))
    device_list.extend(elements)
    return build(root, "Catalog", sn, device_id, [("SumNum", sum_num), ("DeviceList", device_list)])

"""Typed MANSCDP messages: the commands the gateway acts on, as slotted dataclasses read from a document.

Each message declares its fields once, as a `FieldTable` of (attribute, XML tag, converter), and reads them
with `read_fields`; the same table writes a catalog item back. Typed fields are None when a value is
absent, unparsable or a placeholder; the document's tree keeps the raw text. Anything without a typed
form stays usable through the tree.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from gbgw.gb28181.manscdp.fields import (
    FieldTable,
    Scope,
    append_field,
    as_float,
    as_id,
    as_int,
    as_present,
    as_raw,
    as_str,
    attribute,
    leaves,
    read_fields,
)


class ManscdpDocument(Protocol):
    """What a typed message reads of a document. Structural, so that this module does not import the
    envelope module, which imports this one to offer ``ManscdpDocument.typed()``."""

    @property
    def root(self) -> str: ...
    @property
    def cmd_type(self) -> str: ...
    @property
    def sn(self) -> int | None: ...
    @property
    def device_id(self) -> str: ...
    @property
    def element(self) -> ET.Element: ...


def _is_ok(result: str | None) -> bool:
    return (result or "").upper() == "OK"


def _list(element: ET.Element, list_tag: str) -> tuple[int | None, list[ET.Element]]:
    """A list element's Num attribute and its <Item> children; (None, []) when the list is absent."""
    container = element.find(list_tag)
    if container is None:
        return None, []
    return as_int("Num", attribute(container, "Num")), [child for child in container if child.tag == "Item"]


# ---------------------------------------------------------------------------------------------------------
# Catalog

_ITEM_FIELDS = FieldTable(
    ("device_id", "DeviceID", as_id),
    ("event", "Event", as_raw),
    ("name", "Name", as_str),
    ("manufacturer", "Manufacturer", as_str),
    ("model", "Model", as_str),
    ("owner", "Owner", as_str),
    ("civil_code", "CivilCode", as_str),
    ("block", "Block", as_str),
    ("address", "Address", as_str),
    ("parental", "Parental", as_int),
    ("parent_id", "ParentID", as_str),
    ("safety_way", "SafetyWay", as_int),
    ("register_way", "RegisterWay", as_int),
    ("cert_num", "CertNum", as_str),
    ("certifiable", "Certifiable", as_int),
    ("err_code", "ErrCode", as_int),
    ("end_time", "EndTime", as_str),
    ("secrecy", "Secrecy", as_int),
    ("ip_address", "IPAddress", as_str),
    ("port", "Port", as_int),
    ("password", "Password", as_raw),
    ("status", "Status", as_raw),
    ("longitude", "Longitude", as_float),
    ("latitude", "Latitude", as_float),
    ("ptz_type", "PTZType", as_int),
    ("position_type", "PositionType", as_int),
    ("room_type", "RoomType", as_int),
    ("use_type", "UseType", as_int),
    ("supply_light_type", "SupplyLightType", as_int),
    ("direction_type", "DirectionType", as_int),
    ("resolution", "Resolution", as_str),
    ("business_group_id", "BusinessGroupID", as_str),
    ("download_speed", "DownloadSpeed", as_str),
    ("svc_space_support_mode", "SVCSpaceSupportMode", as_int),
    ("svc_time_support_mode", "SVCTimeSupportMode", as_int),
)
# The tags the standard puts inside <Item><Info>, where they are written.
_ITEM_INFO_TAGS = frozenset(
    {
        "PTZType",
        "PositionType",
        "RoomType",
        "UseType",
        "SupplyLightType",
        "DirectionType",
        "Resolution",
        "BusinessGroupID",
        "DownloadSpeed",
        "SVCSpaceSupportMode",
        "SVCTimeSupportMode",
    }
)


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
        extra: dict[str, str] = {}
        return cls(**read_fields(item, _ITEM_FIELDS, Scope.SUBTREE, extra=extra), extra=extra)

    def to_element(self) -> ET.Element:
        item = ET.Element("Item")
        info: ET.Element | None = None
        for attr, tag, _convert in _ITEM_FIELDS.rows:
            value = getattr(self, attr)
            if value is None:
                continue
            if tag in _ITEM_INFO_TAGS:
                if info is None:
                    info = ET.Element("Info")
                append_field(info, tag, value)
            else:
                append_field(item, tag, value)
        for tag, value in self.extra.items():
            append_field(item, tag, value)
        if info is not None:
            item.append(info)
        return item


_SUM_NUM = FieldTable(("sum_num", "SumNum", as_int))


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
        num, items = _list(doc.element, "DeviceList")
        return cls(
            doc.sn,
            doc.device_id,
            num=num,
            items=[CatalogItem.from_element(item) for item in items],
            **read_fields(doc.element, _SUM_NUM),
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


# ---------------------------------------------------------------------------------------------------------
# Notifications and answers

_KEEPALIVE_FIELDS = FieldTable(("status", "Status", as_raw))
_RESULT_FIELDS = FieldTable(("result", "Result", as_raw))


@dataclass(slots=True)
class KeepaliveNotify:
    """Keepalive (A.2.5 a); `fault_devices` lists the IDs in <Info> that are not working."""

    sn: int | None
    device_id: str
    status: str | None
    fault_devices: list[str]

    @property
    def ok(self) -> bool:
        return _is_ok(self.status)

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> KeepaliveNotify:
        info = doc.element.find("Info")
        faults: list[str] = []
        if info is not None:
            faults = [text for node in info.iter("DeviceID") if (text := (node.text or "").strip())]
        return cls(doc.sn, doc.device_id, fault_devices=faults, **read_fields(doc.element, _KEEPALIVE_FIELDS))


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
        return _is_ok(self.result)

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> ResultResponse:
        return cls(doc.cmd_type, doc.sn, doc.device_id, **read_fields(doc.element, _RESULT_FIELDS))


_DEVICE_INFO_FIELDS = FieldTable(
    ("result", "Result", as_raw),
    ("device_name", "DeviceName", as_str),
    ("manufacturer", "Manufacturer", as_str),
    ("model", "Model", as_str),
    ("firmware", "Firmware", as_str),
    ("channel", "Channel", as_int),
)


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
        return _is_ok(self.result)

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> DeviceInfoResponse:
        return cls(doc.sn, doc.device_id, **read_fields(doc.element, _DEVICE_INFO_FIELDS))


_ALARM_STATUS_FIELDS = FieldTable(("device_id", "DeviceID", as_id), ("duty_status", "DutyStatus", as_raw))


@dataclass(slots=True)
class AlarmStatusItem:
    device_id: str
    duty_status: str | None


_DEVICE_STATUS_FIELDS = FieldTable(
    ("result", "Result", as_raw),
    ("online", "Online", as_raw),
    ("status", "Status", as_raw),
    ("reason", "Reason", as_str),
    ("encode", "Encode", as_raw),
    ("record", "Record", as_raw),
    ("device_time", "DeviceTime", as_raw),
)


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
        _num, items = _list(doc.element, "Alarmstatus")
        if not items:
            _num, items = _list(doc.element, "AlarmStatus")
        alarms = [AlarmStatusItem(**read_fields(item, _ALARM_STATUS_FIELDS)) for item in items]
        fields = read_fields(doc.element, _DEVICE_STATUS_FIELDS)
        return cls(doc.sn, doc.device_id, alarm_status=alarms, **fields)


_ALARM_FIELDS = FieldTable(
    ("alarm_priority", "AlarmPriority", as_int),
    ("alarm_method", "AlarmMethod", as_int),
    ("alarm_time", "AlarmTime", as_raw),
    ("alarm_description", "AlarmDescription", as_str),
    ("longitude", "Longitude", as_float),
    ("latitude", "Latitude", as_float),
    ("alarm_type", "AlarmType", as_int),
    ("event_type", "EventType", as_int),
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
        return cls(doc.sn, doc.device_id, **read_fields(doc.element, _ALARM_FIELDS, Scope.LEAVES))


_MOBILE_POSITION_FIELDS = FieldTable(
    ("time", "Time", as_raw),
    ("longitude", "Longitude", as_float),
    ("latitude", "Latitude", as_float),
    ("speed", "Speed", as_float),
    ("direction", "Direction", as_float),
    ("altitude", "Altitude", as_float),
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
        return cls(doc.sn, doc.device_id, **read_fields(doc.element, _MOBILE_POSITION_FIELDS))


_MEDIA_STATUS_FIELDS = FieldTable(("notify_type", "NotifyType", as_raw))


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
        return cls(doc.sn, doc.device_id, **read_fields(doc.element, _MEDIA_STATUS_FIELDS))


# ---------------------------------------------------------------------------------------------------------
# Recordings and presets

_RECORD_ITEM_FIELDS = FieldTable(
    ("device_id", "DeviceID", as_id),
    ("name", "Name", as_str),
    ("file_path", "FilePath", as_str),
    ("address", "Address", as_str),
    ("start_time", "StartTime", as_raw),
    ("end_time", "EndTime", as_raw),
    ("secrecy", "Secrecy", as_int),
    ("type", "Type", as_raw),
    ("recorder_id", "RecorderID", as_str),
    ("file_size", "FileSize", as_int),
)


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
        return cls(**read_fields(item, _RECORD_ITEM_FIELDS))


_RECORD_INFO_FIELDS = FieldTable(("name", "Name", as_str), ("sum_num", "SumNum", as_int))


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
        num, items = _list(doc.element, "RecordList")
        return cls(
            doc.sn,
            doc.device_id,
            num=num,
            items=[RecordItem.from_element(item) for item in items],
            **read_fields(doc.element, _RECORD_INFO_FIELDS),
        )


_PRESET_FIELDS = FieldTable(("preset_id", "PresetID", as_id), ("preset_name", "PresetName", as_raw))


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
        num, items = _list(doc.element, "PresetList")
        presets = [PresetItem(**read_fields(item, _PRESET_FIELDS)) for item in items]
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
        return as_int(tag, self.sections.get("BasicParam", {}).get(tag))

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
            child.tag: {tag: text.strip() for tag, text in leaves(child).items() if tag != child.tag}
            for child in doc.element
            if len(child)
        }
        return cls(doc.sn, doc.device_id, sections=sections, **read_fields(doc.element, _RESULT_FIELDS))


# ---------------------------------------------------------------------------------------------------------
# Device control

_DRAG_ZOOM_FIELDS = FieldTable(
    ("length", "Length", as_int),
    ("width", "Width", as_int),
    ("mid_point_x", "MidPointX", as_int),
    ("mid_point_y", "MidPointY", as_int),
    ("length_x", "LengthX", as_int),
    ("length_y", "LengthY", as_int),
)


@dataclass(slots=True)
class DragZoom:
    """Zoom into (or out of) a box drawn on the player window; pixels, origin top left (A.2.3 a)."""

    length: int
    width: int
    mid_point_x: int
    mid_point_y: int
    length_x: int
    length_y: int

    @classmethod
    def from_element(cls, element: ET.Element) -> DragZoom | None:
        """None unless all six values are present: a partial box cannot be acted on."""
        values = read_fields(element, _DRAG_ZOOM_FIELDS)
        if None in values.values():
            return None
        return cls(**values)

    def fields(self) -> list[tuple[str, int]]:
        return [(tag, getattr(self, attr)) for attr, tag, _convert in _DRAG_ZOOM_FIELDS.rows]


_HOME_POSITION_FIELDS = FieldTable(
    ("enabled", "Enabled", as_int),
    ("reset_time", "ResetTime", as_int),
    ("preset_index", "PresetIndex", as_int),
)


@dataclass(slots=True)
class HomePosition:
    """Home (guard) position: enable, auto-return seconds, preset index 0-255."""

    enabled: int | None
    reset_time: int | None = None
    preset_index: int | None = None

    @classmethod
    def from_element(cls, element: ET.Element) -> HomePosition:
        return cls(**read_fields(element, _HOME_POSITION_FIELDS))


_CONTROL_FIELDS = FieldTable(
    ("ptz_cmd", "PTZCmd", as_raw),
    ("tele_boot", "TeleBoot", as_present),
    ("record_cmd", "RecordCmd", as_raw),
    ("guard_cmd", "GuardCmd", as_raw),
    ("alarm_cmd", "AlarmCmd", as_raw),
    # "IFameCmd" is the standard's spelling (A.2.3 a); some platforms correct it.
    ("iframe", "IFameCmd", as_present),
    ("iframe", "IFrameCmd", as_present),
)
_CONTROL_INFO_FIELDS = FieldTable(
    ("control_priority", "ControlPriority", as_int),
    ("alarm_method", "AlarmMethod", as_raw),
    ("alarm_type", "AlarmType", as_raw),
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
        return cls(
            doc.sn,
            doc.device_id,
            drag_zoom_in=DragZoom.from_element(zoom_in) if zoom_in is not None else None,
            drag_zoom_out=DragZoom.from_element(zoom_out) if zoom_out is not None else None,
            home_position=HomePosition.from_element(home) if home is not None else None,
            **read_fields(e, _CONTROL_FIELDS),
            **read_fields(e.find("Info"), _CONTROL_INFO_FIELDS),
        )


# ---------------------------------------------------------------------------------------------------------
# Dispatch

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

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
from typing import ClassVar, Protocol, Self, TypeAlias, TypeVar

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

    def to_element(self) -> ET.Element:
        """The <Item> of a RecordList, fields in the standard's order, absent ones left out."""
        item = ET.Element("Item")
        for attr, tag, _convert in _RECORD_ITEM_FIELDS.rows:
            append_field(item, tag, getattr(self, attr))
        return item


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


# ---------------------------------------------------------------------------------------------------------
# Configuration sections (DeviceConfig, ConfigDownload)


class ConfigSection:
    """One configuration section of DeviceConfig (A.2.3 b) and of the ConfigDownload answer (A.2.6 j):
    a slotted dataclass whose `FIELDS` rows name ElementPaths under the section element (a nested group
    is "Group/Tag"). The one table both reads and writes it; fields left None are not written."""

    __slots__ = ()
    TAG: ClassVar[str]
    FIELDS: ClassVar[FieldTable]

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        return cls(**read_fields(element, cls.FIELDS))

    def to_element(self) -> ET.Element:
        section = ET.Element(self.TAG)
        written: set[str] = set()
        for attr, path, _convert in self.FIELDS.rows:
            # A second row for one attribute is a spelling read, never written.
            if attr in written:
                continue
            written.add(attr)
            value = getattr(self, attr)
            if value is None:
                continue
            *groups, tag = path.split("/")
            parent = section
            for group in groups:
                child = parent.find(group)
                parent = ET.SubElement(parent, group) if child is None else child
            append_field(parent, tag, value)
        return section


@dataclass(slots=True)
class BasicParam(ConfigSection):
    """Name, registration expiry (s), heartbeat interval (s) and count; the answer adds position
    capability (0 none, 1 GPS, 2 BeiDou) and the device's coordinates."""

    TAG: ClassVar[str] = "BasicParam"
    FIELDS: ClassVar[FieldTable] = FieldTable(
        ("name", "Name", as_raw),
        ("expiration", "Expiration", as_int),
        ("heart_beat_interval", "HeartBeatInterval", as_int),
        ("heart_beat_count", "HeartBeatCount", as_int),
        ("position_capability", "PositionCapability", as_int),
        ("longitude", "Longitude", as_float),
        ("latitude", "Latitude", as_float),
    )
    name: str | None = None
    expiration: int | None = None
    heart_beat_interval: int | None = None
    heart_beat_count: int | None = None
    position_capability: int | None = None
    longitude: float | None = None
    latitude: float | None = None


@dataclass(slots=True)
class VideoParamOpt(ConfigSection):
    """What the device offers: download speeds ("1/2/4") and resolutions (F.2 codes, "/"-separated)."""

    TAG: ClassVar[str] = "VideoParamOpt"
    FIELDS: ClassVar[FieldTable] = FieldTable(
        ("download_speed", "DownloadSpeed", as_raw), ("resolution", "Resolution", as_raw)
    )
    download_speed: str | None = None
    resolution: str | None = None


@dataclass(slots=True)
class SvacEncodeConfig(ConfigSection):
    """SVAC encoding, the scalar switches only: ROI items stay in the document tree."""

    TAG: ClassVar[str] = "SVACEncodeConfig"
    FIELDS: ClassVar[FieldTable] = FieldTable(
        ("roi_flag", "ROIParam/ROIFlag", as_int),
        ("roi_number", "ROIParam/ROINumber", as_int),
        ("background_qp", "ROIParam/BackGroundQP", as_int),
        ("background_skip_flag", "ROIParam/BackGroundSkipFlag", as_int),
        ("svc_space_domain_mode", "SVCParam/SVCSpaceDomainMode", as_int),
        ("svc_time_domain_mode", "SVCParam/SVCTimeDomainMode", as_int),
        ("svc_space_support_mode", "SVCParam/SVCSpaceSupportMode", as_int),
        ("svc_time_support_mode", "SVCParam/SVCTimeSupportMode", as_int),
        ("time_flag", "SurveillanceParam/TimeFlag", as_int),
        ("event_flag", "SurveillanceParam/EventFlag", as_int),
        ("alert_flag", "SurveillanceParam/AlertFlag", as_int),
        ("audio_recognition_flag", "AudioParam/AudioRecognitionFlag", as_int),
    )
    roi_flag: int | None = None
    roi_number: int | None = None
    background_qp: int | None = None
    background_skip_flag: int | None = None
    svc_space_domain_mode: int | None = None
    svc_time_domain_mode: int | None = None
    svc_space_support_mode: int | None = None
    svc_time_support_mode: int | None = None
    time_flag: int | None = None
    event_flag: int | None = None
    alert_flag: int | None = None
    audio_recognition_flag: int | None = None


@dataclass(slots=True)
class SvacDecodeConfig(ConfigSection):
    """SVAC decoding: SVC display mode and capabilities, surveillance overlay switches."""

    TAG: ClassVar[str] = "SVACDecodeConfig"
    FIELDS: ClassVar[FieldTable] = FieldTable(
        ("svc_stm_mode", "SVCParam/SVCSTMMode", as_int),
        ("svc_space_support_mode", "SVCParam/SVCSpaceSupportMode", as_int),
        ("svc_time_support_mode", "SVCParam/SVCTimeSupportMode", as_int),
        ("time_show_flag", "SurveillanceParam/TimeShowFlag", as_int),
        ("event_show_flag", "SurveillanceParam/EventShowFlag", as_int),
        # "AlerShowtFlag" is the standard's spelling (A.2.3 b, A.2.6 j); the corrected one is read too.
        ("alert_show_flag", "SurveillanceParam/AlerShowtFlag", as_int),
        ("alert_show_flag", "SurveillanceParam/AlertShowFlag", as_int),
    )
    svc_stm_mode: int | None = None
    svc_space_support_mode: int | None = None
    svc_time_support_mode: int | None = None
    time_show_flag: int | None = None
    event_show_flag: int | None = None
    alert_show_flag: int | None = None


@dataclass(slots=True)
class VideoRecordPlan(ConfigSection):
    """2022 recording plan, its switches only: the weekly schedules stay in the document tree."""

    TAG: ClassVar[str] = "VideoRecordPlan"
    FIELDS: ClassVar[FieldTable] = FieldTable(
        ("record_enable", "RecordEnable", as_int),
        ("record_schedule_sum_num", "RecordScheduleSumNum", as_int),
        ("stream_number", "StreamNumber", as_int),
    )
    record_enable: int | None = None
    record_schedule_sum_num: int | None = None
    stream_number: int | None = None


@dataclass(slots=True)
class VideoAlarmRecord(ConfigSection):
    """2022 alarm recording: on/off, seconds recorded after and before the alarm, stream 0 main, 1 sub."""

    TAG: ClassVar[str] = "VideoAlarmRecord"
    FIELDS: ClassVar[FieldTable] = FieldTable(
        ("record_enable", "RecordEnable", as_int),
        ("record_time", "RecordTime", as_int),
        ("pre_record_time", "PreRecordTime", as_int),
        ("stream_number", "StreamNumber", as_int),
    )
    record_enable: int | None = None
    record_time: int | None = None
    pre_record_time: int | None = None
    stream_number: int | None = None


@dataclass(slots=True)
class PictureMask(ConfigSection):
    """2022 privacy masking on/off and region count: the regions stay in the document tree."""

    TAG: ClassVar[str] = "PictureMask"
    FIELDS: ClassVar[FieldTable] = FieldTable(("on", "On", as_int), ("sum_num", "SumNum", as_int))
    on: int | None = None
    sum_num: int | None = None


@dataclass(slots=True)
class FrameMirror(ConfigSection):
    """2022 picture flip: 0 none, 1 horizontal, 2 vertical, 3 both."""

    TAG: ClassVar[str] = "FrameMirror"
    FIELDS: ClassVar[FieldTable] = FieldTable(("frame_mirror_type", "FrameMirrorType", as_int))
    frame_mirror_type: int | None = None


@dataclass(slots=True)
class AlarmReport(ConfigSection):
    """2022 alarm report switches: motion detection, region intrusion (field detection), 0/1."""

    TAG: ClassVar[str] = "AlarmReport"
    FIELDS: ClassVar[FieldTable] = FieldTable(
        ("motion_detection", "MotionDetection", as_int), ("field_detection", "FieldDetection", as_int)
    )
    motion_detection: int | None = None
    field_detection: int | None = None


@dataclass(slots=True)
class OsdConfig(ConfigSection):
    """2022 on-screen display: canvas size, time overlay position/switch/format, text switch and count;
    the text items stay in the document tree."""

    TAG: ClassVar[str] = "OSDConfig"
    FIELDS: ClassVar[FieldTable] = FieldTable(
        ("length", "Length", as_int),
        ("width", "Width", as_int),
        ("time_x", "TimeX", as_int),
        ("time_y", "TimeY", as_int),
        ("time_enable", "TimeEnable", as_int),
        ("time_type", "TimeType", as_int),
        ("text_enable", "TextEnable", as_int),
        ("sum_num", "SumNum", as_int),
    )
    length: int | None = None
    width: int | None = None
    time_x: int | None = None
    time_y: int | None = None
    time_enable: int | None = None
    time_type: int | None = None
    text_enable: int | None = None
    sum_num: int | None = None


@dataclass(slots=True)
class SnapShotConfig(ConfigSection):
    """2022 image capture: take `snap_num` (1-10) JPEGs `interval` seconds apart and upload each to
    `upload_url` under `session_id` (32-128 characters); completion comes as UploadSnapShotFinished."""

    TAG: ClassVar[str] = "SnapShotConfig"
    FIELDS: ClassVar[FieldTable] = FieldTable(
        ("snap_num", "SnapNum", as_int),
        ("interval", "Interval", as_int),
        ("upload_url", "UploadURL", as_raw),
        ("session_id", "SessionID", as_raw),
    )
    snap_num: int | None = None
    interval: int | None = None
    upload_url: str | None = None
    session_id: str | None = None


_STREAM_ATTRIBUTE_FIELDS = FieldTable(
    ("stream_name", "StreamName", as_raw),
    ("video_format", "VideoFormat", as_raw),
    ("resolution", "Resolution", as_raw),
    ("frame_rate", "FrameRate", as_raw),
    ("bit_rate_type", "BitRateType", as_raw),
    ("video_bit_rate", "VideoBitRate", as_raw),
)


@dataclass(slots=True)
class VideoStreamAttribute:
    """One stream of VideoParamAttribute (2022): name ("main", "sub"...), format, resolution, frame
    rate, bit-rate type (1 CBR, 2 VBR) and bit rate (kbit/s), as the device wrote them."""

    stream_name: str | None = None
    video_format: str | None = None
    resolution: str | None = None
    frame_rate: str | None = None
    bit_rate_type: str | None = None
    video_bit_rate: str | None = None


@dataclass(slots=True)
class VideoParamAttribute(ConfigSection):
    """2022 per-stream video parameters, one Item per stream."""

    TAG: ClassVar[str] = "VideoParamAttribute"
    FIELDS: ClassVar[FieldTable] = FieldTable()
    items: list[VideoStreamAttribute] = field(default_factory=list)

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        items = [
            VideoStreamAttribute(**read_fields(item, _STREAM_ATTRIBUTE_FIELDS))
            for item in element.iter("Item")
        ]
        return cls(items)

    def to_element(self) -> ET.Element:
        section = ET.Element(self.TAG, Num=str(len(self.items)))
        for item in self.items:
            values = {tag: getattr(item, attr) for attr, tag, _convert in _STREAM_ATTRIBUTE_FIELDS.rows}
            append_field(section, "Item", values)
        return section


CONFIG_SECTIONS: dict[str, type[ConfigSection]] = {
    section.TAG: section
    for section in (
        BasicParam,
        VideoParamOpt,
        SvacEncodeConfig,
        SvacDecodeConfig,
        VideoParamAttribute,
        VideoRecordPlan,
        VideoAlarmRecord,
        PictureMask,
        FrameMirror,
        AlarmReport,
        OsdConfig,
        SnapShotConfig,
    )
}
# The ConfigType that asks for the capture settings is "SnapShot"; devices answer under either name.
CONFIG_SECTIONS["SnapShot"] = SnapShotConfig

CONFIG_TYPES = (
    "BasicParam",
    "VideoParamOpt",
    "SVACEncodeConfig",
    "SVACDecodeConfig",
    "VideoParamAttribute",
    "VideoRecordPlan",
    "VideoAlarmRecord",
    "PictureMask",
    "FrameMirror",
    "AlarmReport",
    "OSDConfig",
    "SnapShot",
)
"""The ConfigType values of ConfigDownload: the first four from 2016, the rest added in 2022."""

_Section = TypeVar("_Section", bound=ConfigSection)


def _config_sections(element: ET.Element) -> tuple[dict[str, ConfigSection], dict[str, dict[str, str]]]:
    """The typed sections a body holds, and every section with children as its leaves by tag."""
    typed_sections: dict[str, ConfigSection] = {}
    raw: dict[str, dict[str, str]] = {}
    for child in element:
        if not len(child):
            continue
        raw[child.tag] = {tag: text.strip() for tag, text in leaves(child).items() if tag != child.tag}
        section_type = CONFIG_SECTIONS.get(child.tag)
        if section_type is not None:
            typed_sections[child.tag] = section_type.from_element(child)
    return typed_sections, raw


def _first(config: dict[str, ConfigSection], section_type: type[_Section]) -> _Section | None:
    return next((section for section in config.values() if isinstance(section, section_type)), None)


@dataclass(slots=True)
class ConfigDownloadResponse:
    """ConfigDownload answer: the typed sections in `config` (by tag), and every section with children
    as its leaves by tag in `sections`. A device may answer each ConfigType of one query in its own
    message under the same SN. Sections can hold the device's SIP password, hence no repr."""

    sn: int | None
    device_id: str
    result: str | None
    sections: dict[str, dict[str, str]] = field(repr=False)
    config: dict[str, ConfigSection] = field(default_factory=dict, repr=False)

    def section(self, section_type: type[_Section]) -> _Section | None:
        """The answer's section of this type, e.g. `section(BasicParam)`; None when it has none."""
        return _first(self.config, section_type)

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
        config, sections = _config_sections(doc.element)
        return cls(
            doc.sn,
            doc.device_id,
            sections=sections,
            config=config,
            **read_fields(doc.element, _RESULT_FIELDS),
        )


@dataclass(slots=True)
class DeviceConfig:
    """A DeviceConfig command (A.2.3 b): the sections to set, typed in `config`, raw in `sections`."""

    sn: int | None
    device_id: str
    config: dict[str, ConfigSection] = field(repr=False)
    sections: dict[str, dict[str, str]] = field(repr=False)

    def section(self, section_type: type[_Section]) -> _Section | None:
        return _first(self.config, section_type)

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> DeviceConfig:
        config, sections = _config_sections(doc.element)
        return cls(doc.sn, doc.device_id, config, sections)


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


_PTZ_PRECISE_FIELDS = FieldTable(
    ("pan", "Pan", as_float),
    ("tilt", "Tilt", as_float),
    ("zoom", "Zoom", as_float),
)


@dataclass(slots=True)
class PtzPrecise:
    """2022 precise PTZ (PTZPreciseCtrl): pan 0-360 degrees, tilt -30 to 90 degrees, zoom ratio >= 1.
    The PTZPosition answer reports the same three values."""

    pan: float | None = None
    tilt: float | None = None
    zoom: float | None = None

    @classmethod
    def from_element(cls, element: ET.Element) -> PtzPrecise:
        return cls(**read_fields(element, _PTZ_PRECISE_FIELDS))

    def fields(self) -> list[tuple[str, float | None]]:
        return [(tag, getattr(self, attr)) for attr, tag, _convert in _PTZ_PRECISE_FIELDS.rows]


_DEVICE_UPGRADE_FIELDS = FieldTable(
    ("firmware", "Firmware", as_raw),
    ("file_url", "FileURL", as_raw),
    ("manufacturer", "Manufacturer", as_raw),
    ("session_id", "SessionID", as_raw),
)


@dataclass(slots=True)
class DeviceUpgrade:
    """2022 software upgrade: the firmware version to install, the URL the device downloads it from, the
    manufacturer it is for, and the session the DeviceUpgradeResult notification will name."""

    firmware: str | None
    file_url: str | None
    manufacturer: str | None
    session_id: str | None

    @classmethod
    def from_element(cls, element: ET.Element) -> DeviceUpgrade:
        return cls(**read_fields(element, _DEVICE_UPGRADE_FIELDS))

    def fields(self) -> list[tuple[str, str | None]]:
        return [(tag, getattr(self, attr)) for attr, tag, _convert in _DEVICE_UPGRADE_FIELDS.rows]


_CONTROL_FIELDS = FieldTable(
    ("ptz_cmd", "PTZCmd", as_raw),
    ("preset_name", "PTZCmdParams/PresetName", as_raw),
    ("cruise_track_name", "PTZCmdParams/CruiseTrackName", as_raw),
    ("tele_boot", "TeleBoot", as_present),
    ("record_cmd", "RecordCmd", as_raw),
    ("stream_number", "StreamNumber", as_int),
    ("guard_cmd", "GuardCmd", as_raw),
    ("alarm_cmd", "AlarmCmd", as_raw),
    # "IFameCmd" is the standard's spelling (A.2.3 a); some platforms correct it.
    ("iframe", "IFameCmd", as_present),
    ("iframe", "IFrameCmd", as_present),
    ("format_sd_card", "FormatSDCard", as_int),
    ("target_track", "TargetTrack", as_raw),
    ("device_id2", "DeviceID2", as_raw),
)
_CONTROL_INFO_FIELDS = FieldTable(
    ("control_priority", "ControlPriority", as_int),
    ("alarm_method", "AlarmMethod", as_raw),
    ("alarm_type", "AlarmType", as_raw),
)

CONTROL_ANSWERS: dict[str, bool] = {
    # §9.3.1: the device answers these with the 200 to the MESSAGE only ...
    "PTZCmd": False,
    "TeleBoot": False,
    "IFameCmd": False,
    "IFrameCmd": False,
    "DragZoomIn": False,
    "DragZoomOut": False,
    # ... to which the 2022 edition adds precise PTZ, storage card formatting and target tracking.
    "PTZPreciseCtrl": False,
    "FormatSDCard": False,
    "TargetTrack": False,
    # These get a Response carrying Result after the 200.
    "RecordCmd": True,
    "GuardCmd": True,
    "AlarmCmd": True,
    "HomePosition": True,
    "DeviceUpgrade": True,
}
"""DeviceControl command element -> whether the device sends a Response with Result (§9.3.1). Waiting
for a Response that never comes turns a working camera into a timeout."""

_ANSWERED_NOTIFIES = frozenset({"Alarm", "Broadcast"})


def expects_response(doc: ManscdpDocument) -> bool:
    """Whether a MANSCDP Response follows the 200 to the MESSAGE carrying `doc`: DeviceControl by
    CONTROL_ANSWERS (any answered command in the body), DeviceConfig and every Query yes, the Alarm and
    Broadcast notifications yes (A.2.6 b, l), other notifications and Responses no."""
    root, cmd_type = doc.root, doc.cmd_type
    if root == "Control":
        if cmd_type != "DeviceControl":
            return True
        return any(CONTROL_ANSWERS.get(child.tag, False) for child in doc.element)
    if root == "Query":
        return True
    if root == "Notify":
        return cmd_type in _ANSWERED_NOTIFIES
    return False


@dataclass(slots=True)
class DeviceControl:
    """A DeviceControl command (A.2.3 a and its 2022 additions), so that a boundary policy can tell PTZ
    from reboot. `target_track` is Auto, Manual or Stop; a manual track names the area to follow in
    `target_area` and may name a detail camera in `device_id2`."""

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
    preset_name: str | None = None
    cruise_track_name: str | None = None
    stream_number: int | None = None
    ptz_precise: PtzPrecise | None = None
    device_upgrade: DeviceUpgrade | None = None
    format_sd_card: int | None = None
    target_track: str | None = None
    device_id2: str | None = None
    target_area: DragZoom | None = None

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> DeviceControl:
        e = doc.element
        zoom_in = e.find("DragZoomIn")
        zoom_out = e.find("DragZoomOut")
        home = e.find("HomePosition")
        precise = e.find("PTZPreciseCtrl")
        upgrade = e.find("DeviceUpgrade")
        area = e.find("TargetArea")
        return cls(
            doc.sn,
            doc.device_id,
            drag_zoom_in=DragZoom.from_element(zoom_in) if zoom_in is not None else None,
            drag_zoom_out=DragZoom.from_element(zoom_out) if zoom_out is not None else None,
            home_position=HomePosition.from_element(home) if home is not None else None,
            ptz_precise=PtzPrecise.from_element(precise) if precise is not None else None,
            device_upgrade=DeviceUpgrade.from_element(upgrade) if upgrade is not None else None,
            target_area=DragZoom.from_element(area) if area is not None else None,
            **read_fields(e, _CONTROL_FIELDS),
            **read_fields(e.find("Info"), _CONTROL_INFO_FIELDS),
        )


# ---------------------------------------------------------------------------------------------------------
# Queries and subscriptions the gateway receives, and the 2022 query answers

_ALARM_QUERY_FIELDS = FieldTable(
    ("start_priority", "StartAlarmPriority", as_int),
    ("end_priority", "EndAlarmPriority", as_int),
    ("method", "AlarmMethod", as_raw),
    ("alarm_type", "AlarmType", as_raw),
    ("start_time", "StartAlarmTime", as_raw),
    ("end_time", "EndAlarmTime", as_raw),
)


@dataclass(slots=True)
class AlarmQuery:
    """An Alarm query or subscription body (A.2.4 e): priorities 0 (all) to 4, methods as digits ("12"
    is telephone or device, "0" all), the alarm type, and the time window."""

    sn: int | None
    device_id: str
    start_priority: int | None
    end_priority: int | None
    method: str | None
    alarm_type: str | None
    start_time: str | None
    end_time: str | None

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> AlarmQuery:
        return cls(doc.sn, doc.device_id, **read_fields(doc.element, _ALARM_QUERY_FIELDS))


_INTERVAL_FIELDS = FieldTable(("interval", "Interval", as_int))


@dataclass(slots=True)
class MobilePositionQuery:
    """A MobilePosition query or subscription body (A.2.4 h); the report interval defaults to 5 s."""

    sn: int | None
    device_id: str
    interval: int | None

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> MobilePositionQuery:
        return cls(doc.sn, doc.device_id, **read_fields(doc.element, _INTERVAL_FIELDS))


_BROADCAST_FIELDS = FieldTable(("source_id", "SourceID", as_id), ("target_id", "TargetID", as_id))


@dataclass(slots=True)
class BroadcastNotify:
    """Voice broadcast invitation (A.2.5 d): the audio source (the platform) and the output device; the
    device answers with a Broadcast Response carrying Result, then INVITEs the source for audio."""

    sn: int | None
    source_id: str
    target_id: str

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> BroadcastNotify:
        return cls(doc.sn, **read_fields(doc.element, _BROADCAST_FIELDS))


_PTZ_POSITION_FIELDS = FieldTable(
    ("result", "Result", as_raw),
    ("pan", "Pan", as_float),
    ("tilt", "Tilt", as_float),
    ("zoom", "Zoom", as_float),
    ("horizontal_field_angle", "HorizontalFieldAngle", as_float),
    ("vertical_field_angle", "VerticalFieldAngle", as_float),
    ("max_view_distance", "MaxViewDistance", as_float),
)


@dataclass(slots=True)
class PtzPositionResponse:
    """2022 PTZPosition answer: the precise position (as in PTZPreciseCtrl) and the field of view.
    Read from leaves: devices put the values directly under the root or inside a group."""

    sn: int | None
    device_id: str
    result: str | None
    pan: float | None
    tilt: float | None
    zoom: float | None
    horizontal_field_angle: float | None
    vertical_field_angle: float | None
    max_view_distance: float | None

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> PtzPositionResponse:
        return cls(doc.sn, doc.device_id, **read_fields(doc.element, _PTZ_POSITION_FIELDS, Scope.LEAVES))


@dataclass(slots=True)
class HomePositionResponse:
    """2022 HomePositionQuery answer: the home position settings (absent when the device has none)."""

    sn: int | None
    device_id: str
    result: str | None
    home_position: HomePosition | None

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> HomePositionResponse:
        home = doc.element.find("HomePosition")
        return cls(
            doc.sn,
            doc.device_id,
            home_position=HomePosition.from_element(home) if home is not None else None,
            **read_fields(doc.element, _RESULT_FIELDS),
        )


_CRUISE_TRACK_FIELDS = FieldTable(("number", "Number", as_int), ("name", "Name", as_raw))


@dataclass(slots=True)
class CruiseTrack:
    number: int | None
    name: str | None


_LIST_ANSWER_FIELDS = FieldTable(
    ("result", "Result", as_raw), ("name", "Name", as_raw), ("sum_num", "SumNum", as_int)
)


@dataclass(slots=True)
class CruiseTrackListResponse:
    """2022 CruiseTrackListQuery answer: the device's cruise tracks by number (the cruise group of A.3.5)."""

    sn: int | None
    device_id: str
    result: str | None
    sum_num: int | None
    num: int | None
    tracks: list[CruiseTrack]

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> CruiseTrackListResponse:
        num, items = _list(doc.element, "CruiseTrackList")
        fields = read_fields(doc.element, _LIST_ANSWER_FIELDS)
        tracks = [CruiseTrack(**read_fields(item, _CRUISE_TRACK_FIELDS)) for item in items]
        return cls(doc.sn, doc.device_id, fields["result"], fields["sum_num"], num, tracks)


_CRUISE_POINT_FIELDS = FieldTable(
    ("preset_index", "PresetIndex", as_int), ("stay_time", "StayTime", as_int), ("speed", "Speed", as_int)
)


@dataclass(slots=True)
class CruisePoint:
    preset_index: int | None
    stay_time: int | None
    speed: int | None


@dataclass(slots=True)
class CruiseTrackResponse:
    """2022 CruiseTrackQuery answer: one track's name and its points (preset, dwell seconds, speed)."""

    sn: int | None
    device_id: str
    result: str | None
    name: str | None
    sum_num: int | None
    num: int | None
    points: list[CruisePoint]

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> CruiseTrackResponse:
        num, items = _list(doc.element, "CruisePointList")
        points = [CruisePoint(**read_fields(item, _CRUISE_POINT_FIELDS)) for item in items]
        return cls(
            doc.sn, doc.device_id, num=num, points=points, **read_fields(doc.element, _LIST_ANSWER_FIELDS)
        )


_SD_CARD_FIELDS = FieldTable(
    ("id", "ID", as_int),
    ("hdd_name", "HddName", as_raw),
    ("status", "Status", as_raw),
    ("format_progress", "FormatProgress", as_int),
    ("capacity", "Capacity", as_int),
    ("free_space", "FreeSpace", as_int),
)


@dataclass(slots=True)
class SdCard:
    """One storage card: number, name, status as the device words it, format progress (percent),
    capacity and free space (MB)."""

    id: int | None
    hdd_name: str | None
    status: str | None
    format_progress: int | None
    capacity: int | None
    free_space: int | None


@dataclass(slots=True)
class SdCardStatusResponse:
    """2022 SDCardStatus answer."""

    sn: int | None
    device_id: str
    result: str | None
    sum_num: int | None
    num: int | None
    cards: list[SdCard]

    @classmethod
    def from_document(cls, doc: ManscdpDocument) -> SdCardStatusResponse:
        num, items = _list(doc.element, "SDCardList")
        fields = read_fields(doc.element, _LIST_ANSWER_FIELDS)
        cards = [SdCard(**read_fields(item, _SD_CARD_FIELDS)) for item in items]
        return cls(doc.sn, doc.device_id, fields["result"], fields["sum_num"], num, cards)


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
    | DeviceConfig
    | AlarmQuery
    | MobilePositionQuery
    | BroadcastNotify
    | PtzPositionResponse
    | HomePositionResponse
    | CruiseTrackListResponse
    | CruiseTrackResponse
    | SdCardStatusResponse
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
    ("Control", "DeviceConfig"): DeviceConfig.from_document,
    ("Query", "Alarm"): AlarmQuery.from_document,
    ("Query", "MobilePosition"): MobilePositionQuery.from_document,
    ("Notify", "Broadcast"): BroadcastNotify.from_document,
    ("Response", "PTZPosition"): PtzPositionResponse.from_document,
    ("Response", "HomePositionQuery"): HomePositionResponse.from_document,
    ("Response", "CruiseTrackListQuery"): CruiseTrackListResponse.from_document,
    ("Response", "CruiseTrackQuery"): CruiseTrackResponse.from_document,
    ("Response", "SDCardStatus"): SdCardStatusResponse.from_document,
}


def typed(doc: ManscdpDocument) -> TypedMessage | None:
    """The typed form of a document, or None for commands without one (the tree still has everything)."""
    convert = _TYPED.get((doc.root, doc.cmd_type))
    if convert is not None:
        return convert(doc)
    if doc.root == "Response" and doc.element.find("Result") is not None:
        return ResultResponse.from_document(doc)
    return None

"""Building MANSCDP documents: `build` for any command, and one function per command the gateway or the
simulator sends (queries, controls, answers, notifications). What is built is what goes on the wire:
field order follows the standard's tables, absent optional fields are left out.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from gbgw.gb28181.manscdp.document import ROOTS, ManscdpDocument
from gbgw.gb28181.manscdp.fields import Field, append_field, format_time
from gbgw.gb28181.manscdp.messages import (
    AlarmStatusItem,
    BasicParam,
    CatalogItem,
    ConfigSection,
    DeviceUpgrade,
    DragZoom,
    HomePosition,
    PtzPrecise,
    RecordItem,
    SnapShotConfig,
)
from gbgw.gb28181.manscdp.ptz import PtzCmd


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
    append_field(element, "CmdType", cmd_type)
    append_field(element, "SN", sn)
    append_field(element, "DeviceID", device_id)
    pairs = fields.items() if isinstance(fields, Mapping) else fields
    for tag, value in pairs:
        append_field(element, tag, value)
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


def response_record_info(
    sn: int, device_id: str, name: str, items: Sequence[RecordItem], *, sum_num: int | None = None
) -> ManscdpDocument:
    """One RecordInfo answer message (A.2.6 h); `sum_num` is the total over all messages (default: these)."""
    record_list = ET.Element("RecordList", Num=str(len(items)))
    record_list.extend(item.to_element() for item in items)
    total = len(items) if sum_num is None else sum_num
    return build(
        "Response", "RecordInfo", sn, device_id, [("Name", name), ("SumNum", total), ("RecordList", record_list)]
    )


def query_preset(sn: int, device_id: str) -> ManscdpDocument:
    return build("Query", "PresetQuery", sn, device_id)


def query_config_download(sn: int, device_id: str, config_types: str | Sequence[str]) -> ManscdpDocument:
    """ConfigType is BasicParam, VideoParamOpt, SVACEncodeConfig, SVACDecodeConfig, or several joined by '/'."""
    joined = config_types if isinstance(config_types, str) else "/".join(config_types)
    return build("Query", "ConfigDownload", sn, device_id, [("ConfigType", joined)])


def query_mobile_position(sn: int, device_id: str, *, interval: int | None = None) -> ManscdpDocument:
    """MobilePosition query, also the body of a MobilePosition SUBSCRIBE (report every `interval` s)."""
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
    """Alarm query, also the body of an Alarm SUBSCRIBE (A.2.4 e); priority 0 and method "0" mean all."""
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
    sn: int,
    device_id: str,
    ptz_cmd: PtzCmd | str,
    *,
    control_priority: int | None = None,
    preset_name: str | None = None,
    cruise_track_name: str | None = None,
) -> ManscdpDocument:
    """PTZCmd (A.2.3 a); the 2022 PTZCmdParams name a preset being set or a cruise track (32 bytes)."""
    code = ptz_cmd.serialize() if isinstance(ptz_cmd, PtzCmd) else ptz_cmd
    params = None
    if preset_name is not None or cruise_track_name is not None:
        params = {"PresetName": preset_name, "CruiseTrackName": cruise_track_name}
    info = None if control_priority is None else {"ControlPriority": control_priority}
    return build(
        "Control", "DeviceControl", sn, device_id, [("PTZCmd", code), ("PTZCmdParams", params), ("Info", info)]
    )


def control_tele_boot(sn: int, device_id: str) -> ManscdpDocument:
    return build("Control", "DeviceControl", sn, device_id, [("TeleBoot", "Boot")])


def control_record(
    sn: int, device_id: str, *, record: bool, stream_number: int | None = None
) -> ManscdpDocument:
    """Start or stop manual recording; 2022 `stream_number` 0 main (the default), 1 sub, ..."""
    fields: list[tuple[str, Field]] = [
        ("RecordCmd", "Record" if record else "StopRecord"),
        ("StreamNumber", stream_number),
    ]
    return build("Control", "DeviceControl", sn, device_id, fields)


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


def control_ptz_precise(sn: int, device_id: str, position: PtzPrecise) -> ManscdpDocument:
    """2022 precise PTZ: move to absolute pan/tilt/zoom; values left None are not sent."""
    return build("Control", "DeviceControl", sn, device_id, [("PTZPreciseCtrl", dict(position.fields()))])


def control_device_upgrade(sn: int, device_id: str, upgrade: DeviceUpgrade) -> ManscdpDocument:
    """2022 software upgrade; the device answers Result, then a DeviceUpgradeResult for the session."""
    return build("Control", "DeviceControl", sn, device_id, [("DeviceUpgrade", dict(upgrade.fields()))])


def control_format_sd_card(sn: int, device_id: str, card: int = 1) -> ManscdpDocument:
    """2022 storage card formatting of card number `card`; progress shows in SDCardStatus."""
    return build("Control", "DeviceControl", sn, device_id, [("FormatSDCard", card)])


TARGET_TRACK_MODES = ("Auto", "Manual", "Stop")


def control_target_track(
    sn: int,
    device_id: str,
    mode: str,
    *,
    device_id2: str | None = None,
    area: DragZoom | None = None,
) -> ManscdpDocument:
    """2022 target tracking: Auto, Manual (follow the target in `area`, drawn like a drag-zoom box,
    optionally with detail camera `device_id2`) or Stop."""
    if mode not in TARGET_TRACK_MODES:
        raise ValueError(f"target track mode must be one of {TARGET_TRACK_MODES}, not {mode!r}")
    fields: list[tuple[str, Field]] = [
        ("TargetTrack", mode),
        ("DeviceID2", device_id2),
        ("TargetArea", None if area is None else dict(area.fields())),
    ]
    return build("Control", "DeviceControl", sn, device_id, fields)


def device_config(
    sn: int, device_id: str, sections: Mapping[str, Field] | Sequence[ConfigSection]
) -> ManscdpDocument:
    """DeviceConfig (A.2.3 b) from typed sections, e.g. [BasicParam(heart_beat_interval=60)], or from a
    mapping, e.g. {"BasicParam": {"Name": ..., "HeartBeatInterval": 60}}."""
    if isinstance(sections, Mapping):
        return build("Control", "DeviceConfig", sn, device_id, sections)
    return build("Control", "DeviceConfig", sn, device_id, [(s.TAG, s.to_element()) for s in sections])


def config_basic_param(
    sn: int,
    device_id: str,
    *,
    name: str | None = None,
    expiration: int | None = None,
    heart_beat_interval: int | None = None,
    heart_beat_count: int | None = None,
) -> ManscdpDocument:
    """DeviceConfig of BasicParam: device name, registration expiry and heartbeat interval (s), and
    the missed heartbeats that make the device offline; only the values given are sent."""
    basic = BasicParam(name, expiration, heart_beat_interval, heart_beat_count)
    return device_config(sn, device_id, [basic])


def config_snap_shot(
    sn: int, device_id: str, *, snap_num: int, interval: int, upload_url: str, session_id: str
) -> ManscdpDocument:
    """2022 image capture (SnapShotConfig): `snap_num` 1-10 images, `interval` seconds apart, uploaded
    to `upload_url` under `session_id` (32-128 characters)."""
    if not 1 <= snap_num <= 10:
        raise ValueError(f"snap_num {snap_num} outside 1-10")
    if not 32 <= len(session_id) <= 128:
        raise ValueError(f"session_id of {len(session_id)} characters, not 32-128")
    return device_config(sn, device_id, [SnapShotConfig(snap_num, interval, upload_url, session_id)])


def query_ptz_position(sn: int, device_id: str) -> ManscdpDocument:
    """2022 PTZ precise position query (PTZPosition)."""
    return build("Query", "PTZPosition", sn, device_id)


def query_home_position(sn: int, device_id: str) -> ManscdpDocument:
    """2022 home position query (HomePositionQuery)."""
    return build("Query", "HomePositionQuery", sn, device_id)


def query_cruise_track_list(sn: int, device_id: str) -> ManscdpDocument:
    """2022 cruise track list query (CruiseTrackListQuery)."""
    return build("Query", "CruiseTrackListQuery", sn, device_id)


def query_cruise_track(sn: int, device_id: str, number: int) -> ManscdpDocument:
    """2022 query of one cruise track by its number (CruiseTrackQuery)."""
    return build("Query", "CruiseTrackQuery", sn, device_id, [("Number", number)])


def query_sd_card_status(sn: int, device_id: str) -> ManscdpDocument:
    """2022 storage card status query (SDCardStatus)."""
    return build("Query", "SDCardStatus", sn, device_id)


def response_result(cmd_type: str, sn: int | None, device_id: str, *, ok: bool = True) -> ManscdpDocument:
    """The bare answer `<Response><CmdType/><SN/><DeviceID/><Result>OK|ERROR</Result></Response>`."""
    return build("Response", cmd_type, sn, device_id, [("Result", "OK" if ok else "ERROR")])


def catalog_page(
    root: str, sn: int, device_id: str, elements: Sequence[ET.Element], sum_num: int
) -> ManscdpDocument:
    """A Catalog Response or Notify holding these already built <Item> elements."""
    device_list = ET.Element("DeviceList", Num=str(len(elements)))
    device_list.extend(elements)
    return build(root, "Catalog", sn, device_id, [("SumNum", sum_num), ("DeviceList", device_list)])


def _catalog_document(
    root: str, sn: int, device_id: str, items: Sequence[CatalogItem], sum_num: int | None
) -> ManscdpDocument:
    total = len(items) if sum_num is None else sum_num
    return catalog_page(root, sn, device_id, [item.to_element() for item in items], total)


def response_catalog(
    sn: int, device_id: str, items: Sequence[CatalogItem], *, sum_num: int | None = None
) -> ManscdpDocument:
    """One Catalog answer message; `sum_num` is the total over all messages (default: these items)."""
    return _catalog_document("Response", sn, device_id, items, sum_num)


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
            append_field(alarms, "Item", {"DeviceID": alarm.device_id, "DutyStatus": alarm.duty_status})
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
        append_field(info, "DeviceID", fault)
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

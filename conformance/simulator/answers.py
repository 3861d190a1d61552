"""What a simulated device answers to each MANSCDP query, as documents: no sockets, no clock of its own.

The device's SIP side (`devices.py`) sends each list of pages one MESSAGE at a time. The contents follow
the captures in shared/interop: catalogs split over several pages (`catalog_page_size`), RecordInfo spread
evenly over the time asked and paged like Hikvision (each page carries the full SumNum), PresetQuery, and
ConfigDownload with BasicParam as a Hikvision IPC sends it (its SIP server and password included, which a
gateway relaying it must not pass on).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime, timedelta

from gbgw.conformance.simulator.config import MANUFACTURER, PLACES, SimulatorConfig, channel_name
from gbgw.gb28181.manscdp import (
    AlarmStatusItem,
    CatalogItem,
    Field,
    ManscdpDocument,
    build,
    catalog_pages,
    encode_body,
    format_time,
    notify_keepalive,
    parse_time,
    response_device_info,
    response_device_status,
)


def catalog_items(cfg: SimulatorConfig, number: int, channel: int, event: str | None = None) -> list[CatalogItem]:
    """The channels of device `number` (all of them for channel 0), as ON cameras under the device."""
    device_id = cfg.device_id(number)
    wanted = range(1, cfg.channels + 1) if channel == 0 else (channel,)
    return [
        CatalogItem(
            cfg.channel_id(number, c),
            event=event,
            name=channel_name(c),
            manufacturer=MANUFACTURER,
            model="SIM-IPC",
            owner="0",
            civil_code=device_id[:6],
            address=PLACES[(c - 1) % len(PLACES)],
            parental=0,
            parent_id=device_id,
            safety_way=0,
            register_way=1,
            secrecy=0,
            status="ON",
            ptz_type=3,
        )
        for c in wanted
    ]


def catalog(cfg: SimulatorConfig, number: int, channel: int, sn: int, query_id: str) -> list[ManscdpDocument]:
    pages = catalog_pages(sn, query_id, catalog_items(cfg, number, channel), cfg.catalog_page_size)
    if "sumnum" in cfg.faults:
        for page in pages:
            sum_num = page.element.find("SumNum")
            if sum_num is not None and sum_num.text is not None:
                sum_num.text = str(int(sum_num.text) + 1)
    return pages


def device_info(cfg: SimulatorConfig, number: int, sn: int, query_id: str) -> ManscdpDocument:
    return response_device_info(
        sn, query_id, device_name=f"SIM {number}", manufacturer=MANUFACTURER,
        model="SIM-NVR" if cfg.channels > 1 else "SIM-IPC", firmware="V1.0.0", channel=cfg.channels,
    )


def device_status(cfg: SimulatorConfig, number: int, sn: int, query_id: str, now: datetime) -> ManscdpDocument:
    """Online and recording off, with the device's alarm input on duty as the captures show."""
    return response_device_status(
        sn, query_id, online=True, status_ok=True, encode=True, record=False, device_time=now,
        alarm_status=[AlarmStatusItem(cfg.alarm_input_id(number), "ONDUTY")],
    )


def recorded(cfg: SimulatorConfig, start: datetime, end: datetime, now: datetime) -> list[tuple[datetime, datetime]]:
    """The recordings a query for ``start``-``end`` finds: with `record_window`, those of the last
    window before ``now`` (whole seconds) that overlap it; otherwise `records` spread over it."""
    if not cfg.records or end <= start:
        return []
    if not cfg.record_window:
        step = (end - start) / cfg.records
        return [(start + step * i, start + step * (i + 1)) for i in range(cfg.records)]
    last = now.replace(microsecond=0)
    step = timedelta(seconds=cfg.record_window) / cfg.records
    first = last - step * cfg.records
    spans = [(first + step * i, first + step * (i + 1)) for i in range(cfg.records)]
    return [(a, b) for a, b in spans if a < end and b > start]


def record_info(
    cfg: SimulatorConfig, number: int, channel: int, query: ManscdpDocument, now: datetime | None = None
) -> list[ManscdpDocument]:
    """The recordings of `recorded` (none when the times asked cannot be read), in pages of
    `record_page_size` that each carry the full SumNum, as Hikvision answers; times written shifted by
    `record_shift`. ``now`` is the device's clock (local, naive)."""
    sn = query.sn
    start = parse_time(query.text("StartTime"))
    end = parse_time(query.text("EndTime"))
    spans = recorded(cfg, start, end, now or datetime.now()) if start is not None and end is not None else []
    count = len(spans)
    shift = timedelta(seconds=cfg.record_shift)
    kind = query.text("Type") or "time"
    kind = kind if kind in ("time", "alarm", "manual") else "time"
    name = channel_name(channel) if channel else f"SIM {number}"
    items: list[ET.Element] = []
    for index, (begin, finish) in enumerate(spans):
        item = ET.Element("Item")
        for tag, value in (
            ("DeviceID", query.device_id),
            ("Name", name),
            ("FilePath", f"/record/{query.device_id}/{index + 1:05d}.mp4"),
            ("Address", PLACES[(max(channel, 1) - 1) % len(PLACES)]),
            ("StartTime", format_time(begin + shift)),
            ("EndTime", format_time(finish + shift)),
            ("Secrecy", "0"),
            ("Type", kind),
            ("FileSize", str(1_048_576 * (index + 1))),
        ):
            ET.SubElement(item, tag).text = value
        items.append(item)
    size = cfg.record_page_size
    pages = []
    for first in range(0, max(count, 1), size):
        chunk = items[first : first + size]
        records = ET.Element("RecordList", Num=str(len(chunk)))
        records.extend(chunk)
        pages.append(build("Response", "RecordInfo", sn, query.device_id,
                           [("Name", name), ("SumNum", count), ("RecordList", records)]))
    if "record-pages" in cfg.faults:
        pages.pop()
    return pages


def presets(cfg: SimulatorConfig, sn: int, query_id: str) -> ManscdpDocument:
    listed = ET.Element("PresetList", Num=str(cfg.presets))
    for index in range(1, cfg.presets + 1):
        item = ET.SubElement(listed, "Item")
        ET.SubElement(item, "PresetID").text = str(index)
        ET.SubElement(item, "PresetName").text = f"预置位{index}"
    return build("Response", "PresetQuery", sn, query_id, [("PresetList", listed)])


def config_download(cfg: SimulatorConfig, number: int, channel: int, query: ManscdpDocument) -> ManscdpDocument:
    """BasicParam (its SIP server's address and its password included) and VideoParamOpt, as asked."""
    wanted = (query.text("ConfigType") or "BasicParam").split("/")
    sections: list[tuple[str, Field]] = [("Result", "OK")]
    if "BasicParam" in wanted:
        sections.append(("BasicParam", {
            "Name": channel_name(channel) if channel else f"SIM {number}",
            "DeviceID": cfg.device_id(number),
            "SIPServerID": cfg.server_id,
            "SIPServerIP": cfg.server_host,
            "SIPServerPort": cfg.server_port,
            "DomainName": cfg.domain,
            "Expiration": cfg.expires,
            "Password": cfg.password,
            "HeartBeatInterval": int(cfg.keepalive_interval),
            "HeartBeatCount": cfg.keepalive_misses,
            "PositionCapability": 0,
        }))
    if "VideoParamOpt" in wanted:
        sections.append(("VideoParamOpt", {"DownloadSpeed": "1/2/4", "Resolution": "6/5"}))
    return build("Response", "ConfigDownload", query.sn, query.device_id, sections)


def control_answered(doc: ManscdpDocument) -> bool:
    """Whether the standard has the device answer this control with a Result (9.3.1): DeviceConfig, and
    record, guard, alarm reset, home position and (2022) upgrade commands; not PTZ, TeleBoot, IFameCmd,
    DragZoom, precise PTZ, card formatting or target tracking."""
    if doc.cmd_type == "DeviceConfig":
        return True
    answered = ("RecordCmd", "GuardCmd", "AlarmCmd", "HomePosition", "DeviceUpgrade")
    return any(doc.element.find(tag) is not None for tag in answered)


def keepalive_template(encoding: str) -> bytes:
    """The keepalive body as `bytes % (sn, device_id)`: built once by the MANSCDP builder, so the hot path
    formats bytes instead of building and serializing an XML tree per keepalive."""
    sn_mark, id_mark = 987654321, "DEVICEIDMARK"
    body = encode_body(notify_keepalive(sn_mark, id_mark), encoding).replace(b"%", b"%%")
    template = body.replace(f">{sn_mark}<".encode(), b">%d<").replace(f">{id_mark}<".encode(), b">%s<")
    assert template.count(b"%d") == 1 and template.count(b"%s") == 1, "keepalive builder output changed"
    return template

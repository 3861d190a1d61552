"""MANSCDP bodies (GB/T 28181-2016 Annex A): read what devices and platforms send, build what we send.

Every body becomes a `ManscdpDocument`: its root (Query, Control, Notify or Response), CmdType, SN and
DeviceID, the whole tree as an `xml.etree.ElementTree.Element`, the charset to answer in, and a list of
what had to be repaired to read it (for the log). `typed()` turns the commands the gateway acts on into
slotted dataclasses; anything else stays usable through the tree.

One module per job:

* `text`: charsets and a DTD-free tolerant XML reader; knows nothing of MANSCDP.
* `document`: the envelope: `parse`, `encode_body`, `ManscdpDocument`, `ManscdpError`.
* `fields`: values: tolerant converters, the declarative field-table reader, and writing one value.
* `messages`: the typed messages, each reading its fields from one table.
* `ptz`: the PTZCmd code (A.3).
* `builders`: the documents the gateway and the simulator send.
* `paging`: catalog answers split by item count or encoded size.

Safety: no DTD is ever processed (see text), bodies over `max_size` are refused before decoding, and
nothing read from the network raises anything but ManscdpError.
"""

from gbgw.gb28181.manscdp.builders import (
    build,
    control_alarm_reset,
    control_drag_zoom,
    control_guard,
    control_home_position,
    control_iframe,
    control_ptz,
    control_record,
    control_tele_boot,
    device_config,
    notify_alarm,
    notify_broadcast,
    notify_catalog,
    notify_keepalive,
    notify_media_status,
    query_alarm,
    query_catalog,
    query_config_download,
    query_device_info,
    query_device_status,
    query_mobile_position,
    query_preset,
    query_record_info,
    response_catalog,
    response_device_info,
    response_device_status,
    response_result,
)
from gbgw.gb28181.manscdp.document import (
    DEFAULT_MAX_SIZE,
    ROOTS,
    ManscdpDocument,
    ManscdpError,
    encode_body,
    parse,
    parse_text,
)
from gbgw.gb28181.manscdp.fields import Field, format_time, is_placeholder, parse_time
from gbgw.gb28181.manscdp.messages import (
    AlarmNotify,
    AlarmStatusItem,
    CatalogItem,
    CatalogNotify,
    CatalogResponse,
    ConfigDownloadResponse,
    DeviceControl,
    DeviceInfoResponse,
    DeviceStatusResponse,
    DragZoom,
    HomePosition,
    KeepaliveNotify,
    MediaStatusNotify,
    MobilePositionNotify,
    PresetItem,
    PresetQueryResponse,
    RecordInfoResponse,
    RecordItem,
    ResultResponse,
    typed,
)
from gbgw.gb28181.manscdp.paging import catalog_pages, catalog_pages_within
from gbgw.gb28181.manscdp.ptz import PtzCmd

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
    "Field",
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

"""The shapes of the API's JSON answers, as msgspec Structs: the OpenAPI document's response schemas.

The handlers still build their answers as dicts (``web.json_response(..., dumps=dumps)``), so every field
name and value stays exactly what clients read today; these Structs only declare that shape, through
``route_doc(answer=...)``. ``forbid_unknown_fields`` makes each schema closed (``additionalProperties:
false``) and a field without a default is required, so the tests that validate real answers against
the document catch a field added to a handler and not here, or the reverse.
"""

from __future__ import annotations

from typing import Any

import msgspec

# -- shared pieces --------------------------------------------------------------------------------------


class Closed(msgspec.Struct, forbid_unknown_fields=True):
    """Base of every answer Struct: its schema lists every field the answer has, and no other."""


class IdInfo(Closed):
    """What a 20-digit GB/T 28181 ID says (null for an ID that is not one)."""

    industry: str
    industry_name: str
    type: str
    type_name: str
    network: str
    network_name: str
    civil_code: str


class DeviceWarning(Closed):
    kind: str
    detail: str
    at: str | None


class Stopped(Closed):
    id: str
    state: str


# -- health ----------------------------------------------------------------------------------------------


class HealthComponent(Closed):
    status: str
    """ok or degraded"""
    reason: str


class HealthAnswer(Closed):
    status: str
    """ok, or degraded when any component is"""
    components: dict[str, HealthComponent]
    devices: int
    online: int


# -- devices and channels --------------------------------------------------------------------------------


class DeviceAnswer(Closed):
    id: str
    name: str | None
    manufacturer: str | None
    model: str | None
    firmware: str | None
    online: bool
    registered: bool
    transport: str
    address: str | None
    registered_at: str | None
    expires_at: str | None
    last_keepalive: str | None
    channel_count: int
    catalog_partial: bool
    stream_transport: str | None
    id_info: IdInfo | None
    warnings: list[DeviceWarning]
    shared_channel_ids: list[str]
    """The device's channel IDs another device reports too (play and control those by device)."""


class DevicePage(Closed):
    """One page (with ``?limit=``); ``next`` is the cursor of the following page, null on the last."""

    items: list[DeviceAnswer]
    next: str | None


class ChannelAnswer(Closed):
    id: str
    device_id: str
    name: str | None
    parent_id: str | None
    status: str
    manufacturer: str | None
    model: str | None
    civil_code: str | None
    address: str | None
    longitude: float | None
    latitude: float | None
    ptz_type: int | None
    business_group_id: str | None
    id_info: IdInfo | None


class ChannelPage(Closed):
    items: list[ChannelAnswer]
    next: str | None


DeviceList = list[DeviceAnswer] | DevicePage
"""The whole list without ``?limit=``, one page with it."""
ChannelList = list[ChannelAnswer] | ChannelPage


class CatalogRefreshed(Closed):
    """The 200 once the catalog came in (``?wait=false`` answers 202 ``{"device_id", "state": "requested"}``
    at once instead)."""

    device_id: str
    complete: bool
    sum_num: int | None
    received: int
    channel_count: int


class AlarmInputState(Closed):
    id: str
    state: str | None


class DeviceStatusAnswer(Closed):
    device_id: str
    online: bool | None
    result: str | None
    status: str | None
    reason: str | None
    encode: str | None
    record: str | None
    device_time: str | None
    alarms: list[AlarmInputState]


# -- sessions --------------------------------------------------------------------------------------------


class SessionDeviceLeg(Closed):
    transport: str
    ssrc: str
    ssrc_received: str | None
    """What the device really sends: many ignore the offered y=."""
    local_port: int
    packets_in: int
    bytes_in: int
    lost: int
    reordered: int
    dropped: dict[str, int]
    age: float


class SessionAnswer(Closed):
    """A receiver of a live stream (an API viewer or an upper)."""

    id: str
    owner: str
    channel_id: str
    device_id: str
    state: str
    ended: str | None
    transport: str
    receiver: str
    local_port: int
    ssrc: str
    age: float
    packets_out: int
    bytes_out: int
    device: SessionDeviceLeg


class HistoryDeviceLeg(Closed):
    transport: str
    ssrc: str
    ssrc_received: str | None
    local_port: int
    packets_in: int
    bytes_in: int
    lost: int


class HistorySessionAnswer(Closed):
    """A playback or download session."""

    id: str
    kind: str
    channel_id: str
    device_id: str
    state: str
    reason: str | None
    """Why it ended, once it has."""
    detail: str | None
    start: str
    end: str
    position: float
    """Seconds from the range's start."""
    scale: float | None
    paused: bool
    progress: float | None
    speed: int | None
    filesize: int | None
    transport: str
    receiver: str | None
    local_port: int | None
    ssrc: str
    packets_out: int
    bytes_out: int
    device: HistoryDeviceLeg


class RecordAnswer(Closed):
    channel_id: str
    start: str | None
    end: str | None
    type: str | None
    name: str | None
    file_path: str | None
    size: int | None
    secrecy: int | None
    recorder_id: str | None
    address: str | None
    corrected: bool
    """The device's offset quirk was undone for this record."""


class RecordSearchAnswer(Closed):
    sum_num: int | None
    complete: bool
    records: list[RecordAnswer]


# -- upper platforms -------------------------------------------------------------------------------------


class UpstreamAnswer(Closed):
    name: str
    id: str
    address: str
    transport: str
    listen: str
    media_ip: str
    media_ports: str
    online: bool
    reason: str
    registrar: str | None
    registration_expires_in: int | None
    keepalive_failures: int
    shared_channels: int
    subscriptions: list[str]
    sessions: int
    invites: dict[str, int]
    rate_dropped: int
    refused_sources: int


class UpperSessionAnswer(Closed):
    call_id: str
    channel_id: str
    upper_channel_id: str
    state: str
    transport: str
    receiver: str | None
    ssrc: str | None
    session: str | None
    local_port: int | None
    packets_out: int
    age: float


# -- what devices reported -------------------------------------------------------------------------------


class AlarmAnswer(Closed):
    id: int | None
    device_id: str
    channel_id: str
    priority: str
    method: str
    type: str
    time: str
    description: str
    longitude: float | None
    latitude: float | None
    received_at: str | None


class PositionAnswer(Closed):
    device_id: str
    time: str
    longitude: float
    latitude: float
    speed: float | None
    direction: float | None
    altitude: float | None
    received_at: str | None


class EventSubscriptionState(Closed):
    state: str
    expires_at: str | None
    refreshes: int
    sip_status: int | None
    interval: int | None


class CatalogSubscriptionState(Closed):
    state: str
    expires_at: str | None


class SubscriptionsAnswer(Closed):
    device_id: str
    catalog: CatalogSubscriptionState | None
    alarm: EventSubscriptionState | None
    position: EventSubscriptionState | None


class SubscriptionAnswer(Closed):
    """A subscription after subscribing or ending it: its state fields beside the device and kind."""

    device_id: str
    kind: str
    state: str
    expires_at: str | None
    refreshes: int
    sip_status: int | None
    interval: int | None


# -- camera control --------------------------------------------------------------------------------------


class Preset(Closed):
    id: str
    name: str | None


class PresetsAnswer(Closed):
    device_id: str
    channel_id: str
    presets: list[Preset]


class HomePositionSettings(Closed):
    enabled: bool
    reset_time: int | None
    preset_index: int | None


class HomePositionAnswer(Closed):
    device_id: str
    channel_id: str
    result: str | None
    home_position: HomePositionSettings | None


class PtzPositionAnswer(Closed):
    device_id: str
    channel_id: str
    result: str | None
    pan: float | None
    tilt: float | None
    zoom: float | None
    horizontal_field_angle: float | None
    vertical_field_angle: float | None
    max_view_distance: float | None


class CruiseTrackName(Closed):
    number: int | None
    name: str | None


class CruiseTracksAnswer(Closed):
    device_id: str
    channel_id: str
    result: str | None
    tracks: list[CruiseTrackName]


class CruisePoint(Closed):
    preset_index: int | None
    stay_time: int | None
    speed: int | None


class CruiseTrackAnswer(Closed):
    device_id: str
    channel_id: str
    result: str | None
    number: int
    name: str | None
    points: list[CruisePoint]


class DeviceConfigAnswer(Closed):
    device_id: str
    result: str | None
    config_type: str
    sections: dict[str, dict[str, str]]
    """Each section's fields by tag, as the device wrote them (a Password never passed on)."""


class SdCard(Closed):
    id: int | None
    name: str | None
    status: str | None
    format_progress: int | None
    capacity_mb: int | None
    free_mb: int | None


class SdCardsAnswer(Closed):
    device_id: str
    result: str | None
    cards: list[SdCard]


# -- diagnostics -----------------------------------------------------------------------------------------


class FailedRegistrationAnswer(Closed):
    device_id: str
    """As claimed: unknown and malformed IDs included."""
    known: bool
    source: str
    status: int
    reason: str
    count: int
    first_at: str | None
    last_at: str | None


class TraceMessage(Closed):
    at: str | None
    direction: str
    """in or out"""
    peer: str
    first_line: str
    size: int
    truncated: bool
    text: str


class KeepaliveCounts(Closed):
    received: int
    answered: int


class TraceAnswer(Closed):
    device_id: str
    known: bool
    keepalives: KeepaliveCounts
    warnings: list[DeviceWarning]
    failed_registrations: list[FailedRegistrationAnswer]
    messages: list[TraceMessage]


# -- availability ----------------------------------------------------------------------------------------


class OfflineEpisodeAnswer(Closed):
    from_: str | None = msgspec.field(name="from")
    to: str | None
    """null while the device is still offline"""
    seconds: float
    reason: str
    back: str | None


class DeviceAvailabilityAnswer(Closed):
    device_id: str
    name: str | None
    online_fraction: float | None
    online_seconds: float
    observed_seconds: float
    offline_episodes: list[OfflineEpisodeAnswer]


class GroupAvailabilityAnswer(Closed):
    key: str
    devices: int
    online_fraction: float | None
    online_seconds: float
    observed_seconds: float
    offline_episodes: int
    device_list: list[DeviceAvailabilityAnswer]
    name: str | None = None
    """Only when grouped by industry: the industry's name."""


class AvailabilityAnswer(Closed):
    from_: str | None = msgspec.field(name="from")
    to: str | None
    group: str
    online_fraction: float | None
    groups: list[GroupAvailabilityAnswer]


# -- this document ---------------------------------------------------------------------------------------


class OpenApiInfo(msgspec.Struct):
    title: str
    version: str
    description: str


class OpenApiDocument(msgspec.Struct):
    """An OpenAPI 3.1 document (the keys its readers need; the rest as the specification writes them)."""

    openapi: str
    info: OpenApiInfo
    paths: dict[str, dict[str, dict[str, Any]]]
    components: dict[str, dict[str, Any]]


# Answers that are not JSON, by media type (``route_doc(answer=...)`` takes the mapping).
TEXT = {"text/plain": str}
HTML = {"text/html": str}
CONSOLE_ASSET = {"text/javascript": str, "text/css": str}
EVENT_STREAM = {"text/event-stream": str}
"""Server-Sent Events: ``id:``, ``event:`` (the event type) and ``data:`` (the event as JSON) lines."""
AVAILABILITY = {"application/json": AvailabilityAnswer, "text/csv": str}
"""JSON, or one CSV row per device with ``Accept: text/csv``."""


# -- voice broadcast and snapshots ------------------------------------------------------------------------


class BroadcastAnswer(Closed):
    """One voice broadcast (``/api/broadcasts/{id}``)."""

    id: str
    device_id: str
    channel_id: str
    state: str
    ended: bool
    seconds: float | None
    live: bool
    input_port: int | None
    packets_sent: int
    target: str | None
    ssrc: int
    transport: str


class SnapshotAnswer(Closed):
    """One image a device uploaded."""

    id: str
    device_id: str
    channel_id: str
    capture: str
    at: str
    size: int
    url: str

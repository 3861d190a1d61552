"""Operating cameras: PTZ, focus/iris, presets, cruise, scan, auxiliary switches, drag zoom, home position,
key frames, recording, guard, alarm reset, reboot, the 2022 additions, and live play, all addressed by
device (``/api/devices/{device_id}/channels/{channel_id}/...``).

Every command answers ``{"result": "OK"|"ERROR", "answered": "response"|"accepted", ...}``: "response"
when the device's Response carried the Result, "accepted" for the commands the standard gives only the
200 to the MESSAGE (PTZ, TeleBoot, IFrame, drag zoom, the 2022 precise PTZ, formatting, target track),
which are not waited for further. A Result ERROR is answered 502 with ``"stage": "request rejected"``;
a device that is offline, refuses the MESSAGE or stays silent gets the stage's error.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from gbgw.gb28181 import manscdp
from gbgw.gb28181.app.api import channels, schemas
from gbgw.gb28181.app.api.addressing import channel_or_404, control_services
from gbgw.gb28181.app.api.common import (
    ApiError,
    Role,
    device_or_404,
    dumps,
    media_destination,
    read_body,
    route_doc,
    services,
)
from gbgw.gb28181.devices.control import Build, ControlResult
from gbgw.gb28181.manscdp import PtzCmd
from gbgw.gb28181.media.stages import Stage

routes = web.RouteTableDef()

_CHANNEL = "/api/devices/{device_id}/channels/{channel_id}"
_DEVICE = "/api/devices/{device_id}"


class ControlAnswer(msgspec.Struct):
    result: str
    answered: str
    device_id: str
    target_id: str
    command: str
    sn: int
    ptz_cmd: str | None = None


def _answer(outcome: ControlResult, ptz: PtzCmd | None = None) -> web.Response:
    body: dict[str, Any] = {
        "result": outcome.result,
        "answered": outcome.answered.value,
        "device_id": outcome.device_id,
        "target_id": outcome.target_id,
        "command": outcome.command,
        "sn": outcome.sn,
    }
    if ptz is not None:
        body["ptz_cmd"] = ptz.serialize()
    if not outcome.ok:
        body["error"] = f"{outcome.device_id} answered {outcome.command} with Result ERROR"
        body["stage"] = Stage.REQUEST_REJECTED.value
        return web.json_response(body, status=Stage.REQUEST_REJECTED.http_status, dumps=dumps)
    return web.json_response(body, dumps=dumps)


def _code(build: Any) -> PtzCmd:
    """A typed PTZ command's code; a value out of its range is the caller's 400."""
    try:
        code: PtzCmd = build()
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return code


async def _channel_control(request: web.Request, build: Build) -> ControlResult:
    device, channel = channel_or_404(request)
    return await control_services(request).control.control(device.id, build, channel.id)


async def _ptz(request: web.Request, code: PtzCmd) -> web.Response:
    outcome = await _channel_control(request, lambda sn, target: manscdp.control_ptz(sn, target, code))
    return _answer(outcome, code)


# -- PTZ (A.3) -----------------------------------------------------------------------------------------


class PtzBody(msgspec.Struct, forbid_unknown_fields=True):
    command: Literal["left", "right", "up", "down", "upleft", "upright", "downleft", "downright",
                     "zoomin", "zoomout", "stop"]
    speed: int = 0x80


@routes.post(f"{_CHANNEL}/ptz")
@route_doc("Move, zoom or stop the channel's PTZ (speed 0-255; zoom takes its high nibble)", body=PtzBody,
           answer=ControlAnswer)
async def ptz(request: web.Request) -> web.Response:
    body = await read_body(request, PtzBody)
    return await _ptz(request, _code(lambda: manscdp.Move.named(body.command, body.speed).code()))


class FocusIrisBody(msgspec.Struct, forbid_unknown_fields=True):
    focus: Literal["near", "far", "stop"] = "stop"
    iris: Literal["open", "close", "stop"] = "stop"
    speed: int = 0x80


_FOCUS = {"near": -1, "stop": 0, "far": 1}
_IRIS = {"close": -1, "stop": 0, "open": 1}


@routes.post(f"{_CHANNEL}/focus-iris")
@route_doc("Focus near/far and iris open/close (both stop by default)", body=FocusIrisBody, answer=ControlAnswer)
async def focus_iris(request: web.Request) -> web.Response:
    body = await read_body(request, FocusIrisBody)
    return await _ptz(request, _code(lambda: PtzCmd.focus_iris(
        focus=_FOCUS[body.focus], iris=_IRIS[body.iris], focus_speed=body.speed, iris_speed=body.speed)))


class PresetBody(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["set", "call", "delete"]
    name: str | None = None
    """2022: the name a preset being set gets (PTZCmdParams/PresetName)."""


def _index(request: web.Request, key: str, low: int, high: int) -> int:
    text = request.match_info[key]
    if not text.isdigit() or not low <= int(text) <= high:
        raise ApiError(400, f"{key} must be a number from {low} to {high}, not {text!r}")
    return int(text)


@routes.post(f"{_CHANNEL}/presets/{{preset}}")
@route_doc("Set, call or delete preset 1-255", body=PresetBody, answer=ControlAnswer)
async def preset(request: web.Request) -> web.Response:
    body = await read_body(request, PresetBody)
    index = _index(request, "preset", 1, 255)
    code = _code(lambda: PtzCmd.preset(body.action, index))
    name = body.name if body.action == "set" else None
    outcome = await _channel_control(
        request, lambda sn, target: manscdp.control_ptz(sn, target, code, preset_name=name))
    return _answer(outcome, code)


@routes.get(f"{_CHANNEL}/presets")
@route_doc("The channel's presets as the device lists them (PresetQuery)", answer=schemas.PresetsAnswer)
async def list_presets(request: web.Request) -> web.Response:
    device, channel = channel_or_404(request)
    answer = await control_services(request).control.query_typed(
        device.id, manscdp.query_preset, manscdp.PresetQueryResponse, channel.id)
    return web.json_response({
        "device_id": device.id,
        "channel_id": channel.id,
        "presets": [{"id": p.preset_id, "name": p.preset_name} for p in answer.items],
    }, dumps=dumps)


class CruiseBody(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["add_point", "remove_point", "speed", "dwell", "start", "stop"]
    value: int = 0
    """The preset for add_point/remove_point (0 removes the cruise), the speed or dwell seconds 1-4095."""
    name: str | None = None
    """2022: the cruise track's name (PTZCmdParams/CruiseTrackName)."""


@routes.post(f"{_CHANNEL}/cruises/{{group}}")
@route_doc("Cruise (tour) group 0-255: add or remove a preset, speed, dwell, start, stop", body=CruiseBody,
           answer=ControlAnswer)
async def cruise(request: web.Request) -> web.Response:
    body = await read_body(request, CruiseBody)
    group = _index(request, "group", 0, 255)
    if body.action == "stop":
        code = PtzCmd.stop()
    else:
        code = _code(lambda: manscdp.Cruise(manscdp.CruiseAction(body.action), group, body.value).code())
    outcome = await _channel_control(
        request, lambda sn, target: manscdp.control_ptz(sn, target, code, cruise_track_name=body.name))
    return _answer(outcome, code)


class ScanBody(msgspec.Struct, forbid_unknown_fields=True):
    action: Literal["start", "left_edge", "right_edge", "speed", "stop"]
    speed: int = 0


@routes.post(f"{_CHANNEL}/scans/{{group}}")
@route_doc("Automatic scan group 0-255: start, set the left/right edge here, speed 1-4095, stop", body=ScanBody,
           answer=ControlAnswer)
async def scan(request: web.Request) -> web.Response:
    body = await read_body(request, ScanBody)
    group = _index(request, "group", 0, 255)
    if body.action == "stop":
        return await _ptz(request, PtzCmd.stop())
    return await _ptz(request, _code(lambda: manscdp.Scan(manscdp.ScanAction(body.action), group, body.speed).code()))


class AuxiliaryBody(msgspec.Struct, forbid_unknown_fields=True):
    on: bool


@routes.post(f"{_CHANNEL}/auxiliary/{{switch}}")
@route_doc("Auxiliary switch 0-255 on or off (1 wiper; 2 light by vendor convention)", body=AuxiliaryBody,
           answer=ControlAnswer)
async def auxiliary(request: web.Request) -> web.Response:
    body = await read_body(request, AuxiliaryBody)
    switch = _index(request, "switch", 0, 255)
    return await _ptz(request, _code(lambda: manscdp.Auxiliary(switch, body.on).code()))


# -- the other channel commands -------------------------------------------------------------------------


class DragZoomBody(msgspec.Struct, forbid_unknown_fields=True):
    direction: Literal["in", "out"]
    length: int
    width: int
    mid_point_x: int
    mid_point_y: int
    length_x: int
    length_y: int


@routes.post(f"{_CHANNEL}/drag-zoom")
@route_doc("Zoom into or out of a box drawn on the player window (pixels)", body=DragZoomBody,
           answer=ControlAnswer)
async def drag_zoom(request: web.Request) -> web.Response:
    body = await read_body(request, DragZoomBody)
    box = manscdp.DragZoom(body.length, body.width, body.mid_point_x, body.mid_point_y, body.length_x,
                           body.length_y)
    zoom_in = body.direction == "in"
    return _answer(await _channel_control(
        request, lambda sn, target: manscdp.control_drag_zoom(sn, target, box, zoom_in=zoom_in)))


class HomePositionBody(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool
    reset_time: int | None = None
    """Seconds idle before returning home."""
    preset_index: int | None = None


@routes.post(f"{_CHANNEL}/home-position")
@route_doc("Set (or disable) the home position: a preset returned to after reset_time idle seconds",
           body=HomePositionBody, answer=ControlAnswer)
async def set_home_position(request: web.Request) -> web.Response:
    body = await read_body(request, HomePositionBody)
    home = manscdp.HomePosition(int(body.enabled), body.reset_time, body.preset_index)
    return _answer(await _channel_control(
        request, lambda sn, target: manscdp.control_home_position(sn, target, home)))


@routes.get(f"{_CHANNEL}/home-position")
@route_doc("The home position settings (2022 HomePositionQuery)", answer=schemas.HomePositionAnswer)
async def get_home_position(request: web.Request) -> web.Response:
    device, channel = channel_or_404(request)
    answer = await control_services(request).control.query_typed(
        device.id, manscdp.query_home_position, manscdp.HomePositionResponse, channel.id)
    home = answer.home_position
    return web.json_response({
        "device_id": device.id, "channel_id": channel.id, "result": answer.result,
        "home_position": None if home is None else {
            "enabled": bool(home.enabled), "reset_time": home.reset_time, "preset_index": home.preset_index},
    }, dumps=dumps)


@routes.post(f"{_CHANNEL}/keyframe")
@route_doc("Ask the channel for a key frame now (IFameCmd)", answer=ControlAnswer)
async def keyframe(request: web.Request) -> web.Response:
    return _answer(await _channel_control(request, manscdp.control_iframe))


class RecordBody(msgspec.Struct, forbid_unknown_fields=True):
    recording: bool
    stream_number: int | None = None
    """2022: 0 main stream (the default), 1 sub stream, ..."""


@routes.post(f"{_CHANNEL}/record")
@route_doc("Start or stop the channel's manual recording on the device", body=RecordBody, answer=ControlAnswer)
async def record(request: web.Request) -> web.Response:
    body = await read_body(request, RecordBody)
    return _answer(await _channel_control(request, lambda sn, target: manscdp.control_record(
        sn, target, record=body.recording, stream_number=body.stream_number)))


@routes.post(f"{_CHANNEL}/play")
@route_doc("Play the channel of this device live (the body of /api/channels/{channel_id}/play)",
           body=channels.PlayRequest, answer=schemas.SessionAnswer)
async def play(request: web.Request) -> web.StreamResponse:
    device, _ = channel_or_404(request)
    return await channels.play_channel(request, device.id)


# -- 2022: precise PTZ, positions, cruise tracks, target tracking ---------------------------------------


class PrecisePtzBody(msgspec.Struct, forbid_unknown_fields=True):
    pan: float | None = None
    """0-360 degrees"""
    tilt: float | None = None
    """-30 to 90 degrees"""
    zoom: float | None = None
    """zoom ratio, at least 1"""


@routes.post(f"{_CHANNEL}/ptz/precise")
@route_doc("2022: move to an absolute pan/tilt/zoom (PTZPreciseCtrl)", body=PrecisePtzBody, answer=ControlAnswer)
async def ptz_precise(request: web.Request) -> web.Response:
    body = await read_body(request, PrecisePtzBody)
    if body.pan is None and body.tilt is None and body.zoom is None:
        raise ApiError(400, "give at least one of pan, tilt, zoom")
    if (body.pan is not None and not 0 <= body.pan <= 360) or (body.tilt is not None and not -30 <= body.tilt <= 90) \
            or (body.zoom is not None and body.zoom < 1):
        raise ApiError(400, "pan must be 0-360, tilt -30 to 90, zoom at least 1")
    position = manscdp.PtzPrecise(body.pan, body.tilt, body.zoom)
    return _answer(await _channel_control(
        request, lambda sn, target: manscdp.control_ptz_precise(sn, target, position)))


@routes.get(f"{_CHANNEL}/ptz/position")
@route_doc("2022: the channel's PTZ position and field of view (PTZPosition)",
           answer=schemas.PtzPositionAnswer)
async def ptz_position(request: web.Request) -> web.Response:
    device, channel = channel_or_404(request)
    answer = await control_services(request).control.query_typed(
        device.id, manscdp.query_ptz_position, manscdp.PtzPositionResponse, channel.id)
    return web.json_response({
        "device_id": device.id, "channel_id": channel.id, "result": answer.result,
        "pan": answer.pan, "tilt": answer.tilt, "zoom": answer.zoom,
        "horizontal_field_angle": answer.horizontal_field_angle,
        "vertical_field_angle": answer.vertical_field_angle, "max_view_distance": answer.max_view_distance,
    }, dumps=dumps)


@routes.get(f"{_CHANNEL}/cruise-tracks")
@route_doc("2022: the channel's cruise tracks (CruiseTrackListQuery)", answer=schemas.CruiseTracksAnswer)
async def cruise_tracks(request: web.Request) -> web.Response:
    device, channel = channel_or_404(request)
    answer = await control_services(request).control.query_typed(
        device.id, manscdp.query_cruise_track_list, manscdp.CruiseTrackListResponse, channel.id)
    return web.json_response({
        "device_id": device.id, "channel_id": channel.id, "result": answer.result,
        "tracks": [{"number": t.number, "name": t.name} for t in answer.tracks],
    }, dumps=dumps)


@routes.get(f"{_CHANNEL}/cruise-tracks/{{number}}")
@route_doc("2022: one cruise track's points (CruiseTrackQuery)", answer=schemas.CruiseTrackAnswer)
async def cruise_track(request: web.Request) -> web.Response:
    device, channel = channel_or_404(request)
    number = _index(request, "number", 0, 255)
    answer = await control_services(request).control.query_typed(
        device.id, lambda sn, target: manscdp.query_cruise_track(sn, target, number),
        manscdp.CruiseTrackResponse, channel.id)
    return web.json_response({
        "device_id": device.id, "channel_id": channel.id, "result": answer.result, "number": number,
        "name": answer.name,
        "points": [{"preset_index": p.preset_index, "stay_time": p.stay_time, "speed": p.speed}
                   for p in answer.points],
    }, dumps=dumps)


class TargetTrackBody(msgspec.Struct, forbid_unknown_fields=True):
    mode: Literal["Auto", "Manual", "Stop"]
    detail_camera: str | None = None
    """DeviceID2: the camera that follows the target in detail."""
    area: DragZoomBody | None = None
    """Manual: the box around the target (direction is ignored)."""


@routes.post(f"{_CHANNEL}/target-track")
@route_doc("2022: target tracking Auto, Manual (the target in area) or Stop", body=TargetTrackBody,
           answer=ControlAnswer)
async def target_track(request: web.Request) -> web.Response:
    body = await read_body(request, TargetTrackBody)
    area = None
    if body.area is not None:
        a = body.area
        area = manscdp.DragZoom(a.length, a.width, a.mid_point_x, a.mid_point_y, a.length_x, a.length_y)
    return _answer(await _channel_control(request, lambda sn, target: manscdp.control_target_track(
        sn, target, body.mode, device_id2=body.detail_camera, area=area)))


# -- device commands ------------------------------------------------------------------------------------


async def _device_control(request: web.Request, build: Build, target_id: str | None = None) -> web.Response:
    device = device_or_404(request)
    return _answer(await control_services(request).control.control(device.id, build, target_id))


class GuardBody(msgspec.Struct, forbid_unknown_fields=True):
    armed: bool
    alarm_input: str | None = None
    """The alarm input to arm or disarm (default: the whole device)."""


@routes.post(f"{_DEVICE}/guard")
@route_doc("Arm (SetGuard) or disarm (ResetGuard) the device or one of its alarm inputs", body=GuardBody,
           answer=ControlAnswer)
async def guard(request: web.Request) -> web.Response:
    body = await read_body(request, GuardBody)
    return await _device_control(
        request, lambda sn, target: manscdp.control_guard(sn, target, guard=body.armed), body.alarm_input)


class AlarmResetBody(msgspec.Struct, forbid_unknown_fields=True):
    alarm_input: str | None = None
    alarm_method: str | None = None
    alarm_type: str | None = None


@routes.post(f"{_DEVICE}/alarm-reset")
@route_doc("Reset the device's (or one alarm input's) alarm", body=AlarmResetBody, answer=ControlAnswer)
async def alarm_reset(request: web.Request) -> web.Response:
    body = await read_body(request, AlarmResetBody)
    return await _device_control(request, lambda sn, target: manscdp.control_alarm_reset(
        sn, target, alarm_method=body.alarm_method, alarm_type=body.alarm_type), body.alarm_input)


@routes.post(f"{_DEVICE}/reboot")
@route_doc("Reboot the device (TeleBoot; answered by its 200 alone)", role=Role.ADMIN, answer=ControlAnswer)
async def reboot(request: web.Request) -> web.Response:
    return await _device_control(request, manscdp.control_tele_boot)


@routes.get(f"{_DEVICE}/config/{{config_type}}")
@route_doc("The device's configuration of one ConfigType (ConfigDownload), section fields by tag",
           answer=schemas.DeviceConfigAnswer)
async def get_config(request: web.Request) -> web.Response:
    device = device_or_404(request)
    config_type = request.match_info["config_type"]
    if config_type not in manscdp.CONFIG_TYPES:
        raise ApiError(404, f"ConfigType must be one of {', '.join(manscdp.CONFIG_TYPES)}, not {config_type!r}")
    answer = await control_services(request).control.config_download(device.id, [config_type])
    sections = {tag: dict(fields) for tag, fields in answer.sections.items()}
    for fields in sections.values():
        # A device's own SIP password is never passed on.
        fields.pop("Password", None)
    return web.json_response({"device_id": device.id, "result": answer.result, "config_type": config_type,
                              "sections": sections}, dumps=dumps)


@routes.put(f"{_DEVICE}/config/{{config_type}}")
@route_doc("Set the device's configuration of one ConfigType (DeviceConfig): a JSON object of its fields by tag",
           role=Role.ADMIN, answer=ControlAnswer)
async def put_config(request: web.Request) -> web.Response:
    config_type = request.match_info["config_type"]
    if config_type not in manscdp.CONFIG_SECTIONS:
        raise ApiError(404, f"ConfigType must be one of {', '.join(sorted(manscdp.CONFIG_SECTIONS))}")
    fields = await read_body(request, dict[str, str | int | float])
    if not fields:
        raise ApiError(400, "the body must name at least one field, e.g. {\"HeartBeatInterval\": 60}")
    tag = manscdp.CONFIG_SECTIONS[config_type].TAG
    section = {name: value for name, value in fields.items()}
    return await _device_control(request, lambda sn, target: manscdp.device_config(sn, target, {tag: section}))


@routes.get(f"{_DEVICE}/sd-cards")
@route_doc("2022: the device's storage cards (SDCardStatus)", answer=schemas.SdCardsAnswer)
async def sd_cards(request: web.Request) -> web.Response:
    device = device_or_404(request)
    answer = await control_services(request).control.query_typed(
        device.id, manscdp.query_sd_card_status, manscdp.SdCardStatusResponse)
    return web.json_response({
        "device_id": device.id, "result": answer.result,
        "cards": [{"id": c.id, "name": c.hdd_name, "status": c.status, "format_progress": c.format_progress,
                   "capacity_mb": c.capacity, "free_mb": c.free_space} for c in answer.cards],
    }, dumps=dumps)


@routes.post(f"{_DEVICE}/sd-cards/{{card}}/format")
@route_doc("2022: format storage card n (progress in GET sd-cards)", role=Role.ADMIN, answer=ControlAnswer)
async def format_sd_card(request: web.Request) -> web.Response:
    card = _index(request, "card", 1, 255)
    return await _device_control(request, lambda sn, target: manscdp.control_format_sd_card(sn, target, card))


class UpgradeBody(msgspec.Struct, forbid_unknown_fields=True):
    firmware: str
    file_url: str
    manufacturer: str | None = None
    session_id: str | None = None


_UPGRADE_SCHEMES = ("http", "https", "ftp")


@routes.post(f"{_DEVICE}/upgrade")
@route_doc("2022: upgrade the device's software from file_url (an IP inside api.media_destinations)",
           role=Role.ADMIN, body=UpgradeBody, answer=ControlAnswer)
async def upgrade(request: web.Request) -> web.Response:
    body = await read_body(request, UpgradeBody)
    try:
        url = urlsplit(body.file_url)
        host = url.hostname
    except ValueError:
        raise ApiError(400, f"file_url: {body.file_url!r} is not a URL") from None
    if url.scheme not in _UPGRADE_SCHEMES or not host:
        raise ApiError(400, f"file_url must be an {'/'.join(_UPGRADE_SCHEMES)} URL with a host")
    # The device fetches it: the same rule as where media may be sent keeps it off other networks.
    media_destination(request, "file_url", host)
    device = device_or_404(request)
    session = body.session_id or f"{device.id}{services(request).clock():.0f}".ljust(32, "0")
    job = manscdp.DeviceUpgrade(body.firmware, body.file_url, body.manufacturer or device.manufacturer or None,
                                session)
    return await _device_control(request, lambda sn, target: manscdp.control_device_upgrade(sn, target, job))

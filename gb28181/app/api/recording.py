"""Recorded video: record search, playback and download (each its own session), and their control.

Times are ISO 8601 with an offset, both ways; the gateway writes them to devices as local time in
``sip.timezone``. Playback and download sessions are ``/api/sessions/{id}`` like live ones; their ids
(``playback-N``, ``download-N``) are matched here, before the live sessions' routes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.common import (
    ApiError,
    device_or_404,
    dumps,
    media_destination,
    read_body,
    route_doc,
    services,
    ssrc_of,
)
from gbgw.gb28181.media.history import ControlAction, HistorySession, HistorySessions
from gbgw.gb28181.recording.offer import RecordingKind
from gbgw.gb28181.recording.records import RecordType
from gbgw.gb28181.recording.times import TimeWindow

routes = web.RouteTableDef()

_HISTORY_ID = r"{session_id:(?:playback|download)-\d+}"


class PlaybackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The recorded range to play and where to send it."""

    start: str
    """ISO 8601 with an offset: the start of the range (seek positions count from it)."""
    end: str
    host: str | None = None
    """The receiver's IP address, inside api.media_destinations (optional for tcp-passive)."""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    transport: Literal["udp", "tcp-active", "tcp-passive"] = "udp"
    ssrc: int | str | None = None
    """The output's SSRC; the device leg's history SSRC (1...) when not given."""
    scale: float | None = None
    """Initial speed: 0.25, 0.5, 1, 2, 4 or 8."""


class DownloadRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The recorded range to download and where to send it."""

    start: str
    end: str
    host: str | None = None
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    transport: Literal["udp", "tcp-active", "tcp-passive"] = "udp"
    ssrc: int | str | None = None
    speed: Annotated[int, msgspec.Meta(ge=1, le=32)] | None = None
    """a=downloadspeed: the device sends this many times faster than real time (default 1)."""


class ControlRequest(msgspec.Struct, forbid_unknown_fields=True):
    """One playback command, sent to the device as MANSRTSP in an INFO."""

    action: Literal["pause", "resume", "seek", "scale"]
    position: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """seek: seconds from the range's start."""
    scale: float | None = None
    """scale: 0.25, 0.5, 1, 2, 4 or 8."""


def _history(request: web.Request) -> HistorySessions:
    history = services(request).history
    if history is None:
        raise ApiError(503, "recorded video is not available on this gateway")
    return history


def _time(key: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{key}: {text!r} is not an ISO 8601 time") from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ApiError(400, f"{key}: {text!r} has no offset (write e.g. 2025-04-22T10:00:00+08:00)")
    return value


def _window(start: str, end: str) -> TimeWindow:
    try:
        return TimeWindow(_time("start", start), _time("end", end))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def history_json(session: HistorySession) -> dict[str, Any]:
    output = session.output.stats if session.output is not None else None
    ingest = session.ingest.stats
    answer = session.answer
    return {
        "id": session.id,
        "kind": session.kind.api_name,
        "channel_id": session.channel_id,
        "device_id": session.device_id,
        "state": session.state.value,
        "reason": session.ended.value if session.ended is not None else None,
        "detail": session.detail or None,
        "start": session.window.start.isoformat(),
        "end": session.window.end.isoformat(),
        "position": round(session.position(), 3),
        "scale": session.clock.scale if session.kind is RecordingKind.PLAYBACK else None,
        "paused": session.clock.paused,
        "progress": session.progress(),
        "speed": session.speed,
        "filesize": answer.filesize if answer is not None else None,
        "transport": session.transport.value,
        "receiver": output.receiver if output is not None else None,
        "local_port": output.local_port if output is not None else None,
        "ssrc": f"{session.out_ssrc:010d}",
        "packets_out": output.packets if output is not None else 0,
        "bytes_out": output.bytes if output is not None else 0,
        "device": {
            "transport": session.device_transport.value,
            "ssrc": session.ssrc,
            "ssrc_received": None if ingest.ssrc is None else f"{ingest.ssrc:010d}",
            "local_port": ingest.local_port,
            "packets_in": ingest.packets,
            "bytes_in": ingest.bytes,
            "lost": ingest.lost,
        },
    }


@routes.get("/api/devices/{device_id}/channels/{channel_id}/records")
@route_doc("Search a channel's recordings (RecordInfo): ?start=&end= (ISO 8601 with offset)&type=all|time|alarm|manual",
           answer=schemas.RecordSearchAnswer)
async def search_records(request: web.Request) -> web.Response:
    device = device_or_404(request)
    query = request.query
    start, end = query.get("start"), query.get("end")
    if not start or not end:
        raise ApiError(400, "start and end are required (ISO 8601 with offset)")
    window = _window(start, end)
    try:
        record_type = RecordType.parse(query.get("type", "all"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    result = await services(request).requests.search_records(
        device.id, request.match_info["channel_id"], window, record_type
    )
    return web.json_response(result.to_json(), dumps=dumps)


async def _start(request: web.Request, kind: RecordingKind, body: PlaybackRequest | DownloadRequest) -> web.Response:
    history = _history(request)
    device = device_or_404(request)
    window = _window(body.start, body.end)
    host = None if body.host is None else media_destination(request, "host", body.host)
    session = await history.start(
        kind, device.id, request.match_info["channel_id"], window, host=host, port=body.port,
        transport=body.transport, ssrc=ssrc_of(body.ssrc),
        scale=body.scale if isinstance(body, PlaybackRequest) else None,
        speed=body.speed if isinstance(body, DownloadRequest) else None,
    )
    return web.json_response(history_json(session), dumps=dumps)


@routes.post("/api/devices/{device_id}/channels/{channel_id}/playback")
@route_doc("Play back a recorded range to host:port (a session of its own, never shared)", body=PlaybackRequest,
           answer=schemas.HistorySessionAnswer)
async def playback(request: web.Request) -> web.Response:
    return await _start(request, RecordingKind.PLAYBACK, await read_body(request, PlaybackRequest))


@routes.post("/api/devices/{device_id}/channels/{channel_id}/download")
@route_doc("Download a recorded range to host:port at speed x real time", body=DownloadRequest,
           answer=schemas.HistorySessionAnswer)
async def download(request: web.Request) -> web.Response:
    return await _start(request, RecordingKind.DOWNLOAD, await read_body(request, DownloadRequest))


@routes.get(f"/api/sessions/{_HISTORY_ID}")
@route_doc("A playback or download session: position, scale, paused, progress; after its end the reason",
           answer=schemas.HistorySessionAnswer)
async def get_history_session(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    session = _history(request).get(session_id)
    if session is None:
        raise ApiError(404, f"no session {session_id}")
    return web.json_response(history_json(session), dumps=dumps)


@routes.delete(f"/api/sessions/{_HISTORY_ID}")
@route_doc("Stop a playback or download (BYE to the device)", answer=schemas.Stopped)
async def delete_history_session(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    if not _history(request).stop(session_id):
        raise ApiError(404, f"no session {session_id}")
    return web.json_response({"id": session_id, "state": "stopped"}, dumps=dumps)


@routes.post("/api/sessions/{session_id}/control")
@route_doc("Pause, resume, seek (position in seconds from the start) or change the scale of a playback",
           body=ControlRequest, answer=schemas.HistorySessionAnswer)
async def control(request: web.Request) -> web.Response:
    history = _history(request)
    session_id = request.match_info["session_id"]
    body = await read_body(request, ControlRequest)
    if history.get(session_id) is None:
        raise ApiError(404, f"no playback or download session {session_id}")
    session = await history.control(session_id, ControlAction(body.action), position=body.position,
                                    scale=body.scale)
    return web.json_response(history_json(session), dumps=dumps)

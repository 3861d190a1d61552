"""WHEP (RFC 9725): a browser, or any WHEP player, watches a channel live over WebRTC.

``POST .../whep`` with the SDP offer (``application/sdp``) answers 201 with the SDP answer, every ICE
candidate in it (no trickle, so no PATCH), and a ``Location`` to ``DELETE`` when done. The viewer joins
the channel's device stream, the same device leg `/play` and the uppers use, INVITEd now if none runs;
a running one starts the viewer on its cached keyframe.

With ``?start=ISO&end=ISO`` the viewer watches a recorded range instead: a playback session of its own
(``HistorySessions``, the same device leg ``POST .../playback`` opens, with no network output: the viewer
is its in-process receiver), answered with an ``X-Playback-Session`` header naming it; pause, resume, seek
and scale are ``POST /api/sessions/{id}/control``. Ending the viewer stops the playback (BYE), and a
playback that ends (end of file, device BYE) ends its viewer.

The offer is checked and the viewer limit applied before the device is INVITEd: a malformed or surplus
request never wakes a camera. aiortc is the optional ``console`` extra, imported only when a WHEP route
is called (the rest of the API runs without it).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web
from prometheus_client import Histogram

from gbgw.gb28181.app.api.addressing import channel_or_404
from gbgw.gb28181.app.api.common import ApiError, route_doc, services
from gbgw.gb28181.recording.offer import RecordingKind
from gbgw.gb28181.recording.times import TimeWindow

if TYPE_CHECKING:
    from gbgw.gb28181.media.history import HistorySessions
    from gbgw.gb28181.webrtc import WhepAnswer, WhepSession, WhepViewers

routes = web.RouteTableDef()

_WHEP = "/api/devices/{device_id}/channels/{channel_id}/whep"
SDP = "application/sdp"
PLAYBACK_HEADER = "X-Playback-Session"
MAX_OFFER = 64 << 10
"""A browser's offer is 3-6 kB; anything this large is not one."""


class WebrtcViewer(msgspec.Struct):
    """One WHEP viewer and what it was sent (`gbgw.gb28181.webrtc.ViewerStats`)."""

    id: str
    channel: str
    state: str
    age: float
    frames_sent: int
    bytes_sent: int
    """Access-unit bytes handed to the sender (RTP/SRTP overhead excluded)."""
    frames_dropped: int
    bitrate_kbps: float
    start_latency: float | None
    """Seconds from the offer to the first frame taken by the sender."""
    ended: str | None
    playback: str | None
    """The playback session this viewer watches (control it at /api/sessions/{id}/control); None: live."""


def _viewers(request: web.Request) -> WhepViewers:
    viewers = services(request).whep
    if viewers is None:
        raise ApiError(503, "WebRTC preview needs the console extra: pip install 'gb28181-gateway[console]'")
    return viewers


@routes.post(_WHEP)
@route_doc("Watch the channel over WebRTC (WHEP): the body is the SDP offer (application/sdp); 201 answers "
           "the SDP answer and a Location to DELETE. Live, or a recorded range with ?start=&end= (ISO 8601 "
           "with offset; the X-Playback-Session header names the session to control)")
async def offer(request: web.Request) -> web.StreamResponse:
    from gbgw.gb28181.webrtc import WhepError, WhepFailure, check_offer

    viewers = _viewers(request)
    api = services(request)
    _, channel = channel_or_404(request)
    if request.content_type != SDP:
        raise ApiError(415, f"the body must be an SDP offer (Content-Type: {SDP}), not {request.content_type}")
    if (request.content_length or 0) > MAX_OFFER:
        raise ApiError(413, f"an SDP offer is at most {MAX_OFFER} bytes")
    raw = await request.read()
    try:
        sdp = raw.decode()
    except UnicodeDecodeError:
        raise ApiError(400, f"{WhepFailure.MALFORMED_OFFER.value}: not UTF-8") from None
    start, end = request.query.get("start"), request.query.get("end")
    if (start is None) != (end is None):
        raise ApiError(400, "a playback needs both start and end (ISO 8601 with offset)")
    window = _range(start, end) if start is not None and end is not None else None
    started = time.monotonic()
    try:
        check_offer(sdp)
        if len(viewers) >= viewers.config.max_viewers:
            raise WhepError(WhepFailure.TOO_MANY_VIEWERS, f"console.max_viewers is {viewers.config.max_viewers}")
        if window is not None:
            answer, playback = await _playback(viewers, _history(request), channel.device_id, channel.id,
                                               window, sdp)
        else:
            playback = None
            stream = await api.live.open_stream(channel.id, channel.device_id)
            try:
                answer = await viewers.offer(stream.ingest, sdp, channel=channel.id)
            except BaseException:
                api.live.release(stream)
                raise
    except WhepError as exc:
        raise ApiError(exc.status, exc.reason) from None
    api.tasks.spawn(_first_frame(viewers, answer.session_id, started, api.metrics.webrtc_preview_start))
    headers = {"Location": f"{request.path}/{answer.session_id}"}
    if playback is not None:
        headers[PLAYBACK_HEADER] = playback
    return web.Response(status=201, body=answer.sdp.encode(), content_type=SDP, headers=headers)


def _range(start: str, end: str) -> TimeWindow:
    """As ``POST .../playback`` reads its range: ISO 8601 with an offset, end after start."""
    times = []
    for key, text in (("start", start), ("end", end)):
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ApiError(400, f"{key}: {text!r} is not an ISO 8601 time") from None
        if value.utcoffset() is None:
            raise ApiError(400, f"{key}: {text!r} has no offset (write e.g. 2025-04-22T10:00:00+08:00)")
        times.append(value)
    try:
        return TimeWindow(times[0], times[1])
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _history(request: web.Request) -> HistorySessions:
    history = services(request).history
    if history is None:
        raise ApiError(503, "recorded video is not available on this gateway")
    return history


async def _playback(viewers: WhepViewers, history: HistorySessions, device_id: str, channel_id: str,
                    window: TimeWindow, sdp: str) -> tuple[WhepAnswer, str]:
    """A playback session of its own, its ingest handed to a new viewer; stopped with the viewer."""
    session = await history.start(RecordingKind.PLAYBACK, device_id, channel_id, window, host=None, port=None,
                                  transport="udp", network_output=False)

    def viewer_ended(_viewer: WhepSession) -> None:
        history.stop(session.id)

    try:
        answer = await viewers.offer(session.ingest, sdp, channel=channel_id, playback=session.id,
                                     on_end=viewer_ended)
    except BaseException:
        history.stop(session.id)
        raise
    return answer, session.id


async def _first_frame(viewers: WhepViewers, session_id: str, started: float, histogram: Histogram) -> None:
    """Observe the preview start once the viewer's sender took its first frame. A viewer that never
    connects is ended by its connect timeout, which ends this wait too."""
    while (session := viewers.sessions.get(session_id)) is not None:
        first = session.track.first_frame_at
        if first is not None:
            histogram.observe(first - started)
            return
        await asyncio.sleep(0.02)


@routes.delete(_WHEP + "/{session_id}")
@route_doc("End a WHEP viewer (the device stream ends media.idle_timeout after its last receiver)")
async def end(request: web.Request) -> web.StreamResponse:
    from gbgw.gb28181.webrtc import WhepError

    viewers = _viewers(request)
    session_id = request.match_info["session_id"]
    session = viewers.sessions.get(session_id)
    if session is None or session.channel != request.match_info["channel_id"]:
        raise ApiError(404, f"no WHEP session {session_id} on this channel")
    try:
        await viewers.close(session_id)
    except WhepError as exc:
        raise ApiError(exc.status, exc.reason) from None
    return web.Response(status=200)


@routes.get("/api/webrtc/viewers")
@route_doc("Every WHEP viewer: state, frames and bytes sent, bitrate, preview start", answer=list[WebrtcViewer])
async def list_viewers(request: web.Request) -> web.Response:
    viewers = services(request).whep
    found = [] if viewers is None else viewers.stats()
    answer = [msgspec.convert(stats, WebrtcViewer, from_attributes=True) for stats in found]
    return web.Response(body=msgspec.json.encode(answer), content_type="application/json")

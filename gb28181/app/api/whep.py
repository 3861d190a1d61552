"""WHEP (RFC 9725): a browser, or any WHEP player, watches a channel live over WebRTC.

``POST .../whep`` with the SDP offer (``application/sdp``) answers 201 with the SDP answer, every ICE
candidate in it (no trickle, so no PATCH), and a ``Location`` to ``DELETE`` when done. The viewer joins
the channel's device stream, the same device leg `/play` and the uppers use, INVITEd now if none runs;
a running one starts the viewer on its cached keyframe.

The offer is checked and the viewer limit applied before the device is INVITEd: a malformed or surplus
request never wakes a camera. aiortc is the optional ``console`` extra, imported only when a WHEP route
is called (the rest of the API runs without it).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web
from prometheus_client import Histogram

from gbgw.gb28181.app.api.addressing import channel_or_404
from gbgw.gb28181.app.api.common import ApiError, route_doc, services

if TYPE_CHECKING:
    from gbgw.gb28181.webrtc import WhepViewers

routes = web.RouteTableDef()

_WHEP = "/api/devices/{device_id}/channels/{channel_id}/whep"
SDP = "application/sdp"
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


def _viewers(request: web.Request) -> WhepViewers:
    viewers = services(request).whep
    if viewers is None:
        raise ApiError(503, "WebRTC preview needs the console extra: pip install 'gb28181-gateway[console]'")
    return viewers


@routes.post(_WHEP)
@route_doc("Watch the channel live over WebRTC (WHEP): the body is the SDP offer (application/sdp); 201 "
           "answers the SDP answer and a Location to DELETE")
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
    started = time.monotonic()
    try:
        check_offer(sdp)
        if len(viewers) >= viewers.config.max_viewers:
            raise WhepError(WhepFailure.TOO_MANY_VIEWERS, f"console.max_viewers is {viewers.config.max_viewers}")
        stream = await api.live.open_stream(channel.id, channel.device_id)
        try:
            answer = await viewers.offer(stream.ingest, sdp, channel=channel.id)
        except BaseException:
            api.live.release(stream)
            raise
    except WhepError as exc:
        raise ApiError(exc.status, exc.reason) from None
    api.tasks.spawn(_first_frame(viewers, answer.session_id, started, api.metrics.webrtc_preview_start))
    return web.Response(status=201, body=answer.sdp.encode(), content_type=SDP,
                        headers={"Location": f"{request.path}/{answer.session_id}"})


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

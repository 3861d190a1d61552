"""Voice broadcast: ``POST .../channels/{c}/broadcast`` with a WAV body plays it on the device's speaker;
``GET``/``DELETE /api/broadcasts/{id}`` follow and end it (gb28181.media.broadcast has the flow)."""

from __future__ import annotations

import msgspec
from aiohttp import web

from gbgw.gb28181.app.api.addressing import channel_or_404
from gbgw.gb28181.app.api.common import ApiError, dumps, read_body, route_doc
from gbgw.gb28181.app.api.schemas import BroadcastAnswer
from gbgw.gb28181.media.broadcast import AudioError, VoiceBroadcasts, session_json, wav_to_alaw

routes = web.RouteTableDef()

BROADCASTS: web.AppKey[VoiceBroadcasts] = web.AppKey("broadcasts", VoiceBroadcasts)
WAV_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"})


class LiveBroadcast(msgspec.Struct, forbid_unknown_fields=True):
    """Live audio instead of a WAV body: the answer's ``input_port`` takes G.711 A-law RTP (payload type 8)
    from the caller's address, relayed to the device as it arrives."""

    rtp: bool = False


def broadcasts(request: web.Request) -> VoiceBroadcasts:
    found = request.app.get(BROADCASTS)
    if found is None:
        raise ApiError(503, "voice broadcast is not available in this gateway")
    return found


@routes.post("/api/devices/{device_id}/channels/{channel_id}/broadcast")
@route_doc("Broadcast a WAV (16-bit PCM at any rate, or 8 kHz A-law/µ-law) on the channel's speaker as G.711 "
           "A-law: Notify/Broadcast, the device's audio INVITE, RTP until the audio ends; or, with the JSON "
           '{"rtp": true}, relay the A-law RTP the caller sends to the answer\'s input_port', body=LiveBroadcast)
async def start_broadcast(request: web.Request) -> web.Response:
    device, channel = channel_or_404(request)
    if request.content_type == "application/json":
        body = await read_body(request, LiveBroadcast)
        if not body.rtp or not request.remote:
            raise ApiError(400, 'a JSON body asks for live audio: {"rtp": true}')
        session = await broadcasts(request).start(device.id, channel.id, None, live_from=request.remote)
        return web.json_response(session_json(session), status=201, dumps=dumps)
    if request.content_type not in WAV_TYPES:
        raise ApiError(415, f"send the audio as audio/wav (or JSON for live RTP), not "
                            f"{request.content_type or 'no Content-Type'}")
    try:
        audio = wav_to_alaw(await request.read())
    except AudioError as exc:
        raise ApiError(400, str(exc)) from None
    if not audio:
        raise ApiError(400, "the WAV file holds no audio")
    session = await broadcasts(request).start(device.id, channel.id, audio)
    return web.json_response(session_json(session), status=201, dumps=dumps)


@routes.get("/api/broadcasts/{broadcast_id}")
@route_doc("One voice broadcast: state, packets sent, where they go", answer=BroadcastAnswer)
async def get_broadcast(request: web.Request) -> web.Response:
    session = broadcasts(request).sessions.get(request.match_info["broadcast_id"])
    if session is None:
        raise ApiError(404, "no such broadcast")
    return web.json_response(session_json(session), dumps=dumps)


@routes.delete("/api/broadcasts/{broadcast_id}")
@route_doc("End a voice broadcast (BYE to the device)")
async def stop_broadcast(request: web.Request) -> web.Response:
    if not broadcasts(request).stop(request.match_info["broadcast_id"]):
        raise ApiError(404, "no such running broadcast")
    return web.json_response({"stopped": request.match_info["broadcast_id"]}, dumps=dumps)

"""Channels: a device's catalog as the registry holds it, and playing one (which makes a session)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.addressing import unambiguous_channel
from gbgw.gb28181.app.api.common import (
    ApiError,
    Listing,
    decoded_id,
    device_or_404,
    dumps,
    media_destination,
    read_body,
    route_doc,
    services,
    ssrc_of,
)
from gbgw.gb28181.app.api.sessions import session_json
from gbgw.gb28181.media.substreams import parse_stream
from gbgw.registry.model import Channel

routes = web.RouteTableDef()

def channel_json(channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id,
        "device_id": channel.device_id,
        "name": channel.name or None,
        "parent_id": channel.parent_id or None,
        "status": channel.status,
        "manufacturer": channel.manufacturer or None,
        "model": channel.model or None,
        "civil_code": channel.civil_code or None,
        "address": channel.address or None,
        "longitude": channel.longitude,
        "latitude": channel.latitude,
        "ptz_type": channel.ptz_type,
        "business_group_id": channel.business_group_id or None,
        "id_info": decoded_id(channel.id),
    }


class PlayRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Where to send the channel's live stream."""

    host: str | None = None
    """The receiver's IP address (a literal: names are not resolved), inside api.media_destinations. For
    tcp-passive, optional: the only address allowed to connect."""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    """The receiver's RTP port (udp, tcp-active)."""
    transport: Literal["udp", "tcp-active", "tcp-passive"] = "udp"
    ssrc: int | str | None = None
    """The output's SSRC, a number up to 4294967295 (or its 10 digits as in y=); the device leg's when not
    given."""
    stream: int | str | None = None
    """Which of the camera's streams: main, sub, third or its number (0 main); the device's default when not
    given. Viewers of different streams get their own device legs."""


@routes.get("/api/devices/{device_id}/channels")
@route_doc("A device's channels, as its catalog reported them (the filters and paging of /api/devices; "
           "online: status ON)", answer=schemas.ChannelList)
async def list_channels(request: web.Request) -> web.Response:
    listing = Listing.of(request)
    found = device_or_404(request)
    channels = (c for c in services(request).registry.channels(found.id)
                if listing.wants(c.id, c.name, c.status == "ON"))
    return web.json_response(listing.answer(channels, _channel_id, channel_json), dumps=dumps)


def _channel_id(channel: Channel) -> str:
    return channel.id


@routes.post("/api/channels/{channel_id}/play")
@route_doc("Relay the channel's live stream to host:port (or a local port for tcp-passive)", body=PlayRequest,
           answer=schemas.SessionAnswer)
async def play(request: web.Request) -> web.Response:
    unambiguous_channel(request)
    return await play_channel(request, None)


async def play_channel(request: web.Request, device_id: str | None) -> web.Response:
    """Play ``{channel_id}`` of ``device_id`` (None: of the device that announced the channel last)."""
    body = await read_body(request, PlayRequest)
    host = None if body.host is None else media_destination(request, "host", body.host)
    ssrc = ssrc_of(body.ssrc)
    try:
        substream = parse_stream(body.stream)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    session = await services(request).live.play(
        request.match_info["channel_id"], host=host, port=body.port, transport=body.transport, ssrc=ssrc,
        device_id=device_id, substream=substream,
    )
    return web.json_response(session_json(session), dumps=dumps)


"""Channels: a device's catalog as the registry holds it, and playing one (which makes a session)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gbgw.gb28181.app.api.common import ApiError, decoded_id, device_or_404, json_object, services
from gbgw.gb28181.app.api.sessions import session_json
from gbgw.registry.model import Channel

routes = web.RouteTableDef()

_SSRC_FORMAT = "ssrc must be a number (10 digits as in y=)"


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


@routes.get("/api/devices/{device_id}/channels")
async def list_channels(request: web.Request) -> web.Response:
    found = device_or_404(request)
    return web.json_response([channel_json(c) for c in services(request).registry.channels(found.id)])


@routes.post("/api/channels/{channel_id}/play")
async def play(request: web.Request) -> web.Response:
    body = await json_object(request, '{"host", "port", "transport", "ssrc"}')
    host, port, ssrc = body.get("host"), body.get("port"), body.get("ssrc")
    transport = body.get("transport", "udp")
    if host is not None and not isinstance(host, str):
        raise ApiError(400, "host must be a string")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise ApiError(400, "port must be an integer from 1 to 65535")
    if ssrc is not None:
        try:
            ssrc = int(ssrc)
        except (TypeError, ValueError):
            raise ApiError(400, _SSRC_FORMAT) from None
        if not 0 <= ssrc <= 9_999_999_999:
            raise ApiError(400, _SSRC_FORMAT)
    if not isinstance(transport, str):
        raise ApiError(400, "transport must be udp, tcp-active or tcp-passive")
    session = await services(request).live.play(
        request.match_info["channel_id"], host=host, port=port, transport=transport, ssrc=ssrc
    )
    return web.json_response(session_json(session))

"""What devices reported and the gateway stored: alarms, and a device's mobile positions."""

from __future__ import annotations

from aiohttp import web

from gbgw.gb28181.app.api.common import ApiError, device_or_404, iso, route_doc, services

routes = web.RouteTableDef()

MAX_LIMIT = 1000


@routes.get("/api/alarms")
@route_doc("Stored alarms, newest first (?device_id=, ?limit= up to 1000)")
async def list_alarms(request: web.Request) -> web.Response:
    try:
        limit = min(int(request.query.get("limit", "100")), MAX_LIMIT)
    except ValueError:
        limit = -1
    if limit < 0:
        # SQLite reads a negative LIMIT as no limit at all.
        raise ApiError(400, "limit must be a whole number, at least 0")
    alarms = await services(request).storage.list_alarms(request.query.get("device_id"), limit)
    return web.json_response(
        [
            {
                "id": a.id,
                "device_id": a.device_id,
                "channel_id": a.channel_id,
                "priority": a.priority,
                "method": a.method,
                "type": a.alarm_type,
                "time": a.time,
                "description": a.description,
                "longitude": a.longitude,
                "latitude": a.latitude,
                "received_at": iso(a.received_at),
            }
            for a in alarms
        ]
    )


@routes.get("/api/devices/{device_id}/positions")
@route_doc("A device's stored mobile positions, newest first (?limit= 1 to 1000)")
async def list_positions(request: web.Request) -> web.Response:
    found = device_or_404(request)
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = -1
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, "limit must be a whole number from 1 to 1000")
    positions = await services(request).storage.list_mobile_positions(found.id, limit)
    return web.json_response(
        [
            {
                "device_id": p.device_id,
                "time": p.time,
                "longitude": p.longitude,
                "latitude": p.latitude,
                "speed": p.speed,
                "direction": p.direction,
                "altitude": p.altitude,
                "received_at": iso(p.received_at),
            }
            for p in positions
        ]
    )

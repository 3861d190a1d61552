"""What devices reported and the gateway stored: alarms, and a device's mobile positions; and the live
events as they happen (``/api/events``, Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.common import ApiError, device_or_404, dumps, iso, route_doc, services
from gbgw.gb28181.observe.event_types import EventType
from gbgw.gb28181.observe.events import EventBus, GatewayEvent

routes = web.RouteTableDef()

MAX_LIMIT = 1000
EVENT_BUS: web.AppKey[EventBus] = web.AppKey("event_bus", EventBus)
"""The live events' bus, set by the daemon (``/api/events`` answers 503 without it)."""
SSE_PING = 15.0
"""Seconds between comment lines on a quiet stream: proxies close idle connections, and a client that
went away is noticed only when a write fails."""


@routes.get("/api/alarms")
@route_doc("Stored alarms, newest first (?device_id=, ?limit= up to 1000)", answer=list[schemas.AlarmAnswer])
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
        ], dumps=dumps
    )


@routes.get("/api/devices/{device_id}/positions")
@route_doc("A device's stored mobile positions, newest first (?limit= 1 to 1000)",
           answer=list[schemas.PositionAnswer])
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
        ], dumps=dumps
    )


def _sse(event: GatewayEvent) -> bytes:
    data = json.dumps(event.json(), ensure_ascii=False, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.type.value}\ndata: {data}\n\n".encode()


@routes.get("/api/events")
@route_doc("Live events as Server-Sent Events (text/event-stream): device.online/offline, registration.failed, "
           "alarm, catalog.changed, session.started/ended (?types= a comma-separated subset)",
           answer=schemas.EVENT_STREAM)
async def live_events(request: web.Request) -> web.StreamResponse:
    bus = request.app.get(EVENT_BUS)
    if bus is None:
        raise ApiError(503, "live events are not available in this application")
    wanted = request.query.get("types")
    types = None
    if wanted:
        try:
            types = frozenset(EventType(t.strip()) for t in wanted.split(",") if t.strip())
        except ValueError:
            raise ApiError(400, f"types: each one of {', '.join(t.value for t in EventType)}") from None
        types |= {EventType.STREAM_DROPPED}
    subscriber = bus.subscribe(types)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
        await response.write(b": live events\n\n")
        while True:
            try:
                event = await asyncio.wait_for(subscriber.next(), SSE_PING)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            if event is None:
                break
            await response.write(_sse(event))
    except ConnectionResetError:
        # The client went away: nothing more to write to.
        return response
    finally:
        bus.unsubscribe(subscriber)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response

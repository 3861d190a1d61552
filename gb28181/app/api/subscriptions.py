"""A device's subscriptions: catalog, alarm and MobilePosition, their state, and starting or ending the
alarm and position ones by hand (the configuration starts them when a device comes online)."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.addressing import control_services
from gbgw.gb28181.app.api.common import ApiError, device_or_404, dumps, iso, read_body, route_doc
from gbgw.gb28181.devices.device_subscriptions import EventKind, EventSubscription

routes = web.RouteTableDef()


def _event_json(sub: EventSubscription | None) -> dict[str, Any] | None:
    if sub is None:
        return None
    return {
        "state": sub.state.value,
        "expires_at": iso(sub.expires_at) if sub.dialog is not None else None,
        "refreshes": sub.refreshes,
        "sip_status": sub.status,
        "interval": sub.interval,
    }


def _kind(request: web.Request) -> EventKind:
    text = request.match_info["kind"]
    try:
        return EventKind(text)
    except ValueError:
        raise ApiError(404, f"subscription kind must be {' or '.join(k.value for k in EventKind)}, not {text!r}") from None


@routes.get("/api/devices/{device_id}/subscriptions")
@route_doc("The device's catalog, alarm and position subscriptions and their state",
           answer=schemas.SubscriptionsAnswer)
async def list_subscriptions(request: web.Request) -> web.Response:
    device = device_or_404(request)
    control = control_services(request)
    catalog = control.catalog.get(device.id)
    events = control.events.of_device(device.id)
    return web.json_response({
        "device_id": device.id,
        "catalog": None if catalog is None else {"state": "active", "expires_at": iso(catalog.expires_at)},
        **{kind.value: _event_json(events.get(kind)) for kind in EventKind},
    }, dumps=dumps)


class SubscribeBody(msgspec.Struct, forbid_unknown_fields=True):
    interval: int | None = None
    """Seconds between position reports (position only)."""


@routes.post("/api/devices/{device_id}/subscriptions/{kind}")
@route_doc("Subscribe to the device's alarms or positions now (again, if subscribed)", body=SubscribeBody,
           answer=schemas.SubscriptionAnswer)
async def subscribe(request: web.Request) -> web.Response:
    device = device_or_404(request)
    kind = _kind(request)
    body = await read_body(request, SubscribeBody)
    sub = await control_services(request).events.subscribe(device.id, kind, body.interval)
    return web.json_response({"device_id": device.id, "kind": kind.value, **(_event_json(sub) or {})}, dumps=dumps)


@routes.delete("/api/devices/{device_id}/subscriptions/{kind}")
@route_doc("End the device's alarm or position subscription (SUBSCRIBE Expires: 0)",
           answer=schemas.SubscriptionAnswer)
async def unsubscribe(request: web.Request) -> web.Response:
    device = device_or_404(request)
    kind = _kind(request)
    sub = await control_services(request).events.unsubscribe(device.id, kind)
    if sub is None:
        raise ApiError(404, f"device {device.id} has no {kind.value} subscription")
    return web.json_response({"device_id": device.id, "kind": kind.value, **(_event_json(sub) or {})}, dumps=dumps)

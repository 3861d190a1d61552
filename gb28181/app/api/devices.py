"""``/api/devices``: the registry's devices, their catalog refresh and their live status."""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.addressing import CONTROL
from gbgw.gb28181.app.api.common import Listing, decoded_id, device_or_404, dumps, iso, route_doc, services
from gbgw.gb28181.devices.requests import AccessError, DeviceRequests
from gbgw.gb28181.media.stages import Stage
from gbgw.registry.model import Device

log = structlog.get_logger("gb28181.api")

routes = web.RouteTableDef()


def device_json(device: Device, registered: bool, shared_channel_ids: list[str]) -> dict[str, Any]:
    """``shared_channel_ids``: the device's channel IDs another device reports too (play and control
    those by device)."""
    host = f"[{device.host}]" if ":" in device.host else device.host
    return {
        "id": device.id,
        "name": device.name or None,
        "manufacturer": device.manufacturer or None,
        "model": device.model or None,
        "firmware": device.firmware or None,
        "online": device.online,
        "registered": registered,
        "transport": device.transport,
        "address": f"{host}:{device.port}" if device.host else None,
        "registered_at": iso(device.registered_at),
        "expires_at": iso(device.expires_at),
        "last_keepalive": iso(device.last_keepalive),
        "channel_count": device.channel_count,
        "catalog_partial": device.catalog_partial,
        "stream_transport": device.stream_transport,
        "id_info": decoded_id(device.id),
        "warnings": [{"kind": w.kind, "detail": w.detail, "at": iso(w.at)} for w in device.warnings],
        "shared_channel_ids": shared_channel_ids,
    }


def _shared_ids(request: web.Request, device_id: str) -> list[str]:
    control = request.app.get(CONTROL)
    # An application built without the control services keeps no directory of channel IDs.
    return control.channels.shared_ids(device_id) if control is not None else []


@routes.get("/api/devices")
@route_doc("The registry's devices (?online=true|false&industry=01,11&q=text; with ?limit=, pages by ?cursor=)",
           answer=schemas.DeviceList)
async def list_devices(request: web.Request) -> web.Response:
    listing = Listing.of(request)
    api = services(request)
    now = api.clock()
    devices = (d for d in api.registry.devices() if listing.wants(d.id, d.name, d.online))
    return web.json_response(listing.answer(
        devices, _device_id,
        lambda d: device_json(d, api.registry.is_registered(d.id, now), _shared_ids(request, d.id)),
    ), dumps=dumps)


def _device_id(device: Device) -> str:
    return device.id


@routes.get("/api/devices/{device_id}")
@route_doc("One device", answer=schemas.DeviceAnswer)
async def get_device(request: web.Request) -> web.Response:
    found = device_or_404(request)
    api = services(request)
    return web.json_response(
        device_json(found, api.registry.is_registered(found.id, api.clock()), _shared_ids(request, found.id)), dumps=dumps
    )


@routes.post("/api/devices/{device_id}/catalog/refresh")
@route_doc("Query the device's catalog again (?wait=false answers 202 at once)",
           answer=schemas.CatalogRefreshed)
async def refresh_catalog(request: web.Request) -> web.Response:
    found = device_or_404(request)
    api = services(request)
    if request.query.get("wait", "true").lower() in ("0", "false", "no"):
        if not found.online:
            raise AccessError(Stage.DEVICE_OFFLINE, f"{found.id} is not online")
        api.tasks.spawn(_refresh_in_background(api.requests, found.id))
        return web.json_response({"device_id": found.id, "state": "requested"}, status=202, dumps=dumps)
    result = await api.requests.refresh_catalog(found.id)
    return web.json_response(
        {
            "device_id": found.id,
            "complete": result.complete,
            "sum_num": result.sum_num,
            "received": len(result.items),
            "channel_count": found.channel_count,
        }, dumps=dumps
    )


async def _refresh_in_background(requests: DeviceRequests, device_id: str) -> None:
    # Nobody awaits this task: a failure must end in the log, not in "exception never retrieved".
    try:
        await requests.refresh_catalog(device_id)
    except AccessError as exc:
        log.info("catalog refresh failed", device=device_id, stage=exc.stage, reason=exc.detail)


@routes.get("/api/devices/{device_id}/status")
@route_doc("Ask the device for its DeviceStatus now", answer=schemas.DeviceStatusAnswer)
async def device_status(request: web.Request) -> web.Response:
    found = device_or_404(request)
    status = await services(request).requests.device_status(found.id)
    return web.json_response(
        {
            "device_id": found.id,
            "online": status.is_online,
            "result": status.result,
            "status": status.status,
            "reason": status.reason,
            "encode": status.encode,
            "record": status.record,
            "device_time": status.device_time,
            "alarms": [{"id": a.device_id, "state": a.duty_status} for a in status.alarm_status],
        }, dumps=dumps
    )

"""Vendor diagnostics: a device's SIP trace and warnings, and the registrations the gateway refused.

- ``GET /api/devices/{id}/trace``     the last messages both ways (secrets blanked), keepalive counts, the
  device's warnings and refused registrations; also for an ID that never registered (the ID it claimed)
- ``GET /api/devices/{id}/warnings``  what its registrations showed (foreign server ID or domain, private
  Contact behind NAT, clock skew, a new address)
- ``GET /api/registrations/failed``   recent refusals by claimed ID and source, with the reason the device
  was answered (``?device_id=`` for one ID, ``?limit=``)
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.common import ApiError, dumps, iso, route_doc, services
from gbgw.gb28181.devices.diagnostics import DeviceDiagnostics, FailedRegistration, TraceEntry
from gbgw.registry.model import DeviceWarning

routes = web.RouteTableDef()

DEFAULT_LIMIT = 100


def _diagnostics(request: web.Request) -> DeviceDiagnostics:
    found = services(request).diagnostics
    if found is None:
        raise ApiError(503, "diagnostics are not enabled on this gateway")
    return found


def _limit(request: web.Request) -> int:
    value = request.query.get("limit", str(DEFAULT_LIMIT))
    if not value.isdigit() or not 0 < int(value) <= 10000:
        raise ApiError(400, f"limit must be a number from 1 to 10000, not {value!r}")
    return int(value)


def entry_json(entry: TraceEntry) -> dict[str, Any]:
    text = entry.text
    return {
        "at": iso(entry.at),
        "direction": "in" if entry.inbound else "out",
        "peer": entry.peer,
        "first_line": text.split("\r\n", 1)[0],
        "size": entry.size,
        "truncated": entry.size > len(entry.data),
        "text": text,
    }


def warning_json(warning: DeviceWarning) -> dict[str, Any]:
    return {"kind": warning.kind, "detail": warning.detail, "at": iso(warning.at)}


def failure_json(failure: FailedRegistration, known: bool) -> dict[str, Any]:
    return {
        "device_id": failure.device_id,
        "known": known,
        "source": failure.source,
        "status": failure.status,
        "reason": failure.reason,
        "count": failure.count,
        "first_at": iso(failure.first_at),
        "last_at": iso(failure.last_at),
    }


@routes.get("/api/devices/{device_id}/trace")
@route_doc("The device's last SIP messages both ways (secrets redacted), also for an ID that failed to register",
           answer=schemas.TraceAnswer)
async def device_trace(request: web.Request) -> web.Response:
    diagnostics = _diagnostics(request)
    device_id = request.match_info["device_id"]
    registry = services(request).registry
    device = registry.get(device_id)
    trace = diagnostics.trace.get(device_id)
    failures = diagnostics.failures.recent(device_id)
    if device is None and trace is None and not failures:
        raise ApiError(404, f"no device {device_id}, and nothing was heard from that ID")
    messages = list(trace.messages)[-_limit(request):] if trace is not None else []
    return web.json_response(
        {
            "device_id": device_id,
            "known": device is not None,
            "keepalives": {
                "received": trace.keepalives if trace is not None else 0,
                "answered": trace.keepalives_answered if trace is not None else 0,
            },
            "warnings": [warning_json(w) for w in device.warnings] if device is not None else [],
            "failed_registrations": [failure_json(f, device is not None) for f in failures],
            "messages": [entry_json(e) for e in messages],
        },
        dumps=dumps,
    )


@routes.get("/api/devices/{device_id}/warnings")
@route_doc("What the device's registrations showed that may explain trouble (NAT, foreign server ID, clock)",
           answer=list[schemas.DeviceWarning])
async def device_warnings(request: web.Request) -> web.Response:
    device_id = request.match_info["device_id"]
    device = services(request).registry.get(device_id)
    if device is None:
        raise ApiError(404, f"no device {device_id}")
    return web.json_response([warning_json(w) for w in device.warnings], dumps=dumps)


@routes.get("/api/registrations/failed")
@route_doc("Recent refused registrations by claimed ID and source, with the reason (unknown IDs included)",
           answer=list[schemas.FailedRegistrationAnswer])
async def failed_registrations(request: web.Request) -> web.Response:
    diagnostics = _diagnostics(request)
    registry = services(request).registry
    found = diagnostics.failures.recent(request.query.get("device_id"))[: _limit(request)]
    return web.json_response([failure_json(f, f.device_id in registry) for f in found], dumps=dumps)

"""The HTTP API (aiohttp, JSON) and the Prometheus endpoint.

Errors are JSON objects ``{"error": ..., "stage": ...}``: "stage" names the step that failed (device
offline, request rejected, no answer) so an integrator sees where a request died without reading logs.
Nothing secret is ever serialised: devices carry no password, nonce or digest field at all.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from gbgw.gb28181.devices.access import AccessError
from gbgw.gb28181.ids import GbId, InvalidGbId
from gbgw.gb28181.media.live import PlayError, Session
from gbgw.registry.model import Channel, Device

if TYPE_CHECKING:
    from gbgw.gb28181.app.daemon import Gateway
    from gbgw.gb28181.cascade.link import UpstreamLink

log = structlog.get_logger("gb28181.api")

GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")


def _iso(ts: float) -> str | None:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds") if ts else None


def decoded_id(value: str) -> dict[str, Any] | None:
    try:
        gb = GbId.parse(value)
    except InvalidGbId:
        return None
    return {
        "industry": gb.industry,
        "industry_name": gb.industry_name,
        "type": gb.type,
        "type_name": gb.type_name,
        "network": gb.network,
        "network_name": gb.network_name,
        "civil_code": gb.civil_code,
    }


def device_json(device: Device, registered: bool) -> dict[str, Any]:
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
        "registered_at": _iso(device.registered_at),
        "expires_at": _iso(device.expires_at),
        "last_keepalive": _iso(device.last_keepalive),
        "channel_count": device.channel_count,
        "catalog_partial": device.catalog_partial,
        "stream_transport": device.stream_transport,
        "id_info": decoded_id(device.id),
    }


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


def _error(status: int, message: str, stage: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if stage is not None:
        body["stage"] = stage
    body.update(extra)
    return web.json_response(body, status=status)


def _access_error(exc: AccessError) -> web.Response:
    status = {"device offline": 409, "no answer": 504, "request rejected": 502}.get(exc.stage, 502)
    return _error(status, exc.detail, exc.stage, device_status=exc.status)


def _device_or_404(request: web.Request) -> Device:
    """The device the path names; an unknown one ends the request with a JSON 404."""
    device_id = request.match_info["device_id"]
    device = request.app[GATEWAY_KEY].registry.get(device_id)
    if device is None:
        raise web.HTTPNotFound(
            text=json.dumps({"error": f"no device {device_id}"}), content_type="application/json"
        )
    return device


async def list_devices(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    now = gw.access.clock()
    online = request.query.get("online")
    devices = gw.registry.devices()
    if online is not None:
        want = online.lower() in ("1", "true", "yes")
        devices = [d for d in devices if d.online == want]
    return web.json_response([device_json(d, gw.registry.is_registered(d.id, now)) for d in devices])


async def get_device(request: web.Request) -> web.Response:
    found = _device_or_404(request)
    gw = request.app[GATEWAY_KEY]
    return web.json_response(device_json(found, gw.registry.is_registered(found.id, gw.access.clock())))


async def list_channels(request: web.Request) -> web.Response:
    found = _device_or_404(request)
    channels = request.app[GATEWAY_KEY].registry.channels(found.id)
    return web.json_response([channel_json(c) for c in channels])


async def refresh_catalog(request: web.Request) -> web.Response:
    found = _device_or_404(request)
    gw = request.app[GATEWAY_KEY]
    if request.query.get("wait", "true").lower() in ("0", "false", "no"):
        if not found.online:
            return _access_error(AccessError("device offline", f"{found.id} is not online"))
        gw.access.spawn(_refresh_in_background(gw, found.id))
        return web.json_response({"device_id": found.id, "state": "requested"}, status=202)
    try:
        result = await gw.access.refresh_catalog(found.id)
    except AccessError as exc:
        return _access_error(exc)
    return web.json_response(
        {
            "device_id": found.id,
            "complete": result.complete,
            "sum_num": result.sum_num,
            "received": len(result.items),
            "channel_count": found.channel_count,
        }
    )


async def _refresh_in_background(gw: Gateway, device_id: str) -> None:
    # Nobody awaits this task: a failure must end in the log, not in "exception never retrieved".
    try:
        await gw.access.refresh_catalog(device_id)
    except AccessError as exc:
        log.info("catalog refresh failed", device=device_id, stage=exc.stage, reason=exc.detail)


async def device_status(request: web.Request) -> web.Response:
    found = _device_or_404(request)
    gw = request.app[GATEWAY_KEY]
    try:
        status = await gw.access.device_status(found.id)
    except AccessError as exc:
        return _access_error(exc)
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
        }
    )


async def list_alarms(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    try:
        limit = min(int(request.query.get("limit", "100")), 1000)
    except ValueError:
        limit = -1
    if limit < 0:
        # SQLite reads a negative LIMIT as no limit at all.
        return _error(400, "limit must be a whole number, at least 0")
    alarms = await gw.storage.list_alarms(request.query.get("device_id"), limit)
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
                "received_at": _iso(a.received_at),
            }
            for a in alarms
        ]
    )


def session_json(session: Session) -> dict[str, Any]:
    stream = session.stream
    ingest = stream.ingest.stats
    output = session.output.stats
    return {
        "id": session.id,
        "owner": session.owner,
        "channel_id": stream.channel_id,
        "device_id": stream.device_id,
        "state": "ended" if session.ended else ("streaming" if output.state == "live" else output.state),
        "ended": session.ended,
        "transport": session.transport,
        "receiver": output.receiver,
        "local_port": output.local_port,
        "ssrc": f"{output.ssrc:010d}" if output.ssrc < 10**10 else str(output.ssrc),
        "age": round(output.age, 3),
        "packets_out": output.packets,
        "bytes_out": output.bytes,
        "device": {
            "transport": stream.transport.value,
            "ssrc": stream.ssrc,
            # What the device really sends: many ignore the offered y= (0, an old value...).
            "ssrc_received": None if ingest.ssrc is None else f"{ingest.ssrc:010d}",
            "local_port": ingest.local_port,
            "packets_in": ingest.packets,
            "bytes_in": ingest.bytes,
            "lost": ingest.lost,
            "reordered": ingest.reordered,
            "dropped": ingest.dropped,
            "age": round(ingest.age, 3),
        },
    }


async def play(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body must be JSON: {\"host\", \"port\", \"transport\", \"ssrc\"}")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    host, port, ssrc = body.get("host"), body.get("port"), body.get("ssrc")
    transport = body.get("transport", "udp")
    if host is not None and not isinstance(host, str):
        return _error(400, "host must be a string")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        return _error(400, "port must be an integer from 1 to 65535")
    if ssrc is not None:
        try:
            ssrc = int(ssrc)
        except (TypeError, ValueError):
            return _error(400, "ssrc must be a number (10 digits as in y=)")
        if not 0 <= ssrc <= 9_999_999_999:
            return _error(400, "ssrc must be a number (10 digits as in y=)")
    if not isinstance(transport, str):
        return _error(400, "transport must be udp, tcp-active or tcp-passive")
    try:
        session = await gw.live.play(
            request.match_info["channel_id"], host=host, port=port, transport=transport, ssrc=ssrc
        )
    except PlayError as exc:
        return _error(exc.http_status, exc.detail, exc.stage, device_status=exc.status)
    return web.json_response(session_json(session))


async def list_sessions(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    return web.json_response([session_json(s) for s in list(gw.live.sessions.values())])


async def get_session(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    session = gw.live.sessions.get(request.match_info["session_id"])
    if session is None:
        return _error(404, f"no session {request.match_info['session_id']}")
    return web.json_response(session_json(session))


async def delete_session(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    if not gw.live.stop(request.match_info["session_id"]):
        return _error(404, f"no session {request.match_info['session_id']}")
    return web.json_response({"id": request.match_info["session_id"], "state": "stopped"})


async def list_positions(request: web.Request) -> web.Response:
    found = _device_or_404(request)
    gw = request.app[GATEWAY_KEY]
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        limit = -1
    if not 1 <= limit <= 1000:
        return _error(400, "limit must be a whole number from 1 to 1000")
    positions = await gw.storage.list_mobile_positions(found.id, limit)
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
                "received_at": _iso(p.received_at),
            }
            for p in positions
        ]
    )


async def health(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    return web.json_response(
        {"status": "ok", "devices": len(gw.registry), "online": gw.registry.online_count}
    )


def upstream_json(gw: Gateway, link: UpstreamLink) -> dict[str, Any]:
    cfg = link.config
    registration = link.registration
    transport = link.transport
    remaining = None
    if registration is not None and registration.expires_at is not None and transport is not None:
        remaining = max(0, round(registration.expires_at - transport.now()))
    return {
        "name": link.name,
        "id": cfg.id,
        "address": str(cfg.address),
        "transport": cfg.transport,
        "listen": str(cfg.listen),
        "media_ip": cfg.media_ip,
        "media_ports": cfg.media_ports,
        "online": link.online,
        "reason": link.reason,
        "registrar": registration.registrar_uri if registration is not None else None,
        "registration_expires_in": remaining,
        "keepalive_failures": link.keepalive_failures,
        "shared_channels": gw.cascade.shared_count(link),
        "subscriptions": sorted(link.subscriptions),
        "sessions": len(gw.cascade.streams[link.name].sessions),
        "invites": dict(gw.cascade.streams[link.name].totals),
        "rate_dropped": transport.rate.dropped if transport is not None and transport.rate is not None else 0,
        "refused_sources": transport.refused_sources if transport is not None else 0,
    }


async def list_upstreams(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    return web.json_response([upstream_json(gw, link) for link in gw.cascade.links.values()])


async def get_upstream(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    name = request.match_info["name"]
    link = gw.cascade.links.get(name)
    if link is None:
        return _error(404, f"no upstream named {name!r}")
    return web.json_response(upstream_json(gw, link))


async def upstream_sessions(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    name = request.match_info["name"]
    streams = gw.cascade.streams.get(name)
    if streams is None:
        return _error(404, f"no upstream named {name!r}")
    return web.json_response(streams.describe())


async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY_KEY]
    return web.Response(body=gw.metrics.render(), content_type="text/plain", charset="utf-8")


def make_app(gateway: Gateway) -> web.Application:
    app = web.Application()
    app[GATEWAY_KEY] = gateway
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/devices", list_devices)
    app.router.add_get("/api/devices/{device_id}", get_device)
    app.router.add_get("/api/devices/{device_id}/channels", list_channels)
    app.router.add_post("/api/devices/{device_id}/catalog/refresh", refresh_catalog)
    app.router.add_get("/api/devices/{device_id}/status", device_status)
    app.router.add_get("/api/alarms", list_alarms)
    app.router.add_get("/api/devices/{device_id}/positions", list_positions)
    app.router.add_post("/api/channels/{channel_id}/play", play)
    app.router.add_get("/api/sessions", list_sessions)
    app.router.add_get("/api/sessions/{session_id}", get_session)
    app.router.add_delete("/api/sessions/{session_id}", delete_session)
    app.router.add_get("/api/upstreams", list_upstreams)
    app.router.add_get("/api/upstreams/{name}", get_upstream)
    app.router.add_get("/api/upstreams/{name}/sessions", upstream_sessions)
    app.router.add_get("/metrics", metrics)
    return app

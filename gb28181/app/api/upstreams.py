"""``/api/upstreams``: each upper platform's link, what it is shared, and the streams it pulls."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.common import ApiError, ApiServices, dumps, route_doc, services
from gbgw.gb28181.cascade.catalog import shared_count
from gbgw.gb28181.cascade.link import UpstreamLink

routes = web.RouteTableDef()


def upstream_json(api: ApiServices, link: UpstreamLink) -> dict[str, Any]:
    cfg = link.config
    registration = link.registration
    transport = link.transport
    streams = api.cascade.streams[link.name]
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
        "shared_channels": shared_count(api.registry, link.policy),
        "subscriptions": sorted(link.subscriptions),
        "sessions": len(streams.sessions),
        "invites": dict(streams.totals),
        "rate_dropped": transport.rate.dropped if transport is not None and transport.rate is not None else 0,
        "refused_sources": transport.refused_sources if transport is not None else 0,
    }


def _link_or_404(request: web.Request) -> UpstreamLink:
    name = request.match_info["name"]
    link = services(request).cascade.links.get(name)
    if link is None:
        raise ApiError(404, f"no upstream named {name!r}")
    return link


@routes.get("/api/upstreams")
@route_doc("Every upper platform's link: registration, keepalives, what it is shared",
           answer=list[schemas.UpstreamAnswer])
async def list_upstreams(request: web.Request) -> web.Response:
    api = services(request)
    return web.json_response([upstream_json(api, link) for link in api.cascade.links.values()], dumps=dumps)


@routes.get("/api/upstreams/{name}")
@route_doc("One upper platform's link", answer=schemas.UpstreamAnswer)
async def get_upstream(request: web.Request) -> web.Response:
    return web.json_response(upstream_json(services(request), _link_or_404(request)), dumps=dumps)


@routes.get("/api/upstreams/{name}/sessions")
@route_doc("The streams one upper platform pulls", answer=list[schemas.UpperSessionAnswer])
async def upstream_sessions(request: web.Request) -> web.Response:
    link = _link_or_404(request)
    return web.json_response(services(request).cascade.streams[link.name].describe(), dumps=dumps)

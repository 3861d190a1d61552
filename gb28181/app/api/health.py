"""The gateway's own state: ``/api/health`` for supervisors, ``/metrics`` for Prometheus."""

from __future__ import annotations

from aiohttp import web

from gbgw.gb28181.app.api.common import services

routes = web.RouteTableDef()


@routes.get("/api/health")
async def health(request: web.Request) -> web.Response:
    registry = services(request).registry
    return web.json_response({"status": "ok", "devices": len(registry), "online": registry.online_count})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=services(request).metrics.render(), content_type="text/plain", charset="utf-8")

"""The gateway's own state: ``/api/health`` for supervisors, ``/metrics`` for Prometheus."""

from __future__ import annotations

from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.common import Role, dumps, route_doc, services

routes = web.RouteTableDef()


@routes.get("/api/health")
@route_doc("Whether the gateway is up, with its device counts (for supervisors; no token)", public=True,
           answer=schemas.HealthAnswer)
async def health(request: web.Request) -> web.Response:
    # 200 even when degraded: a full audit disk must not take the gateway out of a load balancer; the
    # body says what is wrong, for a supervisor or an alert to act on.
    found = services(request)
    body = found.health.report().as_dict()
    body.update(devices=len(found.registry), online=found.registry.online_count)
    return web.json_response(body, dumps=dumps)


@routes.get("/metrics")
@route_doc("Prometheus metrics (a viewer token, or no token on metrics.listen)", role=Role.VIEWER,
           answer=schemas.TEXT)
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=services(request).metrics.render(), content_type="text/plain", charset="utf-8")

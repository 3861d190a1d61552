"""The aiohttp application: every resource's routes, the services they use, the auth and error middlewares.

Each route's handler declares its summary and access rule (``route_doc``); an application with a route
that does not is refused when it is built, so no route can be reachable without an access rule.
"""

from __future__ import annotations

from aiohttp import web

from gbgw.gb28181.app.api import (
    broadcast,
    channels,
    console,
    control,
    devices,
    diagnostics,
    events,
    health,
    openapi,
    recording,
    reports,
    sessions,
    snapshots,
    subscriptions,
    upstreams,
    whep,
)
from gbgw.gb28181.app.api.auth import ApiGuard, TokenTable
from gbgw.gb28181.app.api.common import SERVICES, ApiServices, answer_errors, doc_of
from gbgw.gb28181.app.api.timing import request_timer
from gbgw.gb28181.observe.metrics import GatewayMetrics

# recording before sessions: its /api/sessions/{playback|download-N} routes must match first.
RESOURCES = (health, devices, diagnostics, channels, control, subscriptions, events, recording, sessions, upstreams,
             reports, openapi, whep, console, broadcast, snapshots)


class UndeclaredRoute(RuntimeError):
    """A route whose handler has no ``route_doc``: it would have no access rule and no OpenAPI entry."""


def make_app(services: ApiServices) -> web.Application:
    guard = ApiGuard(TokenTable(services.config.tokens), services.audit, services.metrics.registry)
    # The guard runs first: a refused request never reaches a handler, nor the body it would read.
    app = web.Application(middlewares=[request_timer(services.metrics), guard.middleware, answer_errors])
    app[SERVICES] = services
    for resource in RESOURCES:
        app.add_routes(resource.routes)
    undeclared = [f"{route.method} {route.resource.canonical if route.resource else '?'}"
                  for route in app.router.routes() if doc_of(route.handler) is None]
    if undeclared:
        raise UndeclaredRoute(f"routes without route_doc: {', '.join(undeclared)}")
    app[openapi.DOCUMENT] = openapi.document(app.router)
    return app


def make_metrics_app(metrics: GatewayMetrics) -> web.Application:
    """``/metrics`` alone, without a token, for ``metrics.listen``: a scraper on a monitoring network
    then needs no API token, and the API's listener need not be reachable from there."""

    async def scrape(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    return app

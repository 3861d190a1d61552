"""The aiohttp application: every resource's routes, the services they use, the error middleware."""

from __future__ import annotations

from aiohttp import web

from gbgw.gb28181.app.api import channels, devices, events, health, sessions, upstreams
from gbgw.gb28181.app.api.common import SERVICES, ApiServices, answer_errors

RESOURCES = (health, devices, channels, events, sessions, upstreams)


def make_app(services: ApiServices) -> web.Application:
    app = web.Application(middlewares=[answer_errors])
    app[SERVICES] = services
    for resource in RESOURCES:
        app.add_routes(resource.routes)
    return app

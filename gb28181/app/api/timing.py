"""The API request duration histogram (``gb_api_request_seconds``), as an aiohttp middleware.

Labelled by the route's template (``/api/devices/{device_id}``), never by the path itself, so 100,000
device IDs make one series, not 100,000; a path no route matches is counted as ``unmatched``.
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Middleware

from gbgw.gb28181.app.api.common import Handler
from gbgw.gb28181.observe.metrics import GatewayMetrics

UNMATCHED = "unmatched"


def request_timer(metrics: GatewayMetrics) -> Middleware:
    histogram = metrics.api_request

    @web.middleware
    async def timed(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = request.match_info.route
            resource = route.resource
            template = resource.canonical if resource is not None and request.match_info.http_exception is None \
                else UNMATCHED
            histogram.labels(request.method, template, f"{status // 100}xx").observe(time.perf_counter() - started)

    return timed

"""The HTTP API (aiohttp, JSON) and the Prometheus endpoint, one module per resource.

Errors are JSON objects ``{"error": ..., "stage": ...}``: "stage" names the step that failed (device
offline, request rejected, no answer) so an integrator sees where a request died without reading logs.
Nothing secret is ever serialised: devices carry no password, nonce or digest field at all.
"""

from gbgw.gb28181.app.api.app import make_app, make_metrics_app
from gbgw.gb28181.app.api.common import ApiServices

__all__ = ["ApiServices", "make_app", "make_metrics_app"]

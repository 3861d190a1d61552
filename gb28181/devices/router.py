"""Routing of the requests that reach the device-facing SIP address to the part of the gateway serving
each method (registrar, device messages, live media's BYE).

The router is the transport's request handler, so it exists before the transport does. A method nobody
serves is answered ``405`` with ``Allow`` naming exactly the routed methods; the endpoint's own OPTIONS
answers say the same, because the router keeps the endpoint's ``allow`` in step with its table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.sip.endpoint import EndpointConfig
from gbgw.sip.transaction import ServerTransaction

RequestHandler = Callable[[ServerTransaction], None]


class RequestRouter:
    def __init__(self, metrics: GatewayMetrics, endpoint: EndpointConfig) -> None:
        self.metrics = metrics
        self.endpoint = endpoint
        self._handlers: dict[str, RequestHandler] = {}
        self.methods: tuple[str, ...] = ()
        self._allow = ""
        self._advertise()

    def handle(self, method: str, handler: RequestHandler) -> None:
        """Route requests of ``method`` from devices to ``handler``."""
        self._handlers[method] = handler
        self._advertise()

    def _advertise(self) -> None:
        self.methods = (*self._handlers, "OPTIONS")
        self._allow = ", ".join(self.methods)
        self.endpoint.allow = self.methods

    def on_request(self, txn: ServerTransaction) -> None:
        method = txn.request.method
        self.metrics.request(method)
        handler = self._handlers.get(method)
        if handler is None:
            # Called from inside the transport's receive, whose flush sends the answer; the transaction's
            # timers run on the loop's clock, as the transport's do.
            txn.reply(405, now=asyncio.get_running_loop().time(), headers=[("Allow", self._allow)])
            return
        handler(txn)

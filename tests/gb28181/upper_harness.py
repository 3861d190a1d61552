"""An upper (police) platform for the cascade tests, and a rig: gateway + simulated cameras + upper.

``FakeUpper`` is built on the project's own ``sip`` package (the sipp scenarios in tests/sipp/ are the
independent peer): a registrar that challenges with digest, answers keepalives and MESSAGEs, records
everything the gateway sends, and sends requests of its own to the gateway's police-side address.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from access_harness import DOMAIN, GATEWAY_ID, PASSWORD, RunningGateway
from wire import free_port

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.gb28181 import manscdp
from gbgw.gb28181.manscdp import ManscdpDocument
from gbgw.sip.digest import DigestResult, DigestServer, parse_credentials
from gbgw.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from gbgw.sip.message import Request, Response, make_response, new_call_id, new_tag
from gbgw.sip.transaction import ServerTransaction, Timers
from gbgw.sip.transport import SipTransport

UPPER_ID = "34020000002000000009"
UPPER_DOMAIN = "3402000000"
UPPER_PASSWORD = "upper-secret-987654"
FAST_TIMERS = Timers(0.1, 0.4, 0.5)


@dataclass
class Received:
    request: Request
    source: Peer
    doc: ManscdpDocument | None = None


class FakeUpper:
    """Registrar and peer for the gateway's upstream link; everything received is kept in order."""

    def __init__(self, host: str = "127.0.0.1", password: str = UPPER_PASSWORD, upper_id: str = UPPER_ID) -> None:
        self.host = host
        self.port = 0
        self.id = upper_id
        self.password = password
        self.endpoint = SipEndpoint(EndpointConfig(user_agent="fake-upper", timers=FAST_TIMERS))
        self.transport = SipTransport(self.endpoint, self._on_request, on_ack=self._on_ack)
        self.digest = DigestServer(UPPER_DOMAIN, os.urandom(16))
        self.registers: list[Received] = []
        self.messages: list[Received] = []
        self.requests: list[Received] = []
        self.acks: list[Request] = []
        self.registered = asyncio.Event()
        self.gateway: Peer | None = None
        """Where the gateway registered from (its police-side address)."""
        self.message_status: int | None = 200
        """What MESSAGEs are answered with; None: no answer at all (an outage)."""
        self.register_status: int | None = None
        """Set to answer REGISTER with this status instead of the normal digest exchange (None: normal)."""
        self.handlers: dict[str, Callable[[ServerTransaction], None]] = {}
        self._changed = asyncio.Event()

    async def start(self, port: int = 0) -> FakeUpper:
        _, self.port = await self.transport.start(self.host, port or free_port())
        return self

    async def close(self) -> None:
        await self.transport.close()

    # -- receiving -----------------------------------------------------------------------------------

    def _on_request(self, txn: ServerTransaction) -> None:
        req = txn.request
        received = Received(req, txn.remote)
        self.requests.append(received)
        handler = self.handlers.get(req.method)
        if handler is not None:
            handler(txn)
        elif req.method == "REGISTER":
            self._on_register(txn, received)
        elif req.method == "MESSAGE":
            with contextlib.suppress(manscdp.ManscdpError):
                received.doc = manscdp.parse(req.body)
            self.messages.append(received)
            if self.message_status is not None:
                self.transport.reply(txn, self.message_status)
        else:
            with contextlib.suppress(manscdp.ManscdpError):
                received.doc = manscdp.parse(req.body) if req.body else None
            self.transport.reply(txn, 200)
        self._changed.set()

    def _on_ack(self, request: Request, source: Peer) -> None:
        self.acks.append(request)
        self._changed.set()

    def _on_register(self, txn: ServerTransaction, received: Received) -> None:
        req = txn.request
        if self.register_status is not None:
            self.transport.reply(txn, self.register_status)
            return
        header = req.get("Authorization")
        now = self.transport.now()
        if header is None:
            self.transport.reply(txn, 401, headers=[("WWW-Authenticate", self.digest.challenge(now))])
            return
        result = self.digest.verify(parse_credentials(header), req.method, self.password, now, call_id=req.call_id)
        if result is DigestResult.STALE:
            self.transport.reply(txn, 401, headers=[("WWW-Authenticate", self.digest.challenge(now, stale=True))])
            return
        if result is not DigestResult.OK:
            self.transport.reply(txn, 403, f"Digest {result.value}")
            return
        self.registers.append(received)
        expires = req.get("Expires") or "3600"
        self.transport.reply(txn, 200, headers=[("Contact", req.get("Contact") or ""), ("Expires", expires)])
        if expires != "0":
            self.gateway = txn.remote
            self.registered.set()

    async def wait(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
        """Wait until ``predicate()`` is truthy (re-checked whenever something arrives); return its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"the upper waited {timeout} s for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.1))

    def documents(self, root: str, cmd_type: str, sn: int | None = None) -> list[ManscdpDocument]:
        return [
            m.doc for m in self.messages
            if m.doc is not None and m.doc.root == root and m.doc.cmd_type == cmd_type and (sn is None or m.doc.sn == sn)
        ]

    # -- sending -------------------------------------------------------------------------------------

    def request(self, method: str, to_id: str = GATEWAY_ID, body: bytes = b"",
                content_type: str | None = None, headers: list[tuple[str, str]] | None = None) -> Request:
        """A request from the upper to the gateway's police-side address (where it registered from)."""
        assert self.gateway is not None, "the gateway has not registered"
        gw = self.gateway
        hdrs = [
            ("Via", self.transport.via(gw.transport)),
            ("From", f"<sip:{self.id}@{UPPER_DOMAIN}>;tag={new_tag()}"),
            ("To", f"<sip:{to_id}@{DOMAIN}>"),
            ("Call-ID", new_call_id(self.host)),
            ("CSeq", f"1 {method}"),
            ("Max-Forwards", "70"),
            ("Contact", f"<sip:{self.id}@{self.host}:{self.port}>"),
            *(headers or []),
        ]
        if content_type:
            hdrs.append(("Content-Type", content_type))
        return Request(method, f"sip:{to_id}@{gw.host}:{gw.port}", hdrs, body)

    async def send(self, request: Request) -> Response:
        assert self.gateway is not None
        return await self.transport.send_request(request, Peer(self.gateway.transport, self.gateway.host,
                                                                self.gateway.port))

    async def manscdp(self, doc: ManscdpDocument, to_id: str = GATEWAY_ID) -> Response:
        body = manscdp.encode_body(doc, "GB2312")
        return await self.send(self.request("MESSAGE", to_id, body, "Application/MANSCDP+xml"))

    def reply(self, txn: ServerTransaction, response: Response) -> None:
        self.transport.respond(txn, response)

    def answer(self, txn: ServerTransaction, status: int, **kwargs: Any) -> Response:
        response = make_response(txn.request, status, to_tag=new_tag(), **kwargs)
        self.transport.respond(txn, response)
        return response


def upstream_config(upper: FakeUpper, listen_port: int | None = None, **overrides: Any) -> dict[str, Any]:
    """An ``upstreams:`` entry pointing at ``upper`` (police side on loopback, short timers)."""
    entry: dict[str, Any] = {
        "name": "district",
        "id": upper.id,
        "domain": UPPER_DOMAIN,
        "address": f"{upper.host}:{upper.port}",
        "listen": f"127.0.0.1:{listen_port or free_port()}",
        "media_ip": "127.0.0.1",
        "media_ports": "41000-41999",
        "password": upper.password,
        "register_expires": 3600,
        "keepalive_interval": 5,
        "share": [{"prefix": "34020000"}],
    }
    entry.update(overrides)
    return entry


@dataclass
class CascadeRig:
    gateway: RunningGateway
    upper: FakeUpper
    simulators: list[DeviceSimulator] = field(default_factory=list)

    async def add_cameras(self, count: int = 1, channels: int = 1, **options: Any) -> DeviceSimulator:
        simulator = DeviceSimulator(SimulatorConfig(
            server_host="127.0.0.1", server_port=self.gateway.sip_port, password=PASSWORD,
            count=count, channels=channels, **options,
        ))
        self.simulators.append(simulator)
        await simulator.start()
        await simulator.wait_registered(timeout=10)
        wanted = count * channels

        async def catalogs_known() -> bool:
            return sum(len(self.gateway.gateway.registry.channels(simulator.device_id(i)))
                       for i in range(count)) >= wanted

        await self.gateway.wait_for(catalogs_known, 20, "the cameras' catalogs")
        return simulator

    async def close(self) -> None:
        for simulator in self.simulators:
            await simulator.stop(unregister=False, timeout=1)
        # The gateway first: stopping, it unregisters from the upper, which must still be there to answer.
        await self.gateway.stop()
        await self.upper.close()


@contextlib.asynccontextmanager
async def cascade_rig(gateway_factory: Callable[..., Any], upstream: dict[str, Any] | None = None,
                      gateway_config: dict[str, Any] | None = None) -> AsyncIterator[CascadeRig]:
    """A gateway with one upstream pointing at a FakeUpper, registered there; cameras via add_cameras."""
    upper = await FakeUpper().start()
    entry = upstream_config(upper, **(upstream or {}))
    config = {"sip": {"t1": 0.1, "t2": 0.5}, **(gateway_config or {}), "upstreams": [entry]}
    gateway = await gateway_factory(config)
    rig = CascadeRig(gateway, upper)
    try:
        await asyncio.wait_for(upper.registered.wait(), 5)
        yield rig
    finally:
        await rig.close()

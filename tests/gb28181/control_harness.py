"""The control routes beside a running gateway: the services the daemon is to build for them
(``ControlServices``), mounted on a second API application over the gateway's own services, and a
simulator of devices registered to it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from access_harness import PASSWORD, RunningGateway
from aiohttp import web

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.gb28181.app.api import make_app
from gbgw.gb28181.app.api.addressing import CONTROL, ControlServices
from gbgw.gb28181.app.api.common import SERVICES
from gbgw.gb28181.devices.channel_ids import ChannelDirectory
from gbgw.gb28181.devices.control import DeviceControl
from gbgw.gb28181.devices.device_subscriptions import EventSubscriptions
from gbgw.gb28181.observe.metrics import GatewayMetrics


@dataclass
class ControlApi:
    gateway: RunningGateway
    services: ControlServices
    runner: web.AppRunner
    url: str
    sims: list[DeviceSimulator]

    async def call(self, path: str, method: str = "POST", body: Any = None) -> tuple[int, Any]:
        async with self.gateway.http.request(method, self.url + path, json=body) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def simulator(self, **options: Any) -> DeviceSimulator:
        """Simulated devices registered, their catalogs in the registry."""
        gw = self.gateway
        sim = DeviceSimulator(SimulatorConfig(server_host="127.0.0.1", server_port=gw.sip_port, password=PASSWORD,
                                              **options))
        await sim.start()
        self.sims.append(sim)
        await sim.wait_registered(timeout=10)
        ids = [sim.device_id(i) for i in range(sim.config.count)]

        async def catalogs_in() -> bool:
            devices = [await gw.device(d) for d in ids]
            return all(d["channel_count"] == sim.config.channels for d in devices)

        await gw.wait_for(catalogs_in, 10, "the simulated devices' catalogs")
        return sim

    async def close(self) -> None:
        for sim in self.sims:
            await sim.stop()
        await self.runner.cleanup()


async def control_api(gw: RunningGateway) -> ControlApi:
    """Build the control services from the gateway's parts, as the daemon wires them."""
    g = gw.gateway
    assert g.transport is not None and g._runner is not None
    control = ControlServices(
        control=DeviceControl(g.devices.requests),
        channels=ChannelDirectory(g.registry),
        events=EventSubscriptions(g.config.sip, g.registry, g.transport, g.devices.requests, g.tasks, g.clock),
        catalog=g.devices.subscriptions,
    )
    # The second application counts its own metrics: a registry takes each metric name once.
    app = make_app(dataclasses.replace(g._runner.app[SERVICES], metrics=GatewayMetrics()))
    app[CONTROL] = control
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return ControlApi(gw, control, runner, f"http://127.0.0.1:{port}", [])




"""The control routes of a running gateway: the daemon's own control services (``ControlServices``) and
API, and a simulator of devices registered to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from access_harness import PASSWORD, RunningGateway

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.gb28181.app.api.addressing import CONTROL, ControlServices
from gbgw.gb28181.manscdp import encode_body, notify_alarm
from gbgw.sip.message import Request, Response


@dataclass
class ControlApi:
    gateway: RunningGateway
    services: ControlServices
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


async def control_api(gw: RunningGateway) -> ControlApi:
    """The control services the daemon wired, reached through its API."""
    runner = gw.gateway._runner
    assert runner is not None
    return ControlApi(gw, runner.app[CONTROL], gw.api_url, [])


async def end_event_subscription(sim: DeviceSimulator, index: int, cmd_type: str = "Alarm") -> Response:
    """The device ends its subscription of ``cmd_type`` itself: a NOTIFY in the subscription's dialog with
    ``Subscription-State: terminated`` (RFC 6665 §4.2.2), as a camera being reconfigured sends."""
    device = sim._devices[index]
    dialog, _ = sim.event_subscriptions.pop((device.device_id, cmd_type))
    device.sn += 1
    cfg = sim.config
    group = device.group
    headers = [
        ("Via", group.transport.via(cfg.transport)),
        ("From", dialog.local),
        ("To", dialog.remote),
        ("Call-ID", dialog.call_id),
        ("CSeq", f"{device.sn} NOTIFY"),
        ("Contact", f"<sip:{device.device_id}@{group.contact_host}>"),
        ("Event", dialog.event),
        ("Subscription-State", "terminated;reason=noresource"),
        ("Content-Type", "Application/MANSCDP+xml"),
        ("Max-Forwards", "70"),
    ]
    body = encode_body(notify_alarm(device.sn, device.device_id, priority=1, method=2, time=sim._device_time(),
                                    description="subscription ended"), cfg.encoding)
    return await group.transport.send_request(Request("NOTIFY", dialog.target, headers, body), group.server)

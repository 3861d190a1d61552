"""The gateway with the built-in device simulator: what a vendor sees running `simulate` against it."""

from __future__ import annotations

from access_harness import PASSWORD, RunningGateway

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator


async def test_simulated_nvrs_come_online_with_catalogs_and_report_positions(gateway: RunningGateway) -> None:
    sim = DeviceSimulator(
        SimulatorConfig(
            server_host="127.0.0.1",
            server_port=gateway.sip_port,
            count=3,
            channels=4,
            devices_per_socket=3,
            catalog_page_size=2,
            keepalive_interval=60,
            password=PASSWORD,
        )
    )
    await sim.start()
    try:
        await sim.wait_registered(3, timeout=10)
        status, devices = await gateway.api("/api/devices")
        assert status == 200 and len(devices) == 3
        first = sim.config.device_id(1)

        async def catalogs_in() -> bool:
            _, devs = await gateway.api("/api/devices")
            return all(d["channel_count"] == 4 and d["online"] for d in devs)

        await gateway.wait_for(catalogs_in, 10, "every simulated device online with its 4 channels")
        _, channels = await gateway.api(f"/api/devices/{first}/channels")
        assert sorted(c["name"] for c in channels)[0].startswith("通道1")
        assert {c["id_info"]["type"] for c in channels} == {"131"}

        answer = await sim.send_mobile_position(0, longitude=117.2272, latitude=31.8206, speed=12.5)
        assert answer.status == 200
        status, positions = await gateway.api(f"/api/devices/{first}/positions")
        assert status == 200
        assert positions and positions[0]["longitude"] == 117.2272 and positions[0]["speed"] == 12.5
        assert (await gateway.api(f"/api/devices/{first}/positions?limit=0"))[0] == 400
    finally:
        await sim.stop()

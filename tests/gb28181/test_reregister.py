"""Re-registration from a new address (a reboot onto another port, a NAT rebinding): logged, warned on the
device, and DeviceInfo and Catalog asked again as after a first registration."""

from __future__ import annotations

from access_harness import DEVICE_ID, PASSWORD, RunningGateway, SipDevice
from gwproc import wait_until

from gbgw.gb28181.devices.diagnostics import WarningKind


def queries(device: SipDevice, cmd_type: str) -> int:
    return sum(1 for r in device.requests if f"<CmdType>{cmd_type}</CmdType>".encode() in r.body)


async def test_a_new_address_bootstraps_the_device_again(gateway: RunningGateway) -> None:
    first = await gateway.registered_device(DEVICE_ID)
    await wait_until(lambda: _async(queries(first, "Catalog") >= 1), 5, "the first bootstrap's Catalog")
    moved = await gateway.new_device(DEVICE_ID)
    assert (await moved.register(PASSWORD)).status == 200
    await wait_until(lambda: _async(queries(moved, "DeviceInfo") >= 1 and queries(moved, "Catalog") >= 1), 15,
                     "DeviceInfo and Catalog asked again at the new address")
    assert "device re-registered from a new address" in gateway.log_text
    kinds = {w["kind"] for w in (await gateway.api(f"/api/devices/{DEVICE_ID}/warnings"))[1]}
    assert WarningKind.NEW_ADDRESS in kinds


async def test_a_refresh_from_the_same_address_does_not(gateway: RunningGateway) -> None:
    device = await gateway.registered_device(DEVICE_ID)
    await wait_until(lambda: _async(queries(device, "Catalog") >= 1), 5, "the first bootstrap's Catalog")
    before = queries(device, "DeviceInfo")
    assert (await device.register(PASSWORD)).status == 200
    assert (await device.register(PASSWORD)).status == 200
    assert queries(device, "DeviceInfo") == before
    assert "device re-registered from a new address" not in gateway.log_text


async def _async(value: bool) -> bool:
    return value

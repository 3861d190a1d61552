"""Liveness end to end: offline after missed keepalives or at registration expiry, whichever is first.

The gateway's clock is moved forward (its periodic tick runs every second on the real loop), so these
tests take seconds, not minutes.
"""

from __future__ import annotations

import pytest
from access_harness import DEVICE_ID, PASSWORD, RunningGateway


async def _online(gateway: RunningGateway) -> bool:
    return bool((await gateway.device())["online"])


async def _offline(gateway: RunningGateway) -> bool:
    return not (await gateway.device())["online"]


@pytest.mark.parametrize(
    "gateway", [{"sip": {"keepalive_interval": 10, "keepalive_misses": 3}}], indirect=True
)
async def test_missed_keepalives_take_a_device_offline_and_one_keepalive_brings_it_back(
    gateway: RunningGateway,
) -> None:
    device = await gateway.registered_device()
    assert await _online(gateway)
    gateway.clock.advance(25)  # two intervals missed: still online
    await gateway.wait_for(lambda: _online(gateway), 2.5, "device still online")
    gateway.clock.advance(6)  # past 3 x 10 s
    await gateway.wait_for(lambda: _offline(gateway), 3, "device offline after 3 missed keepalives")
    assert await gateway.metric("gb_device_transitions_total", state="offline", reason="keepalive_timeout") == 1
    # Still registered: a keepalive alone brings it back, no REGISTER needed.
    assert (await device.keepalive()).status == 200
    assert await _online(gateway)


@pytest.mark.parametrize(
    "gateway", [{"sip": {"keepalive_interval": 60, "register_min_expires": 30}}], indirect=True
)
async def test_registration_expiry_takes_a_device_offline_and_keepalives_are_refused(
    gateway: RunningGateway,
) -> None:
    device = await gateway.new_device(DEVICE_ID)
    assert (await device.register(PASSWORD, expires=30)).status == 200
    gateway.clock.advance(20)
    assert (await device.keepalive()).status == 200
    gateway.clock.advance(11)  # registration (30 s) expired before 3 x 60 s of keepalives
    await gateway.wait_for(lambda: _offline(gateway), 3, "device offline at registration expiry")
    refused = await device.keepalive()
    assert refused.status == 403 and refused.reason == "Device not registered"
    # The device does what cameras do: registers again, and is online.
    assert (await device.register(PASSWORD)).status == 200
    assert await _online(gateway)

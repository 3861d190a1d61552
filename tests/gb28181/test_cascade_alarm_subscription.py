"""An upper's Alarm subscription passed down to the devices it names, on a real daemon process.

The simulated cameras report alarms the way many IPCs do: only while a platform holds an alarm
subscription with them (``DeviceSimulator.notify_alarm`` sends nothing otherwise).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from daemon_rig import DaemonRig, daemon_rig, notified, subscribe, upstream_entry, wait_until
from gwproc import GATEWAY_ID
from upper_harness import FakeUpper

from gbgw.gb28181 import manscdp


@pytest.fixture
async def upper() -> AsyncIterator[FakeUpper]:
    fake = await FakeUpper().start()
    try:
        yield fake
    finally:
        await fake.close()


def alarm_query(sn: int, target: str) -> manscdp.ManscdpDocument:
    return manscdp.query_alarm(sn, target, start_priority=0, end_priority=0, method="0")


def subscribed(rig: DaemonRig) -> set[str]:
    """The simulated devices holding an alarm subscription now."""
    return {device for device, cmd in rig.simulator.event_subscriptions if cmd == "Alarm"}


async def test_upper_alarm_subscription_reaches_the_devices(tmp_path: Path, upper: FakeUpper) -> None:
    async with daemon_rig(tmp_path, [], devices=2, channels=1) as rig:
        first, second = rig.simulator.device_id(0), rig.simulator.device_id(1)
        await rig.reload(upstreams=[upstream_entry(upper, "district")])
        await upper.wait(lambda: upper.gateway is not None, 10, "the registration")
        assert not subscribed(rig)
        assert await rig.simulator.notify_alarm(0, channel=1) is None

        # Narrowed: naming one shared channel subscribes its device only.
        request, answer = await subscribe(upper, alarm_query(11, rig.channel(1)), 3600, "presence")
        assert answer.status == 200
        await wait_until(lambda: subscribed(rig) == {second}, 5, "the named channel's device subscribed")
        # Ended by the upper (Expires: 0): so is the device's.
        _, answer = await subscribe(upper, alarm_query(12, rig.channel(1)), 0, "presence",
                                    call_id=request.call_id)
        assert answer.status == 200
        await wait_until(lambda: not subscribed(rig), 5, "the device's alarm subscription ended")
        assert (second, "Alarm", 0) in rig.simulator.subscription_log

        # Naming the gateway: every device with a shared channel.
        request, answer = await subscribe(upper, alarm_query(13, GATEWAY_ID), 3, "presence")
        assert answer.status == 200
        await wait_until(lambda: subscribed(rig) == {first, second}, 5, "every device subscribed")
        assert await rig.simulator.notify_alarm(0, channel=1, description="motion") is not None
        docs = await upper.wait(lambda: notified(upper, request.call_id or "", "Alarm"), 10,
                                "the alarm as NOTIFY in the upper's subscription")
        assert docs[0].device_id == rig.channel(0)
        assert not [m for m in upper.documents("Notify", "Alarm")], "sent as MESSAGE instead of NOTIFY"

        # Expired (3 s, never refreshed): the devices' subscriptions end with it.
        await wait_until(lambda: not subscribed(rig), 10, "the devices' subscriptions ended at expiry")
        assert await rig.simulator.notify_alarm(1, channel=1) is None


async def test_gateway_keeps_its_own_alarm_subscriptions(tmp_path: Path, upper: FakeUpper) -> None:
    async with daemon_rig(tmp_path, [upstream_entry(upper, "district")], devices=1, channels=1,
                          sip={"alarm_subscribe": True}) as rig:
        device = rig.simulator.device_id(0)
        await wait_until(lambda: subscribed(rig) == {device}, 5, "the gateway's own alarm subscription")
        await upper.wait(lambda: upper.gateway is not None, 10, "the registration")
        request, answer = await subscribe(upper, alarm_query(21, GATEWAY_ID), 3600, "presence")
        assert answer.status == 200
        _, answer = await subscribe(upper, alarm_query(22, GATEWAY_ID), 0, "presence", call_id=request.call_id)
        assert answer.status == 200
        await rig.process.wait_log("upper alarm subscription ended")
        # The gateway subscribes every device itself: the upper leaving does not end it.
        assert subscribed(rig) == {device}
        assert (device, "Alarm", 0) not in rig.simulator.subscription_log

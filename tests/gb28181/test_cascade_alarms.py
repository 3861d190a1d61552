"""Alarms upward: simulated cameras raise alarms, a FakeUpper is the police platform's alarm desk.

Delivered as a MESSAGE, or as a NOTIFY inside the upper's Alarm subscription (whose filters hold);
never for a channel the upper is not given; each alarm arrives once through an upper outage, a device
repeating its MESSAGE, and a kill -9 of the gateway (run as a subprocess on the same SQLite file).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from access_harness import GATEWAY_ID, PASSWORD, RunningGateway
from gwproc import DaemonProcess, GbDevice, daemon_config
from upper_harness import CascadeRig, FakeUpper, Received, cascade_rig, upstream_config

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.gb28181 import manscdp
from gbgw.gb28181.cascade.alarms import subscription_wants
from gbgw.gb28181.manscdp import ManscdpDocument
from gbgw.registry.model import Alarm
from gbgw.sip.transaction import ServerTransaction

Factory = Callable[..., Awaitable[RunningGateway]]

# The simulator's default IDs: device 1 is an IPC (type 132), its channels are cameras (type 131).
DEVICE_1 = "34020000001320000001"
DEVICE_2 = "34020000001320000002"
TIME_RE = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$"


def channel(device: int, number: int, per_device: int) -> str:
    return f"3402000000131{(device - 1) * per_device + number:07d}"


class AlarmDesk:
    """Takes MESSAGE and NOTIFY over at the FakeUpper. Everything is answered with ``upper.message_status``
    (None: no answer, the upper is down) unless ``notify_status`` says otherwise for NOTIFYs; the alarms
    the upper accepted (answered 2xx) are kept in order, and every other alarm attempt is counted."""

    def __init__(self, upper: FakeUpper) -> None:
        self.upper = upper
        self.accepted: list[Received] = []
        self.not_accepted: list[Received] = []
        self.not_accepted_at: list[float] = []
        self.notify_status: int | None = None
        upper.handlers["MESSAGE"] = self._on_request
        upper.handlers["NOTIFY"] = self._on_request

    def _on_request(self, txn: ServerTransaction) -> None:
        request = txn.request
        received = self.upper.requests[-1]
        with contextlib.suppress(manscdp.ManscdpError):
            received.doc = manscdp.parse(request.body)
        if request.method == "MESSAGE":
            self.upper.messages.append(received)
        status = self.upper.message_status
        if request.method == "NOTIFY" and self.notify_status is not None:
            status = self.notify_status
        doc = received.doc
        is_alarm = doc is not None and doc.root == "Notify" and doc.cmd_type == "Alarm"
        if status is not None:
            self.upper.transport.reply(txn, status)
        if is_alarm and status is not None and status < 300:
            self.accepted.append(received)
        elif is_alarm:
            self.not_accepted.append(received)
            self.not_accepted_at.append(asyncio.get_running_loop().time())

    def descriptions(self, received: list[Received] | None = None) -> list[str | None]:
        return [r.doc.text("AlarmDescription") for r in (self.accepted if received is None else received)
                if r.doc is not None]

    async def arrived(self, count: int, timeout: float = 10.0) -> list[Received]:
        await self.upper.wait(lambda: len(self.accepted) >= count, timeout, f"{count} alarms accepted")
        return self.accepted


def audit_records(path: str | Path, action: str = "alarm") -> list[dict[str, Any]]:
    return [r for r in map(json.loads, Path(path).read_text(encoding="utf-8").splitlines()) if r["action"] == action]


@contextlib.asynccontextmanager
async def alarm_rig(factory: Factory, channels: int = 2, count: int = 1,
                    **upstream: Any) -> AsyncIterator[tuple[CascadeRig, AlarmDesk, DeviceSimulator]]:
    # Keepalives far apart: an outage the test stages must not also take the link down halfway.
    async with cascade_rig(factory, {"alarm_retry_max": 1, "keepalive_interval": 60, **upstream}) as rig:
        desk = AlarmDesk(rig.upper)
        cameras = await rig.add_cameras(count, channels)
        yield rig, desk, cameras


async def test_alarm_goes_up_as_a_message(gateway_factory: Factory) -> None:
    mapped = "44010000001310000077"
    async with alarm_rig(gateway_factory, channel_ids={channel(1, 1, 2): mapped}) as (rig, desk, cameras):
        answer = await cameras.send_alarm(0, channel=1, priority=1, method=5, alarm_type=2,
                                          description="北门 越界", longitude=116.39, latitude=39.91)
        assert answer.status == 200
        (received,) = await desk.arrived(1)
        doc = received.doc
        assert doc is not None and received.request.method == "MESSAGE"
        link = rig.gateway.gateway.cascade.links["district"]
        assert (received.source.host, received.source.port) == (link.config.listen.host, link.config.listen.port)
        assert GATEWAY_ID in (received.request.get("From") or "")
        # Reported under the ID the upper knows the channel by, with what the camera said.
        (stored,) = await rig.gateway.gateway.storage.list_alarms(DEVICE_1)
        assert doc.device_id == mapped
        assert (doc.text("AlarmPriority"), doc.text("AlarmMethod"), doc.text("Info/AlarmType")) == ("1", "5", "2")
        assert doc.text("AlarmTime") == stored.time and stored.time
        assert doc.text("AlarmDescription") == "北门 越界"
        assert (float(doc.text("Longitude") or 0), float(doc.text("Latitude") or 0)) == (116.39, 39.91)
        assert doc.sn is not None
        assert await rig.gateway.metric("gb_alarms_forwarded_total", upstream="district") == 1
        records = audit_records(rig.gateway.config.audit.path)
        assert [r["result"] for r in records] == ["queued", "delivered"]
        assert all(r["device"] == DEVICE_1 and r["channel"] == channel(1, 1, 2) and r["upstream"] == "district"
                   for r in records)
        assert records[1]["via"] == "MESSAGE" and records[1]["upper_channel"] == mapped


async def test_alarm_subscription_gets_notifies_in_its_dialog(gateway_factory: Factory) -> None:
    async with alarm_rig(gateway_factory) as (rig, desk, cameras):
        upper = rig.upper
        body = manscdp.encode_body(manscdp.query_alarm(77, GATEWAY_ID, start_priority=1, end_priority=2, method="25"))
        subscribe = upper.request("SUBSCRIBE", body=body, content_type="Application/MANSCDP+xml",
                                  headers=[("Event", "presence"), ("Expires", "120")])
        assert (await upper.send(subscribe)).status == 200
        await cameras.send_alarm(0, channel=1, priority=1, method=2, description="wanted 1")
        await cameras.send_alarm(0, channel=1, priority=3, method=2, description="priority out of range")
        await cameras.send_alarm(0, channel=2, priority=1, method=1, description="method not asked for")
        await cameras.send_alarm(0, channel=2, priority=2, method=5, description="wanted 2")
        received = await desk.arrived(2)
        assert desk.descriptions() == ["wanted 1", "wanted 2"]
        assert {r.request.method for r in received} == {"NOTIFY"}
        assert {r.request.call_id for r in received} == {subscribe.call_id}
        assert all(r.request.get("Event") == "presence" for r in received)
        assert [r.doc.device_id for r in received if r.doc] == [channel(1, 1, 2), channel(1, 2, 2)]
        # Queue order: the filtered alarms were dealt with before the last wanted one went.
        filtered = [r for r in audit_records(rig.gateway.config.audit.path) if r["result"] == "filtered"]
        assert sorted(r["priority"] + r["method"] for r in filtered) == ["11", "32"]
        # An upper that lost the subscription (481) still gets the alarm, as a MESSAGE.
        desk.notify_status = 481
        await cameras.send_alarm(0, channel=1, priority=1, method=2, description="after 481")
        third = (await desk.arrived(3))[2]
        assert third.request.method == "MESSAGE" and desk.descriptions()[2] == "after 481"
        assert rig.gateway.gateway.cascade.links["district"].subscription("Alarm") is None


async def test_alarms_of_unshared_channels_stay_inside(gateway_factory: Factory) -> None:
    # Device 1 shares one camera; device 2 shares only itself, so its cameras' alarms go up under its ID.
    share = [{"ids": [channel(1, 1, 2), DEVICE_2]}]
    async with alarm_rig(gateway_factory, count=2, share=share) as (rig, desk, cameras):
        await cameras.send_alarm(0, channel=2, description="unshared camera")
        await cameras.send_alarm(0, channel=0, description="unshared device")
        await cameras.send_alarm(1, channel=1, description="camera of a shared device")
        await cameras.send_alarm(0, channel=1, description="shared camera")
        received = await desk.arrived(2)
        # Delivery keeps queue order, so an unshared alarm, had it been queued, would have come first.
        assert desk.descriptions() == ["camera of a shared device", "shared camera"]
        assert [r.doc.device_id for r in received if r.doc] == [DEVICE_2, channel(1, 1, 2)]
        assert len(await rig.gateway.gateway.storage.list_alarms()) == 4  # all stored device-side
        channels = {r["channel"] for r in audit_records(rig.gateway.config.audit.path)}
        assert channels == {DEVICE_2, channel(1, 1, 2)}
        assert "unshared" not in Path(rig.gateway.config.audit.path).read_text(encoding="utf-8")


async def test_outage_holds_alarms_in_order_and_delivers_each_once(gateway_factory: Factory) -> None:
    async with alarm_rig(gateway_factory) as (rig, desk, cameras):
        rig.upper.message_status = 503
        names = [f"during outage {n}" for n in range(4)]
        for n, name in enumerate(names):
            assert (await cameras.send_alarm(0, channel=1 + n % 2, description=name)).status == 200
        await rig.upper.wait(lambda: len(desk.not_accepted) >= 3, 8, "retries during the outage")
        assert desk.accepted == []
        # While the upper is down only the head of the queue is tried, with back-off: the rest keep their place.
        assert set(desk.descriptions(desk.not_accepted)) == {names[0]}
        times = desk.not_accepted_at
        assert min(b - a for a, b in itertools.pairwise(times)) > 0.8, times
        rig.upper.message_status = 200
        await desk.arrived(4)
        await asyncio.sleep(1.2)  # a longer back-off than configured: any repeat would be here by now
        assert desk.descriptions() == names
        assert await rig.gateway.metric("gb_alarms_forwarded_total", upstream="district") == 4
        records = audit_records(rig.gateway.config.audit.path)
        results = Counter(r["result"] for r in records)
        assert results["queued"] == 4 and results["delivered"] == 4 and results["retry"] >= 3
        assert all("503" in r["reason"] for r in records if r["result"] == "retry")
        due = await rig.gateway.gateway.storage.due("alarm:district", now=float("inf"))
        assert due == []


async def test_a_repeated_alarm_message_goes_up_once(gateway_factory: Factory) -> None:
    """A device that got no 200 sends the same alarm (same SN and time) in a new transaction."""
    async with cascade_rig(gateway_factory, {"alarm_retry_max": 1, "keepalive_interval": 60}) as rig:
        desk = AlarmDesk(rig.upper)
        device_id = "34020000001320000042"
        device = GbDevice(device_id, rig.gateway.sip_port)
        await device.open()
        try:
            assert (await device.register(PASSWORD)).status == 200

            async def alarm(sn: int, time: str, text: str) -> None:
                xml = (f"<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{device_id}</DeviceID>\r\n"
                       f"<AlarmPriority>1</AlarmPriority>\r\n<AlarmMethod>2</AlarmMethod>\r\n"
                       f"<AlarmTime>{time}</AlarmTime>\r\n<AlarmDescription>{text}</AlarmDescription>\r\n</Notify>")
                answer = await device.message(xml)
                assert answer.status == 200, answer.start

            rig.upper.message_status = 503
            await alarm(17, "2024-06-01T08:00:00", "first")
            await alarm(17, "2024-06-01T08:00:00", "first")  # repeated while still queued
            rig.upper.message_status = 200
            await desk.arrived(1)
            await alarm(17, "2024-06-01T08:00:00", "first")  # repeated after delivery
            await alarm(17, "2024-06-01T09:30:00", "SN reused later")  # a device restart reuses SNs
            await alarm(18, "2024-06-01T09:30:00", "second")
            await desk.arrived(3)
            await asyncio.sleep(0.3)
            assert desk.descriptions() == ["first", "SN reused later", "second"]
            assert len(await rig.gateway.gateway.storage.list_alarms(device_id)) == 5
        finally:
            device.close()


@pytest.mark.slow
async def test_alarms_survive_kill_9_of_the_gateway(tmp_path: Path) -> None:
    upper = await FakeUpper().start()
    desk = AlarmDesk(upper)
    config, sip_port, _ = daemon_config(tmp_path, sip={"password": PASSWORD, "t1": 0.1, "t2": 0.5})
    config["upstreams"] = [upstream_config(upper, alarm_retry_max=1)]
    config_path, log_path = tmp_path / "gateway.yaml", tmp_path / "gateway.log"
    processes: list[DaemonProcess] = []
    cameras = DeviceSimulator(SimulatorConfig(server_host="127.0.0.1", server_port=sip_port, password=PASSWORD,
                                              channels=2, t1=0.1))
    try:
        first = DaemonProcess.with_config(config, config_path, log_path)
        processes.append(first)
        await first.start()
        await asyncio.wait_for(upper.registered.wait(), 10)
        await cameras.start()
        await cameras.wait_registered(timeout=10)
        upper.message_status = None  # the upper stops answering
        names = [f"before the crash {n}" for n in range(3)]
        for n, name in enumerate(names):
            # A 200 here means the alarm is on disk: the gateway answers only after queueing it.
            assert (await cameras.send_alarm(0, channel=1 + n % 2, description=name)).status == 200
        await upper.wait(lambda: desk.not_accepted, 5, "an alarm sent to the silent upper")
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        assert desk.accepted == []

        upper.message_status = 200  # the upper is back; so is the gateway, on the same database
        registers = len(upper.registers)
        second = DaemonProcess.with_config(config, config_path, log_path)
        processes.append(second)
        await second.start()
        await upper.wait(lambda: len(upper.registers) > registers, 10, "the restarted gateway's registration")
        await desk.arrived(3)
        await asyncio.sleep(1.2)
        assert desk.descriptions() == names
        assert {r.request.method for r in desk.accepted} == {"MESSAGE"}
    finally:
        await cameras.stop(unregister=False, timeout=1)
        for process in processes:
            await process.ensure_stopped()
        await upper.close()


def test_subscription_filter_reads_priority_range_and_method_digits() -> None:
    def alarm(priority: str, method: str) -> Alarm:
        return Alarm(device_id=DEVICE_1, channel_id=DEVICE_1, sn="1", priority=priority, method=method,
                     alarm_type="", time="", description="", longitude=None, latitude=None, received_at=0.0)

    def query(**kwargs: Any) -> ManscdpDocument:
        return manscdp.query_alarm(1, GATEWAY_ID, **kwargs)

    everything = query()
    assert subscription_wants(everything, alarm("4", "7"))
    assert subscription_wants(query(start_priority=0, end_priority=0, method="0"), alarm("3", "6"))
    ranged = query(start_priority=2, end_priority=3)
    assert [subscription_wants(ranged, alarm(p, "2")) for p in "1234"] == [False, True, True, False]
    assert subscription_wants(query(start_priority=3, end_priority=2), alarm("2", "2"))  # bounds swapped
    methods = query(method="15")
    assert [subscription_wants(methods, alarm("1", m)) for m in "12345"] == [True, False, False, False, True]
    # What the device left out does not exclude the alarm.
    assert subscription_wants(ranged, alarm("", "")) and subscription_wants(methods, alarm("1", ""))

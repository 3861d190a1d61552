"""Queries and control from the upper platform: about the gateway itself, relayed to the cameras, refused.

Real sockets throughout: a FakeUpper on the police side, simulated cameras on the device side.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from access_harness import GATEWAY_ID, RunningGateway
from upper_harness import CascadeRig, FakeUpper, cascade_rig, upstream_config

from gbgw.gb28181 import manscdp
from gbgw.gb28181.cascade.queries import scrub
from gbgw.gb28181.manscdp import ManscdpDocument, PtzCmd

Factory = Callable[..., Awaitable[RunningGateway]]

# Simulated device 1 and its channels (SimulatorConfig's default numbering).
DEVICE = "34020000001320000001"
CH1 = "34020000001310000001"
CH2 = "34020000001310000002"
# The upper knows this centre's cameras under another centre code.
RULE = {"from": "340200000013", "to": "440300000013"}
UP1 = "44030000001310000001"
UP2 = "44030000001310000002"
FAST = {"sip": {"t1": 0.1, "t2": 0.5, "query_timeout": 1.0}}


@contextlib.asynccontextmanager
async def rig_for(gateway_factory: Factory, upstream: dict[str, Any] | None = None,
                  gateway_config: dict[str, Any] | None = None) -> AsyncIterator[CascadeRig]:
    """cascade_rig, with the gateway stopped while the upper still answers its un-REGISTER (saves the
    link's 2 s wait for an answer at teardown)."""
    async with cascade_rig(gateway_factory, upstream, gateway_config) as rig:
        yield rig
        await rig.gateway.stop()


async def ask(upper: FakeUpper, doc: ManscdpDocument, to_id: str | None = None) -> int:
    """Send a query or control as the upper does (addressed to its target); the SIP status."""
    response = await upper.manscdp(doc, to_id or doc.device_id)
    return response.status


async def answer(upper: FakeUpper, cmd: str, sn: int, timeout: float = 5.0) -> ManscdpDocument:
    (doc,) = await upper.wait(lambda: upper.documents("Response", cmd, sn), timeout, f"the {cmd} answer")
    return doc


def audit(rig: CascadeRig, action: str) -> list[dict[str, Any]]:
    lines = Path(rig.gateway.config.audit.path).read_text().splitlines()
    return [record for line in lines if (record := json.loads(line))["action"] == action]


def list_pages(upper: FakeUpper, cmd: str, sn: int, list_tag: str) -> list[ManscdpDocument] | None:
    """All pages of a multi-message answer once the items of all of them add up to its SumNum."""
    pages = upper.documents("Response", cmd, sn)
    if not pages:
        return None
    total = int(pages[0].text("SumNum") or -1)
    found = sum(len(page.element.findall(f"{list_tag}/Item")) for page in pages)
    return pages if found >= total else None


def assert_no_device_side(rig: CascadeRig) -> None:
    """Nothing the upper received names a device-side port or the cameras' SIP password."""
    ports = {str(port) for sim in rig.simulators for _, port in sim.sockets} | {str(rig.gateway.sip_port)}
    for received in rig.upper.messages:
        raw = received.request.serialize().decode("utf-8", "replace")
        assert not any(f":{port}" in raw or f">{port}<" in raw for port in ports), raw
        assert rig.simulators[0].config.password not in raw


# -- the gateway itself ------------------------------------------------------------------------------


async def test_device_info_and_status_describe_the_gateway(gateway_factory: Factory) -> None:
    share = {"share": [{"ids": [CH1, CH2, "34020000001310000004"]}]}
    async with rig_for(gateway_factory, share) as rig:
        await rig.add_cameras(2, channels=2)  # four channels, three of them shared
        upper = rig.upper
        assert await ask(upper, manscdp.query_device_info(11, GATEWAY_ID)) == 200
        info = (await answer(upper, "DeviceInfo", 11)).typed()
        assert isinstance(info, manscdp.DeviceInfoResponse)
        assert info.ok and info.device_id == GATEWAY_ID
        assert info.channel == 3
        assert info.firmware == metadata.version("gb28181-gateway")
        assert info.device_name and info.manufacturer and info.model

        assert await ask(upper, manscdp.query_device_status(12, GATEWAY_ID)) == 200
        status = (await answer(upper, "DeviceStatus", 12)).typed()
        assert isinstance(status, manscdp.DeviceStatusResponse)
        assert status.result == "OK" and status.is_online and status.status == "OK"
        clock = manscdp.parse_time(status.device_time)
        assert clock is not None and abs(clock - datetime.now()) < timedelta(seconds=5)

        assert await ask(upper, manscdp.query_config_download(13, GATEWAY_ID, "BasicParam")) == 200
        config = (await answer(upper, "ConfigDownload", 13)).typed()
        assert isinstance(config, manscdp.ConfigDownloadResponse)
        link = rig.gateway.gateway.cascade.links["district"]
        assert config.heart_beat_interval == link.config.keepalive_interval
        assert config.expiration == link.config.register_expires

        # The gateway records nothing and has no presets: empty lists, not silence.
        day = datetime(2025, 4, 18)
        assert await ask(upper, manscdp.query_record_info(14, GATEWAY_ID, day, day + timedelta(days=1))) == 200
        records = (await answer(upper, "RecordInfo", 14)).typed()
        assert isinstance(records, manscdp.RecordInfoResponse) and records.sum_num == 0 and not records.items
        assert await ask(upper, manscdp.query_preset(15, GATEWAY_ID)) == 200
        presets = (await answer(upper, "PresetQuery", 15)).typed()
        assert isinstance(presets, manscdp.PresetQueryResponse) and presets.num == 0

        (record,) = [r for r in audit(rig, "query") if r["cmd"] == "DeviceInfo"]
        assert record["result"] == "ok" and record["upstream"] == "district" and record["channel"] == GATEWAY_ID


# -- relayed to the camera ---------------------------------------------------------------------------


async def test_queries_are_relayed_under_the_uppers_sn_and_ids(gateway_factory: Factory) -> None:
    async with rig_for(gateway_factory, {"channel_id_rule": RULE}) as rig:
        sim = await rig.add_cameras(1, channels=2)
        upper = rig.upper

        assert await ask(upper, manscdp.query_device_info(501, UP1)) == 200
        info = (await answer(upper, "DeviceInfo", 501)).typed()
        assert isinstance(info, manscdp.DeviceInfoResponse)
        assert info.device_id == UP1 and info.ok and info.manufacturer == "Simulator"

        assert await ask(upper, manscdp.query_device_status(502, UP2)) == 200
        status = (await answer(upper, "DeviceStatus", 502)).typed()
        assert isinstance(status, manscdp.DeviceStatusResponse)
        assert status.device_id == UP2 and status.is_online

        start, end = datetime(2025, 4, 18), datetime(2025, 4, 19)
        assert await ask(upper, manscdp.query_record_info(503, UP1, start, end)) == 200
        pages = await upper.wait(lambda: list_pages(upper, "RecordInfo", 503, "RecordList"), 5, "the recordings")
        items = [item for page in pages for item in manscdp.RecordInfoResponse.from_document(page).items]
        assert len(items) == sim.config.records
        assert {item.device_id for item in items} == {UP1}
        for item in items:
            begin, finish = manscdp.parse_time(item.start_time), manscdp.parse_time(item.end_time)
            assert begin is not None and finish is not None and start <= begin < finish <= end

        assert await ask(upper, manscdp.query_preset(504, UP1)) == 200
        presets = (await answer(upper, "PresetQuery", 504)).typed()
        assert isinstance(presets, manscdp.PresetQueryResponse) and presets.device_id == UP1
        assert [p.preset_name for p in presets.items] == [f"预置位{i}" for i in range(1, sim.config.presets + 1)]

        assert await ask(upper, manscdp.query_config_download(505, UP1, "BasicParam")) == 200
        config_doc = await answer(upper, "ConfigDownload", 505)
        config = config_doc.typed()
        assert isinstance(config, manscdp.ConfigDownloadResponse) and config.device_id == UP1
        assert config.heart_beat_interval == int(sim.config.keepalive_interval)
        assert config.expiration == sim.config.expires
        # The camera's answer named its SIP server's address and its password: neither crosses.
        basic = config.sections["BasicParam"]
        assert not {"SIPServerIP", "SIPServerPort", "SIPServerID", "DomainName", "Password"} & set(basic)
        assert_no_device_side(rig)

        records = audit(rig, "query")
        assert {(r["cmd"], r["result"], r["channel"]) for r in records} >= {
            ("DeviceInfo", "ok", CH1), ("RecordInfo", "ok", CH1), ("DeviceStatus", "ok", CH2)}
        assert all(r["upper_channel"] in (UP1, UP2) and r["device"] == DEVICE for r in records)


async def test_a_channel_table_maps_both_ways_and_hides_the_local_id(gateway_factory: Factory) -> None:
    table = {CH1: "34020000001310009999"}
    async with rig_for(gateway_factory, {"channel_ids": table}) as rig:
        await rig.add_cameras(1, channels=2)
        upper = rig.upper
        assert await ask(upper, manscdp.query_device_info(61, table[CH1])) == 200
        assert (await answer(upper, "DeviceInfo", 61)).device_id == table[CH1]
        # Under its device-side ID the mapped channel is not reachable.
        assert await ask(upper, manscdp.query_device_info(62, CH1)) == 404
        # An unmapped channel keeps its ID.
        assert await ask(upper, manscdp.query_device_info(63, CH2)) == 200
        assert (await answer(upper, "DeviceInfo", 63)).device_id == CH2


async def test_unshared_unknown_and_offline_targets_are_refused(gateway_factory: Factory) -> None:
    async with rig_for(gateway_factory, {"share": [{"ids": [CH1]}]}) as rig:
        sim = await rig.add_cameras(1, channels=2)
        upper = rig.upper
        assert await ask(upper, manscdp.query_device_info(71, CH2)) == 404  # exists, not shared
        assert await ask(upper, manscdp.query_device_info(72, "34020000001310000077")) == 404  # no such
        results = {(r["channel"], r["result"]) for r in audit(rig, "query")}
        assert {(CH2, "not-found"), ("34020000001310000077", "not-found")} <= results
        # The camera reports its alarm input's duty status too; that input is not shared, so it is left out.
        assert await ask(upper, manscdp.query_device_status(74, CH1)) == 200
        status_doc = await answer(upper, "DeviceStatus", 74)
        alarm_status = status_doc.element.find("Alarmstatus")
        assert alarm_status is not None and len(alarm_status) == 0 and alarm_status.get("Num") == "0"

        await sim.stop(unregister=True, timeout=2)
        registry = rig.gateway.gateway.registry
        await rig.gateway.wait_for(lambda: _now(not registry.get(DEVICE).online), 5, "the camera offline")
        assert await ask(upper, manscdp.query_device_info(73, CH1)) == 480
        assert (CH1, "offline") in {(r["channel"], r["result"]) for r in audit(rig, "query")}
        assert not upper.documents("Response", "DeviceInfo")


async def test_a_device_that_does_not_answer_gets_the_upper_an_error_in_time(gateway_factory: Factory) -> None:
    async with rig_for(gateway_factory, gateway_config=FAST) as rig:
        await rig.add_cameras(1, channels=1, unanswered=("DeviceInfo", "RecordInfo"))
        upper = rig.upper
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await ask(upper, manscdp.query_device_info(81, CH1)) == 200
        day = datetime(2025, 4, 18)
        assert await ask(upper, manscdp.query_record_info(82, CH1, day, day + timedelta(days=1))) == 200
        info = (await answer(upper, "DeviceInfo", 81, timeout=3)).typed()
        assert isinstance(info, manscdp.DeviceInfoResponse) and info.result == "ERROR"
        records_doc = await answer(upper, "RecordInfo", 82, timeout=3)
        records = records_doc.typed()
        assert isinstance(records, manscdp.RecordInfoResponse) and records.sum_num == 0 and not records.items
        assert records_doc.text("Result") == "ERROR"
        # query_timeout is 1 s: the upper knows within about that, not after its own transaction timer.
        assert loop.time() - started < 2.5
        # Audited once the upper's 200 to the answer is back, which may be just after it was sent.
        await rig.upper.wait(lambda: audit(rig, "query"), 2, "the query audit record")
        assert {r["result"] for r in audit(rig, "query")} == {"no-answer"}


async def test_concurrent_queries_of_two_uppers_with_one_sn_do_not_mix(gateway_factory: Factory) -> None:
    first = await FakeUpper().start()
    second = await FakeUpper(upper_id="34020000002000000010").start()
    entries = [
        upstream_config(first, name="city", channel_id_rule=RULE),
        upstream_config(second, name="district", channel_id_rule={"from": "340200000013", "to": "110100000013"}),
    ]
    gateway = await gateway_factory({**FAST, "upstreams": entries})
    rig = CascadeRig(gateway, first)
    try:
        await asyncio.wait_for(asyncio.gather(first.registered.wait(), second.registered.wait()), 5)
        await rig.add_cameras(1, channels=1, records=5)
        january, february = datetime(2025, 1, 1), datetime(2025, 2, 1)
        # The same SN from both uppers, for the same channel, at the same time; and a second query of
        # the first upper in between.
        statuses = await asyncio.gather(
            ask(first, manscdp.query_record_info(9, UP1, january, january + timedelta(days=1))),
            ask(second, manscdp.query_record_info(9, "11010000001310000001", february,
                                                  february + timedelta(days=1))),
            ask(first, manscdp.query_device_info(10, UP1)),
        )
        assert statuses == [200, 200, 200]
        for upper, upper_id, month in ((first, UP1, 1), (second, "11010000001310000001", 2)):
            pages = await upper.wait(lambda u=upper: list_pages(u, "RecordInfo", 9, "RecordList"), 5, "records")
            items = [item for page in pages for item in manscdp.RecordInfoResponse.from_document(page).items]
            assert len(items) == 5
            assert {item.device_id for item in items} == {upper_id}
            assert {manscdp.parse_time(item.start_time).month for item in items} == {month}  # type: ignore[union-attr]
        assert (await answer(first, "DeviceInfo", 10)).device_id == UP1
        assert not second.documents("Response", "DeviceInfo")
        await gateway.stop()
    finally:
        await rig.close()
        await second.close()


@pytest.mark.parametrize("limit", [1300, 4000])
async def test_record_info_is_split_under_the_size_limit(gateway_factory: Factory, limit: int) -> None:
    async with rig_for(gateway_factory, {"catalog_max_bytes": limit}) as rig:
        await rig.add_cameras(1, channels=1, records=40, record_page_size=7)
        upper = rig.upper
        start = datetime(2025, 4, 18)
        assert await ask(upper, manscdp.query_record_info(91, CH1, start, start + timedelta(days=1))) == 200
        await upper.wait(lambda: list_pages(upper, "RecordInfo", 91, "RecordList"), 5, "all recordings")
        messages = [m for m in upper.messages if m.doc is not None and m.doc.cmd_type == "RecordInfo"]
        assert len(messages) > 1
        answers = [manscdp.RecordInfoResponse.from_document(m.doc) for m in messages if m.doc is not None]
        assert {a.sum_num for a in answers} == {40}
        assert all(a.num == len(a.items) for a in answers)
        assert len({item.start_time for a in answers for item in a.items}) == 40
        for this, following in itertools.pairwise(messages):
            size = len(this.request.serialize())
            assert size <= limit
            # Packed: the next message's first item would not have fitted into this one.
            assert this.doc is not None and following.doc is not None
            grown = this.doc.element.find("RecordList")
            assert grown is not None
            grown.append(following.doc.element.find("RecordList/Item"))  # type: ignore[arg-type]
            grown.set("Num", str(len(grown)))
            assert size - len(this.request.body) + len(manscdp.encode_body(this.doc, "GB2312")) > limit
        assert len(messages[-1].request.serialize()) <= limit


# -- control -----------------------------------------------------------------------------------------


async def test_control_is_denied_without_a_control_rule(gateway_factory: Factory) -> None:
    async with rig_for(gateway_factory, {"share": [{"prefix": "34020000", "control": False}]}) as rig:
        sim = await rig.add_cameras(1, channels=1)
        upper = rig.upper
        ptz = PtzCmd.move(pan=1).serialize()
        assert await ask(upper, manscdp.control_ptz(21, CH1, ptz)) == 403
        assert await ask(upper, manscdp.control_tele_boot(22, CH1)) == 403
        assert await ask(upper, manscdp.control_ptz(23, GATEWAY_ID, ptz)) == 403
        # A query to the same camera made afterwards arrives: the refused controls would have by then.
        assert await ask(upper, manscdp.query_device_info(24, CH1)) == 200
        await answer(upper, "DeviceInfo", 24)
        assert not sim.controls and sim.stats.controls == 0
        denied = [r for r in audit(rig, "control") if r["result"] == "denied"]
        assert len(denied) == 3
        assert denied[0]["params"]["PTZCmd"] == ptz and denied[0]["channel"] == CH1


async def test_allowed_control_reaches_the_camera_and_its_result_comes_back(gateway_factory: Factory) -> None:
    upstream = {"share": [{"prefix": "34020000", "control": True}], "channel_id_rule": RULE}
    async with rig_for(gateway_factory, upstream) as rig:
        sim = await rig.add_cameras(1, channels=1)
        upper = rig.upper
        ptz = PtzCmd.move(pan=-1, tilt=1, pan_speed=0x40, tilt_speed=0x30).serialize()
        assert await ask(upper, manscdp.control_ptz(900_000_001, UP1, ptz)) == 200
        await rig.gateway.wait_for(lambda: _now(len(sim.controls) == 1), 5, "the PTZ command at the camera")
        (received,) = sim.controls
        control = received.typed()
        assert isinstance(control, manscdp.DeviceControl)
        assert control.ptz_cmd == ptz and control.device_id == CH1
        assert received.sn is not None and received.sn != 900_000_001
        # PTZ has no answer in the standard; recording control has one, relayed under the upper's SN.
        assert await ask(upper, manscdp.control_record(900_000_002, UP1, record=True)) == 200
        result = (await answer(upper, "DeviceControl", 900_000_002)).typed()
        assert isinstance(result, manscdp.ResultResponse) and result.ok and result.device_id == UP1
        assert sim.controls[-1].text("RecordCmd") == "Record"
        assert len(upper.documents("Response", "DeviceControl")) == 1

        # A PTZ code that fails its checksum is not passed on.
        assert await ask(upper, manscdp.control_ptz(900_000_003, UP1, ptz[:-2] + "00")) == 400
        assert len(sim.controls) == 2

        # DeviceConfig is a control too; police-side network settings in it do not reach the camera.
        config = manscdp.device_config(900_000_004, UP1, {"BasicParam": {
            "Name": "Gate", "SIPServerIP": "10.20.0.1", "HeartBeatInterval": 30}})
        assert await ask(upper, config) == 200
        result = (await answer(upper, "DeviceConfig", 900_000_004)).typed()
        assert isinstance(result, manscdp.ResultResponse) and result.ok and result.device_id == UP1
        received = sim.controls[-1]
        assert received.cmd_type == "DeviceConfig" and received.device_id == CH1
        assert received.text("BasicParam/HeartBeatInterval") == "30" and received.text("BasicParam/Name") == "Gate"
        assert received.element.find("BasicParam/SIPServerIP") is None
        records = audit(rig, "control")
        assert [(r["result"], r["params"].get("PTZCmd")) for r in records if "PTZCmd" in r["params"]] == [
            ("ok", ptz), ("invalid", ptz[:-2] + "00")]
        assert_no_device_side(rig)


async def test_control_without_an_answer_from_the_camera_reports_an_error(gateway_factory: Factory) -> None:
    upstream = {"share": [{"prefix": "34020000", "control": True}]}
    async with rig_for(gateway_factory, upstream, FAST) as rig:
        sim = await rig.add_cameras(1, channels=1, unanswered=("DeviceControl",))
        upper = rig.upper
        assert await ask(upper, manscdp.control_guard(31, CH1, guard=True)) == 200
        result = (await answer(upper, "DeviceControl", 31, timeout=3)).typed()
        assert isinstance(result, manscdp.ResultResponse) and result.result == "ERROR"
        assert sim.controls[-1].text("GuardCmd") == "SetGuard"
        (record,) = await rig.upper.wait(lambda: audit(rig, "control"), 2, "the control audit record")
        assert record["result"] == "no-answer" and record["params"] == {"GuardCmd": "SetGuard"}


def test_scrub_drops_addresses_credentials_and_ids_the_other_side_may_not_know() -> None:
    body = manscdp.parse_text(
        "<Response><CmdType>DeviceInfo</CmdType><SN>1</SN><DeviceID>" + CH1 + "</DeviceID>"
        "<DeviceName>Cam</DeviceName><Firmware>V5.5.0 build 20250101</Firmware>"
        "<Info><Uplink>rtsp://192.168.1.64:554/ch1</Uplink><Peer>[fe80::1]:5060</Peer><Note>cam.lan</Note>"
        "<DeviceID>" + CH2 + "</DeviceID><DeviceID>" + CH1 + "</DeviceID><Password>x</Password>"
        "<Port>5060</Port><Keep>kept</Keep></Info></Response>")
    element = body.element
    scrub(element, {CH1: UP1}.get, {"Cam": "Gate 1"}.get, hosts=("cam.lan",))  # type: ignore[arg-type]
    assert element.findtext("DeviceID") == CH1  # the header is the caller's to set
    assert element.findtext("DeviceName") == "Gate 1"
    assert element.findtext("Firmware") == "V5.5.0 build 20250101"
    info = element.find("Info")
    assert info is not None
    assert [(child.tag, child.text) for child in info] == [("DeviceID", UP1), ("Keep", "kept")]


async def _now(value: Any) -> Any:
    return value

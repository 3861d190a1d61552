"""The HTTP API and /metrics of a running gateway, with devices talking SIP to it over loopback UDP.

Every expected value comes from what the test device sent or from the standard's ID scheme (domain.md),
not from the gateway's own output.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from gwproc import (
    GbDevice,
    InProcessGateway,
    catalog_xml,
    device_info_xml,
    running_gateway,
    wait_until,
)

# Community (industry 01) IPC (type 132) in the social-resource access network (network digit 8).
DEVICE_ID = "34020000011328000001"
CAMERA = "34020000011318000001"  # community camera (131)
ALARM_IN = "34020000111348000001"  # school (industry 11) alarm input (134)
OTHER_ID = "34020000011328000099"
UNKNOWN = "34020000011328000777"
GLOBAL_SECRET = "Gl0bal-S3cret-pw"
DEVICE_SECRET = "Dev1ce-S3cret-pw"
CHANNEL_SECRET = "Chann3l-S3cret-pw"

CHANNELS = [
    {"DeviceID": CAMERA, "Name": "小区东门入口", "Manufacturer": "TestVendor", "Model": "C1", "Owner": "Owner",
     "CivilCode": "340200", "Address": "东门岗亭", "Parental": "0", "ParentID": DEVICE_ID, "RegisterWay": "1",
     "Secrecy": "0", "Status": "ON"},
    {"DeviceID": ALARM_IN, "Name": "学校报警按钮", "Manufacturer": "TestVendor", "Model": "A1", "Owner": "Owner",
     "CivilCode": "340200", "Address": "传达室", "Parental": "0", "ParentID": DEVICE_ID, "RegisterWay": "1",
     "Secrecy": "0", "Status": "OFF", "Password": CHANNEL_SECRET},
]
DEVICE_FIELDS = {"id", "name", "manufacturer", "model", "online", "transport", "address", "registered_at",
                 "last_keepalive", "channel_count"}
CHANNEL_FIELDS = {"id", "name", "parent_id", "status", "id_info"}


async def bootstrapped(gw: InProcessGateway, device_id: str = DEVICE_ID, password: str = "12345678",
                       username: str | None = None, channels: list[dict[str, str]] | None = None) -> GbDevice:
    """A registered device that answered the gateway's DeviceInfo and Catalog queries."""
    items = CHANNELS if channels is None else channels
    dev = await gw.device(device_id)
    answer = await dev.register(password, username=username)
    assert answer.status == 200, answer.start
    await dev.answer_query("DeviceInfo", lambda sn: device_info_xml(device_id, sn, "东门IPC", "TestVendor",
                                                                     "IPC-1", "V1.2.3"))
    await dev.answer_query("Catalog", lambda sn: catalog_xml(device_id, sn, items))

    async def stored() -> bool:
        return bool((await gw.api.ok(f"/api/devices/{device_id}"))["channel_count"] == len(items))

    await wait_until(stored, what="the catalog")
    return dev


def iso_age(value: str) -> float:
    stamp = datetime.fromisoformat(value)
    assert stamp.tzinfo is not None, value
    return time.time() - stamp.timestamp()


async def test_device_and_channel_shapes(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        dev = await bootstrapped(gw)
        assert (await dev.keepalive()).status == 200

        listed = await gw.api.ok("/api/devices")
        assert len(listed) == 1
        device = listed[0]
        assert device.keys() >= DEVICE_FIELDS
        assert device == await gw.api.ok(f"/api/devices/{DEVICE_ID}")
        assert device["id"] == DEVICE_ID
        assert device["name"] == "东门IPC"  # DeviceInfo sent in GB2312
        assert (device["manufacturer"], device["model"], device["firmware"]) == ("TestVendor", "IPC-1", "V1.2.3")
        assert device["online"] is True and device["registered"] is True
        assert device["transport"] == "UDP" and device["address"] == f"127.0.0.1:{dev.port}"
        assert device["channel_count"] == 2
        assert 0 <= iso_age(device["registered_at"]) < 10
        assert 0 <= iso_age(device["last_keepalive"]) <= iso_age(device["registered_at"])
        info = device["id_info"]
        assert (info["industry"], info["type"], info["network"]) == ("01", "132", "8")
        assert info["type_name"] == "IPC" and "community" in info["industry_name"]
        assert "social" in info["network_name"]

        assert [d["id"] for d in await gw.api.ok("/api/devices?online=true")] == [DEVICE_ID]
        assert await gw.api.ok("/api/devices?online=false") == []
        health = await gw.api.ok("/api/health")
        assert {k: health[k] for k in ("status", "devices", "online")} == {"status": "ok", "devices": 1, "online": 1}
        assert {name: c["status"] for name, c in health["components"].items()} == {"audit": "ok", "storage": "ok"}

        channels = {c["id"]: c for c in await gw.api.ok(f"/api/devices/{DEVICE_ID}/channels")}
        assert set(channels) == {CAMERA, ALARM_IN}
        for channel in channels.values():
            assert channel.keys() >= CHANNEL_FIELDS
            assert channel["parent_id"] == DEVICE_ID
        camera, alarm = channels[CAMERA], channels[ALARM_IN]
        assert (camera["name"], camera["status"], camera["address"]) == ("小区东门入口", "ON", "东门岗亭")
        assert (alarm["name"], alarm["status"]) == ("学校报警按钮", "OFF")
        assert camera["id_info"]["type"] == "131" and camera["id_info"]["type_name"] == "camera"
        assert "community" in camera["id_info"]["industry_name"]
        assert alarm["id_info"]["type"] == "134" and "alarm input" in alarm["id_info"]["type_name"]
        assert alarm["id_info"]["industry"] == "11" and "education" in alarm["id_info"]["industry_name"]


async def test_unknown_devices_are_404(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        for path, method in ((f"/api/devices/{UNKNOWN}", "GET"), (f"/api/devices/{UNKNOWN}/channels", "GET"),
                             (f"/api/devices/{UNKNOWN}/status", "GET"),
                             (f"/api/devices/{UNKNOWN}/catalog/refresh", "POST")):
            status, body = await gw.api.call(path, method)
            assert status == 404, (path, status, body)
            assert UNKNOWN in body["error"]
        assert await gw.api.ok("/api/devices") == []


async def test_status_asks_the_device_now(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        dev = await bootstrapped(gw)
        for online, duty in (("ONLINE", "ONDUTY"), ("OFFLINE", "ALARM")):
            call = asyncio.ensure_future(gw.api.call(f"/api/devices/{DEVICE_ID}/status"))

            def status_xml(sn: str, online: str = online, duty: str = duty) -> str:
                return (
                    f"<Response>\r\n<CmdType>DeviceStatus</CmdType>\r\n<SN>{sn}</SN>\r\n"
                    f"<DeviceID>{DEVICE_ID}</DeviceID>\r\n<Result>OK</Result>\r\n<Online>{online}</Online>\r\n"
                    f"<Status>OK</Status>\r\n<Encode>ON</Encode>\r\n<Record>OFF</Record>\r\n"
                    f"<DeviceTime>2024-05-01T08:30:00</DeviceTime>\r\n<Alarmstatus Num=\"2\">\r\n"
                    f"<Item>\r\n<DeviceID>{ALARM_IN}</DeviceID>\r\n<DutyStatus>{duty}</DutyStatus>\r\n</Item>\r\n"
                    f"<Item>\r\n<DeviceID>{CAMERA}</DeviceID>\r\n<DutyStatus>OFFDUTY</DutyStatus>\r\n</Item>\r\n"
                    "</Alarmstatus>\r\n</Response>"
                )

            query = await dev.answer_query("DeviceStatus", status_xml)
            assert query.xml("DeviceID") == DEVICE_ID
            code, body = await call
            assert code == 200, body
            assert body["device_id"] == DEVICE_ID and body["online"] is (online == "ONLINE")
            assert (body["result"], body["status"], body["encode"], body["record"]) == ("OK", "OK", "ON", "OFF")
            assert body["device_time"] == "2024-05-01T08:30:00"
            assert body["alarms"] == [{"id": ALARM_IN, "state": duty}, {"id": CAMERA, "state": "OFFDUTY"}]


async def test_status_errors_name_the_stage(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, {"sip": {"query_timeout": 0.5, "t1": 0.05}}) as gw:
        dev = await bootstrapped(gw)
        url = f"/api/devices/{DEVICE_ID}/status"

        # The device refuses the MESSAGE.
        call = asyncio.ensure_future(gw.api.call(url))
        query = await dev.next_request()
        dev.reply(query, 403, "Forbidden")
        code, body = await call
        assert (code, body["stage"], body["device_status"]) == (502, "request rejected", 403), body

        # It accepts the MESSAGE but never sends the DeviceStatus Response.
        call = asyncio.ensure_future(gw.api.call(url))
        await dev.answer_query("DeviceStatus", None)
        code, body = await call
        assert (code, body["stage"]) == (504, "no answer"), body
        assert "DeviceStatus" in body["error"]

        # It does not answer at all: the SIP transaction times out (64 x T1 = 3.2 s).
        started = time.monotonic()
        code, body = await gw.api.call(url)
        assert (code, body["stage"]) == (504, "no answer"), body
        assert 2.5 < time.monotonic() - started < 6

        # Unregistered: the gateway does not even try.
        assert (await dev.register("12345678", expires=0)).status == 200
        before = len(dev.seen)
        code, body = await gw.api.call(url)
        assert (code, body["stage"]) == (409, "device offline"), body
        assert len(dev.seen) == before


async def test_catalog_refresh_requeries(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        dev = await bootstrapped(gw)
        first_sn = next(q.sn for q in dev.seen if q.cmd_type == "Catalog")
        new_items = [
            CHANNELS[0],
            {"DeviceID": "34020000011318000002", "Name": "北门", "ParentID": DEVICE_ID, "Status": "ON"},
            {"DeviceID": "34020000011318000003", "Name": "车库", "ParentID": DEVICE_ID, "Status": "ON"},
        ]
        call = asyncio.ensure_future(gw.api.call(f"/api/devices/{DEVICE_ID}/catalog/refresh", "POST"))
        query = await dev.answer_query("Catalog", lambda sn: catalog_xml(DEVICE_ID, sn, new_items))
        assert query.sn != first_sn
        code, body = await call
        assert code == 200, body
        assert body == {"device_id": DEVICE_ID, "complete": True, "sum_num": 3, "received": 3, "channel_count": 3}
        channels = {c["id"]: c["name"] for c in await gw.api.ok(f"/api/devices/{DEVICE_ID}/channels")}
        assert channels == {CAMERA: "小区东门入口", "34020000011318000002": "北门", "34020000011318000003": "车库"}

        # Without waiting: 202 now, the device is asked, and its two-page answer lands later.
        code, body = await gw.api.call(f"/api/devices/{DEVICE_ID}/catalog/refresh?wait=false", "POST")
        assert (code, body["state"]) == (202, "requested"), body
        query = await dev.next_request()
        assert query.cmd_type == "Catalog"
        dev.reply(query)
        for item in new_items[1:]:
            answer = await dev.message(catalog_xml(DEVICE_ID, query.sn or "", [item], sum_num=2))
            assert answer.status == 200

        async def two() -> bool:
            return bool((await gw.api.ok(f"/api/devices/{DEVICE_ID}"))["channel_count"] == 2)

        await wait_until(two, what="the refreshed catalog")


async def test_metrics(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        intruder = await gw.device(OTHER_ID)
        assert (await intruder.register("not-the-password")).status == 403
        assert (await intruder.keepalive()).status == 403
        dev = await bootstrapped(gw)
        for _ in range(2):
            assert (await dev.keepalive()).status == 200

        m = await gw.api.metrics()
        assert m["gb_devices_registered"] == 1 and m["gb_devices_online"] == 1
        assert m['gb_registrations_total{result="challenged"}'] == 2
        assert m['gb_registrations_total{result="auth_failed"}'] == 1
        assert m['gb_registrations_total{result="registered"}'] == 1
        assert m['gb_keepalives_total{result="ok"}'] == 2
        assert m['gb_keepalives_total{result="unregistered"}'] == 1
        assert m['gb_sip_requests_total{method="REGISTER"}'] == 4
        # Keepalives (1 refused + 2) and the device's DeviceInfo and Catalog responses.
        assert m['gb_sip_requests_total{method="MESSAGE"}'] == 5
        # The gateway's own MESSAGEs: the DeviceInfo and Catalog queries, each answered.
        count = m['gb_sip_transaction_seconds_count{method="MESSAGE"}']
        assert count == 2
        assert m['gb_sip_transaction_seconds_bucket{le="+Inf",method="MESSAGE"}'] == count
        assert 0 < m['gb_sip_transaction_seconds_sum{method="MESSAGE"}'] < 2
        _, text = await gw.api.call("/metrics")
        assert "# TYPE gb_sip_transaction_seconds histogram" in text

        assert (await dev.register("12345678", expires=0)).status == 200
        m = await gw.api.metrics()
        assert m["gb_devices_registered"] == 0 and m["gb_devices_online"] == 0
        assert m['gb_registrations_total{result="unregistered"}'] == 1


async def test_alarm_is_answered_stored_and_acknowledged(tmp_path: Path) -> None:
    # The gateway's own default charset is UTF-8 here, so answering in the device's GB2312 is visible.
    async with running_gateway(tmp_path, {"sip": {"encoding": "UTF-8"}}) as gw:
        dev = await bootstrapped(gw)
        alarm_xml = (
            f"<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<SN>4711</SN>\r\n<DeviceID>{ALARM_IN}</DeviceID>\r\n"
            "<AlarmPriority>1</AlarmPriority>\r\n<AlarmMethod>2</AlarmMethod>\r\n"
            "<AlarmTime>2024-05-01T08:30:00</AlarmTime>\r\n<AlarmDescription>一键报警</AlarmDescription>\r\n"
            "<Longitude>117.25</Longitude>\r\n<Latitude>31.75</Latitude>\r\n"
            "<Info>\r\n<AlarmType>1</AlarmType>\r\n</Info>\r\n</Notify>"
        )
        assert (await dev.message(alarm_xml)).status == 200
        ack = await dev.next_request()
        assert ack.method == "MESSAGE" and b"<Response>" in ack.body
        assert (ack.cmd_type, ack.sn, ack.xml("DeviceID"), ack.xml("Result")) == ("Alarm", "4711", ALARM_IN, "OK")
        # The device wrote GB2312; the acknowledgement comes back in it.
        assert b'encoding="GB2312"' in ack.body.split(b"\n", 1)[0]
        dev.reply(ack)

        alarms = await wait_until(lambda: gw.api.ok("/api/alarms"), what="the stored alarm")
        assert len(alarms) == 1
        alarm = alarms[0]
        assert (alarm["device_id"], alarm["channel_id"]) == (DEVICE_ID, ALARM_IN)
        assert (alarm["priority"], alarm["method"], alarm["type"]) == ("1", "2", "1")
        assert (alarm["time"], alarm["description"]) == ("2024-05-01T08:30:00", "一键报警")
        assert (alarm["longitude"], alarm["latitude"]) == (117.25, 31.75)
        assert 0 <= iso_age(alarm["received_at"]) < 10
        assert await gw.api.ok(f"/api/alarms?device_id={DEVICE_ID}") == alarms
        assert await gw.api.ok(f"/api/alarms?device_id={OTHER_ID}") == []
        status, body = await gw.api.call("/api/alarms?limit=many")
        assert status == 400 and "limit" in body["error"]


async def test_no_api_output_contains_a_secret(tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "sip": {"password": GLOBAL_SECRET},
        "devices": [{"id": DEVICE_ID, "username": "hik-user-0088", "password": DEVICE_SECRET}],
    }
    async with running_gateway(tmp_path, config) as gw:
        dev = await bootstrapped(gw, password=DEVICE_SECRET, username="hik-user-0088")
        other = await bootstrapped(gw, OTHER_ID, password=GLOBAL_SECRET, channels=[])
        status_call = asyncio.ensure_future(gw.api.call(f"/api/devices/{DEVICE_ID}/status"))
        await dev.answer_query("DeviceStatus", lambda sn: (
            f"<Response>\r\n<CmdType>DeviceStatus</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{DEVICE_ID}</DeviceID>"
            "\r\n<Result>OK</Result>\r\n<Online>ONLINE</Online>\r\n<Status>OK</Status>\r\n</Response>"))
        assert (await status_call)[0] == 200
        refresh = asyncio.ensure_future(gw.api.call(f"/api/devices/{DEVICE_ID}/catalog/refresh", "POST"))
        await dev.answer_query("Catalog", lambda sn: catalog_xml(DEVICE_ID, sn, CHANNELS))
        assert (await refresh)[0] == 200
        for path in ("/api/devices", f"/api/devices/{DEVICE_ID}", f"/api/devices/{DEVICE_ID}/channels",
                     f"/api/devices/{OTHER_ID}", "/api/alarms", "/api/health", "/metrics",
                     f"/api/devices/{UNKNOWN}", f"/api/devices/{UNKNOWN}/status"):
            await gw.api.call(path)
        assert len(gw.api.outputs) >= 11
        secrets = {GLOBAL_SECRET, DEVICE_SECRET, CHANNEL_SECRET, *dev.secrets, *other.secrets}
        for output in gw.api.outputs:
            for secret in secrets:
                assert secret not in output

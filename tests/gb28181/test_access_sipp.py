"""Device access driven by sipp (an independent SIP implementation) over UDP and TCP, checked through the
HTTP API; plus the daemon run from its CLI and a restart on the same database.

Scenarios live in tests/sipp/gb_*.xml. Each asserts what the device must see (statuses, Date format,
granted Expires and Contact); the tests assert what the gateway made of it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
from access_harness import (
    DEVICE_ID,
    PASSWORD,
    RunningGateway,
    SipDevice,
    SipMessage,
    Sipp,
    free_port,
    requires_sipp,
)

from gbgw.sip.endpoint import SipEndpoint
from gbgw.sip.transport import SipTransport

TRANSPORTS = ["UDP", "TCP"]
REPO = Path(__file__).resolve().parents[2]


def ts(value: str | None) -> float:
    assert value is not None
    return datetime.fromisoformat(value).timestamp()


@pytest.mark.sipp
@requires_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_digest_register(gateway: RunningGateway, sipp: Sipp, transport: str) -> None:
    run = await sipp.run("gb_register.xml", gateway.sip_port, transport, ooc="gb_device_ooc.xml")

    assert run.returncode == 0, run.report()
    device = await gateway.device()
    assert device["online"] is True and device["registered"] is True
    assert device["transport"] == transport
    assert device["address"].startswith("127.0.0.1:")
    assert ts(device["expires_at"]) - ts(device["registered_at"]) == pytest.approx(3600, abs=0.01)
    # Annex D decoded: community (01) IPC (132) in the social-resource access network (8).
    assert device["id_info"]["industry"] == "01"
    assert device["id_info"]["type"] == "132"
    assert device["id_info"]["network"] == "8"


@pytest.mark.sipp
@requires_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_unregister_takes_device_offline(gateway: RunningGateway, sipp: Sipp, transport: str) -> None:
    run = await sipp.run("gb_unregister.xml", gateway.sip_port, transport, ooc="gb_device_ooc.xml")

    assert run.returncode == 0, run.report()
    device = await gateway.device()
    assert device["online"] is False
    assert device["registered"] is False
    status, online = await gateway.api("/api/devices?online=true")
    assert status == 200 and online == []


@pytest.mark.sipp
@requires_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refresh_keeps_device_online(gateway: RunningGateway, sipp: Sipp, transport: str) -> None:
    process, workdir = await sipp.start("gb_refresh.xml", gateway.sip_port, transport, ooc="gb_device_ooc.xml")
    # The scenario waits 1 s between registration and refresh: read the first registration meanwhile.
    first = await gateway.wait_for(lambda: gateway.device_or_none(DEVICE_ID), what="first registration")
    run = await sipp.finish(process, workdir)

    assert run.returncode == 0, run.report()
    device = await gateway.device()
    assert device["online"] is True and device["registered"] is True
    assert ts(device["registered_at"]) - ts(first["registered_at"]) >= 0.9
    assert ts(device["expires_at"]) - ts(device["registered_at"]) == pytest.approx(3600, abs=0.01)
    assert await gateway.metric("gb_registrations_total", result="registered") == 1
    assert await gateway.metric("gb_registrations_total", result="refreshed") == 1


@pytest.mark.sipp
@requires_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_keepalive_recorded(gateway: RunningGateway, sipp: Sipp, transport: str) -> None:
    run = await sipp.run("gb_keepalive.xml", gateway.sip_port, transport, ooc="gb_device_ooc.xml")

    assert run.returncode == 0, run.report()
    device = await gateway.device()
    assert device["online"] is True
    assert device["last_keepalive"] is not None
    assert ts(device["last_keepalive"]) >= ts(device["registered_at"]) + 0.15  # after the scenario's pause
    assert await gateway.metric("gb_keepalives_total", result="ok") == 1


@pytest.mark.sipp
@requires_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_keepalive_from_unregistered_device_refused(
    gateway: RunningGateway, sipp: Sipp, transport: str
) -> None:
    run = await sipp.run("gb_keepalive_unregistered.xml", gateway.sip_port, transport)

    assert run.returncode == 0, run.report()
    status, _ = await gateway.api("/api/devices/34020000011328000099")
    assert status == 404
    assert await gateway.metric("gb_keepalives_total", result="unregistered") == 1


@pytest.mark.sipp
@requires_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_split_gb2312_catalog_assembled(gateway: RunningGateway, sipp: Sipp, transport: str) -> None:
    run = await sipp.run("gb_catalog.xml", gateway.sip_port, transport, ooc="gb_catalog_ooc.xml")

    assert run.returncode == 0, run.report()
    device = await gateway.device()
    # From the DeviceInfo answer (GB2312 on the wire).
    assert device["name"] == "东门网络摄像机"
    assert device["manufacturer"] == "Hikvision"
    assert device["firmware"] == "V4.1.50"
    assert device["channel_count"] == 3
    assert device["catalog_partial"] is False
    status, channels = await gateway.api(f"/api/devices/{DEVICE_ID}/channels")
    assert status == 200
    by_id = {c["id"]: c for c in channels}
    assert set(by_id) == {f"3402000001131800000{n}" for n in (1, 2, 3)}
    assert {c["name"] for c in channels} == {"东门入口", "大厅", "停车场出口"}
    assert by_id["34020000011318000002"]["address"] == "一楼大厅"
    assert by_id["34020000011318000003"]["status"] == "OFF"
    assert by_id["34020000011318000001"]["status"] == "ON"
    for channel in channels:
        assert channel["device_id"] == DEVICE_ID
        assert channel["parent_id"] == DEVICE_ID
        info = channel["id_info"]
        assert (info["industry"], info["type"], info["type_name"], info["network"]) == ("01", "131", "camera", "8")
    assert await gateway.metric("gb_catalogs_total", result="complete") == 1


@pytest.mark.sipp
@requires_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_options_answered_with_allow(gateway: RunningGateway, sipp: Sipp, transport: str) -> None:
    run = await sipp.run("gb_options.xml", gateway.sip_port, transport)

    assert run.returncode == 0, run.report()


async def test_allow_lists_exactly_the_methods_the_gateway_accepts(gateway: RunningGateway) -> None:
    """Allow (in the OPTIONS answer and in a 405 alike) names every method answered otherwise than 405,
    and none that is answered 405."""
    device = await gateway.registered_device()
    options = await device.request("OPTIONS")
    assert options.status == 200
    allowed = {m.strip() for m in (options.get("Allow") or "").split(",")}
    assert {"REGISTER", "MESSAGE", "OPTIONS"} <= allowed

    refused = await device.request("PUBLISH")
    assert refused.status == 405
    assert {m.strip() for m in (refused.get("Allow") or "").split(",")} == allowed
    candidates = ["MESSAGE", "NOTIFY", "SUBSCRIBE", "INFO", "BYE", "UPDATE", "REFER", "PRACK", "PUBLISH", "INVITE"]
    for method in candidates:
        response = await device.request(method, headers=[("Event", "Catalog")], call_id=f"{method}@127.0.0.1")
        accepted = response.status != 405
        assert accepted == (method in allowed), f"{method}: answered {response.start}, Allow {sorted(allowed)}"


# -- queries through the API, answered by a scripted device ----------------------------------------------

CHANNELS = [("34020000011318000001", "东门入口"), ("34020000011318000002", "大厅"), ("34020000011318000003", "停车场出口")]


def query_of(request: SipMessage) -> tuple[str, str]:
    cmd = re.search(rb"<CmdType>(\w+)</CmdType>", request.body)
    sn = re.search(rb"<SN>(\d+)</SN>", request.body)
    assert cmd and sn, request.body
    return cmd.group(1).decode(), sn.group(1).decode()


def catalog_page(sn: str, items: list[tuple[str, str]], sum_num: int, root: str = "Response",
                 event: str | None = None) -> bytes:
    """A catalog message in GBK, as NVRs send them."""
    rows = "".join(
        f"<Item>\r\n<DeviceID>{cid}</DeviceID>\r\n<Name>{name}</Name>\r\n<ParentID>{DEVICE_ID}</ParentID>\r\n"
        f"<Status>ON</Status>\r\n{f'<Event>{event}</Event>' if event else ''}</Item>\r\n"
        for cid, name in items
    )
    return (
        f'<?xml version="1.0" encoding="GBK"?>\r\n<{root}>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{sn}</SN>\r\n'
        f"<DeviceID>{DEVICE_ID}</DeviceID>\r\n<SumNum>{sum_num}</SumNum>\r\n"
        f'<DeviceList Num="{len(items)}">\r\n{rows}</DeviceList>\r\n</{root}>\r\n'
    ).encode("gbk")


class NvrScript:
    """Answers the gateway's queries like a three-camera NVR; ``drop_last_page`` loses the catalog's end."""

    def __init__(self) -> None:
        self.drop_last_page = False
        self.catalog_queries = 0

    async def __call__(self, device: SipDevice, request: SipMessage) -> None:
        device.answer_ok(request)
        if request.method != "MESSAGE":
            return
        cmd, sn = query_of(request)
        if cmd == "DeviceInfo":
            body = (
                f'<?xml version="1.0" encoding="GB2312"?>\r\n<Response>\r\n<CmdType>DeviceInfo</CmdType>\r\n'
                f"<SN>{sn}</SN>\r\n<DeviceID>{DEVICE_ID}</DeviceID>\r\n<Result>OK</Result>\r\n"
                "<DeviceName>NVR</DeviceName>\r\n</Response>\r\n"
            ).encode()
            await device.message(body)
        elif cmd == "Catalog":
            self.catalog_queries += 1
            await device.message(catalog_page(sn, CHANNELS[:2], 3))
            if not self.drop_last_page:
                await device.message(catalog_page(sn, CHANNELS[2:], 3))


async def nvr(gateway: RunningGateway, transport: str = "UDP") -> tuple[SipDevice, NvrScript]:
    device = await gateway.new_device(transport=transport)
    script = NvrScript()
    device.on_request = script
    assert (await device.register()).status == 200

    async def bootstrapped() -> bool:
        return (await gateway.device())["channel_count"] == 3
    await gateway.wait_for(bootstrapped, what="the catalog after registration")
    return device, script


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_catalog_refresh_through_the_api(gateway: RunningGateway, transport: str) -> None:
    _, script = await nvr(gateway, transport)
    status, result = await gateway.api(f"/api/devices/{DEVICE_ID}/catalog/refresh", "POST")

    assert status == 200, result
    assert result == {"device_id": DEVICE_ID, "complete": True, "sum_num": 3, "received": 3, "channel_count": 3}
    assert script.catalog_queries == 2
    _, channels = await gateway.api(f"/api/devices/{DEVICE_ID}/channels")
    assert sorted((c["id"], c["name"]) for c in channels) == CHANNELS
    assert (await gateway.device())["catalog_partial"] is False


async def test_catalog_missing_its_last_page_is_kept_as_partial(gateway: RunningGateway) -> None:
    """A lost page must not hide cameras: the partial answer is merged over the last full catalog."""
    _, script = await nvr(gateway)
    script.drop_last_page = True
    status, result = await gateway.api(f"/api/devices/{DEVICE_ID}/catalog/refresh", "POST")

    assert status == 200, result
    assert (result["complete"], result["sum_num"], result["received"]) == (False, 3, 2)
    device = await gateway.device()
    assert device["catalog_partial"] is True
    assert device["channel_count"] == 3
    assert await gateway.metric("gb_catalogs_total", result="partial") == 1


@pytest.mark.parametrize("gateway", [{"sip": {"query_timeout": 0.2, "catalog_first_wait": 0.2}}], indirect=True)
async def test_unanswered_catalog_query_is_not_a_partial_catalog(gateway: RunningGateway) -> None:
    """A device that never answers a Catalog query sent no catalog at all: nothing announced is missing."""
    await gateway.registered_device()  # answers 200 to the queries, never with a Response

    async def queried() -> bool:
        return await gateway.metric("gb_catalogs_total", result="partial") >= 1 or \
            "catalog incomplete" in gateway.log_text or "no catalog" in gateway.log_text
    await gateway.wait_for(queried, timeout=4, what="the catalog wait to run out")
    device = await gateway.device()
    assert device["catalog_partial"] is False
    assert device["channel_count"] == 0


async def test_background_refresh_of_an_offline_device(gateway: RunningGateway) -> None:
    device, _ = await nvr(gateway)
    assert (await device.register(expires=0)).status == 200
    status, result = await gateway.api(f"/api/devices/{DEVICE_ID}/catalog/refresh?wait=false", "POST")
    assert status == 409, result
    assert result["stage"] == "device offline"


async def test_alarm_list_limit(gateway: RunningGateway) -> None:
    device = await gateway.registered_device()
    for sn in range(3):
        body = (
            f"<Notify>\r\n<CmdType>Alarm</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{DEVICE_ID}</DeviceID>\r\n"
            f"<AlarmPriority>1</AlarmPriority>\r\n<AlarmMethod>2</AlarmMethod>\r\n"
            f"<AlarmDescription>alarm {sn}</AlarmDescription>\r\n</Notify>\r\n"
        ).encode()
        assert (await device.message(body)).status == 200

    async def stored() -> list | None:
        _, alarms = await gateway.api("/api/alarms")
        return alarms if len(alarms) == 3 else None
    await gateway.wait_for(stored, what="three alarms")
    status, newest = await gateway.api("/api/alarms?limit=2")
    assert status == 200
    assert [a["description"] for a in newest] == ["alarm 2", "alarm 1"]
    for bad in ("-1", "many", "1.5"):
        status, body = await gateway.api(f"/api/alarms?limit={bad}")
        assert status == 400, (bad, body)


async def test_catalog_notify_applies_changes(gateway: RunningGateway) -> None:
    """Catalog changes a device pushes (NOTIFY, and MESSAGE as some devices do) update the channel list."""
    device, _ = await nvr(gateway)
    ok = await device.request(
        "NOTIFY",
        headers=[("Event", "Catalog"), ("Subscription-State", "active"),
                 ("Content-Type", "Application/MANSCDP+xml")],
        body=catalog_page("900", [("34020000011318000004", "后门")], 1, root="Notify", event="ADD"),
        call_id="notify-1@127.0.0.1",
    )
    assert ok.status == 200, ok.start
    ok = await device.message(catalog_page("901", [CHANNELS[0]], 1, root="Notify", event="DEL"))
    assert ok.status == 200, ok.start

    async def changed() -> list | None:
        _, channels = await gateway.api(f"/api/devices/{DEVICE_ID}/channels")
        ids = sorted(c["id"] for c in channels)
        return channels if ids == ["34020000011318000002", "34020000011318000003", "34020000011318000004"] else None
    channels = await gateway.wait_for(changed, what="the catalog changes")
    assert {c["name"] for c in channels} == {"大厅", "停车场出口", "后门"}
    assert (await gateway.device())["channel_count"] == 3
    assert "request handler failed" not in gateway.log_text


# -- restart and the CLI ----------------------------------------------------------------------------------


async def test_registration_survives_restart(gateway_factory, tmp_path: Path) -> None:
    """A device registered before a restart is known after it, registered but offline until it keeps
    alive; its keepalive is accepted without a new REGISTER."""
    overrides = {"storage": {"path": str(tmp_path / "restart.db")}}
    first = await gateway_factory(overrides)
    device = await first.registered_device()
    await first.wait_for(lambda: first.device_or_none(DEVICE_ID), what="registration")
    await first.stop()

    second = await gateway_factory(overrides)
    after = await second.device()
    assert after["registered"] is True
    assert after["online"] is False
    device = await second.new_device()
    response = await device.keepalive()
    assert response.status == 200
    assert (await second.device())["online"] is True


async def test_listening_on_port_0_survives_busy_tcp_ports() -> None:
    """Port 0 promises one free port for UDP and TCP alike, however many TCP ports are in use."""
    held = []
    try:
        for _ in range(2000):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(1)
            held.append(sock)
        for _ in range(300):
            transport = SipTransport(SipEndpoint(), lambda txn: None)
            try:
                await transport.start("127.0.0.1", 0)
            finally:
                await transport.close()
    finally:
        for sock in held:
            sock.close()


async def _wait_http(url: str, process: asyncio.subprocess.Process, timeout: float = 10) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(timeout / 0.05)):
            if process.returncode is not None:
                raise AssertionError(f"gateway exited with {process.returncode}")
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.mark.sipp
@requires_sipp
async def test_cli_run_serves_devices_and_stops_on_sigterm(tmp_path: Path, sipp: Sipp) -> None:
    sip_port, api_port = free_port(), free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f'sip:\n  listen: "127.0.0.1:{sip_port}"\n  password: "{PASSWORD}"\n'
        f'api:\n  listen: "127.0.0.1:{api_port}"\n'
        f'storage:\n  path: "{tmp_path / "cli.db"}"\n'
        "log:\n  format: json\n",
        encoding="utf-8",
    )
    check = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gbgw.gb28181", "check-config", str(config), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await check.communicate()
    assert check.returncode == 0, out.decode()
    assert f"127.0.0.1:{sip_port}" in out.decode()

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gbgw.gb28181", "run", "--config", str(config), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _wait_http(f"http://127.0.0.1:{api_port}/api/health", process)
        run = await sipp.run("gb_register.xml", sip_port, "UDP", ooc="gb_device_ooc.xml")
        assert run.returncode == 0, run.report()
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{api_port}/api/devices/{DEVICE_ID}") as response:
            assert response.status == 200
            assert (await response.json())["online"] is True
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, stderr.decode()[-2000:]
    output = stderr.decode() + stdout.decode()
    assert "gateway stopped" in output
    assert PASSWORD not in output


async def test_cli_check_config_names_the_bad_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text('sip:\n  id: "1234"\n', encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gbgw.gb28181", "check-config", str(config), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    assert process.returncode == 2
    assert "sip.id" in stderr.decode()

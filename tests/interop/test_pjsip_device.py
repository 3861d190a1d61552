"""The gateway against PJSIP, an independent SIP stack playing the camera.

Both sides are real processes: ``python -m gbgw.gb28181 run`` with a config (talked to over its HTTP API)
and a pjsua2 user agent (``pjsip_agent.py``). Nothing of the project's own SIP code is on the device
side, so a digest, transaction or header bug shared by the gateway and the suite's hand-written devices
shows up here. The PyPI wheel is built without video: PJSIP refuses the gateway's video-only INVITE with
488, which exercises the gateway's refused-INVITE path against a stack that really refuses.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gwproc import DOMAIN, GATEWAY_ID, ApiClient, DaemonProcess, catalog_xml, daemon_config, wait_until
from pjsip_agent import PjsipCamera
from wire import free_port


def _pjsua2_import_error() -> str | None:
    # Imported in a throwaway process: loading PJSIP into pytest's own process would start its threads here.
    probe = subprocess.run([sys.executable, "-c", "import pjsua2"], capture_output=True, text=True, timeout=60)
    if probe.returncode == 0:
        return None
    lines = probe.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {probe.returncode}"


_IMPORT_ERROR = _pjsua2_import_error()
pytestmark = pytest.mark.skipif(
    _IMPORT_ERROR is not None,
    reason=f"import pjsua2 failed ({_IMPORT_ERROR}): pip install pjsua2-python (the binary wheel)",
)

DEVICE_ID = "34020000001320000001"
CHANNELS = ("34020000001310000001", "34020000001310000002")
PASSWORD = "pjsip-secret-1"
GB_DATE = re.compile(r"^Date:[ \t]*(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})[ \t]*\r?$", re.MULTILINE | re.IGNORECASE)
MANSCDP = "Application/MANSCDP+xml"


@dataclass
class Site:
    daemon: DaemonProcess
    api: ApiClient
    camera: PjsipCamera
    sip_port: int

    @property
    def gateway_uri(self) -> str:
        params = ";transport=tcp" if self.camera.transport == "tcp" else ""
        return f"sip:{GATEWAY_ID}@127.0.0.1:{self.sip_port}{params}"

    def register(self, password: str = PASSWORD, expires: int = 3600, refresh_before: int = 5) -> None:
        self.camera.send("register", id=f"sip:{DEVICE_ID}@{DOMAIN}", registrar=self.gateway_uri, user=DEVICE_ID,
                         realm=DOMAIN, password=password, expires=expires, refresh_before=refresh_before)

    async def registered(self) -> dict[str, Any]:
        self.register()
        reg = await self.camera.expect("reg")
        assert (reg["code"], reg["expiration"]) == (200, 3600), reg
        return reg

    async def message(self, xml: str, encoding: str = "GB2312") -> dict[str, Any]:
        """A MANSCDP MESSAGE from PJSIP to the gateway; the gateway's answer as PJSIP reports it."""
        body = f'<?xml version="1.0" encoding="{encoding}"?>\r\n{xml}\r\n'
        self.camera.send("message", to=self.gateway_uri, content_type=MANSCDP, body=body)
        return await self.camera.expect("im_status")

    async def query(self, cmd_type: str, timeout: float = 10.0) -> str:
        """Wait until PJSIP received the gateway's Query of `cmd_type` (PJSIP answers 200 itself); its SN."""
        def wanted(event: dict[str, Any]) -> bool:
            return f"<CmdType>{cmd_type}</CmdType>" in event["body"] and "<Query>" in event["body"]

        received = await self.camera.expect("im", wanted, timeout)
        assert received["content_type"].lower() == MANSCDP.lower(), received
        match = re.search(r"<SN>\s*(\d+)\s*</SN>", received["body"])
        assert match is not None, received["body"]
        return match.group(1)

    async def device(self) -> dict[str, Any]:
        return dict(await self.api.ok(f"/api/devices/{DEVICE_ID}"))

    async def answer_bootstrap(self) -> None:
        """Answer the DeviceInfo and Catalog queries the gateway sends after a registration."""
        sn = await self.query("DeviceInfo")
        answer = await self.message(
            f"<Response>\r\n<CmdType>DeviceInfo</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{DEVICE_ID}</DeviceID>\r\n"
            "<Result>OK</Result>\r\n<DeviceName>PJSIP camera</DeviceName>\r\n<Manufacturer>Teluu</Manufacturer>\r\n"
            "<Model>pjsua2</Model>\r\n<Firmware>2.x</Firmware>\r\n<Channel>2</Channel>\r\n</Response>"
        )
        assert answer["code"] == 200, answer
        await self.answer_catalog(await self.query("Catalog"))

    async def answer_catalog(self, sn: str) -> None:
        # UTF-8 with Chinese names, as many IPCs send it; the agent's strings are UTF-8 on the wire.
        items = [
            {"DeviceID": CHANNELS[0], "Name": "大门入口", "Manufacturer": "Teluu", "Model": "pjsua2",
             "Owner": "Owner", "CivilCode": "340200", "Address": "gate", "Parental": "0",
             "ParentID": DEVICE_ID, "RegisterWay": "1", "Secrecy": "0", "Status": "ON"},
            {"DeviceID": CHANNELS[1], "Name": "停车场", "Manufacturer": "Teluu", "Model": "pjsua2",
             "Owner": "Owner", "CivilCode": "340200", "Address": "car park", "Parental": "0",
             "ParentID": DEVICE_ID, "RegisterWay": "1", "Secrecy": "0", "Status": "ON"},
        ]
        answer = await self.message(catalog_xml(DEVICE_ID, sn, items), encoding="UTF-8")
        assert answer["code"] == 200, answer


@asynccontextmanager
async def site(tmp_path: Path, transport: str = "udp", **sip: Any) -> AsyncIterator[Site]:
    """The gateway daemon (this device's own password) and a PJSIP camera, both on 127.0.0.1."""
    media_base = 20000 + 2 * (free_port() % 10000)
    config, sip_port, api_port = daemon_config(
        tmp_path,
        sip={"query_timeout": 5, "catalog_first_wait": 5, "t1": 0.2, **sip},
        media={"ip": "127.0.0.1", "ports": f"{media_base}-{media_base + 19}", "first_packet_timeout": 3},
    )
    config["devices"] = [{"id": DEVICE_ID, "password": PASSWORD}]
    daemon = DaemonProcess.with_config(config, tmp_path / "gateway.yaml", tmp_path / "gateway.log")
    camera = PjsipCamera(tmp_path / "pjsip.log", transport)
    api = ApiClient(f"http://127.0.0.1:{api_port}")
    try:
        await daemon.start()
        await camera.start()
        yield Site(daemon, api, camera, sip_port)
    except BaseException:
        sys.stderr.write(f"--- gateway log ---\n{daemon.log_text()[-4000:]}\n--- PJSIP log ---\n{camera.log_tail()}\n")
        raise
    finally:
        await camera.stop()
        await api.close()
        await daemon.ensure_stopped()


async def test_registers_with_digest_and_gets_a_gb_date(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        reg = await s.registered()
        assert reg["reason"] == "OK"
        date = GB_DATE.search(reg["msg"])
        assert date is not None, f"no GB format Date in the 200 OK:\n{reg['msg']}"

        device = await wait_until(lambda: s.device(), what="the device in the API")
        assert device["online"] is True and device["registered"] is True, device
        assert device["address"].endswith(f":{s.camera.port}"), device
        listed = {d["id"]: d for d in await s.api.ok("/api/devices?online=true")}
        assert DEVICE_ID in listed, listed


async def test_wrong_password_fails_with_403_naming_it(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        s.register(password="not-the-password")
        reg = await s.camera.expect("reg")
        assert reg["code"] == 403, reg
        assert "wrong password" in reg["reason"].lower(), reg
        assert DEVICE_ID not in {d["id"] for d in await s.api.ok("/api/devices?online=true")}


async def test_keepalive_is_accepted_and_moves_last_keepalive(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        await s.registered()
        before = (await wait_until(lambda: s.device(), what="the device in the API"))["last_keepalive"]
        for sn, encoding in ((1, "GB2312"), (2, "UTF-8")):
            await asyncio.sleep(1.1)  # the API's timestamps may have one-second resolution
            answer = await s.message(
                f"<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{DEVICE_ID}</DeviceID>\r\n"
                "<Status>OK</Status>\r\n</Notify>",
                encoding=encoding,
            )
            assert (answer["code"], answer["reason"]) == (200, "OK"), answer
            after = (await s.device())["last_keepalive"]
            assert after is not None and after != before, (before, after)
            before = after


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_queries_reach_pjsip_and_its_answers_fill_the_api(tmp_path: Path, transport: str) -> None:
    async with site(tmp_path, transport) as s:
        await s.registered()
        await s.answer_bootstrap()
        assert (await s.device())["transport"].lower() == transport

        async def two_channels() -> list[dict[str, Any]] | None:
            channels = await s.api.ok(f"/api/devices/{DEVICE_ID}/channels")
            return list(channels) if len(channels) == 2 else None

        channels = {c["id"]: c for c in await wait_until(two_channels, 10, "the catalog in the API")}
        assert set(channels) == set(CHANNELS)
        assert (channels[CHANNELS[0]]["name"], channels[CHANNELS[1]]["name"]) == ("大门入口", "停车场")
        device = await s.device()
        assert (device["name"], device["manufacturer"], device["channel_count"]) == ("PJSIP camera", "Teluu", 2)

        # DeviceStatus asked through the API: the Query reaches PJSIP, PJSIP's Response ends the API call.
        call = asyncio.ensure_future(s.api.call(f"/api/devices/{DEVICE_ID}/status"))
        sn = await s.query("DeviceStatus")
        answer = await s.message(
            f"<Response>\r\n<CmdType>DeviceStatus</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{DEVICE_ID}</DeviceID>\r\n"
            "<Result>OK</Result>\r\n<Online>ONLINE</Online>\r\n<Status>OK</Status>\r\n<Encode>ON</Encode>\r\n"
            "<Record>OFF</Record>\r\n<DeviceTime>2024-05-01T08:30:00</DeviceTime>\r\n</Response>"
        )
        assert answer["code"] == 200, answer
        code, body = await asyncio.wait_for(call, 10)
        assert code == 200, body
        assert (body["online"], body["status"], body["encode"], body["record"]) == (True, "OK", "ON", "OFF"), body

        # A catalog refresh asked through the API is answered from PJSIP again.
        call = asyncio.ensure_future(s.api.call(f"/api/devices/{DEVICE_ID}/catalog/refresh", "POST"))
        await s.answer_catalog(await s.query("Catalog"))
        code, body = await asyncio.wait_for(call, 10)
        assert code == 200, body
        assert (body["complete"], body["sum_num"], body["received"], body["channel_count"]) == (True, 2, 2, 2), body


async def test_pjsip_refreshes_its_registration_in_place(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        # Granted 60 s, PJSIP refreshes 57 s before expiry: the refresh comes about 3 s later, on the same
        # Call-ID, and answers the gateway's new challenge itself.
        s.register(expires=60, refresh_before=57)
        first = await s.camera.expect("reg")
        assert (first["code"], first["expiration"]) == (200, 60), first
        expires_at = (await wait_until(lambda: s.device(), what="the device in the API"))["expires_at"]
        refresh = await s.camera.expect("reg", timeout=15)
        assert (refresh["code"], refresh["expiration"]) == (200, 60), refresh
        assert GB_DATE.search(refresh["msg"]) is not None, refresh["msg"]
        device = await s.device()
        assert device["online"] is True and device["registered"] is True, device
        assert device["expires_at"] != expires_at, (expires_at, device)


async def test_unregister_takes_the_device_offline(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        await s.registered()
        await wait_until(lambda: s.device(), what="the device in the API")
        s.camera.send("unregister")
        reg = await s.camera.expect("reg")
        assert (reg["code"], reg["expiration"]) == (200, 0), reg

        async def offline() -> dict[str, Any] | None:
            device = await s.device()
            return device if not device["online"] else None

        device = await wait_until(offline, 5, "the device offline")
        assert device["registered"] is False, device


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_play_refused_by_pjsip_names_the_stage(tmp_path: Path, transport: str) -> None:
    async with site(tmp_path, transport) as s:
        await s.registered()
        await s.answer_bootstrap()
        await wait_until(lambda: s.device(), what="the device in the API")
        await wait_until(lambda: _channel_count(s), 10, "the catalog in the API")
        receiver = free_port()
        async with s.api.session.post(f"{s.api.base}/api/channels/{CHANNELS[0]}/play",
                                      json={"host": "127.0.0.1", "port": receiver, "transport": "udp"}) as response:
            status, body = response.status, await response.json()
        assert (status, body.get("stage"), body.get("device_status")) == (502, "INVITE rejected", 488), body
        # Nothing is left behind: no session, and the device is still online for the next try.
        assert await s.api.ok("/api/sessions") == []
        assert (await s.device())["online"] is True


async def _channel_count(s: Site) -> bool:
    return (await s.device())["channel_count"] == 2

"""The daemon as administrators run it: a subprocess with a YAML file, JSON logs, signals, kill -9.

A device registered before a crash must come back known and registered (offline until it speaks), with
its channels, and one keepalive (no REGISTER) must bring it online: devices only re-register at expiry,
so a gateway that forgot them would show them offline for up to an hour after every restart.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gwproc import (
    ApiClient,
    DaemonProcess,
    GbDevice,
    catalog_xml,
    daemon_config,
    device_info_xml,
    wait_until,
)

DEVICE_ID = "34020000011328000001"
SECOND_ID = "34020000011328000002"
CHANNELS = [
    {"DeviceID": "34020000011318000001", "Name": "小区东门入口", "ParentID": DEVICE_ID, "Status": "ON"},
    {"DeviceID": "34020000011318000002", "Name": "地下车库", "ParentID": DEVICE_ID, "Status": "OFF"},
]


class Daemon:
    """One config file and log file, and the processes started on them in turn."""

    def __init__(self, tmp_path: Path, **sections: dict[str, Any]) -> None:
        self.config, self.sip_port, self.api_port = daemon_config(tmp_path, **sections)
        self.config_path = tmp_path / "gateway.yaml"
        self.log_path = tmp_path / "gateway.log"
        self.processes: list[DaemonProcess] = []
        self.api = ApiClient(f"http://127.0.0.1:{self.api_port}")

    async def start(self) -> DaemonProcess:
        process = DaemonProcess.with_config(self.config, self.config_path, self.log_path)
        self.processes.append(process)
        await process.start()
        return process

    def rewrite(self, **sip: Any) -> None:
        self.config["sip"].update(sip)
        self.config_path.write_text(yaml.safe_dump(self.config), encoding="utf-8")


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    handle = Daemon(tmp_path, sip={"password": "first-password"})
    try:
        yield handle
    finally:
        await handle.api.close()
        for process in handle.processes:
            await process.ensure_stopped()


async def registered_device(daemon: Daemon, device_id: str, password: str) -> GbDevice:
    dev = await GbDevice(device_id, daemon.sip_port).open()
    answer = await dev.register(password)
    assert answer.status == 200, answer.start
    await dev.answer_query("DeviceInfo", lambda sn: device_info_xml(device_id, sn, "东门IPC", "TestVendor",
                                                                     "IPC-1", "V1.0"))
    await dev.answer_query("Catalog", lambda sn: catalog_xml(device_id, sn, CHANNELS))
    return dev


async def test_kill9_restart_keeps_registration_and_channels(daemon: Daemon) -> None:
    first = await daemon.start()
    dev = await registered_device(daemon, DEVICE_ID, "first-password")
    try:
        async def catalog_stored() -> bool:
            return bool((await daemon.api.ok(f"/api/devices/{DEVICE_ID}"))["channel_count"] == 2)

        await wait_until(catalog_stored, what="the catalog")
        await asyncio.sleep(1.2)  # the registry writes behind every 0.5 s
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL

        second = await daemon.start()
        started = [e for e in second.log_events() if e.get("event") == "gateway started"]
        assert len(started) == 2 and started[-1]["devices_known"] == 1 and started[-1]["devices_registered"] == 1
        device = await daemon.api.ok(f"/api/devices/{DEVICE_ID}")
        assert device["registered"] is True and device["online"] is False
        assert device["name"] == "东门IPC" and device["channel_count"] == 2
        assert device["address"] == f"127.0.0.1:{dev.port}"
        channels = {c["id"]: (c["name"], c["status"]) for c in await daemon.api.ok(f"/api/devices/{DEVICE_ID}/channels")}
        assert channels == {c["DeviceID"]: (c["Name"], c["Status"]) for c in CHANNELS}

        # Only a keepalive, no REGISTER: accepted, and the device is online again.
        assert (await dev.keepalive()).status == 200
        device = await daemon.api.ok(f"/api/devices/{DEVICE_ID}")
        assert device["online"] is True and device["last_keepalive"] is not None
        assert (await daemon.api.ok("/api/health"))["online"] == 1

        # SIGTERM while an API request waits on a device that will not answer (Timer F is 32 s):
        # still a prompt, clean exit that says so in the log.
        pending = asyncio.ensure_future(daemon.api.call(f"/api/devices/{DEVICE_ID}/status"))
        assert (await dev.next_request()).cmd_type == "DeviceStatus"
        before = len(second.log_events())
        stopping = time.monotonic()
        second.send_signal(signal.SIGTERM)
        assert await second.wait(timeout=40) == 0
        assert time.monotonic() - stopping < 4
        await second.wait_log("gateway stopped", after=before)
        await asyncio.gather(pending, return_exceptions=True)
    finally:
        dev.close()


async def test_sighup_reloads_credentials(daemon: Daemon) -> None:
    process = await daemon.start()
    dev = await registered_device(daemon, DEVICE_ID, "first-password")
    newcomer = await GbDevice(SECOND_ID, daemon.sip_port).open()
    try:
        daemon.rewrite(password="second-password")
        before = len(process.log_events())
        process.send_signal(signal.SIGHUP)
        await process.wait_log("configuration reloaded", after=before)

        assert (await newcomer.register("first-password")).status == 403
        assert (await newcomer.register("second-password")).status == 200
        # Already registered devices keep their registration and stay online.
        assert (await dev.keepalive()).status == 200
        assert (await daemon.api.ok(f"/api/devices/{DEVICE_ID}"))["online"] is True

        # A reload that fails validation keeps the running credentials, and never logs a secret.
        before = len(process.log_events())
        daemon.rewrite(password="x" * 129)
        process.send_signal(signal.SIGHUP)
        refused = await process.wait_log("reload refused, keeping the running configuration", after=before)
        assert "sip.password" in refused["error"]
        assert "x" * 129 not in process.log_text()
        assert "second-password" not in process.log_text() and "first-password" not in process.log_text()
        third = await GbDevice("34020000011328000003", daemon.sip_port).open()
        try:
            assert (await third.register("second-password")).status == 200
        finally:
            third.close()

        process.send_signal(signal.SIGTERM)
        assert await process.wait(timeout=5) == 0
    finally:
        dev.close()
        newcomer.close()

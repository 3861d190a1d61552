"""Camera control checked against sipp as the camera, so the MANSCDP codec is not only checked against
the project's own simulator: the PTZCmd bytes the gateway sent, as sipp captured them, and the API's
answer to sipp's 200 or its Response.

sipp registers with digest (tests/sipp/gb_control_device.xml) and answers the gateway's MESSAGEs out of
call (tests/sipp/gb_control_ooc.xml), logging what it captured from each command to its -trace_logs file.
The test gateway has no API tokens, so loopback callers have every role (the admin BasicParam included).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from access_harness import DEVICE_ID, RunningGateway, Sipp, SippRun, requires_sipp

CHANNEL = "34020000011318000001"
TRANSPORTS = ["UDP", "TCP"]
# Written out by hand from A.3 (byte 2 0F: version 0 and check nibble (A + 5 + 0) % 16; byte 3 address 1;
# byte 8 the sum of bytes 1-7 mod 256), not computed by the codec under test.
LEFT_AT_100 = "A50F01026400001B"  # byte 4 02 left, byte 5 the pan speed 0x64
CALL_PRESET_5 = "A50F01820005003C"  # byte 4 82 call, byte 6 the preset

pytestmark = [pytest.mark.sipp, requires_sipp]


class LoggingSipp(Sipp):
    """sipp with its scenario <log> lines written to ``*_logs.log`` in the run's directory."""

    def command(self, scenario: str, port: int, transport: str, keys: dict[str, str],
                ooc: str | None = None) -> list[str]:
        command = super().command(scenario, port, transport, keys, ooc)
        return [*command[:-1], "-trace_logs", command[-1]]


def commands_logged(run: SippRun) -> list[dict[str, str]]:
    """The "command ..." lines of gb_control_ooc.xml, one dict of captured fields per command received."""
    text = "".join(path.read_text(errors="replace") for path in sorted(run.workdir.glob("*_logs.log")))
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in re.findall(r"command (cmd=.*)", text)]


async def operate(gateway: RunningGateway, tmp_path: Any, transport: str,
                  call: Callable[[], Awaitable[tuple[int, Any]]], result: str = "OK"
                  ) -> tuple[int, Any, dict[str, str]]:
    """Register the sipp camera, wait for its catalog, make ``call``; the API's answer and what sipp got."""
    sipp = LoggingSipp(tmp_path)
    process, workdir = await sipp.start("gb_control_device.xml", gateway.sip_port, transport,
                                        ooc="gb_control_ooc.xml", result=result)
    try:
        async def catalogued() -> bool:
            device = await gateway.device_or_none(DEVICE_ID)
            return device is not None and device["channel_count"] == 1
        await gateway.wait_for(catalogued, 10, "the sipp camera's catalog")
        status, body = await call()
    finally:
        run = await sipp.finish(process, workdir)
    assert run.returncode == 0, run.report()
    commands = commands_logged(run)
    assert len(commands) == 1, (commands, run.report())
    return status, body, commands[0]


async def api_call(gateway: RunningGateway, path: str, method: str = "POST",
                   body: Any = None) -> tuple[int, Any]:
    async with gateway.http.request(method, gateway.api_url + path, json=body) as response:
        return response.status, await response.json()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_ptz_reaches_sipp_as_its_exact_code(gateway: RunningGateway, tmp_path: Any, transport: str) -> None:
    status, body, got = await operate(gateway, tmp_path, transport, lambda: api_call(
        gateway, f"/api/devices/{DEVICE_ID}/channels/{CHANNEL}/ptz", body={"command": "left", "speed": 100}))

    assert status == 200, body
    assert (body["result"], body["answered"], body["ptz_cmd"]) == ("OK", "accepted", LEFT_AT_100)
    assert (body["device_id"], body["target_id"], body["command"]) == (DEVICE_ID, CHANNEL, "PTZCmd")
    assert (got["cmd"], got["target"], got["ptz"], got["sn"]) == ("DeviceControl", CHANNEL, LEFT_AT_100,
                                                                  str(body["sn"]))


async def test_preset_call_reaches_sipp_as_its_exact_code(gateway: RunningGateway, tmp_path: Any) -> None:
    status, body, got = await operate(gateway, tmp_path, "UDP", lambda: api_call(
        gateway, f"/api/devices/{DEVICE_ID}/channels/{CHANNEL}/presets/5", body={"action": "call"}))

    assert status == 200, body
    assert (body["result"], body["answered"], body["ptz_cmd"]) == ("OK", "accepted", CALL_PRESET_5)
    assert (got["cmd"], got["target"], got["ptz"]) == ("DeviceControl", CHANNEL, CALL_PRESET_5)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_guard_answered_by_sipp_response(gateway: RunningGateway, tmp_path: Any, transport: str) -> None:
    status, body, got = await operate(gateway, tmp_path, transport, lambda: api_call(
        gateway, f"/api/devices/{DEVICE_ID}/guard", body={"armed": True}))

    assert status == 200, body
    assert (body["result"], body["answered"], body["command"]) == ("OK", "response", "GuardCmd")
    assert (got["cmd"], got["target"], got["guard"], got["ptz"]) == ("DeviceControl", DEVICE_ID, "SetGuard", "")
    assert got["sn"] == str(body["sn"])


async def test_basic_param_config_answered_by_sipp_response(gateway: RunningGateway, tmp_path: Any) -> None:
    status, body, got = await operate(gateway, tmp_path, "UDP", lambda: api_call(
        gateway, f"/api/devices/{DEVICE_ID}/config/BasicParam", "PUT", {"HeartBeatInterval": 30}))

    assert status == 200, body
    assert (body["result"], body["answered"], body["command"]) == ("OK", "response", "BasicParam")
    assert (got["cmd"], got["target"], got["heartbeat"]) == ("DeviceConfig", DEVICE_ID, "30")
    assert got["sn"] == str(body["sn"])


async def test_guard_refused_by_sipp_is_request_rejected(gateway: RunningGateway, tmp_path: Any) -> None:
    status, body, got = await operate(gateway, tmp_path, "UDP", lambda: api_call(
        gateway, f"/api/devices/{DEVICE_ID}/guard", body={"armed": True}), result="ERROR")

    assert status == 502, body
    assert (body["result"], body["stage"]) == ("ERROR", "request rejected")
    assert DEVICE_ID in body["error"]
    assert (got["cmd"], got["guard"]) == ("DeviceControl", "SetGuard")

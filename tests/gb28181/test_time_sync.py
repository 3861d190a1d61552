"""Time: the upper's clock from the Date of its REGISTER 200 (logged; with ``sip.time_source: upstream`` the
Date devices get is this host's time plus that offset), and a device whose DeviceTime is off by more than a
minute warned about."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from access_harness import DEVICE_ID, PASSWORD, RunningGateway
from upper_harness import FakeUpper, upstream_config

from gbgw.gb28181.config import ConfigError, load_config
from gbgw.gb28181.devices.diagnostics import WarningKind, device_clock, note_device_time
from gbgw.gb28181.devices.registrar import gb_date
from gbgw.gb28181.devices.time_source import DeviceTimeSource
from gbgw.registry.model import Device
from gbgw.sip.message import Response
from gbgw.sip.transaction import ServerTransaction

SKEW = 3600.0
"""The upper's clock runs an hour ahead of this host's."""


class DatedUpper(FakeUpper):
    """Answers REGISTER with a Date ``skew`` seconds off this host's clock, as a police platform does."""

    def __init__(self, skew: float) -> None:
        super().__init__()
        self.skew = skew
        plain = self.transport.reply

        def reply(txn: ServerTransaction, status: int, reason: str | None = None, **kwargs: Any) -> Response:
            if txn.request.method == "REGISTER" and status == 200:
                kwargs["headers"] = [*kwargs.get("headers", ()), ("Date", gb_date(time.time() + self.skew))]
            return plain(txn, status, reason, **kwargs)

        self.transport.reply = reply  # type: ignore[method-assign]


def test_time_source_key() -> None:
    assert load_config(None).sip.time_source == "host"
    assert load_config({"sip": {"time_source": "upstream"}}).sip.time_source == "upstream"
    with pytest.raises(ConfigError, match=r"sip.time_source.*one of host, upstream"):
        load_config({"sip": {"time_source": "ntp"}})


def test_the_offset_is_applied_only_with_upstream() -> None:
    now = 1_700_000_000.0
    for upstream, expected in ((False, now), (True, now + 90.5)):
        source = DeviceTimeSource(upstream)
        assert source.measured("district", gb_date(now + 90.5), now) == pytest.approx(90.5, abs=0.002)
        assert source.device_time(now) == pytest.approx(expected, abs=0.002)
    source = DeviceTimeSource(True)
    assert source.measured("district", "yesterday", now) is None and source.device_time(now) == now


def wire(gateway: RunningGateway, source: DeviceTimeSource) -> None:
    """What the daemon wires: every link's Date to the time source, the registrar's Date from it."""
    gateway.gateway.devices.registrar.device_time = source.device_time
    for link in gateway.gateway.cascade.links.values():
        link.add_time_listener(source.measured)


@pytest.mark.parametrize("mode", ["host", "upstream"])
async def test_devices_get_the_uppers_time_with_upstream(
    gateway_factory: Callable[..., Any], mode: str
) -> None:
    upper = await DatedUpper(SKEW).start()
    try:
        gateway = await gateway_factory({"sip": {"t1": 0.1, "t2": 0.5, "time_source": mode},
                                         "upstreams": [upstream_config(upper)]})
        source = DeviceTimeSource(gateway.config.sip.time_source == "upstream")
        wire(gateway, source)
        # The link registered before the wiring above could hear it: a refresh is measured.
        await gateway.gateway.cascade.links["district"].reregister()
        await gateway.wait_for(lambda: _value(source.measured_from == "district"), 5, "the upper's Date")
        assert source.offset == pytest.approx(SKEW, abs=2)
        assert "upstream clock offset" in gateway.log_text
        device = await gateway.new_device(DEVICE_ID)
        answer = await device.register(PASSWORD)
        assert answer.status == 200
        given = device_clock(answer.get("Date") or "")
        assert given is not None
        assert given - time.time() == pytest.approx(SKEW if mode == "upstream" else 0.0, abs=2)
    finally:
        await gateway.stop()
        await upper.close()


def test_device_time_far_off_is_a_warning() -> None:
    device = Device(id=DEVICE_ID)
    now = float(int(time.time()))
    note_device_time(device, datetime.fromtimestamp(now - 300).isoformat(timespec="seconds"), now)
    assert [w.kind for w in device.warnings] == [WarningKind.CLOCK_SKEW]
    assert "DeviceTime" in device.warnings[0].detail and "-300 s" in device.warnings[0].detail
    note_device_time(device, "not a time", now)
    assert len(device.warnings) == 1
    note_device_time(device, datetime.fromtimestamp(now + 5).isoformat(timespec="seconds"), now)
    assert device.warnings == ()


async def test_device_status_with_a_wrong_clock_shows_on_the_device(gateway: RunningGateway) -> None:
    device = await gateway.registered_device(DEVICE_ID)
    wrong = datetime.fromtimestamp(time.time() - 7200).strftime("%Y-%m-%dT%H:%M:%S")

    def answer_status(dev: Any, request: Any) -> None:
        dev.answer_ok(request)
        if b"<CmdType>DeviceStatus</CmdType>" in request.body:
            sn = request.body.split(b"<SN>")[1].split(b"</SN>")[0].decode()
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\r\n<Response><CmdType>DeviceStatus</CmdType>'
                    f"<SN>{sn}</SN><DeviceID>{DEVICE_ID}</DeviceID><Result>OK</Result><Online>ONLINE</Online>"
                    f"<Status>OK</Status><DeviceTime>{wrong}</DeviceTime></Response>").encode()
            dev._tasks.add(asyncio.get_running_loop().create_task(dev.message(body)))

    device.on_request = answer_status
    status, body = await gateway.api(f"/api/devices/{DEVICE_ID}/status")
    assert status == 200 and body["device_time"] == wrong, body
    kinds = {w["kind"] for w in (await gateway.api(f"/api/devices/{DEVICE_ID}/warnings"))[1]}
    assert WarningKind.CLOCK_SKEW in kinds
    # A refresh without Date does not contradict it.
    assert (await device.register(PASSWORD)).status == 200
    kinds = {w["kind"] for w in (await gateway.api(f"/api/devices/{DEVICE_ID}/warnings"))[1]}
    assert WarningKind.CLOCK_SKEW in kinds


async def _value(value: bool) -> bool:
    return value

"""Vendor diagnostics: what a vendor whose camera fails sees in the API, with its reason and its SIP trace.

A wrong password, an ID the allowlist does not know, a REGISTER sent to a foreign server ID, a Contact behind
NAT: each shows in ``/api/registrations/failed``, ``/api/devices/{id}/trace`` or the device's warnings, and no
secret of the digest exchange is ever in a trace.
"""

from __future__ import annotations

from typing import Any

import pytest
from access_harness import DEVICE_ID, DOMAIN, GATEWAY_ID, PASSWORD, RunningGateway, SipDevice

from gbgw.gb28181.devices.diagnostics import (
    RegistrationFailures,
    SipTrace,
    WarningKind,
    device_clock,
    redact,
)
from gbgw.sip.endpoint import Peer

FOREIGN_ID = "34020000002000000099"


class ForeignDevice(SipDevice):
    """Registers to another server ID and domain in its Request-URI (a camera configured for another platform)."""

    def build(self, method: str, **kwargs: Any) -> tuple[bytes, str]:
        data, branch = super().build(method, **kwargs)
        return data.replace(f"{method} sip:{GATEWAY_ID}@{DOMAIN} ".encode(),
                            f"{method} sip:{FOREIGN_ID}@3402000099 ".encode(), 1), branch


def assert_no_secret(device: SipDevice, text: str) -> None:
    assert device.secrets and not any(secret in text for secret in device.secrets)


async def test_a_wrong_password_is_listed_with_its_reason_and_trace(gateway: RunningGateway) -> None:
    device = await gateway.new_device(DEVICE_ID)
    response = await device.register("not-the-password")
    assert response.status == 403
    status, failures = await gateway.api("/api/registrations/failed")
    assert status == 200, failures
    (failure,) = failures
    assert (failure["device_id"], failure["status"], failure["known"]) == (DEVICE_ID, 403, False)
    assert "wrong password" in failure["reason"]
    assert failure["source"] == f"127.0.0.1:{device.local_port}/UDP"

    status, trace = await gateway.api(f"/api/devices/{DEVICE_ID}/trace")
    assert status == 200, trace
    assert trace["known"] is False and trace["failed_registrations"][0]["reason"] == failure["reason"]
    lines = [(m["direction"], m["first_line"]) for m in trace["messages"]]
    assert lines[0] == ("in", f"REGISTER sip:{GATEWAY_ID}@{DOMAIN} SIP/2.0")
    assert ("out", "SIP/2.0 401 Unauthorized") in lines
    assert lines[-1][0] == "out" and lines[-1][1].startswith("SIP/2.0 403 Authentication failed")
    text = "".join(m["text"] for m in trace["messages"])
    assert "response=<redacted>" in text and "nonce=<redacted>" in text
    assert_no_secret(device, text)


@pytest.mark.parametrize("gateway", [{"sip": {"allowlist": True}}], indirect=True)
async def test_an_unknown_id_is_listed(gateway: RunningGateway) -> None:
    device = await gateway.new_device("34020000011328000777")
    assert (await device.register()).status == 403
    status, failures = await gateway.api("/api/registrations/failed?device_id=34020000011328000777")
    assert status == 200
    assert [(f["status"], f["reason"], f["known"]) for f in failures] == [(403, "Device not allowed", False)]


async def test_a_foreign_server_id_and_a_private_contact_are_warnings(gateway: RunningGateway) -> None:
    device = ForeignDevice(DEVICE_ID, gateway.sip_port)
    await device.open()
    gateway.devices.append(device)
    contact = ("Contact", f"<sip:{DEVICE_ID}@192.168.1.64:5060>")
    assert (await device.register(extra_headers=[contact])).status == 200
    status, warnings = await gateway.api(f"/api/devices/{DEVICE_ID}/warnings")
    assert status == 200, warnings
    kinds = {w["kind"]: w["detail"] for w in warnings}
    assert set(kinds) == {WarningKind.FOREIGN_SERVER_ID, WarningKind.FOREIGN_DOMAIN, WarningKind.PRIVATE_CONTACT}
    assert FOREIGN_ID in kinds[WarningKind.FOREIGN_SERVER_ID] and GATEWAY_ID in kinds[WarningKind.FOREIGN_SERVER_ID]
    assert "192.168.1.64" in kinds[WarningKind.PRIVATE_CONTACT] and "NAT" in kinds[WarningKind.PRIVATE_CONTACT]

    status, trace = await gateway.api(f"/api/devices/{DEVICE_ID}/trace")
    assert status == 200 and trace["known"] is True
    assert {w["kind"] for w in trace["warnings"]} == set(kinds)
    assert any(m["first_line"].startswith(f"REGISTER sip:{FOREIGN_ID}@") for m in trace["messages"])
    assert_no_secret(device, "".join(m["text"] for m in trace["messages"]))


async def test_a_new_address_and_clock_skew_are_warnings(gateway: RunningGateway) -> None:
    await gateway.registered_device(DEVICE_ID)
    moved = await gateway.new_device(DEVICE_ID)
    far_off = ("Date", "2001-01-01T00:00:00.000")
    assert (await moved.register(PASSWORD, extra_headers=[far_off])).status == 200
    kinds = {w["kind"] for w in (await gateway.api(f"/api/devices/{DEVICE_ID}/warnings"))[1]}
    assert kinds == {WarningKind.NEW_ADDRESS, WarningKind.CLOCK_SKEW}
    # A clean refresh clears what it no longer shows; the new address stays for a day.
    assert (await moved.register(PASSWORD)).status == 200
    kinds = {w["kind"] for w in (await gateway.api(f"/api/devices/{DEVICE_ID}/warnings"))[1]}
    assert kinds == {WarningKind.NEW_ADDRESS}


async def test_keepalives_are_counted_not_kept(gateway: RunningGateway) -> None:
    device = await gateway.registered_device(DEVICE_ID)
    for sn in range(5):
        assert (await device.keepalive(sn)).status == 200
    trace = (await gateway.api(f"/api/devices/{DEVICE_ID}/trace"))[1]
    assert trace["keepalives"] == {"received": 5, "answered": 5}
    assert not any("Keepalive" in m["text"] for m in trace["messages"])


async def test_nothing_heard_is_a_404(gateway: RunningGateway) -> None:
    status, body = await gateway.api("/api/devices/34020000011328000555/trace")
    assert status == 404 and "nothing was heard" in body["error"]


def test_redaction_covers_digest_values_and_password_elements() -> None:
    data = (b'Authorization: Digest username="a", realm="3402000000", nonce="abc", response="0123",'
            b' cnonce="x1", qop=auth\r\n\r\n<Control><SipPassword>hunter2</SipPassword></Control>')
    out = redact(data)
    for secret in (b"abc", b"0123", b"x1", b"hunter2"):
        assert secret not in out
    assert b'realm="3402000000"' in out and b"<SipPassword><redacted></SipPassword>" in out
    # Cut off inside a value (a trace keeps the first max_bytes): still blanked.
    assert b"feed" not in redact(b'Authorization: Digest nonce="feedbeef')


def test_trace_memory_is_bounded_and_unknown_ids_cannot_evict_devices() -> None:
    known = {f"3402000001132800{n:04d}" for n in range(3)}
    trace = SipTrace(lambda: 0.0, lambda i: i if i in known else None, RegistrationFailures(),
                     per_device=2, devices=3, unknown=2, max_bytes=64)
    peer = Peer("UDP", "10.0.0.1", 5060)

    def message(user: str, n: int) -> bytes:
        return (f"MESSAGE sip:{GATEWAY_ID}@{DOMAIN} SIP/2.0\r\nFrom: <sip:{user}@{DOMAIN}>;tag=1\r\n"
                f"To: <sip:{GATEWAY_ID}@{DOMAIN}>\r\nCSeq: {n} MESSAGE\r\n\r\n" + "x" * 100).encode()

    for user in sorted(known):
        for n in range(5):
            trace.tap(True, message(user, n), peer)
    for n in range(50):
        trace.tap(True, message(f"3402000001132899{n:04d}", 1), peer)
    for user in known:
        entry = trace.get(user)
        assert entry is not None and len(entry.messages) == 2
        assert all(len(m.data) == 64 and m.size > 64 for m in entry.messages)
    assert trace.get("34020000011328990000") is None and trace.get("34020000011328990049") is not None


def test_device_clock_reads_both_date_forms() -> None:
    assert device_clock("Sat, 13 Nov 2010 23:29:00 GMT") == 1289690940.0
    assert device_clock("2010-11-13T23:29:00.000") is not None
    assert device_clock("yesterday") is None

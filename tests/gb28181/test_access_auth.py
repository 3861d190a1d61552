"""Registration and authentication against the real gateway, from a scripted device over UDP and TCP.

Digest arithmetic is done here (access_harness), independently of the project's sip.digest. Time-dependent
rules (nonce lifetime, lockout duration) move the gateway's clock forward instead of sleeping. After every
test the captured log output is searched for every password, nonce and digest response that was in play.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from access_harness import (
    DEVICE_ID,
    DOMAIN,
    GATEWAY_ID,
    PASSWORD,
    RunningGateway,
    digest_authorization,
    digest_params,
)
from gwproc import log_events

TRANSPORTS = ["UDP", "TCP"]
OTHER_ID = "34020000011328000002"
OWN_PASSWORD = "camera-own-secret-77"
WRONG_PASSWORD = "not-the-password-42"
GB_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}")


@pytest.fixture(autouse=True)
async def no_secrets_in_logs(gateway: RunningGateway) -> AsyncIterator[None]:
    """Whatever a test did, the log never shows a password, a nonce or a digest response."""
    yield
    text = gateway.log_text
    assert text, "no log output captured"
    secrets = {PASSWORD, OWN_PASSWORD, WRONG_PASSWORD}
    for device in gateway.devices:
        secrets |= device.secrets
    for secret in secrets - {""}:
        assert secret not in text, f"a secret ({secret[:4]}...) appears in the log"


def lockout_events(gateway: RunningGateway) -> list[dict]:
    return [e for e in log_events(gateway.log_text) if e.get("event", "").startswith("locked out")]


# -- a successful registration ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_challenge_then_200_with_date_expires_contact(gateway: RunningGateway, transport: str) -> None:
    device = await gateway.new_device(transport=transport)
    headers = [("Contact", f"<sip:{DEVICE_ID}@127.0.0.1:{device.local_port}>"), ("Expires", "3600")]

    challenge = await device.request("REGISTER", headers=headers)
    assert challenge.status == 401
    params = digest_params(challenge.get("WWW-Authenticate") or "")
    assert params["realm"] == DOMAIN
    assert params["algorithm"].upper() == "MD5"  # some devices refuse a challenge without it
    before = time.time()
    ok = await device.answer_challenge(challenge, PASSWORD, headers)

    assert ok.status == 200, ok.start
    date = ok.get("Date") or ""
    assert GB_DATE.fullmatch(date), date
    # Local time (devices set their clocks from it), to the millisecond.
    assert abs(datetime.strptime(date, "%Y-%m-%dT%H:%M:%S.%f").timestamp() - before) < 2
    assert ok.get("Expires") == "3600"
    contact = ok.get("Contact") or ""
    assert f"sip:{DEVICE_ID}@127.0.0.1:{device.local_port}" in contact
    assert re.search(r";\s*expires=3600\b", contact)
    found = await gateway.device()
    assert found["online"] is True
    assert found["address"] == f"127.0.0.1:{device.local_port}"
    assert found["transport"] == transport


@pytest.mark.parametrize(
    ("asked", "granted"),
    [("30", 60), ("1000000", 86400), (None, 3600), ("600", 600)],
    ids=["below-min", "above-max", "absent", "inside"],
)
async def test_expires_clamped_not_refused(gateway: RunningGateway, asked: str | None, granted: int) -> None:
    """Defaults register_min_expires 60 and register_max_expires 86400: outside values are clamped (200,
    never 423, which many cameras cannot handle), and the 200 says what was granted."""
    device = await gateway.new_device()
    response = await device.register(expires=None if asked is None else int(asked))

    assert response.status == 200, response.start
    assert response.get("Expires") == str(granted)
    assert re.search(rf";\s*expires={granted}\b", response.get("Contact") or "")
    found = await gateway.device()
    registered = datetime.fromisoformat(found["registered_at"]).timestamp()
    assert datetime.fromisoformat(found["expires_at"]).timestamp() - registered == pytest.approx(granted, abs=0.01)


async def test_contact_expires_parameter_wins_over_expires_header(gateway: RunningGateway) -> None:
    """RFC 3261 10.3: the Contact's expires parameter is the requested time, whatever Expires says."""
    device = await gateway.new_device()
    contact = f"<sip:{DEVICE_ID}@127.0.0.1:{device.local_port}>"
    response = await device.register(expires=None, extra_headers=[("Contact", f"{contact};expires=120")])
    assert response.status == 200
    assert response.get("Expires") == "120"

    response = await device.register(expires=3600, extra_headers=[("Contact", f"{contact};expires=300")])
    assert response.get("Expires") == "300"

    response = await device.register(expires=3600, extra_headers=[("Contact", f"{contact};expires=0")])
    assert response.status == 200
    assert response.get("Expires") == "0"
    assert (await gateway.device())["online"] is False


async def test_contact_star_with_expires_0_unregisters(gateway: RunningGateway) -> None:
    device = await gateway.registered_device()
    response = await device.register(expires=0, extra_headers=[("Contact", "*")])
    assert response.status == 200
    found = await gateway.device()
    assert (found["online"], found["registered"]) == (False, False)


async def test_register_without_any_device_id_refused(gateway: RunningGateway) -> None:
    """A REGISTER naming no user in To or From must not create a device with an empty ID."""
    device = await gateway.new_device()
    head = (
        "REGISTER sip:3402000000 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{device.local_port};rport;branch=z9hG4bK{{branch}}\r\n"
        "From: <sip:3402000000>;tag=1\r\nTo: <sip:3402000000>\r\nCall-ID: no-user@127.0.0.1\r\n"
        f"CSeq: {{cseq}} REGISTER\r\nContact: <sip:127.0.0.1:{device.local_port}>\r\n"
    )
    first = await device.send((head.format(branch="nouser1", cseq=1) + "Content-Length: 0\r\n\r\n").encode(),
                              "z9hG4bKnouser1")
    if first.status == 401:
        value, response_hash = digest_authorization(
            digest_params(first.get("WWW-Authenticate") or ""), "anyone", PASSWORD, "sip:3402000000"
        )
        device.secrets.add(response_hash)
        data = head.format(branch="nouser2", cseq=2) + f"Authorization: {value}\r\nContent-Length: 0\r\n\r\n"
        first = await device.send(data.encode(), "z9hG4bKnouser2")
    assert 400 <= first.status < 500, first.start
    _, devices = await gateway.api("/api/devices")
    assert devices == []


# -- refusals ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_wrong_password_refused_with_reason(gateway: RunningGateway, transport: str) -> None:
    device = await gateway.new_device(transport=transport)
    response = await device.register(WRONG_PASSWORD)

    assert response.status == 403
    assert "password" in response.reason.lower()
    status, _ = await gateway.api(f"/api/devices/{DEVICE_ID}")
    assert status == 404
    failures = [e for e in log_events(gateway.log_text) if e.get("event") == "authentication failed"]
    assert [e["device"] for e in failures] == [DEVICE_ID]


@pytest.mark.parametrize(
    "gateway", [{"sip": {"lockout_failures": 3, "lockout_seconds": 2}}], indirect=True
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_lockout_after_repeated_failures(gateway: RunningGateway, transport: str) -> None:
    device = await gateway.new_device(transport=transport)
    for _ in range(3):
        assert (await device.register(WRONG_PASSWORD)).status == 403

    # Locked: even the right password is refused, and no challenge is given away.
    for _ in range(2):
        locked = await device.register(PASSWORD)
        assert locked.status == 403
        assert locked.reason.startswith("Locked out")
    assert (await gateway.api(f"/api/devices/{DEVICE_ID}"))[0] == 404

    device_lockouts = [e for e in lockout_events(gateway) if e.get("kind") == "device"]
    assert len(device_lockouts) == 1, device_lockouts
    assert device_lockouts[0]["device"] == DEVICE_ID
    assert await gateway.metric("gb_auth_lockouts_total", kind="device") == 1

    gateway.clock.advance(1.0)
    assert (await device.register(PASSWORD)).status == 403  # not yet
    gateway.clock.advance(1.1)
    assert (await device.register(PASSWORD)).status == 200
    assert (await gateway.device())["online"] is True
    assert len([e for e in lockout_events(gateway) if e.get("kind") == "device"]) == 1


@pytest.mark.parametrize(
    "gateway", [{"sip": {"lockout_failures": 5, "lockout_seconds": 300}}], indirect=True
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_failures_from_another_address_do_not_lock_the_camera_out(
    gateway: RunningGateway, transport: str
) -> None:
    """Regression (issue 10, item 1): failures were counted per device ID whatever the source, so five
    REGISTERs with a wrong password for a camera's ID from another address locked the camera itself out
    for 300 s. Now the ID is locked only from the address that failed."""
    camera = await gateway.registered_device(transport=transport)
    attacker = await gateway.new_device(transport=transport, local_host="127.0.0.2")
    for _ in range(5):
        assert (await attacker.register(WRONG_PASSWORD)).status == 403
    locked = await attacker.register(PASSWORD)
    assert (locked.status, locked.reason.startswith("Locked out")) == (403, True)

    refreshed = await camera.register(PASSWORD)
    assert refreshed.status == 200, refreshed.start
    assert (await gateway.device())["online"] is True
    lockouts = [e for e in lockout_events(gateway) if e.get("kind") == "device"]
    assert [(e["device"], e["source"]) for e in lockouts] == [(DEVICE_ID, "127.0.0.2")]


@pytest.mark.parametrize(
    "gateway", [{"sip": {"allowlist": True}, "devices": [{"id": DEVICE_ID}]}], indirect=True
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_allowlist(gateway: RunningGateway, transport: str) -> None:
    stranger = await gateway.new_device(OTHER_ID, transport)
    refused = await stranger.register(PASSWORD)
    assert refused.status == 403
    assert "allow" in refused.reason.lower()
    assert (await gateway.api(f"/api/devices/{OTHER_ID}"))[0] == 404

    listed = await gateway.new_device(DEVICE_ID, transport)
    assert (await listed.register(PASSWORD)).status == 200
    assert (await gateway.device(DEVICE_ID))["online"] is True


@pytest.mark.parametrize(
    "gateway", [{"devices": [{"id": DEVICE_ID, "password": OWN_PASSWORD}]}], indirect=True
)
async def test_per_device_password(gateway: RunningGateway) -> None:
    own = await gateway.new_device(DEVICE_ID)
    assert (await own.register(PASSWORD)).status == 403  # the global one is not enough for it
    assert (await own.register(OWN_PASSWORD)).status == 200

    other = await gateway.new_device(OTHER_ID)
    assert (await other.register(OWN_PASSWORD)).status == 403  # nor is its password anyone else's
    assert (await other.register(PASSWORD)).status == 200


@pytest.mark.parametrize(
    "gateway", [{"devices": [{"id": DEVICE_ID, "username": "hik-admin", "password": OWN_PASSWORD}]}],
    indirect=True,
)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_digest_username_other_than_device_id(gateway: RunningGateway, transport: str) -> None:
    device = await gateway.new_device(DEVICE_ID, transport)
    assert (await device.register(OWN_PASSWORD, username="someone-else")).status == 403
    assert (await device.register(OWN_PASSWORD, username=DEVICE_ID)).status == 403
    response = await device.register(OWN_PASSWORD, username="hik-admin")
    assert response.status == 200, response.start
    assert (await gateway.device())["online"] is True


@pytest.mark.parametrize("gateway", [{"sip": {"nonce_ttl": 10}}], indirect=True)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_expired_nonce_gets_stale_challenge(gateway: RunningGateway, transport: str) -> None:
    device = await gateway.new_device(transport=transport)
    headers = [("Contact", f"<sip:{DEVICE_ID}@127.0.0.1:{device.local_port}>"), ("Expires", "3600")]
    first = await device.request("REGISTER", headers=headers)
    assert first.status == 401

    gateway.clock.advance(11)
    stale = await device.answer_challenge(first, PASSWORD, headers)
    assert stale.status == 401
    params = digest_params(stale.get("WWW-Authenticate") or "")
    assert params.get("stale", "").lower() == "true"
    assert params["nonce"] != digest_params(first.get("WWW-Authenticate") or "")["nonce"]
    assert (await gateway.api(f"/api/devices/{DEVICE_ID}"))[0] == 404

    ok = await device.answer_challenge(stale, PASSWORD, headers)
    assert ok.status == 200, ok.start


async def test_replayed_authorization_refused(gateway: RunningGateway) -> None:
    """A captured REGISTER replayed on another Call-ID (from another address) must not register."""
    device = await gateway.registered_device()
    captured = device.last_authorization
    assert captured

    attacker = await gateway.new_device()
    replay = await attacker.request(
        "REGISTER",
        headers=[
            ("Contact", f"<sip:{DEVICE_ID}@127.0.0.1:{attacker.local_port}>"),
            ("Expires", "3600"),
            ("Authorization", captured),
        ],
    )
    assert replay.status in (401, 403), replay.start
    found = await gateway.device()
    assert found["address"] == f"127.0.0.1:{device.local_port}"


async def test_unreadable_authorization_is_400_not_a_crash(gateway: RunningGateway) -> None:
    device = await gateway.new_device()
    for value in ('Digest username="x", realm=', "Basic dXNlcjpwYXNz", 'Digest username="a" response="zz"'):
        response = await device.request(
            "REGISTER",
            headers=[("Contact", f"<sip:{DEVICE_ID}@127.0.0.1:{device.local_port}>"), ("Authorization", value)],
        )
        assert response.status == 400, (value, response.start)
    assert await gateway.alive()
    assert "request handler failed" not in gateway.log_text


async def test_wrong_realm_refused(gateway: RunningGateway) -> None:
    device = await gateway.new_device()
    headers = [("Contact", f"<sip:{DEVICE_ID}@127.0.0.1:{device.local_port}>")]
    challenge = digest_params((await device.request("REGISTER", headers=headers)).get("WWW-Authenticate") or "")
    value, response_hash = digest_authorization(
        {**challenge, "realm": "9999999999"}, DEVICE_ID, PASSWORD, f"sip:{GATEWAY_ID}@{DOMAIN}"
    )
    device.secrets.add(response_hash)
    response = await device.request("REGISTER", headers=[*headers, ("Authorization", value)])
    assert response.status in (401, 403), response.start
    assert (await gateway.api(f"/api/devices/{DEVICE_ID}"))[0] == 404


async def test_digest_uri_as_the_device_wrote_it(gateway: RunningGateway) -> None:
    """Devices sign whatever URI they wrote (server IP, domain, full ID); the digest uses it as given."""
    device = await gateway.new_device()
    headers = [("Contact", f"<sip:{DEVICE_ID}@127.0.0.1:{device.local_port}>")]
    challenge = digest_params((await device.request("REGISTER", headers=headers)).get("WWW-Authenticate") or "")
    value, response_hash = digest_authorization(
        challenge, DEVICE_ID, PASSWORD, f"sip:{GATEWAY_ID}@127.0.0.1:{gateway.sip_port}"
    )
    device.secrets.add(response_hash)
    response = await device.request("REGISTER", headers=[*headers, ("Authorization", value)])
    assert response.status == 200, response.start


async def test_unquoted_numeric_passwords_in_the_yaml_file_are_taken_as_written(gateway_factory, tmp_path) -> None:
    """YAML 1.1 reads 00012345 and 01234567 as octal numbers; the devices were given the digits."""
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"sip:\n  password: 00012345\ndevices:\n  - id: {OTHER_ID}\n    password: 01234567\n", encoding="utf-8"
    )
    gateway = await gateway_factory(path)
    device = await gateway.new_device()
    device.secrets |= {"00012345", "01234567"}
    response = await device.register("00012345")
    assert response.status == 200, response.start
    other = await gateway.new_device(OTHER_ID)
    response = await other.register("01234567")
    assert response.status == 200, response.start
    for secret in device.secrets | other.secrets:
        assert secret not in gateway.log_text


@pytest.mark.parametrize(
    "gateway", [{"sip": {"lockout_failures": 3, "lockout_seconds": 60}}], indirect=True
)
async def test_one_failing_camera_does_not_lock_its_nat_neighbours(gateway: RunningGateway) -> None:
    """Cameras behind one NAT share a source address: one with a wrong password locks only itself."""
    failing = await gateway.new_device(OTHER_ID)
    for _ in range(5):
        assert (await failing.register(WRONG_PASSWORD)).status == 403
    assert (await failing.register(PASSWORD)).reason.startswith("Locked out")
    neighbour = await gateway.new_device(DEVICE_ID)
    assert (await neighbour.register(PASSWORD)).status == 200
    assert not [e for e in lockout_events(gateway) if e.get("kind") == "source"]


@pytest.mark.parametrize(
    "gateway", [{"sip": {"lockout_failures": 3, "lockout_seconds": 60}}], indirect=True
)
async def test_an_address_cycling_through_ids_is_locked(gateway: RunningGateway) -> None:
    ids = [f"3402000000132000{n:04d}" for n in range(10, 13)]
    for device_id in ids:
        guesser = await gateway.new_device(device_id)
        assert (await guesser.register(WRONG_PASSWORD)).status == 403
    # Another ID, right password, same address: the address itself is now locked.
    victim = await gateway.new_device("34020000001320000099")
    assert (await victim.register(PASSWORD)).reason.startswith("Locked out")
    assert [e["source"] for e in lockout_events(gateway) if e.get("kind") == "source"] == ["127.0.0.1"]


async def test_keepalive_from_another_address_is_refused(gateway: RunningGateway) -> None:
    """Knowing a device's ID is not enough to keep it online or speak for it."""
    await gateway.registered_device(DEVICE_ID)
    impostor = await gateway.new_device(DEVICE_ID, local_host="127.0.0.2")
    answer = await impostor.keepalive()
    assert answer.status == 403
    alarm = await impostor.message(
        b'<?xml version="1.0"?><Notify><CmdType>Alarm</CmdType><SN>1</SN>'
        + f"<DeviceID>{DEVICE_ID}</DeviceID><AlarmPriority>1</AlarmPriority><AlarmMethod>2</AlarmMethod>"
        .encode()
        + b"</Notify>"
    )
    assert alarm.status == 403
    status, alarms = await gateway.api("/api/alarms")
    assert status == 200 and alarms == []

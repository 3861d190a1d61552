"""Registration against an in-process registrar (tests/conftest.py LoopbackRegistrar) on loopback."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import pytest
import structlog

from gbgw.sip.digest import parse_credentials
from gbgw.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from gbgw.sip.registration import Registration, RegistrationError, RegistrationState
from gbgw.sip.transaction import Timers
from gbgw.sip.transport import SipTransport

USER = "34020000001320000001"
PASSWORD = "12345678"
AOR = f"sip:{USER}@3402000000"


@pytest.fixture
async def client() -> AsyncIterator[SipTransport]:
    # T1 = 20 ms: Timer F (64*T1) fires after 1.28 s, so timeout tests stay short.
    transport = SipTransport(SipEndpoint(EndpointConfig(timers=Timers(t1=0.02))), lambda txn: None)
    await transport.start("127.0.0.1", 0)
    yield transport
    await transport.close()


def make_registration(
    client: SipTransport,
    registrar: object,
    *,
    transport: str = "UDP",
    password: str = PASSWORD,
    expires: int = 3600,
    states: list[tuple[RegistrationState, str | None]] | None = None,
    **kwargs: object,
) -> Registration:
    port = registrar.port  # type: ignore[attr-defined]
    uri = registrar.uri  # type: ignore[attr-defined]
    contact = f"sip:{USER}@127.0.0.1:{client.port}"
    if transport == "TCP":
        contact += ";transport=tcp"
    return Registration(
        client,
        Peer(transport, "127.0.0.1", port),
        AOR,
        uri,
        USER,
        password,
        expires,
        contact,
        on_state=(lambda state, reason: states.append((state, reason))) if states is not None else None,
        **kwargs,  # type: ignore[arg-type]
    )


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_challenge_answered_once_and_registered(client, sip_registrar_factory, transport):
    registrar = await sip_registrar_factory()
    states: list[tuple[RegistrationState, str | None]] = []
    reg = make_registration(client, registrar, transport=transport, states=states)

    granted = await reg.register()

    assert granted == 3600
    assert reg.state is RegistrationState.REGISTERED
    assert states == [(RegistrationState.REGISTERING, None), (RegistrationState.REGISTERED, None)]
    first, second = registrar.registers()
    assert first.get("Authorization") is None
    creds = parse_credentials(second.get("Authorization") or "")
    assert creds.username == USER and creds.realm == registrar.realm and creds.uri == registrar.uri
    assert [first.cseq.seq, second.cseq.seq] == [1, 2]
    assert first.call_id == second.call_id == reg.call_id
    assert first.via.transport == second.via.transport == transport
    assert registrar.bindings[AOR][0] == make_registration(client, registrar, transport=transport).contact


async def test_contact_expires_wins_over_expires_header(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    registrar.grant = 120
    registrar.expires_header = 999
    reg = make_registration(client, registrar)
    before = client.now()
    assert await reg.register() == 120
    assert reg.expires_at is not None and before + 120 <= reg.expires_at <= client.now() + 120


@pytest.mark.parametrize("ours_listed", [True, False])
async def test_granted_expiry_among_several_contacts(client, sip_registrar_factory, ours_listed):
    registrar = await sip_registrar_factory()
    registrar.expires_header = 90
    reg = make_registration(client, registrar)
    original = registrar.transport.reply

    def reply_with_other_bindings(txn, status, reason=None, *, headers=(), body=b""):
        if status == 200:
            ours = [(n, v) for n, v in headers if n == "Contact"]
            headers = [(n, v) for n, v in headers if n != "Contact"]
            headers.append(("Contact", "<sip:a@192.0.2.1>;expires=10"))
            if ours_listed:
                headers.append(("Contact", f"<{reg.contact}>;expires=30"))
            headers.append(("Contact", "<sip:b@192.0.2.2>;expires=20"))
            assert ours
        return original(txn, status, reason, headers=headers, body=body)

    registrar.transport.reply = reply_with_other_bindings
    assert await reg.register() == (30 if ours_listed else 90)


async def test_stale_nonce_retried_with_new_nonce(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    registrar.stale_answers = 1
    reg = make_registration(client, registrar)
    assert await reg.register() == 3600
    first, second, third = registrar.registers()
    nonce2 = parse_credentials(second.get("Authorization") or "").nonce
    nonce3 = parse_credentials(third.get("Authorization") or "").nonce
    assert nonce2 != nonce3
    assert [r.cseq.seq for r in (first, second, third)] == [1, 2, 3]


async def test_endless_stale_gives_up(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    registrar.stale_answers = 1000
    reg = make_registration(client, registrar)
    with pytest.raises(RegistrationError, match="stale"):
        await reg.register()
    assert reg.state is RegistrationState.FAILED
    assert len(registrar.registers()) < 10


@pytest.mark.parametrize("status", [401, 403])
async def test_wrong_password_fails_without_looping(client, sip_registrar_factory, status):
    registrar = await sip_registrar_factory()
    registrar.wrong_password_status = status
    states: list[tuple[RegistrationState, str | None]] = []
    reg = make_registration(client, registrar, password="wrong", states=states)
    with pytest.raises(RegistrationError) as info:
        await reg.register()
    assert info.value.status == status
    assert "wrong password / rejected by registrar" in info.value.reason
    assert reg.state is RegistrationState.FAILED
    assert states[-1] == (RegistrationState.FAILED, info.value.reason)
    assert len(registrar.registers()) == 2
    assert AOR not in registrar.bindings


async def test_redirect_followed_and_kept_until_failure(client, sip_registrar_factory):
    home = await sip_registrar_factory()
    target = await sip_registrar_factory()
    home.redirect_to = target.uri
    reg = make_registration(client, home)

    assert await reg.register() == 3600
    assert AOR in target.bindings and AOR not in home.bindings
    assert (reg.peer.port, reg.registrar_uri) == (target.port, target.uri)
    assert target.registers()[0].uri == target.uri

    await reg.register()
    assert len(home.registers()) == 1  # the refresh went straight to the new registrar

    target.users = {}
    with pytest.raises(RegistrationError):
        await reg.register()
    assert (reg.peer.port, reg.registrar_uri) == (home.port, home.uri)


async def test_redirect_loop_bounded(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    registrar.redirect_to = registrar.uri
    reg = make_registration(client, registrar, max_redirects=2)
    with pytest.raises(RegistrationError, match="redirects"):
        await reg.register()
    assert len(registrar.registers()) == 3


async def test_interval_too_brief_raises_expires(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    registrar.min_expires = 7200
    reg = make_registration(client, registrar)
    assert await reg.register() == 7200
    assert reg.expires == 7200
    assert [r.expires for r in registrar.registers()] == [3600, 3600, 7200]


async def test_refresh_keeps_call_id_and_counts_cseq_then_unregisters(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    registrar.grant = 1
    reg = make_registration(client, registrar, refresh_ratio=0.2)
    reg.start()
    try:
        await wait_until(lambda: len(registrar.registers()) >= 5)
    finally:
        await reg.stop(unregister=True)

    sent = registrar.registers()
    assert len({r.call_id for r in sent}) == 1
    assert len({r.from_.tag for r in sent}) == 1
    seqs = [r.cseq.seq for r in sent]
    assert seqs == list(range(1, len(sent) + 1))
    # After the first challenge every refresh carries credentials and is accepted without a new 401.
    assert all(r.get("Authorization") for r in sent[1:])
    assert sent[-1].expires == 0
    assert all(r.expires == 3600 for r in sent[:-1])
    assert AOR not in registrar.bindings
    assert reg.state is RegistrationState.UNREGISTERED


async def test_refused_nonce_reuse_answered_again(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    registrar.reject_reused_nonce = True
    reg = make_registration(client, registrar)
    await reg.register()
    await reg.register()
    sent = registrar.registers()
    assert len(sent) == 4
    nonces = [parse_credentials(r.get("Authorization") or "").nonce for r in sent[1:]]
    assert nonces[0] == nonces[1] != nonces[2]
    assert reg.state is RegistrationState.REGISTERED


async def test_stop_without_unregister_sends_nothing(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    reg = make_registration(client, registrar)
    reg.start()
    await wait_until(lambda: reg.state is RegistrationState.REGISTERED)
    await reg.stop(unregister=False)
    assert [r.expires for r in registrar.registers()] == [3600, 3600]
    assert AOR in registrar.bindings
    assert reg.state is RegistrationState.UNREGISTERED


async def test_timeout_fails_with_reason(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    registrar.silent = True
    reg = make_registration(client, registrar)
    with pytest.raises(RegistrationError) as info:
        await reg.register()
    assert info.value.status == 408
    assert "no response from registrar" in info.value.reason
    assert reg.state is RegistrationState.FAILED
    assert reg.failures == 1


async def test_background_retries_then_recovers(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    registrar.users = {}
    states: list[tuple[RegistrationState, str | None]] = []
    reg = make_registration(client, registrar, states=states, retry_min=0.02, retry_max=0.1)
    reg.start()
    try:
        await wait_until(lambda: reg.failures >= 3)
        registrar.users = {USER: PASSWORD}
        await wait_until(lambda: reg.state is RegistrationState.REGISTERED)
    finally:
        await reg.stop(unregister=False)
    assert reg.failures == 0
    kinds = [s for s, _ in states]
    assert kinds[:3] == [RegistrationState.REGISTERING, RegistrationState.FAILED, RegistrationState.REGISTERING]
    assert RegistrationState.REGISTERED in kinds


def test_retry_delay_is_exponential_jittered_and_capped():
    reg = Registration.__new__(Registration)
    reg.retry_min, reg.retry_max = 2.0, 60.0
    for failures, base in [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, 60.0), (40, 60.0)]:
        reg.failures = failures
        delays = [reg.retry_delay() for _ in range(50)]
        assert all(base / 2 <= d <= base for d in delays)
        assert len(set(delays)) > 1
    reg.failures = 1
    assert reg.retry_delay(retry_after=30) >= 30
    assert reg.retry_delay(retry_after=10_000) <= 60.0


def test_rejects_nonsense_configuration():
    transport = SipTransport.__new__(SipTransport)
    with pytest.raises(ValueError):
        Registration(transport, Peer("UDP", "127.0.0.1", 5060), AOR, "sip:x@y", USER, PASSWORD, 0, "sip:c@h")


async def test_secrets_never_logged_or_shown(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    registrar.wrong_password_status = 401
    with structlog.testing.capture_logs() as logs:
        reg = make_registration(client, registrar)
        await reg.register()
        bad = make_registration(client, registrar, password="not-" + PASSWORD)
        with pytest.raises(RegistrationError):
            await bad.register()
        await reg.stop()
    responses = [parse_credentials(r.get("Authorization") or "").response
                 for r in registrar.registers() if r.get("Authorization")]
    text = repr(logs) + repr(reg) + repr(bad) + repr(vars(reg))
    assert logs, "the flow should have logged state changes"
    for secret in [PASSWORD, *responses]:
        assert not re.search(re.escape(secret), text)


async def test_stop_before_any_success_sends_no_unregister(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    registrar.users = {}
    reg = make_registration(client, registrar, retry_min=5.0)
    reg.start()
    await wait_until(lambda: reg.state is RegistrationState.FAILED)
    await reg.stop(unregister=True)
    assert [r.expires for r in registrar.registers()] == [3600, 3600]
    assert reg.state is RegistrationState.UNREGISTERED


async def test_failed_refresh_still_unregisters_live_binding(client, sip_registrar_factory):
    registrar = await sip_registrar_factory()
    reg = make_registration(client, registrar)
    await reg.register()
    registrar.users = {}
    with pytest.raises(RegistrationError, match="403"):
        await reg.register()
    assert reg.state is RegistrationState.FAILED
    await reg.stop(unregister=True)
    assert registrar.registers()[-1].expires == 0
    assert reg.state is RegistrationState.UNREGISTERED
    assert reg.reason is not None and reg.reason.startswith("unregister failed")

"""Shared fixtures. Names are specific (``sip_...``) because every area's tests see this file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gbgw.sip.digest import DigestError, DigestResult, DigestServer, parse_credentials
from gbgw.sip.endpoint import EndpointConfig, SipEndpoint
from gbgw.sip.message import Request
from gbgw.sip.transaction import ServerTransaction, Timers
from gbgw.sip.transport import SipTransport


class LoopbackRegistrar:
    """A minimal registrar and MESSAGE sink on 127.0.0.1 (UDP and TCP on one port).

    Built from the real SipTransport and DigestServer, so tests exercise the same request path as the
    gateway. Behaviour is steered by plain attributes set before (or between) requests.
    """

    def __init__(self, realm: str = "3402000000", users: dict[str, str] | None = None) -> None:
        self.realm = realm
        self.users = users if users is not None else {"34020000001320000001": "12345678"}
        self.digest = DigestServer(realm, b"loopback-registrar-secret")
        self.endpoint = SipEndpoint(EndpointConfig(timers=Timers(t1=0.1)))
        self.transport = SipTransport(self.endpoint, self._on_request)
        self.host = "127.0.0.1"
        self.port = 0
        # What the TU saw, in order (retransmissions absorbed by the transaction layer never get here).
        self.requests: list[Request] = []
        # aor -> (contact, granted expires) of live bindings.
        self.bindings: dict[str, tuple[str, int]] = {}
        self.grant: int | None = None  # cap on granted expiry; None grants what was asked
        self.min_expires: int | None = None  # answer 423 below this
        self.redirect_to: str | None = None  # answer every REGISTER 302 to this URI
        self.stale_answers = 0  # answer this many correct Authorizations with 401 stale=true
        self.wrong_password_status = 403
        self.reject_reused_nonce = False  # a nonce that already registered once gets a fresh (non-stale) 401
        self.expires_header: int | None = None  # an Expires header differing from the Contact's expires
        self.message_delay = 0.0
        self.silent = False  # never answer: the client must time out
        self._used_nonces: set[str] = set()

    @property
    def uri(self) -> str:
        return f"sip:34020000002000000001@{self.host}:{self.port}"

    async def start(self) -> None:
        _, self.port = await self.transport.start(self.host, 0)

    async def close(self) -> None:
        await self.transport.close()

    def registers(self) -> list[Request]:
        return [r for r in self.requests if r.method == "REGISTER"]

    def _on_request(self, txn: ServerTransaction) -> None:
        request = txn.request
        self.requests.append(request)
        if self.silent:
            return
        if request.method == "REGISTER":
            self._register(txn)
        elif request.method == "MESSAGE":
            if self.message_delay:
                asyncio.get_running_loop().call_later(self.message_delay, self.transport.reply, txn, 200)
            else:
                self.transport.reply(txn, 200)
        else:
            self.transport.reply(txn, 405, headers=[("Allow", "REGISTER, MESSAGE, OPTIONS")])

    def _challenge(self, txn: ServerTransaction, stale: bool = False) -> None:
        value = self.digest.challenge(time.time(), stale=stale)
        self.transport.reply(txn, 401, headers=[("WWW-Authenticate", value)])

    def _register(self, txn: ServerTransaction) -> None:
        request = txn.request
        if self.redirect_to is not None:
            self.transport.reply(txn, 302, headers=[("Contact", f"<{self.redirect_to}>")])
            return
        authorization = request.get("Authorization")
        if authorization is None:
            self._challenge(txn)
            return
        try:
            creds = parse_credentials(authorization)
        except DigestError as exc:
            self.transport.reply(txn, 400, exc.reason)
            return
        password = self.users.get(creds.username)
        if password is None:
            self.transport.reply(txn, 403)
            return
        if self.reject_reused_nonce and creds.nonce in self._used_nonces:
            self._challenge(txn)
            return
        result = self.digest.verify(creds, "REGISTER", password, time.time(), call_id=request.call_id)
        if result is DigestResult.BAD_RESPONSE:
            if self.wrong_password_status == 401:
                self._challenge(txn)
            else:
                self.transport.reply(txn, self.wrong_password_status)
            return
        if result is not DigestResult.OK:
            self._challenge(txn, stale=result is DigestResult.STALE)
            return
        if self.stale_answers > 0:
            self.stale_answers -= 1
            self._challenge(txn, stale=True)
            return
        self._used_nonces.add(creds.nonce)
        requested = request.expires if request.expires is not None else 3600
        aor = str(request.to.uri)
        if requested == 0:
            self.bindings.pop(aor, None)
            self.transport.reply(txn, 200)
            return
        if self.min_expires is not None and requested < self.min_expires:
            self.transport.reply(txn, 423, headers=[("Min-Expires", str(self.min_expires))])
            return
        granted = requested if self.grant is None else min(requested, self.grant)
        contact = request.contact
        contact_uri = str(contact.uri) if contact is not None else ""
        self.bindings[aor] = (contact_uri, granted)
        self.transport.reply(
            txn,
            200,
            headers=[
                ("Contact", f"<{contact_uri}>;expires={granted}"),
                ("Expires", str(granted if self.expires_header is None else self.expires_header)),
                ("Date", time.strftime("%Y-%m-%dT%H:%M:%S.000")),
            ],
        )


@pytest.fixture
async def sip_registrar_factory() -> AsyncIterator[Callable[..., Awaitable[LoopbackRegistrar]]]:
    """Start LoopbackRegistrars on loopback (as many as a test needs); all are closed afterwards."""
    made: list[LoopbackRegistrar] = []

    async def make(**kwargs: Any) -> LoopbackRegistrar:
        registrar = LoopbackRegistrar(**kwargs)
        await registrar.start()
        made.append(registrar)
        return registrar

    yield make
    for registrar in made:
        await registrar.close()

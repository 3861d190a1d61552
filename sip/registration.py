"""Client registration (RFC 3261 §10.2): keep one binding alive at a registrar.

One :class:`Registration` owns one Call-ID for its whole life and counts CSeq up across refreshes, as
§10.2.4 asks, so a registrar sees refreshes of one binding rather than new registrations. Digest
challenges are answered with :class:`~sip.digest.DigestClient`; the last challenge is reused on the next
refresh, the way eXosip-based devices do, which saves a round trip whenever the registrar still accepts
the nonce and costs nothing when it does not (its 401 is simply answered).

The exchange itself (:meth:`Registration.register`, :meth:`Registration.unregister`) is one awaitable
call; :meth:`Registration.start` adds the background task that refreshes at ``refresh_ratio`` of the
granted expiry and, after a failure, retries with capped exponential back-off and jitter, so a
registrar that restarts is not hit by every client at the same instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
from collections.abc import Callable

import structlog

from gbgw.sip.digest import DigestChallenge, DigestClient, DigestError, parse_challenge
from gbgw.sip.endpoint import Peer
from gbgw.sip.errors import SipError
from gbgw.sip.headers import NameAddr
from gbgw.sip.message import Request, Response, new_tag
from gbgw.sip.requests import RequestBuilder
from gbgw.sip.transport import SipTimeout, SipTransport
from gbgw.sip.uri import SipUri

log = structlog.get_logger("sip.registration")

# Bounds on one exchange, so a registrar that keeps challenging or redirecting cannot loop us forever.
_MAX_ROUNDS = 8
_MAX_STALE = 3
_CREDENTIAL_HEADER = {401: "Authorization", 407: "Proxy-Authorization"}


class RegistrationState(enum.Enum):
    UNREGISTERED = "unregistered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


class RegistrationError(SipError):
    """A registration attempt failed. ``status`` is the registrar's final answer (408 when none came).

    ``retry_after`` is the registrar's Retry-After in seconds, when it gave one.
    """

    def __init__(self, reason: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(reason, status)
        self.retry_after = retry_after


StateCallback = Callable[[RegistrationState, str | None], None]
"""Called with the new state and, for FAILED (and a failed unregister), the reason."""


class Registration:
    """One binding of ``contact`` to ``aor`` at a registrar, kept alive until stopped.

    ``peer`` and ``registrar_uri`` are where REGISTER goes now: a 301/302 moves them to the Contact the
    registrar names (GB/T 28181-2022 register redirect), and any failure moves them back to the
    configured registrar, which is the one that knows where we should be.

    ``state``/``reason`` say where things stand; ``granted`` is the last expiry the registrar granted and
    ``expires_at`` (transport clock) when that binding lapses. Call :meth:`register` for one attempt, or
    :meth:`start`/:meth:`stop` to keep the binding alive; do not mix :meth:`unregister` with a running
    :meth:`start` (the next refresh would register again).
    """

    def __init__(
        self,
        transport: SipTransport,
        peer: Peer,
        aor: str,
        registrar_uri: str,
        username: str,
        password: str,
        expires: int,
        contact: str,
        *,
        user_agent: str = "gb28181-gateway",
        on_state: StateCallback | None = None,
        refresh_ratio: float = 0.8,
        retry_min: float = 2.0,
        retry_max: float = 300.0,
        max_redirects: int = 3,
    ) -> None:
        if expires <= 0:
            raise ValueError("expires must be positive (use unregister() to remove the binding)")
        if not 0.0 < refresh_ratio < 1.0:
            raise ValueError("refresh_ratio must be between 0 and 1")
        self.transport = transport
        self.peer = peer
        self.aor = aor
        self.registrar_uri = registrar_uri
        self.username = username
        self.expires = expires
        self.contact = contact
        self.on_state = on_state
        self.refresh_ratio = refresh_ratio
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.max_redirects = max_redirects
        self.state = RegistrationState.UNREGISTERED
        self.reason: str | None = None
        self.granted: int | None = None
        self.expires_at: float | None = None
        self.date: str | None = None
        """The ``Date`` of the last 2xx (GB/T 28181 registrars give their time there)."""
        # CSeq counts up across refreshes from this one builder (§10.2.4).
        self._requests = RequestBuilder(transport, aor, user_agent)
        self.call_id = self._requests.new_call_id()
        self.failures = 0
        self._home = (peer, registrar_uri)
        # One client per header: a proxy and the registrar each count nc on their own nonce.
        self._digest = {name: DigestClient(username, password) for name in _CREDENTIAL_HEADER.values()}
        self._tag = new_tag()
        self._challenges: dict[str, DigestChallenge] = {}
        self._contact_uri = _contact_uri(contact)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Registration {self.aor} at {self.registrar_uri} {self.state.value}>"

    @property
    def cseq(self) -> int:
        """The CSeq number of the last REGISTER sent."""
        return self._requests.cseq

    # -- one exchange --------------------------------------------------------------------------------

    async def register(self) -> int:
        """Register (or refresh) once; return the expiry the registrar granted, in seconds.

        Raises :class:`RegistrationError` with a reason fit for an operator's log.
        """
        async with self._lock:
            if self.state is not RegistrationState.REGISTERED:
                self._set_state(RegistrationState.REGISTERING)
            try:
                response = await self._exchange(self.expires)
                granted = self._granted(response)
                if granted <= 0:
                    raise RegistrationError("registrar granted expires 0: binding not kept", response.status)
            except RegistrationError as exc:
                # expires_at stays: a binding granted earlier lives on at the registrar until then.
                self.failures += 1
                self._go_home()
                self._set_state(RegistrationState.FAILED, exc.reason)
                raise
            self.failures = 0
            self.granted = granted
            self.date = response.get("Date")
            self.expires_at = self.transport.now() + granted
            self._set_state(RegistrationState.REGISTERED)
            return granted

    async def unregister(self) -> None:
        """Remove the binding (Expires: 0). The state ends UNREGISTERED even if the registrar fails us."""
        async with self._lock:
            try:
                await self._exchange(0)
            except RegistrationError as exc:
                self._set_state(RegistrationState.UNREGISTERED, f"unregister failed: {exc.reason}")
                raise
            finally:
                self.expires_at = None
                self.granted = None
            self._set_state(RegistrationState.UNREGISTERED)

    async def _exchange(self, expires: int) -> Response:
        """Send REGISTER until a 2xx, answering challenges and following redirects within bounds."""
        answered: set[int] = set()
        stale = 0
        redirects = 0
        for _ in range(_MAX_ROUNDS):
            try:
                request = self._request(expires)
            except DigestError as exc:
                self._challenges.clear()
                raise RegistrationError(f"cannot answer the registrar's challenge: {exc.reason}", 401) from exc
            try:
                response = await self.transport.send_request(request, self.peer)
            except SipTimeout as exc:
                raise RegistrationError(
                    f"no response from registrar {self.peer.host}:{self.peer.port}/{self.peer.transport}", 408
                ) from exc
            status = response.status
            if status < 300:
                return response
            if status in (401, 407):
                challenge = _pick_challenge(response)
                if challenge is None:
                    raise RegistrationError(f"{status} without a usable Digest challenge", status)
                if status in answered and not challenge.stale:
                    self._challenges.clear()
                    raise RegistrationError(
                        f"wrong password / rejected by registrar ({status} again after answering the challenge)",
                        status,
                    )
                if challenge.stale:
                    stale += 1
                    if stale > _MAX_STALE:
                        raise RegistrationError("registrar keeps answering stale=true", status)
                self._challenges[_CREDENTIAL_HEADER[status]] = challenge
                answered.add(status)
                continue
            if status in (301, 302):
                redirects += 1
                if redirects > self.max_redirects:
                    raise RegistrationError(f"more than {self.max_redirects} redirects", status)
                self._redirect(response)
                answered.clear()
                continue
            if status == 423 and expires:
                # Interval Too Brief (§10.2.8): ask again with at least what the registrar wants.
                minimum = _int_value(response.get("Min-Expires"))
                if minimum is None or minimum <= expires:
                    raise RegistrationError("423 without a usable Min-Expires", status)
                self.expires = expires = minimum
                continue
            if status == 403 and answered:
                self._challenges.clear()
                raise RegistrationError("wrong password / rejected by registrar (403 Forbidden)", status)
            raise RegistrationError(
                f"registrar answered {status} {response.reason}".rstrip(),
                status,
                retry_after=_int_value((response.get("Retry-After") or "").split(";", 1)[0]),
            )
        raise RegistrationError(f"no final answer after {_MAX_ROUNDS} REGISTER requests", 408)

    def _request(self, expires: int) -> Request:
        contact = self.contact if "<" in self.contact else f"<{self.contact}>"
        headers = [("Contact", contact), ("Expires", str(expires))]
        for name, challenge in self._challenges.items():
            headers.append((name, self._digest[name].authorization(challenge, "REGISTER", self.registrar_uri)))
        return self._requests.build(
            "REGISTER", self.registrar_uri, self.aor, transport=self.peer.transport, call_id=self.call_id,
            from_tag=self._tag, headers=headers,
        )

    def _granted(self, response: Response) -> int:
        """The expiry of our binding: its Contact's expires, else the Expires header, else what we asked."""
        try:
            contacts = response.contacts
        except SipError:
            contacts = []
        mine = self._contact_uri
        chosen = None
        for contact in contacts:
            uri = contact.uri
            if mine is not None and (uri.user, uri.host, uri.port) == (mine.user, mine.host, mine.port):
                chosen = contact
                break
        if chosen is None and len(contacts) == 1:
            # A registrar behind NAT handling may echo our binding rewritten; one Contact is still ours.
            chosen = contacts[0]
        if chosen is not None:
            value = _int_value(chosen.params.get("expires"))
            if value is not None:
                return value
        try:
            header = response.expires
        except SipError:
            header = None
        return self.expires if header is None else header

    def _redirect(self, response: Response) -> None:
        try:
            targets = [c for c in response.contacts if not c.wildcard and c.uri.scheme in ("sip", "sips")]
        except SipError as exc:
            raise RegistrationError(
                f"{response.status} with an unreadable Contact: {exc.reason}", response.status
            ) from exc
        if not targets:
            raise RegistrationError(f"{response.status} without a Contact to go to", response.status)
        target = max(targets, key=lambda c: _q_value(c.params.get("q")))
        uri = target.uri
        transport = uri.transport or self.peer.transport
        host = uri.host.strip("[]")
        uri_text = str(SipUri(scheme=uri.scheme, user=uri.user, host=uri.host, port=uri.port,
                              params={k: v for k, v in uri.params.items() if k == "transport"}))
        log.info("registration redirected", aor=self.aor, registrar=uri_text, status=response.status)
        self.peer = Peer(transport, host, uri.port or (5061 if uri.scheme == "sips" else 5060))
        self.registrar_uri = uri_text
        # A new registrar has its own realm and nonces.
        self._challenges.clear()

    def _go_home(self) -> None:
        if (self.peer, self.registrar_uri) != self._home:
            self.peer, self.registrar_uri = self._home
            self._challenges.clear()

    def _set_state(self, state: RegistrationState, reason: str | None = None) -> None:
        if state is self.state and reason == self.reason:
            return
        self.state = state
        self.reason = reason
        log.info("registration state", aor=self.aor, registrar=self.registrar_uri, state=state.value,
                 reason=reason)
        if self.on_state is not None:
            try:
                self.on_state(state, reason)
            except Exception:
                log.exception("registration state callback failed", aor=self.aor)

    # -- keeping it alive ----------------------------------------------------------------------------

    def start(self) -> None:
        """Register now and keep the binding refreshed in a background task until :meth:`stop`."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"register {self.aor}")

    async def stop(self, unregister: bool = True) -> None:
        """Stop refreshing; with ``unregister`` remove a binding that may still be live (errors are logged)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        live = self.expires_at is not None and self.expires_at > self.transport.now()
        if unregister and live:
            try:
                await self.unregister()
            except RegistrationError as exc:
                log.warning("unregister failed", aor=self.aor, registrar=self.registrar_uri, reason=exc.reason)
        else:
            self._set_state(RegistrationState.UNREGISTERED)

    def retry_delay(self, retry_after: float | None = None) -> float:
        """Back-off before the next attempt after ``self.failures`` failures in a row."""
        base = min(self.retry_max, self.retry_min * 2.0 ** max(self.failures - 1, 0))
        # Equal jitter: never less than half the base, so a failing registrar is not hammered.
        delay = base * random.uniform(0.5, 1.0)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_max))
        return delay

    async def _run(self) -> None:
        while True:
            try:
                granted = await self.register()
            except RegistrationError as exc:
                delay = self.retry_delay(exc.retry_after)
                log.warning("registration failed", aor=self.aor, reason=exc.reason, retry_in=round(delay, 1),
                            failures=self.failures)
            except Exception:
                # A bug must not end the refreshing for good: log it and try again later.
                self.failures += 1
                delay = self.retry_delay()
                log.exception("registration attempt crashed", aor=self.aor, retry_in=round(delay, 1))
            else:
                delay = granted * self.refresh_ratio
            await asyncio.sleep(delay)


def _pick_challenge(response: Response) -> DigestChallenge | None:
    """The first challenge we can answer (a registrar may offer SHA-256 and MD5; parse skips the rest)."""
    name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
    for value in response.get_all(name):
        try:
            challenge = parse_challenge(value)
        except DigestError:
            continue
        if not challenge.qop or "auth" in challenge.qop:
            return challenge
    return None


def _int_value(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.isdigit() else None


def _q_value(text: str | None) -> float:
    try:
        return float(text) if text is not None else 1.0
    except ValueError:
        return 0.0


def _contact_uri(contact: str) -> SipUri | None:
    try:
        return NameAddr.parse(contact).uri
    except SipError:
        return None

"""The tool's registrar, sans-IO: what it answers to each REGISTER of the device under test, and what it
learnt about the device's side of registration (its digest answers, its retry after a refusal, its
refreshes and its unregistration).

The answers follow a fixed script, so a device meets the same exchanges every run:

1. the first REGISTER is challenged (401, MD5, realm = the domain);
2. with the wrong-password round on, the first digest answer is refused with 403 as if the password
   were wrong: the device must not count itself registered and must start again later;
3. the next REGISTER is challenged, the answer accepted with 200, ``Expires`` (the granted time) and
   ``Date`` (§9.1.2.1: the device sets its clock from it);
4. refreshes are accepted when their digest is right (reusing the nonce, as eXosip does, is allowed),
   and ``Expires: 0`` unregisters.

A digest answer that does not match the password is recorded as a failure of the registration item,
and the script goes on as if it matched, so the other items can still be run on the device.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from gbgw.sip.digest import DigestError, DigestResult, DigestServer, parse_credentials
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request


class Phase(enum.Enum):
    FIRST_CHALLENGE = "first challenge"
    FIRST_ANSWER = "first answer (refused with 403)"
    RETRY = "retry after 403"
    ANSWER = "answer"
    REGISTERED = "registered"
    UNREGISTERED = "unregistered"


@dataclass(slots=True)
class Answer:
    status: int
    reason: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class RegistrationLog:
    """What the registrar saw; times are the caller's clock."""

    device_id: str = ""
    digest_failures: list[str] = field(default_factory=list)
    refused_at: float | None = None
    """When the wrong-password round's 403 went out."""
    retried_at: float | None = None
    """When the device started again after the 403."""
    registered_at: float | None = None
    date_sent: str = ""
    refreshes: list[float] = field(default_factory=list)
    unregistered_at: float | None = None
    requests: list[str] = field(default_factory=list)
    """The first lines and key headers of every REGISTER, for evidence."""


def _summary(request: Request) -> str:
    keep = ("From", "To", "Call-ID", "CSeq", "Contact", "Expires", "Authorization")
    lines = [request.start_line()] + [f"{name}: {request.get(name)}" for name in keep if request.get(name)]
    return "\n".join(lines)


def date_header(now: datetime) -> str:
    """The GB/T 28181 Date value, local time with milliseconds (§9.1.2.1)."""
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}"


class Registrar:
    def __init__(self, realm: str, password: str, *, grant_expires: int, wrong_password_round: bool) -> None:
        self.password = password
        self.grant_expires = grant_expires
        self.phase = Phase.FIRST_CHALLENGE
        self.log = RegistrationLog()
        self._wrong_password_round = wrong_password_round
        self._digest = DigestServer(realm, secrets.token_bytes(32), nonce_ttl=3600.0)

    @property
    def registered(self) -> bool:
        return self.phase is Phase.REGISTERED

    def handle(self, request: Request, now: float, wall: float, local_time: datetime) -> Answer:
        """The answer to one REGISTER (retransmissions are absorbed by the transaction layer)."""
        log = self.log
        log.requests.append(_summary(request))
        try:
            log.device_id = log.device_id or (request.from_.uri.user or "")
            expires = request.expires
        except SipError as exc:
            return Answer(400, exc.reason)
        if expires is None:
            expires = self.grant_expires
        credentials = request.get("Authorization")
        if expires == 0:
            if self.phase is Phase.REGISTERED:
                self.phase = Phase.UNREGISTERED
                log.unregistered_at = now
            return Answer(200, headers=[("Expires", "0")])
        if credentials is None:
            if self.phase is Phase.RETRY:
                log.retried_at = now
                self.phase = Phase.ANSWER
            elif self.phase is Phase.FIRST_CHALLENGE:
                self.phase = Phase.FIRST_ANSWER if self._wrong_password_round else Phase.ANSWER
            return self._challenge(wall)
        self._verify(request, credentials, wall)
        if self.phase is Phase.FIRST_CHALLENGE:
            # It came with credentials from an earlier run: challenge afresh so the script starts clean.
            self.phase = Phase.FIRST_ANSWER if self._wrong_password_round else Phase.ANSWER
            return self._challenge(wall)
        if self.phase is Phase.FIRST_ANSWER:
            self.phase = Phase.RETRY
            log.refused_at = now
            return Answer(403, "Forbidden (wrong-password round of the conformance tool)")
        if self.phase is Phase.RETRY:
            # A device that answers the 403 at once with the same credentials has not started over.
            log.retried_at = now
            self.phase = Phase.ANSWER
            return self._challenge(wall)
        if self.phase is Phase.REGISTERED:
            log.refreshes.append(now)
        else:
            log.registered_at = now
        self.phase = Phase.REGISTERED
        log.date_sent = date_header(local_time)
        granted = min(expires, self.grant_expires)
        return Answer(200, headers=[("Expires", str(granted)), ("Date", log.date_sent)])

    def _challenge(self, wall: float) -> Answer:
        return Answer(401, headers=[("WWW-Authenticate", self._digest.challenge(wall))])

    def _verify(self, request: Request, value: str, wall: float) -> None:
        try:
            creds = parse_credentials(value)
        except DigestError as exc:
            self.log.digest_failures.append(f"unreadable Authorization ({exc.reason}):\n{_summary(request)}")
            return
        result = self._digest.verify(creds, "REGISTER", self.password, wall, call_id=request.call_id)
        if result not in (DigestResult.OK, DigestResult.STALE):
            self.log.digest_failures.append(f"digest answer refused ({result.name}):\n{_summary(request)}")

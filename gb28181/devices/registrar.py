"""Device registration (REGISTER): allowlist, digest challenge and verification, lockout after repeated
failures, the expiry granted, and the ``Date`` header devices set their clocks from.

Every refusal carries its reason in the SIP reason phrase, so the device's own log shows it, and ends in a
log line naming the device, its address and the reason.

Choices worth knowing:
- Expires outside [register_min_expires, register_max_expires] is clamped, not refused with 423: many
  cameras cannot handle 423. The 200 OK says what was granted (Expires and Contact ;expires=).
- The digest username may differ from the device ID (Hikvision's "SIP user name"): without a per-device
  entry any username is accepted with the global password; with one, its username must match.
- Failures lock out the device ID *from the address that failed* and, counted in distinct IDs, that
  address (see ``lockout``). Keyed by ID alone, five wrong passwords for a camera's (predictable) ID from
  anywhere on the device network would lock the real camera out; keyed by (ID, address), only the
  attacker's address is locked and the camera keeps registering from its own.
- Challenges (401) and refusals before authentication (403) are answered statelessly: a retransmission is
  simply answered again, so an unauthenticated flood holds no transaction state (RFC 3261 §8.2.7 allows a
  UAS to answer a request without a transaction when the answer does not depend on earlier state: the
  digest nonce is a stateless HMAC).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from gbgw.gb28181.config import GatewayConfig
from gbgw.gb28181.devices.lockout import AuthLockout
from gbgw.gb28181.devices.stored import reply_once_stored
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Device
from gbgw.sip.digest import DigestError, DigestResult, DigestServer, parse_credentials
from gbgw.sip.endpoint import Peer
from gbgw.sip.message import Request
from gbgw.sip.transaction import ServerTransaction
from gbgw.sip.transport import SipTransport

log = structlog.get_logger("gb28181.access")

RegistrationHook = Callable[[Request, Peer, "tuple[str, int] | None", Device, float], None]
"""Hears of each accepted REGISTER (request, source, the (host, port) of the valid registration it
replaces, the device as registered, now): the diagnostics' warnings."""


def lockout_key(device_id: str, host: str) -> str:
    """The lockout key of a device ID tried from one address."""
    return f"{device_id}@{host}"


def gb_date(now: float) -> str:
    """The Date format GB/T 28181 devices set their clocks from: local time with milliseconds."""
    dt = datetime.fromtimestamp(now)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}"


class DeviceRegistrar:
    """Answers REGISTER. ``config`` is read on every request, so a reload's credentials apply at once;
    ``on_registered`` hears of each device that was not registered before, or that re-registers from
    another address (its bootstrap). A 200 leaves only once the registration is committed to storage
    (``stored.reply_once_stored``)."""

    def __init__(
        self,
        config: GatewayConfig,
        registry: DeviceRegistry,
        metrics: GatewayMetrics,
        transport: SipTransport,
        lockout: AuthLockout,
        clock: Callable[[], float],
        on_registered: Callable[[str], None],
        on_accepted: RegistrationHook | None = None,
        device_time: Callable[[float], float] | None = None,
    ) -> None:
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.transport = transport
        self.lockout = lockout
        self.clock = clock
        self.on_registered = on_registered
        self.on_accepted = on_accepted
        self.device_time = device_time or (lambda now: now)
        """Host time to the time devices are given in Date (``time_source.DeviceTimeSource``)."""
        self.digest = DigestServer(config.realm, os.urandom(32), nonce_ttl=float(config.sip.nonce_ttl))

    def on_register(self, txn: ServerTransaction) -> None:
        t = self.transport
        req = txn.request
        source: Peer = txn.remote
        now = self.clock()
        device_id = req.to.uri.user or req.from_.uri.user or ""
        where = f"{source.host}:{source.port}/{source.transport}"
        if not device_id:
            log.warning("registration refused: no device ID in To or From", source=where)
            t.reply(txn, 400, "No device ID: To and From carry no user part")
            return
        blog = log.bind(device=device_id, source=where)

        for key in (lockout_key(device_id, source.host), source.host):
            until = self.lockout.locked_until(key, now)
            if until is not None:
                self.metrics.registrations.labels("locked").inc()
                t.reply_stateless(
                    txn, 403, f"Locked out for {int(until - now)} s after repeated authentication failures"
                )
                return
        cred = self.config.credential(device_id)
        if self.config.sip.allowlist and cred is None:
            self.metrics.registrations.labels("not_allowed").inc()
            blog.warning("registration refused: device not in the allowlist")
            t.reply_stateless(txn, 403, "Device not allowed")
            return

        auth = req.get("Authorization")
        if auth is None:
            self.metrics.registrations.labels("challenged").inc()
            t.reply_stateless(txn, 401, headers=[("WWW-Authenticate", self.digest.challenge(now))])
            return
        try:
            creds = parse_credentials(auth)
        except DigestError as exc:
            self.metrics.registrations.labels("malformed").inc()
            blog.warning("registration refused: unreadable Authorization", reason=exc.reason)
            t.reply(txn, 400, f"Bad Authorization header: {exc.reason}")
            return
        if cred is not None and cred.username and creds.username != cred.username:
            self._auth_failed(txn, device_id, source, f"wrong digest username {creds.username!r}")
            return
        password = cred.password if cred is not None and cred.password else self.config.sip.password
        result = self.digest.verify(creds, "REGISTER", password, now, call_id=req.call_id)
        if result is DigestResult.STALE or result is DigestResult.BAD_NONCE:
            self.metrics.registrations.labels("challenged").inc()
            challenge = self.digest.challenge(now, stale=result is DigestResult.STALE)
            t.reply_stateless(txn, 401, headers=[("WWW-Authenticate", challenge)])
            return
        if result is DigestResult.BAD_REALM:
            self._auth_failed(txn, device_id, source, f"wrong realm {creds.realm!r}, expected {self.config.realm!r}")
            return
        if result is DigestResult.MALFORMED:
            self.metrics.registrations.labels("malformed").inc()
            t.reply(txn, 400, "Bad Authorization header")
            return
        if result is not DigestResult.OK:
            self._auth_failed(txn, device_id, source, "wrong password")
            return
        self.lockout.success(lockout_key(device_id, source.host))
        self.lockout.success(source.host)
        self._accept_registration(txn, device_id, creds.username, now, blog)

    def _auth_failed(self, txn: ServerTransaction, device_id: str, source: Peer, why: str) -> None:
        now = self.clock()
        self.metrics.registrations.labels("auth_failed").inc()
        log.warning("authentication failed", device=device_id, source=f"{source.host}:{source.port}", reason=why)
        cfg = self.config.sip
        for kind, key, tag in (
            ("device", lockout_key(device_id, source.host), None), ("source", source.host, device_id)
        ):
            if self.lockout.failure(key, now, tag):
                self.metrics.lockouts.labels(kind).inc()
                log.warning(
                    "locked out after repeated authentication failures",
                    kind=kind, device=device_id, source=source.host, failures=cfg.lockout_failures,
                    seconds=cfg.lockout_seconds,
                )
        self.transport.reply(txn, 403, f"Authentication failed: {why}")

    def _accept_registration(
        self, txn: ServerTransaction, device_id: str, username: str, now: float, blog: Any
    ) -> None:
        req = txn.request
        source: Peer = txn.remote
        cfg = self.config.sip
        contact = req.contact
        requested: int | None = None
        # RFC 3261 10.3: a Contact's expires parameter takes precedence over the Expires header.
        value = contact.params.get("expires") if contact is not None else None
        if value and value.isascii() and value.isdigit():
            # Anything past ten digits is beyond any maximum; int() would also refuse thousands of digits.
            requested = int(value) if len(value) <= 10 else cfg.register_max_expires
        if requested is None:
            requested = req.expires if req.expires is not None else 3600
        headers: list[tuple[str, str]] = [("Date", gb_date(self.device_time(now)))]
        if requested == 0:
            self.registry.unregister(device_id, now)
            self.metrics.registrations.labels("unregistered").inc()
            blog.info("device unregistered")
            headers.append(("Expires", "0"))
            reply_once_stored(self.registry, self.transport, txn, headers)
            return
        granted = min(max(requested, cfg.register_min_expires), cfg.register_max_expires)
        existing = self.registry.get(device_id)
        was_registered = existing is not None and self.registry.is_registered(device_id, now)
        previous = (existing.host, existing.port) if existing is not None and was_registered else None
        transport = source.transport if source.transport in ("TCP", "TLS") else "UDP"
        device = self.registry.register(
            device_id,
            transport=transport,
            host=source.host,
            port=source.port,
            expires=granted,
            now=now,
            username=username if username != device_id else None,
        )
        if self.on_accepted is not None:
            self.on_accepted(req, source, previous, device, now)
        cred = self.config.credential(device_id)
        if cred is not None and (cred.name or cred.stream_transport):
            changes: dict[str, Any] = {}
            if cred.stream_transport:
                changes["stream_transport"] = cred.stream_transport.upper()
            if cred.name and existing is None:
                changes["name"] = cred.name
            self.registry.update(device_id, **changes)
        if contact is not None:
            headers.append(("Contact", f"<{contact.uri}>;expires={granted}"))
        headers.append(("Expires", str(granted)))
        # A device rebooted behind another port, or a NAT that rebound it, may have lost what it told us
        # (its channels, a changed firmware): query it again as after a first registration.
        moved = previous is not None and previous != (source.host, source.port)

        def registered() -> None:
            self.metrics.registrations.labels("refreshed" if was_registered else "registered").inc()
            if not was_registered:
                blog.info("device registered", expires=granted, username=username)
                self.on_registered(device_id)
            elif moved and previous is not None:
                blog.warning("device re-registered from a new address", previous=f"{previous[0]}:{previous[1]}",
                             expires=granted)
                self.on_registered(device_id)

        reply_once_stored(self.registry, self.transport, txn, headers, registered)

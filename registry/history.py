"""The availability history: every device's online/offline transitions, appended to the storage in batches.

Police platforms assess networked cameras by their online rate over a period (在线率), which "online now"
cannot answer. The registry's status listener is synchronous and sits on the keepalive path, so a
transition is only appended to a buffer there; `run` writes the buffer once a second (one transaction for
a whole burst, e.g. 10,000 devices coming back after a network outage) and prunes what is older than the
retention, keeping each device's latest transition so its state at the cut-off is still known.

The gateway being down is not a transition the registry sees. A clean stop records every online device
offline (``gateway-stopped``); after a crash, `recover` closes the episodes left open at the device's
last sign of life (``gateway-down``), which is at most one keepalive persist window old.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from enum import StrEnum

from gbgw.registry.model import Device, Transition
from gbgw.registry.storage import Storage, StorageUnavailable

_log = logging.getLogger(__name__)

DAY = 86400.0


class GatewayReason(StrEnum):
    """Offline reasons the gateway itself causes, beside the registry's StatusReason."""

    GATEWAY_STOPPED = "gateway-stopped"
    GATEWAY_DOWN = "gateway-down"


class TransitionHistory:
    """Buffers transitions (`record` is a registry status listener) and appends them to ``storage``."""

    def __init__(self, storage: Storage, clock: Callable[[], float], retention_days: float) -> None:
        self._storage = storage
        self._clock = clock
        self.retention = retention_days * DAY
        self._pending: list[Transition] = []
        self._lock = asyncio.Lock()
        self.write_failures = 0

    def record(self, device: Device, online: bool, reason: str) -> None:
        self._pending.append(Transition(device.id, self._clock(), online, str(reason)))

    async def flush(self) -> None:
        """Append what is buffered; on a storage error it stays buffered for the next flush."""
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            try:
                await self._storage.add_transitions(batch)
            except Exception:
                self._pending[:0] = batch
                self.write_failures += 1
                raise

    async def transitions(self, start: float, end: float) -> list[Transition]:
        """What `Storage.list_transitions` gives, including what was buffered a moment ago."""
        await self.flush()
        return await self._storage.list_transitions(start, end)

    async def recover(self, devices: Iterable[Device]) -> int:
        """Close the online episodes a crash left open, at each device's last sign of life; returns how many."""
        now = self._clock()
        last = {t.device_id: t for t in await self._storage.list_transitions(now, now)}
        closed: list[Transition] = []
        for device in devices:
            previous = last.get(device.id)
            if previous is not None and previous.online:
                seen = max(previous.at, device.last_keepalive, min(device.registered_at, now))
                closed.append(Transition(device.id, min(seen, now), False, GatewayReason.GATEWAY_DOWN))
        if closed:
            closed.sort(key=lambda t: t.at)
            await self._storage.add_transitions(closed)
        return len(closed)

    def stopping(self, online: Iterable[Device]) -> None:
        """The gateway stops: its online devices' episodes end now (call `flush` after)."""
        now = self._clock()
        self._pending.extend(Transition(d.id, now, False, GatewayReason.GATEWAY_STOPPED) for d in online)

    async def prune(self) -> None:
        await self._storage.prune_transitions(self._clock() - self.retention)

    async def run(self, interval: float = 1.0, prune_every: float = 3600.0) -> None:
        """Flush every ``interval`` and prune every ``prune_every`` seconds, until cancelled (then flush)."""
        since_prune = prune_every
        try:
            while True:
                if since_prune >= prune_every:
                    since_prune = 0.0
                    try:
                        await self.prune()
                    except StorageUnavailable:
                        pass  # the storage said why once
                    except Exception:
                        _log.exception("availability history not pruned")
                try:
                    await self.flush()
                except StorageUnavailable:
                    pass  # the storage said why once; the transitions stay queued
                except Exception:
                    _log.exception("availability history not written, retrying")
                await asyncio.sleep(interval)
                since_prune += interval
        finally:
            with contextlib.suppress(Exception):
                await self.flush()

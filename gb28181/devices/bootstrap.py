"""What follows a device's first registration: DeviceInfo, then the Catalog, then (when configured) the
catalog subscription, as the standard's registration flow does after a 200 OK.

Devices wait in a queue served by at most ``_BOOTSTRAP_RUNNERS`` tasks: a waiting device costs a queue
slot, not a task. After a restart 100,000 devices register faster than they can be queried (3,000/s
against 1,000/s on one core, tests/bench/bench_devices.py), and 70,000 tasks waiting on a semaphore took
1.6 KB each.
"""

from __future__ import annotations

import asyncio
from collections import deque

import structlog

from gbgw.gb28181.config import SipConfig
from gbgw.gb28181.devices.requests import AccessError, DeviceRequests
from gbgw.gb28181.devices.subscriptions import CatalogSubscriptions
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.sip.errors import SipError

log = structlog.get_logger("gb28181.access")

# Devices bootstrapped at once (the bound the semaphore it replaced had); the others wait in a queue.
_BOOTSTRAP_RUNNERS = 256


class DeviceBootstrap:
    def __init__(
        self,
        sip: SipConfig,
        requests: DeviceRequests,
        subscriptions: CatalogSubscriptions,
        tasks: BackgroundTasks,
    ) -> None:
        self.sip = sip
        self.requests = requests
        self.subscriptions = subscriptions
        self.tasks = tasks
        self._bootstrapping: set[str] = set()
        self._queue: deque[str] = deque()
        self._again: set[str] = set()
        self._runners = 0

    def start(self, device_id: str) -> None:
        """Queue the device for its bootstrap (once, however often it registers meanwhile). Asked again
        while its bootstrap runs (it re-registered from a new address), it runs once more after: the
        running one may have queried the address the device left."""
        if device_id in self._bootstrapping:
            self._again.add(device_id)
            return
        self._bootstrapping.add(device_id)
        self._queue.append(device_id)
        if self._runners < _BOOTSTRAP_RUNNERS:
            self._runners += 1
            self.tasks.spawn(self._run())

    async def _run(self) -> None:
        queue = self._queue
        try:
            while queue:
                device_id = queue.popleft()
                try:
                    await self._bootstrap(device_id)
                except (AccessError, SipError, OSError) as exc:
                    # The device went away (its TCP connection closed, it stopped answering): expected on
                    # a device network, so one line naming why, not a traceback.
                    log.warning("device bootstrap failed", device=device_id, reason=str(exc))
                except Exception:
                    log.exception("device bootstrap failed", device=device_id)
                finally:
                    self._bootstrapping.discard(device_id)
                    if device_id in self._again:
                        self._again.discard(device_id)
                        self._bootstrapping.add(device_id)
                        queue.append(device_id)
        finally:
            self._runners -= 1

    async def _bootstrap(self, device_id: str) -> None:
        await asyncio.sleep(0.05)  # let the device finish its own REGISTER handling first
        requests = self.requests
        for step in (requests.device_info, requests.refresh_catalog):
            try:
                await step(device_id)
            except AccessError as exc:
                log.info("device query failed", device=device_id, step=step.__name__, reason=str(exc))
        if self.sip.catalog_subscribe:
            await self.subscriptions.subscribe(device_id)

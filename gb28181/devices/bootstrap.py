"""What follows a device's first registration: DeviceInfo, then the Catalog, then (when configured) the
catalog subscription, as the standard's registration flow does after a 200 OK.

Devices wait in a queue served by at most ``_BOOTSTRAP_RUNNERS`` tasks: a waiting device costs a queue
slot, not a task. After a restart 100,000 devices register faster than they can be queried (3,000/s
against 1,000/s on one core, tests/bench/bench_devices.py), and 70,000 tasks waiting on a semaphore took
1.6 KB each. When a burst of at least ``TRIM_AFTER`` bootstraps is over and its transactions have expired,
the freed C heap is given back to the system (:func:`release_memory`).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections import deque
from collections.abc import Callable

import structlog

from gbgw.gb28181.config import SipConfig
from gbgw.gb28181.devices.requests import AccessError, DeviceRequests
from gbgw.gb28181.devices.subscriptions import CatalogSubscriptions
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.sip.errors import SipError

log = structlog.get_logger("gb28181.access")

# Devices bootstrapped at once (the bound the semaphore it replaced had); the others wait in a queue.
_BOOTSTRAP_RUNNERS = 256
TRIM_AFTER = 1000
"""Bootstraps after which the end of the burst gives the freed heap back to the system."""


def release_memory() -> bool:
    """Give the C heap's free memory back to the system (glibc's ``malloc_trim``); False where there is none.

    A registration burst frees its transactions, requests and parsed XML after Timer J, but CPython's
    allocator keeps what glibc handed it: 20,000 devices left ~12 KB each in VmRSS against ~5 KB live;
    one ``malloc_trim(0)`` then took 4.7 KB per device back (tests/bench/bench_devices.py, "settled,
    then malloc_trim(0)"). It walks the heap once, a few milliseconds, so it runs only after bursts.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None  # not glibc (musl, macOS): nothing to trim
    return trim


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
        self._since_trim = 0
        self._trim: asyncio.TimerHandle | None = None

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
                    self._since_trim += 1
        finally:
            self._runners -= 1
            if not self._runners and not queue and self._since_trim >= TRIM_AFTER:
                self._trim_later()

    def _trim_later(self) -> None:
        """After the burst's last bootstrap, once its completed transactions expired (64*T1)."""
        if self._trim is not None:
            self._trim.cancel()
        self._trim = asyncio.get_running_loop().call_later(64 * self.sip.t1 + 5.0, self._release)

    def _release(self) -> None:
        self._trim = None
        self._since_trim = 0
        if release_memory():
            log.info("memory released after a registration burst")

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

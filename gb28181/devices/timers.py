"""The device side's timed work, run by the daemon's tick about once a second: registration and keepalive
expiry (devices going offline), catalogs whose pages stopped coming, lockout pruning and catalog
subscription refreshes. Each job keeps its own deadlines; this only hands them the time.
"""

from __future__ import annotations

from collections.abc import Callable

from gbgw.gb28181.devices.lockout import AuthLockout
from gbgw.gb28181.devices.requests import DeviceRequests
from gbgw.gb28181.devices.subscriptions import CatalogSubscriptions
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry


class DeviceTimers:
    def __init__(
        self,
        registry: DeviceRegistry,
        requests: DeviceRequests,
        lockout: AuthLockout,
        subscriptions: CatalogSubscriptions,
        clock: Callable[[], float],
        tasks: BackgroundTasks,
    ) -> None:
        self.registry = registry
        self.requests = requests
        self.lockout = lockout
        self.subscriptions = subscriptions
        self.clock = clock
        self.tasks = tasks

    def tick(self) -> None:
        now = self.clock()
        self.registry.expire(now)
        self.requests.expire_catalogs(now)
        self.lockout.prune(now)
        for device_id in self.subscriptions.due(now):
            self.tasks.spawn(self.subscriptions.refresh(device_id))

"""The device side assembled: every device-facing service, each given exactly its collaborators.

The order is forced by who needs whom: the router exists before the transport (it is the transport's
request handler), the services are made once the transport exists, and :meth:`DeviceSide.route` then
hands the router the handlers. Nothing here reaches back into a parent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gbgw.gb28181.config import GatewayConfig
from gbgw.gb28181.devices.bootstrap import DeviceBootstrap
from gbgw.gb28181.devices.lockout import AuthLockout
from gbgw.gb28181.devices.messages import DeviceMessages
from gbgw.gb28181.devices.registrar import DeviceRegistrar, RegistrationHook
from gbgw.gb28181.devices.requests import DeviceRequests
from gbgw.gb28181.devices.router import RequestRouter
from gbgw.gb28181.devices.subscriptions import CatalogSubscriptions
from gbgw.gb28181.devices.timers import DeviceTimers
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.storage import Storage
from gbgw.sip.requests import RequestBuilder
from gbgw.sip.transport import SipTransport


@dataclass(slots=True, frozen=True)
class DeviceSide:
    registrar: DeviceRegistrar
    requests: DeviceRequests
    messages: DeviceMessages
    subscriptions: CatalogSubscriptions
    bootstrap: DeviceBootstrap
    timers: DeviceTimers

    @classmethod
    def build(
        cls,
        config: GatewayConfig,
        registry: DeviceRegistry,
        storage: Storage,
        metrics: GatewayMetrics,
        transport: SipTransport,
        outgoing: RequestBuilder,
        clock: Callable[[], float],
        tasks: BackgroundTasks,
        on_registration_accepted: RegistrationHook | None = None,
        device_time: Callable[[float], float] | None = None,
    ) -> DeviceSide:
        """``outgoing`` builds the out-of-dialog requests of the device-facing address (shared with live
        media, so one CSeq counter numbers them all); ``on_registration_accepted`` is the registrar's hook
        (the diagnostics' warnings)."""
        sip = config.sip
        lockout = AuthLockout(sip.lockout_failures, float(sip.lockout_seconds))
        requests = DeviceRequests(sip, registry, metrics, transport, outgoing, clock)
        subscriptions = CatalogSubscriptions(sip, registry, transport, requests, clock)
        bootstrap = DeviceBootstrap(sip, requests, subscriptions, tasks)
        registrar = DeviceRegistrar(config, registry, metrics, transport, lockout, clock, bootstrap.start,
                                    on_registration_accepted, device_time)
        messages = DeviceMessages(sip, registry, storage, metrics, transport, clock, tasks, requests, subscriptions)
        timers = DeviceTimers(registry, requests, lockout, subscriptions, clock, tasks)
        return cls(registrar, requests, messages, subscriptions, bootstrap, timers)

    def route(self, router: RequestRouter) -> None:
        router.handle("REGISTER", self.registrar.on_register)
        router.handle("MESSAGE", self.messages.on_message)
        router.handle("NOTIFY", self.messages.on_notify)

    def close(self) -> None:
        """Cancel the queries still waiting (the tasks that asked are ended by the gateway's tasks)."""
        self.requests.close()

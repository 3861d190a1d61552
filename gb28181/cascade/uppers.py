"""The cascade: the gateway as a lower-level platform of one or more upper (police) platforms.

One :class:`~gb28181.upstream.UpstreamLink` per configured upstream carries the signalling; the features
hang off it, each in its own module:

- ``cascade_catalog``  the shared catalog, its answers and its change notifications
- ``cascade_media``    the upper's INVITEs, relayed from the device leg to a police-side output
- ``cascade_queries``  queries and controls forwarded to devices, answers relayed back
- ``cascade_alarms``   alarms delivered upward through a durable outbox

Everything that crosses goes through here and is written to the audit log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import structlog

from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.cascade.alarms import AlarmForwarding
from gbgw.gb28181.cascade.catalog import CatalogShare
from gbgw.gb28181.cascade.link import UpstreamLink
from gbgw.gb28181.cascade.media import UpstreamStreams
from gbgw.gb28181.cascade.queries import UpstreamQueries
from gbgw.registry.model import Device

if TYPE_CHECKING:
    from gbgw.gb28181.app.daemon import Gateway

log = structlog.get_logger("gb28181.cascade")


class Cascade:
    """All upstream links of one gateway and the features serving them."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.access = gateway.access
        self.registry = gateway.registry
        self.storage = gateway.storage
        self.metrics = gateway.metrics
        self.live = gateway.live
        self.relay = gateway.relay
        self.audit = AuditLog(self.config.audit.path)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.links: dict[str, UpstreamLink] = {}
        self.catalogs: dict[str, CatalogShare] = {}
        self.streams: dict[str, UpstreamStreams] = {}
        self.queries: dict[str, UpstreamQueries] = {}
        for upstream in self.config.upstreams:
            if not upstream.enabled:
                log.info("upstream disabled in the configuration", upstream=upstream.name)
                continue
            link = UpstreamLink(upstream, self.config, self.audit, self.metrics, self.spawn)
            self.links[upstream.name] = link
            self.catalogs[upstream.name] = CatalogShare(self, link)
            self.streams[upstream.name] = UpstreamStreams(self, link)
            self.queries[upstream.name] = UpstreamQueries(self, link)
        self.alarms = AlarmForwarding(self)
        self.registry.add_status_listener(self._on_device_status)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        for link in self.links.values():
            await link.start()
        await self.alarms.start()
        self.metrics.bind_boundary(self.boundary_drops)

    def shared_count(self, link: UpstreamLink) -> int:
        """How many channels of the registry ``link``'s upper is given (a walk over all channels)."""
        shared = link.policy.shared
        registry = self.registry
        return sum(1 for device in registry.devices() for channel in registry.channels(device.id)
                   if shared(channel.id))

    def boundary_drops(self) -> dict[tuple[str, str], int]:
        sides = [("device", self.gateway.transport)] + [(n, link.transport) for n, link in self.links.items()]
        drops: dict[tuple[str, str], int] = {}
        for side, transport in sides:
            if transport is None:
                continue
            drops[side, "rate"] = transport.rate.dropped if transport.rate is not None else 0
            drops[side, "source"] = transport.refused_sources
        return drops

    async def stop(self) -> None:
        await self.alarms.stop()
        for name, link in self.links.items():
            self.streams[name].close()
            self.queries[name].close()
            self.catalogs[name].close()
            await link.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.audit.close()

    def _on_device_status(self, device: Device, online: bool, reason: str) -> None:
        self.audit.record("device-online" if online else "device-offline", reason=str(reason), device=device.id,
                          address=f"{device.host}:{device.port}/{device.transport}")

"""The cascade: the gateway as a lower-level platform of one or more upper (police) platforms.

One :class:`~gbgw.gb28181.cascade.link.UpstreamLink` per configured upstream carries the signalling; the
features hang off it, each in its own module and each handed only its own collaborators:

- ``catalog``  the shared catalog, its answers and its change notifications
- ``media``    the upper's INVITEs, relayed from the device leg to a police-side output
- ``history``  the upper's playback and download INVITEs and INFOs, each with its own device leg
- ``queries``  queries and controls forwarded to devices, answers relayed back
- ``alarms``   alarms delivered upward through a durable outbox

Everything that crosses goes through here and is written to the audit log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.cascade.alarms import AlarmForwarding
from gbgw.gb28181.cascade.catalog import CatalogShare
from gbgw.gb28181.cascade.history import UpstreamRecordings
from gbgw.gb28181.cascade.link import UpstreamLink
from gbgw.gb28181.cascade.media import UpstreamStreams
from gbgw.gb28181.cascade.queries import UpstreamQueries
from gbgw.gb28181.config import GatewayConfig, bind_error
from gbgw.gb28181.devices.requests import DeviceRequests
from gbgw.gb28181.media.history import HistorySessions
from gbgw.gb28181.media.live import LiveStreams
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Alarm, Device
from gbgw.registry.storage import Storage

log = structlog.get_logger("gb28181.cascade")

AlarmIntake = Callable[[Callable[[Alarm], Awaitable[None]]], None]
"""Registers a listener for every alarm a device reports (``DeviceMessages.add_alarm_listener``)."""


class Cascade:
    """All upstream links of one gateway and the features serving them."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        registry: DeviceRegistry,
        storage: Storage,
        metrics: GatewayMetrics,
        live: LiveStreams,
        requests: DeviceRequests,
        alarm_intake: AlarmIntake,
        audit: AuditLog,
        tasks: BackgroundTasks,
        clock: Callable[[], float],
        history: HistorySessions | None = None,
    ) -> None:
        self.registry = registry
        self.audit = audit
        self.upstreams = config.upstreams
        self.links: dict[str, UpstreamLink] = {}
        self.catalogs: dict[str, CatalogShare] = {}
        self.streams: dict[str, UpstreamStreams] = {}
        self.recordings: dict[str, UpstreamRecordings] = {}
        self.queries: dict[str, UpstreamQueries] = {}
        for upstream in config.upstreams:
            if not upstream.enabled:
                log.info("upstream disabled in the configuration", upstream=upstream.name)
                continue
            link = UpstreamLink(upstream, config, audit, metrics)
            self.links[upstream.name] = link
            self.catalogs[upstream.name] = CatalogShare(link, config, registry, audit, metrics, tasks)
            streams = UpstreamStreams(link, config, registry, live, audit, metrics, tasks)
            self.streams[upstream.name] = streams
            if history is not None:
                # The live feature admits (one policy, one 404) and hands recorded offers over; the
                # upstream's media ports are one range for both.
                recordings = UpstreamRecordings(link, config, registry, history, streams.ports, audit, metrics,
                                                tasks)
                self.recordings[upstream.name] = recordings
                streams.recorded = recordings.offer
            self.queries[upstream.name] = UpstreamQueries(link, config, registry, requests, audit, metrics, tasks)
        self.alarms = AlarmForwarding(list(self.links.values()), storage, clock, alarm_intake, audit, metrics)
        registry.add_status_listener(self._on_device_status)

    async def start(self) -> None:
        for link in self.links.values():
            try:
                await link.start()
            except OSError as exc:
                index = self.upstreams.index(link.config)
                raise bind_error(f"upstreams[{index}].listen", link.config.listen, exc) from exc
        await self.alarms.start()

    async def stop(self) -> None:
        await self.alarms.stop()
        for name, link in self.links.items():
            self.streams[name].close()
            if name in self.recordings:
                self.recordings[name].close()
            self.queries[name].close()
            self.catalogs[name].close()
            await link.stop()

    def _on_device_status(self, device: Device, online: bool, reason: str) -> None:
        self.audit.record("device-online" if online else "device-offline", reason=str(reason), device=device.id,
                          address=f"{device.host}:{device.port}/{device.transport}")

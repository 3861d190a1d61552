"""The cascade: the gateway as a lower-level platform of one or more upper (police) platforms.

One :class:`~gbgw.gb28181.cascade.link.UpstreamLink` per configured upstream carries the signalling; the
features hang off it, each in its own module and each handed only its own collaborators:

- ``catalog``  the shared catalog, its answers and its change notifications
- ``media``    the upper's INVITEs, relayed from the device leg to a police-side output
- ``history``  the upper's playback and download INVITEs and INFOs, each with its own device leg
- ``queries``  queries and controls forwarded to devices, answers relayed back
- ``alarms``   alarms delivered upward through a durable outbox

Everything that crosses goes through here and is written to the audit log. Upstreams come and go with a
reload (:meth:`Cascade.add`, :meth:`Cascade.remove`, :meth:`Cascade.replace`); a change of only the share
rules or mappings keeps the link and ends what it no longer shares (:meth:`Cascade.update_policy`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.cascade.alarm_interest import AlarmInterest
from gbgw.gb28181.cascade.alarms import AlarmForwarding
from gbgw.gb28181.cascade.catalog import CatalogShare
from gbgw.gb28181.cascade.history import UpstreamRecordings
from gbgw.gb28181.cascade.link import UpstreamLink
from gbgw.gb28181.cascade.media import UpstreamStreams
from gbgw.gb28181.cascade.queries import UpstreamQueries
from gbgw.gb28181.config import GatewayConfig, UpstreamConfig, bind_error
from gbgw.gb28181.devices.device_subscriptions import EventSubscriptions
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
TimeListener = Callable[[str, str, float], object]
"""Hears each upper's clock after its registration (``UpstreamLink.add_time_listener``), links added by a
reload included."""
REMOVED = "upstream removed from the configuration"


class Cascade:
    """All upstream links of one gateway and the features serving them.

    ``time_listener`` is given every link's registration Date. ``events`` (the device side's alarm and position subscriptions) lets an upper's Alarm subscription
    subscribe the devices it covers; without it the upper hears only what devices report unasked.
    """

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
        events: EventSubscriptions | None = None,
        time_listener: TimeListener | None = None,
    ) -> None:
        self.config = config
        self.time_listener = time_listener
        self.registry = registry
        self.metrics = metrics
        self.live = live
        self.requests = requests
        self.audit = audit
        self.tasks = tasks
        self.history = history
        self.upstreams = config.upstreams
        self.links: dict[str, UpstreamLink] = {}
        self.catalogs: dict[str, CatalogShare] = {}
        self.streams: dict[str, UpstreamStreams] = {}
        self.recordings: dict[str, UpstreamRecordings] = {}
        self.queries: dict[str, UpstreamQueries] = {}
        sip = config.sip
        self.alarm_interest = (AlarmInterest(registry, events, tasks, lambda: sip.alarm_subscribe, sip.id)
                               if events is not None else None)
        for upstream in config.upstreams:
            self._build(upstream)
        self.alarms = AlarmForwarding(list(self.links.values()), storage, clock, alarm_intake, audit, metrics,
                                      self.alarm_interest)
        registry.add_status_listener(self._on_device_status)

    def _build(self, upstream: UpstreamConfig) -> UpstreamLink | None:
        """The link and features of one upstream, wired but not started (None: disabled)."""
        if not upstream.enabled:
            log.info("upstream disabled in the configuration", upstream=upstream.name)
            return None
        config = self.config
        link = UpstreamLink(upstream, config, self.audit, self.metrics)
        if self.time_listener is not None:
            link.add_time_listener(self.time_listener)
        self.links[upstream.name] = link
        self.catalogs[upstream.name] = CatalogShare(link, config, self.registry, self.audit, self.metrics,
                                                    self.tasks)
        streams = UpstreamStreams(link, config, self.registry, self.live, self.audit, self.metrics, self.tasks)
        self.streams[upstream.name] = streams
        if self.history is not None:
            # The live feature admits (one policy, one 404) and hands recorded offers over; the
            # upstream's media ports are one range for both.
            recordings = UpstreamRecordings(link, config, self.registry, self.history, streams.ports, self.audit,
                                            self.metrics, self.tasks)
            self.recordings[upstream.name] = recordings
            streams.recorded = recordings.offer
        self.queries[upstream.name] = UpstreamQueries(link, config, self.registry, self.requests, self.audit,
                                                      self.metrics, self.tasks)
        return link

    def _listen_key(self, upstream: UpstreamConfig) -> str:
        index = next((i for i, u in enumerate(self.upstreams) if u.name == upstream.name), None)
        return f"upstreams[{upstream.name if index is None else index}].listen"

    async def start(self) -> None:
        for link in self.links.values():
            try:
                await link.start()
            except OSError as exc:
                raise bind_error(self._listen_key(link.config), link.config.listen, exc) from exc
        await self.alarms.start()

    async def stop(self) -> None:
        await self.alarms.stop()
        for name in list(self.links):
            await self._close(name, "gateway stopping")

    async def _close(self, name: str, reason: str) -> None:
        link = self.links.pop(name)
        self.streams.pop(name).close(reason)
        recordings = self.recordings.pop(name, None)
        if recordings is not None:
            recordings.close(reason)
        self.queries.pop(name).close()
        self.catalogs.pop(name).close()
        await link.stop()

    # -- reload --------------------------------------------------------------------------------------

    async def add(self, upstream: UpstreamConfig) -> None:
        """Start an upstream added by a reload: it registers and is served like one configured at start.
        A listener that cannot open raises ConfigError naming its key, and nothing of it stays."""
        if upstream.name in self.links:
            raise ValueError(f"upstream {upstream.name} is already running")
        link = self._build(upstream)
        if link is None:
            return
        try:
            await link.start()
        except OSError as exc:
            await self._close(upstream.name, "its listener did not open")
            raise bind_error(self._listen_key(upstream), upstream.listen, exc) from exc
        self.alarms.add_link(link)
        self.audit.record("upstream-added", upstream=upstream.name, upper_id=upstream.id,
                          address=str(upstream.address))
        log.info("upstream added", upstream=upstream.name, upper=f"{upstream.address}/{upstream.transport}")

    async def remove(self, name: str) -> None:
        """Stop an upstream removed by a reload: its sessions get a BYE, it unregisters (Expires: 0) and its
        alarm delivery stops; its outbox keeps what it had not delivered."""
        if name not in self.links:
            return
        await self.alarms.remove_link(name)
        await self._close(name, REMOVED)
        self.audit.record("upstream-removed", upstream=name)
        log.info("upstream removed", upstream=name)

    async def replace(self, upstream: UpstreamConfig) -> None:
        """An upstream whose address, credentials or timers changed: removed and added again."""
        await self.remove(upstream.name)
        await self.add(upstream)

    def update_policy(self, upstream: UpstreamConfig) -> None:
        """Take an upstream's new share rules and mappings in place: a subscribed upper is told what it
        gained and lost (catalog NOTIFY ADD/DEL), streams of channels no longer shared end with a BYE, and
        the devices its Alarm subscription covers follow."""
        name = upstream.name
        link = self.links.get(name)
        if link is None:
            return
        catalog = self.catalogs[name]
        before = catalog.view()
        link.policy.update(upstream)
        catalog.policy_changed(before)
        self.streams[name].end_unshared()
        recordings = self.recordings.get(name)
        if recordings is not None:
            recordings.end_unshared()
        if self.alarm_interest is not None:
            self.alarm_interest.refresh()

    def _on_device_status(self, device: Device, online: bool, reason: str) -> None:
        self.audit.record("device-online" if online else "device-offline", reason=str(reason), device=device.id,
                          address=f"{device.host}:{device.port}/{device.transport}")

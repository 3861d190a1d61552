"""The daemon: wires storage, registry, the device-side SIP transport, the API and the periodic work.

``run`` stays in the foreground (systemd and containers supervise it). SIGTERM/SIGINT stop it cleanly,
flushing the registry; SIGHUP reopens the audit log, re-reads the configuration file, applies what can change
live (``Gateway.reload``) without touching registrations or streams, and names every other changed key.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from gbgw.gb28181.app.api import ApiServices, make_app, make_metrics_app
from gbgw.gb28181.app.api.addressing import CONTROL, ControlServices
from gbgw.gb28181.app.api.broadcast import BROADCASTS
from gbgw.gb28181.app.api.events import EVENT_BUS
from gbgw.gb28181.app.api.snapshots import SNAPSHOTS
from gbgw.gb28181.app.reload import UpstreamChanges, compare
from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.cascade.uppers import Cascade
from gbgw.gb28181.config import ConfigError, GatewayConfig, bind_error, load_config_file
from gbgw.gb28181.devices.channel_ids import ChannelDirectory
from gbgw.gb28181.devices.control import DeviceControl
from gbgw.gb28181.devices.device_subscriptions import EventSubscriptions
from gbgw.gb28181.devices.diagnostics import DeviceDiagnostics
from gbgw.gb28181.devices.router import RequestRouter
from gbgw.gb28181.devices.side import DeviceSide
from gbgw.gb28181.devices.snapshots import SnapshotCapture
from gbgw.gb28181.devices.time_source import DeviceTimeSource
from gbgw.gb28181.media.broadcast import VoiceBroadcasts
from gbgw.gb28181.media.history import HistorySessions
from gbgw.gb28181.media.live import LiveStreams
from gbgw.gb28181.observe import logs, systemd
from gbgw.gb28181.observe.events import EventBus, EventSources, WebhookDelivery
from gbgw.gb28181.observe.health import Health
from gbgw.gb28181.observe.metrics import GatewayMetrics, industry_counts
from gbgw.gb28181.observe.storage import StorageFileProblems, storage_health
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.history import TransitionHistory
from gbgw.registry.model import Device
from gbgw.registry.sqlite import SqliteStorage
from gbgw.registry.storage import MemoryStorage, Storage, StorageUnavailable
from gbgw.rtp.ports import PortRange, interface_for
from gbgw.rtp.relay import RelayEngine
from gbgw.sip.endpoint import EndpointConfig, SipEndpoint
from gbgw.sip.requests import RequestBuilder
from gbgw.sip.tls import server_context
from gbgw.sip.transaction import ServerTransaction, Timers
from gbgw.sip.transport import SipTransport, TransportLimits

if TYPE_CHECKING:
    from gbgw.gb28181.webrtc import WhepViewers

log = structlog.get_logger("gb28181.daemon")


class Gateway:
    """One running gateway. ``start`` binds everything; ``stop`` undoes it in reverse order.

    ``clock`` is the wall-clock time every service reads (tests move it forward).
    """

    devices: DeviceSide
    live: LiveStreams
    relay: RelayEngine
    audit: AuditLog
    cascade: Cascade

    def __init__(self, config: GatewayConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.tasks = BackgroundTasks()
        self.storage: Storage = (
            MemoryStorage() if config.storage.backend == "memory" else SqliteStorage(config.storage.path)
        )
        sip = config.sip
        self.registry = DeviceRegistry(
            self.storage, keepalive_interval=float(sip.keepalive_interval), keepalive_misses=sip.keepalive_misses
        )
        self.metrics = GatewayMetrics()
        self.endpoint = SipEndpoint(
            EndpointConfig(
                user_agent=sip.user_agent,
                max_message_size=sip.max_message_size,
                timers=Timers(sip.t1, sip.t2, sip.t4),
                max_transactions=sip.max_transactions,
            )
        )
        # Before the transport, whose request handler it is; it keeps the endpoint's Allow in step.
        self.router = RequestRouter(self.metrics, self.endpoint.config)
        self.transport: SipTransport | None = None
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self.whep: WhepViewers | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Upstream changes of successive SIGHUPs are applied one reload after the other.
        self._upstream_reload = asyncio.Lock()
        self.health = Health()
        self.api_port = 0
        self.sip_port = 0
        self.sip_tls_port = 0

    async def start(self) -> None:
        cfg = self.config
        await self.storage.open()
        if isinstance(self.storage, SqliteStorage):
            sqlite = self.storage
            self.health.register("storage", lambda: storage_health(sqlite))
            self.metrics.registry.register(StorageFileProblems(sqlite))
        await self.registry.load()
        now = self.clock()
        self.metrics.bind_gauges(
            registered=lambda: sum(1 for d in self.registry.devices() if d.expires_at > self.clock()),
            online=lambda: self.registry.online_count,
            dropped=lambda: self.endpoint.counters.unparseable,
            stateless=lambda: self.endpoint.counters.stateless,
            transactions=lambda: self.endpoint.transactions.server_count,
        )
        self.registry.add_status_listener(self._on_status)
        self.availability = TransitionHistory(self.storage, self.clock, cfg.storage.history_days)
        await self.availability.recover(self.registry.devices())
        self.registry.add_status_listener(self.availability.record)
        self.diagnostics = DeviceDiagnostics.build(
            self.clock, self._device_of, lambda: self.config.sip.id, lambda: self.config.sip.domain
        )
        self.metrics.bind_industries(
            lambda: industry_counts(((d.id, d.online, d.expires_at) for d in self.registry.devices()), self.clock())
        )
        registered = sum(1 for d in self.registry.devices() if d.expires_at > now)
        self.relay = RelayEngine(asyncio.get_running_loop(), bind_host=cfg.media.ip,
                                 ports=PortRange(cfg.media.ports, interface_for(cfg.media.ip)))
        limits = TransportLimits(
            rate_per_source=cfg.sip.rate_limit,
            max_connections=cfg.sip.max_connections,
            first_message_timeout=cfg.sip.first_message_timeout,
        )
        transport = SipTransport(
            self.endpoint, self.router.on_request, limits=limits, interface=interface_for(cfg.sip.listen.host),
            tap=self.diagnostics.trace.tap,
        )
        self.transport = transport
        # One CSeq counter for every out-of-dialog request of the device-facing address (devices, INVITEs).
        self.outgoing = RequestBuilder(transport, f"sip:{cfg.sip.id}@{cfg.sip.domain}", cfg.sip.user_agent)
        self.time_source = DeviceTimeSource(cfg.sip.time_source == "upstream")
        self.devices = DeviceSide.build(
            cfg, self.registry, self.storage, self.metrics, transport, self.outgoing, self.clock, self.tasks,
            on_registration_accepted=self.diagnostics.inspector, device_time=self.time_source.device_time,
        )
        self.devices.route(self.router)
        self.broadcasts = VoiceBroadcasts(cfg.sip, cfg.media, self.registry, transport,
                                          DeviceControl(self.devices.requests), self.tasks,
                                          input_host=cfg.api.listen.host)
        self.router.handle("INVITE", self._on_invite)
        scheme = "https" if cfg.api.tls is not None else "http"
        self.snapshots = SnapshotCapture(DeviceControl(self.devices.requests),
                                         lambda: f"{scheme}://{cfg.api.listen.host}:{self.api_port}", self.clock)
        self.live = LiveStreams(self.registry, cfg.sip, transport, self.outgoing, self.tasks, self.relay, cfg.media,
                                self.metrics, media_source=cfg.media_source)
        self.history = HistorySessions(self.registry, cfg.sip, transport, self.outgoing, self.tasks, self.relay,
                                       cfg.media, self.metrics, media_source=cfg.media_source)
        self.devices.messages.add_media_status_listener(self.history.on_media_status)
        # Before the transport opens, so the first registrations are seen.
        self.events = EventSubscriptions(cfg.sip, self.registry, transport, self.devices.requests, self.tasks,
                                         self.clock)
        self.channel_ids = ChannelDirectory(self.registry)
        self.devices.messages.add_subscription_end_listener(self.events.terminated)
        # Live events (SSE, webhooks) hear the services' own hooks; nothing reaches back for them.
        self.bus = EventBus(self.clock)
        sources = EventSources(self.bus)
        self.registry.add_status_listener(sources.device_status)
        self.registry.add_channel_listener(sources.channel_changed)
        self.diagnostics.failures.add_listener(sources.registration_failed)
        self.devices.messages.add_alarm_listener(sources.alarm)
        self.live.add_session_listener(sources.session)
        self.webhooks = WebhookDelivery(self.bus, cfg.events.webhooks, queue=cfg.events.queue)
        self.webhooks.start()
        self.router.handle("BYE", self._on_bye)
        # Before the device side opens: an alarm a device re-sends right after a restart must find the
        # upward outbox listening, or it would be answered without being queued for the uppers.
        self.audit = AuditLog(cfg.audit.path)
        self.health.register("audit", self.audit.health)
        self.metrics.bind_audit(lambda: self.audit.write_failures, lambda: self.audit.dropped,
                                lambda: self.audit.pending)
        self.cascade = Cascade(
            cfg,
            registry=self.registry,
            storage=self.storage,
            metrics=self.metrics,
            live=self.live,
            requests=self.devices.requests,
            alarm_intake=self.devices.messages.add_alarm_listener,
            audit=self.audit,
            tasks=self.tasks,
            clock=self.clock,
            history=self.history,
            events=self.events,
            time_listener=self.time_source.measured,
        )
        with listening("sip.listen", cfg.sip.listen):
            _, self.sip_port = await transport.start(cfg.sip.listen.host, cfg.sip.listen.port)
        if cfg.sip.tls_listen is not None:
            # Same transaction user, framing and limits as TCP; the socket binds to the TLS address's own
            # interface only when it is the device side's (one transport, one interface).
            with listening("sip.tls_listen", cfg.sip.tls_listen):
                _, self.sip_tls_port = await transport.start_tls(
                    cfg.sip.tls_listen.host, cfg.sip.tls_listen.port,
                    server_context(cfg.sip.tls_cert, cfg.sip.tls_key),
                )
        self.metrics.bind_live(
            streams=lambda: len(self.live.streams),
            sessions=lambda: len(self.live.sessions),
            totals=self.live.totals,
        )
        await self.cascade.start()
        self.metrics.bind_boundary(self._boundary_drops)
        # A request can be waiting on a device that never answers (Timer F: 32 s) or on a catalog
        # (catalog_first_wait): stopping must not wait for those, so in-flight requests get one second.
        self.whep = self._browser_viewers()
        api = ApiServices(
            registry=self.registry,
            storage=self.storage,
            metrics=self.metrics,
            requests=self.devices.requests,
            live=self.live,
            cascade=self.cascade,
            tasks=self.tasks,
            clock=self.clock,
            audit=self.audit,
            config=cfg.api,
            availability=self.availability,
            diagnostics=self.diagnostics,
            history=self.history,
            health=self.health,
            whep=self.whep,
        )
        app = make_app(api)
        app[EVENT_BUS] = self.bus
        app[BROADCASTS] = self.broadcasts
        app[SNAPSHOTS] = self.snapshots
        app[CONTROL] = ControlServices(DeviceControl(self.devices.requests), self.channel_ids, self.events,
                                       self.devices.subscriptions)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        api_tls = server_context(cfg.api.tls.cert, cfg.api.tls.key) if cfg.api.tls is not None else None
        site = web.TCPSite(self._runner, cfg.api.listen.host, cfg.api.listen.port, ssl_context=api_tls)
        with listening("api.listen", cfg.api.listen):
            await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.api_port = sockets[0].getsockname()[1] if sockets else cfg.api.listen.port
        if cfg.metrics.listen is not None:
            self._metrics_runner = web.AppRunner(make_metrics_app(self.metrics), access_log=None,
                                                 shutdown_timeout=1.0)
            await self._metrics_runner.setup()
            with listening("metrics.listen", cfg.metrics.listen):
                await web.TCPSite(self._metrics_runner, cfg.metrics.listen.host, cfg.metrics.listen.port).start()
        loop = asyncio.get_running_loop()
        # Everything loaded so far (the registry of up to a million devices) lives as long as the process:
        # moving it out of the collector's generations keeps full collections from scanning it.
        gc.collect()
        gc.freeze()
        self._tasks = [
            loop.create_task(self.registry.run_committer()),
            loop.create_task(self._ticker()),
            loop.create_task(self.availability.run()),
        ]
        if isinstance(self.storage, SqliteStorage):
            self._tasks.append(loop.create_task(self.storage.watch_file()))
        log.info(
            "gateway started",
            id=cfg.sip.id,
            sip=f"{cfg.sip.listen.host}:{self.sip_port}",
            api=f"{cfg.api.listen.host}:{self.api_port}",
            storage=cfg.storage.path if cfg.storage.backend == "sqlite" else "memory",
            devices_known=len(self.registry),
            devices_registered=registered,
            upstreams=[f"{link.name}={link.config.address}" for link in self.cascade.links.values()],
        )

    async def stop(self) -> None:
        # First: open event streams end, instead of holding the API's cleanup.
        if hasattr(self, "bus"):
            self.bus.close()
            await self.webhooks.close()
        for runner in (self._runner, self._metrics_runner):
            if runner is not None:
                await runner.cleanup()
        if hasattr(self, "cascade"):
            await self.cascade.stop()
        if self.whep is not None:
            await self.whep.close_all()
        if hasattr(self, "history"):
            self.history.close()
        if hasattr(self, "live"):
            self.broadcasts.close()
            self.live.close()
            # Let the BYEs to devices leave before the transport closes.
            await asyncio.sleep(0.05)
            self.relay.close()
        if self.transport is not None:
            await self.transport.close()
        await self.tasks.close()
        if hasattr(self, "devices"):
            self.devices.close()
        for task in self._tasks:
            task.cancel()
        # A store whose file went away has said so once; what it could not keep stays unkept either way.
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, StorageUnavailable):
                await task
        with contextlib.suppress(StorageUnavailable):
            await self.registry.flush()
            if hasattr(self, "availability"):
                self.availability.stopping(self.registry.online_devices())
                await self.availability.flush()
        await self.storage.close()
        if hasattr(self, "audit"):
            self.audit.close()
        log.info("gateway stopped")

    def reload(self, config: GatewayConfig) -> None:
        """Apply what can change live (``reload.LIVE``: log level, credentials, allowlist, devices, media
        destinations, the audit path; and every upstream key); name every other changed key as needing a
        restart, and leave it at its running value.

        The running configuration is updated in place: the registrar and the API read it on every request,
        and each upstream link's SharePolicy is updated in the object its features hold (ending what it no
        longer shares). Upstreams added, removed or otherwise changed are started, stopped or replaced in
        the background (their listeners open, their registrations go), each logged when done."""
        old = self.config
        change = compare(old, config)
        # First, so the debug lines of this very reload already follow a new level.
        logs.set_level(config.log.level)
        old.log.level = config.log.level
        old.sip.password = config.sip.password
        old.sip.allowlist = config.sip.allowlist
        old.devices = config.devices
        old.api.media_destinations = config.api.media_destinations
        if config.audit.path != old.audit.path:
            self.audit.reopen(config.audit.path)
            old.audit.path = config.audit.path
        upstreams = change.upstreams
        running = {upstream.name: upstream for upstream in old.upstreams}
        for new in upstreams.policy:
            upstream = running[new.name]
            upstream.share = new.share
            upstream.channel_ids = new.channel_ids
            upstream.channel_id_rule = new.channel_id_rule
            upstream.channel_names = new.channel_names
            self.cascade.update_policy(upstream)
        if upstreams.removed or upstreams.replaced or upstreams.added:
            kept = {upstream.name for upstream in upstreams.policy}
            # In place: the cascade holds this list (its listener keys are indexes into it).
            old.upstreams[:] = [running[u.name] if u.name in kept else u for u in config.upstreams]
            self.tasks.spawn(self._reload_upstreams(upstreams))
        for key in change.live:
            log.debug("reload: applied", key=key)
        if change.restart:
            log.warning("reload: these settings need a restart to change", keys=change.restart)
        log.info("configuration reloaded", applied=change.live, devices=len(config.devices),
                 allowlist=config.sip.allowlist)

    async def _reload_upstreams(self, changes: UpstreamChanges) -> None:
        async with self._upstream_reload:
            for name in changes.removed:
                await self.cascade.remove(name)
            for upstream in changes.replaced:
                try:
                    await self.cascade.replace(upstream)
                except ConfigError as exc:
                    log.error("reload: upstream not restarted", upstream=upstream.name, error=str(exc))
            for upstream in changes.added:
                try:
                    await self.cascade.add(upstream)
                except ConfigError as exc:
                    log.error("reload: upstream not started", upstream=upstream.name, error=str(exc))

    def _browser_viewers(self) -> WhepViewers | None:
        """The console's WebRTC viewers, when the ``console`` extra (aiortc) is installed; without it the
        WHEP routes answer 503 naming the extra, and nothing else changes."""
        if importlib.util.find_spec("aiortc") is None:
            return None
        from gbgw.gb28181.webrtc import WebrtcConfig, WhepViewers

        cfg = self.config
        viewers = WhepViewers(asyncio.get_running_loop(), WebrtcConfig(
            addresses=[cfg.console.host(cfg.api)], max_viewers=cfg.console.max_viewers,
            ice_servers=list(cfg.console.ice_servers), transcode_h265=cfg.console.transcode_h265))
        self.metrics.bind_webrtc(lambda: len(viewers))
        return viewers

    def _boundary_drops(self) -> dict[tuple[str, str], int]:
        """Packets refused at each side's transport: the device side's and each upper's."""
        sides = [("device", self.transport)] + [(n, link.transport) for n, link in self.cascade.links.items()]
        drops: dict[tuple[str, str], int] = {}
        for side, transport in sides:
            if transport is None:
                continue
            drops[side, "rate"] = transport.rate.dropped if transport.rate is not None else 0
            drops[side, "source"] = transport.refused_sources
        return drops

    def _device_of(self, some_id: str) -> str | None:
        """The device a message's ID names: itself, or the device of a channel; None if unknown."""
        if some_id in self.registry:
            return some_id
        channel = self.registry.channel(some_id)
        return channel.device_id if channel is not None else None

    def _on_invite(self, txn: ServerTransaction) -> None:
        # A device INVITEs the gateway only for the audio of a voice broadcast it was asked to take.
        if not self.broadcasts.on_invite(txn):
            assert self.transport is not None
            self.transport.reply(txn, 403, "Only audio INVITEs for a broadcast are taken from devices")

    def _on_bye(self, txn: ServerTransaction) -> None:
        if not self.broadcasts.on_bye(txn) and not self.live.on_bye(txn) and not self.history.on_bye(txn):
            assert self.transport is not None
            self.transport.reply(txn, 481)

    def _on_status(self, device: Device, online: bool, reason: str) -> None:
        state = "online" if online else "offline"
        self.metrics.transition(online, reason)
        log.info(f"device {state}", device=device.id, reason=str(reason),
                 address=f"{device.host}:{device.port}/{device.transport}")

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.devices.timers.tick()
                self.events.tick()
                self.audit.retry()
            except Exception:
                log.exception("periodic work failed")


@contextlib.contextmanager
def listening(key: str, address: object) -> Iterator[None]:
    """A listener that cannot open becomes one error naming its configuration key, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise bind_error(key, address, exc) from exc


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def serve(config: GatewayConfig, config_path: Path | None) -> int:
    gateway = Gateway(config)
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Every socket is bound: only now may systemd (Type=notify) count the service as started. The
    # watchdog is pinged from this event loop, so a loop that hangs stops the pings and gets restarted.
    systemd.ready(f"{len(gateway.registry)} devices known")
    interval = systemd.watchdog_interval()
    pings = loop.create_task(systemd.watchdog_pings(interval)) if interval else None

    def reload() -> None:
        systemd.reloading()
        try:
            # logrotate's postrotate sends SIGHUP: the audit log moves to a new file either way.
            gateway.audit.reopen()
            if config_path is None:
                log.info("SIGHUP: audit log reopened; running on embedded defaults, no file to re-read")
                return
            try:
                gateway.reload(load_config_file(config_path, check_host=True))
            except ConfigError as exc:
                log.error("reload refused, keeping the running configuration", error=str(exc))
        finally:
            systemd.ready()

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        systemd.stopping()
        if pings is not None:
            pings.cancel()
        await gateway.stop()
    return 0


def run(config: GatewayConfig, config_path: Path | None) -> int:
    _install_uvloop()
    return asyncio.run(serve(config, config_path))

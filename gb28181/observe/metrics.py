"""Prometheus metrics of one gateway instance (its own registry, so tests can run several gateways)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# The *_created series double the output and no dashboard uses them.
disable_created_metrics()


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.devices_registered = Gauge("gb_devices_registered", "Devices with a valid registration", registry=r)
        self.devices_online = Gauge("gb_devices_online", "Devices online (registered and keeping alive)", registry=r)
        self.registrations = Counter(
            "gb_registrations", "REGISTER requests by outcome", ["result"], registry=r
        )
        self.keepalives = Counter("gb_keepalives", "Keepalive notifications by outcome", ["result"], registry=r)
        self.transitions = Counter(
            "gb_device_transitions", "Device online/offline transitions", ["state", "reason"], registry=r
        )
        self.sip_requests = Counter(
            "gb_sip_requests", "SIP requests received, by method", ["method"], registry=r
        )
        self.sip_responses = Counter(
            "gb_sip_responses", "SIP responses sent and received, by method and status",
            ["direction", "method", "status"], registry=r,
        )
        self.sip_dropped = Gauge("gb_sip_unparseable", "Datagrams or frames dropped as unparseable", registry=r)
        self.transaction_latency = Histogram(
            "gb_sip_transaction_seconds", "Time from sending a request to its final response",
            ["method"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 32),
            registry=r,
        )
        self.catalogs = Counter("gb_catalogs", "Catalog assemblies by outcome", ["result"], registry=r)
        self.alarms = Counter("gb_alarms", "Alarm notifications received", registry=r)
        self.lockouts = Counter("gb_auth_lockouts", "Authentication lockouts started", ["kind"], registry=r)
        self.invites = Counter("gb_invites", "INVITEs to devices by outcome (the stage that failed, or ok)",
                               ["stage"], registry=r)
        self.media_timeouts = Counter("gb_media_timeouts", "Device streams ended by a media timeout", registry=r)
        self.live_streams = Gauge("gb_live_streams", "Device streams being relayed", registry=r)
        self.live_sessions = Gauge("gb_live_sessions", "Receivers of relayed streams", registry=r)
        self.upstream_online = Gauge("gb_upstream_online", "Upper platforms: 1 registered and answering keepalives",
                                     ["upstream"], registry=r)
        self.cascade = Counter("gb_cascade_requests", "Requests from upper platforms, by kind and outcome",
                               ["upstream", "kind", "result"], registry=r)
        self.alarms_forwarded = Counter("gb_alarms_forwarded", "Alarms delivered to upper platforms",
                                        ["upstream"], registry=r)
        # Labelled children are cached: .labels() costs a lock and a dict lookup per call.
        self._request_children: dict[str, Counter] = {}

    def request(self, method: str) -> None:
        child = self._request_children.get(method)
        if child is None:
            child = self._request_children[method] = self.sip_requests.labels(method)
        child.inc()

    def bind_gauges(self, registered: Callable[[], float], online: Callable[[], float],
                    dropped: Callable[[], float]) -> None:
        """Gauges computed at scrape time, so the hot path never updates them."""
        self.devices_registered.set_function(registered)
        self.devices_online.set_function(online)
        self.sip_dropped.set_function(dropped)

    def bind_live(self, streams: Callable[[], float], sessions: Callable[[], float],
                  totals: Callable[[], dict[str, int]]) -> None:
        self.live_streams.set_function(streams)
        self.live_sessions.set_function(sessions)
        self.registry.register(_RelayTotals(totals))

    def bind_boundary(self, drops: Callable[[], dict[tuple[str, str], int]]) -> None:
        """``drops()`` gives {(side, reason): count}: side ``device`` or an upstream's name, reason
        ``rate`` (over the per-source limit) or ``source`` (not a peer served on that address)."""
        self.registry.register(_BoundaryDrops(drops))

    def bind_audit(self, failures: Callable[[], int], dropped: Callable[[], int], pending: Callable[[], int]) -> None:
        """The audit trail's write trouble (``AuditLog.write_failures``, ``.dropped``, ``.pending``), read
        at scrape time: an alert on ``gb_audit_pending_lines > 0`` catches a full disk before lines are lost."""
        self.registry.register(_AuditWrites(failures, dropped, pending))

    def bind_industries(self, counts: Callable[[], dict[str, tuple[int, int]]]) -> None:
        """``counts()`` gives {industry code (ID digits 9-10, "01" community, "11" education): (registered,
        online)}. The online rate per industry is what local police assess (在线率); the counts are exported
        too, so a ratio over several gateways is summed, not averaged."""
        self.registry.register(_IndustryOnline(counts))

    def bind_alarm_outbox(self, pending: Callable[[], dict[str, int]]) -> None:
        """``pending()`` gives {upstream name: alarms queued and not yet acknowledged by that upper}."""
        self.registry.register(_AlarmOutbox(pending))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RelayTotals(Collector):
    """Lifetime relay counters, read from the relay at scrape time (the hot path counts, we only read)."""

    def __init__(self, totals: Callable[[], dict[str, int]]) -> None:
        self._totals = totals

    def collect(self) -> Iterable[Metric]:
        totals = self._totals()
        for key, help_text in (
            ("packets_in", "RTP packets received from devices"),
            ("bytes_in", "RTP bytes received from devices"),
            ("packets_out", "RTP packets relayed to receivers"),
            ("bytes_out", "RTP bytes relayed to receivers"),
            ("lost", "RTP packets lost on device legs"),
            ("reordered", "RTP packets out of order on device legs"),
        ):
            yield CounterMetricFamily(f"gb_relay_{key}", help_text, value=totals[key])


class _BoundaryDrops(Collector):
    def __init__(self, drops: Callable[[], dict[tuple[str, str], int]]) -> None:
        self._drops = drops

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily("gb_boundary_drops", "SIP messages dropped unparsed at the boundary",
                                     labels=["side", "reason"])
        for (side, reason), value in sorted(self._drops().items()):
            family.add_metric([side, reason], value)
        yield family


class _AuditWrites(Collector):
    def __init__(self, failures: Callable[[], int], dropped: Callable[[], int], pending: Callable[[], int]) -> None:
        self._failures = failures
        self._dropped = dropped
        self._pending = pending

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily("gb_audit_write_failures", "Audit log writes (or opens) that failed",
                                  value=self._failures())
        yield CounterMetricFamily("gb_audit_dropped_lines", "Audit lines lost because the waiting buffer was full",
                                  value=self._dropped())
        yield GaugeMetricFamily("gb_audit_pending_lines", "Audit lines waiting for the file to be writable again",
                                value=self._pending())


class _IndustryOnline(Collector):
    def __init__(self, counts: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        registered = GaugeMetricFamily("gb_industry_devices_registered", "Devices with a valid registration, "
                                       "by industry code", labels=["industry"])
        online = GaugeMetricFamily("gb_industry_devices_online", "Devices online, by industry code",
                                   labels=["industry"])
        ratio = GaugeMetricFamily("gb_industry_online_ratio", "Online devices over registered ones, by "
                                  "industry code (1 when none is registered)", labels=["industry"])
        for industry, (n_registered, n_online) in sorted(self._counts().items()):
            registered.add_metric([industry], n_registered)
            online.add_metric([industry], n_online)
            ratio.add_metric([industry], n_online / n_registered if n_registered else 1.0)
        yield from (registered, online, ratio)


class _AlarmOutbox(Collector):
    def __init__(self, pending: Callable[[], dict[str, int]]) -> None:
        self._pending = pending

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily("gb_alarm_outbox_pending", "Alarms queued for an upper platform and not "
                                   "yet acknowledged by it", labels=["upstream"])
        for upstream, value in sorted(self._pending().items()):
            family.add_metric([upstream], value)
        yield family

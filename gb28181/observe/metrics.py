"""Prometheus metrics of one gateway instance (its own registry, so tests can run several gateways).

Conventions (https://prometheus.io/docs/practices/naming/): counters only go up, also across receivers
leaving and streams restarting (what ended is added to the lifetime totals), units end the name
(``_seconds``, ``_bytes_total``), label values are snake_case. Values the hot path already counts are
read at scrape time by collectors instead of being updated twice.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# The *_created series double the output and no dashboard uses them.
disable_created_metrics()

DISTRIBUTION = "gb28181-gateway"

# Play request to first packet spans an INVITE round trip and the device's encoder start (often 1-3 s).
PLAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 7.5, 10, 15)
# A catalog of thousands of channels arrives over many MESSAGEs and seconds.
CATALOG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)
QUERY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def installed_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def snake(value: str) -> str:
    """A label value without spaces or dashes: ``keepalive-timeout`` is exported as ``keepalive_timeout``."""
    return value.replace("-", "_").replace(" ", "_").lower()


def industry_counts(devices: Iterable[tuple[str, bool, float]], now: float) -> dict[str, tuple[int, int]]:
    """{industry code: (registered, online)} over (device ID, online, registration expiry) triples. The
    industry is ID digits 9-10 (Annex D: 01 community, 02 internal units, 11 education); an ID too short
    to carry one is counted under ``""``."""
    counts: dict[str, list[int]] = {}
    for device_id, online, expires_at in devices:
        industry = device_id[8:10] if len(device_id) == 20 else ""
        entry = counts.get(industry)
        if entry is None:
            entry = counts[industry] = [0, 0]
        if expires_at > now:
            entry[0] += 1
        if online:
            entry[1] += 1
    return {industry: (n_registered, n_online) for industry, (n_registered, n_online) in counts.items()}


class GatewayMetrics:
    def __init__(self, version: str | None = None) -> None:
        r = self.registry = CollectorRegistry()
        # RSS, open fds, CPU seconds, start time (Linux /proc) and the Python version, on our registry.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.build_info = Gauge("gb_build_info", "The running release (value 1)", ["version"], registry=r)
        self.build_info.labels(version or installed_version()).set(1)
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
        self.history_sessions = Counter("gb_history_sessions", "Playback and download sessions started, by kind",
                                        ["kind"], registry=r)
        self.history_active = Gauge("gb_history_sessions_active", "Playback and download sessions running",
                                    ["kind"], registry=r)
        self.record_queries = Counter("gb_record_queries", "RecordInfo searches by outcome (complete, partial, "
                                      "or the stage that failed)", ["result"], registry=r)
        self.mansrtsp = Counter("gb_mansrtsp_commands", "MANSRTSP commands sent in INFO, by method and outcome",
                                ["method", "result"], registry=r)
        self.upstream_online = Gauge("gb_upstream_online", "Upper platforms: 1 registered and answering keepalives",
                                     ["upstream"], registry=r)
        self.cascade = Counter("gb_cascade_requests", "Requests from upper platforms, by kind and outcome",
                               ["upstream", "kind", "result"], registry=r)
        self.alarms_forwarded = Counter("gb_alarms_forwarded", "Alarms delivered to upper platforms",
                                        ["upstream"], registry=r)
        self.play_first_packet = Histogram(
            "gb_play_first_packet_seconds", "From a play request that INVITEs a device to its first RTP packet",
            buckets=PLAY_BUCKETS, registry=r,
        )
        self.webrtc_viewers = Gauge("gb_webrtc_viewers", "WebRTC (WHEP) viewers, connecting or live", registry=r)
        self.webrtc_preview_start = Histogram(
            "gb_webrtc_preview_start_seconds",
            "From a WHEP offer to the viewer's first frame sent (the device's INVITE included when cold)",
            buckets=PLAY_BUCKETS, registry=r,
        )
        self.catalog_assembly = Histogram(
            "gb_catalog_assembly_seconds", "From a Catalog query to its assembled answer, by outcome",
            ["result"], buckets=CATALOG_BUCKETS, registry=r,
        )
        self.device_query = Histogram(
            "gb_device_query_seconds", "From a query MESSAGE to the device's Response, by CmdType",
            ["cmd"], buckets=QUERY_BUCKETS, registry=r,
        )
        self.api_request = Histogram(
            "gb_api_request_seconds", "HTTP API requests by method, route template and status class",
            ["method", "route", "status"], buckets=API_BUCKETS, registry=r,
        )
        # Labelled children are cached: .labels() costs a lock and a dict lookup per call.
        self._request_children: dict[str, Counter] = {}

    def request(self, method: str) -> None:
        child = self._request_children.get(method)
        if child is None:
            child = self._request_children[method] = self.sip_requests.labels(method)
        child.inc()

    def transition(self, online: bool, reason: str) -> None:
        """One device online/offline transition (``reason`` a StatusReason, snake-cased for the label)."""
        self.transitions.labels("online" if online else "offline", snake(reason)).inc()

    def bind_gauges(self, registered: Callable[[], float], online: Callable[[], float],
                    dropped: Callable[[], float], stateless: Callable[[], float],
                    transactions: Callable[[], float]) -> None:
        """Values computed at scrape time, so the hot path never updates them. ``dropped`` is the
        endpoint's lifetime count of unparseable datagrams and frames, ``stateless`` of requests answered
        without a transaction (keepalives, challenges), both counters; ``transactions`` the server
        transactions held now."""
        self.devices_registered.set_function(registered)
        self.devices_online.set_function(online)
        self.registry.register(_Unparseable(dropped, stateless))
        Gauge("gb_sip_server_transactions", "Server transactions held (completed ones until Timer J/K)",
              registry=self.registry).set_function(transactions)

    def bind_live(self, streams: Callable[[], float], sessions: Callable[[], float],
                  totals: Callable[[], dict[str, int]]) -> None:
        self.live_streams.set_function(streams)
        self.live_sessions.set_function(sessions)
        self.registry.register(_RelayTotals(totals))

    def bind_webrtc(self, viewers: Callable[[], float]) -> None:
        self.webrtc_viewers.set_function(viewers)

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


class _Unparseable(Collector):
    def __init__(self, dropped: Callable[[], float], stateless: Callable[[], float]) -> None:
        self._dropped = dropped
        self._stateless = stateless

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily("gb_sip_unparseable", "Datagrams or frames dropped as unparseable",
                                  value=float(self._dropped()))
        yield CounterMetricFamily("gb_sip_stateless_answers", "Requests answered without a server transaction",
                                  value=float(self._stateless()))


# (key of LiveStreams.totals(), exported family, help): counters, so ended streams and outputs stay in.
RELAY_TOTALS = (
    ("packets_in", "gb_relay_in_packets", "RTP packets received from devices"),
    ("bytes_in", "gb_relay_in_bytes", "RTP bytes received from devices"),
    ("packets_out", "gb_relay_out_packets", "RTP packets relayed to receivers"),
    ("bytes_out", "gb_relay_out_bytes", "RTP bytes relayed to receivers"),
    ("lost", "gb_relay_lost_packets", "RTP packets lost on device legs"),
    ("reordered", "gb_relay_reordered_packets", "RTP packets out of order on device legs"),
)


class _RelayTotals(Collector):
    """Lifetime relay counters, read from the relay at scrape time (the hot path counts, we only read)."""

    def __init__(self, totals: Callable[[], dict[str, int]]) -> None:
        self._totals = totals

    def collect(self) -> Iterable[Metric]:
        totals = self._totals()
        for key, name, help_text in RELAY_TOTALS:
            yield CounterMetricFamily(name, help_text, value=totals[key])


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

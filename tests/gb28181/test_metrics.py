"""/metrics per Prometheus conventions: process and build series, counters typed as counters, unit suffixes,
snake_case label values, the histograms, and the online ratio per industry code."""

from __future__ import annotations

from access_harness import DEVICE_ID, RunningGateway
from gwproc import parse_metrics

from gbgw.gb28181.observe.metrics import GatewayMetrics, industry_counts, snake


def families(text: str) -> dict[str, str]:
    return {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_process_build_and_typed_families() -> None:
    metrics = GatewayMetrics(version="9.9.9")
    metrics.bind_gauges(lambda: 0, lambda: 0, lambda: 7, lambda: 11, lambda: 3)
    text = metrics.render().decode()
    types = families(text)
    samples = parse_metrics(text)
    assert samples['gb_build_info{version="9.9.9"}'] == 1
    for name in ("process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total"):
        assert samples[name] > 0, name
    assert any(key.startswith("python_info{") for key in samples)
    assert types["gb_sip_unparseable_total"] == "counter" and samples["gb_sip_unparseable_total"] == 7
    assert types["gb_sip_stateless_answers_total"] == "counter" and samples["gb_sip_stateless_answers_total"] == 11
    assert types["gb_sip_server_transactions"] == "gauge" and samples["gb_sip_server_transactions"] == 3
    for name in ("gb_play_first_packet_seconds", "gb_catalog_assembly_seconds", "gb_device_query_seconds",
                 "gb_api_request_seconds", "gb_sip_transaction_seconds"):
        assert types[name] == "histogram", name


def test_relay_totals_are_counters_with_units() -> None:
    metrics = GatewayMetrics()
    keys = ("packets_in", "bytes_in", "packets_out", "bytes_out", "lost", "reordered")
    metrics.bind_live(lambda: 0, lambda: 0, lambda: dict.fromkeys(keys, 1))
    samples = parse_metrics(metrics.render().decode())
    assert {k for k in samples if k.startswith("gb_relay_")} == {
        "gb_relay_in_packets_total", "gb_relay_in_bytes_total", "gb_relay_out_packets_total",
        "gb_relay_out_bytes_total", "gb_relay_lost_packets_total", "gb_relay_reordered_packets_total",
    }


def test_label_values_are_snake_case() -> None:
    metrics = GatewayMetrics()
    metrics.transition(False, "keepalive-timeout")
    assert parse_metrics(metrics.render().decode())[
        'gb_device_transitions_total{reason="keepalive_timeout",state="offline"}'] == 1
    assert snake("no answer") == "no_answer"


def test_industry_counts() -> None:
    devices = [("34020000011328000001", True, 200.0), ("34020000011328000002", False, 200.0),
               ("34020000111328000003", False, 50.0), ("bad", True, 200.0)]
    assert industry_counts(devices, 100.0) == {"01": (2, 1), "11": (0, 0), "": (1, 1)}


async def test_api_durations_and_the_online_ratio_per_industry(gateway: RunningGateway) -> None:
    await gateway.registered_device(DEVICE_ID)
    assert (await gateway.api(f"/api/devices/{DEVICE_ID}"))[0] == 200
    assert (await gateway.api("/api/no/such/route"))[0] == 404
    _, text = await gateway.api("/metrics")
    samples = parse_metrics(text)
    route = 'gb_api_request_seconds_count{method="GET",route="/api/devices/{device_id}",status="2xx"}'
    assert samples[route] == 1
    assert samples['gb_api_request_seconds_count{method="GET",route="unmatched",status="4xx"}'] == 1
    assert samples['gb_industry_online_ratio{industry="01"}'] == 1.0
    assert samples['gb_industry_devices_online{industry="01"}'] == 1
    assert samples["process_open_fds"] > 0

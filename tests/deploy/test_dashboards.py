"""The Grafana dashboard and the alert rules name only metrics the gateway exports.

The exported names come from the gateway's own registry (a ``GatewayMetrics`` with every scrape-time
source bound), so renaming a metric without updating deploy/ fails here rather than on an empty panel.
"""

from __future__ import annotations

import inspect
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gbgw.gb28181.observe.metrics import GatewayMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
ALERTS = DEPLOY / "prometheus-alerts.yaml"

# Series Prometheus makes itself for every scrape target, not the gateway.
PROMETHEUS_OWN = frozenset({"up"})

# The series names a family of each type is scraped as (prometheus_client strips _total from a counter's
# family name; a histogram is scraped as its buckets, sum and count).
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}

PROMQL_WORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
    "inf", "nan", "atan2",
})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?")


class _AnySource(defaultdict[Any, int]):
    """What a scrape-time source returns: zero as a number, an empty (zero-filled) mapping as a dict."""

    def __init__(self) -> None:
        super().__init__(int)

    def __float__(self) -> float:
        return 0.0

    def __int__(self) -> int:
        return 0


def exported_names() -> set[str]:
    metrics = GatewayMetrics()
    # Every bind_* method registers scrape-time families: bind them all to sources that read as zero.
    for name, method in inspect.getmembers(metrics, inspect.ismethod):
        if name.startswith("bind_"):
            params = inspect.signature(method).parameters
            method(**{p: _AnySource for p in params})
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers left once strings, label matchers, ranges and
    grouping clauses are cut out, that are neither a function call nor a PromQL word."""
    for pattern in (_STRING, _MATCHERS, _RANGE, _GROUPING):
        expr = pattern.sub(" ", expr)
    expr = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?[smhdwy]?\b", " ", expr)
    return {m.group(1) for m in _IDENTIFIER.finditer(expr)
            if not m.group(2) and m.group(1).lower() not in PROMQL_WORDS}


def dashboard_exprs(node: Any) -> Iterator[str]:
    """Every PromQL expression in the dashboard: panel targets and query variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield re.sub(r"label_values\((\w+),\s*\w+\)", r"\1", value).replace("$", "")
            else:
                yield from dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_the_extractor_sees_names_and_only_names() -> None:
    assert metric_names('sum by (le, method) (rate(gb_x_bucket{a="b",c=~"d|e"}[5m])) / clamp_min(y offset 1h, 1)'
                        ' > 0.2 and on(instance) z') == {"gb_x_bucket", "y", "z"}


def test_exported_names_include_the_bound_families() -> None:
    names = exported_names()
    assert {"gb_registrations_total", "gb_devices_online", "gb_sip_transaction_seconds_bucket",
            "gb_relay_lost_packets_total", "gb_boundary_drops_total", "gb_audit_pending_lines"} <= names


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_referenced_metric_is_exported(source: str) -> None:
    if source == "dashboard":
        exprs = list(dashboard_exprs(json.loads(DASHBOARD.read_text(encoding="utf-8"))))
    else:
        exprs = [str(rule["expr"]) for rule in alert_rules()]
    referenced = set().union(*(metric_names(e) for e in exprs))
    assert referenced, f"no metric found in the {source}"
    assert referenced - exported_names() - PROMETHEUS_OWN == set()


def test_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for target in panel.get("targets", []):
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


def test_alert_rules_cover_the_issue_and_are_complete() -> None:
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert str(rule["expr"]).count("(") == str(rule["expr"]).count(")"), rule["alert"]
    referenced = {name: metric_names(str(r["expr"])) for name, r in zip(names, rules, strict=True)}
    everything = set().union(*referenced.values())
    # Online rate drop, upstream offline, alarm outbox backlog, relay loss, registration failure spikes.
    assert {"gb_devices_online", "gb_upstream_online", "gb_alarm_outbox_pending", "gb_relay_lost_packets_total",
            "gb_registrations_total"} <= everything

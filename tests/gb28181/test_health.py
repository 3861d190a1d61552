"""``Health``: the worst component state wins, every component says why, a broken check never hides."""

from __future__ import annotations

import pytest

from gbgw.gb28181.observe.health import HEALTHY, ComponentHealth, Health, HealthState


def test_no_components_is_ok() -> None:
    assert Health().report().as_dict() == {"status": "ok", "components": {}}


def test_worst_component_decides_and_each_keeps_its_reason() -> None:
    health = Health()
    health.register("storage", lambda: HEALTHY)
    health.register("audit", lambda: ComponentHealth(HealthState.DEGRADED, "audit log not writable"))
    report = health.report()
    assert report.state is HealthState.DEGRADED
    assert report.as_dict() == {"status": "degraded", "components": {
        "storage": {"status": "ok", "reason": ""},
        "audit": {"status": "degraded", "reason": "audit log not writable"},
    }}
    health.unregister("audit")
    assert health.report().state is HealthState.OK


def test_a_failing_check_reports_degraded_instead_of_raising() -> None:
    def broken() -> ComponentHealth:
        raise RuntimeError("storage closed")

    health = Health()
    health.register("storage", broken)
    report = health.report()
    assert report.state is HealthState.DEGRADED
    assert report.components["storage"].reason == "health check failed: RuntimeError('storage closed')"


def test_a_name_registers_once() -> None:
    health = Health()
    health.register("audit", lambda: HEALTHY)
    with pytest.raises(ValueError, match="'audit' registered twice"):
        health.register("audit", lambda: HEALTHY)

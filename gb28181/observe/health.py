"""The gateway's health: each component answers for itself, ``Health`` adds the answers up.

A supervisor (``/api/health``, a monitoring probe) needs one word and, when it is not ``ok``, the
sentence that says what to fix. A component registers a callable returning a ``ComponentHealth``; the
callables run at report time, so nothing on a hot path keeps health state up to date.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class HealthState(enum.Enum):
    """Ordered from best to worst: the overall state is the worst of the components'."""

    OK = "ok"
    DEGRADED = "degraded"


_RANK = {HealthState.OK: 0, HealthState.DEGRADED: 1}


@dataclass(slots=True, frozen=True)
class ComponentHealth:
    state: HealthState
    reason: str = ""
    """What is wrong and what it costs, written for an administrator (may say something when OK too)."""


HEALTHY = ComponentHealth(HealthState.OK)


@dataclass(slots=True, frozen=True)
class HealthReport:
    state: HealthState
    components: dict[str, ComponentHealth] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON body of ``/api/health``: ``{"status": ..., "components": {name: {status, reason}}}``."""
        return {
            "status": self.state.value,
            "components": {
                name: {"status": c.state.value, "reason": c.reason} for name, c in self.components.items()
            },
        }


class Health:
    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], ComponentHealth]] = {}

    def register(self, name: str, check: Callable[[], ComponentHealth]) -> None:
        if name in self._checks:
            raise ValueError(f"health component {name!r} registered twice")
        self._checks[name] = check

    def unregister(self, name: str) -> None:
        self._checks.pop(name, None)

    def report(self) -> HealthReport:
        components: dict[str, ComponentHealth] = {}
        for name, check in self._checks.items():
            try:
                components[name] = check()
            except Exception as exc:
                # A probe that answers 500 tells the administrator nothing; a broken check is itself a finding.
                components[name] = ComponentHealth(HealthState.DEGRADED, f"health check failed: {exc!r}")
        worst = max((c.state for c in components.values()), key=_RANK.__getitem__, default=HealthState.OK)
        return HealthReport(worst, components)

"""The store's file as health and metrics: a database deleted or replaced under the running gateway.

``SqliteStorage`` finds the problem (see its module docstring); this turns it into the ``storage``
health component and the ``gb_storage_file_problems_total`` counter, read at report and scrape time.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from gbgw.gb28181.observe.health import ComponentHealth, HealthState
from gbgw.registry.sqlite import SqliteStorage


def storage_health(storage: SqliteStorage) -> ComponentHealth:
    problem = storage.file_problem
    if problem is not None:
        return ComponentHealth(HealthState.DEGRADED, problem)
    return ComponentHealth(HealthState.OK, f"database file {storage.path}")


class StorageFileProblems(Collector):
    def __init__(self, storage: SqliteStorage) -> None:
        self._storage = storage

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "gb_storage_file_problems", "Database file found deleted or replaced while open (writes stop)",
            value=self._storage.file_problems,
        )

"""The availability report: online time fractions and offline episodes from the transition history.

The computation is checked on hand-made histories; the whole path (registry transitions, the history in
SQLite, ``/api/reports/availability`` in JSON and CSV) with simulated devices going offline and online
while the gateway's clock is moved forward.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from access_harness import DEVICE_ID, RunningGateway

from gbgw.gb28181.observe.availability import Grouping, availability, grouped
from gbgw.registry.history import TransitionHistory
from gbgw.registry.model import Device, Transition
from gbgw.registry.sqlite import SqliteStorage
from gbgw.registry.storage import MemoryStorage, Storage

A = "34020000011328000001"  # community (01) IPC
B = "34020000111328000002"  # education (11) IPC
C = "34020100011328000003"  # community, another district


def test_fraction_and_episodes_over_a_period() -> None:
    history = [
        Transition(A, 50.0, True, "registered"),  # before the period: online at its start
        Transition(A, 200.0, False, "keepalive-timeout"),
        Transition(A, 250.0, True, "keepalive"),
        Transition(A, 900.0, False, "registration-expired"),  # still offline at the end
        Transition(B, 400.0, True, "registered"),  # first seen mid-period: counted from then
    ]
    result = availability(history, 100.0, 1100.0, known=[C])
    a, b, c = result[A], result[B], result[C]
    assert (a.observed, a.online) == (1000.0, 750.0)
    assert a.fraction == 0.75
    assert [(e.start, e.end, e.reason, e.back, e.seconds) for e in a.episodes] == [
        (200.0, 250.0, "keepalive-timeout", "keepalive", 50.0),
        (900.0, None, "registration-expired", None, 200.0),
    ]
    assert (b.observed, b.online, b.fraction, b.episodes) == (700.0, 700.0, 1.0, [])
    assert c.fraction is None and c.observed == 0


def test_an_episode_that_began_before_the_period_counts_only_inside_it() -> None:
    history = [Transition(A, 10.0, False, "unregistered"), Transition(A, 150.0, True, "registered")]
    (episode,) = availability(history, 100.0, 200.0)[A].episodes
    assert (episode.start, episode.end, episode.seconds) == (10.0, 150.0, 50.0)
    assert availability(history, 100.0, 200.0)[A].fraction == 0.5


def test_groups_weigh_devices_by_observed_time() -> None:
    history = [Transition(A, 0.0, True, "registered"), Transition(A, 50.0, False, "keepalive-timeout"),
               Transition(B, 0.0, True, "registered"), Transition(C, 0.0, True, "registered")]
    devices = availability(history, 0.0, 100.0).values()
    by_industry = {g.key: g for g in grouped(devices, Grouping.INDUSTRY)}
    assert by_industry["01"].fraction == 0.75 and by_industry["11"].fraction == 1.0
    by_civil = {g.key: [d.device_id for d in g.devices] for g in grouped(devices, Grouping.CIVIL_CODE)}
    assert by_civil == {"3402": [A, B], "340201": [C]}
    assert [g.key for g in grouped(devices, Grouping.DEVICE)] == sorted([A, B, C])


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_storage_lists_the_state_at_the_start_and_prunes_all_but_the_latest(
    backend: str, tmp_path: Path
) -> None:
    storage: Storage = MemoryStorage() if backend == "memory" else SqliteStorage(tmp_path / "h.db")
    await storage.open()
    try:
        await storage.add_transitions([
            Transition(A, 10.0, True, "registered"), Transition(A, 20.0, False, "keepalive-timeout"),
            Transition(A, 30.0, True, "keepalive"), Transition(B, 15.0, True, "registered"),
            Transition(A, 120.0, False, "unregistered"),
        ])
        listed = await storage.list_transitions(100.0, 200.0)
        assert {(t.device_id, t.at) for t in listed[:2]} == {(A, 30.0), (B, 15.0)}
        assert [(t.device_id, t.at, t.online) for t in listed[2:]] == [(A, 120.0, False)]
        await storage.prune_transitions(100.0)
        kept = await storage.list_transitions(0.0, 1000.0)
        assert sorted((t.device_id, t.at) for t in kept) == [(A, 30.0), (A, 120.0), (B, 15.0)]
    finally:
        await storage.close()


async def test_a_crash_closes_open_episodes_at_the_last_sign_of_life() -> None:
    storage = MemoryStorage()
    await storage.add_transitions([Transition(A, 100.0, True, "registered"), Transition(B, 100.0, True, "registered"),
                                   Transition(B, 200.0, False, "unregistered")])
    history = TransitionHistory(storage, lambda: 1000.0, retention_days=30)
    assert await history.recover([Device(id=A, registered_at=100.0, last_keepalive=400.0), Device(id=B)]) == 1
    last = (await storage.list_transitions(2000.0, 2000.0))
    assert [(t.device_id, t.at, t.online, t.reason) for t in last if t.device_id == A] == [
        (A, 400.0, False, "gateway-down")
    ]


# -- end to end -------------------------------------------------------------------------------------------

LIVENESS = {"sip": {"keepalive_interval": 10, "keepalive_misses": 3}}
TOLERANCE = 0.02
"""Real seconds pass too (the tick that notices a timeout runs every second): 2 % of a 200 s period."""


async def _online(gateway: RunningGateway, device_id: str, want: bool) -> bool:
    return bool((await gateway.device(device_id))["online"]) is want


@pytest.mark.parametrize("gateway", [LIVENESS], indirect=True)
async def test_report_matches_devices_going_offline_and_online(gateway: RunningGateway) -> None:
    start = gateway.clock()
    flapping = await gateway.registered_device(DEVICE_ID)
    steady_id = "34020000011328000002"
    steady = await gateway.registered_device(steady_id)
    gateway.clock.advance(100)
    assert (await steady.keepalive()).status == 200  # the steady one keeps alive
    await gateway.wait_for(lambda: _online(gateway, DEVICE_ID, False), 3, "offline after missed keepalives")
    gateway.clock.advance(50)
    assert (await steady.keepalive()).status == 200
    assert (await flapping.keepalive()).status == 200
    assert await _online(gateway, DEVICE_ID, True)
    gateway.clock.advance(50)
    assert (await steady.keepalive()).status == 200
    end = gateway.clock()

    query = f"/api/reports/availability?from={start:.3f}&to={end:.3f}&group=industry"
    status, report = await gateway.api(query)
    assert status == 200, report
    (group,) = report["groups"]
    assert (group["key"], group["name"], group["devices"]) == ("01", group["name"], 2)
    devices = {d["device_id"]: d for d in group["device_list"]}
    assert devices[DEVICE_ID]["online_fraction"] == pytest.approx(0.75, abs=TOLERANCE)
    assert devices[steady_id]["online_fraction"] == pytest.approx(1.0, abs=TOLERANCE)
    (episode,) = devices[DEVICE_ID]["offline_episodes"]
    assert (episode["reason"], episode["back"]) == ("keepalive-timeout", "keepalive")
    assert episode["seconds"] == pytest.approx(50, abs=4)
    assert episode["from"].endswith(report["from"][-6:])  # ISO 8601 with the zone offset
    assert group["online_fraction"] == pytest.approx(0.875, abs=TOLERANCE)

    async with gateway.http.get(gateway.api_url + query, headers={"Accept": "text/csv"}) as response:
        assert response.status == 200 and response.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await response.text())))
    by_id = {row["device_id"]: row for row in rows}
    assert float(by_id[DEVICE_ID]["online_fraction"]) == pytest.approx(0.75, abs=TOLERANCE)
    assert (by_id[DEVICE_ID]["group"], by_id[DEVICE_ID]["offline_episodes"]) == ("01", "1")
    assert by_id[DEVICE_ID]["offline_reasons"] == "keepalive-timeout:1"


async def test_report_refuses_bad_parameters(gateway: RunningGateway) -> None:
    for query, word in (("from=yesterday", "from"), ("from=100&to=50", "before"), ("group=street", "group")):
        status, body = await gateway.api(f"/api/reports/availability?{query}")
        assert status == 400 and word in body["error"], (query, body)


async def test_history_survives_a_restart(gateway_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = {"storage": {"backend": "sqlite", "path": str(tmp_path / "keep.db")}}
    first = await gateway_factory(config)
    await first.registered_device(DEVICE_ID)
    start = first.clock() - 1
    await first.stop()
    second = await gateway_factory(config)
    status, report = await second.api(f"/api/reports/availability?from={start}&group=device")
    assert status == 200, report
    (group,) = report["groups"]
    (device,) = group["device_list"]
    assert [e["reason"] for e in device["offline_episodes"]] == ["gateway-stopped"]

"""Record search end to end: the API asks, the simulated NVR answers RecordInfo in pages, the gateway
assembles them by SumNum, reads the local times in ``sip.timezone`` and undoes the Hikvision +8 h shift."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from urllib.parse import urlencode

import pytest
from playback_harness import CHANNEL, DEVICE, playback_rig  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (the simulator's clip)")


def _query(start: datetime, end: datetime, **extra: str) -> str:
    return urlencode({"start": start.isoformat(), "end": end.isoformat(), **extra})


async def test_pages_assembled_over_the_past_window(playback_rig) -> None:  # noqa: F811
    rig = await playback_rig(records=5, record_page_size=2, record_window=3600.0)
    now = datetime.now().astimezone().replace(microsecond=0)
    path = f"/api/devices/{DEVICE}/channels/{CHANNEL}/records?{_query(now - timedelta(hours=2), now)}"
    status, body = await rig.call("GET", path)
    assert status == 200, body
    assert body["sum_num"] == 5 and body["complete"] is True
    records = body["records"]
    assert len(records) == 5
    starts = [datetime.fromisoformat(r["start"]) for r in records]
    assert starts == sorted(starts)
    assert all(s.utcoffset() is not None for s in starts)
    # Five recordings cover the last hour: 12 minutes each, back to back, none corrected.
    for record in records:
        length = datetime.fromisoformat(record["end"]) - datetime.fromisoformat(record["start"])
        assert length == timedelta(minutes=12), record
        assert record["corrected"] is False and record["size"] and record["file_path"]
    assert now - timedelta(hours=1, seconds=5) <= starts[0] <= now - timedelta(minutes=59)
    # A window before anything was recorded finds nothing, and says so completely.
    early = now - timedelta(hours=5)
    status, body = await rig.call("GET", f"/api/devices/{DEVICE}/channels/{CHANNEL}/records?"
                                  f"{_query(early, early + timedelta(hours=1))}")
    assert status == 200 and body == {"sum_num": 0, "complete": True, "records": []}, body
    assert await rig.gateway.metric("gb_record_queries_total", result="complete") == 2


async def test_missing_last_page_is_partial(playback_rig) -> None:  # noqa: F811
    rig = await playback_rig(
        gateway_config={"sip": {"catalog_first_wait": 2, "catalog_gap_timeout": 0.5}},
        records=5, record_page_size=2, faults=frozenset({"record-pages"}),
    )
    now = datetime.now().astimezone().replace(microsecond=0)
    status, body = await rig.call("GET", f"/api/devices/{DEVICE}/channels/{CHANNEL}/records?"
                                  f"{_query(now - timedelta(hours=1), now)}")
    assert status == 200, body
    assert body["sum_num"] == 5 and body["complete"] is False and len(body["records"]) == 4


async def test_hikvision_offset_shift_corrected(playback_rig) -> None:  # noqa: F811
    rig = await playback_rig(
        gateway_config={"sip": {"timezone": "Asia/Shanghai"}}, records=2, record_shift=8 * 3600.0,
    )
    start = datetime.now().astimezone().replace(microsecond=0) - timedelta(hours=3)
    end = start + timedelta(hours=1)
    status, body = await rig.call("GET", f"/api/devices/{DEVICE}/channels/{CHANNEL}/records?"
                                  f"{_query(start, end, type='time')}")
    assert status == 200, body
    assert body["complete"] is True and len(body["records"]) == 2
    first, second = body["records"]
    assert first["corrected"] is True and second["corrected"] is True
    assert datetime.fromisoformat(first["start"]) == start
    assert datetime.fromisoformat(second["end"]) == end
    assert datetime.fromisoformat(first["start"]).utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(("query", "needle"), [
    ("start=2025-01-01T00:00:00&end=2025-01-01T01:00:00", "offset"),
    ("start=2025-01-01T02:00:00%2B08:00&end=2025-01-01T01:00:00%2B08:00", "before"),
    ("start=2025-01-01T00:00:00%2B08:00&end=2025-01-01T01:00:00%2B08:00&type=motion", "record type"),
    ("end=2025-01-01T01:00:00%2B08:00", "required"),
])
async def test_bad_queries_refused(playback_rig, query: str, needle: str) -> None:  # noqa: F811
    rig = await playback_rig()
    status, body = await rig.call("GET", f"/api/devices/{DEVICE}/channels/{CHANNEL}/records?{query}")
    assert status == 400 and needle in body["error"], body

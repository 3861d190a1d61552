"""A database deleted under the running daemon is noticed: it stops acknowledging what it can no longer keep.

Issue 10, item 4: after ``rm gateway.db*`` the gateway went on answering 200 into a deleted inode, logged
nothing and stayed healthy, and the next start knew 0 devices. Now the store sees its path no longer names
the file it opened: one error line, ``/api/health`` degraded naming the file, a counter, and every later
REGISTER answered 500 "Not stored" (the device sends again) instead of a 200 that a restart would forget.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gwproc import ApiClient, DaemonProcess, GbDevice, daemon_config, wait_until

PASSWORD = "file-watch-password"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[DaemonProcess, ApiClient, int]]:
    config, sip_port, api_port = daemon_config(
        tmp_path, sip={"password": PASSWORD, "catalog_subscribe": False}, log={"level": "info", "format": "json"}
    )
    process = DaemonProcess.with_config(config, tmp_path / "gateway.yaml", tmp_path / "gateway.log")
    api = ApiClient(f"http://127.0.0.1:{api_port}")
    await process.start()
    try:
        yield process, api, sip_port
    finally:
        await api.close()
        await process.ensure_stopped()


async def test_deleted_database_turns_health_degraded_and_stops_acknowledging(
    daemon: tuple[DaemonProcess, ApiClient, int], tmp_path: Path
) -> None:
    process, api, sip_port = daemon
    first = await GbDevice("34020000001320000001", sip_port).open()
    second = await GbDevice("34020000001320000002", sip_port).open()
    try:
        assert (await first.register(PASSWORD)).status == 200
        status, health = await api.call("/api/health")
        assert status == 200 and health["status"] == "ok", health

        db = tmp_path / "gateway.db"
        removed = [path for path in tmp_path.glob("gateway.db*")]
        assert db in removed
        for path in removed:
            path.unlink()

        # Noticed within the once-a-second watch, before anything is written.
        async def degraded() -> dict[str, object] | None:
            _, body = await api.call("/api/health")
            return body if body.get("status") == "degraded" else None

        body = await wait_until(degraded, 5, "health to turn degraded")
        storage = body["components"]["storage"]
        assert storage["status"] == "degraded" and str(db) in storage["reason"], body

        answer = await second.register(PASSWORD)
        assert (answer.status, answer.reason) == (500, "Not stored"), answer.start
        # The device registered before the deletion keeps its 200 promise void too: a refresh is not acked.
        assert (await first.register(PASSWORD)).status == 500

        lines = [e for e in process.log_events() if e.get("event") == "database file gone: storage stopped"]
        assert len(lines) == 1, lines
        assert lines[0]["level"] == "error" and lines[0]["path"] == str(db)
        assert (await api.metrics())["gb_storage_file_problems_total"] == 1
    finally:
        first.close()
        second.close()
    process.send_signal(signal.SIGTERM)
    assert await process.wait(timeout=20) == 0

"""The audit trail when its file cannot be written: nothing raises into the caller, nothing is lost silently.

Real failing files, no mocks: ``/dev/full`` (every write raises ENOSPC) and, as root, a 16 KiB tmpfs
that fills up mid-line, so the short-write path is exercised as a nearly full disk produces it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from access_harness import captured_logs
from gwproc import log_events, parse_metrics

from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.observe.health import ComponentHealth, Health, HealthState
from gbgw.gb28181.observe.metrics import GatewayMetrics

ENOSPC_REASON = "audit log not writable: [Errno 28] No space left on device"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def events(buffer: Any, name: str) -> list[dict[str, Any]]:
    return [e for e in log_events(buffer.getvalue()) if e.get("event") == name]


def test_full_device_buffers_in_order_and_recovers(tmp_path: Path) -> None:
    with captured_logs() as logged:
        audit = AuditLog("/dev/full")
        for i in range(12):
            audit.record("invite", channel=f"ch{i}", password="hunter2",
                         header='Digest username="a", nonce="n0nce", response="r3sp"')
        audit.retry()
        assert audit.health() == ComponentHealth(HealthState.DEGRADED, f"{ENOSPC_REASON}; 12 lines waiting, 0 dropped")
        assert (audit.pending, audit.dropped, audit.records) == (12, 0, 12)
        assert audit.write_failures >= 12
        # One error line for the whole episode, not one per record.
        assert len(events(logged, "audit log not writable: keeping lines in memory and retrying")) == 1

        target = tmp_path / "audit.log"
        audit.reopen(str(target))
        assert audit.health() == ComponentHealth(HealthState.OK)
        recovered = events(logged, "audit log writable again, waiting lines written")
        assert len(recovered) == 1 and recovered[0]["lines"] == 12
        audit.record("bye", channel="after")
        audit.close()
    written = lines(target)
    assert [r["channel"] for r in written] == [f"ch{i}" for i in range(12)] + ["after"]
    assert written[0]["password"] == "<redacted>"
    assert "n0nce" not in target.read_text() and "r3sp" not in target.read_text() and "hunter2" not in logged.getvalue()
    assert {"ts", "action", "result"} <= written[0].keys()


def test_buffer_is_bounded_oldest_dropped_and_counted(tmp_path: Path) -> None:
    audit = AuditLog("/dev/full", max_pending=5)
    for i in range(8):
        audit.record("catalog", sn=i)
    assert audit.health().reason == f"{ENOSPC_REASON}; 5 lines waiting, 3 dropped"
    target = tmp_path / "audit.log"
    audit.reopen(str(target))
    assert [r["sn"] for r in lines(target)] == [3, 4, 5, 6, 7]
    assert audit.health() == ComponentHealth(HealthState.OK, "writable; 3 lines dropped during earlier failures")
    audit.close()


def test_unopenable_path_starts_degraded_and_catches_up(tmp_path: Path) -> None:
    target = tmp_path / "not-yet" / "audit.log"
    audit = AuditLog(str(target))
    audit.record("upstream-register", upstream="district")
    health = audit.health()
    assert health.state is HealthState.DEGRADED
    assert health.reason == (f"audit log not writable: [Errno 2] No such file or directory: '{target}'; "
                             "1 line waiting, 0 dropped")
    target.parent.mkdir()
    audit.retry()
    assert audit.health().state is HealthState.OK
    assert [r["action"] for r in lines(target)] == ["upstream-register"]
    audit.close()


def test_reopen_after_rotation(tmp_path: Path) -> None:
    target = tmp_path / "audit.log"
    audit = AuditLog(str(target))
    audit.record("invite", n=1)
    target.rename(tmp_path / "audit.log.1")
    audit.record("invite", n=2)
    audit.reopen()
    audit.record("invite", n=3)
    audit.close()
    assert [r["n"] for r in lines(tmp_path / "audit.log.1")] == [1, 2]
    assert [r["n"] for r in lines(target)] == [3]


def test_standard_error(capsys: pytest.CaptureFixture[str]) -> None:
    audit = AuditLog("-")
    audit.record("alarm", device="34020000001340000001")
    audit.close()
    assert json.loads(capsys.readouterr().err)["device"] == "34020000001340000001"


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_disk_filling_up_mid_line(tiny_tmpfs: Path) -> None:
    target = tiny_tmpfs / "audit.log"
    audit = AuditLog(str(target))
    # 300-byte lines do not divide the 4 KiB pages: the write that fills the disk is a short one.
    sent = 0
    while audit.health().state is HealthState.OK:
        audit.record("invite", n=sent, pad="x" * 250)
        sent += 1
        assert sent < 1000, "the 16 KiB tmpfs never filled up"
    for _ in range(20):
        audit.record("invite", n=sent, pad="x" * 250)
        sent += 1
    assert audit.health().reason.startswith(ENOSPC_REASON)
    assert audit.pending >= 20
    subprocess.run(["mount", "-o", "remount,size=1m", str(tiny_tmpfs)], check=True)
    audit.retry()
    assert audit.health() == ComponentHealth(HealthState.OK)
    audit.close()
    # Every line whole and in order: the half line written at the full disk was finished, not restarted.
    assert [r["n"] for r in lines(target)] == list(range(sent))
    assert os.path.getsize(target) > 16 * 1024


def test_health_and_metrics_wiring(tmp_path: Path) -> None:
    audit = AuditLog("/dev/full")
    health = Health()
    health.register("audit", audit.health)
    metrics = GatewayMetrics()
    metrics.bind_audit(lambda: audit.write_failures, lambda: audit.dropped, lambda: audit.pending)
    audit.record("invite")
    audit.record("bye")
    report = health.report()
    assert report.state is HealthState.DEGRADED
    assert report.as_dict() == {"status": "degraded", "components": {"audit": {
        "status": "degraded", "reason": f"{ENOSPC_REASON}; 2 lines waiting, 0 dropped"}}}
    scraped = parse_metrics(metrics.render().decode())
    assert scraped["gb_audit_pending_lines"] == 2 and scraped["gb_audit_dropped_lines_total"] == 0
    assert scraped["gb_audit_write_failures_total"] >= 2
    audit.reopen(str(tmp_path / "audit.log"))
    assert health.report().as_dict() == {"status": "ok", "components": {"audit": {"status": "ok", "reason": ""}}}
    assert parse_metrics(metrics.render().decode())["gb_audit_pending_lines"] == 0
    audit.close()

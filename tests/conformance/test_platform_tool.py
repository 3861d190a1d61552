"""`gb28181-conformance upper` and `lower` against this gateway (subprocesses: the gateway with an upstream
pointing at the tool, a simulated IPC behind it, the tool registering to its device side while the test
drives the gateway's HTTP API), and the generated table in conformance/README.md.

One run of both modes (about 50 s) serves every test of the file.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from gbgw.conformance.tool import selftest

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make the test clip")

# Rows the tool leaves to the operator or does not implement yet; every other row must pass.
UPPER_NOT_PASSING = {2, 26, 27, 28, 34}
LOWER_NOT_PASSING = {44, 46, 47, 48, 49, 60, 61, 62, 63, 65, 66, 67, 68, 69}


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("platform")
    clip = folder / "clip.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-t", "2", "-g", "25", "-bf", "0", "-c:v", "libx264", "-f", "h264", str(clip)],
                   check=True, timeout=60)
    return selftest.run(folder, clip)


def results(report: dict[str, Any]) -> dict[int, str]:
    return {item["number"]: item["result"] for item in report["items"]}


def test_upper_mode_against_the_gateway(reports: dict[str, dict[str, Any]]) -> None:
    report = reports["upper"]
    got = results(report)
    assert set(got) == set(range(1, 36))
    assert "fail" not in got.values(), report["output"]
    assert {n for n, r in got.items() if r != "pass"} == UPPER_NOT_PASSING, report["output"]
    assert got[2] == "manual"
    live = next(i for i in report["items"] if i["number"] == 6)
    assert all(leg in live["detail"] for leg in ("UDP", "TCP passive", "TCP active"))
    catalog = next(i for i in report["items"] if i["number"] == 5)
    assert "no address of 127.0.0.0/8" in catalog["detail"]


def test_lower_mode_against_the_gateway(reports: dict[str, dict[str, Any]]) -> None:
    report = reports["lower"]
    got = results(report)
    assert set(got) == set(range(36, 71))
    assert "fail" not in got.values(), report["output"]
    assert {n for n, r in got.items() if r != "pass"} == LOWER_NOT_PASSING, report["output"]
    assert set(LOWER_NOT_PASSING) == {n for n, r in got.items() if r == "skip"}


def test_the_committed_table_is_the_generated_one(reports: dict[str, dict[str, Any]]) -> None:
    readme = selftest.README.read_text(encoding="utf-8")
    committed = readme[readme.index(selftest.BEGIN): readme.index(selftest.END) + len(selftest.END)]
    assert committed == selftest.table(reports), (
        "conformance/README.md's conformance table differs from this run; regenerate it with "
        "`python -m gbgw.conformance.tool.selftest --write` and commit the result"
    )


def test_platform_rows_follow_the_sheets() -> None:
    from gbgw.conformance.tool.sheet import platform_rows

    assert [r.number for r in platform_rows("2016", "upper")] == list(range(1, 36))
    assert [r.number for r in platform_rows("2016", "lower")] == list(range(36, 71))
    assert [r.number for r in platform_rows("2022", "upper")] == list(range(1, 45))
    assert [r.number for r in platform_rows("2022", "lower")] == list(range(45, 89))
    assert platform_rows("2022", "lower")[-1].name == "系统图像抓拍（下联）"



"""`gb28181-conformance device` as a subprocess against the device simulator as a subprocess: every
implemented item passes against a conforming IPC and NVR, and a device broken on purpose (``--fault``)
fails exactly the item it breaks, with evidence, and passes the rest.

Short keepalive intervals, media windows and retry intervals keep each run to a few seconds, and the
runs are started together (they mostly wait on timers), so the file takes about as long as the longest.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

PLATFORM_ID = "34020000002000000001"
DOMAIN = "3402000000"
PASSWORD = "12345678"
KEEPALIVE = 0.4
IMPLEMENTED_2016_IPC = set(range(102, 133)) - {103, 127}
"""Every 2016 IPC row but unregistration (manual unattended) and remote reboot (not implemented)."""
# The quick rows every fault run also runs: they must keep passing next to the broken one.
QUICK = "102,104,106,111,120,124,125"

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg to make the test clip")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of H.264 test pattern, one keyframe a second, as cameras encode."""
    path = tmp_path_factory.mktemp("conformance") / "clip.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-t", "2", "-g", "25", "-bf", "0", "-c:v", "libx264", "-f", "h264", str(path)],
                   check=True, timeout=60)
    return path


FAULTS = {
    "wrong-digest": (102, "digest answer refused (BAD_RESPONSE)"),
    "slow-keepalive": (105, "keepalive 1 came"),
    "sumnum": (106, "SumNum is 2 but 1 items arrived"),
    "ssrc": (107, "differs from the offered y="),
    "no-psm": (107, "no program stream map"),
    "record-pages": (116, "SumNum is 3 but 2 items arrived in 1 pages"),
    "guard-result": (120, "no Response with Result"),
    "no-media-status": (117, "no MediaStatus 121 at the end of the range"),
}
Run = tuple[int, dict[str, Any], str, Path]


@pytest.fixture(scope="module")
def runs(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every scenario of this file, run at once: name -> (exit status, JSON report, output, its folder)."""
    scenarios: dict[str, dict[str, Any]] = {
        "ipc": {"tool_args": ("--report", "r.xml", "--report", "r.html")},
        "nvr": {"device_type": "nvr"},
        "2022": {"items": "89,92,94,100,112,113,118,119,123", "tool_args": ("--edition", "2022")},
        "silent": {"items": "102,106", "simulate": False, "tool_args": ("--register-wait", "1")},
    }
    for fault, (item, _) in FAULTS.items():
        scenarios[fault] = {"items": f"{QUICK},{item}", "faults": (fault,)}

    def one(name: str) -> Run:
        folder = tmp_path_factory.mktemp(name)
        return (*run_tool(folder, clip, **scenarios[name]), folder)

    with ThreadPoolExecutor(len(scenarios)) as pool:
        return dict(zip(scenarios, pool.map(one, scenarios), strict=True))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
        tcp.bind(("127.0.0.1", port))
        return port


def run_tool(
    tmp_path: Path, clip: Path, *, device_type: str = "ipc", items: str | None = None,
    faults: tuple[str, ...] = (), tool_args: tuple[str, ...] = (), simulate: bool = True,
) -> tuple[int, dict[str, Any], str]:
    """Run the tool and (unless not `simulate`) a simulated device registering to it; the exit status,
    the JSON report and the terminal output."""
    port = _free_port()
    report = tmp_path / "report.json"
    tool = [sys.executable, "-m", "gbgw.conformance.tool", "device", "--type", device_type,
            "--listen", f"127.0.0.1:{port}", "--id", PLATFORM_ID, "--domain", DOMAIN, "--password", PASSWORD,
            "--unattended", "--keepalive-interval", str(KEEPALIVE), "--register-wait", "8", "--item-timeout", "2",
            "--media-seconds", "1.5", "--expect-alarm", "--action-wait", "5", "--timeout", "70",
            "--report", str(report), *tool_args]
    if items:
        tool += ["--items", items]
    tool_proc = subprocess.Popen(tool, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    device = None
    if simulate:
        nvr = ["--id-prefix", "3402000000118", "--channels", "3"] if device_type == "nvr" else []
        device = subprocess.Popen(
            [sys.executable, "-m", "gbgw.gb28181", "simulate", "--server", f"127.0.0.1:{port}",
             "--password", PASSWORD, "--keepalive-interval", str(KEEPALIVE), "--retry-interval", "0.3",
             "--media", str(clip), "--duration", "75", "--stats-interval", "0", "--log-level", "error",
             "--alarm-interval", "1", *nvr,
             *(arg for fault in faults for arg in ("--fault", fault))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    try:
        output, _ = tool_proc.communicate(timeout=75)
    finally:
        tool_proc.kill()
        if device is not None:
            device.terminate()
            device.wait(timeout=10)
    return tool_proc.returncode, json.loads(report.read_text(encoding="utf-8")), output


def results(report: dict[str, Any]) -> dict[int, str]:
    return {item["number"]: item["result"] for item in report["items"]}


def test_a_conforming_ipc_passes_every_implemented_item(runs: dict[str, Run]) -> None:
    status, report, output, folder = runs["ipc"]
    got = results(report)
    assert {n for n, r in got.items() if r == "pass"} == IMPLEMENTED_2016_IPC, output
    assert set(got) == set(range(102, 133))
    assert got[103] == "manual" and status == 0
    assert set(report) == {"tool", "version", "edition", "target", "items", "summary"}
    assert report["summary"] == {"pass": 29, "fail": 0, "skip": 1, "manual": 1}
    assert report["target"]["device_id"] == "34020000001320000001"
    assert all(set(item) == {"number", "name", "result", "detail", "evidence"} for item in report["items"])
    live = next(item for item in report["items"] if item["number"] == 107)
    assert "ffprobe: h264" in live["evidence"]
    assert all(leg in live["detail"] for leg in ("UDP", "TCP passive", "TCP active"))
    playback = next(item for item in report["items"] if item["number"] == 117)
    assert "PAUSE 200" in playback["detail"] and "Scale 2 200" in playback["detail"]
    assert "MediaStatus 121" in playback["detail"]
    notify = next(item for item in report["items"] if item["number"] == 132)
    assert "in the subscription's dialog" in notify["detail"]
    suite = ET.parse(folder / "r.xml").getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("31", "0")
    page = (folder / "r.html").read_text(encoding="utf-8")
    assert "IPC 设备目录查询" in page and "<script" not in page and "<link" not in page
    assert "#106 IPC 设备目录查询: PASS" in output


def test_a_conforming_nvr_passes_every_implemented_item(runs: dict[str, Run]) -> None:
    status, report, output, _ = runs["nvr"]
    got = results(report)
    assert {n for n, r in got.items() if r == "pass"} == {n - 31 for n in IMPLEMENTED_2016_IPC}, output
    assert status == 0
    catalog = next(item for item in report["items"] if item["number"] == 75)
    assert "3 items in 2 pages" in catalog["detail"]


def test_the_2022_sheet_numbers_the_same_checks(runs: dict[str, Run]) -> None:
    status, report, output, _ = runs["2022"]
    assert set(results(report).values()) == {"pass"}, output
    assert set(results(report)) == {89, 92, 94, 100, 112, 113, 118, 119, 123}
    assert report["edition"] == "2022" and status == 0


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_broken_device_fails_exactly_the_item_it_breaks(runs: dict[str, Run], fault: str) -> None:
    item, evidence = FAULTS[fault]
    status, report, output, _ = runs[fault]
    got = results(report)
    assert got.pop(item) == "fail", output
    assert set(got.values()) == {"pass"}, output
    broken = next(i for i in report["items"] if i["number"] == item)
    assert evidence in broken["detail"] + "\n".join(broken["evidence"]), broken
    assert "[" in broken["detail"], "the clause is named"
    assert status == 1


def test_a_device_that_never_registers_is_reported_with_what_arrived(runs: dict[str, Run]) -> None:
    status, report, _, _ = runs["silent"]
    register, catalog = report["items"]
    assert register["result"] == "fail" and "never registered" in register["detail"]
    assert register["evidence"] == [f"nothing arrived at {report['target']['listen']}"]
    assert catalog["result"] == "skip" and status == 1


def test_invalid_options_exit_2() -> None:
    done = subprocess.run([sys.executable, "-m", "gbgw.conformance.tool", "device", "--type", "ipc",
                           "--listen", "127.0.0.1:5060", "--id", PLATFORM_ID, "--domain", DOMAIN,
                           "--password", "x", "--items", "1-3"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "not rows of this sheet" in done.stderr

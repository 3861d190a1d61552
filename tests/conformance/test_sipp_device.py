"""`gb28181-conformance device` against an IPC scripted in sipp (tests/sipp/conformance_device*.xml), so the
tool is checked against a peer that is not this repository's own SIP stack: registration with digest,
keepalive and catalog pass; the same script with a wrong password fails exactly the registration row, with
the digest evidence, and the other rows still run."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

PLATFORM_ID, DOMAIN, PASSWORD = "34020000002000000001", "3402000000", "12345678"
SIPP = Path(__file__).resolve().parents[1] / "sipp"
DEVICE_ID = "34020000001320000009"

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
        tcp.bind(("127.0.0.1", port))
        return port


def results(report: dict[str, Any]) -> dict[int, str]:
    return {item["number"]: item["result"] for item in report["items"]}


def _run(folder: Path, password: str) -> tuple[dict[str, Any], str]:
    port, local = _free_port(), _free_port()
    report = folder / "report.json"
    tool = subprocess.Popen(
        [sys.executable, "-m", "gbgw.conformance.tool", "device", "--type", "ipc", "--listen", f"127.0.0.1:{port}",
         "--id", PLATFORM_ID, "--domain", DOMAIN, "--password", PASSWORD, "--unattended", "--items", "102,105,106",
         "--no-wrong-password-round", "--keepalive-interval", "0.9", "--register-wait", "10", "--item-timeout", "3",
         "--timeout", "30", "--report", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder)
    sipp = subprocess.Popen(
        ["sipp", f"127.0.0.1:{port}", "-sf", str(SIPP / "conformance_device.xml"),
         "-oocsf", str(SIPP / "conformance_device_ooc.xml"), "-m", "1", "-t", "u1", "-i", "127.0.0.1",
         "-p", str(local), "-au", DEVICE_ID, "-ap", password, "-timeout", "30", "-timeout_error", "-nostdin"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
    try:
        output, _ = tool.communicate(timeout=40)
    finally:
        tool.kill()
        sipp.kill()
        sipp.wait(timeout=10)
    return json.loads(report.read_text(encoding="utf-8")), output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], str]]:
    cases = {"right": PASSWORD, "wrong": PASSWORD + "-wrong"}
    with ThreadPoolExecutor(len(cases)) as pool:
        done = pool.map(lambda name: _run(tmp_path_factory.mktemp(name), cases[name]), cases)
        return dict(zip(cases, done, strict=True))


def test_a_sipp_ipc_passes_registration_keepalive_and_catalog(runs: dict[str, tuple[dict[str, Any], str]]) -> None:
    report, output = runs["right"]
    assert results(report) == {102: "pass", 105: "pass", 106: "pass"}, output
    assert report["target"]["device_id"] == DEVICE_ID
    catalog = next(i for i in report["items"] if i["number"] == 106)
    assert "1 items in 1 pages" in catalog["detail"] and "34020000001310000009" in catalog["detail"]


def test_a_sipp_ipc_with_a_wrong_password_fails_registration_only(
    runs: dict[str, tuple[dict[str, Any], str]],
) -> None:
    report, output = runs["wrong"]
    assert results(report) == {102: "fail", 105: "pass", 106: "pass"}, output
    register = next(i for i in report["items"] if i["number"] == 102)
    assert "does not match the password" in register["detail"] and "[§9.1.2.1" in register["detail"]
    assert any("Authorization: Digest" in e for e in register["evidence"])

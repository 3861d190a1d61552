"""The gateway's own conformance table: run ``gb28181-conformance upper`` and ``lower`` against this
repository's gateway (``python -m gbgw.gb28181 run`` in a subprocess, simulated cameras behind it) and
write the results between the markers of conformance/README.md.

``python -m gbgw.conformance.tool.selftest --write`` regenerates the table; without ``--write`` it prints
it. The gateway is reached only through its processes, its SIP ports and its HTTP API: the toolkit does
not import the product.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- conformance:begin -->", "<!-- conformance:end -->"
GATEWAY_ID, DOMAIN, PASSWORD = "34020000002000000001", "3402000000", "12345678"
UPPER_ID, UPPER_PASSWORD = "34020000002000000009", "upper-secret-987654"
LOWER_ID = "44030000001180000077"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        port = int(udp.getsockname()[1])
        tcp.bind(("127.0.0.1", port))
        return port


def _api(base: str, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"null")


def _wait(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.2)
    return None


def _config(folder: Path, sip: int, api: int, upper: int) -> Path:
    lines = [
        "sip:", f"  id: '{GATEWAY_ID}'", f"  domain: '{DOMAIN}'", f"  listen: 127.0.0.1:{sip}",
        f"  password: '{PASSWORD}'", "  query_timeout: 2", "  catalog_first_wait: 2", "  catalog_gap_timeout: 1",
        "storage: {backend: sqlite, path: " + str(folder / "gw.db") + "}",
        f"api: {{listen: 127.0.0.1:{api}}}", "audit: {path: " + str(folder / "audit.log") + "}",
        "log: {level: warning, format: json}",
        "upstreams:",
        f"  - {{name: tool, id: '{UPPER_ID}', domain: '{DOMAIN}', address: 127.0.0.1:{upper},",
        f"     listen: 127.0.0.1:{free_port()}, media_ip: 127.0.0.1, media_ports: 42000-42999,",
        f"     password: {UPPER_PASSWORD}, keepalive_interval: 5,",
        "     share: [{prefix: '3402000000131', control: true}]}",
    ]
    path = folder / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _tool(args: list[str], report: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gbgw.conformance.tool", *args, "--unattended",
                             "--report", str(report)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(folder: Path, clip: Path) -> dict[str, dict[str, Any]]:
    """Both runs; mode -> JSON report."""
    sip, api, upper = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{api}"
    env = dict(os.environ)
    upper_report, lower_report = folder / "upper.json", folder / "lower.json"
    # The tool listens first: the gateway registers to it as soon as it starts.
    upper_tool = _tool(["upper", "--listen", f"127.0.0.1:{upper}", "--id", UPPER_ID, "--domain", DOMAIN,
                        "--password", UPPER_PASSWORD, "--keepalive-interval", "5", "--keepalive-count", "2",
                        "--item-timeout", "3", "--action-wait", "4", "--media-seconds", "2.5",
                        "--register-wait", "30", "--timeout", "80", "--forbid-cidr", "127.0.0.0/8"], upper_report)
    gateway = subprocess.Popen([sys.executable, "-m", "gbgw.gb28181", "run", "--config",
                                str(_config(folder, sip, api, upper))], env=env, stdout=subprocess.DEVNULL,
                               stderr=(folder / "gateway.log").open("wb"))
    simulator = None
    lower_tool = None
    try:
        _wait(lambda: _api(base, "/api/health"), 20)
        simulator = subprocess.Popen(
            [sys.executable, "-m", "gbgw.gb28181", "simulate", "--server", f"127.0.0.1:{sip}", "--password",
             PASSWORD, "--channels", "2", "--media", str(clip), "--duration", "90", "--stats-interval", "0",
             "--log-level", "error", "--keepalive-interval", "5", "--alarm-interval", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lower_tool = _tool(["lower", "--target", f"127.0.0.1:{sip}", "--id", LOWER_ID, "--domain", DOMAIN,
                            "--password", PASSWORD, "--platform-id", GATEWAY_ID, "--media", str(clip),
                            "--keepalive-interval", "1", "--keepalive-count", "2", "--item-timeout", "3",
                            "--action-wait", "15", "--timeout", "90"], lower_report)
        driver = threading.Thread(target=_drive_lower, args=(base,), daemon=True)
        driver.start()
        outputs = {"upper": upper_tool.communicate(timeout=100)[0], "lower": lower_tool.communicate(timeout=110)[0]}
    finally:
        for process in (upper_tool, lower_tool, simulator, gateway):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
    reports = {}
    for mode, path in (("upper", upper_report), ("lower", lower_report)):
        if not path.exists():
            raise RuntimeError(f"the {mode} run wrote no report:\n{outputs[mode]}")
        reports[mode] = json.loads(path.read_text(encoding="utf-8")) | {"output": outputs[mode]}
    return reports


def _drive_lower(base: str) -> None:
    """What an operator would do on the gateway for the 下联 rows, through its HTTP API: ask the status,
    presets, recordings and configuration, turn and stop a camera, start and stop its recording, arm,
    disarm and reset the device's alarm, play a channel live and play back a recorded range with pause
    and resume (the catalog query, DeviceInfo and the catalog subscription the gateway does by itself).
    Each row of the tool finds its request whenever it came, so the order here is free; a refused call
    shows as that row's failure or manual result, not as a stop of the others."""
    if not _wait(lambda: _api(base, f"/api/devices/{LOWER_ID}").get("online"), 20):
        return
    time.sleep(1.0)
    device = f"/api/devices/{LOWER_ID}"
    channel = f"{device}/channels/{LOWER_ID[:10]}131{int(LOWER_ID[13:]) * 3 - 2:07d}"
    now = datetime.now().astimezone().replace(microsecond=0)
    start, end = now - timedelta(hours=1), now - timedelta(hours=1) + timedelta(seconds=4)
    window = urllib.parse.urlencode({"start": start.isoformat(), "end": end.isoformat()})
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"{device}/status", None),
        ("GET", f"{channel}/presets", None),
        ("GET", f"{channel}/records?{window}", None),
        ("GET", f"{device}/config/BasicParam", None),
        ("POST", f"{channel}/ptz", {"command": "up"}),
        ("POST", f"{channel}/ptz", {"command": "stop"}),
        ("POST", f"{channel}/record", {"recording": True}),
        ("POST", f"{channel}/record", {"recording": False}),
        ("POST", f"{device}/guard", {"armed": True}),
        ("POST", f"{device}/guard", {"armed": False}),
        ("POST", f"{device}/alarm-reset", {}),
    ]
    for method, path, body in calls:
        _try(base, path, method, body)
    live = _try(base, f"/api/channels/{channel.rsplit('/', 1)[1]}/play", "POST",
                {"host": "127.0.0.1", "port": free_port()})
    time.sleep(2.0)
    if live:
        _try(base, f"/api/sessions/{live['id']}", "DELETE")
    history = _try(base, f"{channel}/playback", "POST", {"start": start.isoformat(), "end": end.isoformat(),
                                                          "host": "127.0.0.1", "port": free_port()})
    if history:
        time.sleep(1.0)
        for action in ("pause", "resume"):
            _try(base, f"/api/sessions/{history['id']}/control", "POST", {"action": action})
            time.sleep(0.5)
        _try(base, f"/api/sessions/{history['id']}", "DELETE")


def _try(base: str, path: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    try:
        return _api(base, path, method, body)
    except OSError:
        return None


def table(reports: dict[str, dict[str, Any]]) -> str:
    lines = [BEGIN, "", "| Mode | # | Item | Result |", "|---|---|---|---|"]
    for mode in ("upper", "lower"):
        for item in reports[mode]["items"]:
            lines.append(f"| {mode} | {item['number']} | {item['name']} | {item['result']} |")
    lines += ["", END]
    return "\n".join(lines)


def replace_table(text: str, new: str) -> str:
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + new + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="write the table into conformance/README.md")
    parser.add_argument("--clip", type=Path, help="H.264 clip (default: made with ffmpeg)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = args.clip or folder / "clip.h264"
        if args.clip is None:
            subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
                            "testsrc=size=320x240:rate=25", "-t", "2", "-g", "25", "-bf", "0", "-c:v", "libx264",
                            "-f", "h264", str(clip)], check=True, timeout=60)
        reports = run(folder, clip)
    new = table(reports)
    if args.write:
        README.write_text(replace_table(README.read_text(encoding="utf-8"), new), encoding="utf-8")
    print(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())

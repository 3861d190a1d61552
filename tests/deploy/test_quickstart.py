"""The README's quick start, run exactly as written in a fresh clone, as root and as a normal user; and the
wheel a package index would get.

The clone is of this repository's HEAD (what a user clones), the install is ``bash deploy/install-venv.sh``
(the venv lands in the clone's ``.venv``), and the gateway is ``.venv/bin/gb28181-gateway run`` on its
embedded defaults, answering ``GET /api/health`` on 127.0.0.1:8080. Packages come from whatever index or
cache pip is configured with here (about a minute per install from a local one).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 600
DEFAULTS = (("udp", 5060), ("tcp", 5060), ("tcp", 8080))
"""What ``run`` without ``--config`` binds on 127.0.0.1 (the README's quick start)."""
NORMAL_USER = "nobody"


def defaults_taken() -> list[str]:
    taken = []
    for kind, port in DEFAULTS:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM) as sock:
            if kind == "tcp":
                # As the gateway's listener does: a connection of a previous run in TIME-WAIT is no owner.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                taken.append(f"127.0.0.1:{port}/{kind}")
    return taken


@contextlib.contextmanager
def world_readable_tmp() -> Iterator[Path]:
    """A temporary folder another user can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="gbgw-quickstart-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def clone(into: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("needs git (Debian package git)")
    target = into / "gw"
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True, timeout=120)
    return target


def environment(user: str | None, home: Path) -> dict[str, str]:
    """A login's environment: pip's settings kept (index, cache), a standard PATH for another user."""
    env = {key: value for key, value in os.environ.items() if key.startswith(("PIP_", "LANG", "LC_"))}
    env.update(HOME=str(home), PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if user is None:
        env["PATH"] = os.environ["PATH"]
    return env


def quick_start(checkout: Path, user: str | None) -> None:
    home = checkout.parent / "home"
    home.mkdir()
    # The process itself runs as the user (no su/runuser in between), so SIGTERM reaches the gateway.
    who: dict[str, object] = {}
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (checkout, home):
            subprocess.run(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(path)], check=True)
        who = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    env = environment(user, home)
    installed = subprocess.run(["bash", "deploy/install-venv.sh"], cwd=checkout, env=env, capture_output=True,
                               text=True, timeout=INSTALL_TIMEOUT, **who)  # type: ignore[call-overload]
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-4000:]
    assert "installed: gb28181-gateway" in installed.stdout, installed.stdout
    binary = checkout / ".venv" / "bin" / "gb28181-gateway"
    assert binary.is_file()
    if user is not None:
        assert binary.stat().st_uid == pwd.getpwnam(user).pw_uid
    log_path = checkout.parent / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([".venv/bin/gb28181-gateway", "run"], cwd=checkout, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, **who)  # type: ignore[call-overload]
        try:
            health = wait_healthy(process, log_path)
            assert health.startswith("{") and '"status"' in health, health
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0, log_path.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def wait_healthy(process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the gateway exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen("http://127.0.0.1:8080/api/health", timeout=1) as r:
            return str(r.read().decode("utf-8"))
        if time.monotonic() > deadline:
            raise AssertionError(f"no /api/health on 127.0.0.1:8080 after {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.mark.slow
def test_quick_start_as_written() -> None:
    taken = defaults_taken()
    if taken:
        pytest.skip(f"the quick start's default addresses are taken on this machine: {', '.join(taken)}")
    with world_readable_tmp() as tmp:
        quick_start(clone(tmp), None)


@pytest.mark.slow
def test_quick_start_as_a_normal_user() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to act as a normal user")
    taken = defaults_taken()
    if taken:
        pytest.skip(f"the quick start's default addresses are taken on this machine: {', '.join(taken)}")
    entry = pwd.getpwnam(NORMAL_USER)
    python = subprocess.run(["sh", "-c", "command -v python3"], capture_output=True, text=True,
                            env={"PATH": "/usr/local/bin:/usr/bin:/bin"}, user=entry.pw_uid, group=entry.pw_gid,
                            extra_groups=[])
    if python.returncode != 0:
        pytest.skip(f"{NORMAL_USER} has no python3 on a standard PATH")
    with world_readable_tmp() as tmp:
        quick_start(clone(tmp), NORMAL_USER)


@pytest.mark.slow
def test_the_wheel_carries_the_licence_and_the_console_under_gbgw_only(tmp_path: Path) -> None:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
                           capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert built.returncode == 0, built.stderr[-4000:]
    (wheel,) = tmp_path.glob("gb28181_gateway-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        licence = [n for n in names if n.startswith(f"{dist_info}/") and "/LICENSE" in n]
        assert licence, names
        assert archive.read(licence[0]) == (REPO / "LICENSE").read_bytes()
        assert "Apache License" in archive.read(licence[0]).decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        assert "Apache-2.0" in metadata
    console = {p.name for p in (REPO / "gb28181" / "app" / "console").iterdir() if p.is_file()}
    assert console and {f"gbgw/gb28181/app/console/{name}" for name in console} <= set(names)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"gbgw", dist_info}, tops
    for package in ("sip", "rtp", "registry", "gb28181", "conformance"):
        assert f"gbgw/{package}/__init__.py" in names

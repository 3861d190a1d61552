"""The systemd unit as systemd itself reads it: ``systemd-analyze verify`` and ``security``.

Both run on the unit file in a throwaway root holding what the unit refers to (the venv's entry point,
/bin/kill, the stock units it orders itself after), so a check fails for the unit's own faults and not for
a gateway that is not installed on this machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "gb28181-gateway.service"
EXPOSURE_LIMIT = 2.5
SYSTEM_UNITS = Path("/usr/lib/systemd/system")

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze not installed (Debian package systemd; tests/run.sh adds it)")


def unit_settings() -> dict[str, list[str]]:
    """[Service] as {key: every value it is given}, since systemd keys may repeat."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def executable(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A file system root where the unit is installed and every command it names exists."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    for key in ("ExecStart", "ExecReload"):
        for command in unit_settings()[key]:
            executable(root / command.lstrip("-@:+!").split()[0].lstrip("/"))
    if SYSTEM_UNITS.is_dir():
        # Copied, not linked: systemd resolves links inside the root, and these point outside it.
        shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    return root


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60, check=False)


def test_unit_file_parses_and_verifies(root: Path) -> None:
    result = analyze("verify", "--man=no", f"--root={root}", UNIT.name)
    # verify exits 0 on an unknown key or a bad value ("..., ignoring"): any message is a fault.
    assert (result.returncode, result.stderr.strip(), result.stdout.strip()) == (0, "", "")


def test_exposure_is_at_most_the_limit(root: Path) -> None:
    result = analyze("security", "--offline=true", f"--root={root}", UNIT.name)
    assert result.returncode == 0, result.stderr
    assert "ignoring" not in result.stderr, result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found, result.stdout[-2000:]
    assert float(found.group(1)) <= EXPOSURE_LIMIT, result.stdout


def test_security_threshold_flag_agrees(root: Path) -> None:
    """The same figure through systemd's own exit status (what an administrator's CI would run)."""
    result = analyze("security", "--offline=true", f"--threshold={int(EXPOSURE_LIMIT * 10)}",
                     f"--root={root}", UNIT.name)
    assert result.returncode == 0, result.stdout[-2000:]


def test_the_settings_the_gateway_relies_on() -> None:
    """What the daemon and the docs assume of the unit, beyond its score."""
    s = unit_settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"] and s["WatchdogSec"] == ["30"]
    assert s["ExecStart"] == ["/opt/gb28181-gateway/bin/gb28181-gateway run --config "
                              "/etc/gb28181-gateway/gateway.yaml"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert s["User"] == ["gb28181"] and s["UMask"] == ["0027"]
    assert s["StateDirectory"] == s["LogsDirectory"] == s["ConfigurationDirectory"] == ["gb28181-gateway"]
    assert s["CapabilityBoundingSet"] == s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert s["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "@system-service" in s["SystemCallFilter"]
    # A configuration error exits 2: restarting cannot fix it.
    assert s["RestartPreventExitStatus"] == ["2"]


def test_sysusers_creates_the_unit_user(tmp_path: Path) -> None:
    """systemd-sysusers itself, writing into an empty root: the user the unit runs as, with no login."""
    if shutil.which("systemd-sysusers") is None:
        pytest.skip("systemd-sysusers not installed")
    (tmp_path / "etc").mkdir()
    result = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(DEPLOY / "gb28181-gateway.sysusers")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    users = [line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()]
    groups = [line.split(":")[0] for line in (tmp_path / "etc/group").read_text().splitlines()]
    assert [(u[0], u[5], u[6]) for u in users] == [(unit_settings()["User"][0], "/var/lib/gb28181-gateway",
                                                   "/usr/sbin/nologin")]
    assert groups == unit_settings()["Group"]


def test_example_config_writes_where_the_unit_lets_it() -> None:
    """ProtectSystem=strict leaves only the State/Logs directories writable: the example's paths are there."""
    import yaml

    example = yaml.safe_load((DEPLOY / "gateway.example.yaml").read_text(encoding="utf-8"))
    assert Path(example["storage"]["path"]).parent == Path("/var/lib/gb28181-gateway")
    assert Path(example["audit"]["path"]).parent == Path("/var/log/gb28181-gateway")


def test_logrotate_signals_the_gateway_to_reopen() -> None:
    text = (DEPLOY / "gb28181-gateway.logrotate").read_text(encoding="utf-8")
    assert text.startswith("#") and "/var/log/gb28181-gateway/*.log {" in text
    postrotate = text.split("postrotate", 1)[1].split("endscript", 1)[0]
    assert "systemctl kill -s HUP" in postrotate and "gb28181-gateway.service" in postrotate


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
def test_logrotate_parses(tmp_path: Path) -> None:
    config = tmp_path / "gb28181-gateway"
    # Its own state file and a log directory of ours; the su user must exist, so root rotates here.
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "audit.log").write_text("x\n")
    text = (DEPLOY / "gb28181-gateway.logrotate").read_text(encoding="utf-8")
    text = text.replace("/var/log/gb28181-gateway", str(log_dir)).replace("su gb28181 gb28181", "")
    config.write_text(text.replace("create 0640 gb28181 gb28181", "create 0640"))
    result = subprocess.run(["logrotate", "--debug", "--state", str(tmp_path / "state"), str(config)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and "error" not in result.stderr.lower(), result.stderr


"""Passwords kept out of the configuration file: ``{file: PATH}`` or ``{env: NAME}`` instead of the value.

The file may then be world-readable (it goes into configuration management and tickets); the secret
lives in a 0600 file (systemd credentials, Docker secrets) or the environment. Errors name the key and
the file or variable, never the secret, and SIGHUP reads the secret again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from gwproc import REPO, DaemonProcess, GbDevice, daemon_config

from gbgw.gb28181.config import ConfigError, load_config

DEVICE_ID = "34020000001320000001"
UPPER = {"name": "district", "id": "34020000002000000009", "address": "10.20.0.1:5060",
         "listen": "127.0.0.2:5061", "media_ip": "127.0.0.2"}


def secret_file(tmp_path: Path, text: str, name: str = "secret") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def config_with(sip: Any = None, device: Any = None, upstream: Any = None) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if sip is not None:
        data["sip"] = {"password": sip}
    if device is not None:
        data["devices"] = [{"id": DEVICE_ID, "password": device}]
    if upstream is not None:
        data["upstreams"] = [{**UPPER, "password": upstream}]
    return data


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(data)
    return str(caught.value)


def test_plain_string_still_works() -> None:
    cfg = load_config(config_with(sip="plain-pass", device="dev-pass", upstream="up-pass"))
    assert (cfg.sip.password, cfg.devices[0].password, cfg.upstreams[0].password) == (
        "plain-pass", "dev-pass", "up-pass")


def test_file_content_with_trailing_newline_stripped(tmp_path: Path) -> None:
    cfg = load_config(config_with(
        sip={"file": str(secret_file(tmp_path, "from-file\n", "sip"))},
        device={"file": str(secret_file(tmp_path, "device secret\r\n", "dev"))},
        upstream={"file": str(secret_file(tmp_path, "upper\n\n", "up"))},
    ))
    assert (cfg.sip.password, cfg.devices[0].password, cfg.upstreams[0].password) == (
        "from-file", "device secret", "upper")


def test_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GB_TEST_SIP_PASSWORD", "from-env")
    monkeypatch.setenv("GB_TEST_UP_PASSWORD", "up-env")
    cfg = load_config(config_with(sip={"env": "GB_TEST_SIP_PASSWORD"}, device={"env": "GB_TEST_SIP_PASSWORD"},
                                  upstream={"env": "GB_TEST_UP_PASSWORD"}))
    assert (cfg.sip.password, cfg.devices[0].password, cfg.upstreams[0].password) == (
        "from-env", "from-env", "up-env")


def test_each_secret_read_at_every_load(tmp_path: Path) -> None:
    """What SIGHUP relies on: nothing is cached between two loads."""
    path = secret_file(tmp_path, "first\n")
    data = config_with(sip={"file": str(path)})
    assert load_config(data).sip.password == "first"
    path.write_text("second\n", encoding="utf-8")
    assert load_config(data).sip.password == "second"


def test_errors_name_key_source_and_expectation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    assert refused(config_with(sip={"file": str(missing)})) == (
        f"sip.password.file: '{missing}' is not valid: expected a readable file holding the secret "
        "(No such file or directory)")
    empty = secret_file(tmp_path, "\n", "empty")
    assert refused(config_with(device={"file": str(empty)})) == (
        f"devices[0].password.file: '{empty}' is not valid: expected a file holding the secret (it is empty)")
    assert refused(config_with(sip={"file": str(tmp_path)})).startswith(
        f"sip.password.file: '{tmp_path}' is not valid: expected a readable file holding the secret (")
    monkeypatch.delenv("GB_TEST_UNSET", raising=False)
    assert refused(config_with(upstream={"env": "GB_TEST_UNSET"})) == (
        "upstreams[0].password.env: 'GB_TEST_UNSET' is not valid: expected a variable set in the gateway's "
        "environment (it is unset)")
    monkeypatch.setenv("GB_TEST_EMPTY", "")
    assert refused(config_with(sip={"env": "GB_TEST_EMPTY"})).endswith("(it is empty)")
    assert refused(config_with(sip={"env": "not a name"})) == (
        "sip.password.env: 'not a name' is not valid: expected an environment variable name")
    assert refused(config_with(sip={"path": "/run/secret"})).startswith(
        "sip.password.path: '/run/secret' is not valid: expected a known key here (env, file)")
    both = refused(config_with(sip={"file": "/a", "env": "B"}))
    assert both == ("sip.password: the value given is not valid: expected a string, {file: PATH} or "
                    "{env: NAME} (exactly one of file, env)")
    assert refused(config_with(sip={})).endswith("(exactly one of file, env)")


def test_resolved_secret_checked_and_never_shown(tmp_path: Path) -> None:
    too_long = "s" * 129
    message = refused(config_with(sip={"file": str(secret_file(tmp_path, too_long + "\n"))}))
    assert message == "sip.password: the value given is not valid: expected a password of 1 to 128 characters"
    assert too_long not in message


def test_resolved_secret_not_in_repr(tmp_path: Path) -> None:
    cfg = load_config(config_with(sip={"file": str(secret_file(tmp_path, "hidden-value"))},
                                  device="hidden-device", upstream="hidden-upper"))
    assert "hidden" not in repr(cfg)


# -- as an administrator meets it -----------------------------------------------------------------------


def check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GB_TEST_")}
    environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "gbgw.gb28181", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60, env={**environ, **(env or {})}, check=False)


def test_check_config_world_readable_file_with_secrets_elsewhere(tmp_path: Path) -> None:
    secret = secret_file(tmp_path, "file-secret-123\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(config_with(sip={"file": str(secret)}, device={"env": "GB_TEST_DEVICE_PW"})),
                      encoding="utf-8")
    config.chmod(0o644)
    done = check_config(config, {"GB_TEST_DEVICE_PW": "env-secret-456"})
    assert (done.returncode, done.stderr) == (0, "")
    assert "OK" in done.stdout and "1 device entries" in done.stdout
    assert "file-secret-123" not in done.stdout + done.stderr
    assert "env-secret-456" not in done.stdout + done.stderr

    done = check_config(config)
    assert done.returncode == 2
    assert done.stderr.strip() == ("configuration error: devices[0].password.env: 'GB_TEST_DEVICE_PW' is not "
                                   "valid: expected a variable set in the gateway's environment (it is unset)")

    secret.unlink()
    done = check_config(config, {"GB_TEST_DEVICE_PW": "env-secret-456"})
    assert done.returncode == 2
    assert done.stderr.strip() == (f"configuration error: sip.password.file: '{secret}' is not valid: expected a "
                                   "readable file holding the secret (No such file or directory)")
    assert "env-secret-456" not in done.stdout + done.stderr


def test_check_config_never_prints_a_bad_secret(tmp_path: Path) -> None:
    secret = secret_file(tmp_path, "x" * 200)
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(config_with(upstream={"file": str(secret)})), encoding="utf-8")
    done = check_config(config)
    assert done.returncode == 2
    assert "upstreams[0].password: the value given is not valid" in done.stderr
    assert "x" * 20 not in done.stdout + done.stderr


async def test_sighup_reads_the_secret_file_again(tmp_path: Path) -> None:
    secret = secret_file(tmp_path, "first-secret\n")
    config, sip_port, _ = daemon_config(tmp_path, sip={"password": {"file": str(secret)}})
    process = DaemonProcess.with_config(config, tmp_path / "gateway.yaml", tmp_path / "gateway.log")
    await process.start()
    first = await GbDevice("34020000011328000001", sip_port).open()
    second = await GbDevice("34020000011328000002", sip_port).open()
    try:
        assert (await first.register("first-secret")).status == 200
        secret.write_text("second-secret\n", encoding="utf-8")
        before = len(process.log_events())
        process.send_signal(signal.SIGHUP)
        await process.wait_log("configuration reloaded", after=before)
        assert (await second.register("first-secret")).status == 403
        assert (await second.register("second-secret")).status == 200

        # A secret file gone at reload: refused, naming the file, and the running password stays.
        secret.unlink()
        before = len(process.log_events())
        process.send_signal(signal.SIGHUP)
        refused_event = await process.wait_log("reload refused, keeping the running configuration", after=before)
        assert refused_event["error"].startswith(f"sip.password.file: '{secret}' is not valid")
        assert (await first.register("second-secret")).status == 200
        log_text = process.log_text()
        assert "first-secret" not in log_text and "second-secret" not in log_text

        process.send_signal(signal.SIGTERM)
        assert await process.wait(timeout=10) == 0
    finally:
        first.close()
        second.close()
        await process.ensure_stopped()

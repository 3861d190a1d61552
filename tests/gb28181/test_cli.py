"""``gb28181-gateway check-config`` and ``run`` as an administrator meets them.

Every configuration error must name the key (dotted path), the value found and what is expected, so it
can be fixed from the console without reading code; ``run`` without --config must give a working
gateway on loopback from the embedded defaults.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from gwproc import REPO, DaemonProcess, UdpDevice, port_in_use
from wire import free_port

from gbgw.gb28181.app import cli

EXAMPLE = REPO / "deploy" / "gateway.example.yaml"


def check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    code = cli.main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def console_script() -> list[str]:
    """The installed entry point, or the module when the package is not installed."""
    beside = Path(sys.executable).with_name("gb28181-gateway")
    script = str(beside) if beside.exists() else shutil.which("gb28181-gateway")
    return [script] if script else [sys.executable, "-m", "gbgw.gb28181"]


def test_example_file_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["check-config", "--no-host-check", str(EXAMPLE)])
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert "OK" in out and "2 device entries" in out and "34020000002000000001" in out
    assert "upstream district: 34020000002000000009 at 10.20.0.1:5060/udp from 10.20.0.2:5061" in out
    assert "2 share rules" in out


@pytest.mark.parametrize(("text", "summary"), [
    ("", "SIP 127.0.0.1:5060, API 127.0.0.1:8080, 0 device entries, allowlist off"),
    ('sip:\n  id: "34020000002000000009"\n  listen: "[::1]:5070"\n  allowlist: true\n'
     "  password: 12345678\napi:\n  listen: 127.0.0.2:9000\n"
     'devices:\n  - id: "34020000001320000001"\n    stream_transport: TCP-ACTIVE\n',
     "SIP [::1]:5070, API 127.0.0.2:9000, 1 device entries, allowlist on"),
], ids=["empty-file-means-defaults", "custom"])
def test_good_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, summary: str) -> None:
    code, out, err = check(tmp_path, text, capsys)
    assert (code, err) == (0, "")
    assert summary in out


# (file text, key, value as shown, what is expected)
BAD_FILES = [
    ('sip:\n  id: "1234"\n', "sip.id", "'1234'", "20-digit"),
    ('sip:\n  listen: "127.0.0.1"\n', "sip.listen", "'127.0.0.1'", "host:port"),
    ('api:\n  listen: "127.0.0.1:70000"\n', "api.listen", "'127.0.0.1:70000'", "from 1 to 65535"),
    ('sip:\n  passwrd: "abc"\n', "sip.passwrd", "'abc'", "password"),  # the list of known keys names the one meant
    ("colour: blue\n", "colour", "'blue'", "a known key here (api, audit, console, devices, "),
    ('sip:\n  keepalive_interval: "sixty"\n', "sip.keepalive_interval", "'sixty'", "an integer from 5 to 3600"),
    ("sip:\n  keepalive_interval: 1\n", "sip.keepalive_interval", "1", "an integer from 5 to 3600"),
    ('sip:\n  allowlist: "yes"\n', "sip.allowlist", "'yes'", "true or false"),
    ("sip: 5060\n", "sip", "5060", "a mapping"),
    ("storage:\n  backend: redis\n", "storage.backend", "'redis'", "sqlite, memory"),
    ('devices:\n  - id: "34020000001320000001"\n  - id: "3402"\n', "devices[1].id", "'3402'", "20-digit"),
    ('devices:\n  - id: "34020000001320000001"\n  - id: "34020000001320000001"\n', "devices[1].id",
     "'34020000001320000001'", "listed only once"),
    ("sip:\n  register_min_expires: 900\n  register_max_expires: 600\n", "sip.register_min_expires", "900",
     "no greater than sip.register_max_expires (600)"),
]


@pytest.mark.parametrize(("text", "key", "value", "expected"), BAD_FILES, ids=[b[1] + ":" + b[2] for b in BAD_FILES])
def test_bad_files_name_key_value_and_expectation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str, value: str, expected: str
) -> None:
    code, out, err = check(tmp_path, text, capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"configuration error: {key}: {value} is not valid: expected "), err
    assert expected in err


@pytest.mark.parametrize(("text", "where"), [
    # Line 3 starts with a tab, which YAML forbids in indentation.
    ('sip:\n  id: "34020000002000000001"\n\tlisten: "127.0.0.1:5060"\n', "at line 3"),
    # An unterminated quote on line 2: the parser notices at the end, and says where the string began.
    ('sip:\n  password: "Unterminated-S3cret\n  id: "34020000002000000001"\n', "from line 2"),
], ids=["tab", "unterminated-password"])
def test_bad_yaml_names_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, where: str
) -> None:
    code, _, err = check(tmp_path, text, capsys)
    assert code == 2
    assert err.startswith(f"configuration error: {tmp_path / 'gateway.yaml'}: ") and "valid YAML" in err
    assert where in err
    # The parser's own message quotes the offending line; that line may be a password.
    assert "S3cret" not in err


def test_a_key_given_twice_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # YAML parsers keep the last of two equal keys; here that would silently swap the device's password.
    code, _, err = check(tmp_path, 'devices:\n  - id: "34020000001320000001"\n    password: "first"\n'
                         '    password: "second"\n', capsys)
    assert code == 2
    assert "valid YAML at line 4" in err and "'password' twice" in err
    assert "first" not in err and "second" not in err


def test_a_bad_password_is_named_but_not_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "s3cret-" * 20
    code, _, err = check(tmp_path, f'devices:\n  - id: "34020000001320000001"\n    password: "{secret}"\n'
                         f'sip:\n  password: "{secret}"\n', capsys)
    assert code == 2
    assert "sip.password" in err and "1 to 128 characters" in err
    assert secret not in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.yaml"
    assert cli.main(["check-config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "readable file" in err


def test_exit_codes_of_the_installed_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('sip:\n  id: "1234"\n', encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    runs = {
        "good": [*console_script(), "check-config", "--no-host-check", str(EXAMPLE)],
        "bad": [*console_script(), "check-config", str(bad)],
        "run-bad": [*console_script(), "run", "--config", str(bad)],
        "no-command": console_script(),
    }
    started = {name: subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                      cwd=tmp_path) for name, args in runs.items()}
    done = {name: (process.wait(timeout=20), *process.communicate()) for name, process in started.items()}
    assert done["good"][0] == 0 and "OK" in done["good"][1]
    for name in ("bad", "run-bad"):
        assert done[name][0] == 2, done[name]
        assert "configuration error: sip.id: '1234'" in done[name][2]
    assert done["no-command"][0] == 2 and "usage:" in done["no-command"][2]
    # A refused configuration must not leave a database behind.
    assert not (tmp_path / "gateway.db").exists()


async def test_run_without_config_uses_the_embedded_defaults(tmp_path: Path) -> None:
    taken = [port for port in (5060, 8080) if port_in_use(port)]
    if taken:
        pytest.skip(f"127.0.0.1 port(s) {taken} already in use: the embedded defaults need 5060 and 8080")
    daemon = DaemonProcess(["run"], tmp_path / "gateway.log", "http://127.0.0.1:8080", cwd=tmp_path)
    try:
        await daemon.start()
        started = await daemon.wait_log("gateway started")
        assert started["sip"] == "127.0.0.1:5060" and started["api"] == "127.0.0.1:8080"
        assert (tmp_path / "gateway.db").is_file()

        probe = await UdpDevice(5060).open()
        try:
            options = (
                f"OPTIONS sip:34020000002000000001@127.0.0.1:5060 SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{probe.port};rport;branch=z9hG4bKoptions1\r\n"
                "From: <sip:34020000001320000001@3402000000>;tag=probe1\r\n"
                "To: <sip:34020000002000000001@3402000000>\r\n"
                "Call-ID: options-probe-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            answer = await probe.transact(options)
        finally:
            probe.close()
        assert answer.status == 200
        allowed = {m.strip() for m in (answer.get("Allow") or "").split(",")}
        assert {"REGISTER", "MESSAGE", "OPTIONS"} <= allowed

        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 5) == 0
    finally:
        await daemon.ensure_stopped()


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_the_product_commands_never_import_the_simulator(tmp_path: Path, command: str) -> None:
    # The vendor toolkit sits beside the product: only `simulate` may load it. `run` is given a refused
    # file so that it stops after importing the daemon, before opening any socket.
    bad = tmp_path / "bad.yaml"
    bad.write_text('sip:\n  id: "1234"\n', encoding="utf-8")
    args = ["check-config", "--no-host-check", str(EXAMPLE)] if command == "check-config" else ["run", "--config", str(bad)]
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "gbgw.gb28181", *args], capture_output=True,
                          text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == (0 if command == "check-config" else 2), done.stderr[-2000:]
    imported = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "gbgw.gb28181.app.cli" in imported
    if command == "run":
        assert "gbgw.gb28181.app.daemon" in imported
    assert not {name for name in imported if name.startswith("gbgw.conformance")}


def test_simulate_hands_its_options_to_the_simulator(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["simulate", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gb28181-gateway simulate") and "--server HOST:PORT" in out and "--log-level" in out
    with pytest.raises(SystemExit) as exited:
        cli.main(["simulate", "--server", "0.0.0.0:5060"])
    assert exited.value.code == 2
    assert "wildcard" in capsys.readouterr().err


def test_every_error_of_a_file_in_one_run(tmp_path: Path) -> None:
    # Three mistakes in three sections: one run of check-config (and of run) names all three, in file order.
    bad = tmp_path / "bad.yaml"
    bad.write_text('sip:\n  id: "1234"\n  keepalive_intervall: 60\nmedia:\n  ip: "0.0.0.0"\n', encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for command in (["check-config", str(bad)], ["run", "--config", str(bad)]):
        done = subprocess.run([*console_script(), *command], capture_output=True, text=True, timeout=30, env=env,
                              cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert lines[0] == "configuration error: 3 errors:"
        assert lines[1] == "  sip.id: '1234' is not valid: expected a 20-digit GB/T 28181 ID"
        assert lines[2].startswith("  sip.keepalive_intervall: 60 is not valid: expected a known key here (")
        assert lines[2].endswith("; did you mean keepalive_interval?")
        assert lines[3].startswith("  media.ip: '0.0.0.0' is not valid: expected a specific IP address")
        assert len(lines) == 4
    assert not (tmp_path / "gateway.db").exists()


def test_semantic_errors_in_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(tmp_path, 'sip:\n  id: "34020000001320000001"\napi:\n  listen: "127.0.0.1:5060"\n',
                           capsys)
    assert (code, out) == (2, "")
    assert "  sip.id: '34020000001320000001' is not valid: expected the ID of a platform" in err
    assert "  api.listen: '127.0.0.1:5060' is not valid: expected an address and port of its own (sip.listen" in err


def test_version() -> None:
    done = subprocess.run([*console_script(), "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0
    assert done.stdout.startswith("gb28181-gateway 0."), done.stdout


def test_a_listener_that_cannot_open_is_one_line_naming_its_key(tmp_path: Path) -> None:
    """Regression (issue 14): ``run`` died with a 31-line traceback naming no key when api.listen was taken."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "gateway.yaml"
        sip_port = free_port()
        config.write_text(
            f'sip:\n  listen: "127.0.0.1:{sip_port}"\napi:\n  listen: "127.0.0.1:{port}"\n'
            f'storage:\n  backend: memory\naudit:\n  path: "{tmp_path / "audit.log"}"\n'
        )
        done = subprocess.run([*console_script(), "run", "--config", str(config)], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("cannot start")]
    assert lines == [f"cannot start: api.listen: '127.0.0.1:{port}' is not valid: expected an address this "
                     "gateway can listen on (Address already in use)"], done.stderr
    assert "Traceback" not in done.stderr

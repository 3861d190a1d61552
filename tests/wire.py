"""What several test areas need to talk to the real thing from outside: free ports, and a SIP message
parsed just enough for assertions (deliberately not the project's own ``sip`` package)."""

from __future__ import annotations

import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# Real-device captures, torture messages and media samples the tests read; fixtures/PROVENANCE.md says
# where each came from and under which licence.
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Material the tests were written against that the repository may not redistribute. A developer who has a
# copy can put it at the same path under tests/fixtures (it is git-ignored there) and the tests run.
WITHHELD: dict[str, str] = {
    "interop/hikvision/codeindex-32433344081_feiyangqingyun_hik-IPC_DS-2CD5024EFWD_full-exchange.md":
        "its licence is not stated (taken from the README of a public Qt GB28181 platform whose repository"
        " is not known)",
    "media/fri_SIPStandardDebug_Audio_G711_PS2.mpg":
        "it belongs to the proprietary SIPStandardDebug field-test tool of the Ministry of Public Security's"
        " First Research Institute, and the repository it came from states conflicting licences",
}


def missing_fixture(path: Path) -> str | None:
    """Why a fixture is absent (a skip reason naming it), or None when it is there."""
    if path.exists():
        return None
    name = path.relative_to(FIXTURES).as_posix() if path.is_relative_to(FIXTURES) else str(path)
    why = WITHHELD.get(name, "it is missing")
    return f"fixture tests/fixtures/{name} is not in the repository: {why}"


def needs_fixture(path: Path) -> pytest.MarkDecorator:
    """Skip the test, naming the fixture and why it is absent, when ``path`` is not there."""
    reason = missing_fixture(path)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def free_port() -> int:
    """A port that was free for both UDP and TCP on 127.0.0.1 a moment ago (for configs and sipp)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no free port")


@dataclass
class SipMessage:
    start: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    @classmethod
    def parse(cls, data: bytes) -> SipMessage:
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return cls(lines[0], headers, body, data)

    @property
    def is_response(self) -> bool:
        return self.start.startswith("SIP/2.0 ")

    @property
    def status(self) -> int:
        return int(self.start.split(" ", 2)[1])

    @property
    def reason(self) -> str:
        parts = self.start.split(" ", 2)
        return parts[2] if len(parts) > 2 else ""

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    def get(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def branch(self) -> str:
        via = self.get("Via") or self.get("v") or ""
        match = re.search(r";\s*branch=([^;,\s]+)", via)
        return match.group(1) if match else ""


# -- throwaway certificates (SIP over TLS, HTTPS) ---------------------------------------------------------

_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class LoopbackPki:
    """A test CA and a certificate it signed for 127.0.0.1, with that certificate's key."""

    ca: Path
    cert: Path
    key: Path


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate (a CA) ``name.pem`` and its key ``name.key`` in ``folder``."""
    key, pem = folder / f"{name}.key", folder / f"{name}.pem"
    openssl("req", "-x509", *_EC, "-keyout", key, "-out", pem, "-days", "2", "-subj", f"/CN=test {name}")
    return pem, key


def loopback_pki(folder: Path, name: str = "server") -> LoopbackPki:
    """A CA (``ca.pem``) and ``name.pem``/``name.key`` signed by it, valid for IP 127.0.0.1."""
    ca, ca_key = self_signed(folder, "ca")
    key, csr, pem = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    openssl("req", *_EC, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", pem,
            "-days", "2", "-extfile", folder / "ext.cnf")
    return LoopbackPki(ca, pem, key)

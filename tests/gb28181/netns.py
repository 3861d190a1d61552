"""Network namespaces for the boundary tests: a device network, the gateway host, a police network.

```
 devnet                    gw (ip_forward off)                    policenet
 eth0 10.77.1.2 ---------- dev0 10.77.1.1 | pol0 10.77.2.1 ---------- eth0 10.77.2.2
      10.77.1.3 (a second                                                (the upper platform)
      host on the device side)
```

Both outer namespaces route everything through the gateway host (a default route via its address), so
the only thing between them is the gateway host's forwarding switch and the gateway itself: that is what
the tests are about. Veths are created inside their namespaces (no name in the root namespace can clash
with a concurrent run), namespace names carry the creating process's pid, and namespaces left behind by
a process that no longer exists are removed before new ones are made.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

PREFIX = "gbt"
DEV_GW = "10.77.1.1"
"""The gateway's device-side address (SIP and media toward cameras)."""
DEV_HOST = "10.77.1.2"
"""Where the simulated cameras are."""
DEV_OTHER = "10.77.1.3"
"""A second host on the device side (flooder, injector)."""
POLICE_GW = "10.77.2.1"
"""The gateway's police-side address (SIP and media toward the upper)."""
POLICE_HOST = "10.77.2.2"
"""The upper platform."""
DEV_IF = "dev0"
POLICE_IF = "pol0"
OUTER_IF = "eth0"


def python_env() -> dict[str, str]:
    """The environment for Python run inside a namespace: the repo and the test helpers importable."""
    paths = [str(REPO), str(REPO / "tests"), str(HERE)]
    return dict(os.environ, PYTHONPATH=os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
                PYTHONUNBUFFERED="1")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    name = f"{PREFIX}{os.getpid()}-probe"
    try:
        made = _ip("netns", "add", name, check=False)
    except FileNotFoundError:
        return "the ip command (iproute2) is not installed"
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


def remove_stale() -> None:
    """Delete namespaces of earlier runs whose process is gone (a killed run cannot clean up)."""
    listing = _ip("netns", "list", check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)-\w+", name)
        if match and not Path(f"/proc/{match[1]}").exists():
            # The daemon, camera and upper that run died with it would keep the namespace alive.
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", name, check=False)


@dataclass(frozen=True)
class Netns:
    name: str

    def command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 15,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout,
                                input=input, env=python_env())
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} in {self.name} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def python(self, script: str, *args: str, timeout: float = 30) -> Any:
        """Run one of the helper scripts next to this file; its last stdout line is JSON, returned."""
        result = self.run(sys.executable, str(HERE / script), *args, timeout=timeout)
        lines = result.stdout.strip().splitlines()
        assert lines, f"{script} printed nothing:\n{result.stderr}"
        return json.loads(lines[-1])

    def popen(self, args: list[str], log: IO[bytes], stdin: int | None = subprocess.DEVNULL,
              stdout: int | IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(*args), stdin=stdin, stdout=log if stdout is None else stdout,
                                stderr=log, env=python_env(), cwd=REPO)

    def sysctl(self, key: str, value: int | str) -> None:
        self.run("sysctl", "-qw", f"{key}={value}")

    def read_sysctl(self, key: str) -> str:
        return self.run("sysctl", "-n", key).stdout.strip()


@dataclass(frozen=True)
class Topology:
    gw: Netns
    dev: Netns
    police: Netns

    def set_rp_filter(self, mode: int) -> None:
        """Reverse-path filtering on the gateway host: 1 strict (the documented setup), 0 off. The
        kernel uses the larger of ``all`` and the interface's value, so both are set."""
        for scope in ("all", "default", DEV_IF, POLICE_IF):
            self.gw.sysctl(f"net.ipv4.conf.{scope}.rp_filter", mode)

    def set_forwarding(self, on: bool) -> None:
        self.gw.sysctl("net.ipv4.ip_forward", 1 if on else 0)
        self.gw.sysctl("net.ipv6.conf.all.forwarding", 1 if on else 0)


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    """devnet -- gw -- policenet as drawn above; removed afterwards whatever happened."""
    remove_stale()
    tag = f"{PREFIX}{os.getpid()}"
    spaces = Topology(Netns(f"{tag}-gw"), Netns(f"{tag}-dev"), Netns(f"{tag}-police"))
    made: list[Netns] = []
    try:
        for ns in (spaces.gw, spaces.dev, spaces.police):
            _ip("netns", "add", ns.name)
            made.append(ns)
            ns.run("ip", "link", "set", "lo", "up")
            # IPv4 only: no neighbour discovery or MLD chatter in the captures, and no second family
            # to route.
            for scope in ("all", "default"):
                ns.sysctl(f"net.ipv6.conf.{scope}.disable_ipv6", 1)
        for inner, outer in ((DEV_IF, spaces.dev), (POLICE_IF, spaces.police)):
            _ip("link", "add", inner, "netns", spaces.gw.name, "type", "veth",
                "peer", "name", OUTER_IF, "netns", outer.name)
        gw, dev, police = spaces.gw, spaces.dev, spaces.police
        gw.run("ip", "addr", "add", f"{DEV_GW}/24", "dev", DEV_IF)
        gw.run("ip", "addr", "add", f"{POLICE_GW}/24", "dev", POLICE_IF)
        dev.run("ip", "addr", "add", f"{DEV_HOST}/24", "dev", OUTER_IF)
        dev.run("ip", "addr", "add", f"{DEV_OTHER}/24", "dev", OUTER_IF)
        police.run("ip", "addr", "add", f"{POLICE_HOST}/24", "dev", OUTER_IF)
        for ns, link in ((gw, DEV_IF), (gw, POLICE_IF), (dev, OUTER_IF), (police, OUTER_IF)):
            ns.run("ip", "link", "set", link, "up")
        dev.run("ip", "route", "add", "default", "via", DEV_GW)
        police.run("ip", "route", "add", "default", "via", POLICE_GW)
        spaces.set_forwarding(False)
        spaces.set_rp_filter(1)
        yield spaces
    finally:
        for ns in made:
            _ip("netns", "del", ns.name, check=False)


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL if it does not exit (``ip netns exec`` passes both on: it execs)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)

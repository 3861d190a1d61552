"""A real daemon process, simulated cameras registered to it and a FakeUpper: for the reload and
subscription tests of the cascade, where the SIGHUP handler and the daemon's wiring are the production ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from gwproc import GATEWAY_ID, DaemonProcess, daemon_config
from upper_harness import UPPER_DOMAIN, FakeUpper
from wire import free_port

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import MediaOptions
from gbgw.gb28181 import manscdp
from gbgw.gb28181.manscdp import ManscdpDocument
from gbgw.sip.message import Request, Response

MANSCDP = "Application/MANSCDP+xml"


async def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class DaemonRig:
    process: DaemonProcess
    config: dict[str, Any]
    config_path: Path
    simulator: DeviceSimulator
    tmp_path: Path

    def channel(self, device: int, channel: int = 1) -> str:
        cfg = self.simulator.config
        return cfg.channel_id(cfg.start + device, channel)

    async def reload(self, **changes: Any) -> dict[str, Any]:
        """Write ``changes`` (top-level sections) into the file, SIGHUP, and wait for the reload line."""
        self.config.update(changes)
        self.config_path.write_text(yaml.safe_dump(self.config), encoding="utf-8")
        before = len(self.process.log_events())
        self.process.send_signal(signal.SIGHUP)
        return await self.process.wait_log("configuration reloaded", after=before)

    def audit(self, action: str) -> list[dict[str, Any]]:
        path = self.tmp_path / "audit.log"
        if not path.exists():
            return []
        return [r for r in map(json.loads, path.read_text().splitlines()) if r["action"] == action]


@contextlib.asynccontextmanager
async def daemon_rig(tmp_path: Path, upstreams: list[dict[str, Any]], *, devices: int = 1, channels: int = 2,
                     clip: Path | None = None, sip: dict[str, Any] | None = None) -> AsyncIterator[DaemonRig]:
    config, sip_port, _ = daemon_config(tmp_path, sip={"t1": 0.1, "t2": 0.5, **(sip or {})},
                                        media={"ports": "30000-30999"})
    config["upstreams"] = upstreams
    config_path = tmp_path / "gateway.yaml"
    process = DaemonProcess.with_config(config, config_path, tmp_path / "gateway.log")
    media = MediaOptions(file=clip, fps=25) if clip is not None else MediaOptions()
    simulator = DeviceSimulator(SimulatorConfig(server_host="127.0.0.1", server_port=sip_port, count=devices,
                                                channels=channels, media=media))
    try:
        await process.start()
        await simulator.start()
        await simulator.wait_registered(timeout=10)
        await wait_until(lambda: sum(e.get("event") == "catalog received" for e in process.log_events()) >= devices,
                         15, "the cameras' catalogs")
        yield DaemonRig(process, config, config_path, simulator, tmp_path)
    finally:
        await simulator.stop(unregister=False, timeout=1)
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(AssertionError, TimeoutError):
            await process.wait(timeout=10)
        await process.ensure_stopped()


def upstream_entry(upper: FakeUpper, name: str, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name, "id": upper.id, "domain": UPPER_DOMAIN, "address": f"{upper.host}:{upper.port}",
        "listen": f"127.0.0.1:{free_port()}", "media_ip": "127.0.0.1", "media_ports": "41000-41999",
        "password": upper.password, "keepalive_interval": 5, "share": [{"prefix": "34020000"}],
    }
    entry.update(overrides)
    return entry


async def subscribe(upper: FakeUpper, doc: ManscdpDocument, expires: int, event: str,
                    call_id: str | None = None) -> tuple[Request, Response]:
    request = upper.request("SUBSCRIBE", GATEWAY_ID, manscdp.encode_body(doc, "GB2312"), MANSCDP,
                            headers=[("Event", event), ("Expires", str(expires))])
    if call_id is not None:
        request.set("Call-ID", call_id)
    return request, await upper.send(request)


def notified(upper: FakeUpper, call_id: str, cmd_type: str) -> list[ManscdpDocument]:
    """The NOTIFY bodies of ``cmd_type`` the upper got in the subscription dialog ``call_id``."""
    return [r.doc for r in upper.requests
            if r.request.method == "NOTIFY" and r.request.call_id == call_id and r.doc is not None
            and r.doc.cmd_type == cmd_type]


def catalog_events(docs: list[ManscdpDocument]) -> set[tuple[str, str]]:
    """(DeviceID, Event) of every item of catalog NOTIFYs."""
    found = set()
    for doc in docs:
        for item in doc.element.iter("Item"):
            found.add((item.findtext("DeviceID") or "", item.findtext("Event") or ""))
    return found

"""The browser tests drive the same in-process gateway as tests/gb28181 (its harness modules, imported
from there) and start it the same way."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gb28181"))

import aiohttp
from access_harness import BASE_CONFIG, OffsetClock, RunningGateway, captured_logs
from gwproc import merge_config

from gbgw.gb28181.app.daemon import Gateway
from gbgw.gb28181.config import HostPort, load_config


@pytest.fixture
async def console_gateway(tmp_path: Path) -> AsyncIterator[Callable[[dict[str, Any]], Awaitable[RunningGateway]]]:
    """Start one gateway with config overrides (the YAML shape) merged into the harness's base config."""
    running: list[RunningGateway] = []

    async def start(overrides: dict[str, Any]) -> RunningGateway:
        data = merge_config(BASE_CONFIG, {"storage": {"backend": "sqlite", "path": str(tmp_path / "gw.db")},
                                          "audit": {"path": str(tmp_path / "audit.log")}})
        config = load_config(merge_config(data, overrides))
        config.sip.listen = HostPort("127.0.0.1", 0)
        config.api.listen = HostPort("127.0.0.1", 0)
        clock = OffsetClock()
        gateway = Gateway(config, clock=clock)
        await gateway.start()
        handle = RunningGateway(gateway, config, clock, log, http)
        running.append(handle)
        return handle

    with captured_logs() as log:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            try:
                yield start
            finally:
                for handle in running:
                    await handle.stop()

"""Fixtures for the device-access integration tests (helpers in access_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from access_harness import BASE_CONFIG, OffsetClock, RunningGateway, Sipp, capture_logs, merge_config

from gb28181.config import HostPort, load_config
from gb28181.daemon import Gateway


@pytest.fixture
async def gateway_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RunningGateway]]]:
    """Start gateways (config overrides in the YAML shape, merged into BASE_CONFIG); all stopped after."""
    running: list[RunningGateway] = []
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def start(overrides: dict[str, Any] | None = None) -> RunningGateway:
        data = merge_config(BASE_CONFIG, {"storage": {"backend": "sqlite", "path": str(tmp_path / f"gw{len(running)}.db")}})
        config = load_config(merge_config(data, overrides or {}))
        config.sip.listen = HostPort("127.0.0.1", 0)
        config.api.listen = HostPort("127.0.0.1", 0)
        log = capture_logs()
        gateway = Gateway(config)
        clock = OffsetClock()
        gateway.access.clock = clock
        await gateway.start()
        handle = RunningGateway(gateway, config, clock, log, http)
        running.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in running:
            await handle.stop()
        await http.close()


@pytest.fixture
async def gateway(
    request: pytest.FixtureRequest, gateway_factory: Callable[..., Awaitable[RunningGateway]]
) -> RunningGateway:
    """A running gateway; parametrize indirectly with a dict of config overrides to change its config."""
    return await gateway_factory(getattr(request, "param", None))


@pytest.fixture
def sipp(tmp_path: Path) -> Sipp:
    return Sipp(tmp_path)

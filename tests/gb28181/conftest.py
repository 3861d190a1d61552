"""Fixtures for the device-access integration tests (helpers in access_harness.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from access_harness import BASE_CONFIG, OffsetClock, RunningGateway, Sipp, captured_logs
from gwproc import merge_config

from gbgw.gb28181.app.daemon import Gateway
from gbgw.gb28181.config import HostPort, StorageConfig, load_config, load_config_file


@pytest.fixture
async def gateway_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RunningGateway]]]:
    """Start gateways (config overrides in the YAML shape, or a YAML file); all stopped after.

    Their logs go to one buffer (``RunningGateway.log_text``) for the whole test.
    """
    running: list[RunningGateway] = []

    async def start(overrides: dict[str, Any] | Path | None = None) -> RunningGateway:
        """``overrides``: a dict merged into BASE_CONFIG, or a YAML file (read as the daemon reads it)."""
        path = tmp_path / f"gw{len(running)}.db"
        if isinstance(overrides, Path):
            config = load_config_file(overrides)
            config.storage = StorageConfig("sqlite", str(path))
            config.audit.path = str(tmp_path / f"audit{len(running)}.log")
        else:
            data = merge_config(BASE_CONFIG, {"storage": {"backend": "sqlite", "path": str(path)},
                                              "audit": {"path": str(tmp_path / f"audit{len(running)}.log")}})
            config = load_config(merge_config(data, overrides or {}))
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


@pytest.fixture
async def gateway(
    request: pytest.FixtureRequest, gateway_factory: Callable[..., Awaitable[RunningGateway]]
) -> RunningGateway:
    """A running gateway; parametrize indirectly with a dict of config overrides to change its config."""
    return await gateway_factory(getattr(request, "param", None))


@pytest.fixture
def sipp(tmp_path: Path) -> Sipp:
    return Sipp(tmp_path)

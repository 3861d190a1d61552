"""Fixtures for the device-access integration tests (helpers in access_harness.py)."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from access_harness import BASE_CONFIG, OffsetClock, RunningGateway, Sipp, captured_logs, merge_config

from gb28181.config import HostPort, load_config
from gb28181.daemon import Gateway


@pytest.fixture
async def gateway_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[RunningGateway]]]:
    """Start gateways (config overrides in the YAML shape, merged into BASE_CONFIG); all stopped after.

    Their logs go to one buffer (``RunningGateway.log_text``) for the whole test.
    """
    running: list[RunningGateway] = []

    async def start(overrides: dict[str, Any] | None = None) -> RunningGateway:
        path = tmp_path / f"gw{len(running)}.db"
        data = merge_config(BASE_CONFIG, {"storage": {"backend": "sqlite", "path": str(path)}})
        config = load_config(merge_config(data, overrides or {}))
        config.sip.listen = HostPort("127.0.0.1", 0)
        config.api.listen = HostPort("127.0.0.1", 0)
        clock = OffsetClock()
        for attempt in range(5):
            gateway = Gateway(config)
            gateway.access.clock = clock
            try:
                await gateway.start()
                break
            except OSError as exc:
                # Port 0 lets the UDP socket pick a port that may be busy on TCP (see the xfail in
                # test_access_sipp.py); a new pick almost always works.
                await gateway.stop()
                if exc.errno != errno.EADDRINUSE or attempt == 4:
                    raise
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

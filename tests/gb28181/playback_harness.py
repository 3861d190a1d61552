"""A gateway and a simulated NVR serving recordings, for the record search and playback tests: the
daemon's own recorded-video service (``HistorySessions``) and API."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from access_harness import PASSWORD, RunningGateway

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import MediaOptions
from gbgw.gb28181.media.history import HistorySessions

FPS = 25
DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"


def make_clip(directory: Path) -> Path:
    """2 s of 320x240 H.264 at 25 fps, a keyframe each second, no B-frames (as cameras record)."""
    path = directory / "clip.h264"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}",
         "-t", "2", "-g", str(FPS), "-bf", "0", "-c:v", "libx264", "-f", "h264", str(path)],
        check=True, timeout=60,
    )
    return path


def window(seconds: float, ago: float = 3600.0) -> tuple[str, str]:
    """A recorded range of ``seconds`` starting ``ago`` seconds back, as the API writes times."""
    start = (datetime.now().astimezone() - timedelta(seconds=ago)).replace(microsecond=0)
    return start.isoformat(), (start + timedelta(seconds=seconds)).isoformat()


@dataclass
class PlaybackRig:
    gateway: RunningGateway
    simulator: DeviceSimulator
    history: HistorySessions
    api_url: str

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        async with self.gateway.http.request(method, self.api_url + path, json=body) as response:
            return response.status, await response.json()

    async def start(self, kind: str, body: dict[str, Any]) -> tuple[int, Any]:
        return await self.call("POST", f"/api/devices/{DEVICE}/channels/{CHANNEL}/{kind}", body)

    async def session(self, session_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/api/sessions/{session_id}")
        assert status == 200, (status, body)
        return dict(body)

    async def control(self, session_id: str, **body: Any) -> tuple[int, Any]:
        return await self.call("POST", f"/api/sessions/{session_id}/control", body)

    async def ended(self, session_id: str, timeout: float) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            session = await self.session(session_id)
            return session if session["state"] == "ended" else None

        return dict(await self.gateway.wait_for(check, timeout, f"session {session_id} to end"))

    async def close(self) -> None:
        await self.simulator.stop(unregister=False, timeout=1)


@pytest.fixture
async def playback_rig(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Callable[..., Awaitable[PlaybackRig]]]:
    """``make(media=..., gateway_config=..., **simulator)``: a gateway and one simulated camera with
    recordings, registered, its catalog known."""
    rigs: list[PlaybackRig] = []
    clip = make_clip(tmp_path_factory.mktemp("playback-clip"))

    async def make(gateway_config: dict[str, Any] | None = None, media: dict[str, Any] | None = None,
                   **simulator: Any) -> PlaybackRig:
        gateway = await gateway_factory(gateway_config or {})
        sim = DeviceSimulator(SimulatorConfig(
            server_host="127.0.0.1", server_port=gateway.sip_port, password=PASSWORD,
            media=MediaOptions(file=clip, fps=FPS, **(media or {})), **simulator,
        ))
        rig = PlaybackRig(gateway, sim, gateway.gateway.history, gateway.api_url)
        rigs.append(rig)
        await sim.start()
        await sim.wait_registered(timeout=5)

        async def channel_known() -> bool:
            return gateway.gateway.registry.channel(CHANNEL, DEVICE) is not None

        await gateway.wait_for(channel_known, 5, "the camera's catalog")
        return rig

    yield make
    for rig in rigs:
        await rig.close()

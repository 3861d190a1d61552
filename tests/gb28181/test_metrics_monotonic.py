"""Property: no counter of /metrics ever goes down, whatever happens to sessions, streams and devices.

Random sequences of receivers joining and leaving, device streams ending (idle timeout) and restarting, and
the camera going offline (missed keepalives, the gateway's clock moved) and coming back, against a real
gateway and a simulated camera streaming H.264; /metrics is sampled after every step and every counter
sample (``_total``, histogram ``_count``/``_sum``/``_bucket``) must be at least its previous value.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from access_harness import PASSWORD, RunningGateway
from gwproc import parse_metrics
from media_harness import Sink

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import MediaOptions

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg)")

DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"
ACTIONS = ("join", "join", "leave", "leave_all", "offline", "wait")
STEPS = 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("monotonic") / "clip.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
                    "-t", "2", "-g", "25", "-bf", "0", "-c:v", "libx264", "-f", "h264", str(path)],
                   check=True, timeout=60)
    return path


def counter_samples(text: str) -> dict[str, float]:
    counters = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")
                and line.split()[3] == "counter"}
    histograms = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")
                  and line.split()[3] == "histogram"}
    out = {}
    for key, value in parse_metrics(text).items():
        name = key.partition("{")[0]
        if name in counters or any(name in (f"{h}_count", f"{h}_sum", f"{h}_bucket") for h in histograms):
            out[key] = value
    return out


class Rig:
    def __init__(self, gateway: RunningGateway, clip: Path) -> None:
        self.gateway = gateway
        self.clip = clip
        self.sinks: dict[str, Sink] = {}
        self.last: dict[str, float] = {}
        self.simulator: DeviceSimulator | None = None

    async def device_up(self) -> None:
        self.simulator = DeviceSimulator(SimulatorConfig(
            server_host="127.0.0.1", server_port=self.gateway.sip_port, password=PASSWORD, keepalive_interval=1,
            media=MediaOptions(file=self.clip, fps=25)))
        await self.simulator.start()
        await self.simulator.wait_registered(timeout=5)

        async def channel_known() -> bool:
            status, channels = await self.gateway.api(f"/api/devices/{DEVICE}/channels")
            return status == 200 and any(c["id"] == CHANNEL for c in channels)

        await self.gateway.wait_for(channel_known, 5, "the camera's catalog")

    async def sample(self, step: str) -> None:
        _, text = await self.gateway.api("/metrics")
        now = counter_samples(text)
        went_down = {k: (v, now.get(k)) for k, v in self.last.items() if now.get(k, -1.0) < v}
        assert not went_down, f"after {step}: {went_down}"
        self.last = now

    async def join(self) -> None:
        sink = await Sink.open("udp")
        async with self.gateway.http.post(f"{self.gateway.api_url}/api/channels/{CHANNEL}/play",
                                          json=sink.request()) as response:
            body = await response.json()
        if response.status != 200:
            await sink.close()
            return
        self.sinks[body["id"]] = sink
        await sink.first_packet()

    async def leave(self, session_id: str) -> None:
        await self.gateway.api(f"/api/sessions/{session_id}", "DELETE")
        await self.sinks.pop(session_id).close()

    async def offline(self) -> None:
        assert self.simulator is not None
        await self.simulator.stop(unregister=True, timeout=1)
        for session_id in list(self.sinks):
            await self.sinks.pop(session_id).close()

        async def offline() -> bool:
            return not (await self.gateway.device(DEVICE))["online"]

        await self.gateway.wait_for(offline, 5, "the camera offline")
        await self.device_up()

    async def close(self) -> None:
        for sink in self.sinks.values():
            await sink.close()
        if self.simulator is not None:
            await self.simulator.stop(unregister=False, timeout=1)


@pytest.fixture
async def rig(gateway_factory, clip: Path) -> AsyncIterator[Rig]:  # type: ignore[no-untyped-def]
    gateway = await gateway_factory({"media": {"ports": "31000-31999", "idle_timeout": 0.3}})
    made = Rig(gateway, clip)
    await made.device_up()
    yield made
    await made.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_counters_never_go_down(rig: Rig, seed: int) -> None:
    rng = random.Random(seed)
    await rig.sample("start")
    for step in range(STEPS):
        action = rng.choice(ACTIONS)
        if action == "join":
            await rig.join()
        elif action == "leave" and rig.sinks:
            await rig.leave(rng.choice(sorted(rig.sinks)))
        elif action == "leave_all":
            for session_id in sorted(rig.sinks):
                await rig.leave(session_id)
            await asyncio.sleep(0.5)  # past the idle timeout: the device stream ends and restarts on the next join
        elif action == "offline":
            await rig.offline()
        else:
            await asyncio.sleep(0.3)
        await rig.sample(f"step {step} ({action})")
    await rig.join()
    await asyncio.sleep(0.2)
    await rig.sample("final join")
    assert rig.last["gb_relay_out_packets_total"] > 0

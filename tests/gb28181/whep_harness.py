"""The console and WHEP routes of a running gateway: the daemon's own API application and its
`WhepViewers` (``gateway.whep``, from the ``console`` config), and simulated cameras streaming real H.264
(ffmpeg-made, libx264's default High profile) or H.265 as PS over RTP."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from access_harness import PASSWORD, RunningGateway

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import MediaOptions
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.gb28181.webrtc import WhepViewers

FPS = 25
WIDTH, HEIGHT = 640, 360
DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"
SDP = "application/sdp"
TOKENS = {"operator": "console-0perator-T0ken-bbbbbbbb", "viewer": "console-v1ewer-T0ken-aaaaaaaaaa"}
TOKEN_CONFIG = {"api": {"tokens": [{"name": f"{role}-holder", "role": role,
                                    "sha256": hashlib.sha256(token.encode()).hexdigest()}
                                   for role, token in TOKENS.items()]}}


def make_clip(folder: Path, seconds: int = 4, *, codec: str = "h264", size: str = f"{WIDTH}x{HEIGHT}") -> Path:
    """Test pattern in 4:2:0 (what cameras send; libx264 makes High 4:4:4 from testsrc's RGB otherwise),
    libx264's default profile (High) or libx265's Main, one keyframe per second, no B-frames."""
    path = folder / f"clip-{size}.{codec}"
    encoder = (["-c:v", "libx264", "-bf", "0"] if codec == "h264"
               else ["-c:v", "libx265", "-x265-params", "log-level=error:bframes=0"])
    subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
         f"testsrc=size={size}:rate={FPS}", "-t", str(seconds), "-pix_fmt", "yuv420p",
         *encoder, "-g", str(FPS), "-f", "h264" if codec == "h264" else "hevc", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def h264_profile(path: Path) -> str:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=profile", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.strip()


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


@dataclass
class ConsoleRig:
    gateway: RunningGateway
    viewers: WhepViewers
    metrics: GatewayMetrics
    url: str
    token: str | None
    simulators: list[DeviceSimulator] = field(default_factory=list)

    def auth(self, token: str | None = None) -> dict[str, str]:
        token = token or self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def whep_path(self, device: str = DEVICE, channel: str = CHANNEL) -> str:
        return f"/api/devices/{device}/channels/{channel}/whep"

    async def offer(self, sdp: str, *, path: str | None = None, headers: dict[str, str] | None = None,
                    content_type: str = SDP) -> tuple[int, dict[str, str], str]:
        sent = {**self.auth(), "Content-Type": content_type, **(headers or {})}
        async with self.gateway.http.post(self.url + (path or self.whep_path()), data=sdp.encode(),
                                          headers=sent) as r:
            return r.status, dict(r.headers), await r.text()

    async def call(self, path: str, method: str = "GET", **kwargs: Any) -> tuple[int, Any]:
        async with self.gateway.http.request(method, self.url + path, headers=self.auth(), **kwargs) as r:
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, await r.text()

    async def camera(self, media: MediaOptions, **options: Any) -> DeviceSimulator:
        """Simulated devices registered, their catalogs in the registry."""
        g = self.gateway.gateway
        sim = DeviceSimulator(SimulatorConfig(server_host="127.0.0.1", server_port=self.gateway.sip_port,
                                              password=PASSWORD, media=media, **options))
        self.simulators.append(sim)
        await sim.start()
        await sim.wait_registered(timeout=10)
        ids = [sim.device_id(i) for i in range(sim.config.count)]

        async def catalogs_in() -> bool:
            return all(len(g.registry.channels(d)) == sim.config.channels for d in ids)

        await self.gateway.wait_for(catalogs_in, 10, "the simulated devices' catalogs")
        return sim

    async def close(self) -> None:
        await self.viewers.close_all()
        for sim in self.simulators:
            await sim.stop(unregister=False, timeout=1)


async def console_rig(gw: RunningGateway, token: str | None = None) -> ConsoleRig:
    """The daemon's API and its viewers; needs the console extra (aiortc), else ``gateway.whep`` is None."""
    viewers = gw.gateway.whep
    assert viewers is not None, "the daemon wires WhepViewers only with aiortc installed"
    return ConsoleRig(gw, viewers, gw.gateway.metrics, gw.api_url, token)

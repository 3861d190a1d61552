"""2022 image capture: SnapShotConfig names an upload URL of the gateway's own, the simulated camera uploads
JPEGs there, the API lists and serves them; the URL's token is the only credential and storage is bounded."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from access_harness import PASSWORD, OffsetClock, RunningGateway
from aiohttp import web
from wire import free_port

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.gb28181.app.api import snapshots as snapshots_api
from gbgw.gb28181.app.api.common import SERVICES, answer_errors
from gbgw.gb28181.devices.control import DeviceControl
from gbgw.gb28181.devices.snapshots import Snapshot, SnapshotCapture, SnapshotStore, UploadRefused

DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg)")


def test_the_store_drops_the_oldest_first() -> None:
    store = SnapshotStore(max_count=3, max_bytes=25)
    for n in range(4):
        store.add(Snapshot(f"s{n}", DEVICE, CHANNEL, "capture-1", float(n), b"\xff\xd8" + b"x" * 8))
    assert [s.id for s in store.of_device(DEVICE)] == ["s3", "s2"]  # 3 x 10 bytes is over 25
    assert store.bytes == 20 and store.get("s0") is None


@pytest.fixture
def jpeg(tmp_path: Path) -> bytes:
    path = tmp_path / "snap.jpg"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48",
                    "-frames:v", "1", str(path)], check=True, timeout=60)
    return path.read_bytes()


@pytest.fixture
async def rig(gateway: RunningGateway, jpeg: bytes) -> AsyncIterator[tuple[RunningGateway, DeviceSimulator, str,
                                                                            SnapshotCapture]]:
    """A camera registered; the capture wired as the daemon wires it, its routes on an application of their
    own whose address is the upload base."""
    gw = gateway.gateway
    runner = gw._runner
    assert runner is not None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    captures = SnapshotCapture(DeviceControl(gw.devices.requests), lambda: base, gateway.clock)
    app = web.Application(middlewares=[answer_errors])
    app[SERVICES] = runner.app[SERVICES]
    app[snapshots_api.SNAPSHOTS] = captures
    app.add_routes(snapshots_api.routes)
    api = web.AppRunner(app)
    await api.setup()
    await web.TCPSite(api, "127.0.0.1", port).start()
    sim = DeviceSimulator(SimulatorConfig(server_host="127.0.0.1", server_port=gateway.sip_port, password=PASSWORD))
    sim.snapshot_image = jpeg
    await sim.start()
    await sim.wait_registered(timeout=5)

    async def channel_known() -> bool:
        return gw.registry.channel(CHANNEL, DEVICE) is not None

    await gateway.wait_for(channel_known, 5, "the camera's catalog")
    yield gateway, sim, base, captures
    await sim.stop(unregister=False, timeout=1)
    await api.cleanup()


async def call(gateway: RunningGateway, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with gateway.http.request(method, url, **kwargs) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.read()


@needs_ffmpeg
async def test_capture_upload_list_and_serve(
    rig: tuple[RunningGateway, DeviceSimulator, str, SnapshotCapture], jpeg: bytes
) -> None:
    gateway, sim, base, _ = rig
    status, answer = await call(gateway, "POST", f"{base}/api/devices/{DEVICE}/channels/{CHANNEL}/snapshots",
                                json={"count": 2, "interval": 1})
    assert status == 200 and answer["result"] == "OK", answer
    config = next(c for c in sim.controls if c.element.find("SnapShotConfig") is not None)
    url = config.text("SnapShotConfig/UploadURL") or ""
    token = config.text("SnapShotConfig/SessionID") or ""
    assert url == f"{base}/api/uploads/snapshots/{token}" and len(token) == 64
    assert config.text("SnapShotConfig/SnapNum") == "2" and config.device_id == CHANNEL

    async def two_listed() -> Any:
        status, listed = await call(gateway, "GET", f"{base}/api/devices/{DEVICE}/snapshots")
        return listed if status == 200 and len(listed) == 2 else None

    listed = await gateway.wait_for(two_listed, 10, "two uploaded images")
    assert sim.snapshot_uploads == [(CHANNEL, 201), (CHANNEL, 201)]
    assert {s["channel_id"] for s in listed} == {CHANNEL} and listed[0]["size"] == len(jpeg)
    status, image = await call(gateway, "GET", f"{base}{listed[0]['url']}")
    assert status == 200 and image == jpeg
    # The capture is complete: its URL takes nothing more.
    status, _ = await call(gateway, "POST", url, data=jpeg, headers={"Content-Type": "image/jpeg"})
    assert status == 404


async def test_uploads_need_the_token_and_a_jpeg(
    rig: tuple[RunningGateway, DeviceSimulator, str, SnapshotCapture]
) -> None:
    gateway, sim, base, captures = rig
    sim.snapshot_image = b""  # the camera takes the command but uploads nothing
    capture = await captures.request(DEVICE, CHANNEL, 1, 1)
    with pytest.raises(UploadRefused) as refused:
        captures.upload("0" * 64, b"\xff\xd8jpeg")
    assert refused.value.status == 404
    with pytest.raises(UploadRefused) as refused:
        captures.upload(capture.token, b"GIF89a")
    assert refused.value.status == 415
    status, _ = await call(gateway, "POST", f"{base}/api/uploads/snapshots/{'f' * 64}", data=b"\xff\xd8",
                           headers={"Content-Type": "image/jpeg"})
    assert status == 404
    clock = gateway.clock
    assert isinstance(clock, OffsetClock)
    clock.advance(3600)
    with pytest.raises(UploadRefused):
        captures.upload(capture.token, b"\xff\xd8late")
    status, body = await call(gateway, "POST", f"{base}/api/devices/{DEVICE}/channels/{CHANNEL}/snapshots",
                              json={"count": 11})
    assert status == 400 and "count" in body["error"]

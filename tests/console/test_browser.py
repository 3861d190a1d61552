"""The console in a real browser: headless Debian Chromium driven by Playwright opens ``/``, logs in with a
token, finds the simulated camera and its Chinese channel names, previews a channel over WebRTC (WHEP) and
sees the <video> element decode frames of a High-profile H.264 stream, presses PTZ left and the camera
receives the PTZCmd, then finds the recordings on the playback timeline, plays one (WHEP on a playback
session) and seeks in it. A screenshot is saved beside the test's temporary files.

Click -> first decoded frame is measured in the page (``requestVideoFrameCallback``) and printed, cold
(the click INVITEs the camera) and with the channel already streaming.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiortc")
pytest.importorskip("playwright.async_api", reason="needs the pip package playwright")
from access_harness import RunningGateway
from gwproc import merge_config
from playwright.async_api import Page, async_playwright
from whep_harness import (
    CHANNEL,
    DEVICE,
    FPS,
    TOKEN_CONFIG,
    TOKENS,
    ConsoleRig,
    console_rig,
    h264_profile,
    have_ffmpeg,
    make_clip,
)

from gbgw.conformance.simulator.config import channel_name
from gbgw.conformance.simulator.media import MediaOptions
from gbgw.gb28181 import manscdp

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian chromium (apt-get install chromium)"),
    pytest.mark.skipif(not have_ffmpeg(), reason="needs ffmpeg/ffprobe (Debian package ffmpeg)"),
    pytest.mark.slow,
]
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # The gateway's only ICE candidate is on loopback here, where Chromium gathers none by default; and its
    # own candidates stay plain addresses rather than mDNS names.
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
]  # fmt: skip


@pytest.fixture
async def rig(console_gateway: Callable[[dict[str, Any]], Awaitable[RunningGateway]],
              tmp_path: Path) -> AsyncIterator[ConsoleRig]:
    clip = make_clip(tmp_path)
    assert h264_profile(clip) == "High"
    config = merge_config(TOKEN_CONFIG, {"media": {"ports": "32000-32999", "idle_timeout": 5}})
    made = await console_rig(await console_gateway(config), TOKENS["operator"])
    await made.camera(MediaOptions(file=clip, fps=FPS), channels=2)
    yield made
    await made.close()


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    async with async_playwright() as p:
        # A new, empty profile: nothing of a previous run (or of a user's browser) is reused.
        context = await p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context.pages[0] if context.pages else await context.new_page()
        finally:
            await context.close()


async def decoded_frames(page: Page) -> int:
    return int(await page.evaluate("document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames"))


async def first_frame_ms(page: Page) -> int:
    await page.wait_for_function("() => document.getElementById('video').dataset.firstFrameMs", timeout=10000)
    return int(await page.get_attribute("#video", "data-first-frame-ms") or "")


async def test_the_console_logs_in_previews_a_channel_and_moves_its_ptz(
    rig: ConsoleRig, page: Page, tmp_path: Path
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))

    await page.goto(rig.url + "/")
    await page.wait_for_selector("#login:not([hidden])")
    await page.fill("#token", TOKENS["operator"])
    await page.click("#login button[type=submit]")
    await page.wait_for_selector(f"[data-device='{DEVICE}']")
    assert "1 devices, 1 online" in await page.inner_text("#summary")
    tree = await page.inner_text("#tree")
    assert "Civil code 3402" in tree and "00 road" in tree

    await page.click(f"[data-device='{DEVICE}']")
    await page.wait_for_selector(f"[data-channel='{CHANNEL}']")
    listed = await page.inner_text("#channel-list")
    assert channel_name(1) in listed and channel_name(2) in listed, listed
    await page.fill("#search", channel_name(2).split()[-1])
    assert await page.locator("#channel-list li").count() == 1
    await page.fill("#search", "")

    await page.click(f"[data-channel='{CHANNEL}']")
    cold = await first_frame_ms(page)
    before = await decoded_frames(page)
    await page.wait_for_timeout(1500)
    after = await decoded_frames(page)
    # 1.5 s at 25 fps is 37 frames; the browser's jitter buffer may still hold a few.
    assert after - before >= 25, (before, after)
    size = await page.evaluate("[document.getElementById('video').videoWidth, document.getElementById('video').videoHeight]")
    assert size == [640, 360]
    assert "live" in await page.inner_text("#preview-status")

    # Again: the device leg is still streaming (idle_timeout), so this one joins it on its cached keyframe.
    await page.click(f"[data-channel='{CHANNEL}']")
    warm = await first_frame_ms(page)
    print(f"\nbrowser click -> first decoded frame: cold (INVITE) {cold} ms, channel already streaming {warm} ms")

    sim = rig.simulators[0]
    left = manscdp.Move.named("left", 0x80).code().serialize()
    stop = manscdp.Move.named("stop", 0x80).code().serialize()
    await page.click("#ptz [data-ptz=left]")
    await rig.gateway.wait_for(lambda: _has(sim.ptz_log, (CHANNEL, stop)), 5, "the PTZ stop")
    assert [code for _, code in sim.ptz_log][-2:] == [left, stop]

    # Playback: the timeline shows what RecordInfo found (the simulator splits any range into 3 recordings);
    # a click plays from there, a second click further on seeks in the same session.
    await page.click("#pb-search")
    await page.wait_for_selector("#timeline .record")
    assert await page.locator("#timeline .record").count() == 3
    box = await page.locator("#timeline").bounding_box()
    assert box is not None
    await page.evaluate("document.getElementById('video').dataset.firstFrameMs = 'stale'")
    await page.mouse.click(box["x"] + box["width"] * 0.05, box["y"] + box["height"] / 2)
    await page.wait_for_function("() => !['stale', ''].includes(document.getElementById('video').dataset.firstFrameMs || '')",
                                 timeout=10000)
    assert "playback" in await page.inner_text("#preview-status")
    viewers = (await rig.call("/api/webrtc/viewers"))[1]
    assert len(viewers) == 1 and viewers[0]["playback"], viewers
    playback = viewers[0]["playback"]
    before = await decoded_frames(page)
    await page.wait_for_function("() => document.getElementById('pb-position').dataset.position !== undefined")
    start_position = float(await page.get_attribute("#pb-position", "data-position") or "0")
    assert start_position < 60
    await page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    # 20 % of the hour searched past the start of the playback: 720 s in.
    await page.wait_for_function("() => Number(document.getElementById('pb-position').dataset.position) >= 700",
                                 timeout=5000)
    session = (await rig.call(f"/api/sessions/{playback}"))[1]
    assert session["state"] == "streaming" and 700 <= session["position"] < 760, session
    await page.wait_for_timeout(1500)
    assert await decoded_frames(page) - before >= 25

    await page.wait_for_timeout(300)
    shot = tmp_path / "console.png"
    await page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    assert not problems, problems
    # Nothing from elsewhere: no CDN, no font or script from outside the gateway.
    assert all(url.startswith(rig.url) for url in requested), [u for u in requested if not u.startswith(rig.url)]
    assert len(rig.viewers) == 1
    # Live updates come over fetch() with the token in a header, not as a URL parameter.
    assert rig.url + "/api/events" in requested


async def _has(log: Any, entry: tuple[str, str]) -> bool:
    return entry in log

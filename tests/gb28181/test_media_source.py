"""Where media may come from (issue 10, item 7): ``media_source`` per device, per upstream and globally.

A camera registers from 127.0.0.1 but streams from 127.0.0.5 (a lower platform's media server on another
host, a multi-homed NVR), and says 127.0.0.5 in its SDP answer. By default (``signalling``) that media is
refused and the play fails at "bad media" naming the rule; ``sdp`` takes it because the answer's ``c=``
names it; a network list takes it because the administrator listed it. The simulator's media socket is
moved to 127.0.0.5 by wrapping its answer (its SIP stays on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_cascade_media as cascade_media
from media_harness import Sink
from playback_harness import playback_rig, window  # noqa: F401 (fixture)
from test_cascade_media import clip  # noqa: F401 (fixture)
from test_live import CHANNEL, DEVICE, LiveRig, clips, media_config, rig_factory  # noqa: F401 (fixtures)

from gbgw.conformance.simulator.media import MediaCall, MediaOptions

MEDIA_HOST = "127.0.0.5"


@pytest.fixture
def media_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated devices bind their media (and so their SDP c=) on MEDIA_HOST."""
    original = MediaCall.answer.__func__  # type: ignore[attr-defined]

    def answer(cls: type[MediaCall], *args: Any, **kwargs: Any) -> Any:
        kwargs["bind"] = MEDIA_HOST
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(MediaCall, "answer", classmethod(answer))


async def _play(rig: LiveRig) -> tuple[int, dict[str, Any], int]:
    sink = await Sink.open("udp")
    try:
        status, body = await rig.play(sink.request())
        if status == 200:
            await sink.first_packet()
        return status, body, len(sink.rtp())
    finally:
        await sink.close()


@pytest.mark.usefixtures("media_elsewhere")
async def test_media_from_another_address_than_signalling_is_refused_by_default(
    rig_factory: Callable[..., Any], clips: dict[str, Path]  # noqa: F811
) -> None:
    rig = await rig_factory(MediaOptions(file=clips["h264"]), media_config(first_packet_timeout=1.0))
    status, body, packets = await _play(rig)
    assert status == 502 and body["stage"] == "bad media", body
    assert "foreign source" in body["error"] and "media_source" in body["error"] and "signalling" in body["error"]
    assert packets == 0


@pytest.mark.usefixtures("media_elsewhere")
async def test_device_with_media_source_sdp_streams_from_its_sdp_address(
    rig_factory: Callable[..., Any], clips: dict[str, Path]  # noqa: F811
) -> None:
    config = {**media_config(first_packet_timeout=2.0), "devices": [{"id": DEVICE, "media_source": "sdp"}]}
    rig = await rig_factory(MediaOptions(file=clips["h264"]), config)
    status, body, packets = await _play(rig)
    assert status == 200, body
    assert packets > 0
    assert body["state"] == "streaming" and body["device"]["dropped"] == {}, body


@pytest.mark.usefixtures("media_elsewhere")
@pytest.mark.parametrize(("networks", "plays"), [(["127.0.0.4/30"], True), (["127.0.0.1/32"], False)])
async def test_media_source_network_list_decides_alone(
    rig_factory: Callable[..., Any], clips: dict[str, Path], networks: list[str], plays: bool  # noqa: F811
) -> None:
    """A network list admits exactly what it lists: not the signalling address, not the SDP's word."""
    rig = await rig_factory(MediaOptions(file=clips["h264"]),
                            {"media": {"ports": "30000-30999", "first_packet_timeout": 1.0, "media_source": networks}})
    status, body, packets = await _play(rig)
    if plays:
        assert status == 200 and packets > 0, body
    else:
        assert status == 502 and body["stage"] == "bad media", body
        assert packets == 0


@pytest.mark.usefixtures("media_elsewhere")
async def test_tcp_passive_device_connecting_from_its_media_host_follows_the_rule(
    rig_factory: Callable[..., Any], clips: dict[str, Path]  # noqa: F811
) -> None:
    """The gateway listens (tcp-passive device leg): a connection from 127.0.0.5 counts as foreign by
    default and is admitted under ``sdp``."""
    refused = await rig_factory(MediaOptions(file=clips["h264"]),
                                media_config(first_packet_timeout=1.0, stream_transport="tcp-passive"))
    status, body, _ = await _play(refused)
    assert status == 502 and "foreign connection" in body["error"], body
    config = {**media_config(first_packet_timeout=2.0, stream_transport="tcp-passive"),
              "devices": [{"id": DEVICE, "media_source": "sdp"}]}
    admitted = await rig_factory(MediaOptions(file=clips["h264"]), config)
    status, body, packets = await _play(admitted)
    assert status == 200 and packets > 0, body
    assert body["channel_id"] == CHANNEL


@pytest.mark.usefixtures("media_elsewhere")
@pytest.mark.parametrize(("kind", "media_source"), [("playback", None), ("playback", "sdp"), ("download", "sdp")])
async def test_playback_and_download_legs_follow_the_devices_media_source(
    playback_rig: Callable[..., Any], kind: str, media_source: str | None  # noqa: F811
) -> None:
    """Recorded video is its own device leg: the same rule applies to it as to live video."""
    config: dict[str, Any] = media_config(first_packet_timeout=1.0 if media_source is None else 2.0)
    if media_source is not None:
        config["devices"] = [{"id": DEVICE, "media_source": media_source}]
    rig = await playback_rig(config)
    start, end = window(2)
    sink = await Sink.open("udp")
    try:
        status, body = await rig.start(kind, {"start": start, "end": end, **sink.request()})
        if media_source is None:
            assert status == 502 and body["stage"] == "bad media", body
            assert "foreign source" in body["error"] and "media_source" in body["error"], body
            assert sink.rtp() == []
        else:
            assert status == 200, body
            await sink.first_packet()
            assert sink.rtp()
    finally:
        await sink.close()


# -- an upper's TCP-passive output -------------------------------------------------------------------------

UPPER_MEDIA_HOST = "127.0.0.7"
"""Where the upper's media server connects from: neither its SIP address nor its offer's c= (127.0.0.1)."""


async def _pull_from(port: int) -> int:
    """Connect to the gateway's TCP-passive output from UPPER_MEDIA_HOST; bytes received in 2 s (0 when
    the gateway closes the connection it refused)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(UPPER_MEDIA_HOST, 0))
    received = 0
    try:
        async with asyncio.timeout(2.0):
            while chunk := await reader.read(65536):
                received += len(chunk)
                if received > 10_000:
                    break
    except TimeoutError:
        pass
    finally:
        writer.close()
    return received


@pytest.mark.parametrize(("media_source", "relayed"), [(None, False), (["127.0.0.6/31"], True)])
async def test_upper_media_server_connecting_from_another_address_than_its_c_line(
    gateway_factory: Callable[..., Any], clip: Path, media_source: list[str] | None, relayed: bool  # noqa: F811
) -> None:
    """By default only the upper's c= (and SIP) address may connect to the output it asked to be passive;
    ``upstreams[].media_source`` as a network list admits the upper's media server where it really is."""
    upstream = {"media_source": media_source} if media_source is not None else {}
    async with cascade_media.media_rig(gateway_factory, upstream, cascade_media.GATEWAY_MEDIA) as rig:
        await rig.add_cameras(1, 1, **cascade_media.cameras(clip))
        sink = await Sink.open("tcp-passive")
        try:
            call = await cascade_media.invite(rig.upper, cascade_media.CHANNEL, cascade_media.upper_offer(sink))
            assert call.response.status == 200, call.response.start_line()
            received = await _pull_from(call.media_port)
        finally:
            await sink.close()
    assert (received > 0) is relayed, received

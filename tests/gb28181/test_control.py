"""Operating cameras through the API, end to end against simulated devices: the exact PTZCmd bytes that
reached the device, the Result answered, the state the device shows afterwards, refusals and silences,
duplicate channel IDs on two devices, and alarm subscriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from access_harness import RunningGateway
from control_harness import ControlApi, control_api, end_event_subscription
from media_harness import Sink
from playback_harness import make_clip

from gbgw.conformance.simulator.media import MediaOptions

# Written out by hand from A.3 (byte 2 0F: version 0 and check nibble (A + 5 + 0) % 16; byte 3 address 1;
# byte 8 the sum of bytes 1-7 mod 256), not computed by the codec under test.
MOVES_AT_128 = {
    "left": "A50F010280000037",
    "right": "A50F010180000036",
    "up": "A50F01080080003D",
    "down": "A50F010400800039",
    "upleft": "A50F010A808000BF",
    "upright": "A50F0109808000BE",
    "downleft": "A50F0106808000BB",
    "downright": "A50F0105808000BA",
    "zoomin": "A50F011000008045",
    "zoomout": "A50F012000008055",
    "stop": "A50F0100000000B5",
}


@pytest.fixture
async def api(gateway: RunningGateway) -> AsyncIterator[ControlApi]:
    handle = await control_api(gateway)
    try:
        yield handle
    finally:
        await handle.close()


async def test_every_ptz_direction_reaches_the_device_as_its_exact_code(api: ControlApi) -> None:
    sim = await api.simulator(channels=2)
    device = sim.device_id(0)
    channel = sim.config.channel_id(1, 2)
    for command, code in MOVES_AT_128.items():
        status, body = await api.call(f"/api/devices/{device}/channels/{channel}/ptz",
                                      body={"command": command, "speed": 128})
        assert status == 200, body
        assert body["result"] == "OK" and body["answered"] == "accepted" and body["ptz_cmd"] == code
        assert sim.ptz_log[-1] == (channel, code)
    status, body = await api.call(f"/api/devices/{device}/channels/{channel}/ptz", body={"command": "left", "speed": 255})
    assert sim.ptz_log[-1] == (channel, "A50F0102FF0000B6")
    assert (await api.call(f"/api/devices/{device}/channels/{channel}/ptz", body={"command": "spin"}))[0] == 400
    assert (await api.call(f"/api/devices/{device}/channels/{channel}/ptz",
                           body={"command": "left", "speed": 256}))[0] == 400


async def test_focus_iris_presets_and_position(api: ControlApi) -> None:
    sim = await api.simulator(channels=1, presets=2)
    device, channel = sim.device_id(0), sim.config.channel_id(1, 1)
    base = f"/api/devices/{device}/channels/{channel}"
    status, body = await api.call(f"{base}/focus-iris", body={"iris": "open"})
    assert status == 200 and sim.ptz_log[-1] == (channel, "A50F014400800079")
    await api.call(f"{base}/focus-iris", body={"focus": "near"})
    assert sim.ptz_log[-1] == (channel, "A50F014280000077")

    await api.call(f"{base}/ptz/precise", body={"pan": 123.5, "tilt": 10, "zoom": 2})
    status, position = await api.call(f"{base}/ptz/position", "GET")
    assert status == 200 and (position["pan"], position["tilt"], position["zoom"]) == (123.5, 10.0, 2.0)

    status, body = await api.call(f"{base}/presets/7", body={"action": "set", "name": "南门"})
    assert status == 200 and body["ptz_cmd"] == "A50F01810007003D" and sim.ptz_log[-1] == (channel, "A50F01810007003D")
    status, listed = await api.call(f"{base}/presets", "GET")
    assert status == 200 and {"id": "7", "name": "南门"} in listed["presets"] and len(listed["presets"]) == 3

    await api.call(f"{base}/ptz", body={"command": "right", "speed": 255})
    moved = (await api.call(f"{base}/ptz/position", "GET"))[1]
    assert moved["pan"] != 123.5
    status, body = await api.call(f"{base}/presets/7", body={"action": "call"})
    assert status == 200 and sim.ptz_log[-1] == (channel, "A50F01820007003E")
    assert (await api.call(f"{base}/ptz/position", "GET"))[1]["pan"] == 123.5

    await api.call(f"{base}/presets/7", body={"action": "delete"})
    assert sim.ptz_log[-1] == (channel, "A50F01830007003F")
    assert all(p["id"] != "7" for p in (await api.call(f"{base}/presets", "GET"))[1]["presets"])
    assert (await api.call(f"{base}/presets/0", body={"action": "call"}))[0] == 400


async def test_cruise_scan_auxiliary_drag_zoom_home_keyframe(api: ControlApi) -> None:
    sim = await api.simulator(channels=1, presets=3)
    device, channel = sim.device_id(0), sim.config.channel_id(1, 1)
    base = f"/api/devices/{device}/channels/{channel}"
    for preset in (1, 2):
        assert (await api.call(f"{base}/cruises/4", body={"action": "add_point", "value": preset}))[0] == 200
    assert sim.ptz_log[-1] == (channel, "A50F01840402003F")
    await api.call(f"{base}/cruises/4", body={"action": "dwell", "value": 300})
    # 300 = 0x12C: byte 6 the low byte, byte 7's high nibble the rest.
    assert sim.ptz_log[-1] == (channel, "A50F0187042C107C")
    status, tracks = await api.call(f"{base}/cruise-tracks", "GET")
    assert status == 200 and tracks["tracks"] == [{"number": 4, "name": "巡航4"}]
    status, track = await api.call(f"{base}/cruise-tracks/4", "GET")
    assert [p["preset_index"] for p in track["points"]] == [1, 2]
    await api.call(f"{base}/cruises/4", body={"action": "start"})
    assert sim.ptz_log[-1] == (channel, "A50F018804000041")

    await api.call(f"{base}/scans/1", body={"action": "left_edge"})
    assert sim.ptz_log[-1] == (channel, "A50F018901010040")
    await api.call(f"{base}/scans/1", body={"action": "stop"})
    assert sim.ptz_log[-1] == (channel, "A50F0100000000B5")
    await api.call(f"{base}/auxiliary/1", body={"on": True})
    assert sim.ptz_log[-1] == (channel, "A50F018C01000042")
    assert sim.camera(channel).auxiliary == {1: True}

    status, body = await api.call(f"{base}/drag-zoom", body={
        "direction": "in", "length": 1920, "width": 1080, "mid_point_x": 960, "mid_point_y": 540,
        "length_x": 200, "length_y": 100})
    assert status == 200 and body["answered"] == "accepted"
    assert sim.controls[-1].text("DragZoomIn/MidPointX") == "960"

    status, body = await api.call(f"{base}/home-position", body={"enabled": True, "reset_time": 60, "preset_index": 2})
    assert status == 200 and body["result"] == "OK" and body["answered"] == "response"
    status, home = await api.call(f"{base}/home-position", "GET")
    assert home["home_position"] == {"enabled": True, "reset_time": 60, "preset_index": 2}

    status, body = await api.call(f"{base}/keyframe")
    assert status == 200 and body["answered"] == "accepted" and sim.controls[-1].text("IFameCmd") == "Send"


async def test_device_commands_guard_record_reset_reboot_config(api: ControlApi) -> None:
    sim = await api.simulator(channels=1)
    device, channel = sim.device_id(0), sim.config.channel_id(1, 1)
    status, body = await api.call(f"/api/devices/{device}/guard", body={"armed": False})
    assert status == 200 and body["result"] == "OK" and body["answered"] == "response"
    assert sim.controls[-1].text("GuardCmd") == "ResetGuard" and sim.controls[-1].device_id == device
    status, state = await api.call(f"/api/devices/{device}/status", "GET")
    assert state["alarms"][0]["state"] == "OFFDUTY"
    await api.call(f"/api/devices/{device}/guard", body={"armed": True})
    assert (await api.call(f"/api/devices/{device}/status", "GET"))[1]["alarms"][0]["state"] == "ONDUTY"

    status, body = await api.call(f"/api/devices/{device}/alarm-reset")
    assert status == 200 and body["result"] == "OK" and sim.controls[-1].text("AlarmCmd") == "ResetAlarm"

    status, body = await api.call(f"/api/devices/{device}/channels/{channel}/record", body={"recording": True})
    assert status == 200 and body["result"] == "OK" and sim.controls[-1].device_id == channel
    assert sim.camera(channel).recording

    status, config = await api.call(f"/api/devices/{device}/config/BasicParam", "GET")
    assert status == 200 and config["sections"]["BasicParam"]["HeartBeatInterval"] == "60"
    assert "Password" not in config["sections"]["BasicParam"]
    status, body = await api.call(f"/api/devices/{device}/config/BasicParam", "PUT", {"HeartBeatInterval": 30})
    assert status == 200 and body["result"] == "OK" and body["command"] == "BasicParam"
    assert sim.camera(device).config["BasicParam"]["HeartBeatInterval"] == "30"

    status, cards = await api.call(f"/api/devices/{device}/sd-cards", "GET")
    assert status == 200 and cards["cards"][0]["format_progress"] == 0
    assert (await api.call(f"/api/devices/{device}/sd-cards/1/format"))[1]["answered"] == "accepted"
    assert (await api.call(f"/api/devices/{device}/sd-cards", "GET"))[1]["cards"][0]["format_progress"] == 100

    status, body = await api.call(f"/api/devices/{device}/upgrade", body={
        "firmware": "V2.0", "file_url": "http://127.0.0.1:8080/fw/v2.bin"})
    assert status == 200 and body["result"] == "OK"
    assert sim.controls[-1].text("DeviceUpgrade/FileURL") == "http://127.0.0.1:8080/fw/v2.bin"
    assert (await api.call(f"/api/devices/{device}/upgrade", body={
        "firmware": "V2.0", "file_url": "http://10.9.9.9/fw.bin"}))[0] == 403

    status, body = await api.call(f"/api/devices/{device}/reboot")
    assert status == 200 and body["answered"] == "accepted" and sim.controls[-1].text("TeleBoot") == "Boot"


async def test_a_refusal_or_a_silence_is_a_clear_error(api: ControlApi) -> None:
    sim = await api.simulator(channels=1, unanswered=("DeviceConfig",))
    device, channel = sim.device_id(0), sim.config.channel_id(1, 1)
    # A home position on a preset the camera never had: the device answers Result ERROR.
    status, body = await api.call(f"/api/devices/{device}/channels/{channel}/home-position",
                                  body={"enabled": True, "preset_index": 99})
    assert status == 502 and body["result"] == "ERROR" and body["stage"] == "request rejected"
    assert "HomePosition" in body["error"]
    api.gateway.config.sip.query_timeout = 0.5
    status, body = await api.call(f"/api/devices/{device}/config/BasicParam", "PUT", {"HeartBeatInterval": 30})
    assert status == 504 and body["stage"] == "no answer"
    await sim.stop()

    async def offline() -> bool:
        return not (await api.gateway.device(device))["online"]

    await api.gateway.wait_for(offline, 5, "the device offline")
    status, body = await api.call(f"/api/devices/{device}/channels/{channel}/ptz", body={"command": "stop"})
    assert status == 409 and body["stage"] == "device offline"
    assert (await api.call(f"/api/devices/{device}/channels/34020000001310099999/ptz",
                           body={"command": "stop"}))[0] == 404


async def test_duplicate_channel_ids_are_addressed_by_device(api: ControlApi) -> None:
    # Two devices whose channel numbering gives both the channel 34020000001310000001.
    first = await api.simulator(channels=1, id_prefix="3402000000132")
    second = await api.simulator(channels=1, id_prefix="3402000000118", presets=1)
    channel = first.config.channel_id(1, 1)
    assert channel == second.config.channel_id(1, 1)
    a, b = first.device_id(0), second.device_id(0)
    assert api.services.channels.devices_with(channel) == sorted([a, b])
    assert "channel ID reported by more than one device" in api.gateway.log_text

    await api.call(f"/api/devices/{a}/channels/{channel}/ptz", body={"command": "up"})
    await api.call(f"/api/devices/{b}/channels/{channel}/ptz", body={"command": "down"})
    assert list(first.ptz_log) == [(channel, MOVES_AT_128["up"])]
    assert list(second.ptz_log) == [(channel, MOVES_AT_128["down"])]
    assert len((await api.call(f"/api/devices/{b}/channels/{channel}/presets", "GET"))[1]["presets"]) == 1
    assert len((await api.call(f"/api/devices/{a}/channels/{channel}/presets", "GET"))[1]["presets"]) == 3

    status, body = await api.call(f"/api/channels/{channel}/play", body={"host": "127.0.0.1", "port": 9})
    assert status == 409 and a in body["error"] and b in body["error"]


async def test_duplicate_channel_ids_are_played_on_the_device_named(api: ControlApi, tmp_path: Path) -> None:
    media = MediaOptions(file=make_clip(tmp_path), fps=25)
    first = await api.simulator(channels=1, id_prefix="3402000000132", media=media)
    second = await api.simulator(channels=1, id_prefix="3402000000118", media=media)
    channel = first.config.channel_id(1, 1)
    a, b = first.device_id(0), second.device_id(0)
    sinks = [await Sink.open("udp"), await Sink.open("udp")]
    try:
        # The device that announced the channel last is the second: the first must still be reachable.
        status, one = await api.call(f"/api/devices/{a}/channels/{channel}/play", body=sinks[0].request())
        assert status == 200, one
        assert one["device_id"] == a and one["channel_id"] == channel
        assert (first.stats.calls, second.stats.calls) == (1, 0)
        status, two = await api.call(f"/api/devices/{b}/channels/{channel}/play", body=sinks[1].request())
        assert status == 200, two
        assert two["device_id"] == b and (first.stats.calls, second.stats.calls) == (1, 1)
        await sinks[0].first_packet()
        await sinks[1].first_packet()
        assert set(api.gateway.gateway.live.streams) == {(a, channel, 0), (b, channel, 0)}
        for device_id in (a, b):
            record = await api.gateway.device(device_id)
            assert record["shared_channel_ids"] == [channel] and isinstance(record["warnings"], list)

        status, joined = await api.call(f"/api/devices/{a}/channels/{channel}/play", body=sinks[1].request())
        assert status == 200 and joined["device_id"] == a and first.stats.calls == 1
        status, body = await api.call(f"/api/channels/{channel}/play", body=sinks[0].request())
        assert status == 409 and a in body["error"] and b in body["error"]
        status, body = await api.call(f"/api/devices/{a}/channels/34020000001310099999/play", body=sinks[0].request())
        assert status == 404
    finally:
        for sink in sinks:
            await sink.close()


async def test_alarm_subscription_subscribed_refreshed_unsubscribed(gateway_factory) -> None:  # type: ignore[no-untyped-def]
    gateway = await gateway_factory({"sip": {"alarm_subscribe": True, "event_subscribe_expires": 120}})
    api = await control_api(gateway)
    try:
        sim = await api.simulator(channels=1)
        device = sim.device_id(0)

        async def subscribed() -> bool:
            return (await api.call(f"/api/devices/{device}/subscriptions", "GET"))[1]["alarm"] is not None \
                and (device, "Alarm") in sim.event_subscriptions

        await gateway.wait_for(subscribed, 5, "the alarm subscription")
        state = (await api.call(f"/api/devices/{device}/subscriptions", "GET"))[1]["alarm"]
        assert state["state"] == "active" and state["refreshes"] == 0
        answer = await sim.notify_alarm(0, description="周界入侵")
        assert answer is not None and answer.status == 200

        async def alarm_stored() -> bool:
            _, alarms = await gateway.api(f"/api/alarms?device_id={device}")
            return any(a["description"] == "周界入侵" for a in alarms)

        await gateway.wait_for(alarm_stored, 5, "the subscribed alarm in /api/alarms")

        gateway.clock.advance(100)  # past 80 % of the 120 s granted
        api.services.events.tick()

        async def refreshed() -> bool:
            return (await api.call(f"/api/devices/{device}/subscriptions", "GET"))[1]["alarm"]["refreshes"] == 1

        await gateway.wait_for(refreshed, 5, "the refresh")
        assert sim.subscription_log[-1] == (device, "Alarm", 120)

        status, body = await api.call(f"/api/devices/{device}/subscriptions/alarm", "DELETE")
        assert status == 200 and body["state"] == "unsubscribed"
        assert sim.subscription_log[-1] == (device, "Alarm", 0)
        assert await sim.notify_alarm(0, description="not subscribed") is None
        _, alarms = await gateway.api(f"/api/alarms?device_id={device}")
        assert [a["description"] for a in alarms] == ["周界入侵"]

        status, body = await api.call(f"/api/devices/{device}/subscriptions/alarm")
        assert status == 200 and body["state"] == "active" and (device, "Alarm") in sim.event_subscriptions

        answer = await end_event_subscription(sim, 0)
        assert answer.status == 200
        state = (await api.call(f"/api/devices/{device}/subscriptions", "GET"))[1]["alarm"]
        assert state["state"] == "ended"
        assert "device ended the event subscription" in gateway.log_text
    finally:
        await api.close()

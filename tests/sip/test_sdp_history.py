"""history_offer: the GB/T 28181 s=Playback / s=Download offer (9.8.2, 9.9), strict on what it writes."""

from __future__ import annotations

from typing import Any

import pytest

from gbgw.sip.sdp import SessionDescription, history_offer

PS = ((96, "PS", 90000),)


def offer(**changes: Any) -> SessionDescription:
    args: dict[str, Any] = {
        "session_name": "Playback",
        "channel_id": "34020000001310000001",
        "start": 1745251200,
        "end": 1745258400,
        "origin_user": "34020000002000000001",
        "address": "10.0.0.1",
        "port": 30000,
        "proto": "RTP/AVP",
        "payloads": PS,
        "ssrc": "1200000001",
    }
    args.update(changes)
    return history_offer(**args)


def test_the_offer_round_trips() -> None:
    sdp = offer(session_name="Download", download_speed=8)
    parsed = SessionDescription.parse(sdp.serialize())
    assert (parsed.session_name, parsed.uri, parsed.timing, parsed.ssrc) == (
        "Download",
        "34020000001310000001:0",
        (1745251200, 1745258400),
        "1200000001",
    )
    assert parsed.media[0].downloadspeed == 8 and parsed.direction_of(parsed.media[0]) == "recvonly"
    assert offer(uri_param=3).uri == "34020000001310000001:3"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"session_name": "Play"}, "history offer"),
        ({"channel_id": ""}, "cannot go in u="),
        ({"channel_id": "3402 0000"}, "cannot go in u="),
        ({"start": 1745258400}, "start < end"),
        ({"start": -1}, "start < end"),
        ({"ssrc": "0200000001"}, "starting with 1"),
        ({"ssrc": "12345"}, "starting with 1"),
        ({"download_speed": 4}, "Download offer only"),
        ({"session_name": "Download", "download_speed": 0}, "at least 1"),
        ({"address": "0.0.0.0"}, "reachable address"),
    ],
)
def test_offers_a_device_could_not_act_on_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        offer(**changes)

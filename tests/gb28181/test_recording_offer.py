"""Playback/download offers toward a device, the history SSRC, and reading the device's answer."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gbgw.gb28181.recording.offer import RecordingAnswer, RecordingKind, history_ssrc, recording_offer
from gbgw.gb28181.recording.times import TimeWindow
from gbgw.sip.sdp import SdpError

SHANGHAI = ZoneInfo("Asia/Shanghai")
CHANNEL = "34020000001310000001"
GATEWAY = "34020000002000000001"
WINDOW = TimeWindow(
    datetime(2025, 4, 22, 0, 0, tzinfo=SHANGHAI), datetime(2025, 4, 22, 2, 0, tzinfo=SHANGHAI)
)


def test_history_ssrc_follows_the_live_rule_with_prefix_1() -> None:
    assert history_ssrc("3402000000", 17) == "1200000017"
    assert history_ssrc("6401060000", 12345) == "1106002345"
    with pytest.raises(ValueError, match="eight digits"):
        history_ssrc("example.org", 1)


def test_playback_offer_bytes() -> None:
    offer = recording_offer(
        RecordingKind.PLAYBACK, CHANNEL, WINDOW, GATEWAY, "10.0.0.1", 30000, "RTP/AVP", "1200000017"
    )
    assert offer.serialize() == (
        b"v=0\r\n"
        b"o=34020000002000000001 0 0 IN IP4 10.0.0.1\r\n"
        b"s=Playback\r\n"
        b"u=34020000001310000001:0\r\n"
        b"c=IN IP4 10.0.0.1\r\n"
        b"t=1745251200 1745258400\r\n"
        b"m=video 30000 RTP/AVP 96 98 97\r\n"
        b"a=recvonly\r\n"
        b"a=rtpmap:96 PS/90000\r\n"
        b"a=rtpmap:98 H264/90000\r\n"
        b"a=rtpmap:97 MPEG4/90000\r\n"
        b"y=1200000017\r\n"
    )


def test_download_offer_over_tcp_carries_the_speed() -> None:
    offer = recording_offer(
        RecordingKind.DOWNLOAD,
        CHANNEL,
        WINDOW,
        GATEWAY,
        "10.0.0.1",
        30002,
        "TCP/RTP/AVP",
        "1200000018",
        setup="passive",
        connection="new",
        download_speed=4,
    )
    text = offer.serialize().decode()
    assert "s=Download\r\n" in text and "m=video 30002 TCP/RTP/AVP 96 98 97\r\n" in text
    assert "a=setup:passive\r\na=connection:new\r\na=downloadspeed:4\r\n" in text
    # A playback never carries a download speed, whatever the caller passed.
    playback = recording_offer(
        RecordingKind.PLAYBACK,
        CHANNEL,
        WINDOW,
        GATEWAY,
        "10.0.0.1",
        30002,
        "RTP/AVP",
        "1200000019",
        download_speed=4,
    )
    assert b"downloadspeed" not in playback.serialize()
    assert RecordingKind.DOWNLOAD.api_name == "download"


def test_a_hikvision_answer_with_t_0_0_and_filesize() -> None:
    answer = RecordingAnswer.parse(
        b"v=0\r\no=34020000001180000001 0 0 IN IP4 192.168.1.64\r\ns=Download\r\nc=IN IP4 192.168.1.64\r\n"
        b"t=0 0\r\nm=video 15060 RTP/AVP 96\r\na=sendonly\r\na=rtpmap:96 PS/90000\r\n"
        b"a=filesize:52428800\r\ny=1200000018\r\nf=\r\n"
    )
    assert answer == RecordingAnswer(
        address="192.168.1.64",
        port=15060,
        is_tcp=False,
        setup=None,
        ssrc="1200000018",
        timing=None,
        filesize=52428800,
        download_speed=None,
    )
    assert not answer.ssrc_differs("1200000018") and answer.ssrc_differs("1200000019")


def test_answers_read_liberally() -> None:
    answer = RecordingAnswer.parse(
        "v=0\no=- 0 0 IN IP4\ns=Playback\nc=IN IP4 \nt=1745251200 1745258400\na=filesize:1000\n"
        "m=video 0 TCP/RTP/AVP 96\na=setup:active\na=downloadspeed:2\n"
    )
    assert (answer.address, answer.port, answer.is_tcp, answer.setup) == ("", 0, True, "active")
    assert (answer.timing, answer.filesize, answer.download_speed, answer.ssrc) == (
        (1745251200, 1745258400),
        1000,
        2,
        None,
    )
    no_timing = RecordingAnswer.parse(b"v=0\r\nm=video 9000 RTP/AVP 96\r\na=filesize:-5\r\n")
    assert (no_timing.timing, no_timing.filesize) == (None, None)
    with pytest.raises(SdpError):
        RecordingAnswer.parse(b"v=0\r\ns=Playback\r\n")
    with pytest.raises(SdpError):
        RecordingAnswer.parse(b"")

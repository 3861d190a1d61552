"""MANSRTSP (Annex B) codec: strict bytes out, tolerant bytes in, errors that know their SIP status."""

from __future__ import annotations

import pytest

from gbgw.gb28181.recording import mansrtsp as rtsp
from gbgw.gb28181.recording.mansrtsp import CSeqCounter, MansrtspError, Method, Request


def test_requests_are_written_strictly() -> None:
    assert rtsp.play(4, position=100).serialize() == b"PLAY RTSP/1.0\r\nCSeq: 4\r\nRange: npt=100-\r\n\r\n"
    assert rtsp.play(3, scale=2).serialize() == b"PLAY RTSP/1.0\r\nCSeq: 3\r\nScale: 2.0\r\n\r\n"
    assert rtsp.play(5, position=12.5, scale=0.25).serialize() == (
        b"PLAY RTSP/1.0\r\nCSeq: 5\r\nScale: 0.25\r\nRange: npt=12.5-\r\n\r\n"
    )
    assert rtsp.resume(2).serialize() == b"PLAY RTSP/1.0\r\nCSeq: 2\r\nRange: npt=now-\r\n\r\n"
    assert rtsp.pause(1).serialize() == b"PAUSE RTSP/1.0\r\nCSeq: 1\r\nPauseTime: now\r\n\r\n"
    assert rtsp.teardown(9).serialize() == b"TEARDOWN RTSP/1.0\r\nCSeq: 9\r\n\r\n"


@pytest.mark.parametrize("scale", rtsp.SCALES)
def test_every_supported_scale_round_trips(scale: float) -> None:
    request = rtsp.play(7, scale=scale)
    assert rtsp.parse_request(request.serialize()) == request


@pytest.mark.parametrize(
    "request_",
    [
        rtsp.play(8, scale=16),
        rtsp.play(8, scale=3),
        rtsp.play(8, position=-1),
        rtsp.play(8, position=float("nan")),
    ],
)
def test_values_devices_are_not_asked_for_are_refused_with_488(request_: Request) -> None:
    with pytest.raises(MansrtspError) as info:
        request_.serialize()
    assert info.value.status == 488


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Annex J's own example: MANSRTSP/1.0, no space after the colon, LF line ends.
        (b"PLAY MANSRTSP/1.0\nCSeq:5\nScale:1.0\nRange:npt=196-\n", Request(Method.PLAY, 5, 196.0, 1.0)),
        (b"play rtsp/1.0\r\ncseq: 2\r\nRANGE: NPT=now-\r\n", Request(Method.PLAY, 2, resume=True)),
        # B.2.1 spells the resume range "ntp=now-".
        (b"PLAY RTSP/1.0\r\nCSeq:2\r\nRange:ntp=now-\r\n\r\n", Request(Method.PLAY, 2, resume=True)),
        (b"\r\n\r\nPLAY RTSP/1.0\r\nCSeq: 6\r\nRange: npt=12.5-30\r\n\r\n", Request(Method.PLAY, 6, 12.5)),
        (b"PAUSE RTSP/1.0\rCSeq: 1\rPauseTime: now\r", Request(Method.PAUSE, 1)),
        (b"TEARDOWN\r\nCSeq: 10\r\n\r\nignored body", Request(Method.TEARDOWN, 10)),
        (b"PLAY RTSP/1.0\r\nCSeq: 3\r\nScale: -2\r\n\r\n", Request(Method.PLAY, 3, scale=-2.0)),
    ],
)
def test_requests_are_read_tolerantly(body: bytes, expected: Request) -> None:
    assert rtsp.parse_request(body) == expected


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"", 400),
        (b"\r\n  \r\n", 400),
        (b"PLAY RTSP/1.0\r\nRange: npt=0-\r\n", 400),
        (b"PLAY RTSP/1.0\r\nCSeq: two\r\n", 400),
        (b"PLAY HTTP/1.1\r\nCSeq: 1\r\n", 400),
        (b"PLAY RTSP/1.0 extra\r\nCSeq: 1\r\n", 400),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nno colon here\r\n", 400),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: fast\r\n", 400),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: inf\r\n", 400),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: 0\r\n", 488),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: smpte=0:10:00-\r\n", 488),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\nRange: npt=-5-\r\n", 400),
        (b"OPTIONS RTSP/1.0\r\nCSeq: 1\r\n", 501),
        ("PLAY RTSP/1.0\r\nCSeq: 1\r\nX: 播放\r\n".encode(), 400),
        (b"PLAY RTSP/1.0\r\nCSeq: 1\r\n" + b"X: y\r\n" * 1000, 400),
    ],
)
def test_unusable_requests_raise_the_status_to_answer_with(body: bytes, status: int) -> None:
    with pytest.raises(MansrtspError) as info:
        rtsp.parse_request(body)
    assert info.value.status == status


def test_an_info_body_must_be_mansrtsp() -> None:
    body = rtsp.pause(1).serialize()
    assert rtsp.parse_info("application/mansrtsp; charset=us-ascii", body).method is Method.PAUSE
    assert rtsp.parse_info("Application/MANSRTSP", body).cseq == 1
    for content_type in (None, "", "Application/MANSCDP+xml"):
        with pytest.raises(MansrtspError) as info:
            rtsp.parse_info(content_type, body)
        assert info.value.status == 415


def test_answers_are_written_and_read() -> None:
    request = rtsp.parse_request(b"PLAY MANSRTSP/1.0\nCSeq:5\nScale:1.0\n")
    assert rtsp.answer(request).serialize() == b"RTSP/1.0 200 OK\r\nCSeq: 5\r\n\r\n"
    assert rtsp.parse_response(b"MANSRTSP/1.0 200 OK\nCSeq:5\n") == rtsp.Response(200, "OK", 5)
    assert rtsp.parse_response(b"rtsp/1.0 457 Invalid Range\r\n\r\n") == rtsp.Response(
        457, "Invalid Range", None
    )
    for bad in (b"SIP/2.0 200 OK\r\nCSeq: 1\r\n", b"RTSP/1.0 OK\r\n", b"RTSP/1.0 200 OK\r\nCSeq: x\r\n"):
        with pytest.raises(MansrtspError) as info:
            rtsp.parse_response(bad)
        assert info.value.status == 502


def test_the_counter_numbers_a_dialog_and_checks_its_answers() -> None:
    counter = CSeqCounter()
    first = counter.pause()
    assert first.cseq == 1 and counter.outstanding == first
    assert counter.check(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n") == rtsp.Response(200, "OK", 1)
    assert counter.outstanding is None
    # The 200 alone is an answer (B.2.6): many devices send no body.
    assert counter.resume().cseq == 2 and counter.check(b"") is None
    assert counter.play(position=30).cseq == 3
    with pytest.raises(MansrtspError) as mismatch:
        counter.check(b"RTSP/1.0 200 OK\r\nCSeq: 2\r\n\r\n")
    assert mismatch.value.status == 502
    counter.play(scale=4)
    with pytest.raises(MansrtspError) as refused:
        counter.check(b"RTSP/1.0 457 Invalid Range\r\nCSeq: 4\r\n\r\n")
    assert refused.value.status == 457 and "457 Invalid Range" in refused.value.reason
    counter.teardown()
    with pytest.raises(MansrtspError) as odd:
        counter.check(b"RTSP/1.0 302 Moved\r\nCSeq: 5\r\n\r\n")
    assert odd.value.status == 502


def test_relaying_renumbers_for_the_other_dialog() -> None:
    upper = rtsp.parse_request(b"PLAY RTSP/1.0\r\nCSeq: 41\r\nScale: 2.0\r\nRange: npt=60-\r\n\r\n")
    device = CSeqCounter(first=7)
    relayed = device.relay(upper)
    assert (relayed.method, relayed.cseq, relayed.position, relayed.scale) == (Method.PLAY, 7, 60.0, 2.0)
    assert device.relay(
        rtsp.parse_request(b"PLAY RTSP/1.0\r\nCSeq: 42\r\nRange: npt=now-\r\n")
    ).serialize() == (b"PLAY RTSP/1.0\r\nCSeq: 8\r\nRange: npt=now-\r\n\r\n")
    # The upper is answered with its own numbering.
    assert rtsp.answer(upper).cseq == 41

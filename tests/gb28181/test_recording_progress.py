"""Playback position from MANSRTSP commands, and download progress (pure, fake times)."""

from __future__ import annotations

import pytest

from gbgw.gb28181.recording import mansrtsp as rtsp
from gbgw.gb28181.recording.progress import DownloadProgress, PlaybackClock, download_progress


def test_the_clock_follows_pause_seek_scale_and_resume() -> None:
    clock = PlaybackClock(duration=600, now=100.0)
    assert clock.position(110.0) == 10
    clock.apply(rtsp.pause(1), now=110.0)
    assert clock.paused and clock.position(500.0) == 10
    assert clock.remaining(500.0) is None and clock.end_deadline(500.0, margin=10) is None
    clock.apply(rtsp.resume(2), now=500.0)
    assert not clock.paused and clock.position(505.0) == 15
    clock.apply(rtsp.play(3, position=300), now=505.0)
    assert clock.position(505.0) == 300 and clock.position(515.0) == 310
    clock.apply(rtsp.play(4, scale=4), now=515.0)
    assert clock.position(520.0) == 330 and clock.scale == 4
    assert clock.remaining(520.0) == pytest.approx(67.5)
    assert clock.end_deadline(520.0, margin=10) == pytest.approx(597.5)
    # Resuming keeps the speed it had (B.2.1); the position never runs past the range.
    clock.apply(rtsp.pause(5), now=520.0)
    clock.apply(rtsp.resume(6), now=530.0)
    assert clock.scale == 4 and clock.position(1000.0) == 600
    clock.apply(rtsp.teardown(7), now=1000.0)
    assert clock.paused


def test_reverse_play_counts_down_to_the_start() -> None:
    clock = PlaybackClock(duration=60, now=0.0)
    clock.apply(rtsp.parse_request(b"PLAY RTSP/1.0\r\nCSeq: 1\r\nScale: -2\r\nRange: npt=30-\r\n"), now=0.0)
    assert clock.position(5.0) == 20 and clock.remaining(5.0) == 10 and clock.position(100.0) == 0
    clock.apply(rtsp.play(2, position=1000), now=100.0)
    assert clock.position(100.0) == 60
    with pytest.raises(ValueError, match="positive"):
        PlaybackClock(duration=0, now=0.0)


def test_download_progress_against_filesize() -> None:
    assert download_progress(0, 1000, 0.0) == DownloadProgress(0.0, None, None)
    halfway = download_progress(500, 1000, 10.0)
    assert halfway == DownloadProgress(0.5, 50.0, 10.0)
    # PS over RTP never matches the NVR's file size: only the end of file says "done".
    over = download_progress(1200, 1000, 20.0)
    assert over.fraction is not None and 0.99 < over.fraction < 1 and over.eta == 0
    assert download_progress(900, 1000, 20.0, finished=True) == DownloadProgress(1.0, 45.0, 0.0)


def test_download_progress_without_filesize_uses_the_media_position() -> None:
    assert download_progress(4000, None, 10.0) == DownloadProgress(None, 400.0, None)
    by_time = download_progress(4000, None, 10.0, position=40.0, duration=120.0)
    assert by_time.fraction == pytest.approx(1 / 3) and by_time.eta == pytest.approx(20.0)
    assert download_progress(4000, 0, 10.0, position=0.0, duration=120.0) == DownloadProgress(
        0.0, 400.0, None
    )

"""Where a history session is: the playback position the MANSRTSP commands imply, and download progress.

Pure and clock-free (every call takes ``now``, a monotonic reading): the API shows ``position``, ``scale``,
``paused`` and ``progress`` from these, and the media layer ends a session whose device never sends
MediaStatus 121 at :meth:`PlaybackClock.end_deadline`, not at a media timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

from gbgw.gb28181.recording.mansrtsp import Method, Request

# Byte counts are PS over RTP against the size of the NVR's own file: they never match exactly, so
# "done" is MediaStatus 121 (or the media ending), never a byte count.
_BEFORE_END = 0.999


class PlaybackClock:
    """Position in seconds from the start of the requested range, moved by PLAY/PAUSE as the device
    moves it: PLAY with Range seeks, with Scale changes speed, ``npt=now-`` resumes at the speed it had
    (B.2.1); any PLAY plays; PAUSE and TEARDOWN stop the clock."""

    __slots__ = ("_base", "_since", "duration", "paused", "scale")

    def __init__(self, duration: float, now: float, scale: float = 1.0) -> None:
        if duration <= 0:
            raise ValueError(f"a playback range lasts a positive time, not {duration}")
        self.duration = duration
        self.scale = scale
        self.paused = False
        self._base = 0.0
        self._since = now

    def position(self, now: float) -> float:
        if self.paused:
            return self._base
        moved = self._base + (now - self._since) * self.scale
        return min(max(moved, 0.0), self.duration)

    def apply(self, request: Request, now: float) -> None:
        """Follow a request the device accepted (apply it after its 200, not before)."""
        here = self.position(now)
        if request.method is Method.PLAY:
            self._base = min(request.position, self.duration) if request.position is not None else here
            if request.scale is not None:
                self.scale = request.scale
            self.paused = False
        else:
            self._base = here
            self.paused = True
        self._since = now

    def remaining(self, now: float) -> float | None:
        """Wall-clock seconds until the range is played out at the current scale; None while paused."""
        if self.paused:
            return None
        position = self.position(now)
        left = position if self.scale < 0 else self.duration - position
        return left / abs(self.scale)

    def end_deadline(self, now: float, margin: float) -> float | None:
        """When a session whose device sent no MediaStatus 121 should be ended; None while paused."""
        remaining = self.remaining(now)
        return None if remaining is None else now + remaining + margin


@dataclass(slots=True, frozen=True)
class DownloadProgress:
    """``fraction`` 0-1 (None: nothing to measure against), ``rate`` bytes per second, ``eta`` seconds."""

    fraction: float | None
    rate: float | None
    eta: float | None


def download_progress(
    received: int,
    filesize: int | None,
    elapsed: float,
    *,
    finished: bool = False,
    position: float | None = None,
    duration: float | None = None,
) -> DownloadProgress:
    """Progress of a download: bytes ``received`` in ``elapsed`` seconds against ``a=filesize``; without
    a file size, the media ``position`` against the range's ``duration`` (seconds). Below 1 until
    ``finished`` (MediaStatus 121 or the end of the media)."""
    rate = received / elapsed if elapsed > 0 else None
    if finished:
        return DownloadProgress(1.0, rate, 0.0)
    fraction: float | None = None
    eta: float | None = None
    if filesize is not None and filesize > 0:
        fraction = received / filesize
        if rate:
            eta = max(filesize - received, 0) / rate
    elif position is not None and duration is not None and duration > 0:
        fraction = position / duration
        if elapsed > 0 and position > 0:
            eta = max(duration - position, 0.0) / (position / elapsed)
    if fraction is not None:
        fraction = min(max(fraction, 0.0), _BEFORE_END)
    return DownloadProgress(fraction, rate, eta)

"""Recorded-video times: GB/T 28181 writes local time without an offset, so a zone says what it means.

Inside the gateway every time is an aware ``datetime``; only the wire is local. ``sip.timezone`` (an IANA
name such as ``Asia/Shanghai``) names the zone devices and uppers live in; without it the host's zone is
used (``TZ``, then ``/etc/localtime``). SDP ``t=`` lines carry seconds since the Unix epoch (GB form, not
NTP), which have no zone problem. Arithmetic is done in UTC, so a window over a DST change stays right.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gbgw.gb28181.manscdp import parse_time

_LOCALTIME = "/etc/localtime"


def zone_named(name: str | None) -> tzinfo:
    """The zone ``sip.timezone`` names, or the host's when it is empty; ValueError for an unknown name."""
    if not name:
        return host_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"sip.timezone {name!r} is not an IANA time zone name (such as Asia/Shanghai); "
            "leave it out to use the host's zone"
        ) from None


def host_zone() -> tzinfo:
    """The host's zone as a ZoneInfo where it can be named, so DST rules come with it."""
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        try:
            return ZoneInfo(env)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    target = os.path.realpath(_LOCALTIME)
    if "zoneinfo/" in target:
        try:
            return ZoneInfo(target.split("zoneinfo/", 1)[1])
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open(_LOCALTIME, "rb") as file:
            return ZoneInfo.from_file(file, key="localtime")
    except (OSError, ValueError):
        pass
    # No zone database at all: the current offset is better than assuming UTC.
    return datetime.now().astimezone().tzinfo or UTC


def read_time(text: str | None, zone: tzinfo) -> datetime | None:
    """A MANSCDP time as an aware datetime: offset-less text is local to ``zone``; text with an offset
    (some 2022 devices) keeps its instant. None when absent or unreadable."""
    if not text:
        return None
    value = parse_time(text.strip().replace("/", "-"))
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=zone)
    return value.astimezone(zone)


def write_time(value: datetime, zone: tzinfo) -> str:
    """``value`` as devices expect it: local to ``zone``, seconds, no offset. Naive times are refused,
    since which zone they meant cannot be known."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"time {value.isoformat()} has no offset; GB times are written from aware times")
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


def epoch_seconds(value: datetime) -> int:
    """The SDP ``t=`` form: whole seconds since the Unix epoch."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"time {value.isoformat()} has no offset")
    return int(value.timestamp())


def from_epoch(seconds: int, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(seconds, zone)


def shifted(value: datetime, delta: timedelta) -> datetime:
    """``value`` moved by an absolute ``delta`` (aware arithmetic would move the wall clock instead)."""
    zone = value.tzinfo
    moved = value.astimezone(UTC) + delta
    return moved.astimezone(zone) if zone is not None else moved


@dataclass(slots=True, frozen=True)
class TimeWindow:
    """A requested range of recorded time: aware start before aware end."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        for value in (self.start, self.end):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"time {value.isoformat()} has no offset")
        if self.end <= self.start:
            raise ValueError(
                f"the window ends ({self.end.isoformat()}) before it starts ({self.start.isoformat()})"
            )

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return start <= self.end and end >= self.start

    def sdp_timing(self) -> tuple[int, int]:
        """The ``t=START END`` pair of a playback or download offer."""
        return epoch_seconds(self.start), epoch_seconds(self.end)


def correct_offset_shift(
    start: datetime, end: datetime, window: TimeWindow, zone: tzinfo
) -> tuple[datetime, datetime, bool]:
    """Undo the Hikvision quirk: a record entirely outside ``window`` that lands in it once moved back by
    the zone's UTC offset (either way) was written shifted; return it moved and True. Anything else is
    returned as it is (a device may list a record just outside what was asked, and that is its right)."""
    if window.overlaps(start, end):
        return start, end, False
    offset = window.start.astimezone(zone).utcoffset()
    if not offset:
        return start, end, False
    for delta in (-offset, offset):
        moved_start, moved_end = shifted(start, delta), shifted(end, delta)
        if window.overlaps(moved_start, moved_end):
            return moved_start, moved_end, True
    return start, end, False

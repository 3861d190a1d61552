"""The time given to devices in the REGISTER 200's ``Date`` (they set their clocks from it), and the upper
platforms' clocks measured from the ``Date`` of their own REGISTER 200s.

Police platforms are the time reference of the video network: records searched and alarms raised by time
must agree with the upper's clock, and a gateway at a grassroots site often has no NTP. With
``sip.time_source: upstream`` devices are given this host's time plus the last offset an upper's Date
showed; with ``host`` (the default) the offset is only measured and logged. The offset is re-measured on
every registration refresh, so it follows the upper's clock within a refresh interval (its Date's
resolution: a millisecond when it gives one, a second otherwise).
"""

from __future__ import annotations

import structlog

from gbgw.gb28181.devices.diagnostics import CLOCK_SKEW_LIMIT, device_clock

log = structlog.get_logger("gb28181.time")


class DeviceTimeSource:
    """``upstream`` True: `device_time` applies the measured offset (``sip.time_source: upstream``)."""

    def __init__(self, upstream: bool) -> None:
        self.upstream = upstream
        self.offset = 0.0
        """Seconds the upper's clock is ahead of this host's (negative: behind); 0 until measured."""
        self.measured_from: str | None = None

    def measured(self, upstream: str, date: str, now: float) -> float | None:
        """An upper's REGISTER 200 said ``Date: date`` at host time ``now``: keep and log the offset.
        Returns it, None for a Date that is not a time (logged, the offset kept)."""
        clock = device_clock(date)
        if clock is None:
            log.info("upstream Date is not a time; clock offset not measured", upstream=upstream, date=date)
            return None
        offset = clock - now
        self.offset, self.measured_from = offset, upstream
        emit = log.warning if abs(offset) > CLOCK_SKEW_LIMIT else log.info
        emit("upstream clock offset", upstream=upstream, date=date, offset_seconds=round(offset, 3),
             applied=self.upstream)
        return offset

    def device_time(self, now: float) -> float:
        """The time to give devices at host time ``now``."""
        return now + self.offset if self.upstream else now

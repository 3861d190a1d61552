"""RFC 3550 reception statistics of one RTP source, as a receiver report needs them.

Sequence tracking (A.1: extended highest sequence number, cycles, restarts after a large jump),
expected and lost packets and the fraction lost over a report interval (A.3), interarrival jitter
(A.8) and the LSR/DLSR of a report block (6.4.1). Sans-IO: arrival times are passed in, nothing
here reads a clock or a socket.

`ReceptionStats.receive` is the whole per-packet step. The relay's packet loop inlines its in-order
branch (``seq == expect``, the wrap count) and calls `ReceptionStats.resequence` only for packets
that are not the next one, so per in-order packet this module costs no call; `ReceptionStats.frame`
runs once per frame, not per packet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from gbgw.rtp.packet import ReportBlock

MAX_DROPOUT = 3000
"""Sequence gaps up to this are loss; larger forward jumps restart numbering (RFC 3550 A.1)."""
MAX_MISORDER = 100
"""Packets up to this far behind are late or duplicate; further behind also restarts numbering."""
MISSING_KEPT = 256
"""Lost sequence numbers remembered, so a late arrival is told apart from a duplicate."""

CLOCK_RATE = 90_000
"""The RTP clock of video (and of PS, GB/T 28181 Annex C)."""
_MAX_TRANSIT_CHANGE = 10 * CLOCK_RATE
"""A transit change of 10 s or more is a device clock jump, not jitter: it is left out."""


class SeqOutcome(Enum):
    """What a packet's sequence number means for the stream."""

    IN_ORDER = "in order"
    """The expected next one."""
    STARTED = "started"
    """The source's first packet: it sets the base sequence number."""
    GAP = "gap"
    """Ahead of the expected one by less than `MAX_DROPOUT`: the packets in between are lost."""
    LATE = "late"
    """One of the lost packets turning up after a later one."""
    DUPLICATE = "duplicate"
    """Behind the expected one and not known to be missing."""
    RESTARTED = "restarted"
    """A jump too large to be loss: the device restarted its numbering, which is followed."""


def extended_highest(cycles: int, expect: int) -> int:
    """The extended highest sequence number received (A.1), from the wrap count and the next
    sequence number expected. ``cycles`` already counts the wrap when 0xFFFF was the last packet
    (``expect == 0``), which still belongs to the cycle before."""
    highest = (cycles << 16) + ((expect - 1) & 0xFFFF)
    return highest - 0x10000 if expect == 0 else highest


def expected_packets(highest: int, base: int) -> int:
    """Packets expected from the first one received (``base``) to the extended ``highest`` (A.3)."""
    return highest - base + 1


def fraction_lost(expected_interval: int, lost_interval: int) -> int:
    """The 8-bit fixed-point fraction of an interval's packets lost (A.3); 0 when none were lost
    or duplicates made the loss negative."""
    if expected_interval <= 0 or lost_interval <= 0:
        return 0
    return min((lost_interval << 8) // expected_interval, 255)


def timestamp_delta(ts: int, prev_ts: int) -> int:
    """``ts - prev_ts`` in RTP timestamp units, signed across the 32-bit wrap."""
    return ((ts - prev_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def jitter_step(jitter: float, arrival_delta: float, ts_delta: int, clock_rate: int = CLOCK_RATE) -> float:
    """One A.8 update: J += (|D(i-1,i)| - J) / 16, with D the difference between the arrival spacing
    (``arrival_delta`` seconds, converted to timestamp units) and the timestamp spacing."""
    transit_change = abs(arrival_delta * clock_rate - ts_delta)
    if transit_change >= _MAX_TRANSIT_CHANGE:
        return jitter
    return jitter + (transit_change - jitter) / 16


@dataclass(slots=True)
class ReceptionStats:
    """The reception state of the source an ingest relays, and the counters shown in its stats.

    ``lost``, ``reordered``, ``duplicates`` and ``sequence_resets`` add up over every source the
    ingest followed; a report block counts loss only since the current source started.
    """

    expect: int = -1
    """The next sequence number expected; -1 before the source's first packet."""
    cycles: int = 0
    """Sequence number wraps since the source started (A.1 ``cycles`` >> 16)."""
    base: int = 0
    """The source's first sequence number (A.1 ``base_seq``)."""
    lost: int = 0
    """Sequence numbers never received (gaps minus packets that turned up late)."""
    source_lost_base: int = 0
    """``lost`` when the current source started."""
    reordered: int = 0
    duplicates: int = 0
    sequence_resets: int = 0
    jitter: float = 0.0
    """A.8 interarrival jitter in timestamp units."""
    missing: dict[int, None] = field(default_factory=dict)
    """Recently lost sequence numbers, oldest first (a dict keeps insertion order)."""
    prev_frame: tuple[float, int] | None = None
    """Arrival time and timestamp of the previous frame's first packet, for jitter."""
    last_sr: tuple[int, float] | None = None
    """Middle 32 bits of the source's last SR NTP timestamp and when it arrived, for LSR/DLSR."""
    report_prev: tuple[int, int] = (0, 0)
    """(expected, lost) at the previous report block, for its fraction lost."""

    def restart_source(self) -> None:
        """A new source (SSRC): its first packet sets the base again."""
        self.expect = -1
        self.missing.clear()
        self.prev_frame = None
        self.last_sr = None

    def receive(self, seq: int) -> SeqOutcome:
        """Account for a packet with sequence number ``seq``; LATE and DUPLICATE are not to be
        forwarded."""
        if seq == self.expect:
            expect = seq + 1
            if expect == 0x10000:
                expect = 0
                self.cycles += 1
            self.expect = expect
            return SeqOutcome.IN_ORDER
        return self.resequence(seq)

    def resequence(self, seq: int) -> SeqOutcome:
        """Account for a packet that is not ``expect``; `expect` moves on unless it is late or a
        duplicate (the two outcomes not to forward)."""
        expect = self.expect
        if expect < 0:
            self._start(seq)
            return SeqOutcome.STARTED
        delta = (seq - expect) & 0xFFFF
        if delta < MAX_DROPOUT:
            self.lost += delta
            if delta <= MISSING_KEPT:
                missing = self.missing
                for lost_seq in range(expect, expect + delta):
                    missing[lost_seq & 0xFFFF] = None
                if len(missing) > MISSING_KEPT:
                    for old in list(missing)[: len(missing) - MISSING_KEPT]:
                        del missing[old]
            following = (seq + 1) & 0xFFFF
            if following < expect:
                self.cycles += 1
            self.expect = following
            return SeqOutcome.GAP
        if delta >= 0x10000 - MAX_MISORDER:
            if seq in self.missing:
                del self.missing[seq]
                self.lost -= 1
                self.reordered += 1
                return SeqOutcome.LATE
            self.duplicates += 1
            return SeqOutcome.DUPLICATE
        self.sequence_resets += 1
        self._start(seq)
        return SeqOutcome.RESTARTED

    def _start(self, seq: int) -> None:
        self.cycles = 0
        self.base = seq
        self.source_lost_base = self.lost
        self.report_prev = (0, 0)
        self.expect = (seq + 1) & 0xFFFF

    def frame(self, now: float, ts: int) -> None:
        """The first packet of a frame arrived at ``now`` (seconds): sample the jitter. Sampling per
        frame rather than per packet keeps a frame's back-to-back packets (one timestamp, sent in a
        burst) from reading as jitter."""
        prev = self.prev_frame
        self.prev_frame = (now, ts)
        if prev is not None:
            self.jitter = jitter_step(self.jitter, now - prev[0], timestamp_delta(ts, prev[1]))

    def sender_report(self, ntp_timestamp: int, now: float) -> None:
        """The source's RTCP SR with this 64-bit NTP timestamp arrived at ``now``."""
        self.last_sr = ((ntp_timestamp >> 16) & 0xFFFFFFFF, now)

    def report_block(self, ssrc: int | None, now: float) -> ReportBlock | None:
        """The 6.4.1 reception report for ``ssrc`` at ``now``, None before its first packet; starts
        the next interval for the fraction lost."""
        if ssrc is None or self.expect < 0:
            return None
        highest = extended_highest(self.cycles, self.expect)
        expected = expected_packets(highest, self.base)
        lost = self.lost - self.source_lost_base
        prev_expected, prev_lost = self.report_prev
        self.report_prev = (expected, lost)
        fraction = fraction_lost(expected - prev_expected, lost - prev_lost)
        last_sr, delay = 0, 0
        if self.last_sr is not None:
            last_sr = self.last_sr[0]
            delay = int((now - self.last_sr[1]) * 65536)
        return ReportBlock(ssrc, fraction, lost, highest & 0xFFFFFFFF, int(self.jitter), last_sr, delay)

    @property
    def jitter_ms(self) -> float:
        return self.jitter / (CLOCK_RATE / 1000)

"""Reorder window for RTP over UDP: releases packets in sequence order, skipping gaps when needed.

The PS demuxer must see payloads in order, but the relay must not stall on a lost packet. A gap
is given up when the window is full (``capacity`` packets are waiting behind it) or when the
oldest waiting packet has waited ``max_delay`` seconds; the caller asks `deadline()` when to call
`poll(now)`. Time is always passed in, never read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class ReorderStats:
    received: int = 0
    released: int = 0
    lost: int = 0
    """Sequence numbers given up on (skipped as gaps). A packet that turns up later counts as late."""
    late: int = 0
    """Arrived after its gap had been skipped; dropped."""
    duplicates: int = 0
    reordered: int = 0
    """Arrived after a packet with a higher sequence number (and still in time to be released)."""
    resets: int = 0
    """The sender jumped to an unrelated sequence number (restart, SSRC reuse) and the window followed."""


class ReorderWindow(Generic[T]):
    """Orders packets by 16-bit RTP sequence number, with wrap-around.

    The first packet fixes where numbering starts: one that arrives later with a lower number
    counts as late. ``max_jump`` bounds what is treated as reordering or loss: a packet further
    than that from the expected sequence number is held on probation, and the window restarts at
    it only if the next packet follows it (RFC 3550 A.1 does the same), so one corrupt sequence
    number cannot derail a stream. Duplicates are told from late packets for the last
    ``4 * capacity`` released numbers; older repeats count as late.
    """

    def __init__(self, capacity: int = 64, max_delay: float = 0.1, max_jump: int = 3000) -> None:
        if not 1 <= capacity <= max_jump < 0x8000:
            raise ValueError("need 1 <= capacity <= max_jump < 32768")
        self.capacity = capacity
        self.max_delay = max_delay
        self.max_jump = max_jump
        self.stats = ReorderStats()
        self._slots: list[T | None] = [None] * capacity
        self._slot_seq = [-1] * capacity
        history = 1 << (capacity * 4 - 1).bit_length()
        self._released_seq = [-1] * history
        self._history_mask = history - 1
        self._arrivals: deque[tuple[float, int]] = deque()
        self._next: int | None = None
        """Extended (unwrapped) sequence number of the next packet to release."""
        self._highest = -1
        self._waiting = 0
        self._probation: tuple[int, T] | None = None

    def _extend(self, seq: int, reference: int) -> int:
        delta = ((seq - reference + 0x8000) & 0xFFFF) - 0x8000
        return reference + delta

    def push(self, seq: int, packet: T, now: float) -> list[T]:
        """Add a received packet; returns the packets that are now ready, in order."""
        self.stats.received += 1
        out: list[T] = []
        if self._next is None:
            self._restart(seq)
        assert self._next is not None
        ext = self._extend(seq, self._next)
        if not -self.max_jump <= ext - self._next < self.max_jump:
            probation = self._probation
            if probation is None or (probation[0] + 1) & 0xFFFF != seq:
                self._probation = (seq, packet)
                return out
            # Two consecutive packets agree on the new numbering: follow the sender.
            self.stats.resets += 1
            self._release_all(out)
            self._restart(probation[0])
            self._store(probation[0], probation[1], now)
            self._highest = probation[0]
            ext = probation[0] + 1
        self._probation = None
        if ext < self._next:
            if self._released_seq[ext & self._history_mask] == ext:
                self.stats.duplicates += 1
            else:
                self.stats.late += 1
            return out
        if self._slot_seq[ext % self.capacity] == ext:
            self.stats.duplicates += 1
            return out
        if ext < self._highest:
            self.stats.reordered += 1
        else:
            self._highest = ext
        if ext - self._next >= self.capacity:
            # The window is full: give up on the oldest gaps to make room for this packet.
            self._advance_to(ext - self.capacity + 1, out)
        self._store(ext, packet, now)
        self._release_ready(out)
        self._release_expired(now, out)
        return out

    def _restart(self, seq: int) -> None:
        """Start numbering at ``seq`` (first packet, or after the sender jumped); the window is empty."""
        self._next = seq
        self._highest = seq - 1
        self._released_seq = [-1] * len(self._released_seq)
        self._arrivals.clear()

    def _store(self, ext: int, packet: T, now: float) -> None:
        slot = ext % self.capacity
        self._slots[slot] = packet
        self._slot_seq[slot] = ext
        self._waiting += 1
        self._arrivals.append((now, ext))

    def _release_ready(self, out: list[T]) -> None:
        assert self._next is not None
        slots, slot_seq, capacity = self._slots, self._slot_seq, self.capacity
        nxt = self._next
        while self._waiting:
            slot = nxt % capacity
            if slot_seq[slot] != nxt:
                break
            packet = slots[slot]
            slots[slot] = None
            slot_seq[slot] = -1
            self._released_seq[nxt & self._history_mask] = nxt
            self._waiting -= 1
            out.append(packet)  # type: ignore[arg-type]  # a slot whose seq matches holds a packet
            self.stats.released += 1
            nxt += 1
        self._next = nxt

    def _advance_to(self, target: int, out: list[T]) -> None:
        """Release or skip everything before ``target``; skipped sequence numbers count as lost."""
        assert self._next is not None
        while self._next < target:
            self._release_ready(out)
            if self._next >= target:
                break
            if self._slot_seq[self._next % self.capacity] != self._next:
                self.stats.lost += 1
                self._next += 1

    def _skip_first_gap(self, out: list[T]) -> None:
        """Give up on the missing packets before the first waiting one, then release what follows."""
        assert self._next is not None
        nxt = self._next
        while self._slot_seq[nxt % self.capacity] != nxt:
            nxt += 1
        self.stats.lost += nxt - self._next
        self._next = nxt
        self._release_ready(out)

    def _release_expired(self, now: float, out: list[T]) -> None:
        while True:
            deadline = self.deadline()
            if deadline is None or deadline > now:
                return
            self._skip_first_gap(out)

    def deadline(self) -> float | None:
        """When the oldest packet waiting behind a gap must be released; None if nothing waits."""
        arrivals = self._arrivals
        nxt = self._next
        while arrivals and nxt is not None and arrivals[0][1] < nxt:
            arrivals.popleft()
        if not self._waiting or not arrivals:
            return None
        return arrivals[0][0] + self.max_delay

    def poll(self, now: float) -> list[T]:
        """Release what has waited too long; call at `deadline()`."""
        out: list[T] = []
        self._release_expired(now, out)
        return out

    def flush(self) -> list[T]:
        """Release everything waiting, in order (end of stream)."""
        out: list[T] = []
        self._release_all(out)
        return out

    def _release_all(self, out: list[T]) -> None:
        while self._waiting:
            self._skip_first_gap(out)
        self._arrivals.clear()

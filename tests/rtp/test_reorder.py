"""Reorder window: ordering, wrap-around, loss by window fill and by deadline, late and duplicate packets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gbgw.rtp.reorder import ReorderWindow


def _push_all(window: ReorderWindow[int], seqs: list[int], now: float = 0.0) -> list[int]:
    out: list[int] = []
    for seq in seqs:
        out += window.push(seq, seq, now)
    return out


def test_in_order_packets_pass_straight_through() -> None:
    window: ReorderWindow[int] = ReorderWindow()
    for seq in range(100, 110):
        assert window.push(seq, seq, 0.0) == [seq]
    assert window.deadline() is None
    assert window.stats.released == 10 and window.stats.reordered == 0


def test_swapped_packets_are_reordered() -> None:
    window: ReorderWindow[int] = ReorderWindow()
    assert _push_all(window, [1, 3, 2, 4]) == [1, 2, 3, 4]
    assert window.stats.reordered == 1 and window.stats.lost == 0


def test_wrap_around() -> None:
    window: ReorderWindow[int] = ReorderWindow()
    assert _push_all(window, [65533, 65534, 0, 65535, 1, 2]) == [65533, 65534, 65535, 0, 1, 2]
    assert window.stats.lost == 0 and window.stats.reordered == 1


def test_gap_released_at_deadline_then_late_packet_dropped() -> None:
    window: ReorderWindow[int] = ReorderWindow(capacity=16, max_delay=0.1)
    assert window.push(10, 10, 1.0) == [10]
    assert window.push(12, 12, 1.02) == []
    assert window.push(13, 13, 1.05) == []
    assert window.deadline() == pytest.approx(1.12)
    assert window.poll(1.1) == []
    assert window.poll(1.12) == [12, 13]
    assert window.deadline() is None
    assert window.stats.lost == 1
    assert window.push(11, 11, 1.2) == []
    assert window.stats.late == 1 and window.stats.duplicates == 0


def test_deadline_can_release_on_push() -> None:
    window: ReorderWindow[int] = ReorderWindow(capacity=16, max_delay=0.1)
    window.push(0, 0, 0.0)
    window.push(2, 2, 0.0)
    assert window.push(3, 3, 0.5) == [2, 3]


def test_full_window_gives_up_the_gap() -> None:
    window: ReorderWindow[int] = ReorderWindow(capacity=4, max_delay=10.0)
    assert window.push(0, 0, 0.0) == [0]
    assert _push_all(window, [2, 3, 4]) == []
    assert window.push(5, 5, 0.0) == [2, 3, 4, 5]
    assert window.stats.lost == 1


def test_duplicates_counted_whether_waiting_or_released() -> None:
    window: ReorderWindow[int] = ReorderWindow()
    assert _push_all(window, [5, 5, 7, 7, 6]) == [5, 6, 7]
    assert window.stats.duplicates == 2
    assert window.push(6, 6, 0.0) == []
    assert window.stats.duplicates == 3 and window.stats.late == 0


def test_sender_restart_followed_after_two_consecutive_packets() -> None:
    window: ReorderWindow[int] = ReorderWindow()
    _push_all(window, [100, 101, 103])
    # One stray far-away number is ignored...
    assert window.push(40000, 40000, 0.0) == []
    assert window.push(102, 102, 0.0) == [102, 103]
    # ...but two consecutive ones mean the sender restarted its numbering.
    assert window.push(20000, 20000, 0.0) == []
    assert window.push(20001, 20001, 0.0) == [20000, 20001]
    assert window.push(20002, 20002, 0.0) == [20002]
    assert window.stats.resets == 1


def test_flush_releases_everything_in_order() -> None:
    window: ReorderWindow[int] = ReorderWindow(capacity=32, max_delay=10.0)
    window.push(0, 0, 0.0)
    _push_all(window, [9, 4, 7])
    assert window.flush() == [4, 7, 9]
    assert window.stats.lost == 6


@st.composite
def jittered(draw: st.DrawFn) -> tuple[int, list[int], set[int]]:
    """Consecutive sequence numbers (possibly across the wrap), each displaced by less than 16
    positions, some dropped; the first packet is kept in place, it defines where the window starts."""
    start = draw(st.integers(0, 0xFFFF))
    count = draw(st.integers(1, 300))
    keys = [i + draw(st.floats(0, 15)) if i else -1.0 for i in range(count)]
    order = sorted(range(count), key=lambda i: keys[i])
    dropped = draw(st.sets(st.integers(1, count - 1), max_size=count // 5)) if count > 1 else set()
    return start, [i for i in order if i not in dropped], dropped


@given(jittered())
def test_bounded_jitter_is_fully_undone(case: tuple[int, list[int], set[int]]) -> None:
    start, order, dropped = case
    window: ReorderWindow[int] = ReorderWindow(capacity=32, max_delay=1.0)
    out: list[int] = []
    for i in order:
        out += window.push((start + i) & 0xFFFF, i, 0.0)
    out += window.flush()
    assert out == sorted(order)
    last = max(order)
    assert window.stats.lost == sum(1 for i in dropped if i < last)
    assert window.stats.late == 0 and window.stats.duplicates == 0

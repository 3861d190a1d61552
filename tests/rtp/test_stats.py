"""RFC 3550 reception statistics, against values worked out by hand from the A.1, A.3 and A.8 formulas."""

from __future__ import annotations

from gbgw.rtp.stats import (
    ReceptionStats,
    SeqOutcome,
    expected_packets,
    extended_highest,
    fraction_lost,
    jitter_step,
    timestamp_delta,
)


def feed(rx: ReceptionStats, *seqs: int) -> list[SeqOutcome]:
    return [rx.receive(seq) for seq in seqs]


def test_sequence_wrap_counts_a_cycle_and_extends_the_highest() -> None:
    rx = ReceptionStats()
    assert feed(rx, 65534, 65535) == [SeqOutcome.STARTED, SeqOutcome.IN_ORDER]
    # 0xFFFF was the last packet: the wrap is counted, the highest still belongs to cycle 0.
    assert (rx.cycles, rx.expect) == (1, 0)
    assert extended_highest(rx.cycles, rx.expect) == 65535
    assert feed(rx, 0, 1) == [SeqOutcome.IN_ORDER, SeqOutcome.IN_ORDER]
    highest = extended_highest(rx.cycles, rx.expect)
    assert highest == 0x1_0001
    assert expected_packets(highest, rx.base) == 4  # 65534, 65535, 0, 1
    block = rx.report_block(0x1234, now=0.0)
    assert block is not None
    assert (block.ssrc, block.highest_sequence, block.packets_lost, block.fraction_lost) == (
        0x1234,
        0x1_0001,
        0,
        0,
    )


def test_gap_across_the_wrap_is_loss_and_a_cycle() -> None:
    rx = ReceptionStats()
    feed(rx, 65530)
    assert rx.receive(5) is SeqOutcome.GAP  # 65531..65535 and 0..4 missing
    assert (rx.lost, rx.cycles, rx.expect) == (10, 1, 6)
    assert extended_highest(rx.cycles, rx.expect) == 0x1_0005
    assert expected_packets(0x1_0005, rx.base) == 12


def test_loss_late_arrival_duplicate_and_fraction_lost_per_interval() -> None:
    rx = ReceptionStats()
    assert feed(rx, 10, 11, 14, 15) == [
        SeqOutcome.STARTED,
        SeqOutcome.IN_ORDER,
        SeqOutcome.GAP,
        SeqOutcome.IN_ORDER,
    ]
    assert rx.lost == 2
    first = rx.report_block(7, now=0.0)
    assert first is not None
    # expected 15 - 10 + 1 = 6, lost 2: fraction = (2 << 8) // 6 = 85.
    assert (first.packets_lost, first.fraction_lost, first.highest_sequence) == (2, 85, 15)

    assert rx.receive(12) is SeqOutcome.LATE
    assert rx.receive(15) is SeqOutcome.DUPLICATE
    assert rx.receive(12) is SeqOutcome.DUPLICATE  # no longer missing
    assert (rx.lost, rx.reordered, rx.duplicates, rx.expect) == (1, 1, 2, 16)
    second = rx.report_block(7, now=0.0)
    assert second is not None
    # No new packets expected and loss went down: the fraction is 0, not negative.
    assert (second.packets_lost, second.fraction_lost) == (1, 0)

    feed(rx, 16, 17, 18, 19, 21)
    third = rx.report_block(7, now=0.0)
    assert third is not None
    # Interval: expected 12 - 6 = 6, lost 2 - 1 = 1: fraction = 256 // 6 = 42.
    assert (third.packets_lost, third.fraction_lost, third.highest_sequence) == (2, 42, 21)


def test_large_jump_restarts_numbering_and_the_report_counts_the_new_source_only() -> None:
    rx = ReceptionStats()
    feed(rx, 100, 103)
    assert rx.lost == 2
    assert rx.receive(40_000) is SeqOutcome.RESTARTED
    assert (rx.sequence_resets, rx.base, rx.cycles, rx.expect, rx.source_lost_base) == (
        1,
        40_000,
        0,
        40_001,
        2,
    )
    block = rx.report_block(1, now=0.0)
    assert block is not None
    assert (block.packets_lost, block.highest_sequence, block.fraction_lost) == (0, 40_000, 0)
    assert rx.lost == 2  # the ingest's total keeps the old source's loss


def test_far_behind_within_misorder_is_a_duplicate_and_beyond_it_a_restart() -> None:
    rx = ReceptionStats()
    feed(rx, 1000)
    assert rx.receive(950) is SeqOutcome.DUPLICATE  # 51 behind, within MAX_MISORDER (100)
    assert rx.receive(800) is SeqOutcome.RESTARTED  # 201 behind


def test_fraction_lost_is_eight_bit_fixed_point() -> None:
    assert fraction_lost(100, 25) == 64
    assert fraction_lost(4, 1) == 64
    assert fraction_lost(3, 1) == 85
    assert fraction_lost(1, 5) == 255  # more lost than expected (duplicates earlier): capped
    assert fraction_lost(0, 5) == 0
    assert fraction_lost(10, 0) == 0
    assert fraction_lost(10, -1) == 0


def test_timestamp_delta_is_signed_across_the_wrap() -> None:
    assert timestamp_delta(3600, 0) == 3600
    assert timestamp_delta(0x0000_0100, 0xFFFF_FF00) == 0x200
    assert timestamp_delta(0xFFFF_FF00, 0x0000_0100) == -0x200


def test_jitter_follows_a8() -> None:
    # J(i) = J(i-1) + (|D(i-1,i)| - J(i-1)) / 16, D = (Rj - Ri) - (Sj - Si) in timestamp units.
    assert jitter_step(0.0, 0.5, 45_000) == 0.0  # arrival spacing 0.5 s = 45,000 ticks, as sent
    assert jitter_step(0.0, 0.75, 45_000) == 22_500 / 16  # |67,500 - 45,000| / 16 = 1406.25
    assert jitter_step(1406.25, 0.25, 45_000) == 1406.25 + (22_500 - 1406.25) / 16  # 2724.609375
    assert jitter_step(100.0, 20.0, 0) == 100.0  # a 20 s transit change is a clock jump, not jitter


def test_jitter_sampled_per_frame() -> None:
    rx = ReceptionStats()
    rx.frame(10.0, 0)
    assert rx.jitter == 0.0
    rx.frame(10.5, 45_000)
    assert rx.jitter == 0.0
    rx.frame(11.25, 90_000)
    assert rx.jitter == 1406.25
    rx.frame(11.5, 135_000)
    assert rx.jitter == 2724.609375
    assert rx.jitter_ms == 2724.609375 / 90
    feed(rx, 1)
    block = rx.report_block(1, now=0.0)
    assert block is not None and block.jitter == 2724


def test_last_sr_and_delay_since_it() -> None:
    rx = ReceptionStats()
    assert rx.report_block(1, now=0.0) is None  # nothing received yet
    feed(rx, 1)
    assert rx.report_block(None, now=0.0) is None  # no source known
    rx.sender_report(0x1122_3344_5566_7788, now=10.0)
    block = rx.report_block(1, now=10.5)
    assert block is not None
    assert (block.last_sr, block.delay_since_last_sr) == (0x3344_5566, 32_768)  # 0.5 s in 1/65536 s


def test_restart_source_forgets_what_belonged_to_the_old_one() -> None:
    rx = ReceptionStats()
    feed(rx, 5, 9)
    rx.frame(1.0, 0)
    rx.sender_report(1 << 32, now=1.0)
    rx.restart_source()
    assert (rx.expect, rx.missing, rx.prev_frame, rx.last_sr) == (-1, {}, None, None)
    assert rx.receive(7) is SeqOutcome.STARTED  # 7 was missing from the old source: not late now
    assert rx.lost == 3

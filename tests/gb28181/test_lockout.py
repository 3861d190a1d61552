"""AuthLockout counts failures per device ID, and per source address in distinct IDs."""

from __future__ import annotations

from gbgw.gb28181.devices.lockout import AuthLockout


def test_device_key_locks_after_n_failures_for_the_duration() -> None:
    lock = AuthLockout(max_failures=3, duration=10)
    assert not lock.failure("dev", 0)
    assert not lock.failure("dev", 1)
    assert lock.failure("dev", 2)  # the third starts the lockout, reported once
    assert lock.locked_until("dev", 5) == 12
    assert lock.locked_until("dev", 12.1) is None


def test_source_key_counts_distinct_ids_not_attempts() -> None:
    lock = AuthLockout(max_failures=3, duration=10)
    for t in range(10):
        assert not lock.failure("10.0.0.1", t * 0.1, tag="camera-a")
    assert lock.locked_until("10.0.0.1", 1) is None
    assert not lock.failure("10.0.0.1", 1, tag="camera-b")
    assert lock.failure("10.0.0.1", 2, tag="camera-c")


def test_failures_outside_the_window_are_forgotten() -> None:
    lock = AuthLockout(max_failures=2, duration=10)
    assert not lock.failure("dev", 0)
    assert not lock.failure("dev", 11)
    lock.prune(30)
    assert not lock.failure("dev", 31)


def test_zero_disables_locking() -> None:
    lock = AuthLockout(max_failures=0, duration=10)
    assert not any(lock.failure("dev", t) for t in range(100))

"""Lock out a device ID or source address after repeated failed authentications (brute-force guard)."""

from __future__ import annotations


class AuthLockout:
    """Counts failures per key within a window; at ``max_failures`` the key is locked for ``duration``.

    Keys are device IDs and source addresses. A source address is counted in *distinct device IDs* that
    failed from it (``tag``), not in attempts: thousands of cameras share one NAT address, and one of them
    retrying a wrong password must lock only its own ID, never its neighbours. Someone cycling through IDs
    from one address is what locks the address. ``max_failures`` 0 disables locking.
    """

    __slots__ = ("_failures", "_locked", "duration", "max_failures")

    def __init__(self, max_failures: int, duration: float) -> None:
        self.max_failures = max_failures
        self.duration = duration
        self._failures: dict[str, tuple[int, float, frozenset[str]]] = {}
        self._locked: dict[str, float] = {}

    def locked_until(self, key: str, now: float) -> float | None:
        until = self._locked.get(key)
        if until is None:
            return None
        if now >= until:
            del self._locked[key]
            return None
        return until

    def failure(self, key: str, now: float, tag: str | None = None) -> bool:
        """Count one failure (or one more distinct ``tag``); True when this starts a lockout (log it)."""
        if self.max_failures <= 0:
            return False
        count, first, tags = self._failures.get(key, (0, now, frozenset()))
        if now - first > self.duration:
            count, first, tags = 0, now, frozenset()
        if tag is None:
            count += 1
        elif tag not in tags:
            tags = tags | {tag}
            count = len(tags)
        if count >= self.max_failures:
            self._failures.pop(key, None)
            self._locked[key] = now + self.duration
            return True
        self._failures[key] = (count, first, tags)
        return False

    def success(self, key: str) -> None:
        self._failures.pop(key, None)

    def prune(self, now: float) -> None:
        """Forget stale counters and finished lockouts (called from a periodic task)."""
        self._locked = {k: t for k, t in self._locked.items() if t > now}
        self._failures = {k: v for k, v in self._failures.items() if now - v[1] <= self.duration}

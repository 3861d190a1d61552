"""The audit trail of everything that crosses the boundary, one JSON object per line in its own file.

Kept apart from the operational log on purpose: the operational log is tuned and rotated for debugging,
while this file answers "what did the gateway let through, for whom, and when" for the people who
supervise the boundary. Every record has ``ts`` (ISO 8601, local time with its offset), ``action`` and
``result``; the same secret filter as the main log runs over it.

Writing never raises into the caller: ``record`` is called from the middle of SIP handlers and status
listeners, and a full disk must neither break them nor lose the trail silently. A line that cannot be
written waits, in order, in a bounded buffer (oldest dropped and counted when full) and goes out on the
next record or ``retry()``; the operational log gets one error line per failure episode, and ``health()``
says what is wrong and how many lines wait.
"""

from __future__ import annotations

import errno
import os
import sys
from collections import deque
from io import FileIO
from typing import Any

import structlog

from gbgw.gb28181.observe.health import ComponentHealth, HealthState
from gbgw.gb28181.observe.logs import redact_event, timestamper

log = structlog.get_logger("gb28181.audit")

MAX_PENDING = 10_000
"""Lines kept while the file is not writable: about 3 MB at ~300 bytes a line."""


class _StandardError:
    """``path: "-"``: the same writes to whatever ``sys.stderr`` is at the time (tests capture it)."""

    def write(self, data: memoryview) -> int:
        sys.stderr.write(bytes(data).decode("utf-8"))
        sys.stderr.flush()
        return len(data)

    def close(self) -> None:
        """Standard error belongs to the process, not to the audit log."""


def _lines(count: int) -> str:
    return f"{count} line{'' if count == 1 else 's'}"


class AuditLog:
    def __init__(self, path: str, max_pending: int = MAX_PENDING) -> None:
        self.path = path
        self.max_pending = max_pending
        self._render = structlog.wrap_logger(
            structlog.ReturnLogger(),
            wrapper_class=structlog.BoundLogger,
            processors=[
                structlog.processors.EventRenamer("action"),
                timestamper("ts"),
                redact_event,
                structlog.processors.JSONRenderer(ensure_ascii=False),
            ],
        )
        self._file: FileIO | _StandardError | None = None
        self._identity: tuple[int, int] | None = None
        self._pending: deque[bytes] = deque()
        # Bytes of the first pending line already in the file: a short write on a nearly full disk.
        self._head_written = 0
        self._error: OSError | None = None
        self.records = 0
        self.write_failures = 0
        """Write (or open) attempts that failed: a lifetime counter, for metrics."""
        self.dropped = 0
        """Lines lost because the buffer was full: a lifetime counter, for metrics."""
        self._open()

    @property
    def pending(self) -> int:
        """Lines waiting for the file to become writable again."""
        return len(self._pending)

    def record(self, action: str, result: str = "ok", **fields: Any) -> None:
        """Write one record; ``action`` names what crossed (``invite``, ``catalog``, ``alarm``...)."""
        self.records += 1
        line: str = self._render.msg(action, result=result, **fields)
        if len(self._pending) >= self.max_pending:
            # A line already begun in the file must be finished, or the next one would be glued to its half.
            del self._pending[1 if self._head_written else 0]
            self.dropped += 1
        self._pending.append((line + "\n").encode("utf-8"))
        self._drain()

    def retry(self) -> None:
        """Try again to write waiting lines (the daemon calls this periodically)."""
        if self._pending or self._file is None:
            self._drain()

    def reopen(self, path: str | None = None) -> None:
        """Close and open the file again (after logrotate moved it), or open ``path`` from now on."""
        if path is not None:
            self.path = path
        self._close_file()
        self._open()
        self._drain()

    def health(self) -> ComponentHealth:
        if self._error is not None:
            return ComponentHealth(
                HealthState.DEGRADED,
                f"audit log not writable: {self._error}; {_lines(len(self._pending))} waiting, {self.dropped} dropped",
            )
        if self.dropped:
            return ComponentHealth(HealthState.OK, f"writable; {_lines(self.dropped)} dropped during earlier failures")
        return ComponentHealth(HealthState.OK)

    def close(self) -> None:
        self._drain()
        if self._pending:
            log.error("audit lines lost at shutdown: the audit log is not writable", path=self.path,
                      lines=len(self._pending), error=str(self._error))
        self._close_file()

    # -- writing -------------------------------------------------------------------------------------------

    def _open(self) -> bool:
        if self._file is not None:
            return True
        try:
            if self.path == "-":
                self._file = _StandardError()
                identity = None
            else:
                raw = open(self.path, "ab", buffering=0)  # noqa: SIM115
                stat = os.fstat(raw.fileno())
                self._file = raw
                identity = (stat.st_dev, stat.st_ino)
        except (OSError, ValueError) as exc:
            self._file = None
            self._failed(exc)
            return False
        if identity != self._identity:
            # Another file (rotated, or another path): the half line written to the old one starts over here.
            self._head_written = 0
        self._identity = identity
        return True

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        except OSError as exc:
            self._failed(exc)

    def _drain(self) -> None:
        if not self._open():
            return
        assert self._file is not None
        waiting = len(self._pending)
        while self._pending:
            head = self._pending[0]
            try:
                written = self._file.write(memoryview(head)[self._head_written:])
                if not written:
                    raise OSError(errno.EIO, "the audit file accepted no bytes")
            except (OSError, ValueError) as exc:
                self._failed(exc)
                return
            self._head_written += written
            if self._head_written >= len(head):
                self._pending.popleft()
                self._head_written = 0
        if self._error is not None:
            log.warning("audit log writable again, waiting lines written", path=self.path, lines=waiting,
                        dropped=self.dropped)
            self._error = None

    def _failed(self, exc: OSError | ValueError) -> None:
        self.write_failures += 1
        error = exc if isinstance(exc, OSError) else OSError(errno.EBADF, str(exc))
        if self._error is None:
            log.error("audit log not writable: keeping lines in memory and retrying", path=self.path,
                      error=str(error), waiting=len(self._pending), limit=self.max_pending)
        self._error = error

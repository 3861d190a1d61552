"""The audit trail of everything that crosses the boundary, one JSON object per line in its own file.

Kept apart from the operational log on purpose: the operational log is tuned and rotated for debugging,
while this file answers "what did the gateway let through, for whom, and when" for the people who
supervise the boundary. Every record has ``ts`` (ISO 8601, local time), ``action`` and ``result``; the
same secret filter as the main log runs over it.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import structlog

from gbgw.gb28181.observe.logs import redact_event


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._file: TextIO = sys.stderr if path == "-" else open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._log = structlog.wrap_logger(
            structlog.PrintLogger(self._file),
            wrapper_class=structlog.BoundLogger,
            processors=[
                structlog.processors.EventRenamer("action"),
                structlog.processors.TimeStamper(fmt="iso", utc=False, key="ts"),
                redact_event,
                structlog.processors.JSONRenderer(ensure_ascii=False),
            ],
        )
        self.records = 0

    def record(self, action: str, result: str = "ok", **fields: Any) -> None:
        """Write one record; ``action`` names what crossed (``invite``, ``catalog``, ``alarm``...)."""
        self.records += 1
        self._log.msg(action, result=result, **fields)

    def close(self) -> None:
        if self._file is not sys.stderr:
            self._file.close()

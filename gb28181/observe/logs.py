"""Logging: structlog, readable on a terminal, JSON lines otherwise (systemd, containers, log shippers).

A processor strips secrets from every event, whatever a caller passed, so a careless log line cannot leak
a password, a nonce or a digest response. The level is a processor's threshold, not the bound logger's
class: loggers are cached on first use, so only a threshold they all read can change on SIGHUP
(``set_level``). A line below it costs one comparison and is dropped before any other processor runs.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

SECRET_KEYS = frozenset(
    {"password", "passwd", "secret", "nonce", "cnonce", "response", "authorization", "www_authenticate",
     "proxy_authorization", "credentials", "token", "tokens"}
)
# Digest parameters inside a header value that ends up in a log field.
_DIGEST_SECRET = re.compile(r'\b(nonce|cnonce|response|password)\s*=\s*("[^"]*"|[^,\s]*)', re.IGNORECASE)


def redact(text: str) -> str:
    """Blank out digest secrets inside free text (e.g. a header value quoted in an error)."""
    return _DIGEST_SECRET.sub(lambda m: f"{m.group(1)}=<redacted>", text)


def redact_event(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: blank secret-named fields and digest secrets inside string values."""
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "<redacted>"
        else:
            value = event[key]
            if isinstance(value, str) and "=" in value:
                event[key] = redact(value)
    return event


def now_iso() -> str:
    """Local time with its UTC offset (``2024-05-01T08:00:00.123+08:00``), the form the API uses, so a log
    line, an audit record and an API answer about the same moment read the same and sort across zones."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def timestamper(key: str) -> Processor:
    """structlog processor: :func:`now_iso` under ``key``."""

    def stamp(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event[key] = now_iso()
        return event

    return stamp


add_timestamp = timestamper("timestamp")

_LEVELS = logging.getLevelNamesMapping()
_threshold = logging.INFO


def level_number(level: str) -> int:
    """``level`` (``debug``, ``info``, ...) as a number; ValueError naming the accepted ones otherwise."""
    try:
        return _LEVELS[level.upper()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}") from None


def set_level(level: str) -> None:
    """Log only lines of ``level`` and above from now on, in every logger already handed out."""
    global _threshold
    _threshold = level_number(level)


def current_level() -> str:
    return logging.getLevelName(_threshold).lower()


def filter_level(_logger: Any, name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: drop a line below the level :func:`set_level` set."""
    if _LEVELS.get(name.upper(), logging.CRITICAL) < _threshold:
        raise structlog.DropEvent
    return event


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog once for the process. ``fmt`` is auto (console on a TTY), console or json."""
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    set_level(level)
    structlog.configure(
        processors=[
            filter_level,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_timestamp,
            redact_event,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )

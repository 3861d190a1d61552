"""Logging: structlog, readable on a terminal, JSON lines otherwise (systemd, containers, log shippers).

A processor strips secrets from every event, whatever a caller passed, so a careless log line cannot leak
a password, a nonce or a digest response.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any, TextIO

import structlog

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


def add_timestamp(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: local time with its UTC offset (``2024-05-01T08:00:00.123+08:00``), the form the
    API uses, so a log line and an API answer about the same moment read the same and sort across zones."""
    event["timestamp"] = datetime.now().astimezone().isoformat(timespec="milliseconds")
    return event


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog once for the process. ``fmt`` is auto (console on a TTY), console or json."""
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_timestamp,
            redact_event,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )

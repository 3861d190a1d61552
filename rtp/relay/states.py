"""How relay streams end and where an output is in its life, each named once for logs, API and callers."""

from __future__ import annotations

from enum import StrEnum


class StopReason(StrEnum):
    MEDIA_TIMEOUT = "media timeout"
    """Packets had been flowing and stopped."""
    NO_MEDIA = "no media after start"
    """Not a single RTP packet from the device within the first-packet timeout."""
    IDLE = "no outputs"
    """The last output left and the idle timeout passed."""
    DEVICE_CLOSED = "device closed the connection"
    RECEIVER_CLOSED = "receiver closed the connection"
    CONNECT_FAILED = "connect failed"
    SOCKET_ERROR = "socket error"
    CLOSED = "closed"
    """Closed by the caller (or with its ingest/engine)."""


class OutputState(StrEnum):
    WAITING = "waiting"
    """TCP: connecting to the receiver, or listening for it."""
    LIVE = "live"
    CLOSED = "closed"

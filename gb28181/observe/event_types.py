"""The live events' types and a webhook's configuration: shared by the event bus (``events``) and the
configuration reader, which must not import the bus (the bus knows the services whose events it carries)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EventType(StrEnum):
    DEVICE_ONLINE = "device.online"
    DEVICE_OFFLINE = "device.offline"
    REGISTRATION_FAILED = "registration.failed"
    """A REGISTER refused (unknown IDs included), from the diagnostics' record of refusals."""
    ALARM = "alarm"
    CATALOG_CHANGED = "catalog.changed"
    SESSION_STARTED = "session.started"
    SESSION_ENDED = "session.ended"
    STREAM_DROPPED = "stream.dropped"
    """The last event a subscriber that fell behind receives."""


@dataclass(slots=True, frozen=True)
class Webhook:
    """One ``events.webhooks`` entry: where to POST, and which event types (None: all)."""

    url: str
    events: frozenset[EventType] | None = None

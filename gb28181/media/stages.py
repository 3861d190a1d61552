"""Where a play request (or a request to a device) failed, and what each failure becomes, in one table.

A failure names its :class:`Stage`; the API answers the stage's HTTP status with the stage's value in
``"stage"``, the cascade answers an upper's INVITE with the stage's SIP status and a reason phrase that
names no device-side detail, and ``gb_invites_total{stage}`` counts it under the stage's metric label.
Nothing else maps a stage: a new one is a line in :data:`STAGE_TABLE`.

The device leg of a stream moves through :class:`StreamState`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Stage(StrEnum):
    """The step that failed. The values are what the API shows in ``"stage"`` (kept as they always were)."""

    BAD_REQUEST = "bad request"
    UNKNOWN_CHANNEL = "unknown channel"
    DEVICE_OFFLINE = "device offline"
    NO_PORT = "no port"
    INVITE_REJECTED = "INVITE rejected"
    REQUEST_REJECTED = "request rejected"
    NO_ANSWER = "no answer"
    BAD_ANSWER = "bad answer"
    NO_MEDIA = "no media"
    BAD_MEDIA = "bad media"
    OUTPUT_FAILED = "output failed"
    CANCELLED = "cancelled"

    @property
    def http_status(self) -> int:
        return STAGE_TABLE[self].http_status

    @property
    def sip_status(self) -> int:
        return STAGE_TABLE[self].sip_status

    @property
    def sip_reason(self) -> str:
        return STAGE_TABLE[self].sip_reason

    @property
    def metric_label(self) -> str:
        """Prometheus label values carry no spaces: ``no answer`` is counted as ``no_answer``."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class StageOutcome:
    http_status: int
    sip_status: int
    sip_reason: str


_SETUP_FAILED = (500, "Stream set-up failed")
"""For stages an upper's INVITE cannot meet (it never sends our API's body) or that say nothing to it."""

STAGE_TABLE: dict[Stage, StageOutcome] = {
    Stage.BAD_REQUEST: StageOutcome(400, *_SETUP_FAILED),
    Stage.UNKNOWN_CHANNEL: StageOutcome(404, 404, "Not Found"),
    Stage.DEVICE_OFFLINE: StageOutcome(409, 480, "Device offline"),
    Stage.NO_PORT: StageOutcome(503, 503, "No media port free"),
    Stage.INVITE_REJECTED: StageOutcome(502, 502, "Device refused the stream"),
    Stage.REQUEST_REJECTED: StageOutcome(502, *_SETUP_FAILED),
    Stage.NO_ANSWER: StageOutcome(504, 504, "Device did not answer"),
    Stage.BAD_ANSWER: StageOutcome(502, 502, "Device answered unusably"),
    Stage.NO_MEDIA: StageOutcome(504, 504, "No media from the device"),
    Stage.BAD_MEDIA: StageOutcome(502, 502, "Unusable media from the device"),
    Stage.OUTPUT_FAILED: StageOutcome(503, 503, "No media port free"),
    # 499: nginx's "client closed request"; the API's caller is gone and never reads it.
    Stage.CANCELLED: StageOutcome(499, *_SETUP_FAILED),
}


def stage_of(value: str) -> Stage | None:
    """The stage a failure's ``stage`` string names, None for one this table does not know."""
    try:
        return Stage(value)
    except ValueError:
        return None


class StreamState(StrEnum):
    """The device leg: INVITE sent -> answered, waiting for the first packet -> media flowing -> torn down."""

    INVITING = "inviting"
    CONNECTING = "connecting"
    STREAMING = "streaming"
    ENDED = "ended"

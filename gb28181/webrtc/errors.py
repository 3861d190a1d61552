"""Why a WHEP request fails, each named once with the HTTP status it becomes."""

from __future__ import annotations

from enum import StrEnum


class WhepFailure(StrEnum):
    MALFORMED_OFFER = "malformed SDP offer"
    NO_H264 = "the offer has no H.264 (packetization-mode 1, Baseline or Constrained Baseline) to send"
    H265_UNSUPPORTED = ("cannot be previewed: H.265 in WebRTC not supported by this browser, and "
                        "console.transcode_h265 is off")
    TOO_MANY_VIEWERS = "too many viewers"
    STREAM_ENDED = "the device stream has ended"
    UNKNOWN_SESSION = "no such WHEP session"
    ICE_SETUP = "cannot set up ICE on the console address"


_STATUS = {
    WhepFailure.MALFORMED_OFFER: 400,
    WhepFailure.NO_H264: 406,
    WhepFailure.H265_UNSUPPORTED: 406,
    WhepFailure.TOO_MANY_VIEWERS: 503,
    WhepFailure.STREAM_ENDED: 410,
    WhepFailure.UNKNOWN_SESSION: 404,
    WhepFailure.ICE_SETUP: 500,
}


class WhepError(Exception):
    """A refused WHEP request: ``status`` is what to answer, ``reason`` the text for the body."""

    def __init__(self, failure: WhepFailure, detail: str = "") -> None:
        self.failure = failure
        self.detail = detail
        super().__init__(self.reason)

    @property
    def status(self) -> int:
        return _STATUS[self.failure]

    @property
    def reason(self) -> str:
        return f"{self.failure.value}: {self.detail}" if self.detail else self.failure.value

"""Errors raised on network input, each knowing the SIP response it should become (as h11 does for HTTP)."""

from __future__ import annotations


class SipError(ValueError):
    """A problem with a SIP message.

    ``status`` is the response a server should answer a request with (400 unless a more precise code
    applies: 416 unsupported URI scheme, 505 version not supported, 513 too large...). The message text is
    the reason phrase, so a peer sees what was wrong without reading our logs.
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class SipParseError(SipError):
    """The bytes are not a SIP message we can read (framing, start line or header syntax)."""

"""The playback and download INVITE offer toward a device, and what its answer says (sans-IO).

The offer is :func:`gbgw.sip.sdp.history_offer` with GB meaning put in: the kind, the window as epoch
seconds, and the history SSRC (``1`` + digits 4-8 of the domain + a 4-digit serial, the way live media
builds its ``0`` SSRC in :meth:`gbgw.gb28181.media.live.LiveStreams.new_ssrc`). The answer is read
liberally: ``t=0 0`` (Hikvision) or no ``t=`` at all means "the range you asked for", an SSRC other than
the offered one is reported, not refused, and ``a=filesize`` gives download progress its denominator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from gbgw.gb28181.recording.times import TimeWindow
from gbgw.sip.sdp import SdpError, SessionDescription, history_offer

# PS first, then the elementary streams devices fall back to, as for live (Annex F offer order).
OFFER_PAYLOADS = ((96, "PS", 90000), (98, "H264", 90000), (97, "MPEG4", 90000))


class RecordingKind(Enum):
    """What a history session is; the value is its SDP ``s=`` name."""

    PLAYBACK = "Playback"
    DOWNLOAD = "Download"

    @property
    def api_name(self) -> str:
        """``playback`` or ``download``, as the API writes a session's ``kind``."""
        return self.value.lower()


def history_ssrc(domain: str, serial: int) -> str:
    """``1`` (history) + digits 4-8 of the 10-digit domain + ``serial`` mod 10000 on four digits."""
    if not (len(domain) >= 8 and domain[:8].isascii() and domain[:8].isdigit()):
        raise ValueError(f"SIP domain {domain!r} does not start with eight digits")
    return f"1{domain[3:8]}{serial % 10000:04d}"


def recording_offer(
    kind: RecordingKind,
    channel_id: str,
    window: TimeWindow,
    origin_user: str,
    address: str,
    port: int,
    proto: str,
    ssrc: str,
    *,
    setup: str | None = None,
    connection: str | None = None,
    download_speed: int | None = None,
    payloads: Sequence[tuple[int, str, int]] = OFFER_PAYLOADS,
) -> SessionDescription:
    """The offer for ``channel_id`` over ``window``; ``download_speed`` only for a download."""
    start, end = window.sdp_timing()
    return history_offer(
        kind.value,
        channel_id,
        start,
        end,
        origin_user,
        address,
        port,
        proto,
        payloads,
        ssrc,
        setup=setup,
        connection=connection,
        download_speed=download_speed if kind is RecordingKind.DOWNLOAD else None,
    )


@dataclass(slots=True, frozen=True)
class RecordingAnswer:
    """What the media layer needs of a device's answer to a playback or download INVITE.

    ``timing`` is None for ``t=0 0`` or no ``t=`` (play the requested range); ``ssrc`` is the answered
    ``y=`` as sent (None when absent); ``filesize`` is ``a=filesize`` in bytes, None when not given.
    """

    address: str
    port: int
    is_tcp: bool
    setup: str | None
    ssrc: str | None
    timing: tuple[int, int] | None
    filesize: int | None
    download_speed: int | None

    @classmethod
    def parse(cls, body: bytes | str) -> RecordingAnswer:
        """Read an answer; SdpError (status 400) when it has no usable media line."""
        sdp = SessionDescription.parse(body)
        media = next((m for m in sdp.media if m.kind == "video"), sdp.media[0] if sdp.media else None)
        if media is None:
            raise SdpError("the SDP answer has no media line")
        timing = sdp.timing if sdp.timing is not None and sdp.timing != (0, 0) else None
        filesize = media.filesize if media.filesize is not None else _int_attribute(sdp, "filesize")
        if filesize is not None and filesize < 0:
            filesize = None
        speed = (
            media.downloadspeed if media.downloadspeed is not None else _int_attribute(sdp, "downloadspeed")
        )
        return cls(
            address=sdp.address_of(media),
            port=media.port,
            is_tcp=media.is_tcp,
            setup=media.setup,
            ssrc=sdp.ssrc or None,
            timing=timing,
            filesize=filesize,
            download_speed=speed,
        )

    def ssrc_differs(self, offered: str) -> bool:
        """Whether the device answered another SSRC than ``offered`` (to log; the relay decides)."""
        return self.ssrc is not None and self.ssrc != offered


def _int_attribute(sdp: SessionDescription, name: str) -> int | None:
    # Some devices put a=filesize at session level.
    for attr_name, value in sdp.attributes:
        if attr_name.lower() == name and value is not None:
            text = value.strip()
            return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None
    return None

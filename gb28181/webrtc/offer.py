"""Sans-IO checks of a WHEP offer before any peer connection exists: a bad offer costs no sockets.

The answer's H.264 profile is one the offer listed and aiortc can packetise: Baseline (42001f) or
Constrained Baseline (42e01f and its 4d/58 spellings, RFC 6184 8.1; Extended 58 with constraint_set0). Chromium offers 42001f, 42e01f,
4d001f and f4001f; cameras send High (6400xx) and the stream passes through untouched anyway:
browsers configure their H.264 decoder from the SPS in the stream, not from the SDP, so a High
stream under a Baseline answer decodes (the profile in the SDP only bounds what the sender
promises; the real-browser test of the console proves it for Chromium).

Audio is optional: the first audio section that receives lists which G.711 laws it takes (PCMA, PCMU, by
rtpmap or by the static payload types 8 and 0 of RFC 3551); an offer without one still gets video.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gbgw.gb28181.webrtc.errors import WhepError, WhepFailure


@dataclass(slots=True)
class OfferSummary:
    video_mid: str | None
    h264: list[tuple[int, str]] = field(default_factory=list)
    """(payload type, profile-level-id) of each H.264 packetization-mode 1 format offered, in order."""
    sendable: list[tuple[int, str]] = field(default_factory=list)
    """Those whose profile the gateway may answer with."""
    media: list[str] = field(default_factory=list)
    """Media kinds in order of their m-lines."""
    g711: list[str] = field(default_factory=list)
    """"PCMA"/"PCMU" as the first receiving audio section offers them, in its order; empty without one."""


def baseline_compatible(profile_level_id: str) -> bool:
    """Baseline or Constrained Baseline (RFC 6184 8.1 and its table of profile_idc/iop spellings)."""
    try:
        value = int(profile_level_id, 16)
    except ValueError:
        return False
    if len(profile_level_id) != 6:
        return False
    profile_idc, iop = value >> 16, (value >> 8) & 0xFF
    if profile_idc == 0x42:
        return True
    if profile_idc == 0x4D:
        return bool(iop & 0x80)
    if profile_idc == 0x58:
        return bool(iop & 0x80)
    return False


def check_offer(sdp: str) -> OfferSummary:
    """Raise `WhepError` (MALFORMED_OFFER, NO_H264) unless ``sdp`` is an offer we can answer."""
    lines = [line.rstrip("\r") for line in sdp.split("\n") if line.strip()]
    if not lines or not lines[0].startswith("v=0"):
        raise WhepError(WhepFailure.MALFORMED_OFFER, "an SDP offer starts with v=0")
    if not any(line.startswith("m=") for line in lines):
        raise WhepError(WhepFailure.MALFORMED_OFFER, "no m= line")
    summary = OfferSummary(None)
    video_seen = False
    session_ice = any(line.startswith("a=ice-ufrag:") for line in lines[: _first_media(lines)])
    session_fingerprint = any(line.startswith("a=fingerprint:") for line in lines[: _first_media(lines)])
    for block in _media_blocks(lines):
        kind, formats, port = _media_line(block[0])
        summary.media.append(kind)
        if kind == "audio" and port != 0 and not summary.g711:
            summary.g711 = _g711_offered(block, formats)
        if kind != "video" or port == 0 or video_seen:
            continue
        video_seen = True
        if not session_ice and not any(line.startswith("a=ice-ufrag:") for line in block):
            raise WhepError(WhepFailure.MALFORMED_OFFER, "the video m= section has no a=ice-ufrag")
        if not session_fingerprint and not any(line.startswith("a=fingerprint:") for line in block):
            raise WhepError(WhepFailure.MALFORMED_OFFER, "the video m= section has no DTLS a=fingerprint")
        if any(line in ("a=sendonly", "a=inactive") for line in block):
            raise WhepError(WhepFailure.MALFORMED_OFFER, "the video m= section does not receive (recvonly)")
        summary.video_mid = next((line[6:] for line in block if line.startswith("a=mid:")), None)
        rtpmap, fmtp = _formats(block)
        for payload_type in formats:
            if rtpmap.get(payload_type, "").lower() != "h264/90000":
                continue
            params = fmtp.get(payload_type, {})
            if params.get("packetization-mode", "0") != "1":
                continue
            profile = params.get("profile-level-id", "42e01f").lower()
            summary.h264.append((payload_type, profile))
            if baseline_compatible(profile):
                summary.sendable.append((payload_type, profile))
    if not video_seen:
        raise WhepError(WhepFailure.MALFORMED_OFFER, "no active video m= section")
    if not summary.sendable:
        offered = ", ".join(profile for _, profile in summary.h264) or "none"
        raise WhepError(WhepFailure.NO_H264, f"H.264 profiles offered: {offered}")
    return summary


_G711_STATIC = {8: "PCMA", 0: "PCMU"}


def _g711_offered(block: list[str], formats: list[int]) -> list[str]:
    if any(line in ("a=sendonly", "a=inactive") for line in block):
        return []
    rtpmap, _ = _formats(block)
    laws: list[str] = []
    for payload_type in formats:
        mapped = rtpmap.get(payload_type)
        if mapped is None:
            name = _G711_STATIC.get(payload_type)
        else:
            parts = mapped.upper().split("/")
            name = parts[0] if parts[1:2] == ["8000"] else None
        if name in ("PCMA", "PCMU") and name not in laws:
            laws.append(name)
    return laws


def _first_media(lines: list[str]) -> int:
    return next((index for index, line in enumerate(lines) if line.startswith("m=")), len(lines))


def _media_blocks(lines: list[str]) -> list[list[str]]:
    blocks: list[list[str]] = []
    for line in lines[_first_media(lines) :]:
        if line.startswith("m="):
            blocks.append([line])
        else:
            blocks[-1].append(line)
    return blocks


def _media_line(line: str) -> tuple[str, list[int], int]:
    parts = line[2:].split()
    if len(parts) < 4:
        raise WhepError(WhepFailure.MALFORMED_OFFER, f"bad m= line {line!r}")
    try:
        port = int(parts[1].split("/")[0])
        formats = [int(fmt) for fmt in parts[3:]] if parts[0] in ("audio", "video") else []
    except ValueError:
        raise WhepError(WhepFailure.MALFORMED_OFFER, f"bad m= line {line!r}") from None
    return parts[0], formats, port


def _formats(block: list[str]) -> tuple[dict[int, str], dict[int, dict[str, str]]]:
    rtpmap: dict[int, str] = {}
    fmtp: dict[int, dict[str, str]] = {}
    for line in block:
        if line.startswith("a=rtpmap:") or line.startswith("a=fmtp:"):
            head, _, value = line.partition(" ")
            try:
                payload_type = int(head.partition(":")[2])
            except ValueError:
                raise WhepError(WhepFailure.MALFORMED_OFFER, f"bad attribute {line!r}") from None
            if line.startswith("a=rtpmap:"):
                rtpmap[payload_type] = value.strip()
            else:
                params = (item.partition("=") for item in value.split(";") if item.strip())
                fmtp[payload_type] = {key.strip().lower(): val.strip() for key, _, val in params}
    return rtpmap, fmtp

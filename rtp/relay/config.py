"""What the gateway tells the relay about a device stream: the transport and the negotiated limits."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MediaTransport(StrEnum):
    """How RTP travels, seen from the relay: TCP passive = we listen, TCP active = we connect."""

    UDP = "udp"
    TCP_PASSIVE = "tcp-passive"
    TCP_ACTIVE = "tcp-active"


@dataclass(slots=True)
class IngestConfig:
    """What the gateway negotiated with the device, and how strict and patient to be with it."""

    transport: MediaTransport = MediaTransport.UDP
    device_host: str | None = None
    """The only host media is accepted from; None accepts the first sender (tests, NAT oddities)."""
    device_port: int | None = None
    """UDP: the port the device sends from, if known. SDP answers give the port it receives on, which
    many devices do not send from, so None (latch the first packet's port) is the usual choice."""
    device_rtcp_port: int | None = None
    """UDP: where receiver reports go; None = the SDP port + 1 given to `Ingest.start`, else where the
    device's RTCP comes from, else the port its RTP comes from + 1."""
    ssrc: int | None = None
    """The SSRC offered in ``y=``."""
    check_ssrc: bool = False
    """Drop packets with another SSRC. Off by default: many devices ignore ``y=``, send 0 or reuse an
    old SSRC; then the first SSRC seen is latched and later changes are counted and followed."""
    media_timeout: float = 10.0
    first_packet_timeout: float = 10.0
    idle_timeout: float = 5.0
    """How long the ingest outlives its last output (0: as soon as the loop gets to it)."""
    gop_cache_bytes: int = 4 << 20
    """0 disables the cache; a GOP larger than this is not cached."""
    reorder_capacity: int = 0
    """UDP only: packets a `ReorderWindow` may hold behind a gap; 0 forwards packets as they come."""
    reorder_delay: float = 0.05
    rtcp_interval: float = 5.0
    """Seconds between receiver reports; 0 sends none (a BYE is still sent when stopping)."""
    connect_timeout: float = 5.0
    """TCP set-up: connecting to a device or receiver, and how long a passive output waits for its
    receiver to connect."""
    max_pending: int = 2 << 20
    """TCP outputs: bytes queued for a slow receiver before whole packets are dropped."""

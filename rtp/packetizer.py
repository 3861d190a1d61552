"""RTP payload formats on the two ends of a relay: PS out (GB/T 28181 Annex C.1), raw H.264 in (C.2.2).

`PsRtpPacketizer` cuts each PS pack into RTP packets the way cameras do: one RTP timestamp per
frame, marker bit on the frame's last packet, payload cut at the MTU without regard to PES
boundaries (RFC 2250 allows that for PS, and receivers reassemble the byte stream).

`H264RtpDepacketizer` reads RFC 6184 packetization mode 1 (single NAL unit, STAP-A, FU-A), which
devices use when they answer an INVITE with payload type 98 instead of PS, and rebuilds Annex B
access units so the gateway can re-mux them into PS for the upper platform.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gbgw.rtp.elementary import AccessUnit, StreamType, is_keyframe
from gbgw.rtp.packet import RTP_HEADER_SIZE, RtpPacket
from gbgw.rtp.ps import VIDEO_STREAM_ID

_RTP_HEADER = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_ANNEX_B_START = b"\x00\x00\x00\x01"

_STAP_A = 24
_FU_A = 28


class PsRtpPacketizer:
    """Sequence numbers continue across frames; the RTP timestamp of a frame is its 90 kHz PTS."""

    def __init__(self, ssrc: int, payload_type: int = 96, mtu: int = 1400, first_sequence: int = 0) -> None:
        """``mtu`` bounds the whole RTP packet (header included), not just its payload."""
        if mtu <= RTP_HEADER_SIZE:
            raise ValueError("mtu must leave room for an RTP payload")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.max_payload = mtu - RTP_HEADER_SIZE
        self.sequence = first_sequence & 0xFFFF
        """Sequence number of the next packet."""

    def packetize(self, frame: bytes, timestamp: int) -> list[bytes]:
        """RTP packets for one PS pack (one video frame or one audio frame)."""
        view = memoryview(frame)
        size = len(view)
        step = self.max_payload
        timestamp &= 0xFFFFFFFF
        packets = []
        seq = self.sequence
        for start in range(0, max(size, 1), step):
            last = start + step >= size
            second = self.payload_type | 0x80 if last else self.payload_type
            packets.append(
                _RTP_HEADER.pack(0x80, second, seq, timestamp, self.ssrc) + view[start : start + step]
            )
            seq = (seq + 1) & 0xFFFF
        self.sequence = seq
        return packets


@dataclass(slots=True)
class DepacketizerStats:
    packets: int = 0
    access_units: int = 0
    sequence_gaps: int = 0
    dropped_fragments: int = 0
    """FU-A fragments thrown away because their start or a middle piece was lost."""
    unsupported: int = 0
    """STAP-B, MTAP and FU-B packets (interleaved mode), which GB devices do not send."""
    malformed: int = 0


class H264RtpDepacketizer:
    """Reassembles H.264 access units from RFC 6184 packets given in sequence order.

    An access unit ends at the marker bit or, for devices that never set it, when the RTP
    timestamp changes. A sequence gap marks the unit incomplete and discards a partial FU-A.
    """

    def __init__(self, max_unit_size: int = 8 << 20) -> None:
        self.max_unit_size = max_unit_size
        self.stats = DepacketizerStats()
        self._nals: list[bytes] = []
        self._size = 0
        self._fragments: list[bytes] | None = None
        self._timestamp: int | None = None
        self._last_sequence: int | None = None
        self._complete = True

    def push(self, packet: RtpPacket) -> list[AccessUnit]:
        """Add the next packet; returns the access unit it completes, if any."""
        self.stats.packets += 1
        out: list[AccessUnit] = []
        if self._timestamp is not None and packet.timestamp != self._timestamp:
            self._finish(out)
        if self._last_sequence is not None and packet.sequence != (self._last_sequence + 1) & 0xFFFF:
            self.stats.sequence_gaps += 1
            self._complete = False
            if self._fragments is not None:
                self._fragments = None
                self.stats.dropped_fragments += 1
        self._last_sequence = packet.sequence
        self._timestamp = packet.timestamp
        payload = packet.payload
        if payload:
            self._read_payload(memoryview(payload))
        if packet.marker:
            self._finish(out)
        return out

    def flush(self) -> list[AccessUnit]:
        """Return the unit in progress (end of stream)."""
        out: list[AccessUnit] = []
        if self._fragments is not None:
            self._fragments = None
            self._complete = False
            self.stats.dropped_fragments += 1
        self._finish(out)
        return out

    def _read_payload(self, payload: memoryview) -> None:
        nal_type = payload[0] & 0x1F
        if 1 <= nal_type <= 23:
            self._add_nal(payload)
        elif nal_type == _STAP_A:
            pos = 1
            while pos + 2 <= len(payload):
                size = _U16.unpack_from(payload, pos)[0]
                end = pos + 2 + size
                if size == 0 or end > len(payload):
                    self.stats.malformed += 1
                    self._complete = False
                    return
                self._add_nal(payload[pos + 2 : end])
                pos = end
        elif nal_type == _FU_A:
            self._read_fragment(payload)
        else:
            self.stats.unsupported += 1
            self._complete = False

    def _read_fragment(self, payload: memoryview) -> None:
        if len(payload) < 2:
            self.stats.malformed += 1
            self._complete = False
            return
        fu_header = payload[1]
        if fu_header & 0x80:
            if self._fragments is not None:
                self.stats.dropped_fragments += 1
                self._complete = False
            # Rebuild the NAL header from the FU indicator's F/NRI bits and the FU header's type.
            # Pieces are copied because the caller may reuse its receive buffer for the next packet.
            self._fragments = [bytes(((payload[0] & 0xE0) | (fu_header & 0x1F),)), bytes(payload[2:])]
        elif self._fragments is None:
            self.stats.dropped_fragments += 1
            self._complete = False
            return
        else:
            self._fragments.append(bytes(payload[2:]))
        if fu_header & 0x40:
            nal = b"".join(self._fragments)
            self._fragments = None
            self._add_nal(memoryview(nal))

    def _add_nal(self, nal: memoryview) -> None:
        self._size += len(nal) + 4
        if self._size > self.max_unit_size:
            self.stats.malformed += 1
            self._complete = False
            return
        self._nals.append(_ANNEX_B_START)
        self._nals.append(bytes(nal))

    def _finish(self, out: list[AccessUnit]) -> None:
        if self._fragments is not None:
            # A fragmented NAL unit cannot span access units: its end was lost.
            self._fragments = None
            self._complete = False
            self.stats.dropped_fragments += 1
        if self._nals:
            data = b"".join(self._nals)
            self.stats.access_units += 1
            out.append(
                AccessUnit(
                    VIDEO_STREAM_ID,
                    StreamType.H264,
                    self._timestamp,
                    None,
                    is_keyframe(data, StreamType.H264),
                    data,
                    self._complete,
                )
            )
        self._nals = []
        self._size = 0
        self._complete = True

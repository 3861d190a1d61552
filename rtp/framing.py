"""RTP over TCP: RFC 4571 framing (2-byte big-endian length before each packet), sans-IO.

GB/T 28181 Annex L mandates RFC 4571, but some devices send RTSP-style interleaved frames
(RFC 2326 10.12: ``$``, channel, 2-byte length) on the same kind of connection, and after a device
restart or a half-written packet a connection can carry bytes that are not a frame at all. The
deframer therefore checks every length against the RTP version bits behind it and, when they do
not match, scans forward for a position where two consecutive frames look right.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gbgw.rtp.packet import Buffer, RtpError

_LENGTH = struct.Struct("!H")
_INTERLEAVED_MAGIC = 0x24  # "$"
_MIN_PACKET = 8  # the smallest RTCP packet (an RR without report blocks); RTP needs 12
MAX_FRAME = 0xFFFF


def frame(packet: Buffer) -> bytes:
    """Prefix a packet with its RFC 4571 length."""
    size = len(packet)
    if size > MAX_FRAME:
        raise RtpError(f"packet of {size} bytes does not fit an RFC 4571 frame")
    return _LENGTH.pack(size) + bytes(packet)


@dataclass(slots=True)
class DeframerStats:
    frames: int = 0
    interleaved_frames: int = 0
    """Frames that came with RFC 2326 ``$`` framing instead of RFC 4571."""
    resyncs: int = 0
    """Times the stream stopped making sense and the deframer had to search for a frame start."""
    skipped_bytes: int = 0


class Rfc4571Deframer:
    """Cuts a TCP byte stream into RTP/RTCP packets.

    The buffer holds at most one incomplete frame (plus, while resynchronising, the bytes needed to
    confirm a candidate), so memory per connection stays under ``2 * max_packet`` whatever arrives.
    """

    def __init__(self, max_packet: int = MAX_FRAME) -> None:
        self.max_packet = max_packet
        self.stats = DeframerStats()
        self._buf = bytearray()
        self._synced = True

    def _header_at(self, buf: bytearray, pos: int) -> tuple[int, int] | None:
        """``(header_size, packet_size)`` of a plausible frame at ``pos``; (0, 0) = need more bytes."""
        available = len(buf) - pos
        if available < 3:
            return 0, 0
        if buf[pos + 2] >> 6 == 2:
            size = buf[pos] << 8 | buf[pos + 1]
            return (2, size) if _MIN_PACKET <= size <= self.max_packet else None
        if buf[pos] == _INTERLEAVED_MAGIC:
            if available < 5:
                return 0, 0
            size = buf[pos + 2] << 8 | buf[pos + 3]
            if buf[pos + 4] >> 6 == 2 and _MIN_PACKET <= size <= self.max_packet:
                return 4, size
        return None

    def _find_frame(self, buf: bytearray, pos: int) -> tuple[int, bool]:
        """First candidate frame at or after ``pos`` and whether the bytes after it confirm it.

        An unconfirmed candidate is one whose frame, or the header after it, has not fully arrived:
        the caller keeps the buffer from there and asks again when more bytes come.
        """
        size = len(buf)
        for candidate in range(pos, size):
            header = self._header_at(buf, candidate)
            if header is None:
                continue
            header_size, packet_size = header
            if header_size == 0:
                return candidate, False
            end = candidate + header_size + packet_size
            if end == size:
                return candidate, True
            if end > size:
                return candidate, False
            following = self._header_at(buf, end)
            if following is None:
                continue
            return candidate, following[0] != 0
        return size, False

    def feed(self, data: Buffer) -> list[bytes]:
        """Add received bytes; returns the complete packets (RTP or RTCP) they finish, in order."""
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        size = len(buf)
        while pos < size:
            if not self._synced:
                found, confirmed = self._find_frame(buf, pos)
                self.stats.skipped_bytes += found - pos
                pos = found
                if not confirmed:
                    break
                self._synced = True
            header = self._header_at(buf, pos)
            if header is None:
                self._synced = False
                self.stats.resyncs += 1
                continue
            header_size, packet_size = header
            if header_size == 0:
                break
            end = pos + header_size + packet_size
            if end > size:
                break
            out.append(bytes(buf[pos + header_size : end]))
            self.stats.frames += 1
            if header_size == 4:
                self.stats.interleaved_frames += 1
            pos = end
        del buf[:pos]
        return out

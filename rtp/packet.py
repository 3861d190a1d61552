"""RTP (RFC 3550) and RTCP packets: parse/serialize classes plus in-place helpers for the relay.

The relay forwards most packets without building an `RtpPacket`: it peeks the SSRC and sequence
number to route and count, then rewrites sequence/SSRC/timestamp in the receive buffer with
`struct.pack_into` and sends the same buffer on. `RtpPacket.parse` is for everything that looks at
the payload (PS demuxing, H.264 depacketising): 0.6-1.1 µs for a 1412-byte packet (CPython 3.11,
the payload is a view, not a copy), against 0.4 µs for `rewrite_header` and 0.7 µs for `is_rtp` +
`peek_ssrc` + `peek_seq`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

Buffer = bytes | bytearray | memoryview

_RTP_HEADER = struct.Struct("!BBHII")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_EXTENSION_HEADER = struct.Struct("!HH")

RTP_VERSION = 2
RTP_HEADER_SIZE = 12

# Seconds between the NTP epoch (1900) and the Unix epoch (1970), for sender reports.
_NTP_UNIX_OFFSET = 2_208_988_800


class RtpError(ValueError):
    """Bytes that are not a valid RTP/RTCP packet; the message says what was wrong, for the log."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet. ``payload`` is a view into the parsed buffer: copy it if the buffer is reused."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes | memoryview = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    """The 16 "defined by profile" bits of the header extension; None when there is no extension."""
    extension_data: bytes = b""
    """Header extension contents after its 4-byte header; a multiple of 4 bytes."""
    padding: int = 0
    """Number of padding bytes after the payload (RFC 3550 5.1, P bit), including the count byte."""

    @property
    def version(self) -> int:
        return RTP_VERSION

    @classmethod
    def parse(cls, data: Buffer) -> RtpPacket:
        """Parse one RTP packet; raises `RtpError` for anything that cannot be RTP version 2."""
        size = len(data)
        if size < RTP_HEADER_SIZE:
            raise RtpError(f"RTP packet too short ({size} bytes)")
        b0, b1, sequence, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {b0 >> 6}, expected 2")
        pos = RTP_HEADER_SIZE
        csrc: tuple[int, ...] = ()
        cc = b0 & 0x0F
        if cc:
            pos += 4 * cc
            if pos > size:
                raise RtpError(f"RTP CSRC list ({cc} entries) runs past the packet end")
            csrc = struct.unpack_from(f"!{cc}I", data, RTP_HEADER_SIZE)
        extension_profile = None
        extension_data = b""
        if b0 & 0x10:
            if pos + 4 > size:
                raise RtpError("RTP header extension runs past the packet end")
            extension_profile, words = _EXTENSION_HEADER.unpack_from(data, pos)
            end = pos + 4 + 4 * words
            if end > size:
                raise RtpError(f"RTP header extension ({words} words) runs past the packet end")
            extension_data = bytes(data[pos + 4 : end])
            pos = end
        end = size
        padding = 0
        if b0 & 0x20:
            padding = data[size - 1]
            if padding == 0 or padding > size - pos:
                raise RtpError(f"RTP padding count {padding} does not fit the packet")
            end -= padding
        # Positional arguments: keywords would add ~0.4 µs, a third of the parse time.
        return cls(
            b1 & 0x7F,
            sequence,
            timestamp,
            ssrc,
            memoryview(data)[pos:end],
            b1 & 0x80 != 0,
            csrc,
            extension_profile,
            extension_data,
            padding,
        )

    def serialize(self) -> bytes:
        if len(self.csrc) > 15:
            raise RtpError("an RTP packet carries at most 15 CSRCs")
        if len(self.extension_data) % 4:
            raise RtpError("RTP header extension data must be a multiple of 4 bytes")
        if not 0 <= self.padding <= 255:
            raise RtpError("RTP padding must be 0..255 bytes")
        has_extension = self.extension_profile is not None
        b0 = 0x80 | (0x20 if self.padding else 0) | (0x10 if has_extension else 0) | len(self.csrc)
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts: list[Buffer] = [
            _RTP_HEADER.pack(b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc)
        ]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension_profile is not None:
            parts.append(_EXTENSION_HEADER.pack(self.extension_profile, len(self.extension_data) // 4))
            parts.append(self.extension_data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def is_rtcp(buf: Buffer) -> bool:
    """RFC 5761 section 4 demultiplexing: version 2 and a second byte of 192..223 means RTCP.

    That range covers SR/RR/SDES/BYE/APP (200-204) and the feedback/XR types (205-207) some peers
    send; RTP payload types 64-95, which would collide, are not allowed on a multiplexed port.
    """
    return len(buf) >= 8 and buf[0] >> 6 == RTP_VERSION and 192 <= buf[1] <= 223


def is_rtp(buf: Buffer) -> bool:
    """A cheap plausibility check (version 2, full header, not RTCP) before routing a datagram."""
    return len(buf) >= RTP_HEADER_SIZE and buf[0] >> 6 == RTP_VERSION and not 192 <= buf[1] <= 223


def peek_seq(buf: Buffer) -> int:
    return _U16.unpack_from(buf, 2)[0]


def peek_timestamp(buf: Buffer) -> int:
    return _U32.unpack_from(buf, 4)[0]


def peek_ssrc(buf: Buffer) -> int:
    return _U32.unpack_from(buf, 8)[0]


def peek_payload_type(buf: Buffer) -> int:
    return buf[1] & 0x7F


def peek_marker(buf: Buffer) -> bool:
    return buf[1] & 0x80 != 0


def write_seq(buf: bytearray | memoryview, seq: int) -> None:
    _U16.pack_into(buf, 2, seq & 0xFFFF)


def write_timestamp(buf: bytearray | memoryview, timestamp: int) -> None:
    _U32.pack_into(buf, 4, timestamp & 0xFFFFFFFF)


def write_ssrc(buf: bytearray | memoryview, ssrc: int) -> None:
    _U32.pack_into(buf, 8, ssrc)


def write_payload_type(buf: bytearray | memoryview, payload_type: int) -> None:
    buf[1] = (buf[1] & 0x80) | (payload_type & 0x7F)


def rewrite_header(buf: bytearray | memoryview, seq: int, ssrc: int) -> None:
    """Give a received packet the relay output's sequence number and SSRC, in place."""
    _U16.pack_into(buf, 2, seq & 0xFFFF)
    _U32.pack_into(buf, 8, ssrc)


def payload_offset(buf: Buffer, pos: int, size: int) -> int:
    """Where the payload of the RTP packet at ``buf[pos:pos + size]`` starts, past its CSRCs and
    header extension, without copying it; -1 if the extension header lies past the packet's end."""
    b0 = buf[pos]
    start = pos + RTP_HEADER_SIZE + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if start + 4 > pos + size:
            return -1
        start += 4 + 4 * _U16.unpack_from(buf, start + 2)[0]
    return start


# ---------------------------------------------------------------------------------------------- RTCP

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204

SDES_CNAME = 1

_RTCP_HEADER = struct.Struct("!BBH")
_REPORT_BLOCK = struct.Struct("!IIIIII")
_SENDER_INFO = struct.Struct("!IQIII")


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp (RFC 3550 4) for a Unix time, as carried in sender reports."""
    seconds = unix_time + _NTP_UNIX_OFFSET
    return int(seconds * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


@dataclass(slots=True)
class ReportBlock:
    """Reception report for one source (RFC 3550 6.4.1)."""

    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0
    """Cumulative, signed 24-bit: duplicates can make it negative."""
    highest_sequence: int = 0
    """Extended highest sequence number received (cycles << 16 | seq)."""
    jitter: int = 0
    last_sr: int = 0
    """Middle 32 bits of the last SR's NTP timestamp."""
    delay_since_last_sr: int = 0
    """In units of 1/65536 s."""

    @classmethod
    def parse(cls, data: Buffer, offset: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.packets_lost)) & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )


def _rtcp_header(packet_type: int, count: int, body_size: int) -> bytes:
    if body_size % 4:
        raise RtpError("RTCP packet body must be a multiple of 4 bytes")
    return _RTCP_HEADER.pack(0x80 | count, packet_type, body_size // 4)


def _parse_report_blocks(body: Buffer, offset: int, count: int) -> tuple[list[ReportBlock], int]:
    end = offset + 24 * count
    if end > len(body):
        raise RtpError(f"RTCP report claims {count} blocks but is too short")
    return [ReportBlock.parse(body, offset + 24 * i) for i in range(count)], end


@dataclass(slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)
    profile_extension: bytes = b""

    @classmethod
    def parse_body(cls, count: int, body: Buffer) -> SenderReport:
        if len(body) < 24:
            raise RtpError("RTCP SR shorter than its sender info")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
        reports, end = _parse_report_blocks(body, 24, count)
        return cls(ssrc, ntp, rtp_ts, packets, octets, reports, bytes(body[end:]))

    def serialize(self) -> bytes:
        body = b"".join(
            [
                _SENDER_INFO.pack(
                    self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
                ),
                *(block.serialize() for block in self.reports),
                self.profile_extension,
            ]
        )
        return _rtcp_header(RTCP_SR, len(self.reports), len(body)) + body


@dataclass(slots=True)
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)
    profile_extension: bytes = b""

    @classmethod
    def parse_body(cls, count: int, body: Buffer) -> ReceiverReport:
        if len(body) < 4:
            raise RtpError("RTCP RR shorter than its SSRC")
        reports, end = _parse_report_blocks(body, 4, count)
        return cls(_U32.unpack_from(body)[0], reports, bytes(body[end:]))

    def serialize(self) -> bytes:
        body = b"".join(
            [_U32.pack(self.ssrc), *(block.serialize() for block in self.reports), self.profile_extension]
        )
        return _rtcp_header(RTCP_RR, len(self.reports), len(body)) + body


@dataclass(slots=True)
class SdesChunk:
    """The items one source describes; ``items`` keeps (type, value) pairs in order (RFC 3550 6.5)."""

    ssrc: int
    items: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def cname(self) -> str | None:
        for item_type, value in self.items:
            if item_type == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(slots=True)
class SourceDescription:
    chunks: list[SdesChunk] = field(default_factory=list)

    @classmethod
    def parse_body(cls, count: int, body: Buffer) -> SourceDescription:
        chunks = []
        pos = 0
        size = len(body)
        for _ in range(count):
            if pos + 4 > size:
                raise RtpError("RTCP SDES chunk runs past the packet end")
            chunk = SdesChunk(_U32.unpack_from(body, pos)[0])
            pos += 4
            while True:
                if pos >= size:
                    raise RtpError("RTCP SDES chunk is not terminated")
                item_type = body[pos]
                if item_type == 0:
                    # The terminating null plus padding to the next 32-bit boundary.
                    pos = (pos + 4) & ~3
                    break
                if pos + 2 > size or pos + 2 + body[pos + 1] > size:
                    raise RtpError("RTCP SDES item runs past the packet end")
                length = body[pos + 1]
                chunk.items.append((item_type, bytes(body[pos + 2 : pos + 2 + length])))
                pos += 2 + length
            chunks.append(chunk)
        return cls(chunks)

    def serialize(self) -> bytes:
        if len(self.chunks) > 31:
            raise RtpError("an SDES packet carries at most 31 chunks")
        parts = []
        for chunk in self.chunks:
            encoded = bytearray(_U32.pack(chunk.ssrc))
            for item_type, value in chunk.items:
                if not 1 <= item_type <= 255 or len(value) > 255:
                    raise RtpError("SDES item type must be 1..255 and its value at most 255 bytes")
                encoded += bytes((item_type, len(value))) + value
            # At least one null octet terminates the item list, then pad to 32 bits.
            encoded += bytes(4 - len(encoded) % 4)
            parts.append(bytes(encoded))
        body = b"".join(parts)
        return _rtcp_header(RTCP_SDES, len(self.chunks), len(body)) + body

    @classmethod
    def with_cname(cls, ssrc: int, cname: str) -> SourceDescription:
        return cls([SdesChunk(ssrc, [(SDES_CNAME, cname.encode())])])


@dataclass(slots=True)
class Bye:
    sources: list[int] = field(default_factory=list)
    reason: str | None = None

    @classmethod
    def parse_body(cls, count: int, body: Buffer) -> Bye:
        end = 4 * count
        if end > len(body):
            raise RtpError(f"RTCP BYE claims {count} sources but is too short")
        sources = list(struct.unpack_from(f"!{count}I", body))
        reason = None
        if end < len(body):
            length = body[end]
            if end + 1 + length > len(body):
                raise RtpError("RTCP BYE reason runs past the packet end")
            reason = bytes(body[end + 1 : end + 1 + length]).decode("utf-8", "replace")
        return cls(sources, reason)

    def serialize(self) -> bytes:
        if len(self.sources) > 31:
            raise RtpError("a BYE packet carries at most 31 sources")
        body = bytearray(struct.pack(f"!{len(self.sources)}I", *self.sources))
        if self.reason is not None:
            encoded = self.reason.encode()
            if len(encoded) > 255:
                raise RtpError("BYE reason is longer than 255 bytes")
            body += bytes((len(encoded),)) + encoded
            body += bytes(-len(body) % 4)
        return _rtcp_header(RTCP_BYE, len(self.sources), len(body)) + bytes(body)


@dataclass(slots=True)
class UnknownRtcp:
    """An RTCP packet we do not interpret (APP, feedback, XR), kept so it can be logged or forwarded."""

    packet_type: int
    count: int
    body: bytes

    def serialize(self) -> bytes:
        return _rtcp_header(self.packet_type, self.count & 0x1F, len(self.body)) + self.body


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp

_RTCP_PARSERS: dict[int, Callable[[int, Buffer], RtcpPacket]] = {
    RTCP_SR: SenderReport.parse_body,
    RTCP_RR: ReceiverReport.parse_body,
    RTCP_SDES: SourceDescription.parse_body,
    RTCP_BYE: Bye.parse_body,
}


def parse_rtcp(data: Buffer) -> list[RtcpPacket]:
    """Parse a compound RTCP packet into its parts; raises `RtpError` on malformed input.

    Liberal about order (RFC 3550 wants SR/RR first; cameras do not always comply) and about
    padding, which RFC 3550 only allows on the last packet.
    """
    packets: list[RtcpPacket] = []
    pos = 0
    size = len(data)
    if size < 4:
        raise RtpError(f"RTCP packet too short ({size} bytes)")
    while pos < size:
        if pos + 4 > size:
            raise RtpError("trailing bytes after the last RTCP packet")
        b0, packet_type, words = _RTCP_HEADER.unpack_from(data, pos)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {b0 >> 6}, expected 2")
        end = pos + 4 + 4 * words
        if end > size:
            raise RtpError(f"RTCP packet type {packet_type} length runs past the datagram")
        body_end = end
        if b0 & 0x20:
            padding = data[end - 1]
            if padding == 0 or padding > end - pos - 4:
                raise RtpError(f"RTCP padding count {padding} does not fit the packet")
            body_end -= padding
        body = memoryview(data)[pos + 4 : body_end]
        count = b0 & 0x1F
        parser = _RTCP_PARSERS.get(packet_type)
        packets.append(parser(count, body) if parser else UnknownRtcp(packet_type, count, bytes(body)))
        pos = end
    return packets


def serialize_rtcp(packets: Iterable[RtcpPacket]) -> bytes:
    """Concatenate packets into one compound RTCP datagram."""
    return b"".join(packet.serialize() for packet in packets)

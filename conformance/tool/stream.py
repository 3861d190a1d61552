"""The PS-over-RTP stream a device sends, checked against the standard (Annex C, Annex F), sans-IO:
`StreamCheck` is fed each RTP packet with its arrival time and lists what is wrong.

Checked: the SSRC equals the ``y=`` offered (§9.2.2 and Annex F: the platform tells streams apart by
it), payload type 96 (PS), RTP timestamps that never go back and advance at 90 kHz, a pack header at
the start of the stream's frames, a program stream map and PES packets (Annex C.2), and a keyframe
within 2 s of the first packet (a viewer must not wait for a picture). `ffprobe_video` adds whether
FFmpeg can find a video stream in the PS, when ffprobe is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gbgw.rtp.framing import Rfc4571Deframer
from gbgw.rtp.packet import RtpError, RtpPacket
from gbgw.rtp.ps import PACK_START, PsDemuxer, starts_keyframe

CLOCK = 90_000
KEYFRAME_WITHIN = 2.0
_RATE_TOLERANCE = 0.25
_MIN_SPAN = 1.0
"""Seconds of stream needed before the timestamp rate is judged (frame timing jitters below that)."""
_SETTLE = 0.5


@dataclass(slots=True)
class Finding:
    clause: str
    message: str


@dataclass(slots=True)
class StreamCheck:
    expected_ssrc: int
    packets: int = 0
    first_at: float | None = None
    last_at: float = 0.0
    keyframe_at: float | None = None
    ssrcs: Counter[int] = field(default_factory=Counter)
    payload_types: Counter[int] = field(default_factory=Counter)
    unreadable: int = 0
    backwards: list[str] = field(default_factory=list)
    first_ts: int | None = None
    last_ts: int | None = None
    advanced: int = 0
    """Timestamp ticks from the first packet to the last, unwrapped."""
    settled_at: float | None = None
    settled_advanced: int = 0
    """Time and ticks advanced at the first packet `_SETTLE` s into the stream: a relay may start with a
    burst of cached frames (a GOP cache), faster than real time, so the clock rate is judged after it."""
    first_bytes: bytes = b""
    payload: bytearray = field(default_factory=bytearray)
    """The PS bytes received (up to `keep`), for ffprobe."""
    keep: int = 8 << 20
    demuxer: PsDemuxer = field(default_factory=PsDemuxer)

    def feed(self, data: bytes, now: float) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self.unreadable += 1
            return
        self.packets += 1
        if self.first_at is None:
            self.first_at = now
            self.first_bytes = data[:64]
        self.last_at = now
        self.ssrcs[packet.ssrc] += 1
        self.payload_types[packet.payload_type] += 1
        ts = packet.timestamp
        if self.last_ts is not None:
            step = (ts - self.last_ts) & 0xFFFFFFFF
            if step >= 0x80000000:
                if len(self.backwards) < 5:
                    self.backwards.append(f"packet {self.packets} (seq {packet.sequence}): "
                                          f"timestamp {ts} after {self.last_ts}")
            else:
                self.advanced += step
                if self.settled_at is None and now - (self.first_at or now) >= _SETTLE:
                    self.settled_at, self.settled_advanced = now, self.advanced
        else:
            self.first_ts = ts
        self.last_ts = ts
        payload = bytes(packet.payload)
        if self.keyframe_at is None and starts_keyframe(payload):
            self.keyframe_at = now
        if len(self.payload) < self.keep:
            self.payload += payload
        self.demuxer.feed(payload)

    def findings(self) -> list[Finding]:
        """Everything the stream got wrong; empty when it conforms."""
        out: list[Finding] = []
        if self.first_at is None:
            return [Finding("§9.2 / Annex C", "no RTP packet arrived")]
        foreign = {ssrc: n for ssrc, n in self.ssrcs.items() if ssrc != self.expected_ssrc}
        if foreign:
            seen = ", ".join(f"{ssrc} ({n} packets)" for ssrc, n in foreign.items())
            out.append(Finding("Annex F (y= SSRC)",
                               f"RTP SSRC {seen} differs from the offered y= {self.expected_ssrc:010d}"))
        if set(self.payload_types) - {96}:
            out.append(Finding("Annex C (PS payload type 96)", f"payload types {dict(self.payload_types)}"))
        if self.backwards:
            out.append(Finding("RFC 3550 §5.1 / Annex C", "RTP timestamps went back: " + "; ".join(self.backwards)))
        span = self.last_at - self.first_at
        settled = self.last_at - (self.settled_at or self.last_at)
        if settled >= _MIN_SPAN and self.advanced > self.settled_advanced:
            ticks = self.advanced - self.settled_advanced
            rate = ticks / settled
            if abs(rate - CLOCK) > CLOCK * _RATE_TOLERANCE:
                out.append(Finding("Annex C (90 kHz clock)",
                                   f"timestamps advanced {ticks} in {settled:.2f} s (after the first "
                                   f"{_SETTLE:g} s): {rate:.0f} Hz, not 90000"))
        stats = self.demuxer.stats
        if not self.payload.startswith(PACK_START):
            out.append(Finding("Annex C.2 (pack header)",
                               f"the first RTP payload does not start with a pack header: {self.payload[:16].hex()}"))
        if stats.packs == 0:
            out.append(Finding("Annex C.2 (pack header)", "no PS pack header (00 00 01 BA) in the stream"))
        if stats.stream_maps == 0:
            out.append(Finding("Annex C.2 (program stream map)",
                               f"no program stream map (00 00 01 BC) in {stats.packs} packs"))
        if stats.pes_packets == 0:
            out.append(Finding("Annex C.2 (PES)", "no audio or video PES packet in the stream"))
        if stats.errors:
            out.append(Finding("Annex C.2", f"{stats.errors} malformed PS headers or start codes"))
        if self.keyframe_at is None:
            out.append(Finding("Annex C.2 (keyframe)", f"no keyframe in {span:.1f} s of stream"))
        elif self.keyframe_at - self.first_at > KEYFRAME_WITHIN:
            out.append(Finding("Annex C.2 (keyframe)",
                               f"first keyframe {self.keyframe_at - self.first_at:.1f} s after the first packet"))
        return out

    def describe(self) -> str:
        stats = self.demuxer.stats
        span = (self.last_at - self.first_at) if self.first_at is not None else 0.0
        return (f"{self.packets} RTP packets in {span:.1f} s, SSRCs {dict(self.ssrcs)}, packs {stats.packs}, "
                f"stream maps {stats.stream_maps}, PES {stats.pes_packets}, access units {stats.access_units}")


class RtpSink(asyncio.DatagramProtocol):
    """Feeds every datagram to a `StreamCheck`."""

    def __init__(self, check: StreamCheck) -> None:
        self.check = check
        self._loop = asyncio.get_running_loop()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.check.feed(data, self._loop.time())


def ffprobe_video(payload: bytes, timeout: float = 15.0) -> str | None:
    """The codec ffprobe finds in the PS bytes; "" when it finds none, None when ffprobe is missing."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stream.ps"
        path.write_bytes(payload)
        try:
            done = subprocess.run(
                [ffprobe, "-v", "error", "-f", "mpeg", "-select_streams", "v", "-show_entries",
                 "stream=codec_name", "-of", "csv=p=0", str(path)],
                capture_output=True, text=True, timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired:
            return ""
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""


class TcpRtpReceiver:
    """Feeds a `StreamCheck` from RTP over TCP (RFC 4571 framing), in either role of RFC 4145: `listen`
    for an offer with ``a=setup:passive`` (the device connects to the tool), `connect` for
    ``a=setup:active`` (the tool connects to the port the device answers)."""

    def __init__(self, check: StreamCheck) -> None:
        self.check = check
        self.connected = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def listen(self, host: str) -> int:
        self._server = await asyncio.start_server(self._read, host, 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def connect(self, host: str, port: int, timeout: float) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        task = asyncio.get_running_loop().create_task(self._read(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connected = True
        self._writers.append(writer)
        loop = asyncio.get_running_loop()
        deframer = Rfc4571Deframer()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                now = loop.time()
                for packet in deframer.feed(data):
                    self.check.feed(packet, now)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()

"""Media for simulated devices: answer a Play, Playback or Download INVITE like a camera or NVR and stream
a file as PS over RTP.

A real camera answers the platform's SDP offer with ``s=Play``, its own address and port, ``a=sendonly``,
``a=rtpmap:96 PS/90000`` and the ``y=`` SSRC it will send, then, once the ACK arrives, sends one PS pack
per frame, cut into RTP packets, every 1/fps seconds. Over TCP (RFC 4571 framing) it takes the role the
offer leaves it: an offer with ``a=setup:passive`` means the platform listens, so the device connects to
the offered port; ``a=setup:active`` means the platform connects, so the device listens on the port it
answers. This module does that for `devices.py`, plus the misbehaviour tests need: another SSRC
than offered (or 0, as devices that ignore ``y=`` send), packet loss and reordering, silence.

Recorded video (``s=Playback``/``s=Download``) plays the clip from the start of the asked range, looping,
for exactly the range's length of media time: MANSRTSP in INFO (`control`) pauses, resumes, seeks (PTS
continue from the seek position, snapped back to a keyframe as NVRs do) and changes the scale (frames go
out ``scale`` times faster, PTS still advance one frame each); a download goes out at ``a=downloadspeed``
times real time. At the end of the range the call finishes and the device announces MediaStatus 121
(`MediaOptions.media_status`) and waits for the platform's BYE.

With ``audio`` ("pcma" or "pcmu") a live call also muxes G.711 next to the video, as cameras with a
microphone do: a 440 Hz tone, 20 ms (160 samples) per PS pack with its own PTS on the video's clock, the
stream map naming stream 0xC0 as type 0x90 (A-law, GB/T 28181 Annex C; the official tool's sample does
so) or 0x91 (µ-law).

The elementary stream is split into access units once (`MediaSource`) and shared by every call; each call
muxes and packetises as it goes, because PS timestamps and RTP sequence numbers are per call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from gbgw.gb28181.recording.mansrtsp import MansrtspError, Method, answer, parse_request
from gbgw.rtp.elementary import StreamType, is_keyframe, iter_access_units
from gbgw.rtp.framing import frame
from gbgw.rtp.packetizer import PsRtpPacketizer
from gbgw.rtp.ps import PsMuxer
from gbgw.sip.sdp import SdpError, SessionDescription

log = structlog.get_logger("gb28181.simulator")

CODECS = {"h264": StreamType.H264, "h265": StreamType.H265}
AUDIO_CODECS = {"pcma": StreamType.G711A, "pcmu": StreamType.G711U}
TONE_HZ = 440
_AUDIO_RATE = 8000
_AUDIO_SAMPLES = 160
"""Samples per audio pack: 20 ms, what G.711 cameras and RTP (RFC 3551 ptime) use."""
PS_PAYLOAD = (96, "PS", 90000)
_CLOCK = 90_000
_CONNECT_TIMEOUT = 10.0
HISTORY_KINDS = frozenset({"playback", "download"})
MEDIA_STATUS_WAYS = ("message", "dialog", "notify", "none")
_MAX_LAG = 1.0
"""Seconds a stream may fall behind its frame clock before it stops catching up and restarts the clock
(a loaded event loop must not turn into a burst of seconds of video)."""


class OfferError(Exception):
    """An INVITE offer the simulated device cannot answer; ``status`` is the SIP response to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True, kw_only=True)
class MediaOptions:
    """How simulated devices answer INVITEs and what they stream. Invalid values raise ValueError."""

    file: Path | None = None
    """H.264/H.265 Annex B elementary stream, streamed in a loop; None answers INVITEs 488 unless `send`
    is off."""
    codec: str = "h264"
    fps: float = 25.0
    duration: float = 0.0
    """Seconds a call streams before the device hangs up with BYE; 0 streams until the BYE comes."""
    ssrc: int | None = None
    """None answers and sends the offered ``y=``; a number is answered and sent instead (0 like devices
    that ignore ``y=``)."""
    invite_status: int = 200
    """Final answer to INVITE: 200 streams, 4xx-6xx rejects (486 Busy Here), 0 never answers (only the
    100 Trying the transaction layer sends)."""
    send: bool = True
    """False: answer 200 (and over TCP, connect or accept) but never send a packet."""
    loss: float = 0.0
    """Fraction of RTP packets not sent, as if lost on the way."""
    reorder: float = 0.0
    """Fraction of RTP packets sent after the packet that follows them in the same frame."""
    seed: int | None = None
    mtu: int = 1400
    faults: frozenset[str] = frozenset()
    """The media faults of `config.FAULTS` ("ssrc", "no-psm") this device commits."""
    zero_timing: bool = False
    """Answer Playback and Download INVITEs with ``t=0 0`` instead of the range asked (Hikvision NVRs)."""
    media_status: str = "message"
    """How the end of a recorded range is announced (MediaStatus 121): a MESSAGE out of the call's dialog
    (as most NVRs send it), a MESSAGE or a NOTIFY in it, or "none" (never, as some devices behave)."""
    info_status: int = 200
    """SIP status answering MANSRTSP INFO; 4xx/5xx refuses every playback control."""
    audio: str = ""
    """"pcma" or "pcmu": live calls carry a G.711 tone next to the video; "" video only."""

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"media codec must be one of {sorted(CODECS)}, not {self.codec!r}")
        if not 0 < self.fps <= 240:
            raise ValueError(f"fps must be above 0 and at most 240, not {self.fps}")
        if self.duration < 0:
            raise ValueError("media duration must not be negative")
        if self.ssrc is not None and not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise ValueError(f"SSRC {self.ssrc} does not fit in 32 bits")
        if self.invite_status != 0 and not (self.invite_status == 200 or 400 <= self.invite_status <= 699):
            raise ValueError(f"INVITE status must be 200, 400-699 or 0 (no answer), not {self.invite_status}")
        if not (0 <= self.loss < 1 and 0 <= self.reorder < 1):
            raise ValueError("loss and reorder are fractions from 0 up to (not including) 1")
        if not 64 <= self.mtu <= 65535:
            raise ValueError(f"MTU must be 64 to 65535 bytes, not {self.mtu}")
        if self.media_status not in MEDIA_STATUS_WAYS:
            raise ValueError(f"media status must be one of {MEDIA_STATUS_WAYS}, not {self.media_status!r}")
        if not (self.info_status == 200 or 400 <= self.info_status <= 699):
            raise ValueError(f"INFO status must be 200 or 400-699, not {self.info_status}")
        if self.audio and self.audio not in AUDIO_CODECS:
            raise ValueError(f"media audio must be one of {sorted(AUDIO_CODECS)} or empty, not {self.audio!r}")


@dataclass(slots=True, frozen=True)
class MediaSource:
    """A file's access units from its first keyframe on, as (Annex B bytes, keyframe)."""

    path: Path
    codec: StreamType
    frames: tuple[tuple[bytes, bool], ...]

    def keyframe_at_or_before(self, index: int) -> int:
        """The frame index (counting on through loops) of the last keyframe at or before ``index``."""
        frames = self.frames
        while index > 0 and not frames[index % len(frames)][1]:
            index -= 1
        return index

    @property
    def bytes_per_frame(self) -> float:
        return sum(len(unit) for unit, _ in self.frames) / len(self.frames)

    @classmethod
    def load(cls, path: Path, codec: str) -> MediaSource:
        """Raises ValueError when the file holds no keyframe (a decoder could never start)."""
        stream_type = CODECS[codec]
        units = [(unit, is_keyframe(unit, stream_type))
                 for unit in iter_access_units(path.read_bytes(), stream_type)]
        first = next((i for i, (_, keyframe) in enumerate(units) if keyframe), None)
        if first is None:
            raise ValueError(f"{path} holds no {codec} keyframe")
        # Looping starts over at the first keyframe, so a receiver never sees a P-frame follow the end.
        return cls(path, stream_type, tuple(units[first:]))


@dataclass(slots=True)
class CallStats:
    frames: int = 0
    packets: int = 0
    """RTP packets sent (dropped ones not included)."""
    bytes: int = 0
    dropped: int = 0
    """Packets left out on purpose (`MediaOptions.loss`)."""
    reordered: int = 0
    """Packets sent after their successor on purpose (`MediaOptions.reorder`)."""
    send_errors: int = 0
    audio_frames: int = 0
    """G.711 packs sent (`MediaOptions.audio`)."""
    first_packet_at: float | None = None
    """`time.monotonic()` when the first packet went out."""
    controls: int = 0
    """MANSRTSP requests received in INFO."""


class MediaCall:
    """The media side of one answered INVITE: sockets bound at answer time, streaming from the ACK on.

    ``role`` is how the device sends: ``udp``, ``tcp-active`` (it connects to the offered port) or
    ``tcp-passive`` (it listens on the answered port and the platform connects).
    """

    def __init__(
        self,
        call_id: str,
        channel_id: str,
        source: MediaSource | None,
        options: MediaOptions,
        role: str,
        target: tuple[str, int],
        ssrc: int,
        sock: socket.socket,
        *,
        kind: str = "play",
        range_seconds: float = 0.0,
        speed: float = 1.0,
    ) -> None:
        """``kind`` is ``play``, ``playback`` or ``download``; a history call streams ``range_seconds`` of
        media, a download at ``speed`` times real time."""
        self.call_id = call_id
        self.channel_id = channel_id
        self.source = source
        self.options = options
        self.role = role
        self.target = target
        self.ssrc = ssrc
        self.stats = CallStats()
        self.state = "answered"
        self.ended: str | None = None
        self._sock = sock
        self._conn: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._random = random.Random(options.seed)
        self.kind = kind
        self.range_seconds = range_seconds
        self.speed = speed
        self.scale = 1.0
        self.paused = False
        self.position = 0
        """The next frame to send, counted from the start of the range."""
        self._changed = asyncio.Event()
        self.offered_stream: dict[str, str] = {}
        """The sub-stream attributes of the offer (streamnumber, stream, streamprofile, streamMode), as sent."""

    @property
    def history(self) -> bool:
        return self.kind in HISTORY_KINDS

    def __repr__(self) -> str:
        target = f"{self.target[0]}:{self.target[1]}"
        return f"<MediaCall {self.call_id} {self.role} -> {target} ssrc={self.ssrc} {self.state}>"

    @property
    def local_port(self) -> int:
        return int(self._sock.getsockname()[1])

    @classmethod
    def answer(
        cls,
        call_id: str,
        channel_id: str,
        offer: bytes,
        source: MediaSource | None,
        options: MediaOptions,
        *,
        bind: str,
        signalling_host: str,
    ) -> tuple[MediaCall, bytes]:
        """Bind the media socket for ``offer`` and build the SDP answer; raises OfferError when the
        offer cannot be served (no PS, not a live Play, no port)."""
        try:
            sdp = SessionDescription.parse(offer)
        except SdpError as exc:
            raise OfferError(400, f"unreadable SDP offer: {exc.reason}") from None
        kind = (sdp.session_name or "").strip().lower()
        if kind != "play" and kind not in HISTORY_KINDS:
            raise OfferError(488, f"only Play, Playback and Download are simulated, not {sdp.session_name!r}")
        timing = sdp.timing or (0, 0)
        if kind in HISTORY_KINDS and not 0 <= timing[0] < timing[1]:
            raise OfferError(488, f"a {sdp.session_name} offer needs t=START END, not {timing}")
        video = next((m for m in sdp.media if m.kind.lower() == "video"), None)
        if video is None:
            raise OfferError(488, "the offer has no video")
        if PS_PAYLOAD[0] not in video.formats or video.rtpmap.get(PS_PAYLOAD[0], ("PS",))[0].upper() != "PS":
            raise OfferError(488, "the offer has no PS payload type 96")
        address = sdp.address_of(video)
        if address in ("", "0.0.0.0", "::"):
            address = signalling_host
        if video.is_tcp:
            # RFC 4145: an offer without a=setup is active. We take the other role (active for actpass).
            role = "tcp-passive" if (video.setup or "active") == "active" else "tcp-active"
        else:
            role = "udp"
        if role != "tcp-passive" and not video.port:
            raise OfferError(488, "the offer has no media port to send to")
        offered = sdp.ssrc_int
        if options.ssrc is not None:
            ssrc = options.ssrc
        elif offered is not None:
            ssrc = offered
        else:
            ssrc = random.randrange(10**9)
        sock = _bind(role, bind)
        sent_ssrc = (ssrc + 1) % 10**10 if "ssrc" in options.faults else ssrc
        range_seconds = float(timing[1] - timing[0]) if kind in HISTORY_KINDS else 0.0
        speed = float(video.downloadspeed or 1) if kind == "download" else 1.0
        call = cls(call_id, channel_id, source, options, role, (address, video.port), sent_ssrc & 0xFFFFFFFF, sock,
                   kind=kind, range_seconds=range_seconds, speed=max(speed, 1.0))
        call.offered_stream = {
            a.name: a.value or "" for a in video.attributes
            if a.name.lower() in ("streamnumber", "stream", "streamprofile", "streammode")
        }
        tcp = role != "udp"
        attributes: list[tuple[str, str | None]] = []
        if kind == "download" and source is not None:
            attributes.append(("filesize", str(round(source.bytes_per_frame * range_seconds * options.fps))))
        try:
            answer = SessionDescription.offer(
                sdp.session_name or "Play",
                channel_id,
                bind,
                call.local_port,
                "TCP/RTP/AVP" if tcp else "RTP/AVP",
                (PS_PAYLOAD,),
                ssrc,
                setup=role.removeprefix("tcp-") if tcp else None,
                connection="new" if tcp else None,
                direction="sendonly",
                media_params="",
                time=(0, 0) if options.zero_timing or kind == "play" else timing,
                uri=sdp.uri if kind in HISTORY_KINDS else None,
                attributes=attributes,
            )
        except ValueError as exc:
            # A wildcard bind address: there is no address to put in c=.
            call.close("no answer")
            raise OfferError(500, f"cannot answer: {exc}") from None
        return call, answer.serialize()

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self, on_finished: Callable[[MediaCall], None]) -> None:
        """The ACK arrived: stream until `close`, or until `MediaOptions.duration` passes, when
        ``on_finished`` is called so the device can hang up."""
        if self._task is not None or self.ended is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(on_finished))

    def control(self, body: bytes) -> tuple[int, bytes]:
        """A MANSRTSP INFO body: (SIP status, the MANSRTSP answer for the 200's body)."""
        self.stats.controls += 1
        if not self.history:
            return 481, b""
        status = self.options.info_status
        try:
            request = parse_request(body)
        except MansrtspError as exc:
            return exc.status, b""
        if status != 200:
            return status, b""
        if request.method is Method.PAUSE:
            self.paused = True
        elif request.method is Method.PLAY:
            if request.position is not None and self.source is not None:
                frame = min(round(request.position * self.options.fps), self._end_frame)
                self.position = self.source.keyframe_at_or_before(frame)
            if request.scale is not None:
                self.scale = abs(request.scale)
            self.paused = False
        self._changed.set()
        return 200, answer(request).serialize()

    @property
    def _end_frame(self) -> int:
        return math.ceil(self.range_seconds * self.options.fps)

    def mute(self) -> None:
        """Stop sending without ending the call, as a camera whose encoder hangs does."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.ended is None:
            self.state = "silent"

    def close(self, reason: str) -> None:
        """End the call's media (BYE either way): stop sending, close the sockets."""
        if self.ended is not None:
            return
        self.ended = reason
        self.state = "ended"
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for sock in (self._conn, self._sock):
            if sock is not None:
                sock.close()

    # -- streaming -----------------------------------------------------------------------------------

    async def _connect(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        sock = self._sock
        if self.role == "udp":
            sock.connect(self.target)
            return sock
        if self.role == "tcp-active":
            await asyncio.wait_for(loop.sock_connect(sock, self.target), _CONNECT_TIMEOUT)
            conn = sock
        else:
            conn, peer = await asyncio.wait_for(loop.sock_accept(sock), _CONNECT_TIMEOUT)
            self._conn = conn
            conn.setblocking(False)
            log.debug("simulated device accepted media connection", call_id=self.call_id,
                      peer=f"{peer[0]}:{peer[1]}")
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    async def _run(self, on_finished: Callable[[MediaCall], None]) -> None:
        try:
            sock = await self._connect()
        except (OSError, TimeoutError) as exc:
            log.warning("simulated device has no media connection", call_id=self.call_id, role=self.role,
                        target=f"{self.target[0]}:{self.target[1]}", error=repr(exc))
            self.state = "failed"
            return
        options, stats, source = self.options, self.stats, self.source
        if not options.send or source is None:
            self.state = "silent"
            self._task = None
            return
        self.state = "streaming"
        if self.history:
            await self._run_history(sock, source)
            if self.state == "streaming":
                self.state = "finished"
                self._task = None
                on_finished(self)
            return
        loop = asyncio.get_running_loop()
        frames = source.frames
        audio_type = AUDIO_CODECS.get(options.audio)
        audio = g711_tone(audio_type) if audio_type is not None else ()
        muxer = PsMuxer(video=source.codec, audio=audio_type)
        packetizer = PsRtpPacketizer(self.ssrc, PS_PAYLOAD[0], options.mtu, self._random.getrandbits(16))
        base = self._random.getrandbits(31)
        step = _CLOCK / options.fps
        audio_step = _CLOCK * _AUDIO_SAMPLES // _AUDIO_RATE
        udp = self.role == "udp"
        strip_map = "no-psm" in options.faults
        started = clock = loop.time()
        count = audio_count = 0
        while not options.duration or loop.time() - started < options.duration:
            unit, keyframe = frames[count % len(frames)]
            pts = base + round(count * step)
            pack = muxer.mux_video(unit, pts, keyframe=keyframe)
            if strip_map:
                pack = _without_stream_map(pack)
            packets = self._impair(packetizer.packetize(pack, pts))
            # The audio of this frame's interval, each pack on its own RTP timestamp as cameras send it.
            while audio and audio_count * audio_step < round((count + 1) * step):
                audio_pts = base + audio_count * audio_step
                audio_pack = muxer.mux_audio(audio[audio_count % len(audio)], audio_pts)
                packets += self._impair(packetizer.packetize(audio_pack, audio_pts))
                audio_count += 1
                stats.audio_frames += 1
            if stats.first_packet_at is None and packets:
                stats.first_packet_at = time.monotonic()
            if udp:
                self._send_datagrams(sock, packets)
            else:
                try:
                    await loop.sock_sendall(sock, b"".join(frame(p) for p in packets))
                except OSError as exc:
                    log.info("simulated device lost its media connection", call_id=self.call_id, error=str(exc))
                    self.state = "failed"
                    return
                stats.packets += len(packets)
                stats.bytes += sum(map(len, packets))
            stats.frames += 1
            count += 1
            due = clock + count / options.fps
            now = loop.time()
            if now - due > _MAX_LAG:
                clock = now - count / options.fps
                due = now
            await asyncio.sleep(max(0.0, due - now))
        self.state = "finished"
        self._task = None
        on_finished(self)

    async def _run_history(self, sock: socket.socket, source: MediaSource) -> None:
        """The range from `position` on, one frame per 1/(fps x rate) s, until its end; `control` moves
        the position and rate and wakes the loop."""
        options, stats = self.options, self.stats
        loop = asyncio.get_running_loop()
        frames = source.frames
        muxer = PsMuxer(video=source.codec)
        packetizer = PsRtpPacketizer(self.ssrc, PS_PAYLOAD[0], options.mtu, self._random.getrandbits(16))
        base = self._random.getrandbits(31)
        step = _CLOCK / options.fps
        end = self._end_frame
        udp = self.role == "udp"
        epoch, epoch_frame, rate = loop.time(), self.position, 0.0
        while self.position < end:
            if self._changed.is_set() or rate != self.scale * self.speed:
                self._changed.clear()
                epoch, epoch_frame, rate = loop.time(), self.position, self.scale * self.speed
            if self.paused:
                await self._changed.wait()
                continue
            index = self.position
            unit, keyframe = frames[index % len(frames)]
            pts = (base + round(index * step)) & 0xFFFFFFFF
            packets = self._impair(packetizer.packetize(muxer.mux_video(unit, pts, keyframe=keyframe), pts))
            if stats.first_packet_at is None and packets:
                stats.first_packet_at = time.monotonic()
            if udp:
                self._send_datagrams(sock, packets)
            else:
                try:
                    await loop.sock_sendall(sock, b"".join(frame(p) for p in packets))
                except OSError as exc:
                    log.info("simulated device lost its media connection", call_id=self.call_id, error=str(exc))
                    self.state = "failed"
                    return
                stats.packets += len(packets)
                stats.bytes += sum(map(len, packets))
            stats.frames += 1
            self.position += 1
            due = epoch + (self.position - epoch_frame) / (options.fps * rate)
            now = loop.time()
            if now - due > _MAX_LAG:
                epoch, epoch_frame = now, self.position
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.0, due - now))

    def _send_datagrams(self, sock: socket.socket, packets: list[bytes]) -> None:
        stats = self.stats
        for packet in packets:
            try:
                sock.send(packet)
            except OSError:
                # A full buffer, or ICMP port unreachable once the platform closed its port: a camera
                # keeps sending until the BYE or its own timeout.
                stats.send_errors += 1
                continue
            stats.packets += 1
            stats.bytes += len(packet)

    def _impair(self, packets: list[bytes]) -> list[bytes]:
        """Drop and swap packets as `MediaOptions.loss`/`reorder` ask. A swapped packet goes out right after
        its successor and never together with a drop, so a receiver can count each exactly."""
        options = self.options
        if not options.loss and not options.reorder:
            return packets
        draw = self._random.random
        out: list[bytes] = []
        held: bytes | None = None
        last = len(packets) - 1
        for index, packet in enumerate(packets):
            if held is None:
                if options.loss and draw() < options.loss:
                    self.stats.dropped += 1
                    continue
                if options.reorder and index < last and draw() < options.reorder:
                    held = packet
                    continue
            out.append(packet)
            if held is not None:
                out.append(held)
                held = None
                self.stats.reordered += 1
        return out


def linear_to_alaw(sample: int) -> int:
    """G.711 A-law code of a 16-bit linear sample (13-bit magnitude, segment and 4 bits, even bits
    inverted)."""
    magnitude = sample >> 3
    if magnitude >= 0:
        mask = 0xD5
    else:
        mask, magnitude = 0x55, -magnitude - 1
    segment = max(magnitude.bit_length() - 5, 0)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | (magnitude >> max(segment, 1)) & 0x0F) ^ mask


def linear_to_ulaw(sample: int) -> int:
    """G.711 µ-law code of a 16-bit linear sample (14-bit magnitude plus bias, all bits inverted)."""
    magnitude = sample >> 2
    mask = 0xFF
    if magnitude < 0:
        mask, magnitude = 0x7F, -magnitude
    magnitude = min(magnitude, 8159) + 0x21
    segment = magnitude.bit_length() - 6
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | (magnitude >> (segment + 1)) & 0x0F) ^ mask


def g711_tone(law: StreamType, hz: int = TONE_HZ) -> tuple[bytes, ...]:
    """One second of a tone at half scale as 20 ms G.711 frames (a whole number of cycles, so it loops
    without a click)."""
    encode = linear_to_alaw if law == StreamType.G711A else linear_to_ulaw
    samples = bytes(encode(round(16384 * math.sin(2 * math.pi * hz * n / _AUDIO_RATE))) for n in range(_AUDIO_RATE))
    return tuple(samples[at : at + _AUDIO_SAMPLES] for at in range(0, _AUDIO_RATE, _AUDIO_SAMPLES))


def _without_stream_map(pack: bytes) -> bytes:
    """The PS bytes with the program stream map (00 00 01 BC and its 16-bit length) cut out."""
    at = pack.find(b"\x00\x00\x01\xbc")
    if at < 0:
        return pack
    length = int.from_bytes(pack[at + 4 : at + 6], "big")
    return pack[:at] + pack[at + 6 + length :]


def _bind(role: str, host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    kind = socket.SOCK_DGRAM if role == "udp" else socket.SOCK_STREAM
    sock = socket.socket(family, kind)
    try:
        sock.setblocking(False)
        sock.bind((host, 0))
        if role == "tcp-passive":
            sock.listen(1)
    except OSError:
        sock.close()
        raise
    return sock


# -- command line ------------------------------------------------------------------------------------------


def add_media_arguments(parser: argparse.ArgumentParser) -> None:
    """Media options of `gb28181-gateway simulate`."""
    d = MediaOptions()
    add = parser.add_argument
    add("--media", type=Path, metavar="FILE",
        help="H.264/H.265 elementary stream (Annex B) to stream, looping, when INVITEd (default: answer 488)")
    add("--media-codec", choices=sorted(CODECS), default=d.codec, help=f"codec of --media (default {d.codec})")
    add("--fps", type=float, default=d.fps, help=f"frames per second of --media (default {d.fps:g})")
    add("--media-duration", type=float, default=d.duration,
        help="seconds a call streams before the device sends BYE; 0 until the server's BYE (default 0)")
    add("--answer-ssrc", type=int, metavar="SSRC",
        help="answer and send this SSRC instead of the offered y= (0 acts like devices that ignore y=)")
    add("--media-audio", choices=sorted(AUDIO_CODECS), default=None,
        help=f"also stream a {TONE_HZ} Hz G.711 tone (PS stream 0xC0) in live calls (default: video only)")


def media_options_from_args(args: argparse.Namespace) -> MediaOptions:
    """The media options the parsed arguments describe; ValueError names what is wrong."""
    return MediaOptions(
        file=args.media,
        codec=args.media_codec,
        fps=args.fps,
        duration=args.media_duration,
        ssrc=args.answer_ssrc,
        audio=args.media_audio or "",
    )

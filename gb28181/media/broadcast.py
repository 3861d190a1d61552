"""Voice broadcast (GB/T 28181-2016 §9.12): audio from the API played by a camera's or an alarm box's speaker.

The flow is the reverse of live video: the gateway sends ``Notify/Broadcast`` (SourceID = the gateway, the
audio source; TargetID = the channel), the device answers a ``Response`` with its Result and then INVITEs the
source for audio (``m=audio PORT RTP/AVP 8``, ``a=recvonly``); the gateway answers with its own port and
sends G.711 A-law RTP (payload type 8, 8 kHz, 20 ms = 160 bytes a packet) until the audio ends or the
session is deleted, then BYEs.

Audio is given as a WAV file: 16-bit PCM (any rate, mono or stereo: mixed down and resampled by linear
interpolation to 8 kHz), or A-law / µ-law WAV at 8 kHz. G.711 is encoded here in plain Python (the stdlib's
``audioop`` is gone in 3.13): a minute of audio encodes in about 0.3 s on one core, once per broadcast.

Or the audio is live: the caller is given a UDP port (``input_port``, on ``input_host``) and sends G.711
A-law RTP there from the address it called the API from; each packet's payload is relayed at once, under the
session's own SSRC, sequence and timestamps (so a caller's restart is no discontinuity for the device). Only
payload type 8 is relayed; a live session ends after ``LIVE_IDLE`` seconds without input.

A device offering ``TCP/RTP/AVP`` gets RFC 4571 framing (a 2-byte length before each packet): with
``a=setup:passive`` the gateway connects to its port, otherwise the gateway listens and takes one connection
from the device's media address only.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog

from gbgw.gb28181 import manscdp
from gbgw.gb28181.devices.control import DeviceControl
from gbgw.gb28181.devices.requests import AccessError
from gbgw.gb28181.media.stages import Stage
from gbgw.sip.dialog import Dialog
from gbgw.sip.errors import SipError
from gbgw.sip.sdp import SdpError, SessionDescription
from gbgw.sip.transaction import ServerTransaction

if TYPE_CHECKING:
    from gbgw.gb28181.config import MediaConfig, SipConfig
    from gbgw.gb28181.tasks import BackgroundTasks
    from gbgw.registry.devices import DeviceRegistry
    from gbgw.sip.transport import SipTransport

log = structlog.get_logger("gb28181.broadcast")

RATE = 8000
FRAME = 160
"""Samples (= A-law bytes) per RTP packet: 20 ms at 8 kHz, what every G.711 device expects."""
PCMA = 8
LIVE_IDLE = 10.0
"""Seconds without RTP from the caller after which a live broadcast ends."""


class AudioError(ValueError):
    """Audio the gateway cannot broadcast; the message says what was expected."""


# -- G.711 -------------------------------------------------------------------------------------------------


def _alaw(sample: int) -> int:
    """One 16-bit linear sample as A-law (ITU-T G.711, the segment search of the reference code)."""
    sign = 0x80 if sample >= 0 else 0
    if not sign:
        sample = -sample - 1
    sample >>= 3  # G.711 A-law works on 13 bits
    if sample >= 0x20:
        segment = (sample >> 5).bit_length()
        code = (segment << 4) | ((sample >> segment) & 0x0F)
    else:
        code = sample >> 1
    return (code | sign) ^ 0x55


_ALAW = bytes(_alaw(s) for s in range(-32768, 32768))
"""Every 16-bit sample's A-law byte (64 KiB, built once): encoding is then one lookup per sample."""


def _ulaw_to_linear(code: int) -> int:
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return (0x84 - magnitude) if code & 0x80 else (magnitude - 0x84)


_ULAW_LINEAR = tuple(_ulaw_to_linear(c) for c in range(256))


def alaw_encode(samples: list[int]) -> bytes:
    """16-bit linear samples as G.711 A-law bytes."""
    table = _ALAW
    return bytes(table[s + 32768] for s in samples)


def resample(samples: list[int], rate: int) -> list[int]:
    """``samples`` at ``rate`` Hz as 8 kHz, by linear interpolation (speech needs no better filter here)."""
    if rate == RATE or not samples:
        return samples
    count = max(1, len(samples) * RATE // rate)
    step = rate / RATE
    last = len(samples) - 1
    out = []
    for i in range(count):
        position = i * step
        low = int(position)
        high = min(low + 1, last)
        fraction = position - low
        out.append(int(samples[min(low, last)] * (1 - fraction) + samples[high] * fraction))
    return out


def wav_to_alaw(data: bytes) -> bytes:
    """A WAV file's audio as 8 kHz G.711 A-law; raises AudioError for anything else."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("the body is not a WAV file (RIFF/WAVE)")
    fmt: tuple[int, int, int, int] | None = None
    pcm = b""
    offset = 12
    while offset + 8 <= len(data):
        chunk, size = data[offset:offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        body = data[offset + 8:offset + 8 + size]
        if chunk == b"fmt " and len(body) >= 16:
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format
                tag = struct.unpack_from("<H", body, 24)[0]
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            pcm = body
        offset += 8 + size + (size & 1)
    if fmt is None:
        raise AudioError("the WAV file has no fmt chunk")
    tag, channels, rate, bits = fmt
    if channels < 1 or not 1000 <= rate <= 192000:
        raise AudioError(f"unusable WAV: {channels} channels at {rate} Hz")
    if tag in (6, 7):
        if rate != RATE or channels != 1:
            raise AudioError(f"A-law/µ-law WAV must be 8000 Hz mono, not {rate} Hz with {channels} channels")
        if tag == 6:
            return pcm
        return alaw_encode([_ULAW_LINEAR[b] for b in pcm])
    if tag != 1 or bits != 16:
        raise AudioError(f"WAV must be 16-bit PCM, A-law or µ-law, not format {tag} with {bits} bits")
    values = list(struct.unpack(f"<{len(pcm) // 2}h", pcm[: len(pcm) // 2 * 2]))
    if channels > 1:
        values = [sum(values[i:i + channels]) // channels for i in range(0, len(values) - channels + 1, channels)]
    return alaw_encode(resample(values, rate))


def rtp_packets(audio: bytes, ssrc: int, seq: int = 0, timestamp: int = 0) -> list[bytes]:
    """``audio`` (A-law) cut into 20 ms RTP packets, payload type 8, the first with the marker bit."""
    packets = []
    for index, start in enumerate(range(0, len(audio), FRAME)):
        marker = 0x80 if index == 0 else 0
        header = struct.pack("!BBHII", 0x80, marker | PCMA, (seq + index) & 0xFFFF,
                             (timestamp + index * FRAME) & 0xFFFFFFFF, ssrc)
        packets.append(header + audio[start:start + FRAME])
    return packets


# -- sessions ----------------------------------------------------------------------------------------------


class BroadcastState(StrEnum):
    NOTIFYING = "notifying"
    """Notify/Broadcast sent, waiting for the device's Result."""
    WAITING = "waiting for INVITE"
    SENDING = "sending"
    ENDED = "ended"


@dataclass(slots=True, eq=False)
class BroadcastSession:
    id: str
    device_id: str
    channel_id: str
    audio: bytes | None = field(repr=False)
    """A-law to send; None for a live session fed through ``input``."""
    state: BroadcastState = BroadcastState.NOTIFYING
    ended: str | None = None
    target: tuple[str, int] | None = None
    ssrc: int = 0
    packets_sent: int = 0
    dialog: Dialog | None = field(default=None, repr=False)
    invited: asyncio.Future[None] | None = field(default=None, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    sock: socket.socket | None = field(default=None, repr=False)
    input: socket.socket | None = field(default=None, repr=False)
    tcp_role: str | None = None
    """Ours over TCP: ``active`` (we connect) or ``passive`` (the device connects); None for UDP."""
    conn: socket.socket | None = field(default=None, repr=False)
    input_from: str | None = None
    """The only host a live session takes RTP from (the API caller's)."""
    created: float = field(default_factory=time.time)

    @property
    def seconds(self) -> float | None:
        return None if self.audio is None else len(self.audio) / RATE

    @property
    def input_port(self) -> int | None:
        return None if self.input is None else int(self.input.getsockname()[1])


class VoiceBroadcasts:
    """The broadcasts toward devices. ``on_invite`` and ``on_bye`` are the device-side router's INVITE and
    BYE (each returns False for a request that is not one of ours)."""

    def __init__(
        self,
        sip: SipConfig,
        media: MediaConfig,
        registry: DeviceRegistry,
        transport: SipTransport,
        control: DeviceControl,
        tasks: BackgroundTasks,
        invite_timeout: float = 10.0,
        input_host: str | None = None,
    ) -> None:
        """``input_host`` is where live sessions' input ports are bound (the API listener's host; default
        ``media.ip``)."""
        self.sip = sip
        self.media = media
        self.registry = registry
        self.transport = transport
        self.control = control
        self.tasks = tasks
        self.invite_timeout = invite_timeout
        self.input_host = input_host or media.ip
        self.sessions: dict[str, BroadcastSession] = {}
        self._ids = itertools.count(1)
        self._by_call_id: dict[str, BroadcastSession] = {}

    async def start(self, device_id: str, channel_id: str, audio: bytes | None, *,
                    live_from: str | None = None) -> BroadcastSession:
        """Notify the device and wait for its audio INVITE; ``audio`` is then sent in the background, or
        with ``audio`` None what ``live_from`` sends to the session's ``input_port``. Raises AccessError:
        device offline, request rejected (Result ERROR), no answer (no INVITE)."""
        if audio is None and live_from is None:
            raise AudioError("give audio, or the caller's address for live audio")
        if audio is not None and not audio:
            raise AudioError("no audio to broadcast")
        session = BroadcastSession(f"broadcast-{next(self._ids)}", device_id, channel_id, audio)
        if audio is None:
            host = self.input_host
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind((host, 0))
            session.input, session.input_from = sock, live_from
        session.invited = asyncio.get_running_loop().create_future()
        self.sessions[session.id] = session
        source = self.sip.id
        try:
            result = await self.control.control(
                device_id, lambda sn, target: manscdp.notify_broadcast(sn, source, target), channel_id)
            if not result.ok:
                raise AccessError(Stage.REQUEST_REJECTED, f"device {device_id} answered Broadcast with Result ERROR")
            session.state = BroadcastState.WAITING
            try:
                await asyncio.wait_for(asyncio.shield(session.invited), self.invite_timeout)
            except TimeoutError:
                raise AccessError(Stage.NO_ANSWER, f"device {device_id} accepted the broadcast but did not "
                                  f"INVITE {source} for audio within {self.invite_timeout:g} s") from None
        except BaseException as exc:
            self._end(session, f"failed: {exc}", bye=False)
            raise
        return session

    def stop(self, session_id: str) -> bool:
        session = self.sessions.get(session_id)
        if session is None or session.state is BroadcastState.ENDED:
            return False
        self._end(session, "stopped", bye=True)
        return True

    def _pending(self, from_user: str) -> BroadcastSession | None:
        waiting = [s for s in self.sessions.values() if s.state is BroadcastState.WAITING]
        for session in waiting:
            if from_user in (session.channel_id, session.device_id):
                return session
        channel = self.registry.channel(from_user)
        owner = channel.device_id if channel is not None else None
        return next((s for s in waiting if s.device_id == owner), None)

    def on_invite(self, txn: ServerTransaction) -> bool:
        request = txn.request
        session = self._pending(request.from_.uri.user or "")
        if session is None or request.to.uri.user != self.sip.id:
            return False
        try:
            offer = SessionDescription.parse(request.body)
        except SdpError as exc:
            self.transport.reply(txn, 400, f"Unreadable SDP: {exc.reason}"[:80])
            return True
        audio = next((m for m in offer.media if m.kind.lower() == "audio"), None)
        if audio is None or PCMA not in audio.formats:
            self.transport.reply(txn, 488, "Only G.711 A-law (payload 8) is broadcast")
            return True
        role = ("active" if audio.setup == "passive" else "passive") if audio.is_tcp else None
        if not audio.port and role != "passive":
            self.transport.reply(txn, 488, "No audio port to send to")
            return True
        host = offer.address_of(audio)
        if not host or host in ("0.0.0.0", "::"):
            host = txn.remote.host
        family = socket.AF_INET6 if ":" in self.media.ip else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM if role else socket.SOCK_DGRAM)
        sock.setblocking(False)
        if role != "active":
            sock.bind((self.media.ip, 0))
        if role == "passive":
            sock.listen(1)
        ssrc_text = offer.ssrc
        session.ssrc = int(ssrc_text) & 0xFFFFFFFF if ssrc_text else int.from_bytes(os.urandom(4), "big")
        answer = SessionDescription.offer(
            "Play", self.sip.id, self.media.ip, 9 if role == "active" else sock.getsockname()[1],
            "TCP/RTP/AVP" if role else "RTP/AVP", ((PCMA, "PCMA", RATE),),
            ssrc_text or f"{session.ssrc % 10**10:010d}", kind="audio", direction="sendonly",
            setup=role, connection="new" if role else None,
        )
        session.tcp_role = role
        sip_host = f"[{self.transport.host}]" if ":" in self.transport.host else self.transport.host
        contact = f"<sip:{self.sip.id}@{sip_host}:{self.transport.port}>"
        response = self.transport.reply(txn, 200, headers=[("Contact", contact), ("Content-Type", "APPLICATION/SDP")],
                                        body=answer.serialize())
        try:
            session.dialog = Dialog.from_uas(request, response.to.tag or "", contact, peer=txn.remote)
        except SipError:
            session.dialog = None
        session.sock, session.target = sock, (host, audio.port)
        self._by_call_id[request.call_id or ""] = session
        session.state = BroadcastState.SENDING
        session.task = asyncio.get_running_loop().create_task(self._send(session))
        if session.invited is not None and not session.invited.done():
            session.invited.set_result(None)
        log.info("broadcast started", session=session.id, device=session.device_id, channel=session.channel_id,
                 target=f"{host}:{audio.port}", seconds=session.seconds, input_port=session.input_port)
        return True

    async def _send(self, session: BroadcastSession) -> None:
        """Paced on the monotonic clock, so scheduling jitter does not add up over a long message."""
        try:
            await self._connect(session)
        except (OSError, TimeoutError) as exc:
            self._end(session, f"audio connection failed: {exc}", bye=True)
            return
        except asyncio.CancelledError:
            return
        if session.audio is None:
            await self._relay(session)
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            for index, packet in enumerate(rtp_packets(session.audio, session.ssrc)):
                delay = start + index * FRAME / RATE - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not await self._emit(session, packet):
                    return
        except asyncio.CancelledError:
            return
        self._end(session, "finished", bye=True)

    async def _connect(self, session: BroadcastSession) -> None:
        """The TCP connection of a TCP session (nothing to do over UDP)."""
        assert session.sock is not None and session.target is not None
        loop = asyncio.get_running_loop()
        if session.tcp_role == "active":
            await asyncio.wait_for(loop.sock_connect(session.sock, session.target), self.invite_timeout)
            session.conn = session.sock
        elif session.tcp_role == "passive":
            deadline = loop.time() + self.invite_timeout
            while True:
                conn, source = await asyncio.wait_for(loop.sock_accept(session.sock),
                                                      max(0.0, deadline - loop.time()))
                if source[0] == session.target[0]:
                    session.conn = conn
                    return
                log.warning("broadcast connection from another host refused", session=session.id,
                            source=source[0], device=session.target[0])
                conn.close()

    async def _emit(self, session: BroadcastSession, packet: bytes) -> bool:
        """Send one RTP packet; False when the session's TCP connection is gone (the session ended)."""
        assert session.sock is not None and session.target is not None
        try:
            if session.conn is not None:
                await asyncio.get_running_loop().sock_sendall(session.conn, struct.pack("!H", len(packet)) + packet)
            else:
                session.sock.sendto(packet, session.target)
        except OSError as exc:
            if session.conn is not None:
                self._end(session, f"audio connection lost: {exc}", bye=True)
                return False
            log.info("broadcast packet not sent", session=session.id, reason=str(exc))
        session.packets_sent += 1
        return True

    async def _relay(self, session: BroadcastSession) -> None:
        """Live: each A-law RTP packet from the caller goes out at once under the session's numbering."""
        assert session.sock is not None and session.target is not None and session.input is not None
        loop = asyncio.get_running_loop()
        seq = timestamp = 0
        first = True
        try:
            while True:
                try:
                    data, source = await asyncio.wait_for(loop.sock_recvfrom(session.input, 2048), LIVE_IDLE)
                except TimeoutError:
                    self._end(session, f"no input for {LIVE_IDLE:g} s", bye=True)
                    return
                if source[0] != session.input_from or len(data) < 12 or data[0] >> 6 != 2 \
                        or data[1] & 0x7F != PCMA:
                    continue
                payload = data[12 + 4 * (data[0] & 0x0F):]
                header = struct.pack("!BBHII", 0x80, (0x80 if first else 0) | PCMA, seq & 0xFFFF,
                                     timestamp & 0xFFFFFFFF, session.ssrc)
                first = False
                seq += 1
                timestamp += len(payload)
                if not await self._emit(session, header + payload):
                    return
        except asyncio.CancelledError:
            return

    def on_bye(self, txn: ServerTransaction) -> bool:
        session = self._by_call_id.get(txn.request.call_id or "")
        if session is None:
            return False
        self.transport.reply(txn, 200)
        self._end(session, "device BYE", bye=False)
        return True

    def _end(self, session: BroadcastSession, reason: str, *, bye: bool) -> None:
        if session.state is BroadcastState.ENDED:
            return
        session.state, session.ended = BroadcastState.ENDED, reason
        if session.task is not None and session.task is not asyncio.current_task():
            session.task.cancel()
        for sock in (session.sock, session.input, session.conn):
            if sock is not None:
                sock.close()
        if session.invited is not None and not session.invited.done():
            session.invited.cancel()
        if session.dialog is not None:
            self._by_call_id.pop(session.dialog.call_id, None)
            if bye:
                self.tasks.spawn(self._bye(session.dialog, session.device_id))
        log.info("broadcast ended", session=session.id, reason=reason, packets=session.packets_sent)

    async def _bye(self, dialog: Dialog, device_id: str) -> None:
        device = self.registry.get(device_id)
        if device is None:
            return
        request = dialog.create_request("BYE", via=self.transport.via(device.transport))
        try:
            await self.transport.send_request(request, dialog.peer)
        except SipError as exc:
            log.info("broadcast BYE not answered", device=device_id, reason=exc.reason)

    def close(self) -> None:
        for session in list(self.sessions.values()):
            self._end(session, "gateway stopping", bye=True)


def session_json(session: BroadcastSession) -> dict[str, object]:
    return {
        "id": session.id,
        "device_id": session.device_id,
        "channel_id": session.channel_id,
        "state": session.state.value,
        "ended": session.ended,
        "seconds": None if session.seconds is None else round(session.seconds, 3),
        "live": session.audio is None,
        "input_port": session.input_port,
        "packets_sent": session.packets_sent,
        "target": None if session.target is None else f"{session.target[0]}:{session.target[1]}",
        "ssrc": session.ssrc,
        "transport": f"tcp-{session.tcp_role}" if session.tcp_role else "udp",
    }


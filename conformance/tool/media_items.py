"""The media checks of ``gb28181-conformance device`` (and, through the platform under test, ``upper``): live
play over UDP, TCP passive and TCP active, playback with its MANSRTSP control, and download. The tool
offers, receives the PS over RTP itself and judges it with `stream.StreamCheck`; one function per check,
its docstring the requirement it checks.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from gbgw.conformance.tool.device_items import (
    DeviceRun,
    Verdict,
    _complete,
    _no_answer,
    check,
    failed,
    passed,
)
from gbgw.conformance.tool.platform import Received, body_text
from gbgw.conformance.tool.report import Outcome
from gbgw.conformance.tool.sheet import Check
from gbgw.conformance.tool.stream import RtpSink, StreamCheck, TcpRtpReceiver, ffprobe_video
from gbgw.gb28181.manscdp import parse_time, query_record_info
from gbgw.gb28181.recording import mansrtsp
from gbgw.sip.sdp import SdpError, SessionDescription

_PAYLOADS = ((96, "PS", 90000), (98, "H264", 90000), (97, "MPEG4", 90000))
_PAUSE_SETTLE = 0.5
"""Seconds after a PAUSE's answer during which packets already on the way may still arrive."""
_PAUSE_WATCH = 1.0
_HISTORY_CLAUSES = ("Annex C (90 kHz clock)", "RFC 3550 §5.1 / Annex C")
"""Findings a controlled history stream earns by design: scale changes the clock rate, a seek moves it."""


class Leg(enum.Enum):
    """How the stream reaches the tool: the SDP proto and the ``a=setup`` role the tool offers."""

    UDP = ("RTP/AVP", None)
    TCP_PASSIVE = ("TCP/RTP/AVP", "passive")
    """The tool listens; the device connects (its answer says active)."""
    TCP_ACTIVE = ("TCP/RTP/AVP", "active")
    """The tool connects to the port the device answers (its answer says passive)."""

    @property
    def label(self) -> str:
        return {"UDP": "UDP", "TCP_PASSIVE": "TCP passive", "TCP_ACTIVE": "TCP active"}[self.name]


@dataclass(slots=True)
class Call:
    """One INVITE of the tool and what came of it."""

    stream: StreamCheck
    problems: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    call_id: str = ""
    started: float = 0.0


def _ssrc(run: DeviceRun, history: bool) -> str:
    return f"{1 if history else 0}{run.platform.domain[3:8]}{random.randrange(10_000):04d}"


async def _call(run: DeviceRun, leg: Leg, session: str, seconds: float, *, history: bool = False,
                timing: tuple[int, int] = (0, 0), attributes: tuple[tuple[str, str | None], ...] = (),
                during: Callable[[Call], Awaitable[None]] | None = None) -> Call:
    """INVITE the channel with an offer for ``leg``, receive ``seconds`` of stream (``during`` is an
    awaitable run instead of the plain wait, for playback control), BYE, and collect the problems."""
    platform = run.platform
    loop = asyncio.get_running_loop()
    ssrc = _ssrc(run, history)
    call = Call(StreamCheck(int(ssrc)))
    proto, setup = leg.value
    udp = None
    tcp = TcpRtpReceiver(call.stream) if leg is not Leg.UDP else None
    try:
        if leg is Leg.UDP:
            udp, _ = await loop.create_datagram_endpoint(lambda: RtpSink(call.stream),
                                                         local_addr=(platform.transport.host, 0))
            port = int(udp.get_extra_info("sockname")[1])
        elif leg is Leg.TCP_PASSIVE:
            assert tcp is not None
            port = await tcp.listen(platform.transport.host)
        else:
            port = 9  # RFC 4145 §4.1: the discard port, for the side that connects.
        offer = SessionDescription.offer(
            session, platform.platform_id, platform.transport.host, port, proto, _PAYLOADS, ssrc,
            setup=setup, connection="new" if setup else None, time=timing,
            uri=f"{run.channel}:0" if history else None, attributes=attributes).serialize()
        call.started = loop.time()
        request, response = await platform.invite(run.channel, offer, ssrc, run.options.item_timeout)
        call.call_id = request.call_id or ""
        call.evidence.append(f"sent:\n{body_text(request.serialize())}")
        if response is None or response.status >= 300:
            call.problems.append(f"§9.2.2: the {leg.label} {session} INVITE was answered "
                                 f"{response.status if response else 'never'}")
            if response is not None:
                call.evidence.append(f"received:\n{body_text(response.serialize())}")
            return call
        call.evidence.append(f"received:\n{body_text(response.serialize())}")
        try:
            answer = SessionDescription.parse(response.body)
        except SdpError as exc:
            await platform.bye(call.call_id, run.options.item_timeout)
            call.problems.append(f"§9.2.2 / RFC 4566: unreadable SDP answer: {exc.reason}")
            return call
        if answer.ssrc is None:
            call.problems.append("Annex F: the SDP answer has no y=")
        elif answer.ssrc != ssrc:
            call.problems.append(f"Annex F: the SDP answer's y={answer.ssrc} is not the offered {ssrc}")
        if leg is Leg.TCP_ACTIVE and tcp is not None:
            video = next((m for m in answer.media if m.kind.lower() == "video"), None)
            host = (answer.address_of(video) if video is not None else "") or platform.transport.host
            if video is None or not video.port:
                call.problems.append("RFC 4145: the answer to a=setup:active gives no port to connect to")
            else:
                try:
                    await tcp.connect(host, video.port, run.options.item_timeout)
                except (OSError, TimeoutError) as exc:
                    call.problems.append(f"RFC 4145: cannot connect to the answered {host}:{video.port}: {exc}")
        if during is not None:
            await during(call)
        else:
            await asyncio.sleep(seconds)
        if tcp is not None and not tcp.connected:
            call.problems.append(f"RFC 4145 / §9.2.2: no TCP connection for the {leg.label} stream")
        bye = await platform.bye(call.call_id, run.options.item_timeout)
        if bye is None or bye >= 300:
            call.problems.append(f"§9.2.2: BYE answered {bye or 'never'}")
    finally:
        if udp is not None:
            udp.close()
        if tcp is not None:
            tcp.close()
    return call


def _stream_problems(call: Call, *, history: bool) -> list[str]:
    findings = call.stream.findings()
    if history:
        findings = [f for f in findings if f.clause not in _HISTORY_CLAUSES]
    return [f"{f.clause}: {f.message}" for f in findings]


async def _decodes(call: Call) -> str | None:
    """The ffprobe problem of a stream, if any; adds what ffprobe found to the evidence."""
    if not call.stream.payload:
        return None
    codec = await asyncio.to_thread(ffprobe_video, bytes(call.stream.payload))
    call.evidence.append(f"ffprobe: {codec if codec is not None else 'not installed'}")
    return "Annex C: ffprobe finds no video stream in the PS" if codec == "" else None


def _verdict(problems: list[str], detail: str, evidence: list[str]) -> Verdict:
    if problems:
        return failed(problems[0].partition(": ")[0], "; ".join(problems), *evidence)
    return passed(detail, *evidence)


@check(Check.LIVE_UDP, lambda o: 3 * (o.media_seconds + 2 * o.item_timeout) + 30)
async def live(run: DeviceRun) -> Verdict:
    """§9.2.2, Annex C/F: a Play INVITE over RTP/AVP (UDP), then over TCP/RTP/AVP with the tool
    listening (a=setup:passive, the device connects) and with the tool connecting (a=setup:active, to
    the port the device answers, RFC 4145/4571), is answered 200 with an SDP whose y= is the offered
    SSRC; each stream is PS over RTP with that SSRC: 90 kHz timestamps that never go back, pack headers,
    a program stream map, PES, a keyframe within 2 s, decodable by ffprobe; BYE ends each call."""
    problems: list[str] = []
    evidence: list[str] = []
    described = []
    for leg in Leg:
        call = await _call(run, leg, "Play", run.options.media_seconds)
        leg_problems = call.problems + _stream_problems(call, history=False)
        if not leg_problems and leg is Leg.UDP:
            decoded = await _decodes(call)
            leg_problems += [decoded] if decoded else []
        problems += [f"{p} ({leg.label})" if p.count(": ") else p for p in leg_problems]
        evidence += [f"-- {leg.label}", *call.evidence, call.stream.describe(),
                     f"first packet: {call.stream.first_bytes.hex()}"]
        described.append(f"{leg.label}: {call.stream.packets} packets")
    return _verdict(problems, "; ".join(described) + ", PS conforms", evidence)


async def _recording(run: DeviceRun) -> tuple[datetime, datetime] | Verdict:
    """A range of ``history_seconds`` inside the channel's first recording of the last day (RecordInfo)."""
    end = datetime.now().replace(microsecond=0)
    start = end - timedelta(days=1)
    exchange = await run.platform.exchange(run.channel, query_record_info(run.platform.next_sn(), run.channel,
                                                                          start, end),
                                           run.options.item_timeout, _complete("RecordList"))
    problem = _no_answer(exchange, "RecordInfo")
    if problem is not None:
        return Verdict(Outcome.SKIP, f"RecordInfo found nothing to play back: {problem.detail}", problem.evidence)
    for answer in exchange.answers:
        for item in answer.doc.element.findall("RecordList/Item"):
            begin, finish = parse_time(item.findtext("StartTime")), parse_time(item.findtext("EndTime"))
            if begin is not None and finish is not None and finish > begin:
                length = min(timedelta(seconds=run.options.history_seconds), finish - begin)
                return begin, begin + length
    return Verdict(Outcome.SKIP, "the channel has no recording in the last day to play back")


def _media_status(run: DeviceRun, since: float) -> list[Received]:
    return [n for n in run.platform.notifies
            if n.doc.cmd_type == "MediaStatus" and n.at >= since and (n.doc.text("NotifyType") or "") == "121"]


async def _wait_media_status(run: DeviceRun, since: float, timeout: float) -> list[Received]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (found := _media_status(run, since)) and loop.time() < deadline:
        run.platform.changed.clear()
        try:
            await asyncio.wait_for(run.platform.changed.wait(), min(0.5, max(0.0, deadline - loop.time())))
        except TimeoutError:
            continue
    return found


def _timing(span: tuple[datetime, datetime]) -> tuple[int, int]:
    return int(span[0].timestamp()), int(span[1].timestamp())


@check(Check.PLAYBACK, lambda o: 2 * o.history_seconds + 8 * o.item_timeout + 20)
async def playback(run: DeviceRun) -> Verdict:
    """§9.8, Annex B: a Playback INVITE (s=Playback, u=, t= inside a recording RecordInfo listed, a y=
    starting with 1) is answered 200 with that y=; the stream is PS over RTP with that SSRC; MANSRTSP
    INFO PAUSE stops it, PLAY resumes it, PLAY with Range and Scale 2 seeks to the start at double
    speed, each answered 200; at the end of the range the device sends MediaStatus NotifyType 121."""
    span = await _recording(run)
    if isinstance(span, Verdict):
        return span
    options = run.options
    steps: list[str] = []
    problems: list[str] = []

    async def control(call: Call) -> None:
        await asyncio.sleep(min(1.0, options.history_seconds / 4))
        cseq = itertools.count(1)
        status = await run.platform.info(call.call_id, mansrtsp.pause(next(cseq)).serialize(), options.item_timeout)
        steps.append(f"PAUSE {status}")
        await asyncio.sleep(_PAUSE_SETTLE)
        paused_at = call.stream.packets
        await asyncio.sleep(_PAUSE_WATCH)
        if status == 200 and call.stream.packets > paused_at + 2:
            problems.append(f"Annex B.2.2 (PAUSE): {call.stream.packets - paused_at} packets arrived while paused")
        for name, request in (("PLAY", mansrtsp.resume(next(cseq))),
                              ("PLAY Range npt=0- Scale 2", mansrtsp.play(next(cseq), position=0.0, scale=2.0))):
            status = await run.platform.info(call.call_id, request.serialize(), options.item_timeout)
            steps.append(f"{name} {status}")
        refused = [step for step in steps if not step.endswith(" 200")]
        if refused:
            problems.append(f"Annex B.2: MANSRTSP INFO answered {refused}")
        # At Scale 2 the range plays in half its length from the seek; the device then says end of file.
        await _ended(run, call, options.history_seconds / 2 + 2 * options.item_timeout, steps, problems)

    call = await _call(run, Leg.UDP, "Playback", 0.0, history=True, timing=_timing(span), during=control)
    all_problems = call.problems + problems + _stream_problems(call, history=True)
    return _verdict(all_problems, f"{call.stream.packets} packets; {', '.join(steps)}",
                    [*call.evidence, call.stream.describe()])


async def _ended(run: DeviceRun, call: Call, timeout: float, steps: list[str], problems: list[str]) -> None:
    arrived = await _wait_media_status(run, call.started, timeout)
    if not arrived:
        problems.append(f"§9.8.3 / A.2.5 (MediaStatus): no MediaStatus 121 at the end of the range in {timeout:g} s")
        return
    steps.append("MediaStatus 121")
    call.evidence.append(f"received:\n{body_text(arrived[0].body)}")


_DOWNLOAD_SPEED = 4


@check(Check.DOWNLOAD, lambda o: o.history_seconds + 6 * o.item_timeout + 20)
async def download(run: DeviceRun) -> Verdict:
    """§9.9: a Download INVITE (s=Download, u=, t= inside a recording RecordInfo listed,
    a=downloadspeed:4, a y= starting with 1) is answered 200 with that y=; the PS over RTP carries that
    SSRC, pack headers, a program stream map and PES; at the end of the range the device sends
    MediaStatus NotifyType 121."""
    span = await _recording(run)
    if isinstance(span, Verdict):
        return span
    options = run.options
    steps: list[str] = []
    problems: list[str] = []

    async def wait_end(call: Call) -> None:
        await _ended(run, call, options.history_seconds / _DOWNLOAD_SPEED + 2 * options.item_timeout, steps, problems)

    call = await _call(run, Leg.UDP, "Download", 0.0, history=True, timing=_timing(span),
                       attributes=(("downloadspeed", str(_DOWNLOAD_SPEED)),), during=wait_end)
    all_problems = call.problems + problems + _stream_problems(call, history=True)
    return _verdict(all_problems, f"{call.stream.packets} packets at downloadspeed {_DOWNLOAD_SPEED}; "
                    f"{', '.join(steps)}", [*call.evidence, call.stream.describe()])

"""The checks of ``gb28181-conformance lower`` (2016 #36-70, 2022 #45-88): the tool has registered to the
platform under test as a lower device (`lower.LowerSide`) and judges the platform's side of each
exchange. Rows the platform must start (a catalog query, a play) wait ``--action-wait`` seconds for it,
and are manual when it never comes: the operator triggers them on the platform. One function per check;
its docstring is the requirement it checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from gbgw.conformance.tool.device_items import DeviceOptions, Verdict, failed, passed
from gbgw.conformance.tool.lower import Inbound, LowerSide
from gbgw.conformance.tool.platform import body_text
from gbgw.conformance.tool.report import Outcome
from gbgw.conformance.tool.sheet import AnyCheck, PlatformCheck
from gbgw.gb28181.manscdp import ManscdpError, Move, PtzCmd
from gbgw.sip.digest import DigestAlgorithm, DigestError, parse_challenge
from gbgw.sip.sdp import SdpError, SessionDescription

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?$")


@dataclass(slots=True)
class LowerRun:
    side: LowerSide
    options: DeviceOptions


LowerCheck = Callable[[LowerRun], Awaitable[Verdict]]
LOWER_CHECKS: dict[AnyCheck, LowerCheck] = {}


def lower_check(key: PlatformCheck) -> Callable[[LowerCheck], LowerCheck]:
    def register(func: LowerCheck) -> LowerCheck:
        LOWER_CHECKS[key] = func
        return func
    return register


def _text(inbound: Inbound) -> str:
    return body_text(inbound.request.serialize())


async def _awaited(run: LowerRun, match: Callable[[Inbound], bool], prompt: str) -> Inbound | None:
    """The first request of the platform that ``match``es, waiting up to ``action_wait`` for it."""
    side = run.side
    loop = asyncio.get_running_loop()
    deadline = loop.time() + run.options.action_wait
    if not run.options.unattended:
        print(f"\n{prompt}", flush=True)
    while True:
        found = next((i for i in side.inbox if match(i)), None)
        remaining = deadline - loop.time()
        if found is not None or remaining <= 0:
            return found
        side.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(side.changed.wait(), min(remaining, 0.5))


def _manual(run: LowerRun, what: str) -> Verdict:
    return Verdict(Outcome.MANUAL, f"the platform sent no {what} in {run.options.action_wait:g} s: make it "
                   "do so (on its console) while the tool runs")


async def _followups(run: LowerRun, inbound: Inbound, count: int) -> None:
    """Let the tool's answer pages reach the platform (their 200s are what is judged)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + run.options.item_timeout
    while len(inbound.followups) < count and loop.time() < deadline:
        await asyncio.sleep(0.05)


def _query(cmd_type: str) -> Callable[[Inbound], bool]:
    return lambda i: i.doc is not None and i.doc.root == "Query" and i.doc.cmd_type == cmd_type


async def _answered_query(run: LowerRun, cmd_type: str, what: str) -> Verdict:
    """The platform sends a ``cmd_type`` Query with an SN, to the tool's device or one of its channels,
    and accepts the tool's Response MESSAGEs with 2xx."""
    inbound = await _awaited(run, _query(cmd_type), f"Make the platform query {what} of the tool's device.")
    if inbound is None or inbound.doc is None:
        return _manual(run, f"{cmd_type} query")
    doc = inbound.doc
    if doc.sn is None:
        return failed("A.2.4", f"the {cmd_type} query has no SN", _text(inbound))
    if inbound.status != 200:
        return failed("A.2.4", f"the {cmd_type} query names {doc.device_id!r}, not the tool's device or channels",
                      _text(inbound))
    await _followups(run, inbound, 1)
    refused = [s for s in inbound.followups if s is None or not 200 <= s < 300]
    if not inbound.followups or refused:
        return failed("§9.3 / §9.5", f"the platform answered the tool's {cmd_type} Response with "
                      f"{inbound.followups or 'nothing'}", _text(inbound))
    return passed(f"{cmd_type} query SN {doc.sn} answered; the platform took {len(inbound.followups)} "
                  "Response MESSAGE(s) with 2xx", _text(inbound))


# -- registration and liveness ---------------------------------------------------------------------------


@lower_check(PlatformCheck.L_REGISTER)
async def register(run: LowerRun) -> Verdict:
    """§9.1.2: the platform challenges a REGISTER without credentials with 401 and a Digest challenge
    (realm, nonce, MD5), refuses an answer computed with a wrong password (401/403), accepts the right
    answer with 200 and Expires, and accepts a refresh before expiry."""
    side, timeout = run.side, run.options.item_timeout
    wrong = await side.register(side.expires, timeout, password=side.password + "-wrong",
                                call_id=f"wrong-{side.lower_id}")
    legs = wrong + await side.register(side.expires, timeout)
    evidence = [f"{leg.request.start_line()} -> {leg.response.status if leg.response else 'no answer'}" for leg in legs]
    first = legs[0].response
    if first is None or first.status != 401:
        return failed("§9.1.2.1", f"the REGISTER without credentials was answered "
                      f"{first.status if first else 'never'}, not 401", *evidence)
    try:
        challenge = parse_challenge(first.get("WWW-Authenticate") or "")
    except DigestError as exc:
        return failed("§9.1.2.1 / RFC 2617", f"unreadable challenge: {exc.reason}", body_text(first.serialize()))
    if challenge.algorithm is not DigestAlgorithm.MD5:
        return failed("§9.1.2.1", f"the challenge's algorithm is {challenge.algorithm}, not MD5",
                      body_text(first.serialize()))
    if len(wrong) < 2 or wrong[1].response is None or wrong[1].response.status not in (401, 403):
        status = wrong[1].response.status if len(wrong) > 1 and wrong[1].response else "never"
        return failed("§9.1.2.1", f"a wrong digest answer was answered {status}, not 401/403", *evidence)
    final = legs[-1].response
    if final is None or final.status != 200:
        return failed("§9.1.2.1", f"the right digest answer was answered {final.status if final else 'never'}",
                      *evidence)
    refresh = await side.register(side.expires, timeout)
    last = refresh[-1].response
    evidence += [f"refresh {leg.request.start_line()} -> {leg.response.status if leg.response else 'no answer'}"
                 for leg in refresh]
    if last is None or last.status != 200:
        return failed("§9.1.2.1 (refresh)", f"the refresh was answered {last.status if last else 'never'}", *evidence)
    return passed(f"401 challenge (realm {challenge.realm}), wrong answer refused, registered, refreshed",
                  *evidence, body_text(final.serialize()))


@lower_check(PlatformCheck.L_UNREGISTER)
async def unregister(run: LowerRun) -> Verdict:
    """§9.1.2.2: REGISTER with Expires: 0 is accepted with 200."""
    legs = await run.side.register(0, run.options.item_timeout)
    last = legs[-1].response
    if last is None or last.status != 200:
        return failed("§9.1.2.2", f"the unregistration was answered {last.status if last else 'never'}",
                      legs[-1].request.start_line())
    return passed("Expires: 0 answered 200", body_text(last.serialize()))


@lower_check(PlatformCheck.L_TIME_SYNC)
async def time_sync(run: LowerRun) -> Verdict:
    """§9.10: the 200 to REGISTER carries Date as YYYY-MM-DDTHH:MM:SS.sss (local time), within a few
    seconds of the tool's clock, for the device to set its clock from."""
    oks = [leg.response for leg in run.side.register_legs if leg.response is not None and leg.response.status == 200]
    if not oks:
        return Verdict(Outcome.SKIP, "the tool never registered")
    date = (oks[-1].get("Date") or "").strip()
    if not _DATE.match(date):
        return failed("§9.10", f"the 200 to REGISTER has Date {date!r}, not YYYY-MM-DDTHH:MM:SS.sss",
                      body_text(oks[-1].serialize()))
    skew = (datetime.fromisoformat(date) - datetime.now()).total_seconds()
    if abs(skew) > run.options.time_tolerance + run.options.item_timeout:
        return failed("§9.10", f"Date {date} is {skew:+.1f} s off the tool's clock", body_text(oks[-1].serialize()))
    return passed(f"Date: {date} ({skew:+.1f} s)")


@lower_check(PlatformCheck.L_KEEPALIVE)
async def keepalive(run: LowerRun) -> Verdict:
    """§9.6: the platform accepts each keepalive (Notify Keepalive, Status OK) with 200."""
    statuses = []
    for index in range(run.options.keepalive_count):
        if index:
            await asyncio.sleep(run.options.keepalive_interval)
        statuses.append(await run.side.keepalive(run.options.item_timeout))
    if any(status != 200 for status in statuses):
        return failed("§9.6", f"keepalives were answered {statuses}")
    return passed(f"{len(statuses)} keepalives answered 200")


# -- what the platform asks --------------------------------------------------------------------------------


@lower_check(PlatformCheck.L_CATALOG)
async def catalog(run: LowerRun) -> Verdict:
    """§9.5.1, A.2.4 a: the platform sends a Catalog query with an SN to the tool's device, and accepts
    every page of the tool's paged answer (SumNum over several MESSAGEs) with 2xx. Whether it assembled
    the pages shows only in what it does next: the detail says whether a later request of the platform
    named a channel of the last page."""
    inbound = await _awaited(run, _query("Catalog"), "Make the platform query the catalog of the tool's device.")
    if inbound is None or inbound.doc is None:
        return _manual(run, "Catalog query")
    side = run.side
    pages = -(-len(side.channel_ids) // side.config.catalog_page_size)
    verdict = await _answered_query(run, "Catalog", "the catalog")
    if verdict.outcome is not Outcome.PASS:
        return verdict
    await _followups(run, inbound, pages)
    if len(inbound.followups) < pages:
        return failed("§9.5.1", f"only {len(inbound.followups)} of the {pages} catalog pages were accepted",
                      _text(inbound))
    last_page = set(side.channel_ids[(pages - 1) * side.config.catalog_page_size:])
    later = [i for i in side.inbox if i.at > inbound.at and i.request.request_uri.user in last_page]
    seen = "named a channel of the last page afterwards" if later else "has not named a last-page channel yet"
    return passed(f"{verdict.detail}; {pages} pages, {len(side.channel_ids)} channels; the platform {seen}",
                  *verdict.evidence)


@lower_check(PlatformCheck.L_DEVICE_INFO)
async def device_info(run: LowerRun) -> Verdict:
    """A.2.4 b: the platform queries DeviceInfo and accepts the tool's Response."""
    return await _answered_query(run, "DeviceInfo", "device information")


@lower_check(PlatformCheck.L_DEVICE_STATUS)
async def device_status(run: LowerRun) -> Verdict:
    """A.2.4 c: the platform queries DeviceStatus and accepts the tool's Response."""
    return await _answered_query(run, "DeviceStatus", "the device status")


@lower_check(PlatformCheck.L_RECORD_INFO)
async def record_info(run: LowerRun) -> Verdict:
    """§9.7, A.2.4 f: the platform queries RecordInfo and accepts every page of the tool's answer."""
    return await _answered_query(run, "RecordInfo", "the recordings")


@lower_check(PlatformCheck.L_PRESET_QUERY)
async def preset_query(run: LowerRun) -> Verdict:
    """A.2.4 h: the platform queries the presets and accepts the tool's Response."""
    return await _answered_query(run, "PresetQuery", "the presets")


@lower_check(PlatformCheck.L_CONFIG_DOWNLOAD)
async def config_download(run: LowerRun) -> Verdict:
    """A.2.4 g: the platform asks ConfigDownload and accepts the tool's Response."""
    return await _answered_query(run, "ConfigDownload", "the configuration")


@lower_check(PlatformCheck.L_LIVE)
async def live(run: LowerRun) -> Verdict:
    """§9.2.2, Annex F: the platform INVITEs a channel with an SDP offer (s=Play, PS on payload type 96,
    a y= SSRC of 10 digits starting with 0, an address that is not a wildcard) and a Subject header,
    ACKs the tool's 200 (the tool then streams PS), and ends the call with BYE."""
    if run.side.source is None:
        return Verdict(Outcome.SKIP, "give --media FILE (H.264) to answer a Play INVITE")
    inbound = await _awaited(run, _invite("play"), "Play a channel of the tool's device.")
    if inbound is None:
        return _manual(run, "INVITE")
    evidence = [_text(inbound)]
    try:
        offer = SessionDescription.parse(inbound.request.body)
    except SdpError as exc:
        return failed("§9.2.2 / RFC 4566", f"unreadable SDP offer: {exc.reason}", *evidence)
    problems = []
    if (offer.session_name or "").strip().lower() != "play":
        problems.append(f"s={offer.session_name}, not Play")
    video = next((m for m in offer.media if m.kind.lower() == "video"), None)
    if video is None or 96 not in video.formats or video.rtpmap.get(96, ("",))[0].upper() != "PS":
        problems.append("no PS on payload type 96")
    elif offer.address_of(video) in ("", "0.0.0.0", "::"):
        problems.append(f"the media address is {offer.address_of(video)!r}")
    ssrc = offer.ssrc or ""
    if not (len(ssrc) == 10 and ssrc.isdigit() and ssrc[0] == "0"):
        problems.append(f"y={ssrc!r} is not a 10-digit live SSRC starting with 0")
    if not inbound.request.get("Subject"):
        problems.append("no Subject header")
    if problems:
        return failed("§9.2.2 / Annex F", "; ".join(problems), *evidence)
    if inbound.status != 200:
        return failed("§9.2.2", f"the tool could not answer the offer ({inbound.status})", *evidence)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + run.options.item_timeout
    while not inbound.acked and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if not inbound.acked:
        return failed("RFC 3261 §13.2.2.4", "the platform never ACKed the 200", *evidence)
    bye = await _awaited(run, lambda i: i.request.method == "BYE" and i.request.call_id == inbound.request.call_id,
                         "Stop the play on the platform.")
    ended = "ended with BYE" if bye is not None else f"still up after {run.options.action_wait:g} s"
    return passed(f"INVITE y={ssrc} to {inbound.request.request_uri.user}, ACKed, PS streamed, {ended}", *evidence)


def _invite(session: str) -> Callable[[Inbound], bool]:
    """An INVITE whose SDP names ``session`` (s=Play, Playback, Download)."""
    def match(inbound: Inbound) -> bool:
        if inbound.request.method != "INVITE":
            return False
        try:
            offer = SessionDescription.parse(inbound.request.body)
        except SdpError:
            return session == "play"
        return (offer.session_name or "").strip().lower() == session
    return match


@lower_check(PlatformCheck.L_PLAYBACK)
async def playback(run: LowerRun) -> Verdict:
    """§9.8, Annex B: the platform INVITEs a channel for playback (s=Playback, u=channel:type, t=START
    END with START before END, PS on 96, a 10-digit y= starting with 1, no wildcard address), ACKs the
    tool's 200 (the tool streams the range), sends its MANSRTSP controls as INFO in the dialog, each
    readable (the tool answers them 200), and ends the call with BYE."""
    if run.side.source is None:
        return Verdict(Outcome.SKIP, "give --media FILE (H.264) to answer a Playback INVITE")
    inbound = await _awaited(run, _invite("playback"), "Play back a recording of a channel of the tool's device.")
    if inbound is None:
        return _manual(run, "Playback INVITE")
    evidence = [_text(inbound)]
    offer = SessionDescription.parse(inbound.request.body)
    problems = []
    video = next((m for m in offer.media if m.kind.lower() == "video"), None)
    if video is None or 96 not in video.formats or video.rtpmap.get(96, ("",))[0].upper() != "PS":
        problems.append("no PS on payload type 96")
    elif offer.address_of(video) in ("", "0.0.0.0", "::"):
        problems.append(f"the media address is {offer.address_of(video)!r}")
    ssrc = offer.ssrc or ""
    if not (len(ssrc) == 10 and ssrc.isdigit() and ssrc[0] == "1"):
        problems.append(f"y={ssrc!r} is not a 10-digit history SSRC starting with 1")
    if not offer.uri:
        problems.append("no u= naming the channel")
    start, end = offer.timing or (0, 0)
    if not 0 < start < end:
        problems.append(f"t={start} {end} is not a range")
    if problems:
        return failed("§9.8 / Annex F", "; ".join(problems), *evidence)
    if inbound.status != 200:
        return failed("§9.8", f"the tool could not answer the offer ({inbound.status})", *evidence)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + run.options.item_timeout
    while not inbound.acked and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if not inbound.acked:
        return failed("RFC 3261 §13.2.2.4", "the platform never ACKed the 200", *evidence)
    call_id = inbound.request.call_id
    bye = await _awaited(run, lambda i: i.request.method == "BYE" and i.request.call_id == call_id,
                         "Stop the playback on the platform.")
    infos = [i for i in run.side.inbox if i.request.method == "INFO" and i.request.call_id == call_id]
    refused = [i for i in infos if i.status != 200]
    if refused:
        return failed("Annex B", f"{len(refused)} of the platform's MANSRTSP INFOs were unreadable or refused",
                      *evidence, *(_text(i) for i in refused))
    ended = "ended with BYE" if bye is not None else f"still up after {run.options.action_wait:g} s"
    return passed(f"Playback INVITE y={ssrc} t={start} {end}, ACKed, {len(infos)} MANSRTSP INFO(s) answered 200, "
                  f"{ended}", *evidence, *(_text(i) for i in infos))


# -- controls the platform sends --------------------------------------------------------------------------


def _control(tag: str, value: Callable[[str], bool]) -> Callable[[Inbound], bool]:
    def match(inbound: Inbound) -> bool:
        doc = inbound.doc
        if doc is None or doc.root != "Control":
            return False
        text = doc.text(tag)
        return text is not None and value(text)
    return match


def _ptz_is(stop: bool) -> Callable[[str], bool]:
    def judge(code: str) -> bool:
        try:
            command = PtzCmd.parse(code).command()
        except ManscdpError:
            return not stop
        return isinstance(command, Move) and command.is_stop == stop
    return judge


async def _controlled(run: LowerRun, match: Callable[[Inbound], bool], what: str, prompt: str,
                      *, answered: bool) -> Verdict:
    """The platform sends the control ``match`` finds with an SN to a channel or the device of the tool;
    a control the standard answers gets the tool's Response, which the platform must accept with 2xx."""
    inbound = await _awaited(run, match, prompt)
    if inbound is None or inbound.doc is None:
        return _manual(run, what)
    doc = inbound.doc
    if doc.sn is None:
        return failed("A.2.3", f"the {what} has no SN", _text(inbound))
    if inbound.status != 200:
        return failed("A.2.3", f"the {what} names {doc.device_id!r}, not the tool's device or channels",
                      _text(inbound))
    if not answered:
        return passed(f"{what} SN {doc.sn} to {doc.device_id}", _text(inbound))
    await _followups(run, inbound, 1)
    if not inbound.followups or any(s is None or not 200 <= s < 300 for s in inbound.followups):
        return failed("§9.3.1", f"the platform answered the tool's {what} Response with "
                      f"{inbound.followups or 'nothing'}", _text(inbound))
    return passed(f"{what} SN {doc.sn} to {doc.device_id}; the Response (Result OK) taken with 2xx", _text(inbound))


@lower_check(PlatformCheck.L_PTZ)
async def ptz(run: LowerRun) -> Verdict:
    """§9.3.1, A.3: the platform sends a PTZCmd move whose bytes are valid (A5, version and check nibbles,
    checksum byte 8) to a channel of the tool; the standard gives it no Response."""
    verdict = await _controlled(run, _control("PTZCmd", _ptz_is(False)), "PTZ move", "Turn a camera of the tool.",
                                answered=False)
    return _ptz_valid(verdict, run)


@lower_check(PlatformCheck.L_PTZ_STOP)
async def ptz_stop(run: LowerRun) -> Verdict:
    """§9.3.1, A.3: the platform sends the PTZ stop command (a valid PTZCmd with no movement)."""
    return await _controlled(run, _control("PTZCmd", _ptz_is(True)), "PTZ stop", "Stop the camera's movement.",
                             answered=False)


def _ptz_valid(verdict: Verdict, run: LowerRun) -> Verdict:
    if verdict.outcome is not Outcome.PASS:
        return verdict
    inbound = next(i for i in run.side.inbox if _control("PTZCmd", _ptz_is(False))(i))
    code = inbound.doc.text("PTZCmd") if inbound.doc is not None else ""
    try:
        PtzCmd.parse(code or "")
    except ManscdpError as exc:
        return failed("A.3.1 (PTZCmd bytes)", f"PTZCmd {code} is invalid: {exc}", _text(inbound))
    return passed(f"{verdict.detail}: PTZCmd {code} valid", *verdict.evidence)


@lower_check(PlatformCheck.L_RECORD_START)
async def record_start(run: LowerRun) -> Verdict:
    """§9.3.1, A.2.3 a: the platform sends RecordCmd Record and accepts the tool's Result."""
    return await _controlled(run, _control("RecordCmd", lambda v: v == "Record"), "RecordCmd Record",
                             "Start manual recording of a camera of the tool.", answered=True)


@lower_check(PlatformCheck.L_RECORD_STOP)
async def record_stop(run: LowerRun) -> Verdict:
    """§9.3.1, A.2.3 a: the platform sends RecordCmd StopRecord and accepts the tool's Result."""
    return await _controlled(run, _control("RecordCmd", lambda v: v == "StopRecord"), "RecordCmd StopRecord",
                             "Stop manual recording of a camera of the tool.", answered=True)


@lower_check(PlatformCheck.L_GUARD_SET)
async def guard_set(run: LowerRun) -> Verdict:
    """§9.3.1, A.2.3 a: the platform sends GuardCmd SetGuard and accepts the tool's Result."""
    return await _controlled(run, _control("GuardCmd", lambda v: v == "SetGuard"), "GuardCmd SetGuard",
                             "Arm the tool's device.", answered=True)


@lower_check(PlatformCheck.L_GUARD_RESET)
async def guard_reset(run: LowerRun) -> Verdict:
    """§9.3.1, A.2.3 a: the platform sends GuardCmd ResetGuard and accepts the tool's Result."""
    return await _controlled(run, _control("GuardCmd", lambda v: v == "ResetGuard"), "GuardCmd ResetGuard",
                             "Disarm the tool's device.", answered=True)


@lower_check(PlatformCheck.L_ALARM_RESET)
async def alarm_reset(run: LowerRun) -> Verdict:
    """§9.3.1, A.2.3 a: the platform sends AlarmCmd ResetAlarm and accepts the tool's Result."""
    return await _controlled(run, _control("AlarmCmd", lambda v: v == "ResetAlarm"), "AlarmCmd ResetAlarm",
                             "Reset the alarm of the tool's device.", answered=True)


# -- what the tool reports ---------------------------------------------------------------------------------


@lower_check(PlatformCheck.L_ALARM)
async def alarm(run: LowerRun) -> Verdict:
    """§9.4, A.2.5 b: the platform accepts the tool's Notify Alarm MESSAGE with 200 (that it shows the
    alarm is for the operator to see)."""
    doc, status = await run.side.alarm(run.options.item_timeout)
    if status != 200:
        return failed("§9.4", f"the alarm MESSAGE was answered {status or 'never'}")
    return passed(f"alarm of {doc.device_id} accepted")


def _catalog_subscription(inbound: Inbound) -> bool:
    return inbound.request.method == "SUBSCRIBE" and \
        (inbound.request.get("Event") or "").split(";")[0].strip().lower() == "catalog"


@lower_check(PlatformCheck.L_CATALOG_SUBSCRIBE)
async def catalog_subscribe(run: LowerRun) -> Verdict:
    """§9.11.2, A.2.4 d: the platform SUBSCRIBEs to the tool's catalog (Event: Catalog, Expires, a Query
    Catalog body) and accepts the NOTIFYs in that dialog: a camera going off line (OFF) and back (ON)."""
    inbound = await _awaited(run, _catalog_subscription, "Make the platform subscribe to the tool's catalog.")
    if inbound is None:
        return _manual(run, "Catalog SUBSCRIBE")
    if inbound.doc is None or inbound.doc.cmd_type != "Catalog" or not inbound.request.get("Expires"):
        return failed("§9.11.2", "the SUBSCRIBE lacks a Query Catalog body or Expires", _text(inbound))
    results = [await run.side.notify_catalog(event, run.options.item_timeout) for event in ("OFF", "ON")]
    statuses = [r[1] if r else None for r in results]
    if any(status is None or not 200 <= status < 300 for status in statuses):
        return failed("§9.11.2", f"the catalog NOTIFYs (OFF, ON) were answered {statuses}", _text(inbound))
    return passed(f"subscribed (Expires {inbound.request.get('Expires')}); NOTIFY OFF and ON answered {statuses}",
                  _text(inbound))


@lower_check(PlatformCheck.L_CATALOG_NOTIFY)
async def catalog_notify(run: LowerRun) -> Verdict:
    """§9.11.2: in the platform's Catalog subscription, an UPDATE NOTIFY is accepted with 2xx."""
    inbound = await _awaited(run, _catalog_subscription, "Make the platform subscribe to the tool's catalog.")
    if inbound is None:
        return _manual(run, "Catalog SUBSCRIBE")
    result = await run.side.notify_catalog("UPDATE", run.options.item_timeout)
    status = result[1] if result else None
    if status is None or not 200 <= status < 300:
        return failed("§9.11.2", f"the catalog NOTIFY (UPDATE) was answered {status}", _text(inbound))
    return passed(f"NOTIFY UPDATE answered {status}")

"""The checks of ``gb28181-conformance device``: the tool is the platform, the device under test has
registered to it, and each check runs one exchange of the sheet's device rows and judges the device's
side of it. One function per check; its docstring is the requirement it checks.

A check returns a `Verdict`; evidence is the message that broke it (or, for a pass, what showed it).
"""

from __future__ import annotations

import asyncio
import threading
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import IPv4Network, IPv6Network

from gbgw.conformance.tool.platform import Exchange, Platform, Received, body_text
from gbgw.conformance.tool.report import Outcome
from gbgw.conformance.tool.sheet import AnyCheck, Check
from gbgw.gb28181.manscdp import (
    HomePosition,
    ManscdpDocument,
    PtzCmd,
    control_alarm_reset,
    control_guard,
    control_home_position,
    control_iframe,
    control_ptz,
    control_record,
    parse_time,
    query_catalog,
    query_config_download,
    query_device_info,
    query_device_status,
    query_preset,
    query_record_info,
)
from gbgw.gb28181.manscdp import device_config as build_device_config


@dataclass(slots=True)
class Verdict:
    outcome: Outcome
    detail: str
    evidence: list[str] = field(default_factory=list)


def passed(detail: str, *evidence: str) -> Verdict:
    return Verdict(Outcome.PASS, detail, list(evidence))


def failed(clause: str, detail: str, *evidence: str) -> Verdict:
    return Verdict(Outcome.FAIL, f"{detail} [{clause}]", list(evidence))


@dataclass(slots=True)
class DeviceOptions:
    device_type: str
    unattended: bool = True
    item_timeout: float = 10.0
    register_wait: float = 120.0
    keepalive_interval: float = 60.0
    keepalive_tolerance: float = 0.5
    """A keepalive may come this fraction of the interval late (plus up to 0.5 s of scheduling jitter)."""
    media_seconds: float = 4.0
    time_tolerance: float = 5.0
    """Seconds the device's clock (DeviceStatus DeviceTime) may differ from the tool's after time sync."""
    keepalive_count: int = 4
    """Keepalives the keepalive check waits for."""
    action_wait: float = 30.0
    """Upper and lower modes: seconds to wait for something only the platform under test (or its
    operator) can start, such as an alarm from a camera behind it."""
    forbid: tuple[IPv4Network | IPv6Network, ...] = ()
    """Upper mode: addresses of the device network that nothing the platform sends may name."""
    expect_alarm: bool = False
    """Device mode: the operator triggers an alarm (``--expect-alarm``), so the alarm and event
    notification rows wait ``action_wait`` for one; without it they report what arrived, else manual."""
    history_seconds: float = 4.0
    """Seconds of recorded video the playback and download rows ask for."""


class Operator:
    """Asks the person at the terminal to confirm what only eyes can see (a camera turning)."""

    def __init__(self, unattended: bool) -> None:
        self.unattended = unattended

    async def confirm(self, question: str, timeout: float) -> bool | None:
        """True/False as answered, None when unattended or when nobody answers in time."""
        if self.unattended:
            return None
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[str] = loop.create_future()

        def read() -> None:
            try:
                text = input(f"\n{question} [y/n] ")
            except EOFError:
                text = ""
            loop.call_soon_threadsafe(_settle, answer, text)

        # A daemon thread: a prompt nobody answers must not keep the process alive at exit.
        threading.Thread(target=read, daemon=True).start()
        try:
            text = await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            return None
        return text.strip().lower().startswith("y") if text.strip() else None


def _settle(future: asyncio.Future[str], text: str) -> None:
    if not future.done():
        future.set_result(text)


@dataclass(slots=True)
class DeviceRun:
    """What the checks share: the platform, the options, and what earlier checks learnt."""

    platform: Platform
    options: DeviceOptions
    operator: Operator
    channels: list[str] = field(default_factory=list)
    """Camera channel IDs from the catalog (types 131/132)."""
    alarm_inputs: list[str] = field(default_factory=list)
    """Alarm input IDs from the catalog (type 134): where guard and alarm reset go when there is one."""
    preset: int | None = None
    """The preset the preset-set row stored, for the call and delete rows."""
    subscriptions: dict[str, str] = field(default_factory=dict)
    """Upper mode: the Call-ID of the tool's live subscription per CmdType (the subscribe rows start
    them, the notification rows read them)."""
    via_platform: bool = False
    """Upper mode: the registrant is a platform, and queries and controls go to a camera behind it (the
    sheet's "standard IPC connected to the platform under test"), not to the platform itself."""

    @property
    def target(self) -> str:
        """Where DeviceInfo, DeviceStatus, ConfigDownload, guard and alarm commands go."""
        return self.channel if self.via_platform else self.device_id

    @property
    def alarm_target(self) -> str:
        """Where guard and alarm reset go: the standard addresses them to the device or an alarm input
        (A.2.3 a), so a catalogued alarm input first; through a platform that shares none, the camera."""
        return self.alarm_inputs[0] if self.alarm_inputs else self.target

    @property
    def device_id(self) -> str:
        return self.platform.device_id

    @property
    def channel(self) -> str:
        """The channel the media, PTZ, preset and record checks use: the first camera, else the device."""
        return self.channels[0] if self.channels else self.device_id


CheckFunc = Callable[[DeviceRun], Awaitable[Verdict]]
CHECKS: dict[AnyCheck, CheckFunc] = {}
BUDGETS: dict[AnyCheck, Callable[[DeviceOptions], float]] = {}


def check(key: AnyCheck, budget: Callable[[DeviceOptions], float] | None = None) -> Callable[[CheckFunc], CheckFunc]:
    def register(func: CheckFunc) -> CheckFunc:
        CHECKS[key] = func
        BUDGETS[key] = budget or (lambda o: 3 * o.item_timeout + 5)
        return func

    return register


def _evidence(exchange: Exchange) -> list[str]:
    sent = body_text(exchange.request)
    return [f"sent:\n{sent}", *(f"received:\n{body_text(a.body)}" for a in exchange.answers)]


def _no_answer(exchange: Exchange, what: str) -> Verdict | None:
    """The failure when the MESSAGE was refused or its Response never came; None when it came."""
    if exchange.status is None:
        return failed("§9.3 / RFC 3261 §17.1.2", f"no final answer to the {what} MESSAGE", *_evidence(exchange))
    if exchange.status >= 300:
        return failed("§9.3", f"the {what} MESSAGE was answered {exchange.status}", *_evidence(exchange))
    if not exchange.answers:
        return failed("§9.3 / A.2.6", f"no {what} Response arrived", *_evidence(exchange))
    return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _listed(answers: list[Received], list_tag: str) -> int:
    return sum(len(a.doc.element.findall(f"{list_tag}/Item")) for a in answers)


def _complete(list_tag: str) -> Callable[[list[Received]], bool]:
    """Pages are complete once the items listed reach the first page's SumNum."""
    def done(answers: list[Received]) -> bool:
        total = _int(answers[0].doc.text("SumNum"))
        return total is not None and _listed(answers, list_tag) >= total
    return done


def _pages(answers: list[Received], list_tag: str, what: str) -> Verdict | None:
    """SumNum the same on every page, each page's Num equal to its items, and SumNum items in all."""
    sums = [_int(a.doc.text("SumNum")) for a in answers]
    if None in sums:
        return failed("A.2.6", f"a {what} page has no SumNum", *(body_text(a.body) for a in answers))
    if len(set(sums)) > 1:
        return failed("A.2.6 (SumNum)", f"{what} pages disagree on SumNum: {sums}",
                      *(body_text(a.body) for a in answers))
    for answer in answers:
        listed = answer.doc.element.find(list_tag)
        items = len(answer.doc.element.findall(f"{list_tag}/Item"))
        num = _int(listed.get("Num")) if listed is not None else None
        if listed is not None and num != items:
            return failed("A.2.6 (Num)", f"a {what} page says Num={num} but lists {items} items", body_text(answer.body))
    total = sums[0] or 0
    listed_all = _listed(answers, list_tag)
    if listed_all != total:
        return failed("A.2.6 (SumNum)",
                      f"SumNum is {total} but {listed_all} items arrived in {len(answers)} pages",
                      *(body_text(a.body) for a in answers))
    return None


def _repairs(answers: list[Received]) -> Verdict | None:
    for answer in answers:
        if answer.doc.repairs:
            return failed("§5.3 / A.1 (charset)",
                          f"the body had to be repaired to be read: {'; '.join(answer.doc.repairs)}",
                          body_text(answer.body))
    return None


# -- registration and liveness --------------------------------------------------------------------------


@check(Check.REGISTER, lambda o: o.register_wait + 5)
async def register(run: DeviceRun) -> Verdict:
    """§9.1.2: the device registers with digest authentication (MD5, RFC 2617): it answers the 401
    challenge with the right response for the password, and after a 403 (the tool's wrong-password
    round) it does not count itself registered and registers again, starting with a new challenge."""
    log = run.platform.registrar.log
    problems = []
    if log.digest_failures:
        problems.append(failed("§9.1.2.1 / RFC 2617 §3.2.2", "the digest answer does not match the password",
                               *log.digest_failures))
    if log.refused_at is not None and log.retried_at is None:
        problems.append(failed("§9.1.2.1", "no new registration after the 403", *log.requests))
    if problems:
        return problems[0]
    rounds = " after a 403 round" if log.refused_at is not None else ""
    gap = f" (retried {log.retried_at - log.refused_at:.1f} s after the 403)" \
        if log.refused_at is not None and log.retried_at is not None else ""
    return passed(f"registered with digest{rounds}{gap}", *log.requests)


@check(Check.UNREGISTER)
async def unregister(run: DeviceRun) -> Verdict:
    """§9.1.2.2: the device unregisters with a REGISTER carrying Expires: 0, answered 200. Only the
    operator can make a device unregister, so unattended this is left to them."""
    log = run.platform.registrar.log
    if log.unregistered_at is None:
        answered = await run.operator.confirm("Unregister the device now (disable GB28181 on it), then answer y",
                                              run.options.item_timeout * 3)
        if answered is None:
            return Verdict(Outcome.MANUAL, "trigger an unregistration on the device and run this item attended")
        await asyncio.sleep(1.0)
    if log.unregistered_at is None:
        return failed("§9.1.2.2", "no REGISTER with Expires: 0 arrived", *log.requests[-3:])
    return passed("unregistered with Expires: 0", log.requests[-1])


@check(Check.TIME_SYNC)
async def time_sync(run: DeviceRun) -> Verdict:
    """§9.10: the device takes the time from the Date header of the 200 to its REGISTER (it registered,
    so it accepted the header); when its DeviceStatus carries DeviceTime, that time is within a few
    seconds of the platform's."""
    log = run.platform.registrar.log
    sn = run.platform.next_sn()
    exchange = await run.platform.exchange(run.device_id, query_device_status(sn, run.device_id),
                                           run.options.item_timeout, lambda a: True)
    device_time = parse_time(exchange.answers[0].doc.text("DeviceTime")) if exchange.answers else None
    if device_time is None:
        return passed(f"registered after Date: {log.date_sent}; no DeviceTime to compare")
    skew = (device_time - datetime.now()).total_seconds()
    if abs(skew) > run.options.time_tolerance:
        return failed("§9.10", f"DeviceTime is {skew:+.1f} s off the platform clock after Date: {log.date_sent}",
                      *_evidence(exchange))
    return passed(f"Date: {log.date_sent} accepted; DeviceTime within {abs(skew):.1f} s")


@check(Check.KEEPALIVE, lambda o: (o.keepalive_count + 0.5) * o.keepalive_interval * (1 + o.keepalive_tolerance) + 5)
async def keepalive(run: DeviceRun) -> Verdict:
    """§9.6: the device sends Notify Keepalive (its DeviceID, Status OK) at the configured interval,
    each no later than the interval plus the tolerance after the previous one (or the registration)."""
    options = run.options
    platform = run.platform
    loop = asyncio.get_running_loop()
    # Scheduling jitter on top of the tolerance: half a second, less for the short intervals of tests.
    late = options.keepalive_interval * (1 + options.keepalive_tolerance) + min(0.5, options.keepalive_interval / 10)
    registered_at = platform.registrar.log.registered_at or loop.time()
    until = loop.time() + (options.keepalive_count - 1) * late + 0.2
    while loop.time() < until and len(platform.keepalives) < options.keepalive_count:
        await asyncio.sleep(min(0.1, options.keepalive_interval / 5))
    previous = registered_at
    seen = [k for k in platform.keepalives if k.at >= registered_at]
    if not seen:
        return failed("§9.6", f"no keepalive in {loop.time() - registered_at:.1f} s "
                      f"(interval {options.keepalive_interval:g} s)")
    for index, received in enumerate(seen, start=1):
        gap = received.at - previous
        if gap > late:
            return failed("§9.6 (interval)", f"keepalive {index} came {gap:.2f} s after the previous one; "
                          f"the interval is {options.keepalive_interval:g} s, at most {late:.2f} s tolerated",
                          body_text(received.body))
        doc = received.doc
        if doc.device_id != run.device_id or (doc.text("Status") or "").upper() != "OK":
            return failed("A.2.5 (keepalive)", "keepalive without the device's ID or Status OK",
                          body_text(received.body))
        previous = received.at
    if loop.time() - previous > late:
        return failed("§9.6 (interval)", f"no keepalive for {loop.time() - previous:.2f} s after the last one")
    return passed(f"{len(seen)} keepalives, none later than {late:.2f} s", body_text(seen[-1].body))


# -- queries ----------------------------------------------------------------------------------------------

_DEVICE_FIELDS = ("Name", "Manufacturer", "Model", "Owner", "CivilCode", "Address", "Parental", "SafetyWay",
                  "RegisterWay", "Secrecy", "Status")


def _field(item: ET.Element, tag: str) -> str:
    """An item's field; devices put the fields of Info (A.2.6) either there or in the item itself."""
    text = item.findtext(tag) or item.findtext(f"Info/{tag}")
    return (text or "").strip()


@check(Check.CATALOG)
async def catalog(run: DeviceRun) -> Verdict:
    """§9.5.1, A.2.4 / A.2.6: the Catalog answer's pages agree on SumNum, each page's Num counts its
    items, SumNum items arrive in all; every item has a 20-digit DeviceID and, for devices (types
    111-199), the fields Annex A makes mandatory; bodies decode in their declared charset."""
    sn = run.platform.next_sn()
    exchange = await run.platform.exchange(run.device_id, query_catalog(sn, run.device_id),
                                           run.options.item_timeout, _complete("DeviceList"))
    problem = _no_answer(exchange, "Catalog") or _pages(exchange.answers, "DeviceList", "Catalog") \
        or _repairs(exchange.answers)
    if problem is not None:
        return problem
    seen: set[str] = set()
    for answer in exchange.answers:
        for item in answer.doc.element.findall("DeviceList/Item"):
            gb_id = _field(item, "DeviceID")
            if not (len(gb_id) == 20 and gb_id.isdigit()):
                return failed("Annex D", f"catalog item ID {gb_id!r} is not 20 digits", body_text(answer.body))
            if gb_id in seen:
                return failed("A.2.6", f"catalog item {gb_id} listed twice", body_text(answer.body))
            seen.add(gb_id)
            if 111 <= int(gb_id[10:13]) <= 199:
                missing = [tag for tag in _DEVICE_FIELDS if not _field(item, tag)]
                if missing:
                    return failed("A.2.6 (catalog item)", f"item {gb_id} lacks {', '.join(missing)}",
                                  body_text(answer.body))
                if gb_id[10:13] in ("131", "132"):
                    run.channels.append(gb_id)
                elif gb_id[10:13] == "134":
                    run.alarm_inputs.append(gb_id)
    return passed(f"{len(seen)} items in {len(exchange.answers)} pages, cameras {run.channels}",
                  *_evidence(exchange))


@check(Check.DEVICE_INFO)
async def device_info(run: DeviceRun) -> Verdict:
    """A.2.6 e: DeviceInfo answers with the device's ID, Result OK, Manufacturer, Model, Firmware and
    Channel (for an NVR at least its catalog's cameras)."""
    sn = run.platform.next_sn()
    exchange = await run.platform.exchange(run.target, query_device_info(sn, run.target),
                                           run.options.item_timeout, lambda a: True)
    problem = _no_answer(exchange, "DeviceInfo")
    if problem is not None:
        return problem
    doc = exchange.answers[0].doc
    evidence = _evidence(exchange)
    if doc.device_id != run.target:
        return failed("A.2.6 e", f"DeviceID {doc.device_id!r} is not the device's", *evidence)
    if (doc.text("Result") or "OK").upper() != "OK":
        return failed("A.2.6 e", f"Result is {doc.text('Result')}", *evidence)
    missing = [tag for tag in ("Manufacturer", "Model", "Firmware", "Channel") if not doc.text(tag)]
    if missing:
        return failed("A.2.6 e", f"DeviceInfo lacks {', '.join(missing)}", *evidence)
    channels = _int(doc.text("Channel"))
    if channels is None or channels < (len(run.channels) if run.options.device_type == "nvr" else 0):
        return failed("A.2.6 e", f"Channel {doc.text('Channel')} is below the {len(run.channels)} catalog cameras",
                      *evidence)
    return passed(f"{doc.text('Manufacturer')} {doc.text('Model')} {doc.text('Firmware')}, {channels} channels",
                  *evidence)


@check(Check.DEVICE_STATUS)
async def device_status(run: DeviceRun) -> Verdict:
    """A.2.6 f: DeviceStatus answers with Result OK, Online (ONLINE/OFFLINE), Status OK, and DeviceTime
    in the standard's time format."""
    sn = run.platform.next_sn()
    exchange = await run.platform.exchange(run.target, query_device_status(sn, run.target),
                                           run.options.item_timeout, lambda a: True)
    problem = _no_answer(exchange, "DeviceStatus")
    if problem is not None:
        return problem
    doc = exchange.answers[0].doc
    evidence = _evidence(exchange)
    if (doc.text("Result") or "").upper() != "OK":
        return failed("A.2.6 f", f"Result is {doc.text('Result')!r}, not OK", *evidence)
    if (doc.text("Online") or "").upper() not in ("ONLINE", "OFFLINE"):
        return failed("A.2.6 f", f"Online is {doc.text('Online')!r}", *evidence)
    if (doc.text("Status") or "").upper() != "OK":
        return failed("A.2.6 f", f"Status is {doc.text('Status')!r}", *evidence)
    if doc.text("DeviceTime") is not None and parse_time(doc.text("DeviceTime")) is None:
        return failed("A.2.6 f", f"DeviceTime {doc.text('DeviceTime')!r} is not a time", *evidence)
    return passed("Online, Status OK", *evidence)


@check(Check.CONFIG_DOWNLOAD)
async def config_download(run: DeviceRun) -> Verdict:
    """A.2.6 k: ConfigDownload BasicParam answers with Result OK and the basic parameters (Name,
    Expiration, HeartBeatInterval, HeartBeatCount)."""
    sn = run.platform.next_sn()
    exchange = await run.platform.exchange(run.target, query_config_download(sn, run.target, "BasicParam"),
                                           run.options.item_timeout, lambda a: True)
    problem = _no_answer(exchange, "ConfigDownload")
    if problem is not None:
        return problem
    doc = exchange.answers[0].doc
    evidence = _evidence(exchange)
    if (doc.text("Result") or "").upper() != "OK":
        return failed("A.2.6 k", f"Result is {doc.text('Result')!r}, not OK", *evidence)
    missing = [t for t in ("Name", "Expiration", "HeartBeatInterval", "HeartBeatCount")
               if not doc.text(f"BasicParam/{t}")]
    if missing:
        return failed("A.2.6 k", f"BasicParam lacks {', '.join(missing)}", *evidence)
    return passed("BasicParam complete", *evidence)


@check(Check.PRESET_QUERY)
async def preset_query(run: DeviceRun) -> Verdict:
    """A.2.6 j: PresetQuery answers with a PresetList whose Num counts its items, each a PresetID of
    1-255."""
    sn = run.platform.next_sn()
    exchange = await run.platform.exchange(run.channel, query_preset(sn, run.channel),
                                           run.options.item_timeout, _complete("PresetList"))
    problem = _no_answer(exchange, "PresetQuery")
    if problem is not None:
        return problem
    evidence = _evidence(exchange)
    for answer in exchange.answers:
        listed = answer.doc.element.find("PresetList")
        if listed is None:
            return failed("A.2.6 j", "the answer has no PresetList", *evidence)
        items = listed.findall("Item")
        if _int(listed.get("Num")) != len(items):
            return failed("A.2.6 j", f"PresetList Num={listed.get('Num')} but {len(items)} items", *evidence)
        bad = [i.findtext("PresetID") for i in items if not 1 <= (_int(i.findtext("PresetID")) or 0) <= 255]
        if bad:
            return failed("A.2.6 j", f"PresetIDs outside 1-255: {bad}", *evidence)
    return passed(f"{_listed(exchange.answers, 'PresetList')} presets", *evidence)


@check(Check.RECORD_INFO)
async def record_info(run: DeviceRun) -> Verdict:
    """§9.7, A.2.6 h: RecordInfo for the last day answers with pages that agree on SumNum and together
    list SumNum recordings (SumNum 0 when there are none), each with DeviceID, Name, StartTime and
    EndTime inside the time asked."""
    sn = run.platform.next_sn()
    end = datetime.now().replace(microsecond=0)
    start = end - timedelta(days=1)
    exchange = await run.platform.exchange(run.channel, query_record_info(sn, run.channel, start, end),
                                           run.options.item_timeout, _complete("RecordList"))
    problem = _no_answer(exchange, "RecordInfo") or _pages(exchange.answers, "RecordList", "RecordInfo")
    if problem is not None:
        return problem
    for answer in exchange.answers:
        for item in answer.doc.element.findall("RecordList/Item"):
            missing = [t for t in ("DeviceID", "Name", "StartTime", "EndTime") if not (item.findtext(t) or "").strip()]
            if missing:
                return failed("A.2.6 h", f"a recording lacks {', '.join(missing)}", body_text(answer.body))
            begin, finish = parse_time(item.findtext("StartTime")), parse_time(item.findtext("EndTime"))
            if begin is None or finish is None or begin > finish or finish < start or begin > end:
                return failed("A.2.6 h", f"recording {item.findtext('StartTime')} - {item.findtext('EndTime')} "
                              f"is not inside {start} - {end}", body_text(answer.body))
    return passed(f"{_listed(exchange.answers, 'RecordList')} recordings in {len(exchange.answers)} pages",
                  *_evidence(exchange))


# -- controls ---------------------------------------------------------------------------------------------


async def _ptz(run: DeviceRun, code: PtzCmd, what: str, question: str) -> Verdict:
    sn = run.platform.next_sn()
    exchange = await run.platform.exchange(run.channel, control_ptz(sn, run.channel, code),
                                           run.options.item_timeout, None)
    evidence = _evidence(exchange)
    if exchange.status is None or exchange.status >= 300:
        return failed("§9.3.1", f"the {what} MESSAGE was answered {exchange.status or 'never'}", *evidence)
    seen = await run.operator.confirm(question, run.options.item_timeout * 3)
    if seen is False:
        return failed("§9.3.1", f"the operator saw no effect of {what}", *evidence)
    if seen is None and not run.options.unattended:
        return Verdict(Outcome.MANUAL, f"{what} answered 200; nobody confirmed the effect", evidence)
    return passed(f"{what} answered 200" + ("" if seen else " (unattended: the effect was not watched)"),
                  *evidence)


@check(Check.PTZ)
async def ptz(run: DeviceRun) -> Verdict:
    """§9.3.1, A.3: a PTZCmd (tilt up) is accepted with 200 (the standard has no Response for PTZ)
    and, attended, the operator sees the camera move."""
    return await _ptz(run, PtzCmd.move(tilt=1), "PTZ up", "Is the camera tilting up?")


@check(Check.PTZ_STOP)
async def ptz_stop(run: DeviceRun) -> Verdict:
    """§9.3.1, A.3: the PTZ stop command is accepted with 200 and, attended, the camera stops."""
    return await _ptz(run, PtzCmd.stop(), "PTZ stop", "Has the camera stopped moving?")


async def _result(run: DeviceRun, target: str, doc: ManscdpDocument, what: str) -> Verdict:
    exchange = await run.platform.exchange(target, doc, run.options.item_timeout, lambda a: True)
    problem = _no_answer(exchange, what)
    if problem is not None:
        if exchange.status is not None and exchange.status < 300 and not exchange.answers:
            return failed("§9.3.1 / A.2.6 a", f"{what} was accepted with 200 but no Response with Result came "
                          f"in {run.options.item_timeout:g} s", *_evidence(exchange))
        return problem
    result = (exchange.answers[0].doc.text("Result") or "").upper()
    if result != "OK":
        return failed("A.2.6 a", f"{what} Result is {result or 'missing'}", *_evidence(exchange))
    return passed(f"{what}: Result OK", *_evidence(exchange))


@check(Check.RECORD_START)
async def record_start(run: DeviceRun) -> Verdict:
    """§9.3.1, A.2.3 a: RecordCmd Record is answered with a Response whose Result is OK."""
    return await _result(run, run.channel, control_record(run.platform.next_sn(), run.channel, record=True),
                         "RecordCmd Record")


@check(Check.RECORD_STOP)
async def record_stop(run: DeviceRun) -> Verdict:
    """§9.3.1, A.2.3 a: RecordCmd StopRecord is answered with a Response whose Result is OK."""
    return await _result(run, run.channel, control_record(run.platform.next_sn(), run.channel, record=False),
                         "RecordCmd StopRecord")


@check(Check.GUARD_SET)
async def guard_set(run: DeviceRun) -> Verdict:
    """§9.3.1, A.2.3 a: GuardCmd SetGuard is answered with a Response whose Result is OK."""
    return await _result(run, run.alarm_target, control_guard(run.platform.next_sn(), run.alarm_target, guard=True),
                         "GuardCmd SetGuard")


@check(Check.GUARD_RESET)
async def guard_reset(run: DeviceRun) -> Verdict:
    """§9.3.1, A.2.3 a: GuardCmd ResetGuard is answered with a Response whose Result is OK."""
    return await _result(run, run.alarm_target, control_guard(run.platform.next_sn(), run.alarm_target, guard=False),
                         "GuardCmd ResetGuard")


@check(Check.ALARM_RESET)
async def alarm_reset(run: DeviceRun) -> Verdict:
    """§9.3.1, A.2.3 a: AlarmCmd ResetAlarm is answered with a Response whose Result is OK."""
    return await _result(run, run.alarm_target, control_alarm_reset(run.platform.next_sn(), run.alarm_target),
                         "AlarmCmd ResetAlarm")


# -- presets, home position, keyframe, configuration ------------------------------------------------------


async def _preset_ids(run: DeviceRun) -> tuple[set[int] | None, list[str]]:
    """The channel's preset numbers (None when PresetQuery got no answer) and the exchange as evidence."""
    exchange = await run.platform.exchange(run.channel, query_preset(run.platform.next_sn(), run.channel),
                                           run.options.item_timeout, _complete("PresetList"))
    if _no_answer(exchange, "PresetQuery") is not None:
        return None, _evidence(exchange)
    ids = {_int(i.findtext("PresetID")) or 0 for a in exchange.answers for i in a.doc.element.findall("PresetList/Item")}
    return ids, _evidence(exchange)


async def _preset(run: DeviceRun, action: str, index: int, question: str) -> Verdict:
    return await _ptz(run, PtzCmd.preset(action, index), f"preset {action} {index}", question)


@check(Check.PRESET_SET)
async def preset_set(run: DeviceRun) -> Verdict:
    """§9.3.1, A.3.4: a PTZCmd "set preset" to an unused index is accepted with 200, and the device's
    PresetQuery lists that index afterwards."""
    before, _ = await _preset_ids(run)
    index = next((n for n in range(200, 0, -1) if before is None or n not in before), 200)
    verdict = await _preset(run, "set", index, f"Was preset {index} stored (the camera's menu lists it)?")
    if verdict.outcome is not Outcome.PASS:
        return verdict
    run.preset = index
    after, evidence = await _preset_ids(run)
    if after is not None and index not in after:
        return failed("A.3.4 / A.2.6 j", f"preset {index} was set but PresetQuery does not list it",
                      *verdict.evidence, *evidence)
    listed = "listed by PresetQuery" if after is not None else "PresetQuery unanswered"
    return passed(f"{verdict.detail}; {listed}", *verdict.evidence, *evidence)


@check(Check.PRESET_CALL)
async def preset_call(run: DeviceRun) -> Verdict:
    """§9.3.1, A.3.4: a PTZCmd "call preset" of a stored preset is accepted with 200 and, attended, the
    camera turns to it."""
    index = run.preset
    if index is None:
        ids, _ = await _preset_ids(run)
        index = min(ids) if ids else 1
    return await _preset(run, "call", index, f"Did the camera turn to preset {index}?")


@check(Check.PRESET_DELETE)
async def preset_delete(run: DeviceRun) -> Verdict:
    """§9.3.1, A.3.4: a PTZCmd "delete preset" is accepted with 200, and PresetQuery no longer lists it."""
    if run.preset is None:
        return Verdict(Outcome.SKIP, "no preset was stored by the preset-set row to delete (run it too)")
    index = run.preset
    verdict = await _preset(run, "delete", index, f"Is preset {index} gone from the camera's menu?")
    if verdict.outcome is not Outcome.PASS:
        return verdict
    after, evidence = await _preset_ids(run)
    if after is not None and index in after:
        return failed("A.3.4 / A.2.6 j", f"preset {index} was deleted but PresetQuery still lists it",
                      *verdict.evidence, *evidence)
    run.preset = None
    return passed(f"{verdict.detail}; gone from PresetQuery", *verdict.evidence, *evidence)


@check(Check.HOME_POSITION, lambda o: 6 * o.item_timeout + 5)
async def home_position(run: DeviceRun) -> Verdict:
    """§9.3.1, A.2.3 a: HomePosition (enabled, a reset time, a stored preset) is answered with a Response
    whose Result is OK; then disabled again, also Result OK."""
    ids, _ = await _preset_ids(run)
    index = min(ids) if ids else 1
    sn = run.platform.next_sn()
    enable = await _result(run, run.channel, control_home_position(sn, run.channel, HomePosition(1, 30, index)),
                           f"HomePosition (preset {index})")
    if enable.outcome is not Outcome.PASS:
        return enable
    disable = await _result(run, run.channel, control_home_position(run.platform.next_sn(), run.channel,
                                                                    HomePosition(0, 0, 0)), "HomePosition off")
    if disable.outcome is not Outcome.PASS:
        return disable
    return passed(f"home position on preset {index} and off: Result OK", *enable.evidence, *disable.evidence)


@check(Check.IFRAME)
async def iframe(run: DeviceRun) -> Verdict:
    """§9.3.1, A.2.3 a: IFameCmd Send (the standard's spelling) is accepted with 200; the standard gives
    it no Response."""
    exchange = await run.platform.exchange(run.channel, control_iframe(run.platform.next_sn(), run.channel),
                                           run.options.item_timeout, None)
    if exchange.status is None or exchange.status >= 300:
        return failed("§9.3.1", f"the IFameCmd MESSAGE was answered {exchange.status or 'never'}", *_evidence(exchange))
    return passed("IFameCmd answered 200", *_evidence(exchange))


@check(Check.DEVICE_CONFIG, lambda o: 6 * o.item_timeout + 5)
async def device_config(run: DeviceRun) -> Verdict:
    """§9.3.2, A.2.3 b: DeviceConfig BasicParam (the device name it reported, so nothing changes) is
    answered with a Response whose Result is OK."""
    sn = run.platform.next_sn()
    current = await run.platform.exchange(run.target, query_config_download(sn, run.target, "BasicParam"),
                                          run.options.item_timeout, lambda a: True)
    name = (current.answers[0].doc.text("BasicParam/Name") if current.answers else None) or "gb28181-conformance"
    doc = build_device_config(run.platform.next_sn(), run.target, {"BasicParam": {"Name": name}})
    return await _result(run, run.target, doc, "DeviceConfig BasicParam")

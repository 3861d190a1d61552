"""The checks of ``gb28181-conformance upper`` that the device rows have no equivalent of: the tool is the
upper (police) platform, the platform under test has registered to it as a lower platform, and the rows
(2016 #1-35, 2022 #1-44) reach the standard IPCs behind it through it.

The other 上联 rows run the device checks (`device_items`) with ``DeviceRun.via_platform`` set: queries
and controls go to the first camera of the platform's catalog, the live stream is played through the
platform. One function per check; its docstring is the requirement it checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

from gbgw.conformance.tool.device_items import (
    DeviceRun,
    Verdict,
    _complete,
    _evidence,
    _field,
    _no_answer,
    _pages,
    _repairs,
    check,
    failed,
    passed,
)
from gbgw.conformance.tool.platform import Received, body_text
from gbgw.conformance.tool.report import Outcome
from gbgw.conformance.tool.sheet import PlatformCheck
from gbgw.gb28181.manscdp import query_alarm, query_catalog

_MANDATORY = ("Name", "Manufacturer", "Model", "Owner", "CivilCode", "Address", "Parental", "SafetyWay",
              "RegisterWay", "Secrecy", "Status")
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")
_CIVIL_CODE_LENGTHS = (2, 4, 6, 8)
"""Administrative-division items of a platform catalog are 2-8 digit civil codes (Annex D.1)."""


def forbidden_addresses(run: DeviceRun, body: bytes) -> list[str]:
    """The addresses of ``--forbid-cidr`` networks that a body names."""
    if not run.options.forbid:
        return []
    found = []
    for text in _IPV4.findall(body.decode("gb18030", errors="replace")):
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            continue
        if any(address in network for network in run.options.forbid):
            found.append(text)
    return found


def _item_problem(item: ET.Element, run: DeviceRun) -> str | None:
    gb_id = _field(item, "DeviceID")
    if not gb_id.isdigit() or (len(gb_id) != 20 and len(gb_id) not in _CIVIL_CODE_LENGTHS):
        return f"catalog item ID {gb_id!r} is neither 20 digits nor a civil code [Annex D]"
    if len(gb_id) == 20 and 111 <= int(gb_id[10:13]) <= 199:
        missing = [tag for tag in _MANDATORY if not _field(item, tag)]
        if missing:
            return f"item {gb_id} lacks {', '.join(missing)} [A.2.6 (catalog item)]"
        if gb_id[10:13] in ("131", "132") and gb_id not in run.channels:
            run.channels.append(gb_id)
        elif gb_id[10:13] == "134" and gb_id not in run.alarm_inputs:
            run.alarm_inputs.append(gb_id)
    return None


@check(PlatformCheck.UPPER_CATALOG)
async def upper_catalog(run: DeviceRun) -> Verdict:
    """§9.5.1, A.2.4 / A.2.6: the platform's Catalog answer pages agree on SumNum, each page's Num counts
    its items, SumNum items arrive in all, every item is a 20-digit ID or a civil code, device items
    (types 111-199) carry Annex A's mandatory fields, bodies decode in their charset; and no page names
    an address of the device network (``--forbid-cidr``): a lower platform must not expose it upward."""
    sn = run.platform.next_sn()
    exchange = await run.platform.exchange(run.device_id, query_catalog(sn, run.device_id),
                                           run.options.item_timeout, _complete("DeviceList"))
    problem = _no_answer(exchange, "Catalog") or _pages(exchange.answers, "DeviceList", "Catalog") \
        or _repairs(exchange.answers)
    if problem is not None:
        return problem
    seen: set[str] = set()
    for answer in exchange.answers:
        leaked = forbidden_addresses(run, answer.body)
        if leaked:
            return failed("§4 / Annex D (boundary)", f"the catalog names device-network addresses {sorted(set(leaked))}",
                          body_text(answer.body))
        for item in answer.doc.element.findall("DeviceList/Item"):
            gb_id = _field(item, "DeviceID")
            if gb_id in seen:
                return failed("A.2.6", f"catalog item {gb_id} listed twice", body_text(answer.body))
            seen.add(gb_id)
            wrong = _item_problem(item, run)
            if wrong is not None:
                detail, _, clause = wrong.rpartition(" [")
                return failed(clause.rstrip("]"), detail, body_text(answer.body))
    if not run.channels:
        return failed("§9.5.1", "the catalog lists no camera (type 131/132) to play and control through the "
                      "platform: share one", *_evidence(exchange))
    checked = f"; no address of {', '.join(map(str, run.options.forbid))}" if run.options.forbid else ""
    return passed(f"{len(seen)} items in {len(exchange.answers)} pages, cameras {run.channels}{checked}",
                  *_evidence(exchange))


async def _arrived(run: DeviceRun, find: Callable[[], list[Received]], question: str) -> list[Received]:
    """Wait up to ``action_wait`` for ``find()`` (re-read as things arrive) to find something; the
    operator is asked to trigger it when attended. Without ``expect_alarm`` only what already came."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (run.options.action_wait if run.options.expect_alarm else 0.0)
    if not run.options.unattended and run.options.expect_alarm:
        print(f"\n{question}", flush=True)
    while True:
        found = find()
        remaining = deadline - loop.time()
        if found or remaining <= 0:
            return found
        run.platform.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.platform.changed.wait(), min(remaining, 0.5))


def _alarms(run: DeviceRun, method: str | None = None) -> list[Received]:
    return [n for n in run.platform.notifies
            if n.doc.cmd_type == "Alarm" and (method is None or n.method == method)]


def _alarm_problem(received: Received) -> str | None:
    doc = received.doc
    if doc.root != "Notify" or doc.sn is None:
        return "the alarm is not a Notify with an SN"
    missing = [tag for tag in ("AlarmPriority", "AlarmMethod", "AlarmTime") if not doc.text(tag)]
    if missing:
        return f"the alarm lacks {', '.join(missing)}"
    if not (len(doc.device_id or "") == 20 and (doc.device_id or "").isdigit()):
        return f"the alarm's DeviceID {doc.device_id!r} is not 20 digits"
    return None


def _no_alarm(run: DeviceRun, what: str) -> str:
    if not run.options.expect_alarm:
        return f"{what}: run with --expect-alarm and trigger one on the camera"
    return f"{what} in {run.options.action_wait:g} s: trigger one on the camera and run this row again"


@check(PlatformCheck.ALARM, lambda o: o.action_wait + 5)
async def alarm(run: DeviceRun) -> Verdict:
    """§9.4, A.2.5 b: an alarm of the camera (device mode) or of a camera behind the platform (upper
    mode) arrives as a Notify Alarm with its SN, a 20-digit DeviceID, AlarmPriority, AlarmMethod and
    AlarmTime. Only a camera can raise an alarm: the row waits ``--action-wait`` for one (device mode:
    with ``--expect-alarm``) and is manual when none comes."""
    found = await _arrived(run, lambda: _alarms(run), "Trigger an alarm on the camera (or one behind the platform).")
    if not found:
        return Verdict(Outcome.MANUAL, _no_alarm(run, "no alarm arrived"))
    problem = _alarm_problem(found[0])
    if problem is not None:
        return failed("A.2.5 b", problem, body_text(found[0].body))
    return passed(f"alarm of {found[0].doc.device_id} received", body_text(found[0].body))


async def _subscribe(run: DeviceRun, cmd_type: str) -> tuple[Verdict | None, str, list[str]]:
    """SUBSCRIBE to the platform's ``cmd_type`` events; a failure verdict, or None and the Call-ID."""
    platform = run.platform
    doc = (query_catalog(platform.next_sn(), run.device_id) if cmd_type == "Catalog"
           else query_alarm(platform.next_sn(), run.device_id, start_priority=1, end_priority=4, method="1/2/3/4/5"))
    request, response = await platform.subscribe(run.device_id, doc, "Catalog" if cmd_type == "Catalog" else "presence",
                                                 3600, run.options.item_timeout)
    evidence = [f"sent:\n{body_text(request.serialize())}"]
    if response is not None:
        evidence.append(f"received:\n{body_text(response.serialize())}")
    if response is None or not 200 <= response.status < 300:
        status = response.status if response is not None else "never"
        return failed("§9.11.1", f"the {cmd_type} SUBSCRIBE was answered {status}", *evidence), "", evidence
    if response.expires is None and response.get("Expires") is None:
        return failed("RFC 6665 §4.1.2.1", f"the 2xx to the {cmd_type} SUBSCRIBE has no Expires", *evidence), \
            "", evidence
    call_id = request.call_id or ""
    run.subscriptions[cmd_type] = call_id
    return None, call_id, evidence


@check(PlatformCheck.EVENT_SUBSCRIBE)
async def event_subscribe(run: DeviceRun) -> Verdict:
    """§9.11.1, A.2.4 e: an Alarm SUBSCRIBE (priorities 1-4, every method) to the device or platform is
    accepted with a 2xx carrying Expires; the subscription stays for the event notification row."""
    problem, _, evidence = await _subscribe(run, "Alarm")
    return problem or passed("Alarm subscription accepted", *evidence)


@check(PlatformCheck.EVENT_UNSUBSCRIBE)
async def event_unsubscribe(run: DeviceRun) -> Verdict:
    """§9.11.1, RFC 6665 §4.1.2.3: the Alarm subscription is ended with a SUBSCRIBE Expires: 0 in its
    dialog, answered 2xx (the tool subscribes first when the subscription row did not run)."""
    call_id = run.subscriptions.get("Alarm", "")
    evidence: list[str] = []
    if not call_id:
        problem, call_id, evidence = await _subscribe(run, "Alarm")
        if problem is not None:
            return Verdict(Outcome.SKIP, f"the Alarm subscription failed: {problem.detail}", problem.evidence)
    doc = query_alarm(run.platform.next_sn(), run.device_id, start_priority=1, end_priority=4, method="1/2/3/4/5")
    response = await run.platform.unsubscribe(call_id, doc, "presence", run.options.item_timeout)
    run.subscriptions.pop("Alarm", None)
    if response is None or not 200 <= response.status < 300:
        return failed("RFC 6665 §4.1.2.3 / §9.11.1", "the Alarm unsubscribe (Expires: 0) was answered "
                      f"{response.status if response is not None else 'never'}", *evidence)
    return passed("Alarm subscription ended with Expires: 0", *evidence,
                  f"received:\n{body_text(response.serialize())}")


@check(PlatformCheck.EVENT_NOTIFY, lambda o: o.action_wait + 15)
async def event_notify(run: DeviceRun) -> Verdict:
    """§9.11.1: once subscribed, an alarm of the camera (or of one behind the platform) arrives as a
    NOTIFY in the subscription's dialog, a Notify Alarm with its mandatory fields. Waits
    ``--action-wait`` for one (device mode: with ``--expect-alarm``)."""
    call_id = run.subscriptions.get("Alarm", "")
    if not call_id:
        problem, call_id, _ = await _subscribe(run, "Alarm")
        if problem is not None:
            return Verdict(Outcome.SKIP, f"the Alarm subscription failed: {problem.detail}")
    found = await _arrived(run, lambda: [n for n in _alarms(run, "NOTIFY") if n.call_id == call_id],
                           "Trigger an alarm on the camera (or one behind the platform).")
    if not found:
        return Verdict(Outcome.MANUAL, _no_alarm(run, "no alarm NOTIFY arrived in the subscription"))
    wrong = _alarm_problem(found[0])
    if wrong is not None:
        return failed("A.2.5 b", wrong, body_text(found[0].body))
    return passed("alarm NOTIFY in the subscription's dialog", body_text(found[0].body))


def _catalog_notifies(run: DeviceRun, call_id: str) -> list[Received]:
    return [n for n in run.platform.notifies
            if n.doc.cmd_type == "Catalog" and n.method == "NOTIFY" and n.call_id == call_id]


@check(PlatformCheck.CATALOG_SUBSCRIBE, lambda o: 3 * o.item_timeout + 10)
async def catalog_subscribe(run: DeviceRun) -> Verdict:
    """§9.11.2, A.2.4 d: a Catalog SUBSCRIBE to the platform is accepted with a 2xx carrying Expires; a
    NOTIFY that follows is a Notify Catalog with SumNum and a DeviceList whose items carry an Event; the
    subscription is ended with Expires: 0 and that is accepted too (2016 #35 covers both; in the 2022
    sheet the notifications are row #43, which runs before this one ends it)."""
    problem, call_id, evidence = await _subscribe(run, "Catalog")
    if problem is not None:
        return problem
    await asyncio.sleep(min(2.0, run.options.item_timeout))
    for notify in _catalog_notifies(run, call_id):
        wrong = _catalog_notify_problem(notify)
        if wrong is not None:
            return failed("A.2.5 (catalog notify)", wrong, body_text(notify.body))
    response = await run.platform.unsubscribe(call_id, query_catalog(run.platform.next_sn(), run.device_id),
                                              "Catalog", run.options.item_timeout)
    run.subscriptions.pop("Catalog", None)
    if response is None or not 200 <= response.status < 300:
        return failed("RFC 6665 §4.1.2.3 / §9.11.2", f"the unsubscribe (Expires: 0) was answered "
                      f"{response.status if response is not None else 'never'}", *evidence)
    notified = len(_catalog_notifies(run, call_id))
    return passed(f"subscribed, {notified} NOTIFYs, unsubscribed", *evidence,
                  f"received:\n{body_text(response.serialize())}")


def _catalog_notify_problem(notify: Received) -> str | None:
    doc = notify.doc
    if doc.root != "Notify" or doc.text("SumNum") is None:
        return "the catalog NOTIFY is not a Notify with SumNum"
    items = doc.element.findall("DeviceList/Item")
    without = [_field(i, "DeviceID") for i in items if not _field(i, "Event")]
    if without:
        return f"catalog NOTIFY items without Event: {without}"
    return None


@check(PlatformCheck.CATALOG_NOTIFY, lambda o: o.action_wait + 3 * o.item_timeout + 10)
async def catalog_notify(run: DeviceRun) -> Verdict:
    """§9.11.2, A.2.5: after a Catalog subscription, a change of the platform's catalog (a camera going
    on or off line, added or removed) arrives as a NOTIFY in the subscription's dialog whose items each
    carry an Event (ON, OFF, VLOST, DEFECT, ADD, DEL, UPDATE). Only a change triggers one: the row waits
    ``--action-wait`` and is manual when none comes."""
    call_id = run.subscriptions.get("Catalog", "")
    if not call_id:
        problem, call_id, _ = await _subscribe(run, "Catalog")
        if problem is not None:
            return Verdict(Outcome.SKIP, f"the Catalog subscription failed: {problem.detail}")
    found = await _arrived(run, lambda: _catalog_notifies(run, call_id),
                           "Change the catalog of the platform under test (take a camera off line).")
    if not found:
        return Verdict(Outcome.MANUAL, f"no catalog NOTIFY in {run.options.action_wait:g} s: change the "
                       "platform's catalog while subscribed and run this row again")
    for notify in found:
        bad = _catalog_notify_problem(notify)
        if bad is not None:
            return failed("A.2.5 (catalog notify)", bad, body_text(notify.body))
    return passed(f"{len(found)} catalog NOTIFYs with Event", body_text(found[0].body))

"""Queries and controls from an upper platform: answered about the gateway itself, or relayed to the
device that owns the channel and its answer relayed back (GB/T 28181-2016 9.3.2 and 9.5.2).

Relaying is back-to-back: the device gets a fresh MESSAGE under the gateway's own SN (so queries of two
uppers, or two queries of one upper, never share a number on the device side) and the channel's
device-side ID; the upper gets fresh Responses under its own SN and the channel's ID as it knows it.
Bodies are copied element by element and scrubbed on the way, in both directions: device-side network
settings and credentials (IPAddress, Port, Password, SIPServerIP...) and any value naming an address are
dropped, IDs are mapped (an ID the other side may not know is dropped), name overrides applied. A value
that looks like an IPv4 address is dropped even when it is something else (a firmware version written
as four bare numbers): losing it is the safe mistake.

What the upper sees, by case (the first five are answers to its MESSAGE itself, as WVP and the
platforms certified against it answer, so its log names the reason at once):

- DeviceID is the gateway's own ID: DeviceInfo (name, manufacturer, model, firmware = package version,
  Channel = channels shared with this upper), DeviceStatus (online, OK, DeviceTime) and ConfigDownload
  BasicParam (its registration and keepalive settings toward this upper) describe the gateway;
  RecordInfo and PresetQuery get empty lists (the gateway records nothing and has no presets). Control of
  the gateway itself: 403.
- A body without SN: 400 (its answer could not be matched); a PTZCmd that fails its checksum: 400.
- An ID that is unknown, unshared or not reachable under the mapping: 404, the same for all three so
  that the upper learns nothing about channels it is not given.
- DeviceControl/DeviceConfig on a shared channel whose rules lack ``control: true``: 403.
- The owning device is offline: 480.
- Otherwise 200 at once, then the device is asked. Its Response(s) go up with the upper's SN; a
  RecordInfo answer is gathered over all its MESSAGEs (up to SumNum) and split again into MESSAGEs under
  ``catalog_max_bytes`` (whole SIP message, headers included), each with the same SumNum and its own Num.
  When the device refuses the MESSAGE or does not answer within ``sip.query_timeout`` (per page), the
  upper gets a Response with Result ERROR (RecordInfo and PresetQuery: an empty list plus Result ERROR),
  so it is not left waiting for its own timer. A RecordInfo answer cut short is relayed as far as it
  came, with SumNum = the items relayed (consistent, so the upper does not wait for the rest).
- Controls the standard answers (RecordCmd, GuardCmd, AlarmCmd, HomePosition, DeviceConfig) get the
  device's Result relayed (ERROR when it gives none in time); PTZ, TeleBoot, IFameCmd and DragZoom have
  no answer in the standard, so none is sent.

Every request is logged and audited (``query``/``control`` with upstream, cmd, channel, result; controls
with their parameters, e.g. the PTZCmd hex) and counted in ``gb_cascade_requests``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import ipaddress
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import Any

import structlog

from gbgw.gb28181 import manscdp
from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.cascade.catalog import shared_count
from gbgw.gb28181.cascade.link import UpstreamLink
from gbgw.gb28181.config import GatewayConfig
from gbgw.gb28181.devices.requests import AccessError, DeviceRequests
from gbgw.gb28181.manscdp import ManscdpDocument, ManscdpError, PtzCmd
from gbgw.gb28181.media.stages import Stage
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry
from gbgw.sip.errors import SipError
from gbgw.sip.transaction import ServerTransaction

log = structlog.get_logger("gb28181.cascade.queries")

QUERIES = ("DeviceInfo", "DeviceStatus", "RecordInfo", "PresetQuery", "ConfigDownload")
CONTROLS = ("DeviceControl", "DeviceConfig")
PRODUCT = "gb28181-gateway"
MODEL = "GB/T 28181 access gateway"

_HEADER = frozenset({"CmdType", "SN", "DeviceID"})
# The list a multi-item answer carries its items in.
_LISTS = {"RecordInfo": "RecordList", "PresetQuery": "PresetList"}
# DeviceControl commands the standard answers with a Result (9.3.1); the others get none.
_ANSWERED_CONTROLS = ("RecordCmd", "GuardCmd", "AlarmCmd", "HomePosition")
# Network settings and credentials of one side, meaningless or dangerous on the other: Hikvision's
# ConfigDownload answer, for one, carries its SIP server's address and its password.
_SIDE_TAGS = frozenset({
    "IPAddress", "Port", "Password", "SIPServerID", "SIPServerIP", "SIPServerPort", "DomainName",
    "LocalIP", "LocalPort", "Mask", "Gateway", "DNS", "MAC", "NTPServer",
})
_ID_TAGS = frozenset({"DeviceID", "RecorderID", "ParentID", "BusinessGroupID"})
_NAME_TAGS = frozenset({"Name", "DeviceName"})
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
_IPV6_CANDIDATE = re.compile(r"[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f.]*")
_UNSPECIFIED = frozenset({"", "0.0.0.0", "::"})


@dataclass(slots=True, frozen=True)
class _Target:
    """A channel the upper named, resolved on the device side."""

    upper_id: str
    local_id: str
    device_id: str
    device_host: str
    name: str
    """The channel's name as this upper is shown it."""


class UpstreamQueries:
    """Serves one upper's Query (DeviceInfo, DeviceStatus, RecordInfo, PresetQuery, ConfigDownload) and
    Control (DeviceControl, DeviceConfig) MESSAGEs."""

    def __init__(self, link: UpstreamLink, config: GatewayConfig, registry: DeviceRegistry,
                 requests: DeviceRequests, audit: AuditLog, metrics: GatewayMetrics, tasks: BackgroundTasks) -> None:
        self.link = link
        self.requests = requests
        self.registry = registry
        self.audit = audit
        self.metrics = metrics
        self.tasks = tasks
        self.gateway_id = config.sip.id
        self.sip_host = config.sip.listen.host
        self._tasks: set[asyncio.Task[Any]] = set()
        for cmd in QUERIES:
            link.handle_command("Query", cmd, self._on_query)
        for cmd in CONTROLS:
            link.handle_command("Control", cmd, self._on_control)

    def close(self) -> None:
        """Abandon relays in flight: nothing is sent upward after the link stops."""
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.tasks.spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the upper's requests ------------------------------------------------------------------------

    def _on_query(self, txn: ServerTransaction, doc: ManscdpDocument) -> None:
        sn = self._require_sn(txn, doc, "query")
        if sn is None:
            return
        upper_id = _target_id(txn, doc)
        if upper_id == self.gateway_id:
            self._reply(txn, 200)
            self._spawn(self._answer_self(doc, sn))
            return
        target = self._locate(txn, doc, upper_id, "query")
        if target is None:
            return
        self._reply(txn, 200)
        self._spawn(self._relay_query(doc, sn, target))

    def _on_control(self, txn: ServerTransaction, doc: ManscdpDocument) -> None:
        params = _parameters(doc)
        sn = self._require_sn(txn, doc, "control", params)
        if sn is None:
            return
        upper_id = _target_id(txn, doc)
        if upper_id == self.gateway_id:
            self._refuse(txn, doc, "control", upper_id, "", 403, "The gateway takes no control from upstream",
                         "denied", params)
            return
        target = self._locate(txn, doc, upper_id, "control", params)
        if target is None:
            return
        ptz = doc.text("PTZCmd")
        if ptz is not None:
            try:
                PtzCmd.parse(ptz)
            except ManscdpError as exc:
                self._refuse(txn, doc, "control", upper_id, target.local_id, 400, exc.reason[:100], "invalid",
                             params)
                return
        self._reply(txn, 200)
        self._spawn(self._relay_control(doc, sn, target, params))

    def _require_sn(self, txn: ServerTransaction, doc: ManscdpDocument, action: str,
            params: dict[str, str] | None = None) -> int | None:
        if doc.sn is None:
            self._refuse(txn, doc, action, _target_id(txn, doc), "", 400, "No SN", "invalid", params)
        return doc.sn

    def _locate(self, txn: ServerTransaction, doc: ManscdpDocument, upper_id: str, action: str,
                params: dict[str, str] | None = None) -> _Target | None:
        """The channel ``upper_id`` names and its device, or None after answering why there is none."""
        policy = self.link.policy
        local = policy.to_local(upper_id) if upper_id else ""
        if not local or not policy.shared(local):
            self._refuse(txn, doc, action, upper_id, local, 404, "No such channel", "not-found", params)
            return None
        if action == "control" and not policy.control_allowed(local):
            self._refuse(txn, doc, action, upper_id, local, 403, "Control of this channel is not allowed",
                         "denied", params)
            return None
        channel = self.registry.channel(local)
        # A device shared by its own ID (an IPC whose catalog does not list itself) is its own target.
        owner = channel.device_id if channel is not None else local
        device = self.registry.get(owner)
        if device is None:
            self._refuse(txn, doc, action, upper_id, local, 404, "No such channel", "not-found", params)
            return None
        if not device.online:
            self._refuse(txn, doc, action, upper_id, local, 480, "Device offline", "offline", params)
            return None
        name = policy.name_for(local, channel.name if channel is not None else device.name)
        return _Target(upper_id, local, device.id, device.host, name)

    def _reply(self, txn: ServerTransaction, status: int, reason: str | None = None) -> None:
        transport = self.link.transport
        if transport is not None:
            transport.reply(txn, status, reason)

    def _refuse(self, txn: ServerTransaction, doc: ManscdpDocument, action: str, upper_id: str, local_id: str,
                status: int, reason: str, result: str, params: dict[str, str] | None) -> None:
        self._reply(txn, status, reason)
        self._outcome(action, doc, result, upper_id=upper_id, local_id=local_id, reason=reason, status=status,
                      params=params)

    def _outcome(self, action: str, doc: ManscdpDocument, result: str, *, upper_id: str, local_id: str,
                 device_id: str = "", reason: str | None = None, status: int | None = None,
                 params: dict[str, str] | None = None, **extra: Any) -> None:
        """Log, audit and count one request's end."""
        fields: dict[str, Any] = {"upstream": self.link.name, "cmd": doc.cmd_type, "channel": local_id or upper_id}
        if upper_id != local_id:
            fields["upper_channel"] = upper_id
        if device_id:
            fields["device"] = device_id
        if reason:
            fields["reason"] = reason
        if status is not None:
            fields["status"] = status
        if params:
            fields["params"] = params
        fields.update(extra)
        self.audit.record(action, result, **fields)
        self.metrics.cascade.labels(self.link.name, doc.cmd_type, result).inc()
        level = log.info if result in ("ok", "denied", "not-found") else log.warning
        level(f"upstream {action}", result=result, sn=doc.sn, **fields)

    # -- about the gateway itself --------------------------------------------------------------------

    async def _answer_self(self, doc: ManscdpDocument, sn: int) -> None:
        cmd = doc.cmd_type
        gid = self.gateway_id
        answer: ManscdpDocument
        if cmd == "DeviceInfo":
            answer = manscdp.response_device_info(sn, gid, device_name=PRODUCT, manufacturer=PRODUCT, model=MODEL,
                                                  firmware=package_version(), channel=shared_count(self.registry, self.link.policy))
        elif cmd == "DeviceStatus":
            answer = manscdp.response_device_status(sn, gid, online=True, status_ok=True, device_time=datetime.now())
        elif cmd == "ConfigDownload":
            wanted = (doc.text("ConfigType") or "BasicParam").split("/")
            cfg = self.link.config
            basic: dict[str, manscdp.Field] = {
                "Name": PRODUCT,
                "Expiration": cfg.register_expires,
                "HeartBeatInterval": cfg.keepalive_interval,
                "HeartBeatCount": cfg.keepalive_misses,
            }
            answer = manscdp.build("Response", cmd, sn, gid,
                                   [("Result", "OK"), ("BasicParam", basic if "BasicParam" in wanted else None)])
        else:
            answer = _empty_list(doc, sn, gid, PRODUCT, ok=True)
        await self._send_up([answer], doc, "query", gid, gid, "")

    # -- relaying ------------------------------------------------------------------------------------

    async def _relay_query(self, doc: ManscdpDocument, sn: int, target: _Target) -> None:
        started = time.monotonic()
        cmd = doc.cmd_type
        list_tag = _LISTS.get(cmd)
        down = self._downward(doc, target)
        try:
            pages = await self.requests.query_pages(target.device_id, down, _complete_when(list_tag))
        except AccessError as exc:
            await self._send_up([_failure(doc, sn, target)], doc, "query", target.upper_id, target.local_id,
                                target.device_id, _result_of(exc), reason=exc.detail)
            return
        if list_tag is None:
            answers = [self._upward(pages[0], sn, target)]
            result = "ok"
            extra: dict[str, Any] = {}
        else:
            answers, declared, relayed = self._upward_list(pages, sn, target, list_tag)
            result = "ok" if declared is None or relayed >= declared else "partial"
            extra = {"items": relayed, "declared": declared, "pages": len(answers)}
        await self._send_up(answers, doc, "query", target.upper_id, target.local_id, target.device_id, result,
                            ms=round((time.monotonic() - started) * 1000), **extra)

    async def _relay_control(self, doc: ManscdpDocument, sn: int, target: _Target, params: dict[str, str]) -> None:
        cmd = doc.cmd_type
        answered = cmd == "DeviceConfig" or any(doc.element.find(tag) is not None for tag in _ANSWERED_CONTROLS)
        down = self._downward(doc, target)
        ids = (target.upper_id, target.local_id, target.device_id)
        try:
            if not answered:
                await self.requests.send_manscdp(target.device_id, down)
                self._outcome("control", doc, "ok", upper_id=ids[0], local_id=ids[1], device_id=ids[2],
                              params=params)
                return
            pages = await self.requests.query_pages(target.device_id, down, _first_page)
        except AccessError as exc:
            result = _result_of(exc)
            if not answered:
                self._outcome("control", doc, result, upper_id=ids[0], local_id=ids[1], device_id=ids[2],
                              reason=exc.detail, params=params)
                return
            await self._send_up([manscdp.response_result(cmd, sn, target.upper_id, ok=False)], doc, "control",
                                *ids, result, reason=exc.detail, params=params)
            return
        ok = (pages[0].text("Result") or "").upper() == "OK"
        await self._send_up([manscdp.response_result(cmd, sn, target.upper_id, ok=ok)], doc, "control", *ids,
                            "ok" if ok else "error", params=params)

    async def _send_up(self, answers: list[ManscdpDocument], doc: ManscdpDocument, action: str, upper_id: str,
                       local_id: str, device_id: str, result: str = "ok", **fields: Any) -> None:
        sent = await self.link.send_pages(answers)
        if sent < len(answers):
            fields["delivered"] = f"{sent}/{len(answers)}"
            result = "undelivered"
        self._outcome(action, doc, result, upper_id=upper_id, local_id=local_id, device_id=device_id, **fields)

    def _downward(self, doc: ManscdpDocument, target: _Target) -> ManscdpDocument:
        """The upper's command under our SN and the device-side channel ID, fit for the device side."""
        down = doc.with_header(sn=self.requests.next_sn(), device_id=target.local_id)
        policy = self.link.policy

        def local(upper_id: str) -> str:
            found = policy.to_local(upper_id)
            return found if found and policy.shared(found) else ""

        cfg = self.link.config
        scrub(down.element, local, None, _hosts(cfg.address.host, cfg.listen.host, cfg.media_ip))
        return down

    def _upward_scrub(self, target: _Target) -> Callable[[ET.Element], None]:
        policy = self.link.policy

        def upper(local_id: str) -> str:
            return policy.to_upper(local_id) if local_id and policy.shared(local_id) else ""

        def rename(name: str) -> str:
            return policy.name_for(target.local_id, name)

        hosts = _hosts(target.device_host, self.sip_host)
        return functools.partial(scrub, map_id=upper, rename=rename, hosts=hosts)

    def _upward(self, page: ManscdpDocument, sn: int, target: _Target) -> ManscdpDocument:
        """A single-message answer rebuilt for the upper: our header, the device's content scrubbed."""
        body = ET.Element(page.root)
        body.extend(copy.deepcopy(child) for child in page.element if child.tag not in _HEADER)
        self._upward_scrub(target)(body)
        for status in (*body.iter("Alarmstatus"), *body.iter("AlarmStatus")):
            _recount(status)
        return manscdp.build("Response", page.cmd_type, sn, target.upper_id, [(child.tag, child) for child in body])

    def _upward_list(self, pages: list[ManscdpDocument], sn: int, target: _Target,
                     list_tag: str) -> tuple[list[ManscdpDocument], int | None, int]:
        """A list answer gathered from all the device's pages, re-split for the upper. Returns the answers,
        the SumNum the device declared and the number of items relayed."""
        scrubbed = self._upward_scrub(target)
        head = ET.Element("Head")
        head.extend(copy.deepcopy(child) for child in pages[0].element
                    if child.tag not in _HEADER and child.tag not in ("SumNum", list_tag))
        scrubbed(head)
        if list_tag == "RecordList" and head.find("Name") is None:
            # Mandatory in a RecordInfo answer (A.2.6 h), and some devices leave it out.
            _set_child(head, "Name", target.name)
        items = ET.Element(list_tag)
        for page in pages:
            container = page.element.find(list_tag)
            if container is None:
                continue
            for item in container:
                if item.tag != "Item":
                    continue
                copied = copy.deepcopy(item)
                if page.cmd_type == "RecordInfo":
                    # Records are of the channel queried, whatever ID the device wrote (NVRs put their own).
                    _set_child(copied, "DeviceID", target.local_id)
                items.append(copied)
        scrubbed(items)
        declared = _declared(pages)
        fields = list(head)
        if list_tag == "RecordList":
            return self._pages(pages[0].cmd_type, sn, target.upper_id, fields, list_tag, list(items)), declared, len(items)
        container = ET.Element(list_tag, Num=str(len(items)))
        container.extend(items)
        answer = manscdp.build("Response", pages[0].cmd_type, sn, target.upper_id,
                               [*((child.tag, child) for child in fields), (list_tag, container)])
        return [answer], declared, len(items)

    def _pages(self, cmd: str, sn: int, upper_id: str, head: list[ET.Element], list_tag: str,
               items: list[ET.Element]) -> list[ManscdpDocument]:
        """Items split over as few Responses as fit ``catalog_max_bytes`` each (whole MESSAGE), every one
        stating the full SumNum and its own Num; an item too large alone still goes, alone."""
        budget = self.link.body_budget()
        total = len(items)

        def page(members: list[ET.Element]) -> ManscdpDocument:
            container = ET.Element(list_tag, Num=str(len(members)))
            container.extend(members)
            fields = [(child.tag, child) for child in head]
            return manscdp.build("Response", cmd, sn, upper_id, [*fields, ("SumNum", total), (list_tag, container)])

        def size(members: list[ET.Element]) -> int:
            return len(self.link.encode(page(members)))

        # Every item sits at the same depth, so a page's size is its first item's page plus what each
        # further item adds. Two small encodings per item keep the split linear for any limit: 1,000
        # records take 0.1 s under 1,300 bytes or 60 KB alike, where trying every candidate page took
        # 1 s under 60 KB.
        alone = [size([item]) for item in items]
        added = [size([item, item]) - single for item, single in zip(items, alone, strict=True)]
        pages: list[ManscdpDocument] = []
        start = 0
        while True:
            end = min(start + 1, total)
            used = alone[start] if total else 0
            while end < total and used + added[end] <= budget:
                used += added[end]
                end += 1
            # Num gaining a digit can add a byte or two the estimate did not see.
            while end - start > 1 and size(items[start:end]) > budget:
                end -= 1
            pages.append(page(items[start:end]))
            start = end
            if start >= total:
                return pages


# -- bodies ------------------------------------------------------------------------------------------------


def scrub(element: ET.Element, map_id: Callable[[str], str], rename: Callable[[str], str] | None,
          hosts: tuple[str, ...]) -> None:
    """Make a copied body fit to cross, in place (the root's own CmdType/SN/DeviceID are left alone):
    drop network settings and credentials and any value naming an address, map IDs with ``map_id`` (an
    empty result drops the element), and pass names through ``rename``."""
    for parent in list(element.iter()):
        for child in list(parent):
            tag = child.tag
            if parent is element and tag in _HEADER:
                continue
            if tag in _SIDE_TAGS:
                parent.remove(child)
                continue
            if len(child):
                continue
            text = (child.text or "").strip()
            if tag in _ID_TAGS:
                mapped = map_id(text) if text else ""
                if mapped:
                    child.text = mapped
                else:
                    parent.remove(child)
            elif _names_address(text, hosts):
                parent.remove(child)
            elif rename is not None and tag in _NAME_TAGS:
                child.text = rename(text)


def _names_address(text: str, hosts: tuple[str, ...]) -> bool:
    if not text:
        return False
    if _IPV4.search(text) is not None or any(host in text for host in hosts):
        return True
    for candidate in _IPV6_CANDIDATE.findall(text):
        # Times ("10:23:02") look alike; only what parses as an address counts.
        with contextlib.suppress(ValueError):
            ipaddress.IPv6Address(candidate)
            return True
    return False


def _hosts(*hosts: str) -> tuple[str, ...]:
    return tuple(host for host in hosts if host not in _UNSPECIFIED)


def _recount(container: ET.Element) -> None:
    """Drop alarm-status items whose DeviceID did not survive the mapping and restate their number."""
    for item in list(container):
        if item.tag == "Item" and item.find("DeviceID") is None:
            container.remove(item)
    count = str(sum(1 for item in container if item.tag == "Item"))
    container.set("num" if "num" in container.attrib else "Num", count)


def _set_child(element: ET.Element, tag: str, text: str) -> None:
    child = element.find(tag)
    if child is None:
        child = ET.Element(tag)
        element.insert(0, child)
    child.text = text


def _declared(pages: list[ManscdpDocument]) -> int | None:
    """The SumNum a multi-message answer announces (the first readable one), None when there is none."""
    for page in pages:
        text = page.text("SumNum")
        if text and text.isascii() and text.isdigit() and len(text) <= 9:
            return int(text)
    return None


def _first_page(pages: list[ManscdpDocument]) -> bool:
    return True


def _complete_when(list_tag: str | None) -> Callable[[list[ManscdpDocument]], bool]:
    """When a device's answer is complete: at once, or once its pages hold SumNum items."""
    if list_tag is None:
        return _first_page

    def complete(pages: list[ManscdpDocument]) -> bool:
        declared = _declared(pages)
        if declared is None:
            return True
        found = 0
        for page in pages:
            container = page.element.find(list_tag)
            if container is not None:
                found += sum(1 for item in container if item.tag == "Item")
        return found >= declared

    return complete


def _empty_list(doc: ManscdpDocument, sn: int, device_id: str, name: str, *, ok: bool) -> ManscdpDocument:
    """A RecordInfo or PresetQuery answer listing nothing; with Result ERROR when the device failed."""
    result = None if ok else "ERROR"
    if doc.cmd_type == "RecordInfo":
        fields: list[tuple[str, manscdp.Field]] = [
            ("Name", name), ("Result", result), ("SumNum", 0), ("RecordList", ET.Element("RecordList", Num="0")),
        ]
    else:
        fields = [("Result", result), ("PresetList", ET.Element("PresetList", Num="0"))]
    return manscdp.build("Response", doc.cmd_type, sn, device_id, fields)


def _failure(doc: ManscdpDocument, sn: int, target: _Target) -> ManscdpDocument:
    """What the upper is told when the device refused or did not answer."""
    if doc.cmd_type in _LISTS:
        return _empty_list(doc, sn, target.upper_id, target.name, ok=False)
    return manscdp.response_result(doc.cmd_type, sn, target.upper_id, ok=False)


_RESULTS: dict[Stage, str] = {Stage.NO_ANSWER: "no-answer", Stage.DEVICE_OFFLINE: "offline"}
"""The cascade request result (audit and ``gb_cascade_requests``) of a device-side stage; others refused."""


def _result_of(error: AccessError) -> str:
    """The audit result of a relay the device side failed (went offline meanwhile, refused, no answer)."""
    return _RESULTS.get(error.stage, "refused")


def _target_id(txn: ServerTransaction, doc: ManscdpDocument) -> str:
    if doc.device_id:
        return doc.device_id
    with contextlib.suppress(SipError):
        return txn.request.request_uri.user or ""
    return ""


def _parameters(doc: ManscdpDocument) -> dict[str, str]:
    """A control's parameters for the audit log, by path ("PTZCmd", "Info/ControlPriority"); secrets and
    network settings left out."""
    params: dict[str, str] = {}

    def walk(element: ET.Element, prefix: str) -> None:
        for child in element:
            if (not prefix and child.tag in _HEADER) or child.tag in _SIDE_TAGS or len(params) >= 24:
                continue
            path = f"{prefix}{child.tag}"
            if len(child):
                walk(child, f"{path}/")
            else:
                params[path] = (child.text or "").strip()[:64]

    walk(doc.element, "")
    return params


@functools.cache
def package_version() -> str:
    try:
        return metadata.version(PRODUCT)
    except metadata.PackageNotFoundError:
        return "unknown"

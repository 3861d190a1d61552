"""The shared catalog toward one upper platform: its Catalog query answered, and the changes notified to
its catalog subscription.

What the upper sees (GB/T 28181-2016 §9.5.3 and Annex O):

- the gateway itself first, as a system item under ``sip.id`` (its name can be set in ``channel_names``);
- every registry channel a ``share`` rule allows, except organisation nodes;
- the organisation parents of those channels, whether or not a rule names them: civil-code nodes (2 to 8
  digits) for their ``CivilCode`` and any civil code they name as parent, business groups (type 215) and
  virtual organisations (type 216) reached through ``ParentID`` (a "/"-separated list) and
  ``BusinessGroupID``, up their chains. An organisation with no shared channel under it is not shown.

Devices (NVRs, IPCs, lower platforms) are not exposed: a ``ParentID`` naming one becomes the gateway's ID,
a parent organisation the registry does not hold is dropped, and a channel left without a parent gets the
gateway's ID. IDs go through ``policy.to_upper`` (references too; civil codes are administrative codes
and pass unchanged), names through ``policy.name_for``. Items are built from a whitelist of fields:
IPAddress, Port, Password and any ``raw`` field not listed here never leave, and IPv4 literals (with a
scheme, credentials, port or path around them) are cut out of every free-text field, because devices
write their own address into names and installation addresses.

Status is ON only while the channel says ON and its device is online.

Paging: every body stays within ``catalog_max_bytes`` (:func:`manscdp.catalog_pages_within`), on UDP and
TCP alike, as the README documents the key; an upper reached over TCP that takes larger bodies is given
a larger ``catalog_max_bytes`` (up to 60,000), which cuts the number of round trips. Pages go one after
the other, each after the previous one's 200 (Annex M).

A query naming the gateway (or an ID the catalog does not hold) gets the whole catalog; one naming an
item of it gets that item and what the standard puts under it (§9.5.3.1.1): a civil code its area, a
business group its virtual organisations, a virtual organisation or channel everything below it.

Subscription (Annex P): while the upper holds a Catalog subscription, changes of shared channels become
NOTIFYs: ADD and UPDATE with the whole item, DEL, ON and OFF (also VLOST and DEFECT as devices report
them) with the ID alone. A device going offline or online turns its channels OFF or ON. Changes are
coalesced for ``notify_window`` seconds (one entry per channel, the latest state wins) and split like
answers. A new subscription is told at once which shared channels are off (P.3 c), since a subscriber
takes everything as online. Without a subscription nothing is queued or sent: the next Catalog query
tells the truth. Changes of organisation nodes themselves are not notified; the organisations an added
channel hangs under are sent with it (as ADD) unless the upper has already been given them.

A reload that changes the share rules or mappings (:meth:`CatalogShare.policy_changed`) is notified the
same way: DEL for a channel no longer shared (under the ID the upper knew), ADD for a newly shared one,
DEL and ADD for one whose upper ID changed, UPDATE for one renamed.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from gbgw.gb28181 import manscdp
from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.boundary.policy import SharePolicy
from gbgw.gb28181.cascade.link import UpperSubscription, UpstreamError, UpstreamLink
from gbgw.gb28181.config import GatewayConfig
from gbgw.gb28181.manscdp import CatalogItem, ManscdpDocument
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry, StatusReason
from gbgw.registry.model import Channel, Device

if TYPE_CHECKING:
    from gbgw.sip.transaction import ServerTransaction

log = structlog.get_logger("gb28181.cascade.catalog")

ANSWER_SLICE = 500
"""Items paged at a time while an answer goes out (a page boundary falls at each slice's end)."""
_GROUP_TYPES = frozenset({"215", "216"})
_STRUCTURAL = frozenset({"ADD", "UPDATE"})
# An IPv4 literal with whatever makes it an address: scheme, user:password@, :port, /path.
_ADDRESS_RE = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.-]*://)?(?:[^\s/@]+@)?(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])(?::\d{1,5})?(?:/\S*)?"
)
_RESOLUTION_RE = re.compile(r"[0-9]{1,2}(?:/[0-9]{1,2})*")


def is_civil_code(gb_id: str) -> bool:
    """A civil-code node: province (2 digits), city (4), district (6) or grassroots unit (8)."""
    return len(gb_id) in (2, 4, 6, 8) and gb_id.isascii() and gb_id.isdigit()


def is_group(gb_id: str) -> bool:
    """A business group (215) or virtual organisation (216)."""
    return len(gb_id) == 20 and gb_id[10:13] in _GROUP_TYPES


def is_organisation(gb_id: str) -> bool:
    return is_group(gb_id) or is_civil_code(gb_id)


def scrub(text: str | None) -> str | None:
    """Free text from a device without any IPv4 address in it; None when nothing is left."""
    if not text:
        return None
    if "." in text:
        text = " ".join(_ADDRESS_RE.sub(" ", text).split())
    return text or None


def _int(text: str | None, default: int | None) -> int | None:
    if text and text.isascii() and text.isdigit() and len(text) <= 9:
        return int(text)
    return default


def _references(node: Channel) -> Iterator[str]:
    """Every ID ``node`` names as a parent: its ParentID list, then its business group."""
    if node.parent_id:
        for part in node.parent_id.split("/"):
            ref = part.strip()
            if ref and ref != node.id:
                yield ref
    if node.business_group_id and node.business_group_id != node.id:
        yield node.business_group_id


def shared_count(registry: DeviceRegistry, policy: SharePolicy) -> int:
    """How many channels of the registry ``policy`` gives its upper (a walk over all channels): the one
    count the API shows and the gateway's own DeviceInfo answers with."""
    shared = policy.shared
    return sum(1 for device in registry.devices() for channel in registry.channels(device.id)
               if shared(channel.id))


class SharedCatalog:
    """The catalog one upper may see, built from the registry when asked (no I/O here).

    ``system_id`` is the gateway's own ID (its system item, and the parent of whatever has no exposed
    parent); ``system_name`` and ``manufacturer`` describe it.
    """

    def __init__(self, registry: DeviceRegistry, policy: SharePolicy, system_id: str, system_name: str,
                 manufacturer: str) -> None:
        self.registry = registry
        self.policy = policy
        self.system_id = system_id
        self.system_name = system_name
        self.manufacturer = manufacturer
        self.system_civil_code = system_id[:6]

    # -- what is shared ------------------------------------------------------------------------------

    def exported(self) -> Iterator[tuple[Channel, Device]]:
        """Shared channels with their devices, in registry order. An ID several devices use (cheap NVRs
        reuse them) is the channel of the device that announced it last, as everywhere else."""
        registry = self.registry
        shared = self.policy.shared
        for device in registry.devices():
            for channel in registry.channels(device.id):
                channel_id = channel.id
                if is_organisation(channel_id) or not shared(channel_id):
                    continue
                if registry.channel(channel_id) is channel:
                    yield channel, device

    @staticmethod
    def online(channel: Channel, device: Device | None) -> bool:
        return channel.status == "ON" and device is not None and device.online

    def _exposed(self, ref: str) -> bool:
        """Whether the catalog shows ``ref`` when a shared item names it as parent."""
        if is_civil_code(ref):
            return True
        node = self.registry.channel(ref)
        if node is None:
            return False
        return is_group(ref) or self.policy.shared(ref)

    def _upper(self, local_id: str) -> str:
        return local_id if is_civil_code(local_id) else self.policy.to_upper(local_id)

    def parents(self, nodes: Iterable[Channel]) -> tuple[list[str], list[Channel]]:
        """The organisation items above ``nodes``: civil codes (sorted, so a prefix comes before the
        codes under it) and business groups / virtual organisations (every one after its parents)."""
        civil: set[str] = set()
        groups: dict[str, Channel] = {}
        registry = self.registry
        stack = list(nodes)
        while stack:
            node = stack.pop()
            code = node.civil_code
            if code and is_civil_code(code):
                civil.add(code)
            for ref in _references(node):
                if is_civil_code(ref):
                    civil.add(ref)
                elif is_group(ref) and ref not in groups:
                    parent = registry.channel(ref)
                    if parent is not None:
                        groups[ref] = parent
                        stack.append(parent)
        return sorted(civil), _ancestors_first(groups)

    # -- items ---------------------------------------------------------------------------------------

    def items(self) -> tuple[list[CatalogItem], set[str]]:
        """The whole catalog, gateway first, then organisations (parents before children), then the
        shared channels; and the local IDs of the organisations in it."""
        channels = list(self.exported())
        civil, groups = self.parents(channel for channel, _ in channels)
        if self.system_civil_code not in civil:
            civil.insert(0, self.system_civil_code)
            civil.sort()
        items = [self.system_item()]
        items.extend(self.civil_item(code) for code in civil)
        items.extend(self.group_item(node) for node in groups)
        items.extend(self.channel_item(channel, device) for channel, device in channels)
        # Two local IDs the mapping sends to one upper ID would make the upper's tree ambiguous: the
        # first one keeps it.
        seen: set[str] = set()
        unique = []
        for item in items:
            if item.device_id not in seen:
                seen.add(item.device_id)
                unique.append(item)
        if len(unique) != len(items):
            log.warning("catalog items share an upper ID; the first one is kept", duplicates=len(items) - len(unique))
        return unique, {*civil, *(node.id for node in groups)}

    def system_item(self) -> CatalogItem:
        system_id = self.system_id
        return CatalogItem(
            system_id,
            name=scrub(self.policy.name_for(system_id, self.system_name)) or system_id,
            manufacturer=scrub(self.manufacturer),
            model="gateway",
            civil_code=self.system_civil_code,
            parental=1,
            register_way=1,
            secrecy=0,
            status="ON",
        )

    def civil_item(self, code: str, event: str | None = None) -> CatalogItem:
        node = self.registry.channel(code)
        name = scrub(node.name) if node is not None else None
        return CatalogItem(code, event=event, name=scrub(self.policy.name_for(code, name or code)) or code)

    def group_item(self, node: Channel, event: str | None = None) -> CatalogItem:
        local = node.id
        upper = self.policy.to_upper(local)
        business_group = local[10:13] == "215"
        return CatalogItem(
            upper,
            event=event,
            name=scrub(self.policy.name_for(local, node.name)) or upper,
            # Annex O: a business group names the system that defined it; a virtual organisation names
            # its parent organisation only when it has one.
            parent_id=self._parent_id(node, fallback=business_group),
            business_group_id=None if business_group else self._business_group(node),
        )

    def channel_item(self, channel: Channel, device: Device | None, event: str | None = None) -> CatalogItem:
        local = channel.id
        upper = self.policy.to_upper(local)
        raw = channel.raw
        manufacturer = channel.manufacturer or (device.manufacturer if device is not None else "")
        model = channel.model or (device.model if device is not None else "")
        civil = channel.civil_code if is_civil_code(channel.civil_code) else self.system_civil_code
        resolution = raw.get("resolution")
        return CatalogItem(
            upper,
            event=event,
            name=scrub(self.policy.name_for(local, channel.name)) or upper,
            manufacturer=scrub(manufacturer),
            model=scrub(model),
            owner=scrub(channel.owner),
            civil_code=civil,
            block=scrub(raw.get("block")),
            address=scrub(channel.address),
            parental=1 if channel.parental else 0,
            parent_id=self._parent_id(channel, fallback=True),
            safety_way=_int(raw.get("safety_way"), None),
            register_way=_int(raw.get("register_way"), 1),
            secrecy=_int(raw.get("secrecy"), 0),
            status="ON" if self.online(channel, device) else "OFF",
            longitude=channel.longitude,
            latitude=channel.latitude,
            ptz_type=channel.ptz_type,
            resolution=resolution if resolution and _RESOLUTION_RE.fullmatch(resolution) else None,
            business_group_id=self._business_group(channel),
        )

    def _parent_id(self, node: Channel, *, fallback: bool) -> str | None:
        """ParentID in upper IDs: exposed parents mapped, devices replaced by the gateway, unknown
        organisations dropped; the gateway when nothing is left and ``fallback``."""
        parts: list[str] = []
        if node.parent_id:
            for part in node.parent_id.split("/"):
                ref = part.strip()
                if not ref or ref == node.id:
                    continue
                if self._exposed(ref):
                    upper = self._upper(ref)
                elif is_organisation(ref):
                    continue
                else:
                    upper = self.system_id
                if upper not in parts:
                    parts.append(upper)
        if not parts and fallback:
            return self.system_id
        return "/".join(parts) or None

    def _business_group(self, node: Channel) -> str | None:
        group = node.business_group_id
        if group and group != node.id and is_group(group) and self.registry.channel(group) is not None:
            return self.policy.to_upper(group)
        return None


def _ancestors_first(groups: dict[str, Channel]) -> list[Channel]:
    """``groups`` ordered so that every node follows the nodes it names as parents (cycles, which
    only a broken catalog has, are cut where they close)."""
    done: dict[str, Channel] = {}
    entered: set[str] = set()
    for start in groups:
        stack = [(start, False)]
        while stack:
            ref, expanded = stack.pop()
            if ref in done:
                continue
            if expanded:
                done[ref] = groups[ref]
                continue
            if ref in entered:
                continue
            entered.add(ref)
            stack.append((ref, True))
            stack.extend((parent, False) for parent in _references(groups[ref])
                         if parent in groups and parent not in done)
    return list(done.values())


def subtree(items: list[CatalogItem], root_id: str) -> list[CatalogItem] | None:
    """What a query for ``root_id`` answers (§9.5.3.1.1), in catalog order; None when the catalog has no
    such item. A civil code: itself, the civil codes under it and the items in its area. A business
    group: itself and its virtual organisations. Anything else (virtual organisation, channel): itself
    and what hangs under it through ParentID, all the way down."""
    if not any(item.device_id == root_id for item in items):
        return None
    if is_civil_code(root_id):
        def in_area(item: CatalogItem) -> bool:
            code = item.device_id if is_civil_code(item.device_id) else item.civil_code or ""
            return code.startswith(root_id)

        return [item for item in items if in_area(item)]
    business_group = len(root_id) == 20 and root_id[10:13] == "215"
    children: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if business_group and item.business_group_id == root_id:
            children.setdefault(root_id, []).append(index)
        for parent in item.parent_id.split("/") if item.parent_id else ():
            children.setdefault(parent, []).append(index)
    chosen = {index for index, item in enumerate(items) if item.device_id == root_id}
    queue = [root_id]
    reached = {root_id}
    while queue:
        for index in children.get(queue.pop(), ()):
            item = items[index]
            if business_group and not is_group(item.device_id):
                continue
            chosen.add(index)
            if item.device_id not in reached:
                reached.add(item.device_id)
                queue.append(item.device_id)
    return [items[index] for index in sorted(chosen)]


@dataclass(slots=True)
class CatalogAnswer:
    """What one answer to a Catalog query took: ``pages`` built (all of them, unless the upper stopped
    accepting them part way), ``sent`` the pages it accepted."""

    sn: int
    items: int
    pages: int
    sent: int
    seconds: float

    @property
    def complete(self) -> bool:
        return self.sent == self.pages


@dataclass(slots=True)
class _Change:
    device_id: str
    event: str


@dataclass(slots=True, frozen=True)
class SharedView:
    """How the upper sees one shared channel: its device and the upper's ID and name for it."""

    device_id: str
    upper_id: str
    name: str


class CatalogShare:
    """The catalog feature of one upstream link: answers Catalog queries, serves the Catalog
    subscription. ``notify_window`` is how long changes are gathered before a NOTIFY."""

    notify_window = 0.5
    max_waiting_queries = 1

    def __init__(self, link: UpstreamLink, config: GatewayConfig, registry: DeviceRegistry, audit: AuditLog,
                 metrics: GatewayMetrics, tasks: BackgroundTasks) -> None:
        self.link = link
        self.registry = registry
        self.encoding = config.sip.encoding
        self.audit = audit
        self.metrics = metrics
        self.tasks = tasks
        sip = config.sip
        self.catalog = SharedCatalog(registry, link.policy, sip.id, sip.user_agent, sip.user_agent)
        self._answering = asyncio.Lock()
        self._queries = 0
        self._subscription: UpperSubscription | None = None
        self._changes: dict[str, _Change] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._announced: set[str] = set()
        """Local IDs of organisation items the upper has been given (in an answer or a NOTIFY)."""
        self._retired: dict[str, None] = {}
        """Upper IDs to send DEL for that no local channel maps to any more (a reload changed the policy)."""
        self._closed = False
        link.handle_command("Query", "Catalog", self._on_query)
        link.handle_subscribe("Catalog", self._on_subscribed)
        self.registry.add_channel_listener(self._on_channel)
        self.registry.add_status_listener(self._on_device)

    @property
    def page_limit(self) -> int:
        return self.link.body_budget()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.registry.remove_status_listener(self._on_device)
        self.registry.remove_channel_listener(self._on_channel)
        self._changes.clear()
        self._retired.clear()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self.tasks.spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the Catalog query ---------------------------------------------------------------------------

    def _on_query(self, txn: ServerTransaction, doc: ManscdpDocument) -> None:
        transport = self.link.transport
        if transport is None:
            return
        transport.reply(txn, 200)
        # One answer at a time per upper, and one more waiting: an upper repeating its query while a
        # large answer is still going out does not get the same catalog many times over.
        if self._queries > self.max_waiting_queries:
            log.info("catalog query dropped: answers already pending", upstream=self.link.name, sn=doc.sn)
            self.metrics.cascade.labels(self.link.name, "catalog", "busy").inc()
            return
        self._queries += 1
        self._spawn(self._answer_in_turn(doc.sn if doc.sn is not None else 0, doc.device_id))

    async def _answer_in_turn(self, sn: int, target: str) -> None:
        try:
            async with self._answering:
                await self.answer(sn, target)
        finally:
            self._queries -= 1

    async def answer(self, sn: int, target: str = "") -> CatalogAnswer:
        """Send the catalog (or the part under ``target``) to the upper as Response MESSAGEs."""
        link = self.link
        started = time.perf_counter()
        items, organisations = self.catalog.items()
        system_id = self.catalog.system_id
        reply_id = system_id
        if target and target != system_id:
            branch = subtree(items, target)
            if branch is not None:
                items, reply_id = branch, target
        # Pages are built a slice of items at a time while the previous ones go out, so a catalog of
        # tens of thousands of channels never holds the event loop for long (~25 ms per slice).
        total = len(items)
        pages = sent = 0
        for first in range(0, total or 1, ANSWER_SLICE):
            batch = manscdp.catalog_pages_within("Response", sn, reply_id, items[first : first + ANSWER_SLICE],
                                                 self.page_limit, self.encoding, sum_num=total)
            pages += len(batch)
            accepted = await link.send_pages(batch)
            sent += accepted
            if accepted < len(batch):
                break
        answer = CatalogAnswer(sn, total, pages, sent, time.perf_counter() - started)
        result = "ok" if answer.complete else "failed"
        if answer.complete and reply_id == system_id:
            self._announced = organisations
        self.audit.record("catalog", result, upstream=link.name, kind="query", sn=sn, target=reply_id,
                          items=answer.items, pages=answer.pages, sent=sent, seconds=round(answer.seconds, 3))
        self.metrics.cascade.labels(link.name, "catalog", result).inc()
        log.info("catalog answered", upstream=link.name, sn=sn, items=answer.items, pages=answer.pages,
                 sent=sent, seconds=round(answer.seconds, 3))
        return answer

    # -- the Catalog subscription --------------------------------------------------------------------

    def _on_subscribed(self, sub: UpperSubscription) -> None:
        if sub is self._subscription:
            return  # a refresh of the subscription the upper already has
        self._subscription = sub
        self._changes.clear()
        # Annex P.3 c: a new subscriber takes everything as online, so it is told at once what is not.
        for channel, device in self.catalog.exported():
            if not SharedCatalog.online(channel, device):
                self._changes[channel.id] = _Change(device.id, "OFF")
        if self._changes:
            self._schedule()

    def _subscribed(self) -> bool:
        return not self._closed and "Catalog" in self.link.subscriptions

    # -- the policy changing under a subscription (reload) -------------------------------------------

    def view(self) -> dict[str, SharedView]:
        """What the subscribed upper sees now, by local channel ID (empty without a subscription: nothing
        would be notified). Taken before a reload changes the policy, given to :meth:`policy_changed`."""
        if not self._subscribed():
            return {}
        policy = self.link.policy
        return {channel.id: SharedView(device.id, policy.to_upper(channel.id), policy.name_for(channel.id,
                                                                                                channel.name))
                for channel, device in self.catalog.exported()}

    def policy_changed(self, before: dict[str, SharedView]) -> None:
        """Notify the subscribed upper of what the new policy shares differently from ``before``."""
        if not self._subscribed():
            return
        after = self.view()
        for local, seen in before.items():
            now = after.get(local)
            if now is None or now.upper_id != seen.upper_id:
                self._changes.pop(local, None)
                self._retired[seen.upper_id] = None
        for local, shown in after.items():
            known = before.get(local)
            if known is None or known.upper_id != shown.upper_id:
                self._retired.pop(shown.upper_id, None)
                self._record(local, shown.device_id, "ADD")
            elif known.name != shown.name:
                self._record(local, shown.device_id, "UPDATE")
        if self._retired:
            self._schedule()

    def _on_channel(self, device_id: str, event: str, channel: Channel) -> None:
        if not self._subscribed():
            return
        channel_id = channel.id
        if is_organisation(channel_id) or not self.link.policy.shared(channel_id):
            return
        self._record(channel_id, device_id, event)

    def _on_device(self, device: Device, online: bool, reason: StatusReason) -> None:
        if not self._subscribed():
            return
        registry = self.registry
        shared = self.link.policy.shared
        event = "ON" if online else "OFF"
        for channel in registry.channels(device.id):
            channel_id = channel.id
            # A channel that is off stays off whatever its device does: nothing changes for the upper.
            if channel.status != "ON" or is_organisation(channel_id) or not shared(channel_id):
                continue
            if registry.channel(channel_id) is channel:
                self._record(channel_id, device.id, event)

    def _record(self, channel_id: str, device_id: str, event: str) -> None:
        prior = self._changes.get(channel_id)
        if prior is not None and event != "DEL":
            if event in _STRUCTURAL:
                if prior.event == "ADD":
                    event = "ADD"
            elif prior.event in _STRUCTURAL:
                # The pending ADD/UPDATE item is built when sent and carries the status of that moment.
                event = prior.event
        self._changes[channel_id] = _Change(device_id, event)
        self._schedule()

    def _schedule(self) -> None:
        if self._flusher is None and not self._closed:
            self._flusher = self._spawn(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self.notify_window)
            while (self._changes or self._retired) and not self._closed:
                changes, self._changes = self._changes, {}
                retired, self._retired = list(self._retired), {}
                await self._notify(changes, retired)
        finally:
            self._flusher = None

    def _change_items(self, channel_id: str, change: _Change) -> list[CatalogItem]:
        catalog = self.catalog
        event = change.event
        if event == "DEL":
            return [CatalogItem(catalog.policy.to_upper(channel_id), event="DEL")]
        channel = self.registry.channel(channel_id, change.device_id)
        device = self.registry.get(change.device_id)
        if channel is None or device is None:
            return []  # gone since: its DEL is on its way, or was sent
        if event not in _STRUCTURAL:
            if event in ("ON", "OFF"):
                event = "ON" if catalog.online(channel, device) else "OFF"
            return [CatalogItem(catalog.policy.to_upper(channel_id), event=event)]
        items: list[CatalogItem] = []
        if event == "ADD":
            civil, groups = catalog.parents((channel,))
            announced = self._announced
            for code in civil:
                if code not in announced:
                    announced.add(code)
                    items.append(catalog.civil_item(code, "ADD"))
            for node in groups:
                if node.id not in announced:
                    announced.add(node.id)
                    items.append(catalog.group_item(node, "ADD"))
        items.append(catalog.channel_item(channel, device, event))
        return items

    async def _notify(self, changes: dict[str, _Change], retired: Iterable[str] = ()) -> None:
        link = self.link
        sub = link.subscription("Catalog")
        if sub is None:
            return
        items = [CatalogItem(upper_id, event="DEL") for upper_id in retired]
        for channel_id, change in changes.items():
            items.extend(self._change_items(channel_id, change))
        if not items:
            return
        sn = sub.sn if sub.sn is not None else link.next_sn()
        target = sub.query.device_id or self.catalog.system_id
        pages = manscdp.catalog_pages_within("Notify", sn, target, items, self.page_limit, self.encoding)
        sent = 0
        result = "ok"
        for page in pages:
            try:
                await sub.notify(page)
            except UpstreamError as exc:
                # The upper can always ask for the catalog again; keeping a backlog for an upper that
                # refuses NOTIFYs would only grow.
                result = "failed"
                log.warning("catalog notification to upstream failed", upstream=link.name, reason=str(exc),
                            sent=sent, of=len(pages))
                break
            sent += 1
        self.audit.record("catalog", result, upstream=link.name, kind="notify", sn=sn, items=len(items),
                          pages=len(pages), sent=sent)
        self.metrics.cascade.labels(link.name, "catalog-notify", result).inc()

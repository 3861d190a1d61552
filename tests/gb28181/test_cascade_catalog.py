"""The catalog toward the upper: answers split under the size limit with consistent SumNum/Num, only shared
channels (with their organisation parents), mapped IDs and names, no address or credential; the upper's
catalog subscription notified of shared changes only; sipp as the upper (an independent SIP stack)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from access_harness import GATEWAY_ID, PASSWORD, SIPP_DIR, RunningGateway, SipDevice, Sipp
from hypothesis import given, settings
from hypothesis import strategies as st
from upper_harness import UPPER_ID, CascadeRig, FakeUpper, cascade_rig
from wire import SipMessage, free_port

from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.gb28181 import manscdp
from gbgw.gb28181.boundary.policy import SharePolicy
from gbgw.gb28181.cascade.catalog import SharedCatalog, scrub, subtree
from gbgw.gb28181.config import HostPort, IdRule, ShareRule, UpstreamConfig
from gbgw.gb28181.manscdp import CatalogItem
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Channel
from gbgw.registry.storage import MemoryStorage

Factory = Callable[..., Awaitable[RunningGateway]]
MANSCDP = "Application/MANSCDP+xml"
LIMIT = 1300
# Simulated devices: a community (industry 01) NVR the rule shares, an enterprise (02) one it does not.
SHARED_PREFIX = "3402000001118"
UNSHARED_PREFIX = "3402000002118"
SHARE = [{"prefix": "34020000", "industry": ["01"]}]
# Values a device reports that must never cross: its address and password (its port: no <Port> at all).
DEVICE_SECRETS = ("192.168.77.64", "cam-pass-5531")
DEVICE_PORT = 8000


# -- helpers ---------------------------------------------------------------------------------------------


def catalog_bodies(upper: FakeUpper, sn: int) -> list[bytes]:
    """The raw bodies of the Catalog Response MESSAGEs the upper received for ``sn``, in arrival order;
    each whole MESSAGE, headers included, is checked against the limit (a UDP datagram beyond the MTU
    is fragmented)."""
    messages = [m.request for m in upper.messages
                if m.doc is not None and m.doc.root == "Response" and m.doc.cmd_type == "Catalog" and m.doc.sn == sn]
    for message in messages:
        size = len(message.serialize())
        assert size <= LIMIT, f"a {size}-byte MESSAGE over the {LIMIT}-byte limit"
    return [message.body for message in messages]


def read_pages(bodies: list[bytes], root: str = "Response") -> tuple[list[int], list[str]]:
    """(SumNum of each page, IDs of all items) with every page checked: under the limit, Num = its items."""
    sums: list[int] = []
    ids: list[str] = []
    for body in bodies:
        assert len(body) <= LIMIT, f"a {len(body)}-byte page over the {LIMIT}-byte limit"
        doc = manscdp.parse(body)
        assert doc.root == root and doc.cmd_type == "Catalog"
        page = manscdp.CatalogResponse.from_document(doc)
        assert page.sum_num is not None
        sums.append(page.sum_num)
        if page.num is None:
            assert page.sum_num == 0 and not page.items
        else:
            assert page.num == len(page.items), (page.num, len(page.items))
        ids.extend(item.device_id for item in page.items)
    return sums, ids


async def ask_catalog(upper: FakeUpper, sn: int, target: str = GATEWAY_ID, timeout: float = 10.0) -> list[bytes]:
    """Query the gateway's catalog as the upper does and wait for SumNum items; returns the raw bodies."""
    response = await upper.manscdp(manscdp.query_catalog(sn, target))
    assert response.status == 200
    # Pages are counted as they come (re-reading all of them on each arrival would be quadratic).
    seen = 0
    counted = 0
    sum_num: int | None = None

    def complete() -> bool:
        nonlocal seen, counted, sum_num
        for received in upper.messages[seen:]:
            doc = received.doc
            if doc is not None and doc.root == "Response" and doc.cmd_type == "Catalog" and doc.sn == sn:
                page = manscdp.CatalogResponse.from_document(doc)
                sum_num = page.sum_num
                counted += len(page.items)
        seen = len(upper.messages)
        return sum_num is not None and counted >= sum_num

    await upper.wait(complete, timeout, f"the whole catalog for SN {sn}")
    return catalog_bodies(upper, sn)


def items_of(bodies: list[bytes], root: str = "Response") -> dict[str, CatalogItem]:
    items: dict[str, CatalogItem] = {}
    for body in bodies:
        for item in manscdp.CatalogResponse.from_document(manscdp.parse(body)).items:
            assert item.device_id not in items, f"{item.device_id} sent twice"
            items[item.device_id] = item
    return items


def channel_ids(simulator: DeviceSimulator) -> set[str]:
    cfg = simulator.config
    return {cfg.channel_id(number, channel) for number in range(cfg.start, cfg.start + cfg.count)
            for channel in range(1, cfg.channels + 1)}


def assert_nothing_leaks(upper: FakeUpper, *extra: str) -> None:
    """No body the upper received carries an address, password or anything in ``extra``."""
    for received in upper.requests:
        body = received.request.body.decode("gb18030", "replace")
        for secret in (*DEVICE_SECRETS, "127.0.0.1", "Password", "IPAddress", "<Port>", *extra):
            assert secret not in body, f"{secret!r} reached the upper in a {received.request.method}"


class CatalogDevice:
    """A scripted lower platform whose catalog answer the test writes (organisations, addresses...)."""

    def __init__(self, device: SipDevice, items: list[CatalogItem]) -> None:
        self.device = device
        self.items = items
        device.on_request = self._on_request

    async def _on_request(self, device: SipDevice, request: SipMessage) -> None:
        device.answer_ok(request)
        if request.method != "MESSAGE":
            return
        doc = manscdp.parse(request.body)
        if doc.root != "Query" or doc.sn is None:
            return
        if doc.cmd_type == "Catalog":
            answer = manscdp.response_catalog(doc.sn, device.device_id, self.items)
        elif doc.cmd_type == "DeviceInfo":
            answer = manscdp.response_device_info(doc.sn, device.device_id, device_name="Lower platform")
        else:
            return
        await device.message(manscdp.encode_body(answer))

    async def notify(self, *items: CatalogItem) -> None:
        doc = manscdp.notify_catalog(7, self.device.device_id, list(items))
        response = await self.device.message(manscdp.encode_body(doc))
        assert response.status == 200


async def catalog_device(rig: CascadeRig, device_id: str, items: list[CatalogItem]) -> CatalogDevice:
    device = await rig.gateway.new_device(device_id)
    scripted = CatalogDevice(device, items)
    response = await device.register(PASSWORD)
    assert response.status == 200
    registry = rig.gateway.gateway.registry

    async def known() -> bool:
        return len(registry.channels(device_id)) >= len(items)

    await rig.gateway.wait_for(known, 10, f"the catalog of {device_id}")
    return scripted


def audit_records(rig: CascadeRig, action: str) -> list[dict[str, Any]]:
    path = Path(rig.gateway.config.audit.path)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in records if r["action"] == action]


# -- paging (no sockets) ---------------------------------------------------------------------------------

_text = st.text(alphabet=st.sampled_from("abcXYZ 019通道大门停车场<&>\"'é"), min_size=0, max_size=60)


@st.composite
def _items(draw: st.DrawFn) -> list[CatalogItem]:
    count = draw(st.integers(0, 40))
    return [
        CatalogItem(f"3402000001131{index:07d}", name=draw(_text) or None, address=draw(_text) or None,
                    owner=draw(_text) or None, status=draw(st.sampled_from(["ON", "OFF"])),
                    ptz_type=draw(st.none() | st.integers(1, 4)),
                    event=draw(st.none() | st.sampled_from(["ADD", "OFF"])))
        for index in range(count)
    ]


@settings(max_examples=100, deadline=None)
@given(items=_items(), limit=st.integers(600, 3000), root=st.sampled_from(["Response", "Notify"]),
       encoding=st.sampled_from(["GB2312", "UTF-8"]), sn=st.integers(0, 10**9),
       more=st.none() | st.integers(0, 10**6))
def test_pages_fit_and_carry_every_item_once(items: list[CatalogItem], limit: int, root: str, encoding: str,
                                            sn: int, more: int | None) -> None:
    """``more``: these items are a slice of an answer with that many items besides (Response only)."""
    sum_num = None if more is None or root == "Notify" else len(items) + more
    total = len(items) if sum_num is None else sum_num
    pages = manscdp.catalog_pages_within(root, sn, GATEWAY_ID, items, limit, encoding, sum_num=sum_num)
    if not items:
        assert len(pages) == (1 if root == "Response" else 0)
        return
    received: list[CatalogItem] = []
    for doc in pages:
        body = manscdp.encode_body(doc, encoding)
        page = manscdp.CatalogResponse.from_document(manscdp.parse(body))
        # Over the limit only when one item alone is larger than it.
        assert len(body) <= limit or page.num == 1
        assert page.num == len(page.items) and page.sn == sn
        assert page.sum_num == (total if root == "Response" else page.num)
        received.extend(page.items)
    assert [i.device_id for i in received] == [i.device_id for i in items]
    assert [i.name for i in received] == [manscdp.CatalogItem.from_element(i.to_element()).name for i in items]
    # Packing is greedy: no page could have taken the next page's first item as well.
    start = 0
    for doc in pages[:-1]:
        end = start + len(manscdp.CatalogResponse.from_document(doc).items)
        taken = items[start : end + 1]
        build = manscdp.response_catalog if root == "Response" else manscdp.notify_catalog
        stated = total if root == "Response" else len(taken)
        assert len(manscdp.encode_body(build(sn, GATEWAY_ID, taken, sum_num=stated), encoding)) > limit
        start = end


def test_an_empty_catalog_is_one_page_with_sumnum_zero() -> None:
    (page,) = manscdp.catalog_pages_within("Response", 5, GATEWAY_ID, [], LIMIT)
    assert page.text("SumNum") == "0" and page.element.find("DeviceList") is None
    assert manscdp.catalog_pages_within("Notify", 5, GATEWAY_ID, [], LIMIT) == []


# -- what is shown (no sockets) --------------------------------------------------------------------------

NVR = "34020000011180000001"
# Serials from 101 on: the simulated NVRs' channels are numbered from 1.
CAMERA = "34020000011310000101"
CAMERA_IN_VO = "34020000011310000102"
UNSHARED = "34020000021310000103"
GROUP = "34020000002150000001"
ORG = "34020000002160000001"
SUB_ORG = "34020000002160000002"
STRAY_ORG = "34020000002160000099"


def _registry_with_organisations() -> DeviceRegistry:
    registry = DeviceRegistry(MemoryStorage())
    registry.register(NVR, transport="UDP", host="192.168.77.64", port=5060, expires=3600, now=time.time())
    channels = [
        Channel(id=GROUP, device_id=NVR, name="Schools", parent_id="34020000002000000077"),
        Channel(id=ORG, device_id=NVR, name="North district", business_group_id=GROUP),
        Channel(id=SUB_ORG, device_id=NVR, name="Gate 192.168.77.64", parent_id=ORG, business_group_id=GROUP),
        Channel(id=STRAY_ORG, device_id=NVR, name="Nobody shared here", business_group_id=GROUP),
        Channel(id=CAMERA, device_id=NVR, name="Entrance", parent_id=NVR, civil_code="340200",
                manufacturer="Hik", model="DS", owner="0", address="rtsp://admin:cam-pass-5531@192.168.77.64:554/s1",
                raw={"ip_address": "192.168.77.64", "register_way": "1", "secrecy": "0", "block": "B1",
                     "Password": "cam-pass-5531", "Port": str(DEVICE_PORT), "StreamNum": "2"}),
        Channel(id=CAMERA_IN_VO, device_id=NVR, name="Playground", parent_id=f"{NVR}/{SUB_ORG}",
                civil_code="34020011", status="OFF", business_group_id=GROUP),
        Channel(id=UNSHARED, device_id=NVR, name="Office", parent_id=NVR, civil_code="340299"),
    ]
    registry.replace_channels(NVR, channels, partial=False)
    return registry


def _catalog(registry: DeviceRegistry, **overrides: Any) -> SharedCatalog:
    config = UpstreamConfig(name="district", id=UPPER_ID, domain="3402000000", address=HostPort("127.0.0.1", 1),
                            listen=HostPort("127.0.0.1", 2), media_ip="127.0.0.1",
                            share=(ShareRule(prefix=("34020000",), industry=("01",)),), **overrides)
    return SharedCatalog(registry, SharePolicy(config), GATEWAY_ID, "Gateway", "gb28181-gateway")


def test_the_catalog_holds_the_gateway_shared_channels_and_their_organisations() -> None:
    items, organisations = _catalog(_registry_with_organisations()).items()
    by_id = {item.device_id: item for item in items}
    assert items[0].device_id == GATEWAY_ID and items[0].status == "ON"
    # Devices are not exposed; the unshared channel and the organisation with no shared channel either.
    assert NVR not in by_id and UNSHARED not in by_id and STRAY_ORG not in by_id and "340299" not in by_id
    assert {CAMERA, CAMERA_IN_VO, GROUP, ORG, SUB_ORG, "340200", "34020011"} <= set(by_id)
    assert organisations == {"340200", "34020011", GROUP, ORG, SUB_ORG}
    # Parents come before their children (an upper building its tree as items arrive needs that).
    order = [item.device_id for item in items]
    assert order.index(GROUP) < order.index(ORG) < order.index(SUB_ORG) < order.index(CAMERA_IN_VO)
    assert order.index("340200") < order.index("34020011")
    # A device parent becomes the gateway; the virtual organisation stays; the stray system ID is replaced.
    assert by_id[CAMERA].parent_id == GATEWAY_ID
    assert by_id[CAMERA_IN_VO].parent_id == f"{GATEWAY_ID}/{SUB_ORG}"
    assert by_id[GROUP].parent_id == GATEWAY_ID
    assert by_id[ORG].parent_id is None and by_id[ORG].business_group_id == GROUP
    assert by_id[SUB_ORG].parent_id == ORG
    # Status: the channel's own, and only while its device is online.
    assert by_id[CAMERA].status == "ON" and by_id[CAMERA_IN_VO].status == "OFF"
    # Mandatory fields filled, nothing from outside the whitelist.
    camera = by_id[CAMERA]
    assert (camera.register_way, camera.secrecy, camera.block) == (1, 0, "B1")
    assert camera.ip_address is None and camera.port is None and camera.password is None
    text = ET.tostring(manscdp.response_catalog(1, GATEWAY_ID, items).element, encoding="unicode")
    for secret in (*DEVICE_SECRETS, "Port", "Password", "IPAddress"):
        assert secret not in text
    assert "StreamNum" not in text and "admin" not in text
    assert by_id[SUB_ORG].name == "Gate"


def test_an_offline_device_shows_its_channels_off() -> None:
    registry = _registry_with_organisations()
    registry.unregister(NVR, time.time())
    items, _ = _catalog(registry).items()
    assert {item.device_id: item.status for item in items}[CAMERA] == "OFF"


def test_ids_and_names_are_mapped_for_the_upper_references_too() -> None:
    catalog = _catalog(_registry_with_organisations(),
                       channel_ids={CAMERA: "35010000011310000777"},
                       channel_id_rule=IdRule("3402000000216", "3501000000216"),
                       channel_names={CAMERA: "North gate", SUB_ORG: "Sports ground", GATEWAY_ID: "Community gateway"})
    by_id = {item.device_id: item for item in catalog.items()[0]}
    assert CAMERA not in by_id and by_id["35010000011310000777"].name == "North gate"
    mapped_org, mapped_sub = "35010000002160000001", "35010000002160000002"
    assert ORG not in by_id and SUB_ORG not in by_id
    assert by_id[mapped_sub].name == "Sports ground" and by_id[mapped_sub].parent_id == mapped_org
    assert by_id[CAMERA_IN_VO].parent_id == f"{GATEWAY_ID}/{mapped_sub}"
    assert by_id[GATEWAY_ID].name == "Community gateway"


def test_a_query_for_an_organisation_gets_its_subtree() -> None:
    items, _ = _catalog(_registry_with_organisations()).items()
    assert [i.device_id for i in subtree(items, SUB_ORG) or []] == [SUB_ORG, CAMERA_IN_VO]
    # A business group answers with its virtual organisations only; a civil code with its area.
    assert [i.device_id for i in subtree(items, GROUP) or []] == [GROUP, ORG, SUB_ORG]
    assert {i.device_id for i in subtree(items, "340200") or []} == {
        "340200", "34020011", GATEWAY_ID, CAMERA, CAMERA_IN_VO}
    assert {i.device_id for i in subtree(items, "34020011") or []} == {"34020011", CAMERA_IN_VO}
    assert subtree(items, "34020000001310009999") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("Gate 192.168.1.64", "Gate"),
    ("rtsp://admin:12345@10.0.0.8:554/Streaming/Channels/101 lobby", "lobby"),
    ("通道1 大门", "通道1 大门"),
    ("v1.2.3", "v1.2.3"),
    ("10.0.0.1:8000", None),
])
def test_addresses_are_cut_out_of_free_text(text: str, expected: str | None) -> None:
    assert scrub(text) == expected


# -- the answer over the network -------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 100])
async def test_catalog_answer_pages_and_counts(gateway_factory: Factory, channels: int) -> None:
    async with cascade_rig(gateway_factory, {"share": SHARE}) as rig:
        shared = await rig.add_cameras(1, channels, id_prefix=SHARED_PREFIX, catalog_page_size=50)
        unshared = await rig.add_cameras(1, 3, id_prefix=UNSHARED_PREFIX)
        bodies = await ask_catalog(rig.upper, 4711)
        sums, ids = read_pages(bodies)
        assert len(ids) == len(set(ids)), "an item was sent twice"
        # The gateway, its civil code, the shared channels: SumNum counts exactly those, on every page.
        expected = {GATEWAY_ID, GATEWAY_ID[:6], *channel_ids(shared)}
        assert set(ids) == expected
        assert set(sums) == {len(expected)}
        assert not channel_ids(unshared) & set(ids)
        assert ids[0] == GATEWAY_ID
        items = items_of(bodies)
        assert all(items[i].parent_id == GATEWAY_ID and items[i].status == "ON" for i in channel_ids(shared))
        assert_nothing_leaks(rig.upper, shared.device_id(0), unshared.device_id(0))
        # Written when the last page's 200 is back, which may be just after the upper sent it.
        (record,) = await rig.upper.wait(lambda: audit_records(rig, "catalog"), 2, "the catalog audit record")
        assert (record["upstream"], record["sn"], record["items"], record["result"]) == (
            "district", 4711, len(expected), "ok")
        assert record["pages"] == len(bodies)


async def test_catalog_of_5000_shared_channels(gateway_factory: Factory) -> None:
    async with cascade_rig(gateway_factory, {"share": SHARE}) as rig:
        shared = await rig.add_cameras(10, 500, id_prefix=SHARED_PREFIX, catalog_page_size=100)
        await rig.add_cameras(1, 20, id_prefix=UNSHARED_PREFIX, catalog_page_size=20)
        # The time it takes is tests/bench/bench_cascade_catalog.py's business.
        bodies = await ask_catalog(rig.upper, 90001, timeout=30)
        sums, ids = read_pages(bodies)
        expected = {GATEWAY_ID, GATEWAY_ID[:6], *channel_ids(shared)}
        assert len(ids) == len(expected) == 5002 and set(ids) == expected
        assert set(sums) == {5002}


# -- organisations, mapping, what never crosses (a scripted lower platform) -------------------------------

LOWER = "34020000012000000005"  # a lower platform (type 200) registered to the gateway like a device


def lower_platform_catalog() -> list[CatalogItem]:
    """A lower platform's catalog with a business group tree, addresses and a password in it."""
    return [
        CatalogItem(GROUP, name="Schools", parent_id=LOWER),
        CatalogItem(ORG, name="North district", business_group_id=GROUP, parent_id=LOWER),
        CatalogItem(SUB_ORG, name="Sports ground 192.168.77.64", parent_id=ORG, business_group_id=GROUP),
        CatalogItem(CAMERA, name="Entrance", manufacturer="Hik", model="DS", owner="0", civil_code="340200",
                    address="Building 1", parental=0, parent_id=LOWER, register_way=1, secrecy=0, status="ON",
                    ip_address=DEVICE_SECRETS[0], port=DEVICE_PORT, password=DEVICE_SECRETS[1],
                    extra={"StreamNum": "2"}),
        CatalogItem(CAMERA_IN_VO, name="Playground", civil_code="34020011", parent_id=f"{LOWER}/{SUB_ORG}",
                    status="OFF", ip_address=DEVICE_SECRETS[0], password=DEVICE_SECRETS[1]),
        CatalogItem(UNSHARED, name="Office", civil_code="340299", parent_id=LOWER, status="ON"),
    ]


async def test_organisations_mapping_and_names_reach_the_upper_without_secrets(gateway_factory: Factory) -> None:
    upstream = {
        "share": SHARE,
        "channel_ids": {CAMERA: "35010000011310000777"},
        "channel_id_rule": {"from": "3402000000216", "to": "3501000000216"},
        "channel_names": {CAMERA: "North gate", GATEWAY_ID: "Community gateway"},
    }
    async with cascade_rig(gateway_factory, upstream) as rig:
        await catalog_device(rig, LOWER, lower_platform_catalog())
        bodies = await ask_catalog(rig.upper, 31)
        sums, ids = read_pages(bodies)
        items = items_of(bodies)
        assert set(sums) == {len(ids)}
        mapped_camera, mapped_org, mapped_sub = "35010000011310000777", "35010000002160000001", "35010000002160000002"
        assert set(ids) == {GATEWAY_ID, "340200", "34020011", GROUP, mapped_org, mapped_sub, mapped_camera,
                            CAMERA_IN_VO}
        assert items[GATEWAY_ID].name == "Community gateway"
        assert items[mapped_camera].name == "North gate" and items[mapped_camera].parent_id == GATEWAY_ID
        assert items[mapped_sub].parent_id == mapped_org and items[mapped_sub].business_group_id == GROUP
        assert items[mapped_sub].name == "Sports ground"
        assert items[CAMERA_IN_VO].parent_id == f"{GATEWAY_ID}/{mapped_sub}"
        assert items[CAMERA_IN_VO].status == "OFF"
        assert_nothing_leaks(rig.upper, LOWER, CAMERA, ORG, SUB_ORG, UNSHARED, "StreamNum")
        # A query naming a virtual organisation (by its upper ID) gets that branch only.
        branch = await ask_catalog(rig.upper, 32, target=mapped_sub)
        assert read_pages(branch)[1] == [mapped_sub, CAMERA_IN_VO]
        assert manscdp.parse(branch[0]).device_id == mapped_sub


# -- the catalog subscription ----------------------------------------------------------------------------


def notified(upper: FakeUpper) -> list[tuple[str, str]]:
    """(upper ID, event) of every item in the catalog NOTIFYs the upper received, pages checked."""
    events = []
    for received in upper.requests:
        if received.request.method != "NOTIFY":
            continue
        sums, _ = read_pages([received.request.body], root="Notify")
        page = manscdp.CatalogNotify.from_document(manscdp.parse(received.request.body))
        assert sums == [page.num], "a NOTIFY's SumNum is its own Num (Annex P)"
        events.extend((item.device_id, item.event or "") for item in page.items)
    return events


async def subscribe_catalog(upper: FakeUpper, sn: int) -> None:
    body = manscdp.encode_body(manscdp.query_catalog(sn, GATEWAY_ID))
    request = upper.request("SUBSCRIBE", body=body, content_type=MANSCDP,
                            headers=[("Event", f"Catalog;id={sn}"), ("Expires", "600")])
    response = await upper.send(request)
    assert response.status == 200


async def test_subscription_notifies_changes_of_shared_channels_only(gateway_factory: Factory) -> None:
    async with cascade_rig(gateway_factory, {"share": SHARE}) as rig:
        upper = rig.upper
        shared = await rig.add_cameras(1, 3, id_prefix=SHARED_PREFIX)
        unshared = await rig.add_cameras(1, 2, id_prefix=UNSHARED_PREFIX)
        lower = await catalog_device(rig, LOWER, lower_platform_catalog())
        # Without a subscription a change is not sent anywhere.
        await lower.notify(CatalogItem(CAMERA, event="UPDATE", name="Entrance (moved)", parent_id=LOWER))
        await asyncio.sleep(0.8)
        assert notified(upper) == []

        # A new subscriber is told at once which shared channels are off (Annex P.3 c).
        await subscribe_catalog(upper, 77)
        await upper.wait(lambda: (CAMERA_IN_VO, "OFF") in notified(upper), 3, "the initial NOTIFY")
        assert notified(upper) == [(CAMERA_IN_VO, "OFF")]
        (first,) = [r.request for r in upper.requests if r.request.method == "NOTIFY"]
        assert (first.get("Event") or "").startswith("Catalog") and manscdp.parse(first.body).sn == 77

        # A device going offline and back: its shared channels OFF, then ON; the unshared one says nothing.
        channels = channel_ids(shared)
        for simulator in (shared, unshared):
            await simulator.stop(unregister=True, timeout=2)
            rig.simulators.remove(simulator)
        await upper.wait(lambda: {(c, "OFF") for c in channels} <= set(notified(upper)), 5, "OFF for each channel")
        await rig.add_cameras(1, 3, id_prefix=SHARED_PREFIX)
        await upper.wait(lambda: {(c, "ON") for c in channels} <= set(notified(upper)), 5, "ON for each channel")

        # Catalog changes: added (with the organisation it hangs under, new to this upper), updated,
        # deleted; the unshared addition never shows.
        added, added_unshared = "34020000011310000142", "34020000021310000143"
        new_org = "34020000002160000042"
        await lower.notify(
            CatalogItem(new_org, event="ADD", name="Library", business_group_id=GROUP),
            CatalogItem(added, event="ADD", name="Library door 192.168.77.64", parent_id=f"{LOWER}/{new_org}",
                        civil_code="340200", status="ON", ip_address=DEVICE_SECRETS[0], port=DEVICE_PORT,
                        password=DEVICE_SECRETS[1]),
            CatalogItem(added_unshared, event="ADD", name="Back office", parent_id=LOWER, status="ON"),
        )
        await upper.wait(lambda: (added, "ADD") in notified(upper), 3, "the ADD")
        await lower.notify(CatalogItem(CAMERA, event="DEL"),
                           CatalogItem(CAMERA_IN_VO, event="UPDATE", name="Playground east", civil_code="34020011",
                                       parent_id=f"{LOWER}/{SUB_ORG}", status="ON"))
        await upper.wait(lambda: {(CAMERA, "DEL"), (CAMERA_IN_VO, "UPDATE")} <= set(notified(upper)), 3,
                         "the DEL and the UPDATE")

        events = notified(upper)
        assert (new_org, "ADD") in events, "the new organisation travels with the channel under it"
        assert events.index((new_org, "ADD")) < events.index((added, "ADD"))
        sent_ids = {item_id for item_id, _ in events}
        assert not sent_ids & (channel_ids(unshared) | {added_unshared, UNSHARED, LOWER})
        assert_nothing_leaks(upper, LOWER, added_unshared)
        adds = [r.request.body for r in upper.requests if r.request.method == "NOTIFY" and added.encode() in r.request.body]
        item = items_of(adds, root="Notify")[added]
        assert item.name == "Library door" and item.parent_id == f"{GATEWAY_ID}/{new_org}" and item.status == "ON"
        updates = [r.request.body for r in upper.requests
                   if r.request.method == "NOTIFY" and b"<Event>UPDATE</Event>" in r.request.body]
        updated = items_of(updates, root="Notify")[CAMERA_IN_VO]
        assert (updated.name, updated.status, updated.parent_id) == ("Playground east", "ON", f"{GATEWAY_ID}/{SUB_ORG}")
        assert {r["kind"] for r in audit_records(rig, "catalog")} == {"notify"}


# -- sipp as the upper -----------------------------------------------------------------------------------

SIPP_UPPER_PASSWORD = "upper-sipp-secret-4455"


def sipp_received_bodies(workdir: Path) -> list[bytes]:
    """Bodies of the requests sipp logged as received (its -trace_msg log gives each one's length)."""
    bodies = []
    for log in workdir.glob("*_messages.log"):
        text = log.read_bytes()
        for match in re.finditer(rb"message received \[(\d+)\] bytes :\n\n", text):
            message = text[match.end() : match.end() + int(match.group(1))]
            if not message.startswith(b"SIP/2.0"):
                bodies.append(message.partition(b"\r\n\r\n")[2])
    return bodies


@pytest.mark.sipp
@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not found on PATH (Debian package sip-tester)")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sipp_upper_registers_us_and_takes_the_catalog(gateway_factory: Factory, sipp: Sipp, tmp_path: Path,
                                                             transport: str) -> None:
    sipp_port, control_port = free_port(), free_port()
    workdir = tmp_path / "sipp-upper"
    workdir.mkdir()
    command = [
        "sipp", "-sf", str(SIPP_DIR / "upper_register_catalog.xml"), "-i", "127.0.0.1", "-p", str(sipp_port),
        "-t", "u1" if transport == "udp" else "t1", "-m", "1000", "-timeout", "15s", "-timeout_error",
        "-cp", str(control_port), "-trace_err", "-trace_msg", "-nostdin",
    ]
    process = await asyncio.create_subprocess_exec(*command, cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await asyncio.sleep(0.3)  # sipp binds its port
        gateway = await gateway_factory({"upstreams": [{
            "name": "district", "id": UPPER_ID, "domain": "3402000000", "address": f"127.0.0.1:{sipp_port}",
            "transport": transport, "listen": f"127.0.0.1:{free_port()}", "media_ip": "127.0.0.1",
            "password": SIPP_UPPER_PASSWORD, "keepalive_interval": 60, "share": SHARE,
        }]})
        rig = CascadeRig(gateway, FakeUpper())
        shared = await rig.add_cameras(1, 100, id_prefix=SHARED_PREFIX, catalog_page_size=50)
        unshared = await rig.add_cameras(1, 2, id_prefix=UNSHARED_PREFIX)
        link = gateway.gateway.cascade.links["district"]
        await gateway.wait_for(lambda: _value(link.online), 10, "the registration at sipp")

        async def answered() -> bool:
            path = Path(gateway.config.audit.path)
            return any(r["action"] == "catalog" and r["sent"] == r["pages"]
                       for r in map(json.loads, path.read_text().splitlines()))

        await gateway.wait_for(answered, 10, "every catalog page accepted by sipp")
        for simulator in rig.simulators:
            await simulator.stop(unregister=False, timeout=1)
        await gateway.stop()  # unregisters: the scenario's registration call ends with that
    finally:
        # "q" on sipp's control socket: finish the calls under way, then exit (0 when none failed).
        transport_, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("127.0.0.1", control_port))
        transport_.sendto(b"q")
        transport_.close()
        run = await sipp.finish(process, workdir, timeout=20)
    assert run.returncode == 0, run.report()
    pages = [body for body in sipp_received_bodies(workdir) if b"<CmdType>Catalog</CmdType>" in body]
    sums, ids = read_pages(pages)
    expected = {GATEWAY_ID, GATEWAY_ID[:6], *channel_ids(shared)}
    assert set(ids) == expected and len(ids) == len(expected)
    assert set(sums) == {len(expected)}
    assert not set(ids) & channel_ids(unshared)
    for body in pages:
        assert b"127.0.0.1" not in body and b"Password" not in body


async def _value(value: Any) -> Any:
    return value

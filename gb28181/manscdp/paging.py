"""Catalog answers split over several messages: by item count, or by the encoded size each body may take
(UDP datagrams and upper platforms' body limits)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from gbgw.gb28181.manscdp.builders import build, catalog_page, response_catalog
from gbgw.gb28181.manscdp.document import ManscdpDocument, encode_body
from gbgw.gb28181.manscdp.messages import CatalogItem
from gbgw.gb28181.manscdp.text import codec_for


def catalog_pages(
    sn: int, device_id: str, items: Sequence[CatalogItem], per_page: int
) -> list[ManscdpDocument]:
    """A catalog split over several answers of at most `per_page` items, each stating the full SumNum."""
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    if not items:
        return [response_catalog(sn, device_id, [], sum_num=0)]
    total = len(items)
    return [
        response_catalog(sn, device_id, items[start : start + per_page], sum_num=total)
        for start in range(0, total, per_page)
    ]


def catalog_pages_within(
    root: str,
    sn: int,
    device_id: str,
    items: Sequence[CatalogItem],
    max_bytes: int,
    encoding: str = "GB2312",
    *,
    sum_num: int | None = None,
) -> list[ManscdpDocument]:
    """A catalog split over as few documents as fit: each one's `encode_body(doc, encoding)` is at most
    `max_bytes` bytes (an item too large for any page still travels, alone on its page).

    Root "Response": every page states the full SumNum (Annex M): `sum_num`, when these items are one
    part of a larger answer, else their number; an empty catalog is one page with SumNum 0 and no list.
    Root "Notify": SumNum equals the page's own Num (Annex P.4.2.2); nothing to notify is no page at all.

    Sizes are counted, not tried: each item is serialized once, indented as `to_text` will indent it at
    its depth in the page (level 2), so packing costs one serialization per item and none per attempt.
    """
    if root not in ("Response", "Notify"):
        raise ValueError(f"a catalog page is a Response or a Notify, not {root!r}")
    if not items:
        return [build(root, "Catalog", sn, device_id, [("SumNum", 0)])] if root == "Response" else []
    _, codec = codec_for(encoding)
    elements: list[ET.Element] = []
    sizes: list[int] = []
    for item in items:
        element = item.to_element()
        ET.indent(element, space="  ", level=2)
        elements.append(element)
        # In the page, every item follows a newline and its four spaces of indentation.
        sizes.append(len(ET.tostring(element, encoding="unicode").encode(codec, "xmlcharrefreplace")) + 5)
    total = len(items) if sum_num is None else sum_num
    notify = root == "Notify"
    # Everything but the items, measured on a one-item page (Num="1", and SumNum="1" for a Notify); a
    # longer page only has longer numbers there.
    probe = catalog_page(root, sn, device_id, elements[:1], 1 if notify else total)
    base = len(encode_body(probe, encoding)) - sizes[0]
    numbers = 2 if notify else 1
    bounds: list[tuple[int, int]] = []
    start = used = 0
    for index, size in enumerate(sizes):
        count = index - start + 1
        if count > 1 and base + (len(str(count)) - 1) * numbers + used + size > max_bytes:
            bounds.append((start, index))
            start, used = index, 0
        used += size
    bounds.append((start, len(items)))
    return [
        catalog_page(root, sn, device_id, elements[first:end], end - first if notify else total)
        for first, end in bounds
    ]

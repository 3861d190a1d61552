"""CatalogAssembler: pages in, whole or partial catalogs out (sans-IO, explicit time)."""

from __future__ import annotations

from gbgw.gb28181.devices.catalog import CatalogAssembler
from gbgw.gb28181.manscdp import CatalogItem, CatalogResponse

DEVICE = "34020000001180000001"


def page(sn: int, sum_num: int | None, ids: list[str]) -> CatalogResponse:
    items = [CatalogItem(i, name=f"ch {i[-2:]}") for i in ids]
    return CatalogResponse(sn, DEVICE, sum_num, len(items), items)


def test_pages_complete_at_sum_num_and_duplicates_count_once() -> None:
    asm = CatalogAssembler(first_wait=30, gap_timeout=5)
    asm.expect(DEVICE, 7, now=0)
    assert asm.add(DEVICE, page(7, 3, ["34020000001310000001", "34020000001310000002"]), now=1) is None
    assert asm.add(DEVICE, page(7, 3, ["34020000001310000002"]), now=2) is None
    done = asm.add(DEVICE, page(7, 3, ["34020000001310000003"]), now=3)
    assert done is not None and done.complete and len(done.items) == 3


def test_a_device_that_stops_half_way_leaves_a_partial_catalog() -> None:
    asm = CatalogAssembler(first_wait=30, gap_timeout=5)
    asm.expect(DEVICE, 8, now=0)
    asm.add(DEVICE, page(8, 4, ["34020000001310000001", "34020000001310000002"]), now=1)
    assert asm.expire(now=5.9) == []
    [partial] = asm.expire(now=6.1)
    assert not partial.complete and partial.sum_num == 4 and len(partial.items) == 2


def test_negative_sum_num_is_unknown_not_an_empty_complete_catalog() -> None:
    """Regression: SumNum -1 on the first page must not replace the device's channels with nothing."""
    asm = CatalogAssembler(first_wait=30, gap_timeout=5)
    assert asm.add(DEVICE, page(9, -1, []), now=0) is None
    assert asm.pending(DEVICE, 9)


def test_an_empty_catalog_is_complete() -> None:
    asm = CatalogAssembler(first_wait=30, gap_timeout=5)
    done = asm.add(DEVICE, page(10, 0, []), now=0)
    assert done is not None and done.complete and done.items == []

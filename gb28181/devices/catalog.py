"""Assembling a catalog that a device splits over several MESSAGEs (sans-IO, explicit time).

Devices answer one Catalog query with SumNum items spread over many messages (an NVR with 64 channels
often sends two items per message). Pages are collected by (device, SN) until SumNum distinct items
arrived. A device that stops half way leaves a partial catalog, which is kept and flagged rather than
thrown away: most of a catalog is more useful to an administrator than none. :func:`channel_from_item`
turns an item (of an answer or of a change NOTIFY) into the registry's channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gbgw.gb28181.manscdp import CatalogItem, CatalogResponse
from gbgw.registry.model import Channel


@dataclass(slots=True)
class CatalogResult:
    device_id: str
    sn: int
    sum_num: int | None
    items: list[CatalogItem]
    complete: bool


@dataclass(slots=True)
class _Assembly:
    device_id: str
    sn: int
    deadline: float
    sum_num: int | None = None
    items: dict[str, CatalogItem] = field(default_factory=dict)
    pages: int = 0


class CatalogAssembler:
    """Collects catalog pages. ``first_wait`` bounds the wait for the first page (devices may take long
    to start on a large catalog), ``gap_timeout`` the silence between two pages."""

    def __init__(self, first_wait: float, gap_timeout: float) -> None:
        self.first_wait = first_wait
        self.gap_timeout = gap_timeout
        self._open: dict[tuple[str, int], _Assembly] = {}

    def expect(self, device_id: str, sn: int, now: float) -> None:
        """Register a query we sent, so that its answer's first page may take up to ``first_wait``."""
        self._open[(device_id, sn)] = _Assembly(device_id, sn, now + self.first_wait)

    def add(self, device_id: str, page: CatalogResponse, now: float) -> CatalogResult | None:
        """Take one page; return the result when it completes the catalog."""
        sn = page.sn if page.sn is not None else -1
        key = (device_id, sn)
        assembly = self._open.get(key)
        if assembly is None:
            assembly = self._open[key] = _Assembly(device_id, sn, now)
        assembly.pages += 1
        if page.sum_num is not None and page.sum_num >= 0:
            # A negative SumNum is nonsense: treat it as unknown rather than as "complete" (which would
            # replace the device's channels with nothing).
            assembly.sum_num = page.sum_num
        for item in page.items:
            if item.device_id:
                assembly.items[item.device_id] = item
        assembly.deadline = now + self.gap_timeout
        if assembly.sum_num is not None and len(assembly.items) >= assembly.sum_num:
            del self._open[key]
            return CatalogResult(device_id, sn, assembly.sum_num, list(assembly.items.values()), True)
        return None

    def expire(self, now: float) -> list[CatalogResult]:
        """Close assemblies whose wait ran out; those with items come back as partial results."""
        done = [key for key, a in self._open.items() if a.deadline <= now]
        results = []
        for key in done:
            a = self._open.pop(key)
            results.append(CatalogResult(a.device_id, a.sn, a.sum_num, list(a.items.values()), False))
        return results

    def pending(self, device_id: str, sn: int) -> bool:
        return (device_id, sn) in self._open


def channel_from_item(device_id: str, item: CatalogItem) -> Channel:
    """A registry channel from a catalog item; fields without a Channel attribute are kept in ``raw``.

    (The registry shares the strings thousands of channels repeat when it takes the channel.)
    """
    raw = dict(item.extra)
    for key in ("block", "ip_address", "resolution", "secrecy", "register_way", "safety_way"):
        value = getattr(item, key)
        if value is not None and value != "":
            raw[key] = str(value)
    return Channel(
        id=item.device_id,
        device_id=device_id,
        name=item.name or "",
        parent_id=item.parent_id or "",
        manufacturer=item.manufacturer or "",
        model=item.model or "",
        owner=item.owner or "",
        civil_code=item.civil_code or "",
        address=item.address or "",
        status="ON" if item.online is not False else "OFF",
        longitude=item.longitude,
        latitude=item.latitude,
        ptz_type=item.ptz_type,
        parental=bool(item.parental),
        business_group_id=item.business_group_id or "",
        raw=raw,
    )

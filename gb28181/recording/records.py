"""Record search (RecordInfo, A.2.4 d / A.2.6 h): the query, and its answer assembled across pages.

Devices split a record list over several MESSAGEs exactly as they split catalogs, so this mirrors
:class:`~gbgw.gb28181.devices.catalog.CatalogAssembler`: pages are collected by (device, SN) until SumNum
distinct records arrived, with a first-page wait and a gap timeout driven by an explicit ``now``; a device
that stops half way leaves a partial result, flagged, not dropped. (A sibling rather than a shared base:
the catalog keys items by DeviceID, records have no identity but their fields, and records need the
query's window and zone to be read at all.)

Times are read in the zone ``sip.timezone`` names (see :mod:`.times`). A record entirely outside the
requested window by exactly the zone's UTC offset (Hikvision NVRs answer shifted by +8 h in China) is
moved back and flagged ``corrected``; missing fields stay None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import Enum

from gbgw.gb28181.manscdp import ManscdpDocument, RecordInfoResponse, RecordItem, query_record_info
from gbgw.gb28181.recording.times import TimeWindow, correct_offset_shift, read_time, write_time

# A hostile or broken device must not make one query hold unbounded memory; an NVR lists a few hundred.
DEFAULT_MAX_RECORDS = 10_000


class RecordType(Enum):
    """The Type of a RecordInfo query and of each record (A.2.4 d)."""

    ALL = "all"
    TIME = "time"
    ALARM = "alarm"
    MANUAL = "manual"

    @classmethod
    def parse(cls, text: str) -> RecordType:
        """From an API parameter; ValueError naming the allowed values."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            allowed = ", ".join(t.value for t in cls)
            raise ValueError(f"record type {text!r} is not one of {allowed}") from None


@dataclass(slots=True)
class Record:
    """One recording, times aware. ``corrected`` says the device wrote it shifted by the zone's offset."""

    channel_id: str
    start: datetime | None
    end: datetime | None
    type: str | None = None
    secrecy: int | None = None
    file_path: str | None = None
    name: str | None = None
    size: int | None = None
    recorder_id: str | None = None
    address: str | None = None
    corrected: bool = False

    @property
    def seconds(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()

    def to_json(self) -> dict[str, object]:
        """The API's form: ISO 8601 times with their offset."""
        return {
            "channel_id": self.channel_id,
            "start": self.start.isoformat() if self.start is not None else None,
            "end": self.end.isoformat() if self.end is not None else None,
            "type": self.type,
            "name": self.name,
            "file_path": self.file_path,
            "size": self.size,
            "secrecy": self.secrecy,
            "recorder_id": self.recorder_id,
            "address": self.address,
            "corrected": self.corrected,
        }


def record_from_item(item: RecordItem, zone: tzinfo, window: TimeWindow | None = None) -> Record:
    """A record from one RecordList item; with the query's ``window``, the offset quirk is undone."""
    start = read_time(item.start_time, zone)
    end = read_time(item.end_time, zone)
    corrected = False
    if window is not None and start is not None and end is not None:
        start, end, corrected = correct_offset_shift(start, end, window, zone)
    return Record(
        channel_id=item.device_id,
        start=start,
        end=end,
        type=item.type,
        secrecy=item.secrecy,
        file_path=item.file_path,
        name=item.name,
        size=item.file_size,
        recorder_id=item.recorder_id,
        address=item.address,
        corrected=corrected,
    )


def record_query(
    sn: int,
    channel_id: str,
    window: TimeWindow,
    zone: tzinfo,
    record_type: RecordType = RecordType.ALL,
) -> ManscdpDocument:
    """The RecordInfo Query for ``channel_id`` over ``window``, its times written local to ``zone``."""
    return query_record_info(
        sn,
        channel_id,
        write_time(window.start, zone),
        write_time(window.end, zone),
        type=record_type.value,
    )


@dataclass(slots=True)
class RecordSearchResult:
    device_id: str
    sn: int
    sum_num: int | None
    records: list[Record]
    complete: bool

    def to_json(self) -> dict[str, object]:
        return {
            "sum_num": self.sum_num,
            "complete": self.complete,
            "records": [record.to_json() for record in self.records],
        }


_ItemKey = tuple[str, str | None, str | None, str | None, str | None, str | None, str | None, int | None]


def _key(item: RecordItem) -> _ItemKey:
    # No field identifies a record; a page sent twice must still count once toward SumNum.
    return (
        item.device_id,
        item.start_time,
        item.end_time,
        item.file_path,
        item.type,
        item.name,
        item.recorder_id,
        item.file_size,
    )


@dataclass(slots=True)
class _Assembly:
    device_id: str
    sn: int
    deadline: float
    window: TimeWindow | None = None
    sum_num: int | None = None
    records: dict[_ItemKey, Record] = field(default_factory=dict)
    pages: int = 0


def _sorted(records: dict[_ItemKey, Record]) -> list[Record]:
    # By start; undated records last, in the order they came (the sort is stable).
    return sorted(
        records.values(), key=lambda r: (r.start is None, r.start.timestamp() if r.start is not None else 0.0)
    )


class RecordAssembler:
    """Collects RecordInfo pages. ``first_wait`` bounds the wait for the first page (an NVR searching
    its disks is slow to start), ``gap_timeout`` the silence between two pages; ``zone`` reads times."""

    def __init__(
        self, first_wait: float, gap_timeout: float, zone: tzinfo, max_records: int = DEFAULT_MAX_RECORDS
    ) -> None:
        self.first_wait = first_wait
        self.gap_timeout = gap_timeout
        self.zone = zone
        self.max_records = max_records
        self._open: dict[tuple[str, int], _Assembly] = {}

    def expect(self, device_id: str, sn: int, window: TimeWindow | None, now: float) -> None:
        """Register a query we sent: its first page may take up to ``first_wait``, and its records are
        read against ``window``."""
        self._open[(device_id, sn)] = _Assembly(device_id, sn, now + self.first_wait, window)

    def add(self, device_id: str, page: RecordInfoResponse, now: float) -> RecordSearchResult | None:
        """Take one page; return the result when it completes the list (or reaches ``max_records``)."""
        sn = page.sn if page.sn is not None else -1
        key = (device_id, sn)
        assembly = self._open.get(key)
        if assembly is None:
            assembly = self._open[key] = _Assembly(device_id, sn, now)
        assembly.pages += 1
        if page.sum_num is not None and page.sum_num >= 0:
            # A negative SumNum is nonsense: unknown, not "complete with nothing".
            assembly.sum_num = page.sum_num
        records = assembly.records
        for item in page.items:
            item_key = _key(item)
            if item_key not in records:
                if len(records) >= self.max_records:
                    del self._open[key]
                    return self._result(assembly, complete=False)
                records[item_key] = record_from_item(item, self.zone, assembly.window)
        assembly.deadline = now + self.gap_timeout
        if assembly.sum_num is not None and len(records) >= assembly.sum_num:
            del self._open[key]
            return self._result(assembly, complete=True)
        return None

    @staticmethod
    def _result(assembly: _Assembly, complete: bool) -> RecordSearchResult:
        return RecordSearchResult(
            assembly.device_id, assembly.sn, assembly.sum_num, _sorted(assembly.records), complete
        )

    def expire(self, now: float) -> list[RecordSearchResult]:
        """Close assemblies whose wait ran out; they come back as partial results (possibly empty)."""
        done = [key for key, a in self._open.items() if a.deadline <= now]
        return [self._result(self._open.pop(key), complete=False) for key in done]

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has something to close, for the adapter's one timer."""
        return min((a.deadline for a in self._open.values()), default=None)

    def pending(self, device_id: str, sn: int) -> bool:
        return (device_id, sn) in self._open

    def cancel(self, device_id: str, sn: int) -> None:
        """Forget a query whose requester went away."""
        self._open.pop((device_id, sn), None)

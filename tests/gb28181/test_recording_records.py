"""Record search: GB local times in an explicit zone, RecordInfo pages assembled by SumNum, the +8 h quirk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gbgw.gb28181 import manscdp
from gbgw.gb28181.manscdp.builders import response_record_info
from gbgw.gb28181.recording.records import (
    Record,
    RecordAssembler,
    RecordType,
    record_from_item,
    record_query,
)
from gbgw.gb28181.recording.times import (
    TimeWindow,
    correct_offset_shift,
    epoch_seconds,
    host_zone,
    read_time,
    shifted,
    write_time,
    zone_named,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DEVICE = "34020000001180000001"
CHANNEL = "34020000001310000001"
# 2025-04-22 00:00 to 02:00 in Shanghai.
WINDOW = TimeWindow(
    datetime(2025, 4, 22, 0, 0, tzinfo=SHANGHAI), datetime(2025, 4, 22, 2, 0, tzinfo=SHANGHAI)
)


def item(start: str | None, end: str | None, name: str = "rec", **fields: object) -> manscdp.RecordItem:
    return manscdp.RecordItem(CHANNEL, name=name, start_time=start, end_time=end, type="time", **fields)  # type: ignore[arg-type]


def page(sn: int, sum_num: int | None, items: list[manscdp.RecordItem]) -> manscdp.RecordInfoResponse:
    """A page as it arrives: built, encoded as a device would, and read back from the bytes."""
    doc = response_record_info(sn, CHANNEL, "Camera 1", items, sum_num=0 if sum_num is None else sum_num)
    typed = manscdp.parse(manscdp.encode_body(doc, "GB2312")).typed()
    assert isinstance(typed, manscdp.RecordInfoResponse)
    if sum_num is None:
        typed.sum_num = None
    return typed


def test_gb_times_are_local_to_the_configured_zone() -> None:
    assert read_time("2025-04-22T11:26:02", SHANGHAI) == datetime(2025, 4, 22, 3, 26, 2, tzinfo=UTC)
    assert read_time("2025-04-22 11:26:02", SHANGHAI) == datetime(2025, 4, 22, 11, 26, 2, tzinfo=SHANGHAI)
    assert read_time("2025/04/22 11:26:02", SHANGHAI) == datetime(2025, 4, 22, 11, 26, 2, tzinfo=SHANGHAI)
    # A time that states its offset keeps its instant, shown in the zone.
    with_offset = read_time("2025-04-22T03:26:02Z", SHANGHAI)
    assert with_offset is not None and with_offset.isoformat() == "2025-04-22T11:26:02+08:00"
    for unreadable in (None, "", "null", "yesterday", "2025-13-40T99:00:00"):
        assert read_time(unreadable, SHANGHAI) is None
    assert write_time(datetime(2025, 4, 22, 3, 26, 2, tzinfo=UTC), SHANGHAI) == "2025-04-22T11:26:02"
    assert write_time(datetime(2025, 4, 22, 3, 26, 2, tzinfo=UTC), ZoneInfo("UTC")) == "2025-04-22T03:26:02"
    with pytest.raises(ValueError, match="no offset"):
        write_time(datetime(2025, 4, 22, 3, 26, 2), SHANGHAI)


def test_the_zone_is_named_by_config_or_taken_from_the_host() -> None:
    assert zone_named("Asia/Shanghai") == SHANGHAI
    assert zone_named(None).utcoffset(datetime(2025, 1, 1)) is not None
    for bad in ("Mars/Olympus", "../etc/passwd"):
        with pytest.raises(ValueError, match=r"sip\.timezone .* IANA"):
            zone_named(bad)


def test_the_host_zone_comes_from_tz_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", ":Asia/Shanghai")
    assert host_zone() == SHANGHAI and zone_named("") == SHANGHAI
    monkeypatch.setenv("TZ", "Not/AZone")
    assert host_zone().utcoffset(datetime(2025, 1, 1)) is not None


def test_windows_are_aware_and_ordered() -> None:
    assert WINDOW.seconds == 7200
    assert WINDOW.sdp_timing() == (1745251200, 1745258400)
    assert epoch_seconds(WINDOW.start) == 1745251200
    with pytest.raises(ValueError, match="no offset"):
        TimeWindow(datetime(2025, 4, 22), datetime(2025, 4, 23, tzinfo=UTC))
    with pytest.raises(ValueError, match="before it starts"):
        TimeWindow(WINDOW.end, WINDOW.start)


def test_shifting_counts_real_time_across_a_dst_change() -> None:
    new_york = ZoneInfo("America/New_York")
    before = datetime(2025, 3, 9, 1, 30, tzinfo=new_york)
    assert shifted(before, timedelta(hours=1)).isoformat() == "2025-03-09T03:30:00-04:00"


def test_the_query_writes_the_window_local_to_the_zone() -> None:
    window = TimeWindow(datetime(2025, 4, 21, 16, 0, tzinfo=UTC), datetime(2025, 4, 21, 18, 0, tzinfo=UTC))
    doc = record_query(17, CHANNEL, window, SHANGHAI, RecordType.ALARM)
    assert (doc.root, doc.cmd_type, doc.sn, doc.device_id) == ("Query", "RecordInfo", 17, CHANNEL)
    assert doc.text("StartTime") == "2025-04-22T00:00:00" and doc.text("EndTime") == "2025-04-22T02:00:00"
    assert doc.text("Type") == "alarm"
    assert RecordType.parse(" Manual ") is RecordType.MANUAL
    with pytest.raises(ValueError, match="all, time, alarm, manual"):
        RecordType.parse("motion")


def test_pages_complete_at_sum_num_and_duplicates_count_once() -> None:
    asm = RecordAssembler(first_wait=30, gap_timeout=5, zone=SHANGHAI)
    asm.expect(DEVICE, 7, WINDOW, now=0)
    first = [
        item("2025-04-22T00:00:00", "2025-04-22T00:30:00"),
        item("2025-04-22T00:30:00", "2025-04-22T01:00:00"),
    ]
    assert asm.add(DEVICE, page(7, 3, first), now=1) is None
    assert asm.add(DEVICE, page(7, 3, first[1:]), now=2) is None
    done = asm.add(
        DEVICE, page(7, 3, [item("2025-04-22T01:00:00", "2025-04-22T02:00:00", file_size=1024)]), now=3
    )
    assert done is not None and done.complete and done.sum_num == 3 and not asm.pending(DEVICE, 7)
    assert [r.start.hour for r in done.records if r.start is not None] == [0, 0, 1]
    assert done.records[2] == Record(
        CHANNEL,
        datetime(2025, 4, 22, 1, 0, tzinfo=SHANGHAI),
        datetime(2025, 4, 22, 2, 0, tzinfo=SHANGHAI),
        type="time",
        name="rec",
        size=1024,
    )
    assert done.to_json()["records"][2] == {  # type: ignore[index]
        "channel_id": CHANNEL,
        "start": "2025-04-22T01:00:00+08:00",
        "end": "2025-04-22T02:00:00+08:00",
        "type": "time",
        "name": "rec",
        "file_path": None,
        "size": 1024,
        "secrecy": None,
        "recorder_id": None,
        "address": None,
        "corrected": False,
    }


def test_pages_out_of_order_are_sorted_by_start() -> None:
    asm = RecordAssembler(first_wait=30, gap_timeout=5, zone=SHANGHAI)
    asm.expect(DEVICE, 8, WINDOW, now=0)
    asm.add(DEVICE, page(8, 3, [item("2025-04-22T01:00:00", "2025-04-22T01:10:00")]), now=1)
    asm.add(DEVICE, page(8, 3, [item(None, "2025-04-22T01:10:00", name="undated")]), now=1)
    done = asm.add(DEVICE, page(8, 3, [item("2025-04-22T00:10:00", "2025-04-22T00:20:00")]), now=2)
    assert done is not None
    assert [(r.start.minute if r.start else None) for r in done.records] == [10, 0, None]
    assert done.records[2].name == "undated" and done.records[2].seconds is None


def test_a_device_that_stops_half_way_leaves_a_partial_list() -> None:
    asm = RecordAssembler(first_wait=30, gap_timeout=5, zone=SHANGHAI)
    asm.expect(DEVICE, 9, WINDOW, now=0)
    assert asm.next_deadline() == 30
    asm.add(DEVICE, page(9, 4, [item("2025-04-22T00:00:00", "2025-04-22T00:30:00")]), now=1)
    assert asm.next_deadline() == 6
    assert asm.expire(now=5.9) == []
    [partial] = asm.expire(now=6.1)
    assert not partial.complete and partial.sum_num == 4 and len(partial.records) == 1
    assert asm.next_deadline() is None


def test_a_device_that_never_answers_expires_after_the_first_wait() -> None:
    asm = RecordAssembler(first_wait=30, gap_timeout=5, zone=SHANGHAI)
    asm.expect(DEVICE, 10, WINDOW, now=0)
    assert asm.expire(now=29) == []
    [empty] = asm.expire(now=30)
    assert (empty.complete, empty.sum_num, empty.records) == (False, None, [])


def test_an_empty_answer_is_complete_and_nonsense_sum_num_is_unknown() -> None:
    asm = RecordAssembler(first_wait=30, gap_timeout=5, zone=SHANGHAI)
    asm.expect(DEVICE, 11, WINDOW, now=0)
    done = asm.add(DEVICE, page(11, 0, []), now=1)
    assert done is not None and done.complete and done.records == []
    assert asm.add(DEVICE, page(12, -1, []), now=0) is None and asm.pending(DEVICE, 12)
    assert asm.add(DEVICE, page(13, None, [item(None, None)]), now=0) is None and asm.pending(DEVICE, 13)
    asm.cancel(DEVICE, 13)
    assert not asm.pending(DEVICE, 13)


def test_records_are_capped() -> None:
    asm = RecordAssembler(first_wait=30, gap_timeout=5, zone=SHANGHAI, max_records=2)
    asm.expect(DEVICE, 14, WINDOW, now=0)
    items = [item(f"2025-04-22T00:0{i}:00", f"2025-04-22T00:0{i}:30") for i in range(3)]
    done = asm.add(DEVICE, page(14, 1000, items), now=1)
    assert done is not None and not done.complete and len(done.records) == 2
    assert not asm.pending(DEVICE, 14)


def test_records_shifted_by_the_zone_offset_are_corrected_and_flagged() -> None:
    """Hikvision NVRs answer a Shanghai query with times 8 h late; some devices answer 8 h early (UTC)."""
    asm = RecordAssembler(first_wait=30, gap_timeout=5, zone=SHANGHAI)
    asm.expect(DEVICE, 15, WINDOW, now=0)
    late = item("2025-04-22T08:10:00", "2025-04-22T08:40:00")
    early = item("2025-04-21T16:50:00", "2025-04-21T17:20:00")
    inside = item("2025-04-22T01:00:00", "2025-04-22T01:30:00")
    done = asm.add(DEVICE, page(15, 3, [late, early, inside]), now=1)
    assert done is not None and done.complete
    by_start = {(r.start.isoformat() if r.start else ""): r for r in done.records}
    assert sorted(by_start) == [
        "2025-04-22T00:10:00+08:00",
        "2025-04-22T00:50:00+08:00",
        "2025-04-22T01:00:00+08:00",
    ]
    assert by_start["2025-04-22T00:10:00+08:00"].corrected and by_start["2025-04-22T00:50:00+08:00"].corrected
    assert not by_start["2025-04-22T01:00:00+08:00"].corrected
    assert by_start["2025-04-22T00:10:00+08:00"].to_json()["corrected"] is True


def test_only_a_shift_by_exactly_the_offset_is_corrected() -> None:
    start = datetime(2025, 4, 22, 5, 0, tzinfo=SHANGHAI)
    # Three hours out: not the quirk, left as the device wrote it.
    assert correct_offset_shift(start, start + timedelta(minutes=30), WINDOW, SHANGHAI)[2] is False
    # A zone without an offset has no quirk to undo.
    utc_window = TimeWindow(WINDOW.start.astimezone(UTC), WINDOW.end.astimezone(UTC))
    late = WINDOW.start + timedelta(hours=8)
    assert correct_offset_shift(late, late + timedelta(minutes=5), utc_window, UTC)[2] is False
    # Without the query's window nothing is corrected either.
    record = record_from_item(item("2025-04-22T08:10:00", "2025-04-22T08:40:00"), SHANGHAI)
    assert record.start is not None and record.start.hour == 8 and not record.corrected


def test_a_page_for_a_query_not_expected_is_still_assembled() -> None:
    asm = RecordAssembler(first_wait=30, gap_timeout=5, zone=SHANGHAI)
    done = asm.add(DEVICE, page(16, 1, [item("2025-04-22T08:10:00", "2025-04-22T08:40:00")]), now=0)
    assert done is not None and done.complete and not done.records[0].corrected


def test_a_device_answer_in_gb2312_with_missing_fields() -> None:
    body = (
        '<?xml version="1.0" encoding="GB2312"?>\r\n<Response><CmdType>RecordInfo</CmdType><SN>20</SN>'
        f'<DeviceID>{CHANNEL}</DeviceID><Name>大门</Name><SumNum>2</SumNum><RecordList Num="2">'
        f"<Item><DeviceID>{CHANNEL}</DeviceID><Name>大门</Name><FilePath>/rec/1.mp4</FilePath>"
        "<StartTime>2025-04-22T00:00:00</StartTime><EndTime>2025-04-22T00:30:00</EndTime>"
        "<Secrecy>0</Secrecy><Type>time</Type><FileSize>123456</FileSize></Item>"
        f"<Item><DeviceID>{CHANNEL}</DeviceID><StartTime>null</StartTime></Item>"
        "</RecordList></Response>"
    ).encode("gb2312")
    typed = manscdp.parse(body).typed()
    assert isinstance(typed, manscdp.RecordInfoResponse)
    asm = RecordAssembler(first_wait=30, gap_timeout=5, zone=SHANGHAI)
    asm.expect(DEVICE, 20, WINDOW, now=0)
    done = asm.add(DEVICE, typed, now=1)
    assert done is not None and done.complete
    first, blank = done.records
    assert (first.name, first.file_path, first.size, first.secrecy, first.seconds) == (
        "大门",
        "/rec/1.mp4",
        123456,
        0,
        1800.0,
    )
    assert (blank.start, blank.end, blank.name, blank.type) == (None, None, None, None)


def test_record_items_round_trip_through_the_builder() -> None:
    original = manscdp.RecordItem(
        CHANNEL,
        "大门",
        "/rec/1.mp4",
        "gate",
        "2025-04-22T00:00:00",
        "2025-04-22T00:30:00",
        0,
        "time",
        "34020000001110000001",
        42,
    )
    doc = response_record_info(21, CHANNEL, "大门", [original], sum_num=5)
    typed = manscdp.parse(manscdp.encode_body(doc, "GB2312")).typed()
    assert isinstance(typed, manscdp.RecordInfoResponse)
    assert (typed.sum_num, typed.num, typed.name, typed.items) == (5, 1, "大门", [original])


@pytest.mark.parametrize(
    ("notify_type", "end_of_file"), [("121", True), (" 121\r\n", True), ("120", False), ("", False)]
)
def test_media_status_end_of_file_from_device_bytes(notify_type: str, end_of_file: bool) -> None:
    body = (
        '<?xml version="1.0" encoding="GB2312"?>\n<Notify>\n<CmdType>MediaStatus</CmdType>\n<SN>8</SN>\n'
        f"<DeviceID>{CHANNEL}</DeviceID>\n<NotifyType>{notify_type}</NotifyType>\n</Notify>\n"
    ).encode("gb2312")
    typed = manscdp.parse(body).typed()
    assert isinstance(typed, manscdp.MediaStatusNotify)
    assert (typed.sn, typed.device_id, typed.end_of_file) == (8, CHANNEL, end_of_file)

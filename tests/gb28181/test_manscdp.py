"""MANSCDP codec: every real body in tests/fixtures/interop, charsets, hostile input, builders, PTZ codes."""

from __future__ import annotations

import contextlib
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire import FIXTURES, needs_fixture

from gbgw.gb28181 import manscdp as m
from gbgw.gb28181.ids import GbId
from gbgw.gb28181.manscdp.fields import (
    FieldTable,
    Scope,
    as_float,
    as_id,
    as_int,
    as_present,
    as_raw,
    as_str,
    read_fields,
)
from gbgw.gb28181.manscdp.text import decode_body, read_element, read_tolerant

INTEROP = FIXTURES / "interop"
HIK_MD = (
    INTEROP / "hikvision" / "codeindex-32433344081_feiyangqingyun_hik-IPC_DS-2CD5024EFWD_full-exchange.md"
)
SRS_TXT = INTEROP / "hikvision" / "srs-gb28181_deprecated-branch_code-comments_hik-IPC-NVR.txt"
DAHUA_RAW = INTEROP / "dahua" / "FlyLab_demo-gb28181_Example-g28181.reconstructed-raw.txt"
DAHUA_DUMP = INTEROP / "dahua" / "FlyLab_demo-gb28181_Example-g28181.wireshark.txt"
DAHUA_REQUESTS = INTEROP / "dahua" / "FlyLab_demo-gb28181_RequestDevice.txt"
DAHUA_CATALOGS = INTEROP / "dahua" / "FlyLab_demo-gb28181_zong_sb_sbdy.txt"
EXOSIP_TXT = INTEROP / "pcap" / "GB28181.Solution_invite-live-catalog.sip.txt"
EXOSIP_PCAP = INTEROP / "pcap" / "GB28181.Solution_invite-live-catalog.pcapng"
EXOSIP_REG_TXT = INTEROP / "pcap" / "GB28181.Solution_reg-auth.sip.txt"
EXOSIP_REG_PCAP = INTEROP / "pcap" / "GB28181.Solution_reg-auth.pcapng"

# A body: optional declaration, then one of the four roots up to its end tag. Several sources lost the blank
# line between header and body, or run the next message straight after the body, so the body is found by
# its own markup rather than by message boundaries.
BODY = re.compile(rb"(?:<\?xml[^>]*\?>\s*)?<(Query|Control|Notify|Response)>.*?</\1>", re.S)
DECLARED = re.compile(rb"""encoding\s*=\s*["']([^"']+)""")


def bodies_in(raw: bytes) -> list[bytes]:
    return [match.group(0) for match in BODY.finditer(raw)]


def wire_bodies_of_markdown(path: Path) -> list[bytes]:
    """The markdown shows GB2312 bodies decoded (it is UTF-8): re-encode each in its declared charset,
    strictly, which is what the device put on the wire."""
    found = []
    for body in bodies_in(path.read_bytes()):
        declared = DECLARED.search(body)
        charset = declared.group(1).decode() if declared else "utf-8"
        found.append(body.decode("utf-8").encode(charset))
    return found


def bodies_of_wireshark_dump(path: Path) -> Iterator[tuple[int, bytes]]:
    """(Content-Length, body) for each "Message Body" of a Wireshark text export; the export shows line
    ends as literal \\r\\n or \\n, which restores the exact bytes."""
    declared_length = -1
    lines = path.read_text(encoding="ascii").split("\n")
    index = 0
    while index < len(lines):
        length = re.match(r"\s+Content-Length:\s*(\d+)", lines[index])
        if length:
            declared_length = int(length.group(1))
        if lines[index] == "    Message Body":
            parts = []
            index += 1
            while index < len(lines) and lines[index].startswith("        "):
                part = lines[index][8:]
                if part.endswith("\\r\\n"):
                    part = part[:-4] + "\r\n"
                elif part.endswith("\\n"):
                    part = part[:-2] + "\n"
                parts.append(part)
                index += 1
            body = "".join(parts).encode("ascii")
            if body.startswith(b"<"):
                yield declared_length, body
            continue
        index += 1


def bodies_with_lengths_in_capture(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """(Content-Length of the carrying message, body) from raw capture bytes."""
    for match in BODY.finditer(raw):
        header = raw[max(0, match.start() - 1500) : match.start()]
        lengths = re.findall(rb"Content-Length:\s*(\d+)", header)
        yield int(lengths[-1]), raw[match.start() :]


INTEROP_SOURCES: list[tuple[str, list[bytes]]] = [
    ("hikvision-md", wire_bodies_of_markdown(HIK_MD) if HIK_MD.exists() else []),
    ("hikvision-srs", bodies_in(SRS_TXT.read_bytes())),
    ("dahua-raw", bodies_in(DAHUA_RAW.read_bytes())),
    ("dahua-dump", [body for _length, body in bodies_of_wireshark_dump(DAHUA_DUMP)]),
    ("dahua-requests", bodies_in(DAHUA_REQUESTS.read_bytes())),
    ("dahua-catalogs", bodies_in(DAHUA_CATALOGS.read_bytes())),
    ("exosip-txt", bodies_in(EXOSIP_TXT.read_bytes()) + bodies_in(EXOSIP_REG_TXT.read_bytes())),
    ("exosip-pcapng", bodies_in(EXOSIP_PCAP.read_bytes()) + bodies_in(EXOSIP_REG_PCAP.read_bytes())),
]
ALL_BODIES = [(name, index, body) for name, bodies in INTEROP_SOURCES for index, body in enumerate(bodies)]


@needs_fixture(HIK_MD)
def test_extraction_finds_every_declared_body_of_the_hikvision_document() -> None:
    counts = dict((name, len(bodies)) for name, bodies in INTEROP_SOURCES)
    assert counts["hikvision-md"] == HIK_MD.read_bytes().count(b"<?xml") == 22


def test_extraction_finds_every_declared_body() -> None:
    # Every body in these sources starts with an XML declaration, so counting declarations in the raw
    # files independently tells how many bodies there are.
    counts = dict((name, len(bodies)) for name, bodies in INTEROP_SOURCES)
    assert counts["hikvision-srs"] == SRS_TXT.read_bytes().count(b"<?xml") == 3
    assert counts["dahua-raw"] == DAHUA_RAW.read_bytes().count(b"<?xml") == 39
    assert counts["dahua-dump"] == DAHUA_DUMP.read_bytes().count(b"<?xml") == 39
    assert counts["dahua-requests"] == 17
    assert counts["dahua-catalogs"] == 17
    assert counts["exosip-txt"] == 4
    assert counts["exosip-pcapng"] == 4


def test_reconstructed_bodies_match_their_content_length() -> None:
    # The byte counts the devices declared prove the extraction (and the charset guess) right.
    dump = list(bodies_of_wireshark_dump(DAHUA_DUMP))
    assert dump and all(length == len(body) for length, body in dump)
    for capture in (EXOSIP_PCAP, EXOSIP_REG_PCAP):
        for length, rest in bodies_with_lengths_in_capture(capture.read_bytes()):
            parsed_length = len(BODY.match(rest).group(0))  # type: ignore[union-attr]
            # eXosip ends its bodies with CRLF after the root's end tag (or nothing, for the query).
            assert length - parsed_length in (0, 2)


@pytest.mark.parametrize(("source", "index", "body"), ALL_BODIES, ids=[f"{n}-{i}" for n, i, _b in ALL_BODIES])
def test_every_interop_body_parses_cleanly(source: str, index: int, body: bytes) -> None:
    doc = m.parse(body)
    assert doc.root in m.ROOTS
    assert doc.cmd_type
    assert doc.sn is not None
    assert doc.repairs == []
    if doc.cmd_type != "Broadcast" or doc.root == "Response":
        assert doc.device_id.isdigit()
    # The tolerant reader must agree with expat on every real body.
    assert tree_shape(read_tolerant(decode_body(body).text)[0]) == tree_shape(doc.element)


def tree_shape(element: ET.Element) -> tuple[object, ...]:
    """A tree without insignificant whitespace, for comparing the two readers."""
    return (
        element.tag,
        sorted(element.attrib.items()),
        (element.text or "").strip(),
        tuple(tree_shape(child) for child in element),
    )


def test_non_standard_ids_pass_through_the_codec() -> None:
    # The FlyLab demo platform queries with a 16-digit ID; the codec carries it, GbId is the caller's check.
    queries = [m.parse(body) for body in bodies_in(DAHUA_REQUESTS.read_bytes())]
    odd = [doc.device_id for doc in queries if len(doc.device_id) != 20]
    assert odd == ["0000042001000001", "0000042001000001"]
    with pytest.raises(ValueError):
        GbId.parse(odd[0])


def find_body(source: str, root: str, cmd_type: str, contains: bytes = b"") -> bytes:
    bodies = dict(INTEROP_SOURCES)[source]
    for body in bodies:
        if (
            f"<{root}>".encode() in body
            and f"<CmdType>{cmd_type}</CmdType>".encode() in body
            and contains in body
        ):
            return body
    raise AssertionError(f"no {root} {cmd_type} in {source}")


def test_dahua_catalog_gb2312() -> None:
    doc = m.parse(find_body("dahua-raw", "Response", "Catalog", b"DeviceList"))
    assert doc.encoding == "GB2312"
    catalog = doc.typed()
    assert isinstance(catalog, m.CatalogResponse)
    assert (catalog.sn, catalog.sum_num, catalog.num, len(catalog.items)) == (1, 1, 1, 1)
    item = catalog.items[0]
    assert item.device_id == "34020000001320000001"
    assert (item.name, item.manufacturer, item.model) == ("IPC", "Dahua", "IPC-HDW2230C-A-V2")
    assert (item.civil_code, item.address, item.owner) == ("340200", "axy", "0")
    assert (item.parental, item.register_way, item.secrecy) == (0, 1, 0)
    assert item.parent_id == "34020000001320000001"
    assert item.online is True
    # Info fields and Dahua's own StreamNum
    assert item.ptz_type == 3
    assert item.download_speed == "1/2/4/8"
    assert item.extra == {"StreamNum": "2"}


def test_dahua_catalog_subscription_answer_is_a_result() -> None:
    answer = m.parse(find_body("dahua-raw", "Response", "Catalog", b"<Result>")).typed()
    assert isinstance(answer, m.ResultResponse)
    assert (answer.cmd_type, answer.sn, answer.ok) == ("Catalog", 2, True)


def test_hikvision_nvr_split_catalog_with_placeholders() -> None:
    doc = m.parse(find_body("hikvision-srs", "Response", "Catalog"))
    assert doc.encoding == "GB2312"  # declared in lower case: encoding="gb2312"
    catalog = doc.typed()
    assert isinstance(catalog, m.CatalogResponse)
    # first of several messages: 8 channels in total, 2 in this one
    assert (catalog.sn, catalog.sum_num, catalog.num, len(catalog.items)) == (419315752, 8, 2, 2)
    first, second = catalog.items
    assert (first.device_id, first.name, first.online) == ("34020000001320000001", "Camera 01", True)
    assert (second.device_id, second.name, second.online) == ("34020000001320000002", "IPCamera 02", False)
    # <Manufacturer>Manufacturer</Manufacturer>, <Owner>Owner</Owner>, <CivilCode>CivilCode</CivilCode>
    assert (first.manufacturer, first.owner, first.civil_code) == (None, None, None)
    assert first.model == "Camera"
    assert first.address == "192.168.254.18"
    assert doc.text("DeviceList/Item/Manufacturer") == "Manufacturer"  # the tree keeps what was sent


def test_exosip_catalog_null_placeholders_and_no_declaration() -> None:
    for source in ("exosip-txt", "exosip-pcapng"):
        doc = m.parse(find_body(source, "Response", "Catalog"))
        assert doc.encoding == "UTF-8"  # <?xml version="1.0"?> declares nothing
        catalog = doc.typed()
        assert isinstance(catalog, m.CatalogResponse)
        item = catalog.items[0]
        assert (item.device_id, item.name) == ("34010000001310000001", "Camera01")
        assert (item.manufacturer, item.model, item.owner, item.civil_code, item.address) == (None,) * 5
        assert (item.ip_address, item.port, item.status) == ("192.168.230.100", 5060, "ON")
        assert doc.text("DeviceList/Item/Model") == "null"


def test_exosip_keepalive() -> None:
    keepalive = m.parse(find_body("exosip-pcapng", "Notify", "Keepalive")).typed()
    assert isinstance(keepalive, m.KeepaliveNotify)
    assert keepalive.ok and keepalive.fault_devices == []


@needs_fixture(HIK_MD)
def test_hikvision_catalog_with_alarm_input() -> None:
    catalog = m.parse(find_body("hikvision-md", "Response", "Catalog")).typed()
    assert isinstance(catalog, m.CatalogResponse)
    camera, alarm_in = catalog.items
    assert camera.name == "hikangname"
    assert GbId.parse(camera.device_id).type_name == "camera"
    assert alarm_in.name is None  # <Name></Name>
    assert alarm_in.model == "AlarmIn"
    assert GbId.parse(alarm_in.device_id).type_name == "alarm input device"
    assert camera.civil_code == "3402000000"


@needs_fixture(HIK_MD)
def test_hikvision_preset_name_is_chinese_gb2312_on_the_wire() -> None:
    body = find_body("hikvision-md", "Response", "PresetQuery")
    # The capture's Content-Length is 258: that is the GB2312 size of this body (UTF-8 would be 261).
    assert len(body) + 1 == 258  # the body ends with a newline the extraction leaves out
    assert "预置点".encode("gb2312") in body and "预置点".encode() not in body
    doc = m.parse(body)
    presets = doc.typed()
    assert isinstance(presets, m.PresetQueryResponse)
    assert presets.num == 1
    assert presets.items == [m.PresetItem("1", "预置点 1")]


@needs_fixture(HIK_MD)
def test_hikvision_device_info_status_config() -> None:
    info = m.parse(find_body("hikvision-md", "Response", "DeviceInfo")).typed()
    assert isinstance(info, m.DeviceInfoResponse)
    assert (info.ok, info.device_name, info.manufacturer) == (True, "IP CAMERA", "Hikvision")
    assert (info.model, info.firmware, info.channel) == ("DS-2CD5024EFWD", "V5.5.85", 1)

    status = m.parse(find_body("hikvision-md", "Response", "DeviceStatus")).typed()
    assert isinstance(status, m.DeviceStatusResponse)
    assert (status.is_online, status.status, status.encode, status.record) == (True, "OK", "ON", "ON")
    assert status.device_time == "2025-04-22T11:14:23"
    assert status.alarm_status == [m.AlarmStatusItem("34020000001340000001", "ONDUTY")]

    config = m.parse(find_body("hikvision-md", "Response", "ConfigDownload")).typed()
    assert isinstance(config, m.ConfigDownloadResponse)
    assert (config.expiration, config.heart_beat_interval, config.heart_beat_count) == (3600, 30, 3)
    assert config.sections["BasicParam"]["SIPServerID"] == "34020000002000000001"
    assert "12345678" not in repr(config)  # the device's SIP password is in BasicParam


@needs_fixture(HIK_MD)
def test_hikvision_record_info_split() -> None:
    records = m.parse(find_body("hikvision-md", "Response", "RecordInfo")).typed()
    assert isinstance(records, m.RecordInfoResponse)
    assert (records.sum_num, records.num, records.name) == (134, 2, "hikangname")
    assert [r.file_size for r in records.items] == [263094272, 262488064]
    assert records.items[0].start_time == "2025-04-18T10:23:02"
    assert records.items[1].end_time == "2025-04-18T10:57:36"
    assert records.items[0].type == "time"
    assert m.parse_time(records.items[0].start_time) == datetime(2025, 4, 18, 10, 23, 2)


@needs_fixture(HIK_MD)
def test_hikvision_alarm_notify() -> None:
    alarm = m.parse(find_body("hikvision-md", "Notify", "Alarm")).typed()
    assert isinstance(alarm, m.AlarmNotify)
    assert (alarm.sn, alarm.device_id) == (99, "34020000001310000001")
    assert (alarm.alarm_priority, alarm.alarm_method, alarm.alarm_type) == (4, 5, 2)
    assert alarm.alarm_time == "2025-04-22T11:26:02"
    assert alarm.alarm_description is None and alarm.longitude is None


@needs_fixture(HIK_MD)
def test_hikvision_ptz_control_and_codes() -> None:
    control = m.parse(find_body("hikvision-md", "Control", "DeviceControl", b"A50F01029600004D")).typed()
    assert isinstance(control, m.DeviceControl)
    assert control.ptz_cmd == "A50F01029600004D"
    assert control.control_priority == 5
    assert not control.tele_boot
    code = m.PtzCmd.parse(control.ptz_cmd)
    assert (code.kind, code.instruction, code.data1) == ("ptz", 0x02, 0x96)  # left at speed 96H
    assert m.PtzCmd.move(pan=-1, pan_speed=0x96).serialize() == "A50F01029600004D"
    assert m.PtzCmd.stop().serialize() == "A50F0100000000B5"
    # the document's preset requests (6.6): set, delete and call preset 2
    assert m.PtzCmd.preset("set", 2).serialize() == "A50F018100020038"
    assert m.PtzCmd.preset("delete", 2).serialize() == "A50F01830002003A"
    assert m.PtzCmd.preset("call", 2).serialize() == "A50F018200020039"
    assert m.PtzCmd.parse("A50F018200020039").kind == "preset"


@needs_fixture(HIK_MD)
def test_single_line_standalone_broadcast_answer_and_gb18030_device() -> None:
    answer = m.parse(find_body("hikvision-md", "Response", "Broadcast")).typed()
    assert isinstance(answer, m.ResultResponse) and answer.ok
    notify = m.parse(find_body("hikvision-md", "Notify", "Broadcast"))
    assert (notify.device_id, notify.text("SourceID")) == ("", "34020000002000000001")
    snapshot = m.parse(find_body("hikvision-md", "Response", "DeviceConfig"))
    assert snapshot.encoding == "GB18030"
    assert isinstance(snapshot.typed(), m.ResultResponse)
    finished = m.parse(find_body("hikvision-md", "Notify", "UploadSnapShotFinished"))
    assert finished.typed() is None  # 2022 command: no typed form, tree intact
    assert finished.text("SnapShotList/SnapShotFileID") == "34020000001310000001022025081815045400000"


def test_dahua_dump_keeps_line_ends() -> None:
    dump = [body for _length, body in bodies_of_wireshark_dump(DAHUA_DUMP)]
    assert any(b"\r\n" in body for body in dump) and any(b"\r\n" not in body for body in dump)
    keepalives = [m.parse(body).typed() for body in dump if b"Keepalive" in body]
    assert keepalives and all(isinstance(k, m.KeepaliveNotify) and k.ok for k in keepalives)


# --- charsets ---------------------------------------------------------------------------------------------

# Code points from the GB2312 table (row 20 cell 83 and row 35 cell 69, each plus A0H): 大 B4F3, 门 C3C5.
DAMEN_GB2312 = b"\xb4\xf3\xc3\xc5"
# 堃 is not in GB2312; GBK has it at 88D2. 𠀀 (U+20000) exists only in GB18030, as a four-byte sequence.
KUN_GBK = b"\x88\xd2"
U20000_GB18030 = b"\x95\x32\x82\x36"


def keepalive_named(name: bytes, declaration: bytes = b'<?xml version="1.0" encoding="GB2312"?>') -> bytes:
    return (
        declaration + b"\r\n<Notify><CmdType>Keepalive</CmdType><SN>7</SN>"
        b"<DeviceID>34020000001320000001</DeviceID><Status>OK</Status><Name>" + name + b"</Name></Notify>"
    )


@pytest.mark.parametrize(
    "declaration",
    [
        b'<?xml version="1.0" encoding="GB2312"?>',
        b"<?xml version='1.0' encoding='gb2312'?>",
        b'<?xml version="1.0" encoding = "Gb2312" standalone="yes" ?>',
        b'  \r\n<?xml version="1.0" encoding="GBK"?>',
        b'<?xml version="1.0" encoding="GB18030"?>',
    ],
)
def test_declared_gb_charsets_decode_with_gb18030(declaration: bytes) -> None:
    text, encoding, replaced, declared = decode_body(keepalive_named(DAMEN_GB2312 + KUN_GBK, declaration))
    assert "<Name>大门堃</Name>" in text
    assert replaced == 0
    assert declared is not None and encoding == declared.upper()


def test_gb2312_label_with_characters_outside_gb2312() -> None:
    body = keepalive_named(DAMEN_GB2312 + KUN_GBK + U20000_GB18030)
    with pytest.raises(UnicodeDecodeError):
        body.decode("gb2312")  # what a decoder honouring the label literally would do
    doc = m.parse(body)
    assert doc.text("Name") == "大门堃\U00020000"
    assert doc.encoding == "GB2312"
    assert doc.repairs == []


def test_undeclared_bodies_try_utf8_then_gb18030() -> None:
    plain = keepalive_named("大门".encode(), b'<?xml version="1.0"?>')
    assert decode_body(plain)[:3] == (plain.decode(), "UTF-8", 0)
    gb = keepalive_named(DAMEN_GB2312, b"")
    text, encoding, replaced, declared = decode_body(gb)
    assert ("<Name>大门</Name>" in text, encoding, replaced, declared) == (True, "GB18030", 0, None)
    assert m.parse(gb).text("Name") == "大门"


def test_utf8_bom_and_unknown_label() -> None:
    assert decode_body(b"\xef\xbb\xbf" + keepalive_named("门".encode(), b""))[1] == "UTF-8"
    text, encoding, _replaced, declared = decode_body(
        keepalive_named(DAMEN_GB2312, b'<?xml version="1.0" encoding="x-no-such-charset"?>')
    )
    assert (encoding, declared) == ("GB18030", "x-no-such-charset")
    assert "大门" in text


def test_broken_bytes_are_replaced_counted_and_reported() -> None:
    body = keepalive_named(DAMEN_GB2312 + b"\xff" + DAMEN_GB2312)
    text, _encoding, replaced, _declared = decode_body(body)
    assert replaced == 1
    assert "大门\ufffd大门" in text
    doc = m.parse(body)
    assert doc.text("Name") == "大门\ufffd大门"
    assert doc.sn == 7
    assert any("undecodable" in repair for repair in doc.repairs)
    # A truncated UTF-8 sequence under a UTF-8 label
    utf8 = keepalive_named("大".encode()[:2] + "门".encode(), b'<?xml version="1.0" encoding="UTF-8"?>')
    assert decode_body(utf8).replaced >= 1
    name = m.parse(utf8).text("Name")
    assert name is not None and name.endswith("门")


def test_genuine_replacement_character_is_not_counted() -> None:
    body = keepalive_named("a\ufffdb".encode(), b'<?xml version="1.0" encoding="UTF-8"?>')
    assert decode_body(body).replaced == 0


def test_encode_body_gb2312_keeps_characters_outside_gb2312() -> None:
    doc = m.notify_alarm(
        5,
        "34020000001340000001",
        priority=1,
        method=2,
        time="2025-01-02T03:04:05",
        description="大门堃\U00020000",
    )
    body = m.encode_body(doc)
    assert body.startswith(b'<?xml version="1.0" encoding="GB2312"?>\n<Notify>')
    assert b"<AlarmDescription>" + DAMEN_GB2312 + KUN_GBK + U20000_GB18030 + b"</AlarmDescription>" in body
    assert m.parse(body).text("AlarmDescription") == "大门堃\U00020000"


def test_encode_body_in_the_devices_charset() -> None:
    request = m.parse(keepalive_named("门".encode(), b'<?xml version="1.0" encoding="utf-8"?>'))
    answer = m.encode_body(m.response_device_info(1, request.device_id, device_name="大门"), request.encoding)
    assert answer.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert "<DeviceName>大门</DeviceName>".encode() in answer
    ascii_body = m.encode_body(
        m.response_device_info(1, "34020000001320000001", device_name="大门"), "US-ASCII"
    )
    assert b"&#22823;&#38376;" in ascii_body
    assert m.parse(ascii_body).text("DeviceName") == "大门"
    with pytest.raises(LookupError):
        m.encode_body(request, "no-such-charset")


# --- hostile and broken input -----------------------------------------------------------------------------

CATALOG_HEAD = (
    '<?xml version="1.0" encoding="GB2312"?>\n<Response>\n<CmdType>Catalog</CmdType>\n<SN>3</SN>\n'
    "<DeviceID>34020000001110000001</DeviceID>\n<SumNum>2</SumNum>\n"
)

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE Notify [\n<!ENTITY lol "lol">\n'
    + b"".join(
        b'<!ENTITY lol%d "' % n + (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;") * 10 + b'">\n'
        for n in range(1, 10)
    )
    + b"]>\n<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>&lol9;</DeviceID></Notify>"
)


def test_entity_bomb_is_refused_without_expansion() -> None:
    started = time.perf_counter()
    with pytest.raises(m.ManscdpError) as caught:
        m.parse(BILLION_LAUGHS)
    assert "DOCTYPE" in caught.value.reason
    assert caught.value.status == 400
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE Notify [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN><DeviceID>&xxe;</DeviceID></Notify>",
        b'<!DOCTYPE Notify SYSTEM "http://127.0.0.1:1/evil.dtd"><Notify><CmdType>Keepalive</CmdType></Notify>',
        b"<!-- hidden --><!DOCTYPE Notify [<!ENTITY % p SYSTEM 'file:///etc/passwd'> %p;]><Notify/>",
        b"<Notify><CmdType>Keepalive</CmdType><!ENTITY x 'y'><SN>1</SN></Notify>",
        b"<Notify><CmdType>Keepalive</CmdType><SN>1</SN></Notify junk <!DOCTYPE x>",
        b"<!doctype notify><Notify><CmdType>Keepalive</CmdType></Notify>",
    ],
)
def test_external_entities_and_any_dtd_are_refused(body: bytes) -> None:
    with pytest.raises(m.ManscdpError) as caught:
        m.parse(body)
    assert "refused" in caught.value.reason


def test_entity_references_without_declaration_stay_text() -> None:
    doc = m.parse(keepalive_named(b"&xxe;&lol9;&amp;&lt;&#x5927;&#38376;"))
    assert doc.text("Name") == "&xxe;&lol9;&<大门"


def test_size_limit() -> None:
    big = keepalive_named(b"x" * (1024 * 1024))
    with pytest.raises(m.ManscdpError) as caught:
        m.parse(big)
    assert caught.value.status == 413
    assert str(len(big)) in caught.value.reason
    small = keepalive_named(b"x")
    assert m.parse(small, max_size=len(small)).sn == 7
    with pytest.raises(m.ManscdpError):
        m.parse(small, max_size=len(small) - 1)


def test_stray_ampersand_in_text() -> None:
    body = CATALOG_HEAD + (
        '<DeviceList Num="1"><Item><DeviceID>34020000001320000001</DeviceID><Name>A&B 大门&</Name>'
        "<Address>Gate & Co &amp; Sons</Address></Item></DeviceList>\n</Response>\n"
    )
    doc = m.parse(body.encode("gb18030"))
    catalog = doc.typed()
    assert isinstance(catalog, m.CatalogResponse)
    assert catalog.items[0].name == "A&B 大门&"
    assert catalog.items[0].address == "Gate & Co & Sons"
    assert doc.repairs == ["3 stray '&' kept as text"]


def test_broken_bytes_inside_a_catalog_item() -> None:
    body = (
        CATALOG_HEAD.encode()
        + b'<DeviceList Num="2"><Item><DeviceID>34020000001320000001</DeviceID><Name>'
        + DAMEN_GB2312[:3]
        + b"</Name><Status>ON</Status></Item><Item><DeviceID>34020000001320000002</DeviceID><Name>"
        + DAMEN_GB2312
        + b"\x01</Name></Item></DeviceList></Response>"
    )
    doc = m.parse(body)
    catalog = doc.typed()
    assert isinstance(catalog, m.CatalogResponse)
    assert [item.device_id for item in catalog.items] == ["34020000001320000001", "34020000001320000002"]
    assert catalog.items[0].status == "ON"
    assert catalog.items[1].name == "大门\ufffd"  # the control character XML forbids
    assert len(doc.repairs) >= 2


def test_unclosed_and_mismatched_tags_are_recovered() -> None:
    truncated = CATALOG_HEAD + (
        '<DeviceList Num="2"><Item><DeviceID>34020000001320000001</DeviceID><Name>a</Name></Item>'
        "<Item><DeviceID>34020000001320000002</DeviceID><Name>b</name>"
    )
    doc = m.parse(truncated.encode())
    catalog = doc.typed()
    assert isinstance(catalog, m.CatalogResponse)
    assert [(item.device_id, item.name) for item in catalog.items] == [
        ("34020000001320000001", "a"),
        ("34020000001320000002", "b"),
    ]
    assert catalog.sum_num == 2
    assert any("read tolerantly" in repair for repair in doc.repairs)
    assert any("left open" in repair for repair in doc.repairs)


def test_bare_less_than_and_unquoted_attribute() -> None:
    # The standard's own example (J.11.5) writes <Alarmstatus Num=2>.
    body = (
        b"<Response><CmdType>DeviceStatus</CmdType><SN>248</SN><DeviceID>34020000001130000001</DeviceID>"
        b"<Result>OK</Result><Online>ONLINE</Online><Reason>a<b</Reason><Alarmstatus Num=2>"
        b"<Item><DeviceID>34020000001340000001</DeviceID><DutyStatus>OFFDUTY</DutyStatus></Item>"
        b"<Item><DeviceID>34020000001340000002</DeviceID><DutyStatus>OFFDUTY</DutyStatus></Item>"
        b"</Alarmstatus></Response>"
    )
    doc = m.parse(body)
    status = doc.typed()
    assert isinstance(status, m.DeviceStatusResponse)
    assert status.reason == "a<b"
    assert [a.device_id for a in status.alarm_status] == ["34020000001340000001", "34020000001340000002"]
    assert doc.element.find("Alarmstatus").get("Num") == "2"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<Message><CmdType>Keepalive</CmdType><SN>1</SN></Message>", "<Message>"),
        (b"<html><body>502 Bad Gateway</body></html>", "<html>"),
        (b"<Notify><SN>1</SN></Notify>", "CmdType"),
        (b"<Notify><CmdType> </CmdType><SN>1</SN></Notify>", "CmdType"),
        (b"", "no XML element"),
        (b"hello", "no XML element"),
        (b"\xff\xfe\x00<", "no XML element"),
    ],
)
def test_unusable_bodies_raise_with_a_reason(body: bytes, fragment: str) -> None:
    with pytest.raises(m.ManscdpError) as caught:
        m.parse(body)
    assert fragment in caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_root_and_cmd_type_case_and_spaces() -> None:
    doc = m.parse(b"<notify><CmdType>keepalive </CmdType><SN>1</SN><DeviceID>1</DeviceID></notify>")
    assert (doc.root, doc.cmd_type) == ("Notify", "Keepalive")
    assert isinstance(doc.typed(), m.KeepaliveNotify)
    assert any("root <notify>" in repair for repair in doc.repairs)


@pytest.mark.parametrize(
    ("sn", "repair"),
    [(None, "SN missing"), (b"abc", "'abc'"), (b"-5", "'-5'"), (b"9" * 40, "not a number"), (b"", "''")],
)
def test_missing_or_bad_sn(sn: bytes | None, repair: str) -> None:
    sn_element = b"" if sn is None else b"<SN>" + sn + b"</SN>"
    doc = m.parse(b"<Notify><CmdType>Keepalive</CmdType>" + sn_element + b"<DeviceID>1</DeviceID></Notify>")
    assert doc.sn is None
    assert any(repair in r for r in doc.repairs)
    keepalive = doc.typed()
    assert isinstance(keepalive, m.KeepaliveNotify) and keepalive.sn is None


@pytest.mark.parametrize("well_formed", [True, False])
def test_deep_nesting_is_refused(well_formed: bool) -> None:
    depth = 5000
    inner = b"<a>" * depth + (b"</a>" * depth if well_formed else b"")
    with pytest.raises(m.ManscdpError) as caught:
        m.parse(b"<Notify><CmdType>Keepalive</CmdType>" + inner + b"</Notify>")
    assert "nested" in caught.value.reason


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    with contextlib.suppress(m.ManscdpError):
        m.parse(data)


REAL_CATALOG = find_body("hikvision-srs", "Response", "Catalog")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(REAL_CATALOG)), st.integers(0, 40), st.binary(max_size=6)), max_size=6
    )
)
def test_mutated_real_catalog_never_raises_anything_else(edits: list[tuple[int, int, bytes]]) -> None:
    body = REAL_CATALOG
    for position, cut, insert in edits:
        body = body[:position] + insert + body[position + cut :]
    try:
        doc = m.parse(body)
    except m.ManscdpError:
        return
    doc.typed()
    m.encode_body(doc)


# --- builders and round trips -----------------------------------------------------------------------------

DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"


def round_trip(doc: m.ManscdpDocument, encoding: str = "GB2312") -> m.ManscdpDocument:
    back = m.parse(m.encode_body(doc, encoding))
    assert (back.root, back.cmd_type, back.sn, back.device_id) == (
        doc.root,
        doc.cmd_type,
        doc.sn,
        doc.device_id,
    )
    assert back.repairs == []
    assert tree_shape(back.element) == tree_shape(doc.element)
    return back


def test_response_result_has_the_standard_shape() -> None:
    doc = m.response_result("DeviceControl", 10022, CHANNEL)
    assert [(child.tag, child.text) for child in doc.element] == [
        ("CmdType", "DeviceControl"),
        ("SN", "10022"),
        ("DeviceID", CHANNEL),
        ("Result", "OK"),
    ]
    answer = round_trip(doc).typed()
    assert isinstance(answer, m.ResultResponse) and answer.ok
    failed = round_trip(m.response_result("DeviceConfig", 3, CHANNEL, ok=False)).typed()
    assert isinstance(failed, m.ResultResponse) and not failed.ok and failed.result == "ERROR"


def test_queries_round_trip() -> None:
    assert round_trip(m.query_catalog(1, DEVICE)).text("StartTime") is None
    timed = round_trip(
        m.query_catalog(2, DEVICE, start_time=datetime(2025, 1, 2, 3, 4, 5), end_time="2025-01-03T00:00:00")
    )
    assert (timed.text("StartTime"), timed.text("EndTime")) == ("2025-01-02T03:04:05", "2025-01-03T00:00:00")
    assert round_trip(m.query_device_info(3, DEVICE)).cmd_type == "DeviceInfo"
    assert round_trip(m.query_device_status(4, DEVICE)).cmd_type == "DeviceStatus"
    record = round_trip(
        m.query_record_info(5, CHANNEL, datetime(2025, 4, 18), datetime(2025, 4, 19, 23, 59, 59), secrecy=0)
    )
    assert [child.tag for child in record.element] == [
        "CmdType",
        "SN",
        "DeviceID",
        "StartTime",
        "EndTime",
        "Secrecy",
        "Type",
    ]
    assert (record.text("StartTime"), record.text("Type")) == ("2025-04-18T00:00:00", "all")
    assert round_trip(m.query_preset(6, CHANNEL)).cmd_type == "PresetQuery"
    config = round_trip(m.query_config_download(7, DEVICE, ["BasicParam", "VideoParamOpt"]))
    assert config.text("ConfigType") == "BasicParam/VideoParamOpt"
    assert round_trip(m.query_mobile_position(8, DEVICE, interval=5)).text("Interval") == "5"
    alarm = round_trip(
        m.query_alarm(9, CHANNEL, start_priority=0, end_priority=0, method="0", alarm_type="all")
    )
    assert (alarm.text("StartAlarmPriority"), alarm.text("AlarmType")) == ("0", "all")


def test_controls_round_trip() -> None:
    ptz = round_trip(
        m.control_ptz(10, CHANNEL, m.PtzCmd.move(pan=1, tilt=1, zoom=-1), control_priority=5)
    ).typed()
    assert isinstance(ptz, m.DeviceControl)
    assert ptz.control_priority == 5
    assert ptz.ptz_cmd is not None and m.PtzCmd.parse(ptz.ptz_cmd).instruction == 0x29  # A.5 example 8
    assert isinstance(boot := round_trip(m.control_tele_boot(11, DEVICE)).typed(), m.DeviceControl)
    assert boot.tele_boot and boot.ptz_cmd is None
    record = round_trip(m.control_record(12, CHANNEL, record=False)).typed()
    assert isinstance(record, m.DeviceControl) and record.record_cmd == "StopRecord"
    guard = round_trip(m.control_guard(13, CHANNEL, guard=True)).typed()
    assert isinstance(guard, m.DeviceControl) and guard.guard_cmd == "SetGuard"
    reset = round_trip(m.control_alarm_reset(14, CHANNEL, alarm_method="2", alarm_type="1")).typed()
    assert isinstance(reset, m.DeviceControl)
    assert (reset.alarm_cmd, reset.alarm_method, reset.alarm_type) == ("ResetAlarm", "2", "1")
    iframe = round_trip(m.control_iframe(15, CHANNEL))
    assert iframe.text("IFameCmd") == "Send"
    assert isinstance(typed_iframe := iframe.typed(), m.DeviceControl) and typed_iframe.iframe
    box = m.DragZoom(1920, 1080, 960, 540, 100, 80)
    zoom = round_trip(m.control_drag_zoom(16, CHANNEL, box, zoom_in=False)).typed()
    assert isinstance(zoom, m.DeviceControl) and zoom.drag_zoom_out == box and zoom.drag_zoom_in is None
    home = round_trip(m.control_home_position(17, CHANNEL, m.HomePosition(1, 30, 2))).typed()
    assert isinstance(home, m.DeviceControl) and home.home_position == m.HomePosition(1, 30, 2)
    config = round_trip(
        m.device_config(18, DEVICE, {"BasicParam": {"Name": "大门", "HeartBeatInterval": 60}})
    )
    assert (config.text("BasicParam/Name"), config.text("BasicParam/HeartBeatInterval")) == ("大门", "60")


def test_notifies_round_trip() -> None:
    keepalive = round_trip(m.notify_keepalive(20, DEVICE, ok=False, fault_devices=[CHANNEL])).typed()
    assert isinstance(keepalive, m.KeepaliveNotify)
    assert (keepalive.ok, keepalive.fault_devices) == (False, [CHANNEL])
    alarm = round_trip(
        m.notify_alarm(
            21,
            "34020000001340000001",
            priority=1,
            method=5,
            time=datetime(2025, 4, 22, 11, 26, 2),
            description="周界入侵",
            longitude=117.2271,
            latitude=31.8206,
            alarm_type=6,
            event_type=1,
        ),
        "UTF-8",
    ).typed()
    assert alarm == m.AlarmNotify(
        21, "34020000001340000001", 1, 5, "2025-04-22T11:26:02", "周界入侵", 117.2271, 31.8206, 6, 1
    )
    broadcast = round_trip(m.notify_broadcast(22, "34020000002000000001", CHANNEL))
    assert (broadcast.device_id, broadcast.text("TargetID")) == ("", CHANNEL)
    media = round_trip(m.notify_media_status(23, CHANNEL)).typed()
    assert isinstance(media, m.MediaStatusNotify) and media.end_of_file


def test_device_answers_round_trip() -> None:
    info = round_trip(
        m.response_device_info(
            30, DEVICE, device_name="网关", manufacturer="x", model="gw", firmware="1", channel=4
        )
    ).typed()
    assert info == m.DeviceInfoResponse(30, DEVICE, "OK", "网关", "x", "gw", "1", 4)
    status = round_trip(
        m.response_device_status(
            31,
            DEVICE,
            online=True,
            encode=True,
            record=False,
            device_time="2025-01-01T00:00:00",
            alarm_status=[m.AlarmStatusItem("34020000001340000001", "ALARM")],
        )
    ).typed()
    assert isinstance(status, m.DeviceStatusResponse)
    assert (status.is_online, status.status, status.encode, status.record) == (True, "OK", "ON", "OFF")
    assert status.alarm_status == [m.AlarmStatusItem("34020000001340000001", "ALARM")]


def test_catalog_pages_and_notify() -> None:
    items = [m.CatalogItem(f"3402000000131000000{n}", name=f"通道{n}", status="ON") for n in range(7)]
    pages = m.catalog_pages(40, DEVICE, items, per_page=3)
    typed = [round_trip(page).typed() for page in pages]
    assert all(isinstance(page, m.CatalogResponse) for page in typed)
    assert [(p.sum_num, p.num, len(p.items)) for p in typed] == [(7, 3, 3), (7, 3, 3), (7, 1, 1)]  # type: ignore[union-attr]
    assert [i for p in typed for i in p.items] == items  # type: ignore[union-attr]
    empty = round_trip(m.catalog_pages(41, DEVICE, [], per_page=3)[0]).typed()
    assert isinstance(empty, m.CatalogResponse) and (empty.sum_num, empty.num, empty.items) == (0, 0, [])
    change = m.CatalogItem(CHANNEL, event="DEL")
    notified = round_trip(m.notify_catalog(42, DEVICE, [change])).typed()
    assert isinstance(notified, m.CatalogNotify) and notified.items == [change]
    with pytest.raises(ValueError):
        m.catalog_pages(43, DEVICE, items, per_page=0)


def test_standard_catalog_notify_example() -> None:
    # J.22.5 of the standard, trailing space in Event included.
    body = (
        '<?xml version="1.0"?>\n<Notify>\n  <CmdType>Catalog</CmdType>\n  <SN>213</SN>\n'
        '  <DeviceID>65010200002000000001</DeviceID>\n  <SumNum>2</SumNum>\n  <DeviceList Num="2">\n'
        "    <Item>\n      <DeviceID>65010200001320000001</DeviceID>\n      <Event>OFF </Event>\n    </Item>\n"
        "    <Item>\n      <DeviceID>65010200001320000002</DeviceID>\n      <Event>OFF </Event>\n   </Item>\n"
        "  </DeviceList>\n</Notify>"
    )
    notify = m.parse(body.encode()).typed()
    assert isinstance(notify, m.CatalogNotify)
    assert [(item.device_id, item.event) for item in notify.items] == [
        ("65010200001320000001", "OFF"),
        ("65010200001320000002", "OFF"),
    ]


@needs_fixture(HIK_MD)
def test_with_header_relays_under_a_new_sn() -> None:
    original = m.parse(find_body("hikvision-md", "Query", "RecordInfo"))
    relayed = original.with_header(sn=5, device_id="34020000001310000009")
    assert (relayed.sn, relayed.device_id, relayed.text("SN")) == (5, "34020000001310000009", "5")
    assert relayed.text("StartTime") == "2025-04-18T00:00:00"
    assert (original.sn, original.text("SN")) == (10035, "10035")
    bare = m.build("Query", "Catalog", None, None).with_header(sn=9, device_id=DEVICE)
    assert [child.tag for child in bare.element] == ["CmdType", "SN", "DeviceID"]


def test_builder_refuses_what_manscdp_cannot_say() -> None:
    with pytest.raises(ValueError):
        m.build("Message", "Keepalive", 1, DEVICE)
    with pytest.raises(TypeError):
        m.build("Notify", "Keepalive", 1, DEVICE, [("Status", True)])


def test_builder_text_is_always_valid_xml() -> None:
    doc = m.build("Notify", "Alarm", 1, DEVICE, [("AlarmDescription", "a\x00b<c>&d\"e'")])
    back = m.parse(m.encode_body(doc))
    assert back.text("AlarmDescription") == "a\ufffdb<c>&d\"e'"


def test_placeholders() -> None:
    assert m.is_placeholder("Manufacturer", "Manufacturer")
    assert m.is_placeholder("Owner", " owner ")
    assert m.is_placeholder("Model", "NULL")
    assert m.is_placeholder("Name", "")
    assert not m.is_placeholder("Model", "Camera")
    assert not m.is_placeholder("Owner", "0")


# --- PTZ codes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("A50F01029600004E", "checksum"),
        ("A50F010296000", "hexadecimal"),
        ("A50F0102960000", "8 bytes"),
        ("B50F01029600005D", "A5"),
        ("A50E01029600004C", "check nibble"),
    ],
)
def test_bad_ptz_codes(code: str, reason: str) -> None:
    with pytest.raises(m.ManscdpError) as caught:
        m.PtzCmd.parse(code)
    assert reason in caught.value.reason


def test_ptz_helpers() -> None:
    assert m.PtzCmd.focus_iris(focus=1, iris=-1).instruction == 0x49  # A.7 example 6
    assert m.PtzCmd.focus_iris().kind == "fi"
    assert m.PtzCmd.move(zoom=1).instruction == 0x10
    assert m.PtzCmd.move(tilt=-1).instruction == 0x04
    assert m.PtzCmd(0x84, 1, 2).kind == "cruise"
    assert m.PtzCmd(0x89, 1, 0).kind == "scan"
    assert m.PtzCmd(0x8C, 1).kind == "auxiliary"
    assert m.PtzCmd(0xF0).kind == "unknown"
    with pytest.raises(ValueError):
        m.PtzCmd.preset("jump", 1)
    with pytest.raises(ValueError):
        m.PtzCmd.preset("call", 0)
    with pytest.raises(ValueError):
        m.PtzCmd(0x100).serialize()


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 15),
    st.integers(0, 0xFFF),
)
def test_ptz_codes_round_trip(instruction: int, data1: int, data2: int, data3: int, address: int) -> None:
    code = m.PtzCmd(instruction, data1, data2, data3, address)
    text = code.serialize()
    assert len(text) == 16 and text.startswith("A50F")
    assert sum(bytes.fromhex(text)[:7]) % 256 == int(text[14:], 16)
    assert m.PtzCmd.parse(text) == code


# --- hypothesis: catalogs with Chinese names through every charset ------------------------------------------

# CJK ideographs inside and outside GB2312, one astral character, letters, digits and markup characters.
NAME_ALPHABET = st.one_of(
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.sampled_from(["堃", "喆", "镕", "\U00020000", "&", "<", ">", '"', "'", " ", "-", "号", "门"]),
    st.characters(min_codepoint=0x30, max_codepoint=0x7A, categories=["Lu", "Ll", "Nd"]),
)
NAMES = st.text(NAME_ALPHABET, min_size=1, max_size=16).filter(
    lambda s: s == s.strip() and not m.is_placeholder("Name", s)
)
IDS = st.text("0123456789", min_size=20, max_size=20)
COORDINATES = st.floats(-180, 180, allow_nan=False).map(lambda v: round(v, 6))

CATALOG_ITEMS = st.builds(
    m.CatalogItem,
    device_id=IDS,
    name=NAMES,
    manufacturer=st.none() | NAMES.filter(lambda s: not m.is_placeholder("Manufacturer", s)),
    civil_code=st.none() | st.sampled_from(["34", "3402", "340201", "34020105"]),
    address=st.none() | NAMES.filter(lambda s: not m.is_placeholder("Address", s)),
    parental=st.none() | st.integers(0, 1),
    parent_id=st.none() | IDS,
    port=st.none() | st.integers(1, 65535),
    password=st.none() | st.text("abc123", min_size=1, max_size=8),
    status=st.none() | st.sampled_from(["ON", "OFF"]),
    longitude=st.none() | COORDINATES,
    latitude=st.none() | COORDINATES,
    ptz_type=st.none() | st.integers(1, 4),
    business_group_id=st.none() | IDS,
    event=st.none() | st.sampled_from(["ON", "OFF", "VLOST", "DEFECT", "ADD", "DEL", "UPDATE"]),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(CATALOG_ITEMS, max_size=8),
    st.sampled_from(["GB2312", "GBK", "GB18030", "UTF-8"]),
    st.integers(1, 2**32),
)
def test_catalog_items_round_trip_through_every_charset(
    items: list[m.CatalogItem], charset: str, sn: int
) -> None:
    body = m.encode_body(m.response_catalog(sn, DEVICE, items), charset)
    doc = m.parse(body)
    assert doc.encoding == charset
    assert doc.repairs == []
    catalog = doc.typed()
    assert isinstance(catalog, m.CatalogResponse)
    assert (catalog.sn, catalog.sum_num, catalog.num) == (sn, len(items), len(items))
    assert catalog.items == items
    # and the tolerant reader reads our output the same way expat does
    assert tree_shape(read_tolerant(decode_body(body).text)[0]) == tree_shape(doc.element)


def test_catalog_item_repr_hides_the_password() -> None:
    assert "s3cret" not in repr(m.CatalogItem(DEVICE, password="s3cret"))


def test_readers_agree_on_the_reference_catalog() -> None:
    text = decode_body(REAL_CATALOG).text
    fast, fast_repairs = read_element(text)
    slow, _slow_repairs = read_tolerant(text)
    assert fast_repairs == []
    assert tree_shape(fast) == tree_shape(slow)


# ---------------------------------------------------------------------------------------------------------
# The field-table reader every typed message uses

TABLE = FieldTable(
    ("device_id", "DeviceID", as_id),
    ("name", "Name", as_str),
    ("note", "Note", as_raw),
    ("count", "Count", as_int),
    ("ratio", "Ratio", as_float),
    ("boot", "TeleBoot", as_present),
    # Two spellings of one element: the first one present wins.
    ("iframe", "IFameCmd", as_present),
    ("iframe", "IFrameCmd", as_present),
)
NOTHING = {
    "device_id": "",
    "name": None,
    "note": None,
    "count": None,
    "ratio": None,
    "boot": False,
    "iframe": False,
}


def fields_of(
    xml: str, scope: Scope = Scope.CHILDREN, extra: dict[str, str] | None = None
) -> dict[str, object]:
    return read_fields(ET.fromstring(xml), TABLE, scope, extra=extra)


def test_field_table_reads_every_attribute_even_when_nothing_is_there() -> None:
    assert fields_of("<Item/>") == NOTHING
    assert read_fields(None, TABLE) == NOTHING
    assert fields_of("<Item><Other>1</Other></Item>") == NOTHING


def test_field_table_reads_values_and_strips_them() -> None:
    found = fields_of(
        "<Item><DeviceID> 34020000001320000001 </DeviceID><Name> Gate </Name><Note> x </Note>"
        "<Count> 42 </Count><Ratio>1.5</Ratio><TeleBoot/><IFrameCmd>Send</IFrameCmd></Item>"
    )
    assert found == {
        "device_id": "34020000001320000001",
        "name": "Gate",
        "note": "x",
        "count": 42,
        "ratio": 1.5,
        "boot": True,
        "iframe": True,
    }


@pytest.mark.parametrize(
    "placeholder", ["", "   ", "null", "NULL", "(null)", "None", "nil", "n/a", "Name", "name"]
)
def test_field_table_reads_placeholders_as_none(placeholder: str) -> None:
    assert fields_of(f"<Item><Name>{placeholder}</Name></Item>")["name"] is None


def test_raw_fields_keep_words_that_look_like_placeholders() -> None:
    # Status "Note" or a password "null" are values; only an empty element is nothing.
    assert fields_of("<Item><Note>Note</Note></Item>")["note"] == "Note"
    assert fields_of("<Item><Note>null</Note></Item>")["note"] == "null"
    assert fields_of("<Item><Note>  </Note></Item>")["note"] is None
    assert fields_of("<Item><DeviceID/></Item>")["device_id"] == ""


@pytest.mark.parametrize(
    ("text", "count", "ratio"),
    [
        ("7", 7, 7.0),
        ("-3", -3, -3.0),
        ("+7", 7, 7.0),
        ("abc", None, None),
        ("1.5", None, 1.5),
        ("1e400", None, None),
        ("nan", None, None),
        ("inf", None, None),
        ("9" * 30, None, 1e30),  # too long for an int, a float all the same
        ("\u0663", None, 3.0),  # an Arabic-Indic digit: int() would take it, a device means nothing by it
        ("null", None, None),
        ("1" * 41, None, None),
    ],
)
def test_field_table_reads_bad_numbers_as_none(text: str, count: int | None, ratio: float | None) -> None:
    found = fields_of(f"<Item><Count>{text}</Count><Ratio>{text}</Ratio></Item>")
    assert (found["count"], found["ratio"]) == (count, ratio)


def test_field_table_first_occurrence_wins_even_when_it_is_a_placeholder() -> None:
    assert fields_of("<Item><Name>null</Name><Name>Gate</Name></Item>")["name"] is None
    assert fields_of("<Item><Count>1</Count><Count>2</Count></Item>")["count"] == 1
    assert fields_of("<Item><IFameCmd/><IFrameCmd/></Item>")["iframe"] is True


def test_field_table_scopes() -> None:
    nested = "<Item><Info><Count>3</Count></Info><Count>4</Count><Wrap><Name>Gate</Name></Wrap></Item>"
    assert fields_of(nested)["count"] == 4
    assert fields_of(nested)["name"] is None
    assert fields_of(nested, Scope.SUBTREE)["count"] == 3
    assert fields_of(nested, Scope.SUBTREE)["name"] == "Gate"
    # LEAVES skips an element that has children of its own; SUBTREE takes it (and finds no number in it).
    parent = "<Item><Count><Sub>1</Sub></Count><Info><Count>5</Count></Info></Item>"
    assert fields_of(parent, Scope.LEAVES)["count"] == 5
    assert fields_of(parent, Scope.SUBTREE)["count"] is None


def test_field_table_keeps_elements_it_does_not_name() -> None:
    extra: dict[str, str] = {}
    fields_of(
        "<Item><StreamNum> 2 </StreamNum><StreamNum>3</StreamNum><Blank> </Blank><Name>Gate</Name>"
        "<Info><Vendor>x</Vendor></Info></Item>",
        Scope.SUBTREE,
        extra,
    )
    assert extra == {"StreamNum": "2", "Vendor": "x"}


def test_typed_messages_read_their_tables_tolerantly() -> None:
    doc = m.parse(
        b"<Response><CmdType>DeviceInfo</CmdType><SN>1</SN><DeviceID>34020000001320000001</DeviceID>"
        b"<Result>OK</Result><DeviceName>null</DeviceName><Manufacturer>Manufacturer</Manufacturer>"
        b"<Channel>many</Channel></Response>"
    )
    info = doc.typed()
    assert isinstance(info, m.DeviceInfoResponse)
    assert (info.ok, info.device_name, info.manufacturer, info.model, info.channel) == (
        True,
        None,
        None,
        None,
        None,
    )
    zoom = ET.fromstring(
        "<DragZoomIn><Length>1</Length><Width>2</Width><MidPointX>x</MidPointX></DragZoomIn>"
    )
    assert m.DragZoom.from_element(zoom) is None

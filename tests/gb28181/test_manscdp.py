"""MANSCDP codec: every real body in shared/interop, charsets, hostile input, builders, PTZ codes."""

from __future__ import annotations

import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gb28181 import manscdp as m
from gb28181.ids import GbId
from gb28181.xmltext import decode_body, read_element, read_tolerant

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
INTEROP = SHARED / "interop"
HIK_MD = INTEROP / "hikvision" / "codeindex-32433344081_feiyangqingyun_hik-IPC_DS-2CD5024EFWD_full-exchange.md"
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
    ("hikvision-md", wire_bodies_of_markdown(HIK_MD)),
    ("hikvision-srs", bodies_in(SRS_TXT.read_bytes())),
    ("dahua-raw", bodies_in(DAHUA_RAW.read_bytes())),
    ("dahua-dump", [body for _length, body in bodies_of_wireshark_dump(DAHUA_DUMP)]),
    ("dahua-requests", bodies_in(DAHUA_REQUESTS.read_bytes())),
    ("dahua-catalogs", bodies_in(DAHUA_CATALOGS.read_bytes())),
    ("exosip-txt", bodies_in(EXOSIP_TXT.read_bytes()) + bodies_in(EXOSIP_REG_TXT.read_bytes())),
    ("exosip-pcapng", bodies_in(EXOSIP_PCAP.read_bytes()) + bodies_in(EXOSIP_REG_PCAP.read_bytes())),
]
ALL_BODIES = [(name, index, body) for name, bodies in INTEROP_SOURCES for index, body in enumerate(bodies)]


def test_extraction_finds_every_declared_body() -> None:
    # Every body in these sources starts with an XML declaration, so counting declarations in the raw
    # files independently tells how many bodies there are.
    counts = dict((name, len(bodies)) for name, bodies in INTEROP_SOURCES)
    assert counts["hikvision-md"] == HIK_MD.read_bytes().count(b"<?xml") == 22
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
        if f"<{root}>".encode() in body and f"<CmdType>{cmd_type}</CmdType>".encode() in body and contains in body:
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


def test_hikvision_record_info_split() -> None:
    records = m.parse(find_body("hikvision-md", "Response", "RecordInfo")).typed()
    assert isinstance(records, m.RecordInfoResponse)
    assert (records.sum_num, records.num, records.name) == (134, 2, "hikangname")
    assert [r.file_size for r in records.items] == [263094272, 262488064]
    assert records.items[0].start_time == "2025-04-18T10:23:02"
    assert records.items[1].end_time == "2025-04-18T10:57:36"
    assert records.items[0].type == "time"
    assert m.parse_time(records.items[0].start_time) == datetime(2025, 4, 18, 10, 23, 2)


def test_hikvision_alarm_notify() -> None:
    alarm = m.parse(find_body("hikvision-md", "Notify", "Alarm")).typed()
    assert isinstance(alarm, m.AlarmNotify)
    assert (alarm.sn, alarm.device_id) == (99, "34020000001310000001")
    assert (alarm.alarm_priority, alarm.alarm_method, alarm.alarm_type) == (4, 5, 2)
    assert alarm.alarm_time == "2025-04-22T11:26:02"
    assert alarm.alarm_description is None and alarm.longitude is None


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
    assert m.parse(utf8).text("Name", ).endswith("门")  # type: ignore[union-attr]


def test_genuine_replacement_character_is_not_counted() -> None:
    body = keepalive_named("a\ufffdb".encode(), b'<?xml version="1.0" encoding="UTF-8"?>')
    assert decode_body(body).replaced == 0


def test_encode_body_gb2312_keeps_characters_outside_gb2312() -> None:
    doc = m.notify_alarm(
        5, "34020000001340000001", priority=1, method=2, time="2025-01-02T03:04:05", description="大门堃\U00020000"
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
    ascii_body = m.encode_body(m.response_device_info(1, "34020000001320000001", device_name="大门"), "US-ASCII")
    assert b"&#22823;&#38376;" in ascii_body
    assert m.parse(ascii_body).text("DeviceName") == "大门"
    with pytest.raises(LookupError):
        m.encode_body(request, "no-such-charset")

"""Every SIP message of the real-device material in tests/fixtures/interop parses with the right method/status.

Three kinds of source:
- byte-exact: hikvision/srs_utest/*.sip and pcap/*.sip.txt (payloads cut by their ``len=`` marker);
- reconstructed or transcribed text: dahua/FlyLab_* (bare LF, whitespace may differ from the wire),
  hikvision/*.txt and the codeindex .md (messages inside comments and code blocks).

For text sources, line ends and the body's charset are not recorded, so the body is rebuilt the way its
Content-Length says it was sent: LF or CRLF line ends, with or without a final line end, in the charset
its XML declaration names. Where no such form matches, the transcription lost bytes; the message is then
parsed with Content-Length set to the body's length, and the tests list those messages by name.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from wire import FIXTURES, needs_fixture

from gbgw.sip.message import Request, Response, parse_message

INTEROP = FIXTURES / "interop"
HIKVISION = INTEROP / "hikvision"
DAHUA = INTEROP / "dahua"
PCAP = INTEROP / "pcap"

START_LINE = re.compile(r"^\s*(?:[A-Za-z!%*_+`'~.-]+ sips?:\S+ SIP/2\.0|SIP/2\.0 \d{3}(?: .*)?)\s*$")
HEADER_LINE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9-]*\s*:")
# Lines of the surrounding document: comments, code fences, section markers, notes.
NOT_SIP = re.compile(r"^\s*(?://|```|=====|#|<!--|-->|\()")
CONTENT_LENGTH = re.compile(r"^(?:content-length|l)\s*:\s*(\d+)\s*$", re.IGNORECASE)
XML_ENCODING = re.compile(r"""<\?xml[^>]*encoding\s*=\s*["']([\w-]+)["']""")


@dataclass
class Received:
    data: bytes
    where: str
    length_fixed: bool = False

    def parse(self) -> Request | Response:
        return parse_message(self.data)


def summary(msg: Request | Response) -> str:
    return msg.method if isinstance(msg, Request) else f"{msg.status}"


# -- text sources -----------------------------------------------------------------------------------------


def transcribed(text: str, where: str) -> list[Received]:
    """The messages written out in a text document, one per start line."""
    lines = text.splitlines()
    found: list[Received] = []
    i = 0
    while i < len(lines):
        if not START_LINE.match(lines[i]):
            i += 1
            continue
        head = [lines[i].strip()]
        i += 1
        while i < len(lines) and lines[i].strip() and not START_LINE.match(lines[i]):
            if NOT_SIP.match(lines[i]):
                # A comment between two header lines annotates the message; anywhere else it ends it.
                if i + 1 < len(lines) and HEADER_LINE.match(lines[i + 1]) and lines[i].lstrip().startswith("//"):
                    i += 1
                    continue
                break
            head.append(lines[i].strip())
            i += 1
        body: list[str] = []
        if i < len(lines) and not lines[i].strip():
            i += 1
            while i < len(lines) and not START_LINE.match(lines[i]) and not NOT_SIP.match(lines[i]):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():
                body.pop()
        found.append(rebuild(head, body, f"{where}: {head[0]}"))
    return found


def rebuild(head: list[str], body: list[str], where: str) -> Received:
    declared = next((int(m.group(1)) for line in head if (m := CONTENT_LENGTH.match(line))), None)
    if not body:
        return Received("\r\n".join(head).encode() + b"\r\n\r\n", where)
    text = "\n".join(body)
    declaration = XML_ENCODING.search(text)
    charset = declaration.group(1) if declaration else "utf-8"
    for eol in ("\n", "\r\n"):
        for final in (eol, ""):
            candidate = text.replace("\n", eol).encode(charset) + final.encode()
            if len(candidate) == declared:
                return Received(eol.join(head).encode() + (eol + eol).encode() + candidate, where)
    # The transcription lost or added bytes: take the body as SIP writes it and make the length match.
    candidate = text.replace("\n", "\r\n").encode(charset) + b"\r\n"
    head = [f"Content-Length: {len(candidate)}" if CONTENT_LENGTH.match(line) else line for line in head]
    return Received("\r\n".join(head).encode() + b"\r\n\r\n" + candidate, where, length_fixed=True)


def marked_segments(path: Path) -> list[Received]:
    """Dahua's reconstruction: one message per ``##### src -> dst`` section, a blank line after each."""
    sections = re.split(r"^##### [^\n]*\n", path.read_text("utf-8"), flags=re.MULTILINE)
    assert sections[0] == ""
    found: list[Received] = []
    for n, section in enumerate(sections[1:]):
        (message,) = transcribed(section, f"{path.name} #{n + 1}")
        found.append(message)
    return found


# -- byte-exact sources -----------------------------------------------------------------------------------


def pcap_payloads(path: Path) -> list[Received]:
    """The dump's payloads: each ``##### ... len=N`` line is followed by exactly N bytes."""
    data = path.read_bytes()
    found: list[Received] = []
    for n, marker in enumerate(re.finditer(rb"^##### [^\n]* len=(\d+)\n", data, re.MULTILINE)):
        payload = data[marker.end() : marker.end() + int(marker.group(1))]
        assert data[marker.end() + len(payload) : marker.end() + len(payload) + 1] == b"\n"
        found.append(Received(payload, f"{path.name} #{n + 1}"))
    return found


# -- what every message must satisfy --------------------------------------------------------------------


def assert_sound(messages: list[Received]) -> list[Request | Response]:
    """Each parses; requests pass the server's checks; key headers agree; the body is Content-Length long
    and is kept as bytes; a response's CSeq method is that of the request it answers, when present."""
    parsed: list[Request | Response] = []
    # An ACK shares its INVITE's CSeq number, so one number may name two methods.
    requests: dict[tuple[str | None, int], set[str]] = {}
    for received in messages:
        msg = received.parse()
        assert msg.call_id, received.where
        cseq = msg.cseq
        if isinstance(msg, Request):
            msg.check()
            msg.check_addresses()
            assert cseq.method == msg.method, received.where
            requests.setdefault((msg.call_id, cseq.seq), set()).add(msg.method)
        msg.via  # noqa: B018 - parsing is the check
        msg.from_  # noqa: B018
        msg.to  # noqa: B018
        declared = re.search(rb"^(?:Content-Length|l)\s*:\s*(\d+)", received.data, re.IGNORECASE | re.MULTILINE)
        assert len(msg.body) == (int(declared.group(1)) if declared else 0), received.where
        assert isinstance(msg.body, bytes)
        assert received.data.endswith(msg.body)
        parsed.append(msg)
    for msg in parsed:
        if isinstance(msg, Response) and (msg.call_id, msg.cseq.seq) in requests:
            assert msg.cseq.method in requests[(msg.call_id, msg.cseq.seq)]
    return parsed


def counts(parsed: list[Request | Response]) -> Counter[str]:
    return Counter(summary(msg) for msg in parsed)


# -- Hikvision: SRS unit-test messages (byte exact) -------------------------------------------------------

SRS_UTEST = {
    "ProtocolGbSipTest_GbRegisterRequest": ("REGISTER", 0),
    "ProtocolGbSipTest_GbRegisterResponse": ("200", 0),
    "ProtocolGbSipTest_GbInviteRequest": ("INVITE", 168),
    "ProtocolGbSipTest_GbTringResponse": ("100", 0),
    "ProtocolGbSipTest_Gb200OkResponse": ("200", 205),
    "ProtocolGbSipTest_GbAckRequest": ("ACK", 0),
}


def test_srs_utest_messages() -> None:
    files = {path.stem: path for path in (HIKVISION / "srs_utest").glob("*.sip")}
    assert set(files) == set(SRS_UTEST)
    for stem, (kind, body_length) in SRS_UTEST.items():
        data = files[stem].read_bytes()
        (msg,) = assert_sound([Received(data, stem)])
        assert (summary(msg), len(msg.body)) == (kind, body_length)
        assert msg.serialize() == data, "byte-exact canonical messages must be written back unchanged"
    invite = parse_message(files["ProtocolGbSipTest_GbInviteRequest"].read_bytes())
    assert invite.via.transport == "TCP" and invite.via.params["rport"] is None
    assert invite.get("Subject") == "34020000001320000001:0200007585,34020000002000000001:0"
    ok = parse_message(files["ProtocolGbSipTest_Gb200OkResponse"].read_bytes())
    assert ok.via.params["rport"] == "5060" and b"a=setup:active\r\n" in ok.body


# -- pcap dumps (byte exact) ------------------------------------------------------------------------------


def test_pcap_register_with_digest() -> None:
    messages = pcap_payloads(PCAP / "GB28181.Solution_reg-auth.sip.txt")
    parsed = assert_sound(messages)
    assert counts(parsed) == Counter({"REGISTER": 3, "401": 2, "200": 2, "MESSAGE": 1})
    unregister, challenge, _fresh, _challenge2, answer, accepted, keepalive, _ok = parsed
    assert unregister.expires == 0 and unregister.cseq.seq == 3
    assert challenge.get("WWW-Authenticate") == 'Digest realm="3401000000",nonce="08e7dc3046526434"'
    assert (answer.get("Authorization") or "").startswith('Digest username="34010000001310000001", realm=')
    assert accepted.get("Date") == "2018-03-16T18:04:03.877"
    assert keepalive.content_type == "application/manscdp+xml"
    assert keepalive.body.startswith(b'<?xml version="1.0"?>\r\n<Notify>') and len(keepalive.body) == 151


def test_pcap_invite_and_catalog() -> None:
    messages = pcap_payloads(PCAP / "GB28181.Solution_invite-live-catalog.sip.txt")
    parsed = assert_sound(messages)
    assert counts(parsed) == Counter({"BYE": 1, "INVITE": 1, "ACK": 1, "MESSAGE": 3, "200": 5, "100": 1})
    invite = parsed[2]
    assert isinstance(invite, Request) and invite.method == "INVITE"
    assert invite.contact is not None and invite.contact.display == "34010000002000000001"
    assert invite.contact.uri.user is None and invite.contact.uri.port == 5060
    assert invite.get("Route") == "<sip:34010000001310000001@192.168.230.100:5060;lr>"
    answer = parsed[4]
    assert isinstance(answer, Response) and b"\r\nf=\r\n" in answer.body and answer.body.endswith(b"f=\r\n")
    catalog = parsed[8]
    assert b"<Manufacturer>null</Manufacturer>" in catalog.body and len(catalog.body) == 586


# -- Dahua (FlyLab) ---------------------------------------------------------------------------------------


def test_dahua_reconstruction_matches_the_wireshark_export() -> None:
    """88 SIP messages; the counts come from the Wireshark summary lines, an independent record."""
    parsed = assert_sound(marked_segments(DAHUA / "FlyLab_demo-gb28181_Example-g28181.reconstructed-raw.txt"))
    expected = Counter(
        {"MESSAGE": 37, "REGISTER": 2, "SUBSCRIBE": 1, "INVITE": 2, "ACK": 2, "BYE": 1,
         "200": 36, "100": 2, "101": 3, "400": 1, "401": 1}
    )  # fmt: skip
    assert counts(parsed) == expected
    export = (DAHUA / "FlyLab_demo-gb28181_Example-g28181.wireshark.txt").read_text("utf-8")
    summaries = re.findall(r"^\s+\d+ [\d.]+\s+\S+\s+\S+\s+SIP(?:/SDP)?\s+\d+\s+(Request: (\S+)|Status: (\d{3}))", export, re.MULTILINE)
    assert Counter(method or status for _, method, status in summaries) == expected
    provisional = [msg for msg in parsed if isinstance(msg, Response) and msg.status == 101]
    assert {msg.reason for msg in provisional} == {"Dialog Establishement"}


def test_dahua_reconstruction_bodies_need_no_length_fix() -> None:
    """Keepalives were sent with LF line ends and SDP/Catalog queries with CRLF: both forms are found
    exactly, so no Content-Length had to be touched."""
    messages = marked_segments(DAHUA / "FlyLab_demo-gb28181_Example-g28181.reconstructed-raw.txt")
    assert [m.where for m in messages if m.length_fixed] == []
    catalog = next(m.parse() for m in messages if b"<CmdType>Catalog</CmdType>" in m.data and b"SumNum" in m.data)
    assert catalog.body.startswith(b'<?xml version="1.0" encoding="GB2312" ?>') and len(catalog.body) == 897


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("FlyLab_demo-gb28181_RequestDevice.txt", {"MESSAGE": 17}),
        ("FlyLab_demo-gb28181_RequestStream.txt", {"INVITE": 195}),
        ("FlyLab_demo-gb28181_zong_sb_sbdy.txt", {"MESSAGE": 17}),
    ],
)
def test_dahua_raw_dumps(name: str, expected: dict[str, int]) -> None:
    messages = transcribed((DAHUA / name).read_text("utf-8"), name)
    parsed = assert_sound(messages)
    assert counts(parsed) == Counter(expected)
    assert [m.where for m in messages if m.length_fixed] == []
    for msg in parsed:
        if msg.content_type == "application/sdp":
            assert msg.body.startswith(b"v=0\r\n")  # RequestStream: "Application/SDP"


def test_dahua_overprinted_log_holds_no_whole_message() -> None:
    """sb_sbdy.txt is a console log whose lines overwrote each other ("IPC 3402... p:0000...@0.0.0.0
    SIP/2.0"): no line is a start line, so there is nothing to parse."""
    text = (DAHUA / "FlyLab_demo-gb28181_sb_sbdy.txt").read_text("utf-8")
    assert "SIP/2.0" in text and transcribed(text, "sb_sbdy") == []


# -- Hikvision text sources -------------------------------------------------------------------------------


def test_srs_code_comments() -> None:
    """SRS's code comments: Hikvision IPC and NVR. The NVR's Catalog response declares 909 octets but its
    transcription has 908 (a lost trailing space or similar), so its length is fixed."""
    path = HIKVISION / "srs-gb28181_deprecated-branch_code-comments_hik-IPC-NVR.txt"
    messages = transcribed(path.read_text("utf-8"), path.name)
    parsed = assert_sound(messages)
    assert counts(parsed) == Counter(
        {"REGISTER": 1, "MESSAGE": 3, "INVITE": 1, "ACK": 2, "BYE": 1, "200": 6, "100": 1, "401": 1}
    )
    assert [m.where for m in messages if m.length_fixed] == [
        f"{path.name}: MESSAGE sip:34020000001110000001@3402000000.spvmn.cn SIP/2.0"
    ]
    keepalive = parsed[2]
    assert keepalive.body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Notify>') and len(keepalive.body) == 175
    challenge = next(msg for msg in parsed if isinstance(msg, Response) and msg.status == 401)
    assert challenge.via.params == {"rport": "61378", "received": "192.168.1.13", "branch": "z9hG4bK802519080"}
    assert 'qop="auth"' in (challenge.get("WWW-Authenticate") or "")
    nvr_catalog = parsed[-1]
    assert nvr_catalog.request_uri.host == "3402000000.spvmn.cn"  # type: ignore[union-attr]
    assert b"<SumNum>8</SumNum>" in nvr_catalog.body and b'<DeviceList Num="2">' in nvr_catalog.body


CODEINDEX = HIKVISION / "codeindex-32433344081_feiyangqingyun_hik-IPC_DS-2CD5024EFWD_full-exchange.md"


@needs_fixture(CODEINDEX)
def test_codeindex_full_exchange() -> None:
    """The fullest Hikvision set. Repeated requests the document abbreviated with "…" have no start
    line and are not messages. Three lengths had to be fixed: the RecordInfo answer (the document cut its
    list, Content-Length 3161 is the original's), and the 2022 TCP talk INVITE (250 declared, 248 in any
    line-end form)."""
    messages = transcribed(CODEINDEX.read_text("utf-8"), CODEINDEX.name)
    parsed = assert_sound(messages)
    assert counts(parsed) == Counter(
        {"REGISTER": 5, "MESSAGE": 21, "SUBSCRIBE": 1, "INVITE": 4, "ACK": 3, "BYE": 1, "INFO": 1,
         "200": 11, "302": 1, "401": 2}
    )  # fmt: skip
    fixed = [m.where.split(": ", 1)[1] for m in messages if m.length_fixed]
    assert fixed == [
        "MESSAGE sip:34020000002000000001@3402000000 SIP/2.0",
        "INVITE sip:34020000002000000001@192.168.0.110:15060 SIP/2.0",
    ]
    fixed_messages = [m.parse() for m in messages if m.length_fixed]
    assert b"<CmdType>RecordInfo</CmdType>" in fixed_messages[0].body
    assert fixed_messages[1].via.transport == "TCP"

    challenge = next(msg for msg in parsed if isinstance(msg, Response) and msg.status == 401)
    assert "algorithm=md5" in (challenge.get("WWW-Authenticate") or "")
    redirect = next(msg for msg in parsed if isinstance(msg, Response) and msg.status == 302)
    assert redirect.contact is not None and str(redirect.contact.uri) == "sip:34020000002000000001@192.168.0.110:15066"
    # The platform's non-RFC branch cookie is only text to the parser.
    assert any((msg.via.branch or "").startswith("z3hG9bK") for msg in parsed)
    subscribe = next(msg for msg in parsed if isinstance(msg, Request) and msg.method == "SUBSCRIBE")
    assert subscribe.get("Event") == "presence" and subscribe.expires == 90
    info = next(msg for msg in parsed if isinstance(msg, Request) and msg.method == "INFO")
    assert info.content_type == "application/mansrtsp" and info.body == b"PAUSE RTSP/1.0\r\nCSeq: 1\r\nPauseTime: now\r\n"
    talk_answer = next(msg for msg in parsed if msg.get("Content-Type") == "APPLICATION/SDP")
    assert talk_answer.content_type == "application/sdp"
    snapshot = [msg for msg in parsed if b'encoding="GB18030"' in msg.body]
    assert len(snapshot) == 2


@needs_fixture(CODEINDEX)
def test_codeindex_gb2312_body_stays_bytes() -> None:
    """The preset answer's Chinese name is shown decoded in the document; on the wire it is GB2312, and
    only the GB2312 form matches Content-Length 258. The parser hands those bytes over untouched."""
    messages = transcribed(CODEINDEX.read_text("utf-8"), CODEINDEX.name)
    preset = next(m for m in messages if b"<PresetList" in m.data)
    assert not preset.length_fixed
    msg = preset.parse()
    assert len(msg.body) == 258
    assert "<PresetName>预置点 1</PresetName>".encode("gb2312") in msg.body
    assert "预置点".encode() not in msg.body
    assert parse_message(msg.serialize()).body == msg.body

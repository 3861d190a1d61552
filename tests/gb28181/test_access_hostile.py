"""Hostile and broken input against the real gateway: entity bombs, oversize messages, broken bytes, garbage
datagrams, runaway TCP streams.

Every case must end in a 4xx or a silent drop, never an exception path; afterwards the gateway answers its
API, and a device registered before the attack is still online and its next keepalive gets 200.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator

import pytest
from access_harness import DEVICE_ID, GATEWAY_ID, RunningGateway, SipDevice, keepalive_body

TRANSPORTS = ["UDP", "TCP"]


def response_doc(cmd: str, inner: str, root: str = "Response", declaration: str = "") -> bytes:
    return (
        f"{declaration}<{root}>\r\n<CmdType>{cmd}</CmdType>\r\n<SN>17</SN>\r\n"
        f"<DeviceID>{DEVICE_ID}</DeviceID>\r\n{inner}</{root}>\r\n"
    ).encode()


BILLION_LAUGHS = response_doc(
    "DeviceInfo",
    "<DeviceName>&lol9;</DeviceName>\r\n",
    declaration='<?xml version="1.0"?>\r\n<!DOCTYPE lolz [\r\n<!ENTITY lol "lol">\r\n'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">\r\n' for i in range(1, 10))
    + "]>\r\n",
)
EXTERNAL_ENTITY = response_doc(
    "DeviceInfo",
    "<DeviceName>&xxe;</DeviceName>\r\n",
    declaration='<?xml version="1.0"?>\r\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\r\n',
)
PARAMETER_ENTITY = response_doc(
    "DeviceInfo",
    "<DeviceName>x</DeviceName>\r\n",
    declaration='<?xml version="1.0"?>\r\n<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>\r\n',
)
BROKEN_BYTES = bytes(random.Random(28181).randrange(256) for _ in range(600))
WRONG_ROOT = response_doc("Catalog", "<SumNum>0</SumNum>\r\n", root="Envelope")
NO_CMDTYPE = f"<Response>\r\n<SN>1</SN>\r\n<DeviceID>{DEVICE_ID}</DeviceID>\r\n</Response>\r\n".encode()
DEEP = b"<Response><CmdType>DeviceInfo</CmdType>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</Response>"


@pytest.fixture(params=TRANSPORTS)
async def victim(request: pytest.FixtureRequest, gateway: RunningGateway) -> AsyncIterator[SipDevice]:
    """A device registered (and kept alive once) before the attack; checked to be unharmed after it."""
    device = await gateway.registered_device(transport=request.param)
    assert (await device.keepalive()).status == 200
    yield device
    assert await gateway.alive()
    found = await gateway.device()
    assert found["online"] is True
    response = await device.keepalive(sn=99)
    assert response.status == 200, response.start
    assert "request handler failed" not in gateway.log_text
    assert "handling failed" not in gateway.log_text


@pytest.mark.parametrize(
    ("body", "statuses"),
    [
        (BILLION_LAUGHS, {400}),
        (EXTERNAL_ENTITY, {400}),
        (PARAMETER_ENTITY, {400}),
        (BROKEN_BYTES, {400}),
        (WRONG_ROOT, {400}),
        (NO_CMDTYPE, {400}),
        (DEEP, {400}),
    ],
    ids=["billion-laughs", "external-entity", "parameter-entity", "broken-bytes", "wrong-root", "no-cmdtype",
         "deep-nesting"],
)
async def test_hostile_body_refused(gateway: RunningGateway, victim: SipDevice, body: bytes, statuses: set[int]) -> None:
    response = await victim.message(body)

    assert response.status in statuses, response.start
    # The reason phrase names the problem for the device's own log, and leaks nothing local.
    assert response.reason and response.reason != "Bad Request"
    assert "root:" not in response.reason
    found = await gateway.device()
    assert found["name"] in (None, "")


@pytest.mark.parametrize("content_type", ["text/plain", "application/sdp", None])
async def test_body_of_another_type_is_415(gateway: RunningGateway, victim: SipDevice, content_type: str | None) -> None:
    body = response_doc("DeviceInfo", "<DeviceName>x</DeviceName>\r\n")
    if content_type is None:
        response = await victim.request("MESSAGE", body=body, call_id="no-type@127.0.0.1")
    else:
        response = await victim.message(body, content_type=content_type)
    assert response.status == 415


async def test_stray_ampersand_repaired_and_kept(gateway: RunningGateway, victim: SipDevice) -> None:
    """Liberal in what we accept: an alarm whose text holds a bare '&' is stored with it."""
    body = response_doc(
        "Alarm",
        "<AlarmPriority>1</AlarmPriority>\r\n<AlarmMethod>2</AlarmMethod>\r\n"
        "<AlarmTime>2024-05-01T08:00:00</AlarmTime>\r\n<AlarmDescription>Gate & Lobby</AlarmDescription>\r\n",
        root="Notify",
    )
    response = await victim.message(body)
    assert response.status == 200

    async def stored() -> list:
        _, alarms = await gateway.api(f"/api/alarms?device_id={DEVICE_ID}")
        return alarms
    alarms = await gateway.wait_for(stored, what="the alarm in the API")
    assert alarms[0]["description"] == "Gate & Lobby"
    # The gateway acknowledges an alarm with a Response MESSAGE to the device.
    await gateway.wait_for(lambda: _has_request(victim, "MESSAGE", b"Alarm"), what="the alarm acknowledgement")


async def _has_request(device: SipDevice, method: str, needle: bytes) -> bool:
    return any(r.method == method and needle in r.body for r in device.requests)


async def test_broken_bytes_inside_a_valid_answer_are_repaired(gateway: RunningGateway, victim: SipDevice) -> None:
    # 0xFF can start no GB18030 character: one replacement character, and the decoder resynchronises.
    name = "东门".encode("gb2312") + b"\xff" + "摄像机".encode("gb2312")
    body = (
        b'<?xml version="1.0" encoding="GB2312"?>\r\n<Response>\r\n<CmdType>DeviceInfo</CmdType>\r\n<SN>5</SN>\r\n'
        + f"<DeviceID>{DEVICE_ID}</DeviceID>\r\n".encode()
        + b"<DeviceName>" + name + b"</DeviceName>\r\n<Result>OK</Result>\r\n</Response>\r\n"
    )
    response = await victim.message(body)
    assert response.status == 200

    async def named() -> str | None:
        return (await gateway.device())["name"]
    assert await gateway.wait_for(named, what="the device name") == "东门\ufffd摄像机"


async def test_unknown_catalog_event_is_not_an_exception(gateway: RunningGateway, victim: SipDevice) -> None:
    body = response_doc(
        "Catalog",
        '<SumNum>2</SumNum>\r\n<DeviceList Num="2">\r\n'
        "<Item><DeviceID>34020000011318000001</DeviceID><Event>EXPLODE</Event><Name>a</Name></Item>\r\n"
        "<Item><DeviceID>34020000011318000002</DeviceID><Event>ADD</Event><Name>b</Name></Item>\r\n"
        "</DeviceList>\r\n",
        root="Notify",
    )
    response = await victim.message(body)
    assert response.status in (200, 400)
    await asyncio.sleep(0.05)
    _, channels = await gateway.api(f"/api/devices/{DEVICE_ID}/channels")
    # The well-formed ADD next to the bad item is applied; the unknown event is skipped.
    assert [c["id"] for c in channels] == ["34020000011318000002"]


async def test_message_claiming_an_unregistered_sender_is_403(gateway: RunningGateway, victim: SipDevice) -> None:
    response = await victim.message(BILLION_LAUGHS, from_user="34020000011328000077")
    assert response.status == 403


ODD_VALUES = ["", "abc", "-1", "99999999999999999999999", "NaN", "1e400", "东", " 3 "]


def odd_documents(value: str) -> list[bytes]:
    """Every command the gateway reads from devices, with ``value`` in each field it converts."""
    def doc(root: str, cmd: str, inner: str, sn: str = "3") -> bytes:
        return (f"<{root}><CmdType>{cmd}</CmdType><SN>{sn}</SN><DeviceID>{DEVICE_ID}</DeviceID>"
                f"{inner}</{root}>").encode()
    v = value
    item = (f"<Item><DeviceID>{v}</DeviceID><Event>{v}</Event><Longitude>{v}</Longitude><Latitude>{v}</Latitude>"
            f"<PTZType>{v}</PTZType><Parental>{v}</Parental><Status>{v}</Status><Port>{v}</Port></Item>")
    return [
        doc("Response", "Catalog", f'<SumNum>{v}</SumNum><DeviceList Num="{v}">{item}</DeviceList>'),
        doc("Notify", "Catalog", f'<SumNum>{v}</SumNum><DeviceList Num="{v}">{item}</DeviceList>'),
        doc("Response", "DeviceInfo", f"<DeviceName>{v}</DeviceName><Result>{v}</Result><Channel>{v}</Channel>"),
        doc("Notify", "Alarm", f"<AlarmPriority>{v}</AlarmPriority><AlarmMethod>{v}</AlarmMethod>"
            f"<AlarmTime>{v}</AlarmTime><Longitude>{v}</Longitude><Info><AlarmType>{v}</AlarmType></Info>", sn=v),
        doc("Notify", "MobilePosition", f"<Time>{v}</Time><Longitude>{v}</Longitude><Latitude>{v}</Latitude>"
            f"<Speed>{v}</Speed><Direction>{v}</Direction>", sn=v),
        doc("Response", "DeviceStatus", f"<Result>{v}</Result><Online>{v}</Online><DeviceTime>{v}</DeviceTime>"
            f'<Alarmstatus Num="{v}"><Item><DeviceID>{v}</DeviceID><DutyStatus>{v}</DutyStatus></Item></Alarmstatus>'),
        doc("Response", "RecordInfo", f'<SumNum>{v}</SumNum><RecordList Num="{v}"><Item><StartTime>{v}</StartTime>'
            "</Item></RecordList>"),
        doc("Notify", "MediaStatus", f"<NotifyType>{v}</NotifyType>"),
        doc("Query", "Catalog", ""),
        doc("Control", "DeviceControl", f"<PTZCmd>{v}</PTZCmd>"),
    ]


async def test_odd_values_in_every_command(gateway: RunningGateway, victim: SipDevice) -> None:
    """Placeholders, huge numbers, NaN, words where numbers go: each message is answered, none ends in an
    exception, the API still serves what was stored."""
    for value in ODD_VALUES:
        for body in odd_documents(value):
            response = await victim.message(body)
            assert response.status == 200 or 400 <= response.status < 500, (body, response.start)
    await asyncio.sleep(0.1)
    for path in (f"/api/devices/{DEVICE_ID}/channels", "/api/alarms", "/api/devices"):
        status, _ = await gateway.api(path)
        assert status == 200, path


@pytest.mark.parametrize(
    "headers",
    [
        [("Contact", "<sip:{id}@127.0.0.1:{port}>;expires=" + "9" * 5000)],
        [("Contact", "<sip:{id}@127.0.0.1:{port}>;expires=\u00b2")],
        [("Contact", "<sip:{id}@127.0.0.1:{port}>;expires=-5")],
        [("Contact", "<sip:{id}@127.0.0.1:{port}>;expires=soon")],
        [("Contact", "<sip:{id}@127.0.0.1:{port}>"), ("Expires", "-1")],
        [("Contact", "<sip:{id}@127.0.0.1:{port}>"), ("Expires", "9" * 30)],
        [("Contact", "<sip:{id}@127.0.0.1:{port}>"), ("Expires", "tomorrow")],
    ],
    ids=["5000-digit-param", "superscript-digit", "negative-param", "word-param", "negative-header",
         "30-digit-header", "word-header"],
)
async def test_absurd_expires_values(gateway: RunningGateway, victim: SipDevice,
                                     headers: list[tuple[str, str]]) -> None:
    """From a device with the right password: a clamped grant or a 400, never a 500."""
    device = await gateway.new_device("34020000011328000002")
    filled = [(n, v.format(id=device.device_id, port=device.local_port)) for n, v in headers]
    response = await device.register(expires=None, extra_headers=filled)
    assert response.status in (200, 400), response.start
    if response.status == 200:
        assert 60 <= int(response.get("Expires") or "") <= 86400


# -- oversize ---------------------------------------------------------------------------------------------


async def test_one_megabyte_body_over_tcp(gateway: RunningGateway, victim: SipDevice) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.sip_port)
    body = b"<Response><CmdType>Catalog</CmdType>" + b"A" * (1 << 20) + b"</Response>"
    attacker = SipDevice(DEVICE_ID, gateway.sip_port, "TCP")
    attacker.local_port = writer.get_extra_info("sockname")[1]
    data, _ = attacker.build("MESSAGE", headers=[("Content-Type", "Application/MANSCDP+xml")], body=body)
    writer.write(data)
    try:
        answer = await asyncio.wait_for(reader.read(65536), 3)
    except ConnectionResetError:
        answer = b""  # closed with our bytes unread: a reset is a close
    except TimeoutError:
        pytest.fail("the connection was neither answered nor closed")
    # Either a 413/513 before closing, or closed outright.
    if answer:
        assert answer.split(b" ", 2)[1] in (b"413", b"513"), answer[:80]
    writer.close()


async def test_largest_udp_datagram(gateway: RunningGateway, victim: SipDevice) -> None:
    """Over UDP the datagram limit (65507 bytes on IPv4) binds before any SIP limit; a full-size
    datagram of junk is answered 4xx or dropped."""
    attacker = await gateway.new_device()
    head, _ = attacker.build("MESSAGE", headers=[("Content-Type", "Application/MANSCDP+xml")], body=b"")
    filler = 65507 - len(head) - 8
    data, branch = attacker.build(
        "MESSAGE", headers=[("Content-Type", "Application/MANSCDP+xml")], body=b"<" * filler
    )
    assert len(data) <= 65507
    try:
        response = await attacker.send(data, branch, timeout=1.0)
    except TimeoutError:
        return
    assert 400 <= response.status < 500, response.start


@pytest.mark.parametrize("gateway", [{"sip": {"max_message_size": 4096}}], indirect=True)
async def test_message_over_the_configured_limit(gateway: RunningGateway, victim: SipDevice) -> None:
    attacker = await gateway.new_device()
    dropped_before = await gateway.metric("gb_sip_unparseable_total")
    try:
        response = await attacker.message(b"<Response>" + b" " * 8000 + b"</Response>", timeout=1.0)
    except TimeoutError:
        assert await gateway.metric("gb_sip_unparseable_total") > dropped_before
        return
    assert response.status in (413, 513), response.start


# -- garbage ----------------------------------------------------------------------------------------------


def garbage_datagrams() -> list[bytes]:
    rng = random.Random(5060)
    head = (
        f"MESSAGE sip:{GATEWAY_ID}@3402000000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKx\r\n"
        f"From: <sip:{DEVICE_ID}@3402000000>;tag=1\r\nTo: <sip:{GATEWAY_ID}@3402000000>\r\n"
    ).encode()
    return [
        *(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 1400))) for _ in range(40)),
        b"",
        b"\r\n\r\n",
        b"\x00" * 512,
        head,  # truncated: no Call-ID, no CSeq, no blank line
        head + b"Call-ID: x\r\nCSeq: 1 MESSAGE\r\nContent-Length: 5000\r\n\r\n<Notify>",  # body cut short
        head[: len(head) // 2],
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKnothing\r\nCSeq: 1 MESSAGE\r\n\r\n",
        b"INVITE \xff\xfe SIP/2.0\r\n\r\n",
        b"REGISTER sip:" + b"9" * 60000 + b" SIP/2.0\r\n\r\n",
        head + b"Call-ID: y\r\nCSeq: 99999999999999999999999 MESSAGE\r\nContent-Length: 0\r\n\r\n",
        head + b"Call-ID: z\r\nCSeq: 1 MESSAGE\r\nContent-Length: -4\r\n\r\n",
        head + b"Call-ID: w\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: many\r\nContent-Length: 0\r\n\r\n",
    ]


async def test_garbage_datagrams(gateway: RunningGateway, victim: SipDevice) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        for datagram in garbage_datagrams():
            sock.sendto(datagram, ("127.0.0.1", gateway.sip_port))
        await asyncio.sleep(0.2)
        answers = []
        while True:
            try:
                answers.append(sock.recv(65536))
            except BlockingIOError:
                break
    finally:
        sock.close()
    # Whatever was readable enough to answer got a 4xx, nothing else.
    for answer in answers:
        assert answer.startswith(b"SIP/2.0 4"), answer[:60]
    assert await gateway.metric("gb_sip_unparseable_total") >= 40


async def test_tcp_oversize_header_block_closes_connection(gateway: RunningGateway, victim: SipDevice) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.sip_port)
    writer.write(f"MESSAGE sip:{GATEWAY_ID}@3402000000 SIP/2.0\r\n".encode())
    try:
        for _ in range(200):  # 200 kB of header lines, never a blank line
            writer.write(b"X-Filler: " + b"a" * 1000 + b"\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    try:
        rest = await asyncio.wait_for(reader.read(), 3)
    except ConnectionError:
        rest = b""
    except TimeoutError:
        pytest.fail("the gateway kept a connection open that sent 200 kB without ending a header block")
    assert rest == b"" or rest.startswith(b"SIP/2.0 4") or rest.startswith(b"SIP/2.0 5")
    writer.close()

    fresh = await gateway.new_device(transport="TCP")
    assert (await fresh.request("OPTIONS")).status == 200


async def test_tcp_stream_recovers_after_a_garbage_frame(gateway: RunningGateway, victim: SipDevice) -> None:
    device = await gateway.new_device(transport="TCP")
    device.send_raw(b"\x16\x03\x01\x00\xa5garbage that is no SIP\r\n\r\n")
    response = await device.request("OPTIONS")
    assert response.status == 200


async def test_keepalive_flood_from_strangers_does_not_register_them(gateway: RunningGateway,
                                                                     victim: SipDevice) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n in range(200):
            stranger = f"3402000001132801{n:04d}"
            sender = SipDevice(stranger, gateway.sip_port)
            sender.local_port = 5999
            data, _ = sender.build(
                "MESSAGE", headers=[("Content-Type", "Application/MANSCDP+xml")], body=keepalive_body(stranger)
            )
            sock.sendto(data, ("127.0.0.1", gateway.sip_port))
    finally:
        sock.close()
    await asyncio.sleep(0.2)
    status, devices = await gateway.api("/api/devices")
    assert status == 200
    assert [d["id"] for d in devices] == [DEVICE_ID]


async def test_another_device_cannot_answer_a_query_meant_for_one(gateway: RunningGateway) -> None:
    """A query's answer is matched by CmdType and SN: a second device that learns (or guesses) the SN
    must not be able to answer in the first one's name."""
    target = await gateway.registered_device()
    forger = await gateway.registered_device("34020000011328000002")
    status_task = asyncio.create_task(gateway.api(f"/api/devices/{DEVICE_ID}/status"))
    for _ in range(100):
        queries = [r for r in target.requests if b"<CmdType>DeviceStatus</CmdType>" in r.body]
        if queries:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the gateway sent no DeviceStatus query")
    sn = queries[0].body.split(b"<SN>")[1].split(b"</SN>")[0].decode()
    forged = (
        f'<?xml version="1.0"?>\r\n<Response>\r\n<CmdType>DeviceStatus</CmdType>\r\n<SN>{sn}</SN>\r\n'
        f"<DeviceID>{DEVICE_ID}</DeviceID>\r\n<Result>OK</Result>\r\n<Online>ONLINE</Online>\r\n"
        "<Status>OK</Status>\r\n<Record>ON</Record>\r\n</Response>\r\n"
    ).encode()
    assert (await forger.message(forged)).status == 200
    status, body = await status_task
    # The target never answered: the forged answer must not stand in for it.
    assert status != 200, body
    assert body.get("stage") == "no answer"

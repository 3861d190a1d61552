"""The device simulator against a small registrar built from SipTransport and DigestServer on 127.0.0.1.

Expected values come from the captures in tests/fixtures/interop (device 34020000001320000001 and its channel
34020000001310000001 in the Hikvision exchanges) and from GB/T 28181 itself, not from the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gbgw.conformance.simulator.cli import add_arguments, config_from_args, run
from gbgw.conformance.simulator.config import SimulatorConfig, digest_username
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.gb28181.manscdp import (
    AlarmNotify,
    CatalogNotify,
    CatalogResponse,
    DeviceInfoResponse,
    DeviceStatusResponse,
    ManscdpDocument,
    MobilePositionNotify,
    ResultResponse,
    encode_body,
    parse,
    query_catalog,
    query_device_info,
    query_device_status,
)
from gbgw.sip.digest import DigestResult, DigestServer, parse_credentials
from gbgw.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from gbgw.sip.message import Request, Response
from gbgw.sip.transaction import ServerTransaction, Timers
from gbgw.sip.transport import SipTransport

DOMAIN = "3402000000"
SERVER_ID = "34020000002000000001"
PASSWORD = "12345678"
# The names the simulator gives channels 1-5, spelled out independently of its code.
NAMES = ["通道1 大门", "通道2 停车场", "通道3 大堂", "通道4 电梯厅", "通道5 周界"]


def device_ids(count: int, start: int = 1) -> list[str]:
    return [f"3402000000132{n:07d}" for n in range(start, start + count)]


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Registrar:
    """Just enough of a GB/T 28181 platform: digest REGISTER, keepalives, queries, SUBSCRIBE, reports."""

    def __init__(self, password: str = PASSWORD, date_offset: timedelta = timedelta(0)) -> None:
        endpoint = SipEndpoint(EndpointConfig(user_agent="test-registrar", timers=Timers(t1=0.05)))
        self.transport = SipTransport(endpoint, self.on_request)
        self.digest = DigestServer(DOMAIN, b"registrar-test-secret-0123456789")
        self.password = password
        self.date_offset = date_offset
        self.peers: dict[str, Peer] = {}
        self.usernames: dict[str, str] = {}
        self.registers: defaultdict[str, list[Request]] = defaultdict(list)
        self.registrations: Counter[str] = Counter()
        self.unregistered: set[str] = set()
        self.challenges = 0
        self.keepalive_sns: defaultdict[str, list[int]] = defaultdict(list)
        self.refuse_keepalives: set[str] = set()
        self.ignore_keepalives: set[str] = set()
        self.reports: list[tuple[bytes, ManscdpDocument]] = []
        self.notifies: list[Request] = []
        self._serial = 0

    async def start(self) -> tuple[str, int]:
        return await self.transport.start("127.0.0.1", 0)

    # -- what devices send ----------------------------------------------------------------------------

    def on_request(self, txn: ServerTransaction) -> None:
        request = txn.request
        if request.method == "REGISTER":
            self.on_register(txn)
        elif request.method == "MESSAGE":
            doc = parse(request.body)
            if doc.cmd_type == "Keepalive":
                if doc.device_id in self.ignore_keepalives:
                    return
                self.keepalive_sns[doc.device_id].append(doc.sn or 0)
                self.transport.reply(txn, 403 if doc.device_id in self.refuse_keepalives else 200)
                return
            self.reports.append((request.body, doc))
            self.transport.reply(txn, 200)
        elif request.method == "NOTIFY":
            self.notifies.append(request)
            self.transport.reply(txn, 200)
        else:
            self.transport.reply(txn, 405)

    def on_register(self, txn: ServerTransaction) -> None:
        request = txn.request
        device_id = request.from_.uri.user or ""
        self.registers[device_id].append(request)
        value = request.get("Authorization")
        if value is None:
            self.challenge(txn)
            return
        creds = parse_credentials(value)
        result = self.digest.verify(creds, "REGISTER", self.password, time.time(), call_id=request.call_id)
        if result is not DigestResult.OK:
            self.challenge(txn, stale=result is DigestResult.STALE)
            return
        self.usernames[device_id] = creds.username
        expires = request.expires
        if expires == 0:
            self.unregistered.add(device_id)
            self.peers.pop(device_id, None)
            self.transport.reply(txn, 200)
            return
        self.peers[device_id] = txn.remote
        self.registrations[device_id] += 1
        date = (datetime.now() + self.date_offset).isoformat(timespec="milliseconds")
        self.transport.reply(txn, 200, headers=[("Date", date), ("Expires", str(expires))])

    def challenge(self, txn: ServerTransaction, stale: bool = False) -> None:
        self.challenges += 1
        header = self.digest.challenge(time.time(), stale=stale)
        self.transport.reply(txn, 401, headers=[("WWW-Authenticate", header)])

    # -- what the platform asks ----------------------------------------------------------------------

    def _request(self, method: str, device_id: str, body: bytes, extra: list[tuple[str, str]]) -> Request:
        self._serial += 1
        peer = self.peers[device_id]
        headers = [
            ("Via", self.transport.via(peer.transport)),
            ("From", f"<sip:{SERVER_ID}@{DOMAIN}>;tag=reg{self._serial}"),
            ("To", f"<sip:{device_id}@{DOMAIN}>"),
            ("Call-ID", f"registrar-{self._serial}"),
            ("CSeq", f"{self._serial} {method}"),
            ("Content-Type", "Application/MANSCDP+xml"),
            ("Max-Forwards", "70"),
            *extra,
        ]
        return Request(method, f"sip:{device_id}@{DOMAIN}", headers, body)

    async def send(self, method: str, device_id: str, doc: ManscdpDocument,
                   extra: list[tuple[str, str]] | None = None) -> Response:
        request = self._request(method, device_id, encode_body(doc, "GB2312"), extra or [])
        return await self.transport.send_request(request, self.peers[device_id])

    def answers(self, cmd_type: str, sn: int) -> list[tuple[bytes, ManscdpDocument]]:
        return [(raw, doc) for raw, doc in self.reports
                if doc.root == "Response" and doc.cmd_type == cmd_type and doc.sn == sn]

    async def catalog(self, device_id: str, sn: int) -> list[tuple[bytes, CatalogResponse]]:
        """Query the catalog and assemble the answer by (device, SN) until SumNum items arrived."""
        response = await self.send("MESSAGE", device_id, query_catalog(sn, device_id))
        assert response.status == 200

        def complete() -> bool:
            pages = [doc.typed() for _, doc in self.answers("Catalog", sn)]
            return bool(pages) and sum(len(p.items) for p in pages if isinstance(p, CatalogResponse)) >= (
                pages[0].sum_num if isinstance(pages[0], CatalogResponse) and pages[0].sum_num else 1
            )

        await eventually(complete)
        out = []
        for raw, doc in self.answers("Catalog", sn):
            typed = doc.typed()
            assert isinstance(typed, CatalogResponse)
            out.append((raw, typed))
        return out

    async def query(self, device_id: str, doc: ManscdpDocument) -> ManscdpDocument:
        response = await self.send("MESSAGE", device_id, doc)
        assert response.status == 200
        assert doc.sn is not None
        await eventually(lambda: bool(self.answers(doc.cmd_type, doc.sn or 0)))
        return self.answers(doc.cmd_type, doc.sn)[0][1]


@pytest.fixture
async def registrar() -> AsyncIterator[Registrar]:
    reg = Registrar()
    await reg.start()
    yield reg
    await reg.transport.close()


def make_config(registrar: Registrar, **overrides: object) -> SimulatorConfig:
    values: dict[str, object] = {
        "server_host": "127.0.0.1",
        "server_port": registrar.transport.port,
        "keepalive_interval": 0.2,
        "t1": 0.05,
    }
    values.update(overrides)
    return SimulatorConfig(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------
# IDs and configuration


def test_ids_follow_the_hikvision_captures() -> None:
    config = SimulatorConfig(server_host="127.0.0.1", server_port=5060)
    # Device and first channel IDs of the Hikvision IPC/NVR exchanges in tests/fixtures/interop.
    assert config.device_id(1) == "34020000001320000001"
    assert config.channel_id(1, 1) == "34020000001310000001"
    assert config.locate("34020000001320000001") == (1, 0)
    assert config.locate("34020000001310000001") == (1, 1)
    assert config.locate("34020000001320000002") is None  # only one device
    assert config.locate("34020000002000000001") is None


@given(
    prefix=st.from_regex(r"[0-9]{13,16}", fullmatch=True).filter(lambda p: p[10:13] != "131"),
    start=st.integers(1, 500),
    count=st.integers(1, 500),
    channels=st.integers(0, 16),
    data=st.data(),
)
def test_channel_ids_are_unique_and_locatable(prefix: str, start: int, count: int, channels: int,
                                             data: st.DataObject) -> None:
    config = SimulatorConfig(server_host="h", server_port=1, id_prefix=prefix, start=start, count=count,
                             channels=channels)
    number = data.draw(st.integers(start, start + count - 1))
    channel = data.draw(st.integers(0, channels))
    gb_id = config.device_id(number) if channel == 0 else config.channel_id(number, channel)
    assert len(gb_id) == 20 and gb_id.isdigit()
    if channel:
        assert gb_id[10:13] == "131" and gb_id[:10] == prefix[:10]
        other = data.draw(st.integers(start, start + count - 1))
        other_channel = data.draw(st.integers(1, channels))
        if (other, other_channel) != (number, channel):
            assert config.channel_id(other, other_channel) != gb_id
    assert config.locate(gb_id) == (number, channel)


def test_config_rejects_what_cannot_be_numbered() -> None:
    with pytest.raises(ValueError, match="7-digit channel"):
        SimulatorConfig(server_host="h", server_port=1, count=100_000, channels=100)
    with pytest.raises(ValueError, match="does not fit"):
        SimulatorConfig(server_host="h", server_port=1, id_prefix="3402000000132000", count=10_000)
    with pytest.raises(ValueError, match="type of the channels"):
        SimulatorConfig(server_host="h", server_port=1, id_prefix="3402000000131")
    with pytest.raises(ValueError, match="13 to 19 digits"):
        SimulatorConfig(server_host="h", server_port=1, id_prefix="3402000000")
    with pytest.raises(ValueError, match="transport"):
        SimulatorConfig(server_host="h", server_port=1, transport="sctp")
    with pytest.raises(ValueError, match="encoding"):
        SimulatorConfig(server_host="h", server_port=1, encoding="klingon")


def test_digest_username_differs_and_stays_an_id() -> None:
    assert digest_username("34020000001320000002") == "34020000001328000002"
    assert digest_username("34020000001328000002") == "34020000001327000002"


def test_cli_options() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--server", "192.0.2.1:5060", "--transport", "tcp", "--count", "3",
                              "--channels", "4", "--encoding", "UTF-8", "--username-differs"])
    config = config_from_args(args)
    assert (config.server_host, config.server_port, config.transport) == ("192.0.2.1", 5060, "TCP")
    assert (config.count, config.channels, config.encoding, config.username_differs) == (3, 4, "UTF-8", True)
    assert (config.password, config.expires, config.catalog_page_size) == ("12345678", 3600, 2)
    assert "12345678" not in repr(config)
    with pytest.raises(SystemExit):
        parser.parse_args(["--server", "nonsense"])


# ---------------------------------------------------------------------------------------------------------
# Against the registrar


@pytest.mark.parametrize(
    ("transport", "encoding", "username_differs"),
    [("udp", "GB2312", False), ("tcp", "UTF-8", True)],
)
async def test_register_keepalive_and_queries(
    registrar: Registrar, transport: str, encoding: str, username_differs: bool
) -> None:
    registrar.date_offset = timedelta(hours=2)
    config = make_config(registrar, transport=transport, count=5, channels=5, devices_per_socket=2,
                         encoding=encoding, username_differs=username_differs)
    sim = DeviceSimulator(config)
    await sim.start()
    try:
        await sim.wait_registered(5, timeout=5)
        ids = device_ids(5)
        assert sorted(registrar.peers) == ids
        assert len(set(sim.sockets)) == 3
        if transport == "udp":
            # Two devices per socket: they come from the same source port, like devices behind one NAT.
            assert registrar.peers[ids[0]].port == registrar.peers[ids[1]].port != registrar.peers[ids[2]].port
        for device_id in ids:
            first, second = registrar.registers[device_id][:2]
            assert first.get("Authorization") is None and second.get("Authorization") is not None
            assert first.call_id == second.call_id and second.cseq.seq == first.cseq.seq + 1
            expected_user = digest_username(device_id) if username_differs else device_id
            assert registrar.usernames[device_id] == expected_user
            assert (registrar.usernames[device_id] != device_id) is username_differs

        await eventually(lambda: all(len(registrar.keepalive_sns[d]) >= 2 for d in ids))
        for device_id in ids:
            sns = registrar.keepalive_sns[device_id]
            assert sns == sorted(sns) and len(set(sns)) == len(sns)

        device_id = ids[1]
        pages = await registrar.catalog(device_id, sn=7001)
        assert [page.num for _, page in pages] == [2, 2, 1]
        assert all(page.sum_num == 5 and page.device_id == device_id for _, page in pages)
        items = [item for _, page in pages for item in page.items]
        assert [item.name for item in items] == NAMES
        channel_ids = [item.device_id for item in items]
        assert len(set(channel_ids)) == 5
        assert all(c[10:13] == "131" and c[:10] == DOMAIN for c in channel_ids)
        assert all(item.parent_id == device_id and item.status == "ON" for item in items)
        assert all(item.manufacturer and item.model and item.civil_code for item in items)
        # The wire bytes: declared charset, and the names in that charset.
        wire = b"".join(raw for raw, _ in pages)
        codec = "gb2312" if encoding == "GB2312" else "utf-8"
        assert f'encoding="{encoding}"'.encode() in wire
        assert all(name.encode(codec) in wire for name in NAMES)
        # Another device's channels are different IDs.
        other = await registrar.catalog(ids[2], sn=7002)
        assert not {i.device_id for _, p in other for i in p.items} & set(channel_ids)

        info = (await registrar.query(device_id, query_device_info(7003, device_id))).typed()
        assert isinstance(info, DeviceInfoResponse)
        assert info.ok and info.manufacturer == "Simulator" and info.channel == 5
        assert info.model and info.firmware

        status = (await registrar.query(device_id, query_device_status(7004, device_id))).typed()
        assert isinstance(status, DeviceStatusResponse)
        assert status.is_online and status.status == "OK"
        assert (status.encode, status.record) == ("ON", "OFF")
        assert len(status.alarm_status) == 1 and status.alarm_status[0].device_id[10:13] == "134"
        # The device set its clock from the Date of the 200 to REGISTER (two hours ahead here).
        assert status.device_time is not None
        skew = datetime.fromisoformat(status.device_time) - (datetime.now() + timedelta(hours=2))
        assert abs(skew.total_seconds()) < 5
        # The simulator counts an answer once the server accepted it, which may come after it arrived.
        await eventually(lambda: sim.stats.catalogs_answered == 2 and sim.stats.queries_answered == 2)
        assert sim.stats.keepalives_ok >= 10
    finally:
        await sim.stop()
    assert registrar.unregistered == set(ids)
    assert sim.stats.registered == 0


async def test_reregisters_after_keepalive_refused(registrar: Registrar) -> None:
    sim = DeviceSimulator(make_config(registrar, count=2))
    await sim.start()
    try:
        await sim.wait_registered(2, timeout=3)
        refused, kept = device_ids(2)
        old_call_id = registrar.registers[refused][-1].call_id
        registrar.refuse_keepalives.add(refused)
        await eventually(lambda: registrar.registrations[refused] >= 2)
        registrar.refuse_keepalives.clear()
        assert sim.stats.reregistrations >= 1
        assert registrar.registrations[kept] == 1
        # A new registration: a new dialog that starts without credentials, as cameras do.
        restart = next(r for r in registrar.registers[refused] if r.call_id != old_call_id)
        assert restart.get("Authorization") is None
        count = len(registrar.keepalive_sns[refused])
        await eventually(lambda: len(registrar.keepalive_sns[refused]) >= count + 2)
        await sim.wait_registered(2, timeout=3)
    finally:
        await sim.stop(unregister=False)


async def test_reregisters_after_three_keepalive_timeouts(registrar: Registrar) -> None:
    # T1 10 ms: a keepalive times out after 64 * T1 = 0.64 s.
    sim = DeviceSimulator(make_config(registrar, count=1, t1=0.01))
    await sim.start()
    try:
        await sim.wait_registered(1, timeout=3)
        (device_id,) = device_ids(1)
        registrar.ignore_keepalives.add(device_id)
        await eventually(lambda: registrar.registrations[device_id] >= 2, timeout=4)
        assert sim.stats.keepalive_timeouts >= 3
        assert sim.stats.reregistrations == 1
    finally:
        await sim.stop(unregister=False)


async def test_refresh_reuses_the_nonce(registrar: Registrar) -> None:
    sim = DeviceSimulator(make_config(registrar, count=1, expires=1))
    await sim.start()
    try:
        (device_id,) = device_ids(1)
        await eventually(lambda: registrar.registrations[device_id] >= 2)
        first, answer, refresh = registrar.registers[device_id][:3]
        assert refresh.call_id == first.call_id and refresh.cseq.seq == answer.cseq.seq + 1
        nonce = parse_credentials(answer.get("Authorization") or "").nonce
        assert parse_credentials(refresh.get("Authorization") or "").nonce == nonce
        assert registrar.challenges == 1
        assert sim.stats.registered == 1
    finally:
        await sim.stop()


async def test_subscribe_catalog_then_notify(registrar: Registrar) -> None:
    sim = DeviceSimulator(make_config(registrar, count=1, channels=3, keepalive_interval=60))
    await sim.start()
    try:
        await sim.wait_registered(1, timeout=3)
        (device_id,) = device_ids(1)
        contact = f"<sip:{SERVER_ID}@127.0.0.1:{registrar.transport.port}>"
        response = await registrar.send(
            "SUBSCRIBE", device_id, query_catalog(8001, device_id),
            [("Event", "Catalog"), ("Expires", "600"), ("Contact", contact)],
        )
        assert response.status == 200 and response.expires == 600 and response.get("Event") == "Catalog"
        result = parse(response.body).typed()
        assert isinstance(result, ResultResponse) and result.ok and result.sn == 8001
        await eventually(lambda: len(registrar.notifies) >= 2)
        notifies = registrar.notifies
        to_tag = response.to.tag
        assert all(n.call_id == response.call_id and n.from_.tag == to_tag for n in notifies)
        assert all((n.get("Subscription-State") or "").startswith("active") for n in notifies)
        assert [n.cseq.seq for n in notifies] == [1, 2]
        docs = [parse(n.body).typed() for n in notifies]
        assert all(isinstance(d, CatalogNotify) and d.sum_num == 3 for d in docs)
        items = [i for d in docs if isinstance(d, CatalogNotify) for i in d.items]
        assert [i.name for i in items] == NAMES[:3] and {i.event for i in items} == {"ON"}
    finally:
        await sim.stop()


async def test_alarm_and_mobile_position(registrar: Registrar) -> None:
    sim = DeviceSimulator(make_config(registrar, count=2, channels=2, keepalive_interval=60))
    await sim.start()
    try:
        await sim.wait_registered(2, timeout=3)
        response = await sim.send_alarm(1, channel=2, priority=4, method=5, alarm_type=2, description="越界")
        assert response.status == 200
        response = await sim.send_mobile_position(0, longitude=116.397, latitude=39.908, speed=12.5)
        assert response.status == 200
        alarm = next(d.typed() for _, d in registrar.reports if d.cmd_type == "Alarm")
        assert isinstance(alarm, AlarmNotify)
        second = device_ids(2)[1]
        assert alarm.device_id[10:13] == "131" and alarm.device_id != second
        assert (alarm.alarm_priority, alarm.alarm_method, alarm.alarm_type) == (4, 5, 2)
        assert alarm.alarm_description == "越界"
        position = next(d.typed() for _, d in registrar.reports if d.cmd_type == "MobilePosition")
        assert isinstance(position, MobilePositionNotify)
        assert position.device_id == device_ids(1)[0]
        assert (position.longitude, position.latitude, position.speed) == (116.397, 39.908, 12.5)
        assert position.time is not None
    finally:
        await sim.stop()


async def test_wrong_password_is_reported_not_retried_at_once() -> None:
    registrar = Registrar(password="other-password")
    await registrar.start()
    sim = DeviceSimulator(make_config(registrar, count=1, retry_interval=30))
    await sim.start()
    try:
        await eventually(lambda: sim.stats.auth_rejected == 1)
        await asyncio.sleep(0.2)
        assert sim.stats.registered == 0 and sim.stats.register_failures == 1
        assert len(registrar.registers[device_ids(1)[0]]) == 2
    finally:
        await sim.stop()
        await registrar.transport.close()


async def test_register_rate_is_capped(registrar: Registrar) -> None:
    sim = DeviceSimulator(make_config(registrar, count=4, register_rate=10, keepalive_interval=60))
    began = time.monotonic()
    await sim.start()
    try:
        await sim.wait_registered(4, timeout=3)
        # Four registrations at 10/s: the last one starts 0.3 s after the first.
        assert time.monotonic() - began >= 0.25
    finally:
        await sim.stop(unregister=False)


async def test_run_command(registrar: Registrar) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--server", f"127.0.0.1:{registrar.transport.port}", "--count", "3",
                              "--duration", "0.4", "--stats-interval", "0.2"])
    assert await run(args) == 0
    assert registrar.unregistered == set(device_ids(3))
    bad = parser.parse_args(["--server", "127.0.0.1:5060", "--id-prefix", "12"])
    assert await run(bad) == 2

"""Device-side services driven without sockets: the router, background tasks, requests and their answers."""

from __future__ import annotations

import asyncio

import pytest

from gbgw.gb28181 import manscdp
from gbgw.gb28181.config import load_config
from gbgw.gb28181.devices.requests import DeviceRequests
from gbgw.gb28181.devices.router import RequestRouter
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.gb28181.tasks import BackgroundTasks
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.storage import MemoryStorage
from gbgw.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from gbgw.sip.message import Response, parse_message
from gbgw.sip.requests import RequestBuilder
from gbgw.sip.transaction import ServerTransaction
from gbgw.sip.transport import SipTransport

CAMERA = Peer("UDP", "203.0.113.7", 40123)
DEVICE_ID = "34020000001320000001"
GATEWAY_ID = "34020000002000000001"


def request_bytes(method: str) -> bytes:
    return (
        f"{method} sip:{GATEWAY_ID}@3402000000 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 203.0.113.7:40123;rport;branch=z9hG4bK-router-1\r\n"
        f"From: <sip:{DEVICE_ID}@3402000000>;tag=dev1\r\n"
        f"To: <sip:{GATEWAY_ID}@3402000000>\r\n"
        "Call-ID: router-test@203.0.113.7\r\n"
        f"CSeq: 1 {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def answers(endpoint: SipEndpoint) -> list[Response]:
    out = []
    for data, _ in endpoint.transactions.take_output():
        message = parse_message(data)
        assert isinstance(message, Response)
        out.append(message)
    return out


async def test_router_routes_by_method_and_answers_the_rest_405_with_allow() -> None:
    endpoint = SipEndpoint(EndpointConfig())
    router = RequestRouter(GatewayMetrics(), endpoint.config)
    seen: list[str] = []

    def handler(txn: ServerTransaction) -> None:
        seen.append(txn.request.method)
        txn.reply(200, now=0.0)

    router.handle("REGISTER", handler)
    router.handle("MESSAGE", handler)
    assert router.methods == ("REGISTER", "MESSAGE", "OPTIONS")

    txn = endpoint.receive(request_bytes("MESSAGE"), CAMERA, 0.0)
    assert txn is not None
    router.on_request(txn)
    assert seen == ["MESSAGE"]
    assert [r.status for r in answers(endpoint)] == [200]

    txn = endpoint.receive(request_bytes("INFO"), CAMERA, 0.0)
    assert txn is not None
    router.on_request(txn)
    (refusal,) = answers(endpoint)
    assert refusal.status == 405
    assert refusal.get("Allow") == "REGISTER, MESSAGE, OPTIONS"
    assert seen == ["MESSAGE"]


def test_router_keeps_the_endpoints_options_answer_in_step() -> None:
    endpoint = SipEndpoint(EndpointConfig())
    router = RequestRouter(GatewayMetrics(), endpoint.config)
    router.handle("REGISTER", lambda txn: None)
    router.handle("BYE", lambda txn: None)
    assert endpoint.receive(request_bytes("OPTIONS"), CAMERA, 0.0) is None
    (answer,) = answers(endpoint)
    assert answer.status == 200
    assert answer.get("Allow") == "REGISTER, BYE, OPTIONS"


async def test_background_tasks_forget_finished_ones_and_close_cancels_the_rest() -> None:
    tasks = BackgroundTasks()
    done = tasks.spawn(asyncio.sleep(0))
    forever = tasks.spawn(asyncio.sleep(3600))
    await done
    await asyncio.sleep(0)
    assert len(tasks) == 1
    await tasks.close()
    assert forever.cancelled()
    assert len(tasks) == 0


class FakeVia:
    host = "192.0.2.1"

    def via(self, transport: str = "UDP") -> str:
        return f"SIP/2.0/{transport} 192.0.2.1:5060;rport;branch=z9hG4bK-{transport}"


@pytest.fixture
async def requests() -> DeviceRequests:
    config = load_config({"sip": {"id": GATEWAY_ID, "domain": "3402000000"}})
    registry = DeviceRegistry(MemoryStorage(), keepalive_interval=60.0, keepalive_misses=3)
    for device_id, host in ((DEVICE_ID, "203.0.113.7"), ("34020000001320000002", "2001:db8::7")):
        registry.register(device_id, transport="TCP", host=host, port=40123, expires=3600, now=0.0)
    builder = RequestBuilder(FakeVia(), f"sip:{GATEWAY_ID}@3402000000", "gw")
    transport = SipTransport(SipEndpoint(), lambda txn: None)
    return DeviceRequests(config.sip, registry, GatewayMetrics(), transport, builder, clock=lambda: 0.0)


async def test_requests_go_to_the_registered_address_numbered_by_the_shared_builder(requests: DeviceRequests) -> None:
    device = requests.registry.get(DEVICE_ID)
    first, peer = requests.build_request("MESSAGE", device, "34020000001310000009")
    assert peer == Peer("TCP", "203.0.113.7", 40123)
    assert first.uri == "sip:34020000001310000009@203.0.113.7:40123"
    assert first.get("To") == "<sip:34020000001310000009@3402000000>"
    assert first.get("From").startswith(f"<sip:{GATEWAY_ID}@3402000000>;tag=")
    assert first.get("Via").startswith("SIP/2.0/TCP ")
    # Another sender on the same address (live media's INVITE) takes the next number from the same counter.
    invite = requests.requests.build("INVITE", "sip:x@h", "sip:x@d")
    second, _ = requests.build_request("SUBSCRIBE", device)
    assert [first.cseq.seq, invite.cseq.seq, second.cseq.seq] == [1, 2, 3]
    v6, _ = requests.build_request("MESSAGE", requests.registry.get("34020000001320000002"))
    assert v6.uri == "sip:34020000001320000002@[2001:db8::7]:40123"


async def test_an_answer_is_taken_only_from_the_device_asked(requests: DeviceRequests) -> None:
    sent: list[manscdp.ManscdpDocument] = []

    async def send_manscdp(device_id: str, doc: manscdp.ManscdpDocument) -> Response:
        sent.append(doc)
        return Response(200)

    requests.send_manscdp = send_manscdp  # type: ignore[method-assign]
    query = asyncio.ensure_future(requests.query(DEVICE_ID, manscdp.query_device_status))
    while not sent:
        await asyncio.sleep(0)
    answer = manscdp.parse(
        f"<Response><CmdType>DeviceStatus</CmdType><SN>{sent[0].sn}</SN><DeviceID>{DEVICE_ID}</DeviceID>"
        "<Result>OK</Result><Online>ONLINE</Online><Status>OK</Status></Response>".encode()
    )
    assert not requests.take_response("34020000001320000002", answer)
    assert not query.done()
    assert requests.take_response(DEVICE_ID, answer)
    assert (await query) is answer
    assert not requests.take_response(DEVICE_ID, answer)

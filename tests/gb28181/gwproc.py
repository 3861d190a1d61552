"""Helpers for tests that drive a whole gateway through its real interfaces.

SIP goes over UDP from a plain asyncio socket that plays a device, the HTTP API is read with aiohttp, and
the daemon runs either in-process (fast) or as a subprocess (for kill -9, signals and the CLI). The SIP
side is deliberately independent of the project's ``sip`` package (its own parsing and digest arithmetic),
so a bug there cannot hide the same bug in the gateway. The pieces every hand-written device of the suite
needs (digest, retransmission, answers, MANSCDP bodies, log and metric reading) are here once;
``access_harness.SipDevice`` builds on them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import aiohttp
import yaml
from wire import FIXTURES, SipMessage, free_port

from gbgw.gb28181.app.daemon import Gateway
from gbgw.gb28181.config import load_config

REPO = Path(__file__).resolve().parents[2]
INTEROP = FIXTURES / "interop"

GATEWAY_ID = "34020000002000000001"
DOMAIN = "3402000000"

Answer = TypeVar("Answer", bound=SipMessage)


# -- ports ----------------------------------------------------------------------------------------------


def port_in_use(port: int) -> bool:
    """Whether 127.0.0.1:port is taken for UDP or TCP."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return True
    return False


# -- SIP messages ---------------------------------------------------------------------------------------


class SipMsg(SipMessage):
    """A SIP message parsed just enough for assertions, with the GB/T 28181 bits the replays read."""

    def xml(self, tag: str) -> str | None:
        """Text of the first <tag> of the body (bodies may declare GB2312, which expat cannot read)."""
        match = re.search(rb"<" + tag.encode() + rb">\s*([^<]*?)\s*</" + tag.encode() + rb">", self.body)
        return match.group(1).decode("gb18030") if match else None

    @property
    def cmd_type(self) -> str | None:
        return self.xml("CmdType")

    @property
    def sn(self) -> str | None:
        return self.xml("SN")


def set_content_length(data: bytes) -> bytes:
    """Make Content-Length match the body again, keeping the header's own spelling and spacing."""
    head, sep, body = data.partition(b"\r\n\r\n")
    head = re.sub(rb"(?im)^((?:Content-Length|l)[ \t]*:[ \t]*)\d+", lambda m: m.group(1) + str(len(body)).encode(),
                  head, count=1)
    return head + sep + body


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest_response(username: str, realm: str, password: str, method: str, uri: str, nonce: str) -> str:
    """RFC 2617 digest without qop (what GB/T 28181 devices send), computed independently of sip/."""
    return md5_hex(f"{md5_hex(f'{username}:{realm}:{password}')}:{nonce}:{md5_hex(f'{method}:{uri}')}")


def challenge_params(header: str) -> dict[str, str]:
    """The parameters of a Digest challenge, names lower-cased, quotes removed."""
    assert header.lower().startswith("digest "), header
    return {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in re.finditer(r'([\w-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', header[7:])
    }


def digest_authorization(
    challenge: dict[str, str], username: str, password: str, uri: str, method: str = "REGISTER", *,
    qop: bool = True,
) -> tuple[str, str]:
    """(Authorization value, response hash) answering a challenge per RFC 2617, computed here. With `qop`
    off, the answer leaves qop out even when offered, as most GB/T 28181 devices do."""
    realm, nonce = challenge["realm"], challenge["nonce"]
    if qop and "auth" in challenge.get("qop", "").split(","):
        cnonce, nc = os.urandom(4).hex(), "00000001"
        ha1, ha2 = md5_hex(f"{username}:{realm}:{password}"), md5_hex(f"{method}:{uri}")
        response = md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        extra = f', qop=auth, nc={nc}, cnonce="{cnonce}"'
    else:
        response = digest_response(username, realm, password, method, uri, nonce)
        extra = ""
    value = (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm=MD5{extra}'
    )
    return value, response


def response_bytes(request: SipMessage, status: int, reason: str, to_tag: str,
                   headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """An answer to `request` as embedded SIP stacks write it: its Vias, From, To (with `to_tag` unless it
    has one), Call-ID and CSeq, then `headers`, no body."""
    to = request.get("To") or ""
    lines = [f"SIP/2.0 {status} {reason}", *(f"Via: {via}" for via in request.get_all("Via")),
             f"From: {request.get('From')}", f"To: {to}" if ";tag=" in to else f"To: {to};tag={to_tag}",
             f"Call-ID: {request.get('Call-ID')}", f"CSeq: {request.get('CSeq')}",
             *(f"{name}: {value}" for name, value in headers), "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def until_final(send: Callable[[], None], answer: asyncio.Future[Answer], timeout: float, *,
                      retransmit: bool = True, interval: float = 0.5, max_interval: float = 4.0) -> Answer:
    """Call `send`, again after `interval` (doubling up to `max_interval`, like Timer E) while
    `retransmit`, until `answer` (the final response) is there; TimeoutError after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        send()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError("no final response")
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(answer), min(interval, remaining) if retransmit else remaining)
        interval = min(interval * 2, max_interval)


def manscdp_body(xml: str, encoding: str = "GB2312") -> bytes:
    """A MANSCDP document with its XML declaration, as devices send it."""
    return f'<?xml version="1.0" encoding="{encoding}"?>\r\n{xml}\r\n'.encode(encoding)


def keepalive_body(device_id: str, sn: int = 1) -> bytes:
    return manscdp_body(
        f"<Notify>\r\n<CmdType>Keepalive</CmdType>\r\n<SN>{sn}</SN>\r\n"
        f"<DeviceID>{device_id}</DeviceID>\r\n<Status>OK</Status>\r\n</Notify>"
    )


def log_events(text: str) -> list[dict[str, Any]]:
    """The JSON lines of a log, skipping anything else (tracebacks, sipp's or ffmpeg's output)."""
    events = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


def parse_metrics(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, labels sorted, from a /metrics page."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        name, _, labels = key.partition("{")
        if labels:
            key = name + "{" + ",".join(sorted(labels.rstrip("}").split(","))) + "}"
        samples[key] = float(value)
    return samples


def merge_config(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` merged into a copy of `base`: mappings key by key, anything else replaced."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# -- a device on a UDP socket ---------------------------------------------------------------------------


class Datagrams(asyncio.DatagramProtocol):
    """Hands every datagram to `received`."""

    def __init__(self, received: Callable[[bytes], None]) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received(data)


class UdpDevice:
    """One UDP socket on 127.0.0.1 speaking SIP to the gateway.

    Requests the gateway sends (queries, alarm acknowledgements) are queued once per Via branch; a
    retransmission gets the answer already given. Answers to our own requests resolve ``transact``.
    """

    def __init__(self, gateway_port: int, user_agent: str = "test device") -> None:
        self.gateway = ("127.0.0.1", gateway_port)
        self.user_agent = user_agent
        self.host = "127.0.0.1"
        self.port = 0
        self.requests: asyncio.Queue[SipMsg] = asyncio.Queue()
        self.seen: list[SipMsg] = []
        # SUBSCRIBEs go here instead of `requests`; a device that answers them sets `on_subscribe`.
        self.subscribes: list[SipMsg] = []
        self.on_subscribe: Callable[[SipMsg], None] | None = None
        self._answers: dict[str, bytes] = {}
        self._waiting: dict[str, asyncio.Future[SipMsg]] = {}
        self._transport: asyncio.DatagramTransport | None = None

    async def open(self) -> Self:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: Datagrams(self.received), local_addr=("127.0.0.1", 0)
        )
        self.port = self._transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def received(self, data: bytes) -> None:
        msg = SipMsg.parse(data)
        if msg.is_response:
            future = self._waiting.get(msg.branch)
            if future is not None and not future.done() and msg.status >= 200:
                future.set_result(msg)
            return
        if msg.branch in self._answers:
            self.send(self._answers[msg.branch])
            return
        self._answers[msg.branch] = b""
        if msg.method == "SUBSCRIBE":
            self.subscribes.append(msg)
            if self.on_subscribe is not None:
                self.on_subscribe(msg)
            return
        self.seen.append(msg)
        self.requests.put_nowait(msg)

    def send(self, data: bytes) -> None:
        assert self._transport is not None
        if data:
            self._transport.sendto(data, self.gateway)

    async def transact(self, data: bytes, timeout: float = 3.0) -> SipMsg:
        """Send a request (retransmitted like Timer E) and wait for its final response."""
        branch = SipMsg.parse(data).branch
        future: asyncio.Future[SipMsg] = asyncio.get_running_loop().create_future()
        self._waiting[branch] = future
        try:
            return await until_final(lambda: self.send(data), future, timeout)
        except TimeoutError:
            raise TimeoutError(f"no final response to {data[:60]!r}") from None
        finally:
            self._waiting.pop(branch, None)

    async def next_request(self, timeout: float = 5.0) -> SipMsg:
        return await asyncio.wait_for(self.requests.get(), timeout)

    def reply(self, request: SipMsg, status: int = 200, reason: str = "OK",
              headers: Iterable[tuple[str, str]] = ()) -> None:
        """Answer a request from the gateway the way embedded SIP stacks do (To tag, User-Agent)."""
        self.respond(request, response_bytes(request, status, reason, os.urandom(4).hex(),
                                             [*headers, ("User-Agent", self.user_agent)]))

    def respond(self, request: SipMsg, data: bytes) -> None:
        """Send a response; the last one sent for a request also answers its retransmissions."""
        self._answers[request.branch] = data
        self.send(data)


class GbDevice(UdpDevice):
    """A GB/T 28181 device whose requests this test suite writes itself (not replayed from a capture)."""

    def __init__(self, device_id: str, gateway_port: int, gateway_id: str = GATEWAY_ID,
                 domain: str = DOMAIN) -> None:
        super().__init__(gateway_port)
        self.device_id = device_id
        self.gateway_id = gateway_id
        self.domain = domain
        self.call_id = os.urandom(6).hex()
        self.tag = os.urandom(4).hex()
        self.cseq = 0
        self.sn = 0
        self.on_subscribe = self.accept_subscription
        # Nonces and digest responses this device saw or computed, for "never shown anywhere" checks.
        self.secrets: set[str] = set()

    def build(self, method: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
              call_id: str | None = None) -> bytes:
        self.cseq += 1
        to_user = self.device_id if method == "REGISTER" else self.gateway_id
        lines = [
            f"{method} sip:{self.gateway_id}@{self.domain} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};rport;branch=z9hG4bK{os.urandom(5).hex()}",
            f"From: <sip:{self.device_id}@{self.domain}>;tag={self.tag if method == 'REGISTER' else os.urandom(4).hex()}",
            f"To: <sip:{to_user}@{self.domain}>",
            f"Call-ID: {call_id or (self.call_id if method == 'REGISTER' else os.urandom(6).hex())}",
            f"CSeq: {self.cseq} {method}",
            "Max-Forwards: 70",
            f"User-Agent: {self.user_agent}",
            *(f"{name}: {value}" for name, value in headers),
            f"Content-Length: {len(body)}",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def accept_subscription(self, request: SipMsg) -> None:
        """200 OK for a catalog SUBSCRIBE, granting what was asked."""
        self.reply(request, headers=[("Contact", f"<sip:{self.device_id}@{self.host}:{self.port}>"),
                                     ("Expires", request.get("Expires") or "3600")])

    async def register(self, password: str, expires: int = 3600, username: str | None = None) -> SipMsg:
        """REGISTER, answering one 401 with digest. Returns the final answer."""
        headers = [("Contact", f"<sip:{self.device_id}@{self.host}:{self.port}>"), ("Expires", str(expires))]
        first = await self.transact(self.build("REGISTER", headers))
        if first.status != 401:
            return first
        challenge = challenge_params(first.get("WWW-Authenticate") or "")
        auth, response = digest_authorization(challenge, username or self.device_id, password,
                                              f"sip:{self.gateway_id}@{self.domain}", qop=False)
        self.secrets.update((challenge["nonce"], response))
        return await self.transact(self.build("REGISTER", [*headers, ("Authorization", auth)]))

    async def message(self, xml: str, encoding: str = "GB2312") -> SipMsg:
        return await self._manscdp(manscdp_body(xml, encoding))

    async def keepalive(self) -> SipMsg:
        self.sn += 1
        return await self._manscdp(keepalive_body(self.device_id, self.sn))

    async def _manscdp(self, body: bytes) -> SipMsg:
        return await self.transact(self.build("MESSAGE", [("Content-Type", "Application/MANSCDP+xml")], body))

    async def answer_query(self, cmd_type: str, respond: Callable[[str], str] | None,
                           timeout: float = 5.0) -> SipMsg:
        """Wait for the gateway's Query of `cmd_type`, answer it 200, then send `respond(sn)` if given."""
        query = await self.next_request(timeout)
        assert query.method == "MESSAGE" and query.cmd_type == cmd_type, (query.start, query.body[:200])
        self.reply(query)
        if respond is not None:
            answer = await self.message(respond(query.sn or ""))
            assert answer.status == 200, answer.start
        return query


def device_info_xml(device_id: str, sn: str, name: str, manufacturer: str, model: str, firmware: str) -> str:
    return (
        f"<Response>\r\n<CmdType>DeviceInfo</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{device_id}</DeviceID>\r\n"
        f"<Result>OK</Result>\r\n<DeviceName>{name}</DeviceName>\r\n<Manufacturer>{manufacturer}</Manufacturer>\r\n"
        f"<Model>{model}</Model>\r\n<Firmware>{firmware}</Firmware>\r\n<Channel>1</Channel>\r\n</Response>"
    )


def catalog_xml(device_id: str, sn: str, items: list[dict[str, str]], sum_num: int | None = None) -> str:
    """One Catalog Response page; each item maps element names to text (DeviceID first)."""
    parts = [
        f"<Response>\r\n<CmdType>Catalog</CmdType>\r\n<SN>{sn}</SN>\r\n<DeviceID>{device_id}</DeviceID>\r\n"
        f"<SumNum>{len(items) if sum_num is None else sum_num}</SumNum>\r\n<DeviceList Num=\"{len(items)}\">\r\n"
    ]
    for item in items:
        parts.append("<Item>\r\n" + "".join(f"<{k}>{v}</{k}>\r\n" for k, v in item.items()) + "</Item>\r\n")
    parts.append("</DeviceList>\r\n</Response>")
    return "".join(parts)


# -- the HTTP API ---------------------------------------------------------------------------------------


class ApiClient:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        # Every body the API returned, for the "no secret anywhere" checks.
        self.outputs: list[str] = []

    async def close(self) -> None:
        await self.session.close()

    async def call(self, path: str, method: str = "GET") -> tuple[int, Any]:
        async with self.session.request(method, self.base + path) as response:
            text = await response.text()
            self.outputs.append(text)
            if response.content_type == "application/json":
                return response.status, json.loads(text)
            return response.status, text

    async def ok(self, path: str, method: str = "GET") -> Any:
        status, body = await self.call(path, method)
        assert status in (200, 202), (path, status, body)
        return body

    async def metrics(self) -> dict[str, float]:
        """``name{labels}`` -> value, labels sorted, from /metrics."""
        _, text = await self.call("/metrics")
        return parse_metrics(text)


async def wait_until(check: Callable[[], Awaitable[Any]], timeout: float = 5.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


# -- the gateway in-process -----------------------------------------------------------------------------


@dataclass
class InProcessGateway:
    gateway: Gateway
    api: ApiClient
    devices: list[UdpDevice] = field(default_factory=list)

    @property
    def sip_port(self) -> int:
        return self.gateway.sip_port

    async def device(self, device_id: str) -> GbDevice:
        cfg = self.gateway.config.sip
        device = await GbDevice(device_id, self.sip_port, cfg.id, cfg.domain).open()
        self.devices.append(device)
        return device

    async def udp(self, user_agent: str) -> UdpDevice:
        device = await UdpDevice(self.sip_port, user_agent).open()
        self.devices.append(device)
        return device


@asynccontextmanager
async def running_gateway(tmp_path: Path, overrides: dict[str, Any] | None = None) -> AsyncIterator[InProcessGateway]:
    """A Gateway in this event loop on ephemeral loopback ports, with SQLite under tmp_path."""
    # Ports free for both UDP and TCP: with port 0 the transport binds TCP on whatever port UDP got,
    # which fails now and then when that port is busy on TCP.
    base: dict[str, Any] = {
        "sip": {"id": GATEWAY_ID, "domain": DOMAIN, "listen": f"127.0.0.1:{free_port()}", "query_timeout": 1,
                "catalog_first_wait": 3, "catalog_gap_timeout": 0.5},
        "storage": {"backend": "sqlite", "path": str(tmp_path / "gateway.db")},
        "api": {"listen": f"127.0.0.1:{free_port()}"},
        "audit": {"path": str(tmp_path / "audit.log")},
    }
    gateway = Gateway(load_config(merge_config(base, overrides or {})))
    await gateway.start()
    api = ApiClient(f"http://127.0.0.1:{gateway.api_port}")
    handle = InProcessGateway(gateway, api)
    try:
        yield handle
    finally:
        for device in handle.devices:
            device.close()
        await api.close()
        await gateway.stop()


# -- the daemon as a subprocess -------------------------------------------------------------------------


def daemon_config(tmp_path: Path, **sections: dict[str, Any]) -> tuple[dict[str, Any], int, int]:
    """A config mapping on fresh free ports (sip, api), JSON logs, SQLite under tmp_path."""
    sip_port, api_port = free_port(), free_port()
    data: dict[str, Any] = {
        "sip": {"id": GATEWAY_ID, "domain": DOMAIN, "listen": f"127.0.0.1:{sip_port}", "query_timeout": 1,
                "catalog_first_wait": 3, "catalog_gap_timeout": 0.5},
        "storage": {"backend": "sqlite", "path": str(tmp_path / "gateway.db")},
        "api": {"listen": f"127.0.0.1:{api_port}"},
        "audit": {"path": str(tmp_path / "audit.log")},
        "log": {"level": "info", "format": "json"},
    }
    return merge_config(data, sections), sip_port, api_port


class DaemonProcess:
    """``python3 -m gb28181 run`` in a subprocess; stderr (the JSON log) goes to a file."""

    def __init__(self, args: list[str], log_path: Path, api_url: str, cwd: Path | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self.api_url = api_url
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None

    @classmethod
    def with_config(cls, config: dict[str, Any], config_path: Path, log_path: Path) -> DaemonProcess:
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        api = config["api"]["listen"]
        return cls(["run", "--config", str(config_path)], log_path, f"http://{api}")

    async def start(self, timeout: float = 15.0) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gbgw.gb28181", *self.args, cwd=self.cwd or REPO, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            deadline = time.monotonic() + timeout
            while True:
                if self.process.returncode is not None:
                    raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(self.api_url + "/api/health") as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise AssertionError(f"daemon did not come up:\n{self.log_text()[-3000:]}")
                await asyncio.sleep(0.05)

    def send_signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    async def wait(self, timeout: float = 10.0) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def ensure_stopped(self) -> None:
        """Kill the daemon if a failed test left it running."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        return log_events(self.log_text())

    async def wait_log(self, event: str, timeout: float = 5.0, after: int = 0) -> dict[str, Any]:
        """The first JSON log event named `event`, counting from event number `after`."""
        async def find() -> dict[str, Any] | None:
            for entry in self.log_events()[after:]:
                if entry.get("event") == event:
                    return entry
            return None

        return dict(await wait_until(find, timeout, f"log event {event!r}"))

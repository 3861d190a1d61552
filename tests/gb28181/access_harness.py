"""What the device-access integration tests share: a gateway handle, a scripted SIP device, a sipp runner.

The fixtures that build them are in conftest.py. The gateway runs in the test's event loop on free loopback
ports with a SQLite file under tmp_path, so the tests reach it only through its contracts: SIP on 127.0.0.1
(UDP and TCP), the HTTP API and the log output. ``SipDevice`` is a deliberately small, independent SIP
client (its own parsing and digest arithmetic from ``gwproc``, not the project's ``sip`` package), so a bug
there cannot hide the same bug in the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from gwproc import (
    Datagrams,
    digest_authorization,
    keepalive_body,
    parse_metrics,
    response_bytes,
    until_final,
    wait_until,
)
from gwproc import challenge_params as digest_params
from wire import SipMessage, free_port

from gbgw.gb28181.app.daemon import Gateway
from gbgw.gb28181.config import GatewayConfig
from gbgw.gb28181.observe import logs

GATEWAY_ID = "34020000002000000001"
DOMAIN = "3402000000"
PASSWORD = "gw-secret-12345678"
# A community (industry 01) IPC (type 132) in the social-resource access network (network digit 8).
DEVICE_ID = "34020000011328000001"
SIPP_DIR = Path(__file__).resolve().parents[1] / "sipp"
SIPP_MODE = {"UDP": "u1", "TCP": "t1"}

# -- clock and logs -----------------------------------------------------------------------------------


class OffsetClock:
    """Wall-clock time plus an offset the test moves forward: nonce ages and lockouts without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@contextlib.contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """The gateway's structlog output through the production pipeline (``logs.configure``, so secrets
    are redacted as in production) as JSON lines at debug level, in a buffer.

    Loggers are not cached while capturing, and the previous configuration comes back afterwards, so
    tests elsewhere that capture logs their own way are unaffected.
    """
    saved = structlog.get_config()
    buffer = io.StringIO()
    logs.configure("debug", "json", stream=buffer)
    structlog.configure(cache_logger_on_first_use=False)
    try:
        yield buffer
    finally:
        structlog.configure(**saved)


# -- a minimal SIP client -------------------------------------------------------------------------------


class SipDevice:
    """A scripted device on 127.0.0.1 over UDP or TCP.

    Requests from the gateway (its DeviceInfo/Catalog queries, alarm acknowledgements) are recorded and
    answered by ``on_request`` (default: 200 OK). Responses resolve the request with the same Via branch.
    """

    def __init__(
        self, device_id: str, gateway_port: int, transport: str = "UDP", local_host: str = "127.0.0.1"
    ) -> None:
        self.device_id = device_id
        self.local_host = local_host
        self.gateway = ("127.0.0.1", gateway_port)
        self.transport = transport
        self.local_port = 0
        self.call_id = f"{os.urandom(8).hex()}@127.0.0.1"
        self.from_tag = os.urandom(4).hex()
        self.cseq = 0
        self.requests: list[SipMessage] = []
        self.on_request: Callable[[SipDevice, SipMessage], Awaitable[None] | None] | None = None
        self._waiting: dict[str, asyncio.Future[SipMessage]] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Every secret this device computed or saw, for the "never in the logs" checks.
        self.secrets: set[str] = set()
        self.last_authorization = ""

    async def open(self) -> SipDevice:
        loop = asyncio.get_running_loop()
        if self.transport == "UDP":
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: Datagrams(self.received), local_addr=(self.local_host, 0)
            )
            self.local_port = self._udp.get_extra_info("sockname")[1]
        else:
            reader, self._writer = await asyncio.open_connection(*self.gateway, local_addr=(self.local_host, 0))
            self.local_port = self._writer.get_extra_info("sockname")[1]
            self._reader_task = loop.create_task(self._read_stream(reader))
        return self

    async def close(self) -> None:
        for task in [*self._tasks, *([self._reader_task] if self._reader_task else [])]:
            task.cancel()
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    async def _read_stream(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
                length = int(match.group(1)) if match else 0
                body = await reader.readexactly(length) if length else b""
                self.received(head + body)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass

    # -- bytes ------------------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(data, self.gateway)
        else:
            assert self._writer is not None
            self._writer.write(data)

    def received(self, data: bytes) -> None:
        message = SipMessage.parse(data)
        if message.is_response:
            challenge = message.get("WWW-Authenticate")
            if challenge:
                self.secrets.add(digest_params(challenge).get("nonce", ""))
            future = self._waiting.get(message.branch)
            if future is not None and not future.done() and message.status >= 200:
                future.set_result(message)
            return
        self.requests.append(message)
        if message.method == "ACK":
            return
        handler = self.on_request or SipDevice.answer_ok
        result = handler(self, message)
        if asyncio.iscoroutine(result):
            task = asyncio.get_running_loop().create_task(result)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def answer_ok(self, request: SipMessage, status: int = 200, reason: str = "OK") -> None:
        self.send_raw(response_bytes(request, status, reason, self.from_tag))

    # -- requests ---------------------------------------------------------------------------------------

    @property
    def via_transport(self) -> str:
        return "UDP" if self.transport == "UDP" else "TCP"

    def build(
        self,
        method: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        call_id: str | None = None,
        cseq: int | None = None,
        from_user: str | None = None,
        to_user: str | None = None,
    ) -> tuple[bytes, str]:
        """A request's bytes and its Via branch. CSeq counts up per device unless given."""
        branch = "z9hG4bK" + os.urandom(6).hex()
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        from_user = from_user or self.device_id
        to_user = to_user or (self.device_id if method == "REGISTER" else GATEWAY_ID)
        lines = [
            f"{method} sip:{GATEWAY_ID}@{DOMAIN} SIP/2.0",
            f"Via: SIP/2.0/{self.via_transport} {self.local_host}:{self.local_port};rport;branch={branch}",
            f"From: <sip:{from_user}@{DOMAIN}>;tag={self.from_tag}",
            f"To: <sip:{to_user}@{DOMAIN}>",
            f"Call-ID: {call_id or self.call_id}",
            f"CSeq: {cseq} {method}",
            "Max-Forwards: 70",
            "User-Agent: test device",
        ]
        lines += [f"{name}: {value}" for name, value in headers or ()]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body, branch

    async def send(self, data: bytes, branch: str, timeout: float = 3.0) -> SipMessage:
        """Send a request (retransmitted over UDP like Timer E) and wait for its final response."""
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._waiting[branch] = future
        try:
            return await until_final(lambda: self.send_raw(data), future, timeout,
                                     retransmit=self.transport == "UDP", interval=0.25, max_interval=2.0)
        finally:
            self._waiting.pop(branch, None)

    async def request(self, method: str, **kwargs: Any) -> SipMessage:
        timeout = kwargs.pop("timeout", 3.0)
        data, branch = self.build(method, **kwargs)
        return await self.send(data, branch, timeout)

    async def register(
        self,
        password: str = PASSWORD,
        *,
        expires: int | None = 3600,
        username: str | None = None,
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> SipMessage:
        """REGISTER; answer a 401 (once, or again when it says stale) with digest. Returns the final answer."""
        extra_headers = extra_headers or []
        headers = [] if any(n == "Contact" for n, _ in extra_headers) else [
            ("Contact", f"<sip:{self.device_id}@{self.local_host}:{self.local_port}>")
        ]
        if expires is not None:
            headers.append(("Expires", str(expires)))
        headers += extra_headers
        response = await self.request("REGISTER", headers=headers)
        for _ in range(2):
            if response.status != 401:
                return response
            response = await self.answer_challenge(response, password, headers, username=username)
        return response

    async def answer_challenge(
        self,
        challenge_response: SipMessage,
        password: str,
        headers: list[tuple[str, str]],
        *,
        username: str | None = None,
        call_id: str | None = None,
    ) -> SipMessage:
        challenge = digest_params(challenge_response.get("WWW-Authenticate") or "")
        value, response_hash = digest_authorization(
            challenge, username or self.device_id, password, f"sip:{GATEWAY_ID}@{DOMAIN}"
        )
        self.secrets.update({challenge["nonce"], response_hash})
        self.last_authorization = value
        return await self.request("REGISTER", headers=[*headers, ("Authorization", value)], call_id=call_id)

    async def message(self, body: bytes, content_type: str = "Application/MANSCDP+xml", **kwargs: Any) -> SipMessage:
        return await self.request("MESSAGE", headers=[("Content-Type", content_type)], body=body,
                                  call_id=f"{os.urandom(8).hex()}@127.0.0.1", **kwargs)

    async def keepalive(self, sn: int = 1) -> SipMessage:
        return await self.message(keepalive_body(self.device_id, sn))


# -- the gateway ----------------------------------------------------------------------------------------


@dataclass
class RunningGateway:
    """A started Gateway with its addresses and ways to reach it."""

    gateway: Gateway
    config: GatewayConfig
    clock: OffsetClock
    log: io.StringIO
    http: aiohttp.ClientSession
    devices: list[SipDevice] = field(default_factory=list)
    stopped: bool = False

    async def stop(self) -> None:
        """Close this gateway's devices, then the gateway (idempotent)."""
        if self.stopped:
            return
        self.stopped = True
        for device in self.devices:
            await device.close()
        self.devices.clear()
        await self.gateway.stop()

    @property
    def sip_port(self) -> int:
        return self.gateway.sip_port

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.api_port}"

    @property
    def log_text(self) -> str:
        return self.log.getvalue()

    async def api(self, path: str, method: str = "GET") -> tuple[int, Any]:
        async with self.http.request(method, self.api_url + path) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()

    async def device(self, device_id: str = DEVICE_ID) -> dict[str, Any]:
        status, body = await self.api(f"/api/devices/{device_id}")
        assert status == 200, (status, body)
        return body

    async def device_or_none(self, device_id: str) -> dict[str, Any] | None:
        status, body = await self.api(f"/api/devices/{device_id}")
        return body if status == 200 else None

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        _, text = await self.api("/metrics")
        wanted = ",".join(sorted(f'{k}="{v}"' for k, v in labels.items()))
        return parse_metrics(text).get(f"{name}{{{wanted}}}" if wanted else name, 0.0)

    async def wait_for(
        self, check: Callable[[], Awaitable[Any]], timeout: float = 5.0, what: str = "condition"
    ) -> Any:
        return await wait_until(check, timeout, what)

    async def new_device(
        self, device_id: str = DEVICE_ID, transport: str = "UDP", local_host: str = "127.0.0.1"
    ) -> SipDevice:
        device = await SipDevice(device_id, self.sip_port, transport, local_host).open()
        self.devices.append(device)
        return device

    async def registered_device(
        self, device_id: str = DEVICE_ID, transport: str = "UDP", password: str = PASSWORD
    ) -> SipDevice:
        device = await self.new_device(device_id, transport)
        response = await device.register(password)
        assert response.status == 200, response.start
        return device

    async def alive(self) -> bool:
        status, body = await self.api("/api/health")
        return status == 200 and body["status"] == "ok"


BASE_CONFIG: dict[str, Any] = {
    "sip": {
        "id": GATEWAY_ID,
        "domain": DOMAIN,
        "listen": "127.0.0.1:5060",  # replaced by port 0 below: YAML asks for a real port
        "password": PASSWORD,
        "query_timeout": 2,
        "catalog_first_wait": 2,
        "catalog_gap_timeout": 1,
    },
    "api": {"listen": "127.0.0.1:8080"},
    "log": {"level": "debug"},
}


# -- sipp -----------------------------------------------------------------------------------------------

requires_sipp = pytest.mark.skipif(
    shutil.which("sipp") is None, reason="sipp not on PATH: install the Debian package sip-tester"
)


@dataclass
class SippRun:
    returncode: int | None
    output: str
    workdir: Path

    def report(self) -> str:
        parts = [f"sipp exit code {self.returncode}", f"--- output\n{self.output[-2000:]}"]
        for path in sorted(self.workdir.glob("*_errors.log")):
            parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        for path in sorted(self.workdir.glob("*_messages.log")):
            parts.append(f"--- {path.name} (end)\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


class Sipp:
    """Runs sipp scenarios from tests/sipp against a gateway; every run is bounded and keeps its logs."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.count = 0

    def command(self, scenario: str, port: int, transport: str, keys: dict[str, str],
                ooc: str | None = None) -> list[str]:
        command = [
            "sipp", "-sf", str(SIPP_DIR / scenario), "-i", "127.0.0.1", "-p", str(free_port()),
            "-t", SIPP_MODE[transport], "-m", "1", "-timeout", "15s", "-timeout_error",
            "-trace_err", "-trace_msg", "-nostdin", "-max_recv_loops", "100",
        ]
        if ooc is not None:
            command += ["-oocsf", str(SIPP_DIR / ooc)]
        if "inf" in keys:
            command += ["-inf", keys.pop("inf")]
        for name, value in keys.items():
            command += ["-key", name, value]
        return [*command, f"127.0.0.1:{port}"]

    async def start(self, scenario: str, port: int, transport: str, ooc: str | None = None,
                    **keys: str) -> tuple[asyncio.subprocess.Process, Path]:
        self.count += 1
        workdir = self.workdir / f"sipp{self.count}"
        workdir.mkdir()
        process = await asyncio.create_subprocess_exec(
            *self.command(scenario, port, transport, keys, ooc), cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        return process, workdir

    async def finish(self, process: asyncio.subprocess.Process, workdir: Path, timeout: float = 20) -> SippRun:
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            process.kill()
            output, _ = await process.communicate()
        return SippRun(process.returncode, output.decode(errors="replace"), workdir)

    async def run(self, scenario: str, port: int, transport: str, ooc: str | None = None, **keys: str) -> SippRun:
        return await self.finish(*await self.start(scenario, port, transport, ooc, **keys))

"""A PJSIP (pjsua2) user agent playing a GB/T 28181 camera, driven over stdin/stdout JSON lines.

PJSIP runs in its own process because it owns threads, a global library state (one Endpoint per process)
and signal-unsafe C code; pytest's event loop must not share a process with it. Inside that process
PJSIP is polled from the main thread only (``threadCnt = 0``, ``mainThreadOnly``), so every callback runs
on the thread that also reads commands: no locks, no thread registration.

As a script (``python pjsip_agent.py LOGFILE udp|tcp``) it prints ``{"event": "ready", "port": N}`` once
its transport is bound on 127.0.0.1, then one JSON event per line (``reg``, ``im``, ``im_status``, ``error``)
and executes the commands it reads (``register``, ``unregister``, ``message``, ``quit``). ``PjsipCamera``
is the asyncio side the tests use.

pjsua2 takes message bodies as Python ``str`` and sends them UTF-8 encoded (bytes are refused), so a body
declared GB2312 can only carry its ASCII subset here; GB2312 text beyond ASCII is covered by the replayed
captures of tests/gb28181.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# -- the PJSIP process ------------------------------------------------------------------------------------


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def _agent(log_path: str, transport_name: str) -> None:
    import pjsua2 as pj

    class Camera(pj.Account):
        def onRegState(self, prm: Any) -> None:
            _emit("reg", code=prm.code, reason=prm.reason, expiration=prm.expiration, msg=prm.rdata.wholeMsg)

        def onInstantMessage(self, prm: Any) -> None:
            _emit("im", from_uri=prm.fromUri, to_uri=prm.toUri, content_type=prm.contentType, body=prm.msgBody,
                  msg=prm.rdata.wholeMsg)

        def onInstantMessageStatus(self, prm: Any) -> None:
            _emit("im_status", to_uri=prm.toUri, code=prm.code, reason=prm.reason)

    ep = pj.Endpoint()
    ep.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.uaConfig.userAgent = "pjsua2 interop camera"
    config.logConfig.filename = log_path
    config.logConfig.fileFlags = 0
    config.logConfig.level = 5
    config.logConfig.consoleLevel = 0
    config.logConfig.msgLogging = 1
    ep.libInit(config)
    transport = pj.TransportConfig()
    transport.port = 0
    transport.boundAddress = "127.0.0.1"
    transport.publicAddress = "127.0.0.1"
    kind = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP}[transport_name]
    tid = ep.transportCreate(kind, transport)
    ep.libStart()
    ep.audDevManager().setNullDev()
    port = int(ep.transportGetInfo(tid).localName.rpartition(":")[2])

    account: Camera | None = None
    buddies: dict[str, Any] = {}

    def register(cmd: dict[str, Any]) -> None:
        nonlocal account
        acc = pj.AccountConfig()
        acc.idUri = cmd["id"]
        acc.regConfig.registrarUri = cmd["registrar"]
        acc.regConfig.timeoutSec = cmd.get("expires", 3600)
        # PJSIP refreshes this many seconds before the granted expiry; a test sets it to see a refresh soon.
        acc.regConfig.delayBeforeRefreshSec = cmd.get("refresh_before", 5)
        # A refused registration is what the test looks at: PJSIP must not retry it behind the test's back.
        acc.regConfig.retryIntervalSec = 0
        acc.sipConfig.authCreds.append(pj.AuthCredInfo("digest", cmd["realm"], cmd["user"], 0, cmd["password"]))
        acc.sipConfig.transportId = tid
        account = Camera()
        account.create(acc, True)

    def message(cmd: dict[str, Any]) -> None:
        assert account is not None, "register first"
        buddy = buddies.get(cmd["to"])
        if buddy is None:
            buddy_config = pj.BuddyConfig()
            buddy_config.uri = cmd["to"]
            buddy = buddies[cmd["to"]] = pj.Buddy()
            buddy.create(account, buddy_config)
        prm = pj.SendInstantMessageParam()
        prm.contentType = cmd["content_type"]
        prm.content = cmd["body"]
        buddy.sendInstantMessage(prm)

    def unregister(cmd: dict[str, Any]) -> None:
        assert account is not None, "register first"
        account.setRegistration(False)

    ops: dict[str, Callable[[dict[str, Any]], None]] = {
        "register": register, "message": message, "unregister": unregister,
    }
    _emit("ready", port=port)
    pending = b""
    running = True
    while running:
        ep.libHandleEvents(10)
        while select.select([sys.stdin], [], [], 0)[0]:
            chunk = os.read(sys.stdin.fileno(), 65536)
            if not chunk:
                running = False
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                cmd = json.loads(line)
                if cmd["op"] == "quit":
                    running = False
                    break
                try:
                    ops[cmd["op"]](cmd)
                except Exception as exc:  # the test reads it as an event instead of a dead process
                    _emit("error", op=cmd["op"], message=f"{type(exc).__name__}: {exc}")
    buddies.clear()
    if account is not None:
        account.shutdown()
    ep.libDestroy()


# -- the asyncio side -------------------------------------------------------------------------------------


class PjsipCamera:
    """The PJSIP agent process as seen from a test: commands out, events in (kept, consumed once)."""

    def __init__(self, log_path: Path, transport: str = "udp") -> None:
        self.log_path = log_path
        self.transport = transport
        self.port = 0
        self.events: list[dict[str, Any]] = []
        self._taken: set[int] = set()
        self._arrived = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "pjsip_agent.py"), str(self.log_path), self.transport,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        ready = await self.expect("ready", timeout=timeout)
        self.port = int(ready["port"])

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for line in self._process.stdout:
            try:
                event = json.loads(line)
            except ValueError:  # PJSIP writes a few lines of its own on stdout before logging is set up
                event = {"event": "output", "text": line.decode(errors="replace")}
            self.events.append(event)
            self._arrived.set()
        self.events.append({"event": "exit"})
        self._arrived.set()

    def send(self, op: str, **fields: Any) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())

    async def expect(self, event: str, match: Callable[[dict[str, Any]], bool] = lambda e: True,
                     timeout: float = 10.0) -> dict[str, Any]:
        """The first not yet consumed `event` that `match`es; AssertionError after `timeout` or if the
        agent reported an error or died."""
        async def find() -> dict[str, Any]:
            while True:
                for index, found in enumerate(self.events):
                    if index in self._taken:
                        continue
                    if found["event"] == event and match(found):
                        self._taken.add(index)
                        return found
                    if found["event"] in ("error", "exit"):
                        raise AssertionError(f"PJSIP agent {found} while waiting for {event!r}:\n{self.log_tail()}")
                self._arrived.clear()
                await self._arrived.wait()

        try:
            return await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {event!r} from PJSIP within {timeout} s:\n{self.log_tail()}") from None

    def log_tail(self, size: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-size:]
        return ""

    async def stop(self) -> None:
        if self._process is None:
            return
        if self._process.returncode is None:
            with contextlib.suppress(ConnectionError):
                self.send("quit")
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


if __name__ == "__main__":
    _agent(sys.argv[1], sys.argv[2])

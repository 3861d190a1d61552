"""Interop with sipp (an independent SIP implementation): our server under sipp UACs, our client under a
sipp UAS. Scenarios live in tests/sipp/. Every sipp run is bounded (-m, -timeout) and asserted on its exit
code, with its error and message logs in the failure message."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from wire import free_port

from gbgw.sip.endpoint import Peer, SipEndpoint
from gbgw.sip.registration import Registration, RegistrationError, RegistrationState
from gbgw.sip.transport import SipTransport

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.skipif(
        shutil.which("sipp") is None,
        reason="sipp not found on PATH: install the Debian package sip-tester (tests/run.sh does)",
    ),
]

SCENARIOS = Path(__file__).resolve().parents[1] / "sipp"
SIPP_MODE = {"UDP": "u1", "TCP": "t1"}
# The account the scenarios use (uac_register.xml, uas_register.xml) and LoopbackRegistrar's default user.
USER = "34020000001320000001"
PASSWORD = "12345678"


@dataclass
class SippRun:
    returncode: int | None
    output: str
    workdir: Path

    def report(self) -> str:
        """Everything useful for a failed assertion: exit code, error log, end of screen and message log."""
        parts = [f"sipp exit code {self.returncode}"]
        for log in sorted(self.workdir.glob("*_errors.log")):
            parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        parts.append(f"--- sipp output (end)\n{self.output[-2000:]}")
        for log in sorted(self.workdir.glob("*_messages.log")):
            parts.append(f"--- {log.name} (end)\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


def sipp_command(scenario: str, transport: str, calls: int, *extra: str) -> list[str]:
    return [
        "sipp", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(free_port()),
        "-t", SIPP_MODE[transport], "-m", str(calls), "-timeout", "20s", "-timeout_error",
        "-trace_err", "-trace_msg", "-nostdin", *extra,
    ]


async def start_sipp(command: list[str], workdir: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command, cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )


async def finish_sipp(process: asyncio.subprocess.Process, workdir: Path, timeout: float = 30.0) -> SippRun:
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
    return SippRun(process.returncode, output.decode(errors="replace"), workdir)


async def run_sipp(command: list[str], workdir: Path) -> SippRun:
    return await finish_sipp(await start_sipp(command, workdir), workdir)


def _listening(port: int, transport: str) -> bool:
    """Whether something listens on 127.0.0.1:port, read from /proc so no probe reaches sipp."""
    table = "/proc/net/udp" if transport == "UDP" else "/proc/net/tcp"
    wanted = f"0100007F:{port:04X}"
    with open(table) as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and (transport == "UDP" or fields[3] == "0A"):
                return True
    return False


async def wait_listening(port: int, transport: str, process: asyncio.subprocess.Process) -> None:
    for _ in range(500):
        if _listening(port, transport):
            return
        if process.returncode is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"sipp did not listen on {transport} port {port} within 5 s")


# -- (a) sipp UAC registers with digest to our registrar -------------------------------------------------

@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_sipp_registers_with_digest(sip_registrar_factory, tmp_path, transport):
    registrar = await sip_registrar_factory()
    calls = 3
    command = sipp_command("uac_register.xml", transport, calls, "-l", str(calls), f"127.0.0.1:{registrar.port}")

    run = await run_sipp(command, tmp_path)

    assert run.returncode == 0, run.report()
    sent = registrar.registers()
    assert len(sent) == 2 * calls, run.report()
    assert sum(1 for r in sent if r.get("Authorization")) == calls
    assert len({r.call_id for r in sent}) == calls
    contact, expires = registrar.bindings[f"sip:{USER}@3402000000"]
    assert expires == 3600
    assert contact.lower().endswith(f"transport={transport.lower()}")


@pytest.mark.parametrize(("transport", "refusal"), [("UDP", 403), ("TCP", 403), ("UDP", 401)])
async def test_sipp_wrong_password_refused(sip_registrar_factory, tmp_path, transport, refusal):
    registrar = await sip_registrar_factory()
    registrar.wrong_password_status = refusal
    command = sipp_command("uac_register_wrong_password.xml", transport, 1, f"127.0.0.1:{registrar.port}")

    run = await run_sipp(command, tmp_path)

    assert run.returncode == 0, run.report()
    assert len(registrar.registers()) == 2
    assert registrar.bindings == {}


# -- (b) retransmissions of a slowly answered MESSAGE are absorbed --------------------------------------

async def test_sipp_message_retransmissions_absorbed(sip_registrar_factory, tmp_path):
    registrar = await sip_registrar_factory()
    # sipp retransmits at 150, 450 and 1050 ms (T1 = 150 ms); the answer comes at 1200 ms.
    registrar.message_delay = 1.2
    calls = 3
    command = sipp_command(
        "uac_message_retrans.xml", "UDP", calls, "-l", str(calls), "-r", "20", f"127.0.0.1:{registrar.port}"
    )

    run = await run_sipp(command, tmp_path)

    assert run.returncode == 0, run.report()
    per_call = Counter(r.call_id for r in registrar.requests if r.method == "MESSAGE")
    assert len(per_call) == calls, run.report()
    assert set(per_call.values()) == {1}, f"the TU saw retransmissions: {per_call}"
    assert registrar.endpoint.transactions.absorbed >= 2 * calls


# -- (c) our Registration against a sipp registrar -------------------------------------------------------

@pytest.fixture
async def sip_client_transport() -> AsyncIterator[SipTransport]:
    transport = SipTransport(SipEndpoint(), lambda txn: None)
    await transport.start("127.0.0.1", 0)
    yield transport
    await transport.close()


def _registration(client: SipTransport, transport: str, port: int, password: str) -> Registration:
    contact = f"sip:{USER}@127.0.0.1:{client.port}" + (";transport=tcp" if transport == "TCP" else "")
    return Registration(
        client, Peer(transport, "127.0.0.1", port), f"sip:{USER}@3402000000",
        f"sip:34020000002000000001@127.0.0.1:{port}", USER, password, 3600, contact,
    )


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_registration_against_sipp_registrar(sip_client_transport, tmp_path, transport):
    command = sipp_command("uas_register.xml", transport, 1)
    port = int(command[command.index("-p") + 1])
    process = await start_sipp(command, tmp_path)
    reg = _registration(sip_client_transport, transport, port, PASSWORD)
    try:
        await wait_listening(port, transport, process)
        reg.start()
        # sipp grants 1 s: wait for the first success, then for the refresh (a second, later expiry).
        first = None
        for _ in range(500):
            if reg.state is RegistrationState.REGISTERED:
                if first is None:
                    first = reg.expires_at
                elif reg.expires_at != first:
                    break
            if process.returncode is not None:
                break
            await asyncio.sleep(0.01)
        refreshed = reg.state is RegistrationState.REGISTERED and first is not None and reg.expires_at != first
        await reg.stop(unregister=True)
    finally:
        run = await finish_sipp(process, tmp_path)
    assert refreshed, f"{reg!r} reason={reg.reason}\n{run.report()}"
    assert reg.state is RegistrationState.UNREGISTERED and reg.reason is None, reg.reason
    assert reg.cseq == 4
    assert run.returncode == 0, run.report()


@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_registration_wrong_password_against_sipp(sip_client_transport, tmp_path, transport):
    command = sipp_command("uas_register.xml", transport, 1)
    port = int(command[command.index("-p") + 1])
    process = await start_sipp(command, tmp_path)
    reg = _registration(sip_client_transport, transport, port, "not-the-password")
    try:
        await wait_listening(port, transport, process)
        with pytest.raises(RegistrationError) as info:
            await reg.register()
    finally:
        run = await finish_sipp(process, tmp_path)
    assert info.value.status == 403
    assert "wrong password" in info.value.reason
    assert reg.state is RegistrationState.FAILED
    assert run.returncode == 0, run.report()


# -- (d) OPTIONS ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["UDP", "TCP"])
async def test_sipp_options_answered_with_allow(sip_registrar_factory, tmp_path, transport):
    registrar = await sip_registrar_factory()
    command = sipp_command("uac_options.xml", transport, 2, f"127.0.0.1:{registrar.port}")

    run = await run_sipp(command, tmp_path)

    assert run.returncode == 0, run.report()
    assert registrar.endpoint.counters.options == 2
    assert registrar.requests == []  # answered by the endpoint, never reached the TU

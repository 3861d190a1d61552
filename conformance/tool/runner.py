"""Running the device rows: wait for the device to register, run each selected row's check under its
own time budget and the run's overall bound, and show progress on the terminal (stderr).

The unregistration row runs last, whatever its place in the sheet: a device that unregisters cannot
answer the rows after it. Rows are reported in sheet order.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import TextIO

from gbgw.conformance.tool import media_items, upper_items  # noqa: F401  (they register checks in CHECKS)
from gbgw.conformance.tool.device_items import (
    BUDGETS,
    CHECKS,
    DeviceOptions,
    DeviceRun,
    Operator,
    Verdict,
    failed,
)
from gbgw.conformance.tool.lower import LowerSide
from gbgw.conformance.tool.lower_items import LOWER_CHECKS, LowerRun
from gbgw.conformance.tool.platform import Platform
from gbgw.conformance.tool.registrar import Registrar
from gbgw.conformance.tool.report import ItemResult, Outcome, Report
from gbgw.conformance.tool.sheet import AnyCheck, Check, PlatformCheck, Row
from gbgw.sip.endpoint import Peer


class Progress:
    """One line per item: "running" while it runs, then its result."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        self.tty = out.isatty()
        self.done = 0

    def status(self, text: str) -> None:
        if self.tty:
            self.out.write(f"\r\x1b[K{text}")
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def start(self, row: Row, waiting: str) -> None:
        self.status(f"[{self.done + 1:2d}/{self.total}] #{row.number} {row.name}: {waiting}")

    def finish(self, item: ItemResult) -> None:
        self.done += 1
        line = f"[{self.done:2d}/{self.total}] #{item.number} {item.name}: {item.result.value.upper()} {item.detail}"
        self.out.write(("\r\x1b[K" if self.tty else "") + line + "\n")
        self.out.flush()


def _arrivals(platform: Platform, listen: str) -> list[str]:
    if not platform.arrivals:
        return [f"nothing arrived at {listen}"]
    return [f"{a.source} {a.line} (From {a.from_})" for a in platform.arrivals[-20:]]


async def run_device(
    rows: list[Row],
    *,
    platform_id: str,
    domain: str,
    password: str,
    listen: tuple[str, int],
    options: DeviceOptions,
    device_id: str | None,
    edition: str,
    overall: float,
    grant_expires: int,
    wrong_password_round: bool,
    out: TextIO = sys.stderr,
    mode: str = "device",
) -> Report:
    """Device mode, or (``mode`` "upper") the 上联 rows: the registrant is a lower platform, reached
    through to the cameras it shares."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + overall
    registrar = Registrar(domain, password, grant_expires=grant_expires, wrong_password_round=wrong_password_round)
    platform = Platform(platform_id, domain, registrar, device_id=device_id)
    host, port = await platform.start(*listen)
    listen_text = f"{host}:{port}"
    target: dict[str, str] = {"mode": mode}
    if mode == "device":
        target["type"] = options.device_type
    target |= {"listen": listen_text, "platform_id": platform_id, "domain": domain, "device_id": device_id or ""}
    report = Report(edition, target)
    progress = Progress(out, len(rows))
    run = DeviceRun(platform, options, Operator(options.unattended), via_platform=mode == "upper")
    results: dict[int, ItemResult] = {}
    try:
        progress.status(f"listening on {listen_text} (UDP and TCP) as {platform_id}; waiting up to "
                        f"{options.register_wait:g} s for the {'platform' if mode == 'upper' else 'device'} "
                        "to register")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(platform.registered.wait(), min(options.register_wait, overall))
        report.target["device_id"] = platform.device_id or device_id or ""
        ordered = sorted(rows, key=lambda r: r.check is Check.UNREGISTER)
        for row in ordered:
            started = time.monotonic()
            if row.check is None or row.check not in CHECKS:
                verdict = Verdict(Outcome.SKIP, "not implemented by this version of the tool")
            elif not platform.registered.is_set() and row.check is not Check.UNREGISTER:
                verdict = _unregistered(row, platform, listen_text, options.register_wait)
            elif loop.time() >= deadline:
                verdict = Verdict(Outcome.SKIP, f"the overall bound of {overall:g} s was reached")
            else:
                progress.start(row, "running")
                budget = min(BUDGETS[row.check](options), deadline - loop.time())
                try:
                    verdict = await asyncio.wait_for(CHECKS[row.check](run), budget)
                except TimeoutError:
                    verdict = failed("tool timeout", f"no conclusion within {budget:.0f} s")
            item = ItemResult(row.number, row.name, verdict.outcome, verdict.detail,
                              [e for e in verdict.evidence if e], time.monotonic() - started)
            results[row.number] = item
            progress.finish(item)
    finally:
        await platform.close()
    report.items = [results[row.number] for row in rows]
    return report


def _unregistered(row: Row, platform: Platform, listen: str, waited: float) -> Verdict:
    if row.check is Check.REGISTER:
        return failed("§9.1.2", f"the device never registered in {waited:g} s; what arrived instead:",
                      *_arrivals(platform, listen), *platform.registrar.log.requests[-5:])
    return Verdict(Outcome.SKIP, "the device never registered")


async def run_lower(
    rows: list[Row],
    *,
    lower_id: str,
    platform_id: str,
    domain: str,
    password: str,
    target: tuple[str, int],
    listen: tuple[str, int],
    options: DeviceOptions,
    edition: str,
    overall: float,
    channels: int,
    media: Path | None,
    out: TextIO = sys.stderr,
) -> Report:
    """The 下联 rows: the tool registers to the platform under test (the registration row first, the
    unregistration row last, whatever their place in the sheet) and runs each row under its budget."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + overall
    side = LowerSide(lower_id, platform_id, domain, password, Peer("UDP", *target), channels=channels, media=media)
    host, port = await side.start(*listen)
    report = Report(edition, {"mode": "lower", "target": f"{target[0]}:{target[1]}", "listen": f"{host}:{port}",
                              "lower_id": lower_id, "platform_id": platform_id, "domain": domain})
    progress = Progress(out, len(rows))
    run = LowerRun(side, options)
    results: dict[int, ItemResult] = {}
    order: dict[AnyCheck, int] = {PlatformCheck.L_REGISTER: 0, PlatformCheck.L_UNREGISTER: 2}
    try:
        if not any(row.check is PlatformCheck.L_REGISTER for row in rows):
            await side.register(side.expires, options.item_timeout)
        for row in sorted(rows, key=lambda r: order.get(r.check, 1) if r.check else 1):
            started = time.monotonic()
            func = LOWER_CHECKS.get(row.check) if row.check is not None else None
            if func is None:
                verdict = Verdict(Outcome.SKIP, "not implemented by this version of the tool")
            elif loop.time() >= deadline:
                verdict = Verdict(Outcome.SKIP, f"the overall bound of {overall:g} s was reached")
            else:
                progress.start(row, "running")
                budget = min(options.action_wait + 3 * options.item_timeout + options.keepalive_count
                             * options.keepalive_interval + 5, deadline - loop.time())
                try:
                    verdict = await asyncio.wait_for(func(run), budget)
                except TimeoutError:
                    verdict = failed("tool timeout", f"no conclusion within {budget:.0f} s")
            item = ItemResult(row.number, row.name, verdict.outcome, verdict.detail,
                              [e for e in verdict.evidence if e], time.monotonic() - started)
            results[row.number] = item
            progress.finish(item)
    finally:
        await side.close()
    report.items = [results[row.number] for row in rows]
    return report

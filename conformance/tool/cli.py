"""``gb28181-conformance``: test a GB/T 28181 device (and later platforms) item by item against the
certification sheets, with JSON, JUnit XML and HTML reports. Exit status 0 when no item failed, 1
when one did, 2 for invalid options."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from gbgw.conformance.tool.device_items import DeviceOptions
from gbgw.conformance.tool.report import Outcome
from gbgw.conformance.tool.runner import run_device
from gbgw.conformance.tool.sheet import DEVICE_TYPES, EDITIONS, rows, select
from gbgw.sip.errors import SipParseError
from gbgw.sip.uri import split_host_port


def _address(text: str) -> tuple[str, int]:
    try:
        host, port = split_host_port(text)
    except SipParseError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP:PORT ({exc})") from None
    if port is None or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not IP:PORT, e.g. 192.168.1.10:5060")
    host = host.removeprefix("[").removesuffix("]")
    if host in ("0.0.0.0", "::"):
        # The address goes into SDP offers and Contact headers: the device needs one it can reach.
        raise argparse.ArgumentTypeError(f"{text!r}: give the address the device reaches, not a wildcard")
    return host, port


def _digits(length: int, what: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not (len(text) == length and text.isascii() and text.isdigit()):
            raise argparse.ArgumentTypeError(f"{what} must be {length} digits, not {text!r}")
        return text
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gb28181-conformance", description=__doc__)
    modes = parser.add_subparsers(dest="mode", required=True)
    device = modes.add_parser("device", help="test a camera or NVR: the tool is the platform it registers to")
    add = device.add_argument
    add("--type", required=True, choices=DEVICE_TYPES, help="the device under test")
    add("--listen", required=True, type=_address, metavar="IP:PORT", help="where the device registers (UDP and TCP)")
    add("--id", required=True, type=_digits(20, "--id"), help="the platform's 20-digit SIP ID, as set on the device")
    add("--domain", required=True, type=_digits(10, "--domain"), help="the 10-digit SIP domain (digest realm)")
    add("--password", required=True, help="the device's registration password")
    add("--device-id", type=_digits(20, "--device-id"), help="only this device may register")
    add("--items", help="sheet rows to run, e.g. 102-106,111 (default all of the type's rows)")
    add("--edition", choices=EDITIONS, default="2016", help="certification sheet (default 2016)")
    add("--report", action="append", type=Path, default=[], metavar="FILE",
        help="write a report: .json, .xml (JUnit) or .html; repeatable")
    add("--unattended", action="store_true",
        help="nobody watches: controls are judged by their answers only, operator items are left manual")
    add("--timeout", type=float, default=900.0, help="overall bound in seconds (default 900)")
    add("--item-timeout", type=float, default=10.0, help="seconds to wait for one answer (default 10)")
    add("--register-wait", type=float, default=120.0,
        help="seconds to wait for the device to register (default 120)")
    add("--keepalive-interval", type=float, default=60.0,
        help="the keepalive interval set on the device (default 60)")
    add("--keepalive-tolerance", type=float, default=0.5,
        help="fraction of the interval a keepalive may be late (default 0.5)")
    add("--grant-expires", type=int, default=3600, help="the longest registration granted (default 3600)")
    add("--media-seconds", type=float, default=4.0, help="seconds of live stream to check (default 4)")
    add("--no-wrong-password-round", action="store_true",
        help="do not refuse the first correct digest answer with 403")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        selected = select(rows(args.edition, args.type), args.items)
        for path in args.report:
            if path.suffix.lower() not in (".json", ".xml", ".html", ".htm"):
                raise ValueError(f"--report {path}: the suffix must be .json, .xml or .html")
        if min(args.timeout, args.item_timeout, args.register_wait, args.keepalive_interval, args.media_seconds) <= 0:
            raise ValueError("timeouts, intervals and --media-seconds must be positive")
    except ValueError as exc:
        print(f"gb28181-conformance: {exc}", file=sys.stderr)
        return 2
    options = DeviceOptions(
        device_type=args.type, unattended=args.unattended, item_timeout=args.item_timeout,
        register_wait=args.register_wait, keepalive_interval=args.keepalive_interval,
        keepalive_tolerance=args.keepalive_tolerance, media_seconds=args.media_seconds,
    )
    try:
        report = asyncio.run(run_device(
            selected, platform_id=args.id, domain=args.domain, password=args.password, listen=args.listen,
            options=options, device_id=args.device_id, edition=args.edition, overall=args.timeout,
            grant_expires=args.grant_expires, wrong_password_round=not args.no_wrong_password_round,
        ))
    except OSError as exc:
        print(f"gb28181-conformance: cannot listen on {args.listen[0]}:{args.listen[1]}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 1
    for path in args.report:
        report.write(path)
    summary = report.summary
    print(" · ".join(f"{k} {v}" for k, v in summary.items()), file=sys.stderr)
    return 1 if summary[Outcome.FAIL.value] else 0

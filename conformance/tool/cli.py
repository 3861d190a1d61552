"""``gb28181-conformance``: test a GB/T 28181 device (and later platforms) item by item against the
certification sheets, with JSON, JUnit XML and HTML reports. Exit status 0 when no item failed, 1
when one did, 2 for invalid options."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

from gbgw.conformance.tool.device_items import DeviceOptions
from gbgw.conformance.tool.report import Outcome
from gbgw.conformance.tool.runner import run_device, run_lower
from gbgw.conformance.tool.sheet import DEVICE_TYPES, EDITIONS, platform_rows, rows, select
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
    add("--expect-alarm", action="store_true",
        help="the operator triggers an alarm: the alarm and event notification rows wait --action-wait for it")
    add("--action-wait", type=float, default=60.0,
        help="seconds the alarm rows wait with --expect-alarm (default 60)")
    add("--history-seconds", type=float, default=4.0,
        help="seconds of recorded video the playback and download rows ask for (default 4)")
    upper = modes.add_parser("upper", help="test a lower platform's 上联 side: the tool is the upper platform")
    add = upper.add_argument
    add("--listen", required=True, type=_address, metavar="IP:PORT", help="where the platform registers")
    add("--id", required=True, type=_digits(20, "--id"), help="the tool's 20-digit SIP ID, as set on the platform")
    add("--domain", required=True, type=_digits(10, "--domain"), help="the 10-digit SIP domain (digest realm)")
    add("--password", required=True, help="the platform's registration password")
    add("--platform-id", type=_digits(20, "--platform-id"), help="only this platform may register")
    add("--forbid-cidr", action="append", type=_network, default=[], metavar="CIDR",
        help="a device-network range nothing the platform sends upward may name; repeatable")
    add("--wrong-password-round", action="store_true",
        help="refuse the first correct digest answer with 403 (the platform must register again)")
    _common(upper, keepalive=60.0)
    lower = modes.add_parser("lower", help="test a platform's 下联 side: the tool registers to it as a device")
    add = lower.add_argument
    add("--target", required=True, type=_address, metavar="IP:PORT", help="the platform's SIP address")
    add("--id", required=True, type=_digits(20, "--id"), help="the tool's 20-digit device ID")
    add("--domain", required=True, type=_digits(10, "--domain"), help="the 10-digit SIP domain")
    add("--password", required=True, help="the registration password")
    add("--platform-id", type=_digits(20, "--platform-id"),
        help="the platform's SIP ID (default: the domain followed by 2000000001)")
    add("--listen", type=_address, metavar="IP:PORT", help="the tool's SIP address (default 127.0.0.1:0)")
    add("--channels", type=int, default=3, help="cameras the tool's device has (default 3, paged by 2)")
    add("--media", type=Path, help="H.264 Annex B file streamed as PS for a Play INVITE")
    _common(lower, keepalive=5.0)
    return parser


def _network(text: str) -> IPv4Network | IPv6Network:
    try:
        return ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CIDR such as 192.168.0.0/16") from None


def _common(parser: argparse.ArgumentParser, *, keepalive: float) -> None:
    add = parser.add_argument
    add("--items", help="sheet rows to run, e.g. 1-6,23 (default all of the side's rows)")
    add("--edition", choices=EDITIONS, default="2016", help="certification sheet (default 2016)")
    add("--report", action="append", type=Path, default=[], metavar="FILE",
        help="write a report: .json, .xml (JUnit) or .html; repeatable")
    add("--unattended", action="store_true", help="nobody watches: rows the operator must start are left manual")
    add("--timeout", type=float, default=900.0, help="overall bound in seconds (default 900)")
    add("--item-timeout", type=float, default=10.0, help="seconds to wait for one answer (default 10)")
    add("--register-wait", type=float, default=120.0, help="seconds to wait for the registration (default 120)")
    add("--action-wait", type=float, default=60.0,
        help="seconds a row waits for what the platform under test must start (default 60)")
    add("--keepalive-interval", type=float, default=keepalive, help=f"keepalive interval (default {keepalive:g})")
    add("--keepalive-tolerance", type=float, default=0.5, help="fraction a keepalive may be late (default 0.5)")
    add("--keepalive-count", type=int, default=3, help="keepalives the keepalive row takes (default 3)")
    add("--grant-expires", type=int, default=3600, help="the longest registration granted (default 3600)")
    add("--media-seconds", type=float, default=4.0, help="seconds of live stream to check (default 4)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode != "device":
        return _platform_main(args)
    try:
        selected = select(rows(args.edition, args.type), args.items)
        for path in args.report:
            if path.suffix.lower() not in (".json", ".xml", ".html", ".htm"):
                raise ValueError(f"--report {path}: the suffix must be .json, .xml or .html")
        if min(args.timeout, args.item_timeout, args.register_wait, args.keepalive_interval, args.media_seconds,
               args.action_wait, args.history_seconds) <= 0:
            raise ValueError("timeouts, intervals, --media-seconds and --history-seconds must be positive")
    except ValueError as exc:
        print(f"gb28181-conformance: {exc}", file=sys.stderr)
        return 2
    options = DeviceOptions(
        device_type=args.type, unattended=args.unattended, item_timeout=args.item_timeout,
        register_wait=args.register_wait, keepalive_interval=args.keepalive_interval,
        keepalive_tolerance=args.keepalive_tolerance, media_seconds=args.media_seconds,
        expect_alarm=args.expect_alarm, action_wait=args.action_wait, history_seconds=args.history_seconds,
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


def _platform_main(args: argparse.Namespace) -> int:
    try:
        selected = select(platform_rows(args.edition, args.mode), args.items)
        for path in args.report:
            if path.suffix.lower() not in (".json", ".xml", ".html", ".htm"):
                raise ValueError(f"--report {path}: the suffix must be .json, .xml or .html")
        if min(args.timeout, args.item_timeout, args.register_wait, args.keepalive_interval, args.action_wait) <= 0:
            raise ValueError("timeouts and intervals must be positive")
        if args.keepalive_count < 1:
            raise ValueError("--keepalive-count must be at least 1")
    except ValueError as exc:
        print(f"gb28181-conformance: {exc}", file=sys.stderr)
        return 2
    options = DeviceOptions(
        device_type="platform", unattended=args.unattended, item_timeout=args.item_timeout,
        register_wait=args.register_wait, keepalive_interval=args.keepalive_interval,
        keepalive_tolerance=args.keepalive_tolerance, media_seconds=args.media_seconds,
        keepalive_count=args.keepalive_count, action_wait=args.action_wait,
        forbid=tuple(getattr(args, "forbid_cidr", ())), expect_alarm=True,
    )
    try:
        if args.mode == "upper":
            report = asyncio.run(run_device(
                selected, platform_id=args.id, domain=args.domain, password=args.password, listen=args.listen,
                options=options, device_id=args.platform_id, edition=args.edition, overall=args.timeout,
                grant_expires=args.grant_expires, wrong_password_round=args.wrong_password_round, mode="upper",
            ))
        else:
            report = asyncio.run(run_lower(
                selected, lower_id=args.id, platform_id=args.platform_id or f"{args.domain}2000000001",
                domain=args.domain, password=args.password, target=args.target,
                listen=args.listen or ("127.0.0.1", 0), options=options, edition=args.edition,
                overall=args.timeout, channels=args.channels, media=args.media,
            ))
    except (OSError, ValueError) as exc:
        print(f"gb28181-conformance: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 1
    for path in args.report:
        report.write(path)
    summary = report.summary
    print(" · ".join(f"{k} {v}" for k, v in summary.items()), file=sys.stderr)
    return 1 if summary[Outcome.FAIL.value] else 0

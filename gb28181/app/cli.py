"""``gb28181-gateway``: run the daemon, check a configuration file, or simulate devices."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

import structlog

from gbgw.gb28181.config import ConfigError, GatewayConfig, config_warnings, load_config, load_config_file
from gbgw.gb28181.observe import logs

log = structlog.get_logger("gb28181.cli")


def _load(path: str | None) -> GatewayConfig:
    return load_config(None) if path is None else load_config_file(path, check_host=True)


def version() -> str:
    try:
        return metadata.version("gb28181-gateway")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _cmd_run(args: argparse.Namespace) -> int:
    from gbgw.gb28181.app.daemon import run

    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log.level, config.log.format)
    for warning in config_warnings(config):
        log.warning("unsafe configuration", detail=warning)
    try:
        return run(config, Path(args.config) if args.config else None)
    except ConfigError as exc:
        # A listener that cannot open (address taken, not on this host): one line naming the key. Not 2:
        # the unit restarts on other codes, and a network that comes up late is worth another try.
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        config = load_config_file(args.file, check_host=not args.no_host_check)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    sip = config.sip
    print(
        f"{args.file}: OK (gateway {sip.id}, domain {sip.domain}, SIP {sip.listen}, API {config.api.listen}, "
        f"{len(config.devices)} device entries, allowlist {'on' if sip.allowlist else 'off'})"
    )
    for up in config.upstreams:
        rules = len(up.share)
        print(f"  upstream {up.name}: {up.id} at {up.address}/{up.transport} from {up.listen}, media {up.media_ip} "
              f"{up.media_ports}, {rules} share rule{'s' if rules != 1 else ''}"
              f"{'' if rules else ' (nothing shared)'}{'' if up.enabled else ', disabled'}")
    for warning in config_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _cmd_simulate(argv: list[str]) -> int:
    # Imported here only: the vendor toolkit is no part of the running gateway.
    from gbgw.conformance.simulator import cli as simulator

    return simulator.main(argv, lambda level: logs.configure(level, "auto"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gb28181-gateway", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway in the foreground")
    run.add_argument("--config", "-c", help="YAML configuration file (default: embedded defaults)")
    run.set_defaults(func=_cmd_run)
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file")
    check.add_argument("--no-host-check", action="store_true",
                       help="do not check the addresses against this machine (a file for another host)")
    check.set_defaults(func=_cmd_check)
    # Its options belong to the simulator, which parses what follows (``simulate --help`` lists them).
    sub.add_parser("simulate", add_help=False, help="simulate GB/T 28181 devices registering to a server")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "simulate":
        return _cmd_simulate(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

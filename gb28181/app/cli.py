"""``gb28181-gateway``: run the daemon, check a configuration file, or simulate devices."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gbgw.gb28181.config import ConfigError, GatewayConfig, load_config, load_config_file
from gbgw.gb28181.observe import logs


def _load(path: str | None) -> GatewayConfig:
    return load_config(None) if path is None else load_config_file(path)


def _cmd_run(args: argparse.Namespace) -> int:
    from gbgw.gb28181.app.daemon import run

    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log.level, config.log.format)
    return run(config, Path(args.config) if args.config else None)


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        config = load_config_file(args.file)
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
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from gbgw.conformance.simulator import devices as simulator

    logs.configure(args.log_level, "auto")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        return asyncio.run(simulator.run(args))
    except KeyboardInterrupt:
        return 0


def build_parser() -> argparse.ArgumentParser:
    from gbgw.conformance.simulator import devices as simulator

    parser = argparse.ArgumentParser(prog="gb28181-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway in the foreground")
    run.add_argument("--config", "-c", help="YAML configuration file (default: embedded defaults)")
    run.set_defaults(func=_cmd_run)
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("file")
    check.set_defaults(func=_cmd_check)
    sim = sub.add_parser("simulate", help="simulate GB/T 28181 devices registering to a server")
    sim.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    simulator.add_arguments(sim)
    sim.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

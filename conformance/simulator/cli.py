"""The ``gb28181-gateway simulate`` command: its options, and running a crowd of devices until told to stop.

The product's CLI hands this module the arguments after ``simulate`` (`main`), so the gateway imports
nothing of the simulator unless that command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace

import structlog

from gbgw.conformance.simulator.config import ENCODINGS, FAULTS, SimulatorConfig, parse_server_address
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.conformance.simulator.media import add_media_arguments, media_options_from_args

log = structlog.get_logger("gb28181.simulator")


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often for the duration. Every SIP client transaction stays
    referenced for 64 * T1 = 32 s, so at thousands of requests per second the collector's full passes over
    them dominate: 100,000 devices registered at 1,400/s with the default thresholds and 3,400/s with
    these (uvloop, one core). The setting is process-wide, so the library does not apply it by itself:
    the command does, and a benchmark using DeviceSimulator directly should."""
    previous = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*previous)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `gb28181-gateway simulate`."""
    d = SimulatorConfig(server_host="", server_port=0)
    add = parser.add_argument
    add("--server", required=True, type=_server_address, metavar="HOST:PORT",
        help="the SIP address devices register to")
    add("--transport", choices=("udp", "tcp"), default="udp", help="signalling transport (default udp)")
    add("--count", type=int, default=d.count, help="number of devices (default 1)")
    add("--channels", type=int, default=d.channels, help="camera channels per device (default 1)")
    add("--id-prefix", default=d.id_prefix,
        help=f"device IDs are this prefix plus the device number (default {d.id_prefix})")
    add("--start", type=int, default=d.start, help="number of the first device (default 1)")
    add("--domain", default=d.domain, help=f"SIP domain and realm (default {d.domain})")
    add("--server-id", default=d.server_id, help=f"the server's 20-digit ID (default {d.server_id})")
    add("--password", default=d.password, help="digest password of every device")
    add("--username-differs", action="store_true",
        help="authenticate with a username other than the device ID, as Hikvision IPCs can")
    add("--expires", type=int, default=d.expires, help=f"registration expiry in seconds (default {d.expires})")
    add("--keepalive-interval", type=float, default=d.keepalive_interval,
        help=f"seconds between keepalives (default {d.keepalive_interval:g})")
    add("--devices-per-socket", type=int, default=d.devices_per_socket,
        help=f"devices sharing one local port, like devices behind one NAT (default {d.devices_per_socket})")
    add("--catalog-page-size", type=int, default=d.catalog_page_size,
        help=f"catalog items per answer MESSAGE (default {d.catalog_page_size})")
    add("--encoding", choices=ENCODINGS, default=d.encoding, help=f"charset of MANSCDP bodies (default {d.encoding})")
    add("--duration", type=float, default=0.0, help="seconds to run; 0 runs until interrupted (default 0)")
    add("--register-rate", type=float, default=d.register_rate,
        help=f"registrations started per second at most (default {d.register_rate:g})")
    add("--retry-interval", type=float, default=d.retry_interval,
        help=f"seconds before retrying a failed registration (default {d.retry_interval:g})")
    add("--bind", default=d.bind, help=f"local address of the devices (default {d.bind})")
    add("--user-agent", default=d.user_agent, help=f"User-Agent of the devices (default {d.user_agent!r})")
    add("--stats-interval", type=float, default=10.0, help="seconds between statistics lines; 0 for none")
    add("--fault", action="append", choices=sorted(FAULTS), default=[], metavar="NAME",
        help="break the standard on purpose, for testing conformance tools (repeatable): "
             + "; ".join(f"{name}: {what}" for name, what in FAULTS.items()))
    add("--alarm-interval", type=float, default=d.alarm_interval,
        help="seconds between the alarms each device raises (NOTIFY while subscribed, else MESSAGE); 0 none")
    add_media_arguments(parser)




def _server_address(text: str) -> tuple[str, int]:
    try:
        return parse_server_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--server: {exc}") from None


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The configuration the parsed options describe; ValueError names what is wrong."""
    host, port = args.server
    faults = frozenset(args.fault)
    return SimulatorConfig(
        server_host=host,
        server_port=port,
        transport=args.transport,
        count=args.count,
        channels=args.channels,
        id_prefix=args.id_prefix,
        start=args.start,
        domain=args.domain,
        server_id=args.server_id,
        password=args.password,
        username_differs=args.username_differs,
        expires=args.expires,
        keepalive_interval=args.keepalive_interval,
        devices_per_socket=args.devices_per_socket,
        catalog_page_size=args.catalog_page_size,
        encoding=args.encoding,
        register_rate=args.register_rate,
        retry_interval=args.retry_interval,
        bind=args.bind,
        user_agent=args.user_agent,
        media=replace(media_options_from_args(args), faults=faults),
        faults=faults,
        alarm_interval=args.alarm_interval,
    )


async def run(args: argparse.Namespace) -> int:
    """Run the simulator until --duration passes or SIGINT/SIGTERM. Exit status 0 when every device was
    registered at the end, 1 when some were not, 2 for invalid options."""
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    simulator = DeviceSimulator(config)
    try:
        with fewer_collections():
            complete = await _run_until(simulator, stop, args.duration, args.stats_interval)
    except (OSError, ValueError) as exc:
        # Only starting can fail like this: the media file is unreadable or holds no keyframe.
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    log.info("simulator stopped", **asdict(simulator.stats))
    return 0 if complete else 1


async def _run_until(simulator: DeviceSimulator, stop: asyncio.Event, duration: float, stats_interval: float) -> bool:
    """Run until `stop` is set or `duration` (0: no limit) passes; whether every device was registered."""
    loop = asyncio.get_running_loop()
    config = simulator.config
    started = loop.time()
    try:
        await simulator.start()
        log.info("simulator started", devices=config.count, channels=config.channels,
                 transport=config.transport, server=f"{config.server_host}:{config.server_port}",
                 sockets=len(simulator.sockets))
        deadline = started + duration if duration > 0 else math.inf
        interval = stats_interval if stats_interval > 0 else math.inf
        while not stop.is_set():
            wait = min(interval, deadline - loop.time())
            if wait <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), None if wait == math.inf else wait)
            if interval != math.inf:
                log.info("simulator stats", elapsed=round(loop.time() - started, 1), **asdict(simulator.stats))
        return simulator.stats.registered == config.count
    finally:
        await simulator.stop(unregister=True)


def build_parser(prog: str = "gb28181-gateway simulate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Simulate GB/T 28181 devices registering to a server.")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    add_arguments(parser)
    return parser


def main(argv: list[str], configure_logs: Callable[[str], None]) -> int:
    """Parse `argv` (what follows ``simulate``), set the log level through `configure_logs` and run, on
    uvloop when it is installed."""
    args = build_parser().parse_args(argv)
    configure_logs(args.log_level)
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(run(args))
    except KeyboardInterrupt:
        return 0

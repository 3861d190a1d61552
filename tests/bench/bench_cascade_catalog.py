"""Catalog upward benchmark: how long the gateway takes to answer an upper's Catalog query in full.

Run: python3 tests/bench/bench_cascade_catalog.py [--channels N] [--runs N] [--max-bytes B] [--transport udp|tcp]

The gateway runs as its own process (``python3 -m gb28181 run``, uvloop, logging at warning, in-memory
store) with one upstream. Simulated NVRs (``DeviceSimulator``, 500 channels each, all shared) register
to it from this process; the upper is ``FakeUpper`` (tests/gb28181/upper_harness.py), also in this
process, which the gateway registers to with digest. Each run the upper sends a Catalog query and times
until it holds SumNum items; every MESSAGE is answered 200 at once, and the gateway sends the next page
only after that 200 (Annex M), so the figure is the gateway's work plus one loopback round trip per page.

Printed per run: pages, bytes, seconds, the gateway's CPU seconds. The target (issue 5) is a catalog of
5,000 shared channels answered in full in <= 2 s. Figures are printed, never asserted: they depend on the
machine (the load average is printed too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gb28181"))

from benchkit import GATEWAY_ID, PASSWORD, GatewayProcess, cpu_seconds, load_average, run_loop
from upper_harness import UPPER_DOMAIN, FakeUpper
from wire import free_port

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.gb28181 import manscdp

NVR_PREFIX = "3402000001118"
PER_NVR = 500


class CatalogGateway(GatewayProcess):
    def __init__(self, workdir: Path, upper: FakeUpper, max_bytes: int, transport: str) -> None:
        self.listen_port = free_port()
        super().__init__(workdir, sip={"catalog_subscribe": False}, upstreams=[{
            "name": "bench", "id": upper.id, "domain": UPPER_DOMAIN, "address": f"{upper.host}:{upper.port}",
            "listen": f"127.0.0.1:{self.listen_port}", "media_ip": "127.0.0.1", "password": upper.password,
            "transport": transport, "catalog_max_bytes": max_bytes, "share": [{"prefix": NVR_PREFIX[:10]}],
        }])

    async def channel_count(self, http: aiohttp.ClientSession, device_id: str) -> int:
        async with http.get(f"{self.url}/api/devices/{device_id}/channels") as response:
            return len(await response.json()) if response.status == 200 else 0


async def timed_catalog(upper: FakeUpper, sn: int, timeout: float) -> tuple[float, int, int, int]:
    """(seconds until SumNum items arrived, pages, bytes, items) for one Catalog query."""
    start_index = len(upper.messages)
    counted = pages = size = 0
    sum_num: int | None = None
    seen = start_index

    def complete() -> bool:
        nonlocal counted, pages, size, sum_num, seen
        for received in upper.messages[seen:]:
            doc = received.doc
            if doc is not None and doc.root == "Response" and doc.cmd_type == "Catalog" and doc.sn == sn:
                page = manscdp.CatalogResponse.from_document(doc)
                sum_num = page.sum_num
                counted += len(page.items)
                pages += 1
                size += len(received.request.body)
        seen = len(upper.messages)
        return sum_num is not None and counted >= sum_num

    started = time.perf_counter()
    response = await upper.manscdp(manscdp.query_catalog(sn, GATEWAY_ID))
    if response.status != 200:
        raise RuntimeError(f"the gateway answered the query {response.status}")
    await upper.wait(complete, timeout, f"catalog SN {sn}")
    return time.perf_counter() - started, pages, size, counted


async def main_async(args: argparse.Namespace) -> None:
    nvrs = max(1, (args.channels + PER_NVR - 1) // PER_NVR)
    per_nvr = min(PER_NVR, args.channels)
    upper = await FakeUpper().start()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        gateway = CatalogGateway(workdir, upper, args.max_bytes, args.transport)
        simulator: DeviceSimulator | None = None
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await gateway.ready(http)
                await asyncio.wait_for(upper.registered.wait(), 10)
                simulator = DeviceSimulator(SimulatorConfig(
                    server_host="127.0.0.1", server_port=gateway.sip_port, password=PASSWORD, count=nvrs,
                    channels=per_nvr, id_prefix=NVR_PREFIX, catalog_page_size=100,
                ))
                await simulator.start()
                await simulator.wait_registered(timeout=30)
                for index in range(nvrs):
                    for _ in range(600):
                        if await gateway.channel_count(http, simulator.device_id(index)) >= per_nvr:
                            break
                        await asyncio.sleep(0.05)
                    else:
                        raise RuntimeError(f"catalog of {simulator.device_id(index)} not complete")
                print(f"load average before: {load_average()}  cpus: {os.cpu_count()}")
                print(f"{nvrs * per_nvr} shared channels on {nvrs} NVRs, catalog_max_bytes {args.max_bytes}, "
                      f"{args.transport} to the upper")
                times = []
                for run in range(args.runs):
                    cpu = cpu_seconds(gateway.process.pid)
                    seconds, pages, size, items = await timed_catalog(upper, 1000 + run, args.timeout)
                    cpu = cpu_seconds(gateway.process.pid) - cpu
                    times.append(seconds)
                    print(f"run {run + 1}: {items} items in {pages} pages ({size / pages:.0f} bytes average), "
                          f"{seconds:.2f} s, gateway CPU {cpu:.2f} s")
                ordered = sorted(times)
                print(f"catalog answered in full: best {ordered[0]:.2f} s, median {ordered[len(ordered) // 2]:.2f} s, "
                      f"worst {ordered[-1]:.2f} s (target <= 2 s for 5,000 channels)")
        finally:
            if simulator is not None:
                await simulator.stop(unregister=False, timeout=1)
            gateway.stop()
            await upper.close()
            gateway.print_log_tail()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=5000, help="shared channels (default 5000)")
    parser.add_argument("--runs", type=int, default=5, help="catalog queries (default 5)")
    parser.add_argument("--max-bytes", type=int, default=1300, help="catalog_max_bytes (default 1300)")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp", help="signalling to the upper")
    parser.add_argument("--timeout", type=float, default=60.0, help="give up on a run after this (default 60 s)")
    args = parser.parse_args()
    run_loop(main_async(args), fewer_collections=True)


if __name__ == "__main__":
    main()

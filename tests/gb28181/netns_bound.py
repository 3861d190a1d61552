"""Sockets bound to an interface, and the same without, run inside the gateway namespace.

``ip netns exec <gw> python3 netns_bound.py --host 10.77.2.1``

Opens, on ``--host``: a `SipTransport` and a `PortRange` lease bound to the interface `interface_for`
finds for the address, and a control transport and lease that are not bound. Prints a JSON line with the
ports (the test then sends to all of them from the other side's network), waits for a line on stdin, and prints
what each one received (SIP requests, RTP datagrams) and what `interface_for` says about other addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from gbgw.rtp.ports import PortRange, interface_for
from gbgw.sip.endpoint import SipEndpoint
from gbgw.sip.transaction import ServerTransaction
from gbgw.sip.transport import SipTransport


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", required=True)
    args = parser.parse_args()
    interface = interface_for(args.host)
    received: dict[str, list[str]] = {"bound": [], "unbound": []}
    transports: dict[str, SipTransport] = {}
    leases = {}
    for name, iface, low in (("bound", interface, 41000), ("unbound", None, 41100)):
        def on_request(txn: ServerTransaction, name: str = name) -> None:
            received[name].append(f"sip {txn.request.method} from {txn.remote.host}")
            transports[name].reply(txn, 200)

        transport = SipTransport(SipEndpoint(), on_request, interface=iface)
        await transport.start(args.host, 0)
        transports[name] = transport
        leases[name] = PortRange((low, low + 9), interface=iface).lease_udp(args.host)
    print(json.dumps({
        "interface": interface,
        "sip": {name: t.port for name, t in transports.items()},
        "rtp": {name: lease.port for name, lease in leases.items()},
    }), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for name, lease in leases.items():
        while True:
            try:
                data, addr = lease.sockets[0].recvfrom(2048)
            except BlockingIOError:
                break
            received[name].append(f"rtp {data[:16]!r} from {addr[0]}")
    addresses = {name: interface_for(address) for name, address in
                 (("loopback", "127.0.0.1"), ("absent", "192.0.2.99"), ("name", "localhost"))}
    print(json.dumps({"received": received, "interface_for": addresses}), flush=True)
    for transport in transports.values():
        await transport.close()
    for lease in leases.values():
        lease.release()


if __name__ == "__main__":
    asyncio.run(main())

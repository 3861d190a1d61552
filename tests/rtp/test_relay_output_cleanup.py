"""An output whose socket set-up raises gives back everything it took (issue 10, item 2).

A host with a NUL in it made ``sock.connect`` raise ``TypeError``, which nothing caught: each such output
kept its RTP/RTCP socket pair and its port pair for good (40 requests: 24 -> 104 fds). Counted here with
the process's own descriptor table, not the relay's bookkeeping.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from gbgw.rtp.relay import IngestConfig, MediaTransport, RelayEngine

HOST = "127.0.0.1"
ATTEMPTS = 40


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(("transport", "host", "error"), [
    (MediaTransport.UDP, "127.0.3.12\x00", (TypeError, ValueError)),
    (MediaTransport.UDP, "999.1.1.1", OSError),
])
async def test_failed_output_closes_its_sockets_and_frees_its_ports(
        transport: MediaTransport, host: str, error: type[BaseException] | tuple[type[BaseException], ...]) -> None:
    relay = RelayEngine(asyncio.get_running_loop(), bind_host=HOST, ports="46600-46799")
    try:
        ingest = relay.open_ingest(IngestConfig(device_host=HOST))
        before = open_fds()
        for _ in range(ATTEMPTS):
            with pytest.raises(error):
                ingest.add_output(transport, host, 5004, ssrc=1)
        assert open_fds() == before
        assert relay.ports.leased == 1  # the ingest's own pair only
        assert ingest.outputs == []
    finally:
        relay.close()
    assert relay.ports.leased == 0

"""The relay engine: the ingests of one event loop and the port range they and their outputs bind in."""

from __future__ import annotations

import asyncio

import structlog

from gbgw.rtp.ports import PortRange
from gbgw.rtp.relay.config import IngestConfig, MediaTransport
from gbgw.rtp.relay.ingest import ByeCallback, Ingest, StopCallback

log = structlog.get_logger("rtp.relay")


class RelayEngine:
    """Owns the ingests of one event loop and the port range they and their outputs bind in."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        bind_host: str = "0.0.0.0",
        ports: PortRange | str = "30000-30999",
    ) -> None:
        self.loop = loop
        self.bind_host = bind_host
        self.ports = ports if isinstance(ports, PortRange) else PortRange(ports)
        self._ingests: dict[int, Ingest] = {}
        self._next_id = 1

    def __repr__(self) -> str:
        return f"<RelayEngine {self.bind_host} {self.ports!r} ingests={len(self._ingests)}>"

    @property
    def ingests(self) -> list[Ingest]:
        return list(self._ingests.values())

    def open_ingest(
        self,
        config: IngestConfig,
        *,
        on_stop: StopCallback | None = None,
        on_device_bye: ByeCallback | None = None,
    ) -> Ingest:
        """Bind a port pair for a device stream (raises `PortRangeExhausted` when none is free).

        ``on_stop(ingest, reason)`` is called when the engine ends the stream (timeouts, idle, the
        device closing TCP) so the caller can BYE the device; ``on_device_bye(ingest, reason)`` when
        the device says goodbye over RTCP.
        """
        host = self.bind_host
        if config.transport is MediaTransport.UDP:
            lease = self.ports.lease_udp(host)
        else:
            lease = self.ports.lease_tcp(host)
        ingest = Ingest(
            self.loop,
            self._next_id,
            config,
            lease,
            bind_host=host,
            ports=self.ports,
            on_closed=self._forget,
            on_stop=on_stop,
            on_device_bye=on_device_bye,
        )
        self._next_id += 1
        self._ingests[ingest.id] = ingest
        try:
            ingest._open()
        except OSError:
            ingest.close()
            raise
        log.info(
            "relay ingest opened",
            ingest=ingest.id,
            transport=config.transport.value,
            local_port=ingest.local_port,
            device=ingest.device,
        )
        return ingest

    def _forget(self, ingest: Ingest) -> None:
        self._ingests.pop(ingest.id, None)

    def close(self) -> None:
        """Close every ingest and its outputs (no callbacks)."""
        for ingest in list(self._ingests.values()):
            ingest.close()

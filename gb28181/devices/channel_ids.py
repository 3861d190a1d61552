"""Which devices report each channel ID: channel IDs are only unique per device in the field (default IPC
configurations repeat them), so a route naming a channel alone must know when the ID is ambiguous.

The registry keys catalogs by device and keeps, per channel ID, only the device that announced it last;
this index holds every device per ID, kept current by the registry's channel events and seeded from
what the registry loaded. A lookup re-checks the registry, so a device removed without a DEL event
(``DeviceRegistry.remove``) drops out on its own.
"""

from __future__ import annotations

import structlog

from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Channel

log = structlog.get_logger("gb28181.channels")


class ChannelDirectory:
    def __init__(self, registry: DeviceRegistry) -> None:
        self.registry = registry
        self._holders: dict[str, set[str]] = {}
        for device in registry.devices():
            for channel in registry.channels(device.id):
                self._holders.setdefault(channel.id, set()).add(device.id)
        registry.add_channel_listener(self._on_channel)

    def devices_with(self, channel_id: str) -> list[str]:
        """The devices whose catalog holds ``channel_id``, sorted."""
        holders = self._holders.get(channel_id)
        if not holders:
            return []
        registry = self.registry
        stale = {d for d in holders if registry.channel(channel_id, d) is None}
        holders -= stale
        if not holders:
            del self._holders[channel_id]
        return sorted(holders)

    def shared_ids(self, device_id: str) -> list[str]:
        """The channel IDs of ``device_id`` that another device reports too."""
        return sorted(
            c.id for c in self.registry.channels(device_id) if len(self.devices_with(c.id)) > 1
        )

    def _on_channel(self, device_id: str, event: str, channel: Channel) -> None:
        if event == "DEL":
            holders = self._holders.get(channel.id)
            if holders is not None:
                holders.discard(device_id)
                if not holders:
                    del self._holders[channel.id]
            return
        holders = self._holders.setdefault(channel.id, set())
        if device_id in holders:
            return
        holders.add(device_id)
        if len(holders) > 1:
            others = sorted(holders - {device_id})
            log.warning(
                "channel ID reported by more than one device: address it by device",
                channel=channel.id, device=device_id, also=others,
            )

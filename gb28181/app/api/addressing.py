"""Addressing a channel by its device, and the services the control routes drive.

Channel IDs repeat across devices in the field, so every control route names the device:
``/api/devices/{device_id}/channels/{channel_id}/...``. A route naming the channel alone is answered only
when one device reports the ID, and 409 listing the devices otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gbgw.gb28181.app.api.common import ApiError, device_or_404, services
from gbgw.gb28181.devices.channel_ids import ChannelDirectory
from gbgw.gb28181.devices.control import DeviceControl
from gbgw.gb28181.devices.device_subscriptions import EventSubscriptions
from gbgw.gb28181.devices.subscriptions import CatalogSubscriptions
from gbgw.registry.model import Channel, Device


@dataclass(frozen=True, slots=True)
class ControlServices:
    """What the control, configuration and subscription routes drive, built by the daemon."""

    control: DeviceControl
    channels: ChannelDirectory
    events: EventSubscriptions
    catalog: CatalogSubscriptions


CONTROL: web.AppKey[ControlServices] = web.AppKey("control", ControlServices)


def control_services(request: web.Request) -> ControlServices:
    return request.app[CONTROL]


def channel_or_404(request: web.Request) -> tuple[Device, Channel]:
    """The device and channel ``{device_id}/{channel_id}`` names; 404 when either is unknown."""
    device = device_or_404(request)
    channel_id = request.match_info["channel_id"]
    channel = services(request).registry.channel(channel_id, device.id)
    if channel is None:
        raise ApiError(404, f"device {device.id} has no channel {channel_id}")
    return device, channel


def unambiguous_channel(request: web.Request) -> None:
    """409 listing the devices when the ``{channel_id}`` of a channel-only route is reported by more than
    one device; nothing for a route that names the device too."""
    control = request.app.get(CONTROL)
    # An application built without the control services has no directory of channel IDs to consult.
    if "device_id" in request.match_info or control is None:
        return
    channel_id = request.match_info["channel_id"]
    holders = control.channels.devices_with(channel_id)
    if len(holders) > 1:
        raise ApiError(
            409,
            f"channel {channel_id} is reported by {len(holders)} devices ({', '.join(holders)}): "
            f"use /api/devices/{{device_id}}/channels/{channel_id}/...",
        )

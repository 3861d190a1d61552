"""The device leg of a media session: the INVITE to a device and the steps until its media flows.

Live play (:mod:`gbgw.gb28181.media.live`) and playback/download (:mod:`gbgw.gb28181.media.history`)
differ in the offer they send and in what they do once media flows; the steps in between are these, and
each names the :class:`~gbgw.gb28181.media.stages.Stage` that fails (counted in ``invites``), so a live play
and a playback that cannot start are answered alike:

1. :meth:`DeviceLegs.open_ingest` binds the relay's port pair (``no port``);
2. :meth:`DeviceLegs.invite` sends the INVITE and ACKs its 200 (``no answer``, ``INVITE rejected``);
3. the caller reads the SDP answer with its own parser (``bad answer``);
4. :meth:`DeviceLegs.connect` starts the ingest toward the device's media port, taking media only from
   where the device's ``media_source`` rule permits (``bad answer``);
5. :meth:`DeviceLegs.first_media` waits for the first RTP packet (``no media``, ``bad media``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from gbgw.gb28181.devices.requests import AccessError
from gbgw.gb28181.media.stages import Stage
from gbgw.registry.model import Device
from gbgw.rtp.ports import PortRangeExhausted
from gbgw.rtp.relay import ByeCallback, Ingest, IngestConfig, MediaTransport, RelayEngine, StopCallback
from gbgw.sip.dialog import Dialog
from gbgw.sip.endpoint import Peer
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request, Response
from gbgw.sip.transport import SipTimeout

if TYPE_CHECKING:
    from gbgw.gb28181.config import MediaConfig, MediaSourceRule, SipConfig
    from gbgw.gb28181.observe.metrics import GatewayMetrics
    from gbgw.registry.devices import DeviceRegistry
    from gbgw.sip.requests import RequestBuilder
    from gbgw.sip.transport import SipTransport

log = structlog.get_logger("gb28181.device_leg")


class PlayError(AccessError):
    """A play request failed at ``stage``; ``status`` is the device's SIP status where it gave one."""

    stage: Stage

    def __init__(self, stage: Stage, detail: str, status: int | None = None) -> None:
        super().__init__(stage, detail, status)


def offer_transport(transport: MediaTransport) -> tuple[str, str | None, str | None]:
    """The offer's protocol, ``a=setup`` and ``a=connection`` for the gateway's role on the device leg."""
    if transport is MediaTransport.UDP:
        return "RTP/AVP", None, None
    return "TCP/RTP/AVP", "passive" if transport is MediaTransport.TCP_PASSIVE else "active", "new"


class DeviceLegs:
    """The INVITE and media set-up toward devices, shared by every kind of media session."""

    def __init__(
        self,
        registry: DeviceRegistry,
        sip: SipConfig,
        transport: SipTransport,
        requests: RequestBuilder,
        media: MediaConfig,
        metrics: GatewayMetrics,
        media_source: Callable[[str], MediaSourceRule],
    ) -> None:
        self.registry = registry
        self.sip = sip
        self.transport = transport
        self.requests = requests
        self.media = media
        self.metrics = metrics
        self.media_source = media_source

    def count(self, stage: Stage | None) -> None:
        """One INVITE outcome: the stage that failed, None for a leg that came up."""
        self.metrics.invites.labels("ok" if stage is None else stage.metric_label).inc()

    def fail(self, stage: Stage, detail: str, status: int | None = None) -> PlayError:
        """The counted failure of ``stage``, to raise."""
        self.count(stage)
        return PlayError(stage, detail, status)

    def transport_for(self, device: Device) -> MediaTransport:
        """The gateway's role on ``device``'s leg: its own ``stream_transport``, else ``media``'s."""
        return MediaTransport((device.stream_transport or self.media.stream_transport).lower())

    def open_ingest(
        self,
        relay: RelayEngine,
        transport: MediaTransport,
        device: Device,
        ssrc: str,
        *,
        media_timeout: float,
        on_stop: StopCallback,
        on_device_bye: ByeCallback | None = None,
    ) -> Ingest:
        media = self.media
        config = IngestConfig(
            transport=transport,
            device_host=device.host,
            ssrc=int(ssrc),
            check_ssrc=media.ssrc_check,
            media_timeout=media_timeout,
            first_packet_timeout=media.first_packet_timeout,
            idle_timeout=media.idle_timeout,
        )
        try:
            return relay.open_ingest(config, on_stop=on_stop, on_device_bye=on_device_bye)
        except (OSError, PortRangeExhausted) as exc:
            raise self.fail(Stage.NO_PORT, f"no media port free in {media.ports}: {exc}") from None

    async def invite(
        self, device: Device, channel_id: str, ssrc: str, offer: bytes, sent: Callable[[Request], None]
    ) -> tuple[Response, Dialog]:
        """INVITE ``device`` for ``channel_id`` with the SDP ``offer`` and ACK its 200; ``sent(invite)``
        is told before the INVITE leaves, so a BYE crossing the answer finds the session."""
        transport = self.transport
        cfg = self.sip
        peer = Peer(device.transport, device.host, device.port)
        host = f"[{device.host}]" if ":" in device.host else device.host
        sip_host = f"[{transport.host}]" if ":" in transport.host else transport.host
        invite = self.requests.build(
            "INVITE",
            f"sip:{channel_id}@{host}:{device.port}",
            f"sip:{channel_id}@{cfg.domain}",
            transport=device.transport,
            headers=[
                ("Contact", f"<sip:{cfg.id}@{sip_host}:{transport.port}>"),
                ("Subject", f"{channel_id}:{ssrc},{cfg.id}:0"),
                ("Content-Type", "APPLICATION/SDP"),
            ],
            body=offer,
        )
        sent(invite)
        try:
            response = await transport.send_request(invite, peer)
        except SipTimeout:
            raise self.fail(Stage.NO_ANSWER, f"device {device.id} did not answer the INVITE") from None
        except SipError as exc:
            raise self.fail(Stage.NO_ANSWER, f"INVITE to {device.id} failed: {exc.reason}", exc.status) from None
        if response.status >= 300:
            raise self.fail(Stage.INVITE_REJECTED,
                            f"device {device.id} answered {response.status} {response.reason}", response.status)
        dialog = Dialog.from_uac(invite, response, peer)
        transport.send_ack(dialog.create_ack(invite.cseq.seq, via=transport.via(device.transport)), peer)
        return response, dialog

    def check_empty_answer(self, transport: MediaTransport) -> None:
        """A 200 without SDP is usable unless the gateway must connect to the device's port."""
        if transport is MediaTransport.TCP_ACTIVE:
            raise self.fail(Stage.BAD_ANSWER, "the 200 OK has no SDP, so there is no port to connect to")

    def note_answer(
        self, device: Device, address: str, offered: str, answered: str | None, **context: object
    ) -> None:
        """Log what the SDP answer says unlike the device's signalling or the offer."""
        if address and address not in ("0.0.0.0", "::") and address != device.host:
            # Behind NAT the answer names a private address; a media server on another host (an NVR's)
            # names its own. Which of them media is taken from is the device's media_source rule.
            log.info("SDP answer address differs from the device's", **context, device=device.id, sdp=address,
                     signalling=device.host, media_source=str(self.media_source(device.id)))
        if answered is not None:
            log.info("device answered another SSRC", device=device.id, offered=offered, answered=answered)

    async def connect(self, ingest: Ingest, device: Device, port: int | None, sdp_address: str | None) -> None:
        """Start ``ingest`` toward the device's media ``port`` (where the gateway connects)."""
        rule = self.media_source(device.id)
        signalling = device.host
        try:
            await ingest.start(host=device.host, port=port,
                               accept_source=lambda ip: rule.permits(ip, signalling, sdp_address))
        except (OSError, TimeoutError, ValueError) as exc:
            raise self.fail(Stage.BAD_ANSWER, f"cannot reach the device's media port: {exc}") from None

    async def first_media(self, ingest: Ingest, device_id: str, stopped: Callable[[], str | None]) -> None:
        """Wait for the device's first RTP packet, so a session that will show nothing says why;
        ``stopped()`` is why the leg ended before it, if it did."""
        deadline = time.monotonic() + self.media.first_packet_timeout
        delay = 0.002
        while time.monotonic() < deadline and not ingest.closed and not ingest.stats.packets:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.02)
        stats = ingest.stats
        if stats.packets:
            return
        dropped = sum(stats.dropped.values())
        if dropped:
            hint = ""
            if stats.dropped.get("foreign source") or stats.dropped.get("foreign connection"):
                hint = f"; media_source of device {device_id}: {self.media_source(device_id)}"
            raise self.fail(Stage.BAD_MEDIA, f"{dropped} packets arrived but none was the device's RTP "
                            f"({', '.join(f'{k}: {v}' for k, v in stats.dropped.items())}){hint}")
        why = stopped()
        if why is not None:
            raise self.fail(Stage.NO_MEDIA, f"the device stream stopped before its first packet: {why}")
        raise self.fail(Stage.NO_MEDIA, f"no RTP from the device within {self.media.first_packet_timeout:g} s")

    async def bye(self, dialog: Dialog, device_id: str) -> None:
        """End the device's side of ``dialog``; a device gone from the registry is not told."""
        transport = self.transport
        device = self.registry.get(device_id)
        if device is None:
            return
        bye = dialog.create_request("BYE", via=transport.via(device.transport))
        try:
            response = await transport.send_request(bye, dialog.peer)
        except SipError as exc:
            log.info("BYE to device not answered", device=device_id, reason=exc.reason)
            return
        if response.status >= 300:
            log.info("device refused BYE", device=device_id, status=response.status)

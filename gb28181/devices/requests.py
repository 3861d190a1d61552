"""Requests from the gateway to devices, and the matching of their answers.

A Query is numbered with an SN and its Response MESSAGE arrives later as a request of its own, so every
question asked here is remembered until it is answered: a pending query (one Response), a collector (a
command whose answer spans several MESSAGEs, RecordInfo) or a catalog waiter (the catalog assembled
from its pages). Device messages hand Responses back through :meth:`DeviceRequests.take_response` and
:meth:`DeviceRequests.catalog_page`. Only the device asked may answer: SNs are easy to guess.

Requests go where the device's REGISTER came from (NAT), never to its Contact.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from gbgw.gb28181 import manscdp
from gbgw.gb28181.config import SipConfig
from gbgw.gb28181.devices.catalog import CatalogAssembler, CatalogResult, channel_from_item
from gbgw.gb28181.devices.diagnostics import note_device_time
from gbgw.gb28181.manscdp import ManscdpDocument
from gbgw.gb28181.media.stages import Stage
from gbgw.gb28181.observe.metrics import GatewayMetrics
from gbgw.gb28181.recording.records import RecordAssembler, RecordSearchResult, RecordType, record_query
from gbgw.gb28181.recording.times import TimeWindow
from gbgw.registry.devices import DeviceRegistry
from gbgw.registry.model import Device
from gbgw.sip.endpoint import Peer
from gbgw.sip.message import Request, Response
from gbgw.sip.requests import RequestBuilder
from gbgw.sip.transport import SipTimeout, SipTransport

log = structlog.get_logger("gb28181.access")


class AccessError(Exception):
    """A device-side operation failed; ``stage`` says where, for the API and the log."""

    def __init__(self, stage: Stage, detail: str, status: int | None = None) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail
        self.status = status


@dataclass(slots=True)
class _Pending:
    device_id: str
    future: asyncio.Future[ManscdpDocument]


@dataclass(slots=True)
class _Collector:
    """The Response MESSAGEs of one relayed command, gathered until ``complete`` says they are all there."""

    device_id: str
    complete: Callable[[list[ManscdpDocument]], bool]
    pages: list[ManscdpDocument] = field(default_factory=list)
    done: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, doc: ManscdpDocument) -> None:
        self.pages.append(doc)
        self.done = self.complete(self.pages)
        self.arrived.set()


class DeviceRequests:
    def __init__(
        self,
        sip: SipConfig,
        registry: DeviceRegistry,
        metrics: GatewayMetrics,
        transport: SipTransport,
        requests: RequestBuilder,
        clock: Callable[[], float],
    ) -> None:
        self.sip = sip
        self.registry = registry
        self.metrics = metrics
        self.transport = transport
        self.requests = requests
        self.clock = clock
        self.catalogs = CatalogAssembler(sip.catalog_first_wait, sip.catalog_gap_timeout)
        # An NVR searching its disks is as slow to start and to page as a catalog.
        self.records = RecordAssembler(sip.catalog_first_wait, sip.catalog_gap_timeout, sip.tzinfo)
        self._record_waiters: dict[tuple[str, int], asyncio.Future[RecordSearchResult]] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._collectors: dict[tuple[str, int], _Collector] = {}
        self._catalog_waiters: dict[tuple[str, int], asyncio.Future[CatalogResult]] = {}
        self._sn = int.from_bytes(os.urandom(2), "big")

    def close(self) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()

    # -- building and sending ------------------------------------------------------------------------

    def next_sn(self) -> int:
        self._sn = (self._sn + 1) % 1_000_000_000
        return self._sn

    def build_request(self, method: str, device: Device, target_id: str | None = None) -> tuple[Request, Peer]:
        """An out-of-dialog request to a device, sent where its REGISTER came from (NAT)."""
        target = target_id or device.id
        host = f"[{device.host}]" if ":" in device.host else device.host
        request = self.requests.build(
            method, f"sip:{target}@{host}:{device.port}", f"sip:{target}@{self.sip.domain}",
            transport=device.transport,
        )
        return request, Peer(device.transport, device.host, device.port)

    async def send_manscdp(self, device_id: str, doc: ManscdpDocument) -> Response:
        """Send a MANSCDP MESSAGE and wait for its final SIP response (2xx, or AccessError)."""
        device = self.registry.get(device_id)
        if device is None or not device.online:
            raise AccessError(Stage.DEVICE_OFFLINE, f"{device_id} is not online")
        request, peer = self.build_request("MESSAGE", device, doc.device_id or device_id)
        request.add("Content-Type", "Application/MANSCDP+xml")
        request.body = manscdp.encode_body(doc, device.charset or self.sip.encoding)
        started = time.monotonic()
        try:
            response = await self.transport.send_request(request, peer)
        except SipTimeout:
            raise AccessError(Stage.NO_ANSWER, f"{device_id} did not answer the {doc.cmd_type} MESSAGE") from None
        finally:
            self.metrics.transaction_latency.labels("MESSAGE").observe(time.monotonic() - started)
        self.metrics.sip_responses.labels("in", "MESSAGE", str(response.status)).inc()
        if response.status >= 300:
            raise AccessError(
                Stage.REQUEST_REJECTED, f"{device_id} answered {response.status} {response.reason}", response.status
            )
        return response

    # -- questions and their answers -----------------------------------------------------------------

    async def query(
        self, device_id: str, build: Callable[[int, str], ManscdpDocument], target_id: str | None = None
    ) -> ManscdpDocument:
        """Send a Query and wait for the device's Response MESSAGE with the same CmdType and SN."""
        sn = self.next_sn()
        doc = build(sn, target_id or device_id)
        key = (doc.cmd_type, sn)
        future: asyncio.Future[ManscdpDocument] = asyncio.get_running_loop().create_future()
        self._pending[key] = _Pending(device_id, future)
        started = time.monotonic()
        try:
            await self.send_manscdp(device_id, doc)
            answer = await asyncio.wait_for(future, self.sip.query_timeout)
            self.metrics.device_query.labels(doc.cmd_type).observe(time.monotonic() - started)
            return answer
        except TimeoutError:
            raise AccessError(Stage.NO_ANSWER, f"{device_id} sent no {doc.cmd_type} response in time") from None
        finally:
            self._pending.pop(key, None)

    async def query_pages(
        self,
        device_id: str,
        doc: ManscdpDocument,
        complete: Callable[[list[ManscdpDocument]], bool],
        timeout: float | None = None,
    ) -> list[ManscdpDocument]:
        """Send ``doc`` (a Query or Control numbered with :meth:`next_sn`) and collect the device's Response
        MESSAGEs with its CmdType and SN until ``complete(pages)`` is true, or until no further page came
        for ``timeout`` seconds (default ``sip.query_timeout``): a multi-message answer (RecordInfo) is
        returned as far as it arrived. Raises AccessError when the device refuses the MESSAGE or sends no
        answer at all."""
        if doc.sn is None:
            raise ValueError("a relayed command needs an SN to match its answers")
        key = (doc.cmd_type, doc.sn)
        collector = _Collector(device_id, complete)
        self._collectors[key] = collector
        wait = self.sip.query_timeout if timeout is None else timeout
        try:
            await self.send_manscdp(device_id, doc)
            while not collector.done:
                collector.arrived.clear()
                try:
                    await asyncio.wait_for(collector.arrived.wait(), wait)
                except TimeoutError:
                    if not collector.pages:
                        raise AccessError(Stage.NO_ANSWER, f"{device_id} sent no {doc.cmd_type} response in time") from None
                    break
            return collector.pages
        finally:
            self._collectors.pop(key, None)

    def take_collected(self, device_id: str, doc: ManscdpDocument) -> bool:
        """Give a Response to the relayed command waiting for it; False when none is (from this device)."""
        collector = self._collectors.get((doc.cmd_type, doc.sn if doc.sn is not None else -1))
        if collector is None or collector.device_id != device_id:
            return False
        collector.add(doc)
        return True

    def take_response(self, device_id: str, doc: ManscdpDocument) -> bool:
        """Give a Response to the query waiting for it; False when none is (from this device)."""
        key = (doc.cmd_type, doc.sn if doc.sn is not None else -1)
        pending = self._pending.get(key)
        if pending is None or pending.device_id != device_id or pending.future.done():
            return False
        del self._pending[key]
        pending.future.set_result(doc)
        return True

    async def device_info(self, device_id: str) -> manscdp.DeviceInfoResponse:
        doc = await self.query(device_id, manscdp.query_device_info)
        apply_device_info(self.registry, device_id, doc)
        info = doc.typed()
        assert isinstance(info, manscdp.DeviceInfoResponse)
        return info

    async def device_status(self, device_id: str) -> manscdp.DeviceStatusResponse:
        doc = await self.query(device_id, manscdp.query_device_status)
        status = doc.typed()
        if not isinstance(status, manscdp.DeviceStatusResponse):
            raise AccessError(Stage.BAD_ANSWER, f"{device_id} answered DeviceStatus with {doc.root}")
        device = self.registry.get(device_id)
        if device is not None:
            note_device_time(device, status.device_time, self.clock())
        return status

    # -- the catalog ---------------------------------------------------------------------------------

    async def refresh_catalog(self, device_id: str) -> CatalogResult:
        """Query the catalog and wait until it is assembled (or partially, after the timeouts)."""
        sn = self.next_sn()
        key = (device_id, sn)
        future: asyncio.Future[CatalogResult] = asyncio.get_running_loop().create_future()
        self._catalog_waiters[key] = future
        self.catalogs.expect(device_id, sn, self.clock())
        started = time.monotonic()
        try:
            await self.send_manscdp(device_id, manscdp.query_catalog(sn, device_id))
            result = await future
            self.metrics.catalog_assembly.labels("complete" if result.complete else "partial").observe(
                time.monotonic() - started)
            return result
        finally:
            self._catalog_waiters.pop(key, None)

    def catalog_page(self, device_id: str, page: manscdp.CatalogResponse, now: float) -> None:
        """One page of a device's catalog answer (asked for or not).

        A page that does not complete the catalog is stored at once (merged, the catalog flagged
        partial): its 200 waits for the commit, and a device that saw a page accepted does not send it
        again, so storing only the completed catalog would lose every acknowledged page to a crash.
        """
        done = self.catalogs.add(device_id, page, now)
        if done is not None:
            self._catalog_done(done)
            return
        device = self.registry.get(device_id)
        if device is not None:
            self.registry.merge_channels(
                device.id, [channel_from_item(device.id, item) for item in page.items if item.device_id])

    def expire_catalogs(self, now: float) -> None:
        """Close the catalogs whose pages stopped coming (from the periodic tick)."""
        for result in self.catalogs.expire(now):
            self._catalog_done(result)

    def _catalog_done(self, result: CatalogResult) -> None:
        device_id = result.device_id
        device = self.registry.get(device_id)
        # Nothing at all arrived (no answer, or the device was offline): there is no catalog to merge, and
        # flagging the old one partial would claim the device announced channels it did not send.
        if device is not None and (result.complete or result.items):
            channels = [channel_from_item(device.id, item) for item in result.items]
            self.registry.replace_channels(device.id, channels, partial=not result.complete)
        self.metrics.catalogs.labels("complete" if result.complete else "partial").inc()
        if not result.items and not result.complete:
            log.warning("no catalog received", device=device_id)
        elif not result.complete:
            log.warning("catalog incomplete", device=device_id, received=len(result.items), expected=result.sum_num)
        else:
            log.info("catalog received", device=device_id, channels=len(result.items))
        waiter = self._catalog_waiters.get((device_id, result.sn))
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    # -- record search -------------------------------------------------------------------------------

    async def search_records(
        self, device_id: str, channel_id: str, window: TimeWindow, record_type: RecordType = RecordType.ALL
    ) -> RecordSearchResult:
        """Query ``channel_id``'s recordings over ``window`` and wait until the pages are assembled (or
        partially, after the first-page wait or a gap between pages)."""
        sn = self.next_sn()
        key = (device_id, sn)
        future: asyncio.Future[RecordSearchResult] = asyncio.get_running_loop().create_future()
        self._record_waiters[key] = future
        records = self.records
        records.expect(device_id, sn, window, self.clock())
        try:
            await self.send_manscdp(device_id, record_query(sn, channel_id, window, records.zone, record_type))
            while not future.done():
                # The assembler's deadlines are the only timer: wait for the nearest, then close what ran out.
                deadline = records.next_deadline()
                wait = 0.0 if deadline is None else max(0.0, deadline - self.clock())
                try:
                    await asyncio.wait_for(asyncio.shield(future), wait + 0.01)
                except TimeoutError:
                    self.expire_records(self.clock())
        except AccessError as exc:
            self.metrics.record_queries.labels(exc.stage.metric_label).inc()
            raise
        finally:
            self._record_waiters.pop(key, None)
            records.cancel(device_id, sn)
        result = future.result()
        self.metrics.record_queries.labels("complete" if result.complete else "partial").inc()
        return result

    def record_page(self, device_id: str, page: manscdp.RecordInfoResponse, now: float) -> bool:
        """One page of a RecordInfo answer; False when no search of this device waits for its SN."""
        sn = page.sn if page.sn is not None else -1
        if not self.records.pending(device_id, sn):
            return False
        done = self.records.add(device_id, page, now)
        if done is not None:
            self._record_done(done)
        return True

    def expire_records(self, now: float) -> None:
        for result in self.records.expire(now):
            self._record_done(result)

    def _record_done(self, result: RecordSearchResult) -> None:
        waiter = self._record_waiters.get((result.device_id, result.sn))
        if waiter is not None and not waiter.done():
            waiter.set_result(result)


def apply_device_info(registry: DeviceRegistry, device_id: str, doc: ManscdpDocument) -> None:
    """Take a device's DeviceInfo answer into the registry (name, make, firmware, the charset it writes)."""
    info = doc.typed()
    if not isinstance(info, manscdp.DeviceInfoResponse) or registry.get(device_id) is None:
        return
    changes = {
        key: value
        for key, value in (
            ("name", info.device_name),
            ("manufacturer", info.manufacturer),
            ("model", info.model),
            ("firmware", info.firmware),
            ("charset", doc.encoding),
        )
        if value
    }
    if changes:
        registry.update(device_id, **changes)


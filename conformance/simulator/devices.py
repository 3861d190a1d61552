"""A crowd of simulated GB/T 28181 devices (cameras, NVRs) for tests, benchmarks and vendor checks: their
SIP side (registration, keepalive, answering the server's requests, calls). What they are is in
`config.py`, what they answer to queries in `answers.py`, the command in `cli.py`.

Each device behaves on the wire like the Hikvision and eXosip captures in shared/interop: REGISTER, 401,
REGISTER with digest (the same Call-ID, the nonce reused on refresh as eXosip does), keepalive MESSAGEs
with a rising SN, Catalog answers split over several MESSAGEs the way NVRs send them, DeviceInfo,
DeviceStatus, and a NOTIFY after a Catalog SUBSCRIBE. Like a camera, a device registers again when its
keepalive is refused or goes unanswered three times in a row. They also answer RecordInfo (recordings
spread over the time asked, paged like the catalog), PresetQuery and ConfigDownload (BasicParam as
Hikvision sends it, SIP server address and password included), and take DeviceControl and DeviceConfig,
keeping what they received (`controls`) and answering with Result OK where the standard has an answer.
Given a media file, devices answer a Play INVITE for a channel (or the device itself) and stream it as PS
over RTP (`media.py`) until a BYE, and send BYE themselves when the media duration ends or
the simulator stops. Playback and Download INVITEs stream the recorded range, take MANSRTSP in INFO, and
end with MediaStatus 121 (out of the dialog, in it, as a NOTIFY, or never: `MediaOptions.media_status`),
after which the device waits for the platform's BYE as NVRs do.

Scale is the design constraint (100,000 devices in one process): devices share a SIP socket per group
(as devices behind one NAT address do), a device is one slotted record, every timer lives in one heap
served by one loop timer, and registrations and keepalives are driven by future callbacks, not tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import os
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
import structlog

from gbgw.conformance.simulator import answers
from gbgw.conformance.simulator.broadcast import AudioReceiver
from gbgw.conformance.simulator.camera import CameraState
from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.media import MediaCall, MediaSource, OfferError
from gbgw.gb28181.manscdp import (
    ManscdpDocument,
    ManscdpError,
    build,
    encode_body,
    format_time,
    notify_alarm,
    notify_catalog,
    notify_media_status,
    parse,
    response_result,
)
from gbgw.sip.dialog import Dialog
from gbgw.sip.digest import DigestClient, DigestError, parse_challenge
from gbgw.sip.endpoint import EndpointConfig, Peer, SipEndpoint
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request, Response
from gbgw.sip.transaction import ServerTransaction, Timers
from gbgw.sip.transport import SipTransport
from gbgw.sip.uri import format_host_port

log = structlog.get_logger("gb28181.simulator")

MANSCDP_TYPE = "Application/MANSCDP+xml"

_KEEPALIVE = 0
_REGISTER = 1
# Timer entries handled per loop callback: a burst of due keepalives must not stall the event loop.
_TIMER_BATCH = 2000
# REGISTER legs of one attempt: the first, the answer to the 401, one more answer if that nonce was stale.
_MAX_LEGS = 3


# ---------------------------------------------------------------------------------------------------------
# State


@dataclass(slots=True)
class SimulatorStats:
    """Counters over the whole run; `registered` is the number of devices registered now."""

    registered: int = 0
    registrations: int = 0
    """REGISTER exchanges that ended in 2xx, refreshes included."""
    register_failures: int = 0
    auth_rejected: int = 0
    """Registrations whose digest answer the server refused (wrong password or username)."""
    reregistrations: int = 0
    """Registrations started because a keepalive was refused or timed out repeatedly."""
    keepalives_sent: int = 0
    keepalives_ok: int = 0
    keepalives_failed: int = 0
    """Non-2xx answers and timeouts; the timeouts alone are in `keepalive_timeouts`."""
    keepalive_timeouts: int = 0
    catalogs_answered: int = 0
    catalog_pages_sent: int = 0
    queries_answered: int = 0
    """DeviceInfo, DeviceStatus, RecordInfo, PresetQuery and ConfigDownload queries answered."""
    controls: int = 0
    """DeviceControl and DeviceConfig commands received."""
    subscriptions: int = 0
    notifies_sent: int = 0
    messages_failed: int = 0
    """Answers, NOTIFYs and reports the server did not accept with 2xx (or did not answer)."""
    unsupported: int = 0
    """Requests the simulator refused because it does not simulate what they ask for."""
    invites: int = 0
    calls: int = 0
    """INVITEs answered 200 (media calls set up)."""
    byes_received: int = 0
    """Every BYE that arrived, also those for no call of ours (answered 481)."""
    byes_sent: int = 0


class _Group:
    """Devices sharing one SIP socket (UDP port, or TCP connection to the server)."""

    __slots__ = ("contact_host", "server", "transport")

    def __init__(
        self,
        endpoint: SipEndpoint,
        server: Peer,
        on_request: Callable[[_Group, ServerTransaction], None],
        on_ack: Callable[[Request, Peer], None],
    ) -> None:
        self.transport = SipTransport(endpoint, partial(on_request, self), on_ack=on_ack)
        self.server = server
        self.contact_host = ""

    async def start(self, bind: str) -> None:
        host, port = await self.transport.start(bind, 0)
        self.contact_host = format_host_port(host, port)


class _Device:
    """One simulated device: only what its registration and keepalives need between two events."""

    __slots__ = (
        "auth",
        "call_id",
        "challenge",
        "cseq",
        "device_id",
        "epoch",
        "group",
        "keepalive_at",
        "misses",
        "number",
        "pending",
        "register_at",
        "registered",
        "sn",
        "tag",
    )

    def __init__(self, number: int, device_id: str, group: _Group) -> None:
        self.number = number
        self.device_id = device_id
        self.group = group
        self.registered = False
        self.pending = False
        """A registration is queued or in flight."""
        self.call_id = ""
        self.tag = ""
        self.cseq = 0
        self.sn = 0
        self.misses = 0
        self.epoch = 0
        """Counts registrations, so that a keepalive answer from before a re-registration is ignored."""
        self.keepalive_at = 0.0
        self.register_at = 0.0
        """When the next refresh (registered) or retry (not registered) is due; 0 for none."""
        self.auth: DigestClient | None = None
        self.challenge: tuple[str, str] | None = None
        """The header to answer in and the last challenge as received, reused for refreshes as eXosip does.
        Kept unparsed: the text is a third of the parsed form's size and is parsed once an hour."""


# ---------------------------------------------------------------------------------------------------------
# The simulator


class DeviceSimulator:
    """`config.count` devices registering to one server. Call `start()`, then `stop()`."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.stats = SimulatorStats()
        self.clock_offset = timedelta(0)
        """Server clock minus ours, from the Date of the last 200 to REGISTER (devices set their clocks)."""
        self._loop: asyncio.AbstractEventLoop  # the running loop, from start() on
        self._server_uri = f"sip:{config.server_id}@{config.domain}"
        self._server_to = f"<{self._server_uri}>"
        self._groups: list[_Group] = []
        self._devices: list[_Device] = []
        self._heap: list[tuple[float, int, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._queue: deque[tuple[_Device, int, asyncio.Future[bool] | None]] = deque()
        self._queue_ready = asyncio.Event()
        self._pacer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._stopping = False
        self._noted: set[str] = set()
        self._token = os.urandom(4).hex()
        self._serial = itertools.count(1)
        self._keepalive_body = answers.keepalive_template(config.encoding)
        self._source: MediaSource | None = None
        self._calls: dict[str, tuple[_Group, Dialog, MediaCall]] = {}
        self.broadcasts: dict[str, AudioReceiver] = {}
        self.broadcast_tcp = False
        """Ask for broadcast audio over TCP (the device listens) instead of UDP."""
        self.snapshot_image = b""
        """The JPEG a SnapShotConfig uploads (none: the capture is answered OK and nothing is uploaded)."""
        self.snapshot_uploads: list[tuple[str, int]] = []
        """(channel, HTTP status) of every snapshot upload."""
        """By the Call-ID of the audio INVITE the device sent after a Notify/Broadcast."""
        self.controls: deque[ManscdpDocument] = deque(maxlen=1000)
        """The last DeviceControl and DeviceConfig commands received, oldest first."""
        self.ptz_log: deque[tuple[str, str]] = deque(maxlen=1000)
        """(DeviceID, PTZCmd) of every PTZ command received, as the 16 hex digits arrived."""
        self.cameras: dict[str, CameraState] = {}
        """What each channel (or device) was told to do: PTZ position, presets, guard, recording."""
        self.event_subscriptions: dict[tuple[str, str], tuple[_Dialog, int]] = {}
        """(device ID, "Alarm" or "MobilePosition") -> the subscription dialog and the expiry granted."""
        self.subscription_log: deque[tuple[str, str, int]] = deque(maxlen=1000)
        """(device ID, CmdType, Expires) of every alarm and position SUBSCRIBE, refreshes and ends too."""

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the sockets and queue every device for registration (paced by `register_rate`). Raises
        OSError or ValueError when the media file cannot be read or holds no keyframe."""
        cfg = self.config
        self._loop = asyncio.get_running_loop()
        if cfg.media.file is not None:
            self._source = MediaSource.load(cfg.media.file, cfg.media.codec)
        server = Peer(cfg.transport, cfg.server_host, cfg.server_port)
        endpoint_config = EndpointConfig(user_agent=cfg.user_agent, timers=Timers(t1=cfg.t1))
        for first in range(0, cfg.count, cfg.devices_per_socket):
            group = _Group(SipEndpoint(endpoint_config), server, self._on_request, self._on_ack)
            await group.start(cfg.bind)
            self._groups.append(group)
            for number in range(cfg.start + first, cfg.start + min(first + cfg.devices_per_socket, cfg.count)):
                self._devices.append(_Device(number, cfg.device_id(number), group))
        self._pacer = self._loop.create_task(self._pace_registrations())
        for device in self._devices:
            self._enqueue(device)
        if cfg.alarm_interval:
            self._spawn(self._raise_alarms(cfg.alarm_interval))

    async def _raise_alarms(self, interval: float) -> None:
        # The first camera's motion detection raises them, named by its channel as NVRs report them.
        channel = 1 if self.config.channels else 0
        while True:
            await asyncio.sleep(interval)
            for index, device in enumerate(self._devices):
                if device.registered:
                    with contextlib.suppress(SipError):
                        if await self.notify_alarm(index, channel=channel, description="simulated alarm") is None:
                            await self.send_alarm(index, channel=channel, description="simulated alarm")

    async def stop(self, unregister: bool = True, timeout: float | None = None) -> None:
        """Stop all activity: hang up every call (BYE, waiting up to `timeout` or 5 s for the answers);
        with `unregister`, then send REGISTER Expires: 0 for registered devices (paced like
        registrations) and wait for the answers, by default as long as the pacing needs plus 5 s."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._calls:
            await asyncio.wait([self._loop.create_task(self._hang_up_quietly(call_id)) for call_id in self._calls],
                               timeout=5.0 if timeout is None else timeout)
        for task in list(self._tasks):
            task.cancel()
        self._queue.clear()
        if unregister:
            pending: list[asyncio.Future[bool]] = []
            for device in self._devices:
                if device.registered:
                    done: asyncio.Future[bool] = self._loop.create_future()
                    self._queue.append((device, 0, done))
                    pending.append(done)
            self._queue_ready.set()
            if pending:
                limit = len(pending) / self.config.register_rate + 5.0 if timeout is None else timeout
                await asyncio.wait(pending, timeout=limit)
        if self._pacer is not None:
            self._pacer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pacer
        for group in self._groups:
            await group.transport.close()

    async def wait_registered(self, count: int | None = None, timeout: float = 10.0) -> None:
        """Wait until at least `count` devices (default: all) are registered; TimeoutError otherwise."""
        target = self.config.count if count is None else count
        if self.stats.registered >= target:
            return
        waiter: asyncio.Future[None] = self._loop.create_future()
        entry = (target, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.stats.registered} of {target} devices registered after {timeout} s") from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def device_id(self, index: int) -> str:
        """The ID of the device at `index` (0-based, in --start order)."""
        return self._devices[index].device_id

    @property
    def sockets(self) -> list[tuple[str, int]]:
        """The local address of each socket group."""
        return [(g.transport.host, g.transport.port) for g in self._groups]

    # -- reports a test or benchmark triggers ---------------------------------------------------------

    async def send_alarm(
        self,
        device_index: int,
        *,
        channel: int = 0,
        priority: int = 1,
        method: int = 2,
        alarm_type: int | None = None,
        description: str | None = None,
        longitude: float | None = None,
        latitude: float | None = None,
    ) -> Response:
        """Send a Notify Alarm (as a MESSAGE, like Hikvision) for the device or one of its channels.
        Returns the server's final response; raises SipTimeout when there is none."""
        device = self._devices[device_index]
        target = self._target_id(device, channel)
        device.sn += 1
        doc = notify_alarm(
            device.sn, target, priority=priority, method=method, time=self._device_time(),
            description=description, longitude=longitude, latitude=latitude, alarm_type=alarm_type,
        )
        return await self._report(device, doc)

    async def send_mobile_position(
        self,
        device_index: int,
        *,
        longitude: float,
        latitude: float,
        speed: float | None = None,
        direction: float | None = None,
        altitude: float | None = None,
        channel: int = 0,
    ) -> Response:
        """Send a Notify MobilePosition (A.2.5 e) for the device or one of its channels."""
        device = self._devices[device_index]
        device.sn += 1
        doc = build(
            "Notify", "MobilePosition", device.sn, self._target_id(device, channel),
            [
                ("Time", format_time(self._device_time())),
                ("Longitude", longitude),
                ("Latitude", latitude),
                ("Speed", speed),
                ("Direction", direction),
                ("Altitude", altitude),
            ],
        )
        return await self._report(device, doc)

    async def _report(self, device: _Device, doc: ManscdpDocument) -> Response:
        response = await self._send_message(device, encode_body(doc, self.config.encoding))
        if response.status >= 300:
            self.stats.messages_failed += 1
        return response

    def _target_id(self, device: _Device, channel: int) -> str:
        if not 0 <= channel <= self.config.channels:
            raise ValueError(f"channel {channel} out of 0..{self.config.channels}")
        return device.device_id if channel == 0 else self.config.channel_id(device.number, channel)

    # -- timers --------------------------------------------------------------------------------------

    def _schedule(self, when: float, kind: int, device: _Device) -> None:
        """One heap for every device timer; an entry whose time no longer matches the device's is stale."""
        heapq.heappush(self._heap, (when, kind, device.number - self.config.start))
        if when < self._timer_at and not self._stopping:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = when
            self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        heap = self._heap
        devices = self._devices
        now = self._loop.time()
        handled = 0
        while heap and heap[0][0] <= now and handled < _TIMER_BATCH:
            when, kind, index = heapq.heappop(heap)
            device = devices[index]
            if kind == _KEEPALIVE:
                if device.keepalive_at == when:
                    device.keepalive_at = 0.0
                    handled += 1
                    self._send_keepalive(device)
            elif device.register_at == when:
                device.register_at = 0.0
                handled += 1
                self._enqueue(device)
        if heap and not self._stopping:
            self._timer_at = heap[0][0]
            self._timer = self._loop.call_at(self._timer_at, self._on_timer)

    def _set_keepalive(self, device: _Device, when: float) -> None:
        device.keepalive_at = when
        self._schedule(when, _KEEPALIVE, device)

    def _set_register(self, device: _Device, when: float) -> None:
        device.register_at = when
        self._schedule(when, _REGISTER, device)

    # -- registration --------------------------------------------------------------------------------

    def _enqueue(self, device: _Device) -> None:
        if device.pending or self._stopping:
            return
        device.pending = True
        self._queue.append((device, self.config.expires, None))
        self._queue_ready.set()

    async def _pace_registrations(self) -> None:
        """Token bucket: at most `register_rate` first legs per second. The bucket holds 50 ms worth, so
        a loop iteration slower than the 10 ms tick does not lose budget, and an idle queue does not build
        up a burst larger than that."""
        rate = self.config.register_rate
        tick = 0.01 if rate >= 100 else 1.0 / rate
        burst = max(1.0, rate * 0.05)
        budget = burst
        last = self._loop.time()
        queue = self._queue
        while True:
            if not queue:
                self._queue_ready.clear()
                await self._queue_ready.wait()
            now = self._loop.time()
            budget = min(burst, budget + (now - last) * rate)
            last = now
            while queue and budget >= 1.0:
                budget -= 1.0
                device, expires, done = queue.popleft()
                self._begin_register(device, expires, done)
            if queue:
                await asyncio.sleep(tick)

    def _begin_register(self, device: _Device, expires: int, done: asyncio.Future[bool] | None) -> None:
        if not device.registered and expires:
            # A new registration (first, after a failure, after refused keepalives) starts a new dialog
            # without credentials, as cameras do; a refresh keeps the Call-ID and reuses the nonce.
            device.call_id = self._new_call_id()
            device.tag = self._new_tag()
            device.cseq = 0
            device.challenge = None
        self._send_register(device, expires, 1, done)

    def _send_register(self, device: _Device, expires: int, leg: int, done: asyncio.Future[bool] | None) -> None:
        cfg = self.config
        group = device.group
        device.cseq += 1
        address = f"<sip:{device.device_id}@{cfg.domain}>"
        headers = [
            ("Via", group.transport.via(cfg.transport)),
            ("From", f"{address};tag={device.tag}"),
            ("To", address),
            ("Call-ID", device.call_id),
            ("CSeq", f"{device.cseq} REGISTER"),
            ("Contact", f"<sip:{device.device_id}@{group.contact_host}>"),
        ]
        if device.challenge is not None:
            header, challenge = device.challenge
            if device.auth is None:
                password = cfg.password + "-wrong" if "wrong-digest" in cfg.faults else cfg.password
                device.auth = DigestClient(cfg.username(device.device_id), password)
            try:
                answer = device.auth.authorization(parse_challenge(challenge), "REGISTER", self._server_uri)
                headers.append((header, answer))
            except DigestError as exc:
                self._note("cannot answer the challenge", device=device.device_id, reason=exc.reason)
                self._register_failed(device, expires, done)
                return
        headers += [("Max-Forwards", "70"), ("User-Agent", cfg.user_agent), ("Expires", str(expires))]
        future = group.transport.send_request(Request("REGISTER", self._server_uri, headers), group.server)
        future.add_done_callback(partial(self._on_register_answer, device, expires, leg, done))

    def _on_register_answer(
        self,
        device: _Device,
        expires: int,
        leg: int,
        done: asyncio.Future[bool] | None,
        future: asyncio.Future[Response],
    ) -> None:
        if future.cancelled():
            return
        if future.exception() is not None:
            self._note("no answer to REGISTER", device=device.device_id,
                       server=f"{self.config.server_host}:{self.config.server_port}")
            self._register_failed(device, expires, done)
            return
        response = future.result()
        status = response.status
        if status in (401, 407):
            self._on_challenge(device, response, expires, leg, done)
        elif 200 <= status < 300:
            self._registered(device, response, expires, done)
        else:
            self._note("registration refused", device=device.device_id, status=status, reason=response.reason)
            self._register_failed(device, expires, done)

    def _on_challenge(
        self, device: _Device, response: Response, expires: int, leg: int, done: asyncio.Future[bool] | None
    ) -> None:
        header = "Authorization" if response.status == 401 else "Proxy-Authorization"
        value = response.get("WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate") or ""
        try:
            challenge = parse_challenge(value)
        except DigestError as exc:
            self._note("unusable challenge", device=device.device_id, reason=exc.reason)
            self._register_failed(device, expires, done)
            return
        # The first leg may carry a reused nonce the server no longer takes: answer the new one. A 401 to
        # an answer of a fresh challenge means the password is wrong, unless the server says stale.
        if leg >= _MAX_LEGS or (leg > 1 and not challenge.stale):
            self.stats.auth_rejected += 1
            self._note("digest answer refused", device=device.device_id,
                       username=self.config.username(device.device_id))
            self._register_failed(device, expires, done)
            return
        device.challenge = (header, value)
        self._send_register(device, expires, leg + 1, done)

    def _registered(
        self, device: _Device, response: Response, expires: int, done: asyncio.Future[bool] | None
    ) -> None:
        device.pending = False
        stats = self.stats
        if done is not None and not done.done():
            done.set_result(True)
        if expires == 0:
            self._mark_unregistered(device)
            return
        stats.registrations += 1
        self._read_date(response)
        try:
            granted = response.expires or expires
        except SipError:
            granted = expires
        now = self._loop.time()
        if not device.registered:
            device.registered = True
            device.epoch += 1
            device.misses = 0
            stats.registered += 1
            self._wake_waiters()
            self._set_keepalive(device, now + self.config.keepalive_period)
        if not self._stopping:
            self._set_register(device, now + 0.8 * granted)

    def _register_failed(self, device: _Device, expires: int, done: asyncio.Future[bool] | None) -> None:
        device.pending = False
        device.challenge = None
        if done is not None and not done.done():
            done.set_result(False)
        if expires == 0:
            return
        self.stats.register_failures += 1
        self._mark_unregistered(device)
        if not self._stopping:
            self._set_register(device, self._loop.time() + self.config.retry_interval)

    def _mark_unregistered(self, device: _Device) -> None:
        if device.registered:
            device.registered = False
            device.keepalive_at = 0.0
            device.register_at = 0.0
            self.stats.registered -= 1

    def _note(self, event: str, **fields: Any) -> None:
        """Log a device's problem as a warning the first time it happens and at debug level after that:
        with 100,000 devices one refused password or one lost server would otherwise flood the log."""
        if event in self._noted:
            log.debug(event, **fields)
        else:
            self._noted.add(event)
            log.warning(event, **fields, note="later occurrences are logged at debug level")

    def _wake_waiters(self) -> None:
        if not self._waiters:
            return
        registered = self.stats.registered
        for target, waiter in self._waiters:
            if registered >= target and not waiter.done():
                waiter.set_result(None)

    def _read_date(self, response: Response) -> None:
        value = response.get("Date")
        if value is None:
            return
        try:
            server_time = datetime.fromisoformat(value.strip())
        except ValueError:
            return
        if server_time.tzinfo is not None:
            server_time = server_time.astimezone().replace(tzinfo=None)
        self.clock_offset = server_time - datetime.now()

    def _device_time(self) -> datetime:
        return datetime.now() + self.clock_offset

    # -- keepalive -----------------------------------------------------------------------------------

    def _send_keepalive(self, device: _Device) -> None:
        """The hot path: 100,000 devices at a 60 s interval are 1,700 of these per second. One process
        sustains about 5,000/s (uvloop; most of the time goes to the SIP layer), so a benchmark needing
        more runs several simulators with different --start values."""
        if not device.registered or self._stopping:
            return
        device.sn += 1
        self.stats.keepalives_sent += 1
        body = self._keepalive_body % (device.sn, device.device_id.encode())
        future = self._send_message(device, body)
        future.add_done_callback(partial(self._on_keepalive_answer, device, device.epoch))
        self._set_keepalive(device, self._loop.time() + self.config.keepalive_period)

    def _on_keepalive_answer(self, device: _Device, epoch: int, future: asyncio.Future[Response]) -> None:
        if future.cancelled():
            return
        stats = self.stats
        if future.exception() is not None:
            stats.keepalives_failed += 1
            stats.keepalive_timeouts += 1
            if epoch == device.epoch and device.registered:
                device.misses += 1
                if device.misses >= self.config.keepalive_misses:
                    self._note("keepalives unanswered; registering again", device=device.device_id)
                    self._register_again(device)
            return
        status = future.result().status
        if 200 <= status < 300:
            stats.keepalives_ok += 1
            if epoch == device.epoch:
                device.misses = 0
            return
        stats.keepalives_failed += 1
        if epoch == device.epoch and device.registered:
            # A platform that restarted, or dropped the device, refuses its keepalives (403/404/481...).
            self._note("keepalive refused; registering again", device=device.device_id, status=status)
            self._register_again(device)

    def _register_again(self, device: _Device) -> None:
        self.stats.reregistrations += 1
        self._mark_unregistered(device)
        self._enqueue(device)

    # -- requests we send ----------------------------------------------------------------------------

    def _new_call_id(self) -> str:
        return f"{self._token}{next(self._serial)}@{self.config.bind}"

    def _new_tag(self) -> str:
        return f"{self._token}{next(self._serial)}"

    def _send_message(self, device: _Device, body: bytes) -> asyncio.Future[Response]:
        """A MESSAGE from the device to the server, Hikvision style: a new Call-ID each, CSeq 20."""
        cfg = self.config
        group = device.group
        headers = [
            ("Via", group.transport.via(cfg.transport)),
            ("From", f"<sip:{device.device_id}@{cfg.domain}>;tag={self._new_tag()}"),
            ("To", self._server_to),
            ("Call-ID", self._new_call_id()),
            ("CSeq", "20 MESSAGE"),
            ("Content-Type", MANSCDP_TYPE),
            ("Max-Forwards", "70"),
            ("User-Agent", cfg.user_agent),
        ]
        return group.transport.send_request(Request("MESSAGE", self._server_uri, headers, body), group.server)

    # -- requests we answer --------------------------------------------------------------------------

    def _on_request(self, group: _Group, txn: ServerTransaction) -> None:
        method = txn.request.method
        if method == "MESSAGE":
            self._on_message(group, txn)
        elif method == "SUBSCRIBE":
            self._on_subscribe(group, txn)
        elif method == "INVITE":
            self._on_invite(group, txn)
        elif method == "BYE":
            self._on_bye(group, txn)
        elif method == "INFO":
            self._on_info(group, txn)
        elif method in ("CANCEL", "NOTIFY"):
            self._reply(group, txn, 481)
        else:
            self.stats.unsupported += 1
            self._reply(group, txn, 405, headers=[("Allow", "MESSAGE, SUBSCRIBE, OPTIONS")])

    def _reply(
        self,
        group: _Group,
        txn: ServerTransaction,
        status: int,
        reason: str | None = None,
        *,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> Response:
        extra = [("User-Agent", self.config.user_agent), *(headers or ())]
        return group.transport.reply(txn, status, reason, headers=extra, body=body)

    def _addressed(self, group: _Group, txn: ServerTransaction) -> tuple[_Device, int, ManscdpDocument] | None:
        """Parse the body and find the device (and channel) it is for; answer the request when we cannot."""
        request = txn.request
        try:
            doc = parse(request.body)
        except ManscdpError as exc:
            self._reply(group, txn, exc.status, exc.reason)
            return None
        located = self.config.locate(doc.device_id)
        if located is None:
            with contextlib.suppress(SipError):
                located = self.config.locate(request.request_uri.user or "")
        if located is None:
            self._reply(group, txn, 404, "No such device")
            return None
        number, channel = located
        return self._devices[number - self.config.start], channel, doc

    def _on_message(self, group: _Group, txn: ServerTransaction) -> None:
        addressed = self._addressed(group, txn)
        if addressed is None:
            return
        device, channel, doc = addressed
        if doc.root == "Notify" and doc.cmd_type == "Broadcast":
            self._reply(group, txn, 200)
            self._spawn(self._broadcast(device, doc))
            return
        if doc.root == "Control":
            # Kept for whoever checks what arrived, applied to the camera's state, and answered.
            self.controls.append(doc)
            self.stats.controls += 1
            code = doc.text("PTZCmd")
            if code is not None:
                self.ptz_log.append((doc.device_id, code))
                log.info("PTZCmd received", device=doc.device_id, ptz_cmd=code)
            # Guard and alarm reset are taken for the device, its alarm input and its cameras: real IPCs
            # and NVRs arm a camera channel's own alarms (motion detection) when a platform addresses it.
            ok = self.camera(doc.device_id).apply(doc, self._alarm_targets(device))
            self._reply(group, txn, 200)
            snap = doc.element.find("SnapShotConfig")
            if snap is not None and ok and self.snapshot_image:
                self._spawn(self._upload_snapshots(doc.device_id, snap.findtext("UploadURL") or "",
                                                   int(snap.findtext("SnapNum") or "1"),
                                                   float(snap.findtext("Interval") or "1")))
            silenced = "guard-result" in self.config.faults and doc.element.find("GuardCmd") is not None
            if (doc.sn is not None and doc.cmd_type not in self.config.unanswered and not silenced
                    and answers.control_answered(doc)):
                answer = response_result(doc.cmd_type, doc.sn, doc.device_id, ok=ok)
                self._spawn(self._report_quietly(device, answer))
            return
        if doc.root == "Query" and doc.sn is not None and doc.cmd_type in self.config.unanswered:
            self._reply(group, txn, 200)
            return
        pages = self._answer(device.number, channel, doc) if doc.root == "Query" else None
        self._reply(group, txn, 200)
        if pages is None:
            self.stats.unsupported += 1
            return
        self._spawn(self._send_answer(device, pages, catalog=doc.cmd_type == "Catalog"))

    def _answer(self, number: int, channel: int, query: ManscdpDocument) -> list[ManscdpDocument] | None:
        """The pages answering a query; None for what the simulator does not answer."""
        cfg = self.config
        sn, query_id = query.sn, query.device_id
        if sn is None:
            return None
        match query.cmd_type:
            case "Catalog":
                return answers.catalog(cfg, number, channel, sn, query_id)
            case "DeviceInfo":
                return [answers.device_info(cfg, number, sn, query_id)]
            case "DeviceStatus":
                status = answers.device_status(cfg, number, sn, query_id, self._device_time())
                camera = self.camera(query_id)
                self._show_state(status, camera)
                return [status]
            case "RecordInfo":
                return answers.record_info(cfg, number, channel, query, self._device_time())
            case "PresetQuery":
                return [self.camera(query_id).preset_list(sn, query_id)]
            case "PTZPosition":
                return [self.camera(query_id).position(sn, query_id)]
            case "HomePositionQuery":
                return [self.camera(query_id).home_position(sn, query_id)]
            case "CruiseTrackListQuery":
                return [self.camera(query_id).cruise_tracks(sn, query_id)]
            case "CruiseTrackQuery":
                track = query.text("Number") or "0"
                return [self.camera(query_id).cruise_track(sn, query_id, int(track) if track.isdigit() else 0)]
            case "SDCardStatus":
                return [self.camera(query_id).sd_cards(sn, query_id)]
            case "ConfigDownload":
                return [answers.config_download(cfg, number, channel, query)]
        return None

    def _on_subscribe(self, group: _Group, txn: ServerTransaction) -> None:
        addressed = self._addressed(group, txn)
        if addressed is None:
            return
        device, channel, doc = addressed
        request = txn.request
        if doc.cmd_type not in ("Catalog", "Alarm", "MobilePosition"):
            self.stats.unsupported += 1
            self._reply(group, txn, 489)
            return
        try:
            expires = request.expires
        except SipError:
            expires = None
        expires = self.config.expires if expires is None else expires
        event = request.get("Event") or doc.cmd_type
        # Dahua answers with the MANSCDP Result in the 200 itself; platforms accept that everywhere.
        body = encode_body(response_result(doc.cmd_type, doc.sn, doc.device_id), self.config.encoding)
        response = self._reply(
            group, txn, 200,
            headers=[
                ("Contact", f"<sip:{device.device_id}@{group.contact_host}>"),
                ("Event", event),
                ("Expires", str(expires)),
                ("Content-Type", MANSCDP_TYPE),
            ],
            body=body,
        )
        self.stats.subscriptions += 1
        if doc.cmd_type != "Catalog":
            self._event_subscribed(device, doc.cmd_type, request, response, expires, event)
        if doc.cmd_type == "Catalog" and expires > 0 and doc.sn is not None:
            target = self._server_uri
            with contextlib.suppress(SipError):
                contact = request.contact
                if contact is not None:
                    target = str(contact.uri)
            dialog = _Dialog(target, local=response.get("To") or "", remote=request.get("From") or "",
                             call_id=request.call_id or "", event=event)
            self._spawn(self._notify_catalog(device, channel, dialog, expires, doc.sn))

    def _alarm_targets(self, device: _Device) -> frozenset[str]:
        cfg = self.config
        channels = (cfg.channel_id(device.number, c) for c in range(1, cfg.channels + 1))
        return frozenset({device.device_id, cfg.alarm_input_id(device.number), *channels})

    def camera(self, target_id: str) -> CameraState:
        """The state of a channel or device of ours (made on first use, with `presets` presets)."""
        camera = self.cameras.get(target_id)
        if camera is None:
            camera = self.cameras[target_id] = CameraState.with_presets(self.config.presets)
        return camera

    @staticmethod
    def _show_state(status: ManscdpDocument, camera: CameraState) -> None:
        """DeviceStatus tells what commands changed: recording, and the alarm input's guard."""
        record = status.element.find("Record")
        if record is not None:
            record.text = "ON" if camera.recording else "OFF"
        for duty in status.element.iter("DutyStatus"):
            duty.text = "ONDUTY" if camera.guard else "OFFDUTY"

    def _event_subscribed(
        self, device: _Device, cmd_type: str, request: Request, response: Response, expires: int, event: str
    ) -> None:
        self.subscription_log.append((device.device_id, cmd_type, expires))
        key = (device.device_id, cmd_type)
        if expires == 0:
            self.event_subscriptions.pop(key, None)
            return
        target = self._server_uri
        with contextlib.suppress(SipError):
            contact = request.contact
            if contact is not None:
                target = str(contact.uri)
        dialog = _Dialog(target, local=response.get("To") or "", remote=request.get("From") or "",
                         call_id=request.call_id or "", event=event)
        self.event_subscriptions[key] = (dialog, expires)

    async def notify_alarm(self, device_index: int, *, channel: int = 0, priority: int = 1, method: int = 2,
                           description: str | None = None) -> Response | None:
        """Report an alarm as an IPC that reports only while subscribed does: a NOTIFY in the alarm
        subscription's dialog; None (nothing sent) while the device is not subscribed."""
        device = self._devices[device_index]
        entry = self.event_subscriptions.get((device.device_id, "Alarm"))
        if entry is None:
            return None
        dialog, expires = entry
        device.sn += 1
        doc = notify_alarm(device.sn, self._target_id(device, channel), priority=priority, method=method,
                           time=self._device_time(), description=description)
        cfg = self.config
        group = device.group
        headers = [
            ("Via", group.transport.via(cfg.transport)),
            ("From", dialog.local),
            ("To", dialog.remote),
            ("Call-ID", dialog.call_id),
            ("CSeq", f"{device.sn} NOTIFY"),
            ("Contact", f"<sip:{device.device_id}@{group.contact_host}>"),
            ("Event", dialog.event),
            ("Subscription-State", f"active;expires={expires}"),
            ("Content-Type", MANSCDP_TYPE),
            ("Max-Forwards", "70"),
            ("User-Agent", cfg.user_agent),
        ]
        response = await group.transport.send_request(
            Request("NOTIFY", dialog.target, headers, encode_body(doc, cfg.encoding)), group.server)
        self.stats.notifies_sent += 1
        return response

    # -- live video ----------------------------------------------------------------------------------

    def _on_invite(self, group: _Group, txn: ServerTransaction) -> None:
        """Answer a Play INVITE for a channel or the device itself; the media starts with the ACK."""
        self.stats.invites += 1
        request = txn.request
        media = self.config.media
        located = None
        with contextlib.suppress(SipError):
            located = self.config.locate(request.request_uri.user or "")
        if located is None:
            self._reply(group, txn, 404, "No such channel")
            return
        if media.invite_status == 0:
            return
        if media.invite_status != 200:
            self._reply(group, txn, media.invite_status)
            return
        if self._source is None and media.send:
            self.stats.unsupported += 1
            self._reply(group, txn, 488, "Simulated device has no media file")
            return
        number, channel = located
        target_id = self._target_id(self._devices[number - self.config.start], channel)
        contact = f"<sip:{target_id}@{group.contact_host}>"
        call_id = request.call_id or ""
        try:
            # Our responses carry the endpoint's tag in To, so that is our side of every dialog we answer.
            dialog = Dialog.from_uas(request, group.transport.endpoint.local_tag, contact, peer=group.server)
            call, answer = MediaCall.answer(call_id, target_id, request.body, self._source, media,
                                            bind=self.config.bind, signalling_host=txn.remote.host)
        except SipError as exc:
            self._reply(group, txn, exc.status, exc.reason)
            return
        except OfferError as exc:
            self._reply(group, txn, exc.status, exc.reason)
            return
        except OSError as exc:
            self._reply(group, txn, 503, f"No media port: {exc.strerror}")
            return
        previous = self._calls.get(call_id)
        if previous is not None:
            # A re-INVITE: the new answer's media replaces the old.
            previous[2].close("re-INVITE")
        self._calls[call_id] = (group, dialog, call)
        self.stats.calls += 1
        self._reply(group, txn, 200, headers=[("Contact", contact), ("Content-Type", "APPLICATION/SDP")], body=answer)

    def _on_ack(self, request: Request, source: Peer) -> None:
        entry = self._calls.get(request.call_id or "")
        if entry is not None:
            entry[2].start(self._call_finished)

    def _on_bye(self, group: _Group, txn: ServerTransaction) -> None:
        self.stats.byes_received += 1
        receiver = self.broadcasts.get(txn.request.call_id or "")
        if receiver is not None and receiver.ended is None:
            receiver.close("BYE received")
            self._reply(group, txn, 200)
            return
        entry = self._calls.pop(txn.request.call_id or "", None)
        if entry is None:
            self._reply(group, txn, 481)
            return
        entry[2].close("BYE received")
        self._reply(group, txn, 200)

    def _on_info(self, group: _Group, txn: ServerTransaction) -> None:
        """MANSRTSP playback control of a call."""
        entry = self._calls.get(txn.request.call_id or "")
        if entry is None:
            self._reply(group, txn, 481)
            return
        status, body = entry[2].control(txn.request.body)
        headers = [("Content-Type", "Application/MANSRTSP")] if body else []
        self._reply(group, txn, status, headers=headers, body=body)

    async def _upload_snapshots(self, channel_id: str, url: str, count: int, interval: float) -> None:
        """POST the image ``count`` times, ``interval`` seconds apart, as a 2022 camera uploads captures."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            for index in range(count):
                if index:
                    await asyncio.sleep(interval)
                try:
                    async with http.post(url, data=self.snapshot_image,
                                         headers={"Content-Type": "image/jpeg"}) as response:
                        self.snapshot_uploads.append((channel_id, response.status))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.info("snapshot upload failed", channel=channel_id, reason=str(exc))
                    self.snapshot_uploads.append((channel_id, 0))

    async def _broadcast(self, device: _Device, doc: ManscdpDocument) -> None:
        """Accept a voice broadcast like a camera with a speaker: Result OK, then INVITE the audio source
        (SourceID) from the target channel for G.711, and keep what arrives."""
        source, target = doc.text("SourceID") or "", doc.text("TargetID") or device.device_id
        if doc.sn is not None:
            await self._report_quietly(device, response_result("Broadcast", doc.sn, target, ok=True))
        cfg = self.config
        group = device.group
        receiver = await AudioReceiver.open(cfg.bind, tcp=self.broadcast_tcp)
        call_id = self._new_call_id()
        self.broadcasts[call_id] = receiver
        device.sn += 1
        headers = [
            ("Via", group.transport.via(cfg.transport)),
            ("From", f"<sip:{target}@{cfg.domain}>;tag={self._new_tag()}"),
            ("To", f"<sip:{source}@{cfg.domain}>"),
            ("Call-ID", call_id),
            ("CSeq", f"{device.sn} INVITE"),
            ("Contact", f"<sip:{target}@{group.contact_host}>"),
            ("Subject", f"{target}:0{cfg.domain[3:8]}0001,{source}:0"),
            ("Content-Type", "APPLICATION/SDP"),
            ("Max-Forwards", "70"),
            ("User-Agent", cfg.user_agent),
        ]
        body = receiver.offer(target, cfg.bind, f"0{cfg.domain[3:8]}0001")
        invite = Request("INVITE", f"sip:{source}@{cfg.domain}", headers, body)
        try:
            response = await group.transport.send_request(invite, group.server)
        except SipError as exc:
            receiver.close(f"INVITE failed: {exc.reason}")
            return
        if response.status >= 300:
            receiver.close(f"INVITE answered {response.status}")
            return
        dialog = Dialog.from_uac(invite, response, group.server)
        group.transport.send_ack(dialog.create_ack(invite.cseq.seq, via=group.transport.via(cfg.transport)),
                                 group.server)

    def _call_finished(self, call: MediaCall) -> None:
        """The media duration (live) or the recorded range (history) has passed: a camera hangs up, an
        NVR says end of file and waits for the platform's BYE."""
        if call.history:
            self._spawn(self._media_status(call.call_id))
        else:
            self._spawn(self._hang_up_quietly(call.call_id))

    async def _media_status(self, call_id: str) -> None:
        entry = self._calls.get(call_id)
        way = self.config.media.media_status
        if entry is None or way == "none" or "no-media-status" in self.config.faults:
            return
        group, dialog, call = entry
        located = self.config.locate(call.channel_id)
        if located is None:
            return
        device = self._devices[located[0] - self.config.start]
        device.sn += 1
        doc = notify_media_status(device.sn, call.channel_id)
        if way == "message":
            await self._report(device, doc)
            return
        cfg = self.config
        headers = [("User-Agent", cfg.user_agent)]
        if way == "notify":
            headers += [("Event", "MediaStatus"), ("Subscription-State", "active")]
        request = dialog.create_request(
            "MESSAGE" if way == "dialog" else "NOTIFY", via=group.transport.via(cfg.transport),
            body=encode_body(doc, cfg.encoding), content_type=MANSCDP_TYPE, extra_headers=headers,
        )
        response = await group.transport.send_request(request, group.server)
        if response.status >= 300:
            self.stats.messages_failed += 1

    async def _hang_up_quietly(self, call_id: str) -> None:
        with contextlib.suppress(SipError):
            await self.hang_up(call_id)

    @property
    def calls(self) -> dict[str, MediaCall]:
        """Calls being answered or streamed, by Call-ID."""
        return {call_id: entry[2] for call_id, entry in self._calls.items()}

    async def hang_up(self, call_id: str) -> Response | None:
        """End a call from the device's side: stop its media and send BYE. Returns the server's answer,
        None if there is no such call; raises SipTimeout when the BYE is not answered."""
        entry = self._calls.pop(call_id, None)
        if entry is None:
            return None
        group, dialog, call = entry
        call.close("BYE sent")
        bye = dialog.create_request("BYE", via=group.transport.via(self.config.transport),
                                    extra_headers=[("User-Agent", self.config.user_agent)])
        self.stats.byes_sent += 1
        return await group.transport.send_request(bye, group.server)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, SipError):
            # No answer from the server (SipTimeout) to a report or page.
            self.stats.messages_failed += 1
        elif exc is not None:
            log.error("simulated device failed to answer", error=repr(exc))

    # -- answers -------------------------------------------------------------------------------------

    async def _send_answer(self, device: _Device, pages: list[ManscdpDocument], *, catalog: bool) -> None:
        for page in pages:
            # Each after the previous one's 200, as devices pace a multi-message answer.
            await self._report(device, page)
            if catalog:
                self.stats.catalog_pages_sent += 1
        if catalog:
            self.stats.catalogs_answered += 1
        else:
            self.stats.queries_answered += 1

    async def _report_quietly(self, device: _Device, doc: ManscdpDocument) -> None:
        await self._report(device, doc)

    async def _notify_catalog(self, device: _Device, channel: int, dialog: _Dialog, expires: int, sn: int) -> None:
        """The catalog as ON events, in NOTIFYs inside the dialog the SUBSCRIBE and our 200 created."""
        cfg = self.config
        group = device.group
        items = answers.catalog_items(cfg, device.number, channel, event="ON")
        size = cfg.catalog_page_size
        total = len(items)
        pages = [items[i : i + size] for i in range(0, total, size)] or [[]]
        for cseq, page in enumerate(pages, start=1):
            body = encode_body(notify_catalog(sn, device.device_id, page, sum_num=total), cfg.encoding)
            headers = [
                ("Via", group.transport.via(cfg.transport)),
                ("From", dialog.local),
                ("To", dialog.remote),
                ("Call-ID", dialog.call_id),
                ("CSeq", f"{cseq} NOTIFY"),
                ("Contact", f"<sip:{device.device_id}@{group.contact_host}>"),
                ("Event", dialog.event),
                ("Subscription-State", f"active;expires={expires}"),
                ("Content-Type", MANSCDP_TYPE),
                ("Max-Forwards", "70"),
                ("User-Agent", cfg.user_agent),
            ]
            request = Request("NOTIFY", dialog.target, headers, body)
            response = await group.transport.send_request(request, group.server)
            self.stats.notifies_sent += 1
            if response.status >= 300:
                self.stats.messages_failed += 1


@dataclass(slots=True, frozen=True)
class _Dialog:
    """A subscription dialog from our side: where NOTIFYs go and the From/To/Call-ID/Event they carry."""

    target: str
    local: str
    remote: str
    call_id: str
    event: str


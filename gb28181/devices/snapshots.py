"""2022 image capture (SnapShotConfig): the device takes JPEGs and uploads them over HTTP to the gateway.

Each capture request gets its own upload URL, ``{upload_base}/api/uploads/snapshots/{token}``, where the token
is 32 random bytes (hex) doubling as the standard's SessionID (32-128 characters). The upload route takes no
API token (cameras have none): the URL is the credential, valid for the images asked for and until
``UPLOAD_WINDOW`` after the last one is due, and compared in constant time. The images are kept in memory,
bounded by count and bytes; the oldest go first.
"""

from __future__ import annotations

import hmac
import itertools
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from gbgw.gb28181 import manscdp
from gbgw.gb28181.devices.control import ControlResult, DeviceControl

log = structlog.get_logger("gb28181.snapshots")

UPLOAD_WINDOW = 60.0
"""Seconds after the last image is due that its upload is still taken (cameras are slow to encode)."""
MAX_IMAGE_BYTES = 4 * 1024 * 1024
JPEG_START = b"\xff\xd8"


class UploadRefused(Exception):
    """An upload not taken: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class Snapshot:
    id: str
    device_id: str
    channel_id: str
    session: str
    """The capture request's public number (``capture-N``), never its token."""
    at: float
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(slots=True)
class Capture:
    """One SnapShotConfig sent: where its images may come from and how many are still due."""

    id: str
    device_id: str
    channel_id: str
    token: str = field(repr=False)
    remaining: int
    expires: float
    result: ControlResult | None = None


class SnapshotStore:
    """Images kept newest last, at most ``max_count`` and ``max_bytes`` together."""

    def __init__(self, max_count: int = 500, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.bytes = 0
        self._images: OrderedDict[str, Snapshot] = OrderedDict()

    def add(self, image: Snapshot) -> None:
        self._images[image.id] = image
        self.bytes += image.size
        while self._images and (len(self._images) > self.max_count or self.bytes > self.max_bytes):
            _, dropped = self._images.popitem(last=False)
            self.bytes -= dropped.size

    def get(self, image_id: str) -> Snapshot | None:
        return self._images.get(image_id)

    def of_device(self, device_id: str) -> list[Snapshot]:
        """Newest first."""
        return [s for s in reversed(self._images.values()) if s.device_id == device_id]


class SnapshotCapture:
    """Sends SnapShotConfig through ``control`` and takes the uploads its URLs receive.
    ``upload_base()`` is how devices reach the API listener (``http://10.0.0.2:8080``), asked per capture:
    the listener's port is known only once it listens."""

    def __init__(self, control: DeviceControl, upload_base: Callable[[], str], clock: Callable[[], float],
                 store: SnapshotStore | None = None) -> None:
        self.control = control
        self.upload_base = upload_base
        self.clock = clock
        self.store = store or SnapshotStore()
        self._captures: dict[str, Capture] = {}
        self._ids = itertools.count(1)
        self._image_ids = itertools.count(1)

    async def request(self, device_id: str, channel_id: str, count: int, interval: int) -> Capture:
        """Ask the channel for ``count`` images ``interval`` seconds apart. Raises AccessError (device
        offline, no answer) or ValueError (count outside 1-10)."""
        self._expire()
        token = os.urandom(32).hex()
        capture = Capture(f"capture-{next(self._ids)}", device_id, channel_id, token, count,
                          self.clock() + count * interval + UPLOAD_WINDOW)
        url = f"{self.upload_base().rstrip('/')}/api/uploads/snapshots/{token}"

        def build(sn: int, target: str) -> manscdp.ManscdpDocument:
            return manscdp.config_snap_shot(sn, target, snap_num=count, interval=interval, upload_url=url,
                                            session_id=token)

        self._captures[token] = capture
        try:
            capture.result = await self.control.control(device_id, build, channel_id)
        except BaseException:
            self._captures.pop(token, None)
            raise
        if not capture.result.ok:
            self._captures.pop(token, None)
        log.info("snapshot capture requested", capture=capture.id, device=device_id, channel=channel_id,
                 count=count, interval=interval, result=capture.result.result)
        return capture

    def upload(self, token: str, data: bytes) -> Snapshot:
        """One uploaded image for the capture ``token`` names; raises UploadRefused."""
        now = self.clock()
        self._expire()
        capture = None
        if token.isascii():
            capture = next((c for t, c in self._captures.items() if hmac.compare_digest(t, token)), None)
        if capture is None:
            raise UploadRefused(404, "no capture is waiting for this upload")
        if not data.startswith(JPEG_START):
            raise UploadRefused(415, "the upload is not a JPEG image")
        if len(data) > MAX_IMAGE_BYTES:
            raise UploadRefused(413, f"an image is at most {MAX_IMAGE_BYTES} bytes")
        image = Snapshot(f"snapshot-{next(self._image_ids)}", capture.device_id, capture.channel_id, capture.id,
                         now, data)
        self.store.add(image)
        capture.remaining -= 1
        if capture.remaining <= 0:
            del self._captures[capture.token]
        log.info("snapshot uploaded", snapshot=image.id, capture=capture.id, device=capture.device_id,
                 bytes=len(data))
        return image

    def _expire(self) -> None:
        now = self.clock()
        for token in [t for t, c in self._captures.items() if c.expires < now]:
            del self._captures[token]

"""2022 image capture: ask a channel for JPEGs, take the device's uploads, list and serve the images
(gb28181.devices.snapshots has the rules)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from aiohttp import BodyPartReader, web

from gbgw.gb28181.app.api.addressing import channel_or_404
from gbgw.gb28181.app.api.common import ApiError, device_or_404, dumps, iso, read_body, route_doc
from gbgw.gb28181.app.api.schemas import SnapshotAnswer
from gbgw.gb28181.devices.snapshots import MAX_IMAGE_BYTES, Snapshot, SnapshotCapture, UploadRefused

routes = web.RouteTableDef()

SNAPSHOTS: web.AppKey[SnapshotCapture] = web.AppKey("snapshots", SnapshotCapture)


class SnapshotRequest(msgspec.Struct, forbid_unknown_fields=True):
    count: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1
    """Images to take (SnapNum, 1-10)."""
    interval: Annotated[int, msgspec.Meta(ge=1, le=600)] = 1
    """Seconds between them."""


def capture(request: web.Request) -> SnapshotCapture:
    found = request.app.get(SNAPSHOTS)
    if found is None:
        raise ApiError(503, "image capture is not available in this gateway")
    return found


def snapshot_json(image: Snapshot) -> dict[str, Any]:
    return {"id": image.id, "device_id": image.device_id, "channel_id": image.channel_id,
            "capture": image.session, "at": iso(image.at), "size": image.size, "url": f"/api/snapshots/{image.id}"}


@routes.post("/api/devices/{device_id}/channels/{channel_id}/snapshots")
@route_doc("2022: ask the channel to take JPEGs (SnapShotConfig) and upload them to the gateway",
           body=SnapshotRequest)
async def request_snapshots(request: web.Request) -> web.Response:
    device, channel = channel_or_404(request)
    body = await read_body(request, SnapshotRequest)
    found = await capture(request).request(device.id, channel.id, body.count, body.interval)
    result = found.result
    answer = {"capture": found.id, "device_id": device.id, "channel_id": channel.id, "count": body.count,
              "interval": body.interval, "result": result.result if result is not None else None}
    if result is not None and not result.ok:
        raise ApiError(502, f"device {device.id} answered SnapShotConfig with Result ERROR")
    return web.json_response(answer, dumps=dumps)


@routes.post("/api/uploads/snapshots/{token}")
@route_doc("Where a device uploads the JPEGs of a capture: the URL's one-time token is the credential "
           "(no API token)", public=True)
async def upload_snapshot(request: web.Request) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_IMAGE_BYTES:
        raise ApiError(413, f"an image is at most {MAX_IMAGE_BYTES} bytes")
    if request.content_type.startswith("multipart/"):
        # Some firmware posts a form with the image as its one file part.
        part = await (await request.multipart()).next()
        data = bytes(await part.read(decode=False)) if isinstance(part, BodyPartReader) else b""
    else:
        data = await request.read()
    try:
        image = capture(request).upload(request.match_info["token"], data)
    except UploadRefused as exc:
        raise ApiError(exc.status, exc.reason) from None
    return web.json_response({"id": image.id}, status=201, dumps=dumps)


@routes.get("/api/devices/{device_id}/snapshots")
@route_doc("The images a device uploaded, newest first", answer=list[SnapshotAnswer])
async def list_snapshots(request: web.Request) -> web.Response:
    device = device_or_404(request)
    return web.json_response([snapshot_json(s) for s in capture(request).store.of_device(device.id)], dumps=dumps)


@routes.get("/api/snapshots/{snapshot_id}")
@route_doc("One uploaded image (image/jpeg)", answer={"image/jpeg": bytes})
async def get_snapshot(request: web.Request) -> web.Response:
    image = capture(request).store.get(request.match_info["snapshot_id"])
    if image is None:
        raise ApiError(404, "no such snapshot (removed when newer ones filled the store)")
    return web.Response(body=image.data, content_type="image/jpeg")

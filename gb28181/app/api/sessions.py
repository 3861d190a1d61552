"""``/api/sessions``: the receivers of live streams (API viewers and uppers alike), and stopping one."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.common import ApiError, dumps, route_doc, services
from gbgw.gb28181.media.live import Session

routes = web.RouteTableDef()


def session_json(session: Session) -> dict[str, Any]:
    stream = session.stream
    ingest = stream.ingest.stats
    output = session.output.stats
    return {
        "id": session.id,
        "owner": session.owner,
        "channel_id": stream.channel_id,
        "device_id": stream.device_id,
        "state": "ended" if session.ended else ("streaming" if output.state == "live" else output.state),
        "ended": session.ended,
        "transport": session.transport,
        "receiver": output.receiver,
        "local_port": output.local_port,
        "ssrc": f"{output.ssrc:010d}" if output.ssrc < 10**10 else str(output.ssrc),
        "age": round(output.age, 3),
        "packets_out": output.packets,
        "bytes_out": output.bytes,
        "device": {
            "transport": stream.transport.value,
            "ssrc": stream.ssrc,
            # What the device really sends: many ignore the offered y= (0, an old value...).
            "ssrc_received": None if ingest.ssrc is None else f"{ingest.ssrc:010d}",
            "local_port": ingest.local_port,
            "packets_in": ingest.packets,
            "bytes_in": ingest.bytes,
            "lost": ingest.lost,
            "reordered": ingest.reordered,
            "dropped": ingest.dropped,
            "age": round(ingest.age, 3),
        },
    }


@routes.get("/api/sessions")
@route_doc("Every receiver of a live stream, API viewers and uppers alike",
           answer=list[schemas.SessionAnswer])
async def list_sessions(request: web.Request) -> web.Response:
    return web.json_response([session_json(s) for s in list(services(request).live.sessions.values())], dumps=dumps)


@routes.get("/api/sessions/{session_id}")
@route_doc("One session, with its device leg's counters", answer=schemas.SessionAnswer)
async def get_session(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    session = services(request).live.sessions.get(session_id)
    if session is None:
        raise ApiError(404, f"no session {session_id}")
    return web.json_response(session_json(session), dumps=dumps)


@routes.delete("/api/sessions/{session_id}")
@route_doc("Stop a session (the device leg ends when its last receiver has gone)", answer=schemas.Stopped)
async def delete_session(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    if not services(request).live.stop(session_id):
        raise ApiError(404, f"no session {session_id}")
    return web.json_response({"id": session_id, "state": "stopped"}, dumps=dumps)

"""``/api/reports``: the availability report (online rate per community, school, enterprise over a period).

``GET /api/reports/availability?from=&to=&group=industry|civil_code|device`` answers per group and per
device the online time fraction over the period, the offline episodes and their reasons. ``from`` and
``to`` are ISO 8601 (an offset, or local time without one) or epoch seconds; by default the last 24 hours.
With ``Accept: text/csv`` it is one row per device, for a spreadsheet.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import datetime
from typing import Any

from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.common import ApiError, dumps, iso, route_doc, services
from gbgw.gb28181.ids import industry_name
from gbgw.gb28181.observe.availability import (
    DeviceAvailability,
    GroupAvailability,
    Grouping,
    OfflineEpisode,
    availability,
    grouped,
)

routes = web.RouteTableDef()

DEFAULT_PERIOD = 86400.0
CSV_COLUMNS = (
    "group", "device_id", "name", "online_fraction", "online_seconds", "observed_seconds", "offline_episodes",
    "offline_reasons",
)


def parse_time(value: str, name: str) -> float:
    """ISO 8601 (local time when it has no offset) or epoch seconds; 400 naming the parameter otherwise."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace(" ", "+") if "T" in value else value).timestamp()
    except ValueError:
        raise ApiError(400, f"{name}: {value!r} is neither ISO 8601 (2024-05-01T00:00:00+08:00) nor epoch "
                            "seconds") from None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def episode_json(episode: OfflineEpisode) -> dict[str, Any]:
    return {
        "from": iso(episode.start),
        "to": iso(episode.end) if episode.end is not None else None,
        "seconds": round(episode.seconds, 3),
        "reason": episode.reason,
        "back": episode.back,
    }


def device_json(device: DeviceAvailability, name: str | None) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "name": name,
        "online_fraction": _round(device.fraction),
        "online_seconds": round(device.online, 3),
        "observed_seconds": round(device.observed, 3),
        "offline_episodes": [episode_json(e) for e in device.episodes],
    }


def reasons(device: DeviceAvailability) -> str:
    counts = Counter(e.reason for e in device.episodes)
    return ";".join(f"{reason}:{n}" for reason, n in sorted(counts.items()))


@routes.get("/api/reports/availability")
@route_doc("Online time fraction per group and device over a period, with offline episodes (CSV on "
           "Accept: text/csv)", answer=schemas.AVAILABILITY)
async def availability_report(request: web.Request) -> web.StreamResponse:
    api = services(request)
    if api.availability is None:
        raise ApiError(503, "the availability history is not kept by this gateway")
    now = api.clock()
    query = request.query
    end = min(parse_time(query["to"], "to"), now) if "to" in query else now
    start = parse_time(query["from"], "from") if "from" in query else end - DEFAULT_PERIOD
    if start >= end:
        raise ApiError(400, "from must be before to (and before now)")
    try:
        grouping = Grouping(query.get("group", Grouping.INDUSTRY))
    except ValueError:
        raise ApiError(400, f"group must be one of {', '.join(g.value for g in Grouping)}") from None
    registry = api.registry
    transitions = await api.availability.transitions(start, end)
    devices = availability(transitions, start, end, known=(d.id for d in registry.devices()))
    groups = grouped(devices.values(), grouping)

    def name_of(device_id: str) -> str | None:
        device = registry.get(device_id)
        return device.name or None if device is not None else None

    if "text/csv" in request.headers.get("Accept", ""):
        return _csv(groups, name_of)
    return web.json_response(
        {
            "from": iso(start),
            "to": iso(end),
            "group": grouping.value,
            "online_fraction": _round(_overall(groups)),
            "groups": [_group_json(g, grouping, name_of) for g in groups],
        },
        dumps=dumps,
    )


def _overall(groups: list[GroupAvailability]) -> float | None:
    observed = sum(g.observed for g in groups)
    return sum(g.online for g in groups) / observed if observed > 0 else None


def _group_json(group: GroupAvailability, grouping: Grouping, name_of: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"key": group.key}
    if grouping is Grouping.INDUSTRY:
        body["name"] = industry_name(group.key) if group.key else None
    body.update(
        devices=len(group.devices),
        online_fraction=_round(group.fraction),
        online_seconds=round(group.online, 3),
        observed_seconds=round(group.observed, 3),
        offline_episodes=sum(len(d.episodes) for d in group.devices),
        device_list=[device_json(d, name_of(d.device_id)) for d in group.devices],
    )
    return body


def _csv(groups: list[GroupAvailability], name_of: Any) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for group in groups:
        for device in group.devices:
            fraction = device.fraction
            writer.writerow([
                group.key, device.device_id, name_of(device.device_id) or "",
                "" if fraction is None else f"{fraction:.6f}", f"{device.online:.3f}", f"{device.observed:.3f}",
                len(device.episodes), reasons(device),
            ])
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8")

"""API hygiene: UTF-8 JSON, pagination and filters, timestamps with offsets, SSRCs that fit 32 bits.

Devices talk SIP to an in-process gateway over loopback; the answers are read as raw bytes where the
encoding is the point.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gwproc import InProcessGateway, running_gateway, wait_until
from test_api import ALARM_IN, CAMERA, DEVICE_ID, bootstrapped

from gbgw.gb28181.app.api.common import MAX_SSRC

OFFSET_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(?:[+-]\d\d:\d\d)$")
SCHOOL_IPC = "34020000111328000005"  # industry 11
COMMUNITY_IPCS = ["34020000011328000002", "34020000011328000004", "34020000011328000006"]


async def raw(gw: InProcessGateway, path: str, method: str = "GET", body: Any = None) -> tuple[int, str, bytes]:
    async with gw.api.session.request(method, gw.api.base + path, json=body) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.read()


async def registered(gw: InProcessGateway, device_id: str) -> None:
    dev = await gw.device(device_id)
    assert (await dev.register("12345678")).status == 200


def timestamps(value: Any, key: str = "") -> list[str]:
    """Every string under a key that names a moment (``*_at``, ``from``, ``to``)."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in timestamps(v, k)]
    if isinstance(value, list):
        return [t for v in value for t in timestamps(v, key)]
    return [value] if isinstance(value, str) and (key.endswith("_at") or key == "last_keepalive") else []


async def test_json_is_utf8_without_escapes_on_every_answer(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        await bootstrapped(gw)
        for path in ("/api/devices", f"/api/devices/{DEVICE_ID}", f"/api/devices/{DEVICE_ID}/channels",
                     "/api/devices/34020000011328000777", "/api/no/such/route"):
            status, content_type, body = await raw(gw, path)
            assert content_type == "application/json; charset=utf-8", (path, content_type)
            assert b"\\u" not in body, (path, body[:200])
            json.loads(body.decode("utf-8"))
            if status == 200 and "channels" in path:
                assert "小区东门入口".encode() in body


async def test_devices_paginate_by_cursor_stable_under_inserts(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        for device_id in [*COMMUNITY_IPCS, SCHOOL_IPC]:
            await registered(gw, device_id)
        ordered = sorted([*COMMUNITY_IPCS, SCHOOL_IPC])

        # Without limit: the plain list, as before pagination existed.
        assert isinstance(await gw.api.ok("/api/devices"), list)
        first = await gw.api.ok("/api/devices?limit=2")
        assert [d["id"] for d in first["items"]] == ordered[:2] and first["next"]
        # A device registering before the cursor neither repeats nor shifts what the next page holds.
        await registered(gw, "34020000011328000001")
        second = await gw.api.ok(f"/api/devices?limit=2&cursor={first['next']}")
        assert [d["id"] for d in second["items"]] == ordered[2:4]
        assert second["next"] is None or (await gw.api.ok(f"/api/devices?limit=2&cursor={second['next']}")) == {
            "items": [], "next": None}
        whole = await gw.api.ok("/api/devices?limit=1000")
        assert [d["id"] for d in whole["items"]] == sorted([*ordered, "34020000011328000001"])
        assert whole["next"] is None


async def test_device_filters(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        await bootstrapped(gw)  # named 东门IPC
        for device_id in [*COMMUNITY_IPCS, SCHOOL_IPC]:
            await registered(gw, device_id)
        gone = await gw.device(COMMUNITY_IPCS[0])
        assert (await gone.register("12345678", expires=0)).status == 200

        async def offline() -> bool:
            return not (await gw.api.ok(f"/api/devices/{COMMUNITY_IPCS[0]}"))["online"]

        await wait_until(offline, what="the unregistered device offline")

        async def ids(query: str) -> list[str]:
            answer = await gw.api.ok(f"/api/devices?{query}")
            return sorted(d["id"] for d in answer)

        assert await ids("industry=11") == [SCHOOL_IPC]
        assert await ids("industry=01,11&online=false") == [COMMUNITY_IPCS[0]]
        assert COMMUNITY_IPCS[0] not in await ids("online=true")
        assert await ids("q=东门ipc") == [DEVICE_ID]
        assert await ids("q=328000004") == [COMMUNITY_IPCS[1]]
        paged = await gw.api.ok("/api/devices?industry=01&online=true&limit=1")
        assert [d["id"] for d in paged["items"]] == [DEVICE_ID] and paged["next"]

        for query in ("online=maybe", "industry=1", "limit=0", "limit=1001", "limit=x", "cursor=abc",
                      "limit=5&cursor=%%%"):
            status, body = await gw.api.call(f"/api/devices?{query}")
            assert status == 400, (query, body)
            assert query.split("=")[0].split("&")[-1] in body["error"] or "cursor" in body["error"], body


async def test_channels_paginate_and_filter(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        await bootstrapped(gw)
        base = f"/api/devices/{DEVICE_ID}/channels"
        assert {c["id"] for c in await gw.api.ok(base)} == {CAMERA, ALARM_IN}
        first = await gw.api.ok(f"{base}?limit=1")
        assert [c["id"] for c in first["items"]] == [CAMERA]
        second = await gw.api.ok(f"{base}?limit=1&cursor={first['next']}")
        assert [c["id"] for c in second["items"]] == [ALARM_IN] and second["next"] is None
        assert [c["id"] for c in await gw.api.ok(f"{base}?online=true")] == [CAMERA]
        assert [c["id"] for c in await gw.api.ok(f"{base}?industry=11")] == [ALARM_IN]
        assert [c["id"] for c in await gw.api.ok(f"{base}?q=报警")] == [ALARM_IN]


async def test_timestamps_carry_an_offset(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        dev = await bootstrapped(gw)
        assert (await dev.keepalive()).status == 200
        stamps = timestamps(await gw.api.ok("/api/devices"))
        assert len(stamps) >= 3
        for stamp in stamps:
            assert OFFSET_TIME.match(stamp), stamp
        audit = (tmp_path / "audit.log").read_text(encoding="utf-8").splitlines()
        assert audit
        for line in audit:
            assert OFFSET_TIME.match(json.loads(line)["ts"]), line


async def test_an_ssrc_beyond_32_bits_is_a_400(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        dev = await bootstrapped(gw)
        paths = [f"/api/channels/{CAMERA}/play", f"/api/devices/{DEVICE_ID}/channels/{CAMERA}/play"]
        history = {"start": "2025-04-22T10:00:00+08:00", "end": "2025-04-22T10:05:00+08:00"}
        bodies: list[tuple[str, dict[str, Any]]] = [(path, {"host": "127.0.0.1", "port": 5004}) for path in paths]
        bodies += [(f"/api/devices/{DEVICE_ID}/channels/{CAMERA}/{kind}", {**history, "host": "127.0.0.1",
                                                                          "port": 5004})
                   for kind in ("playback", "download")]
        for path, body in bodies:
            for ssrc in (MAX_SSRC + 1, str(MAX_SSRC + 1), "9999999999", "12_345", " 1", -1):
                status, _, answer = await raw(gw, path, "POST", {**body, "ssrc": ssrc})
                assert status == 400, (path, ssrc, answer)
                assert b"ssrc" in answer, answer
        # The largest SSRC passes the check: the play then fails at the next step (the device is offline).
        assert (await dev.register("12345678", expires=0)).status == 200

        async def offline() -> bool:
            return not (await gw.api.ok(f"/api/devices/{DEVICE_ID}"))["online"]

        await wait_until(offline, what="the device offline")
        for path, body in bodies:
            status, _, answer = await raw(gw, path, "POST", {**body, "ssrc": str(MAX_SSRC)})
            assert status not in (400, 200), (path, answer)
            assert b"offline" in answer, answer

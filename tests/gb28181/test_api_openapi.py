"""The OpenAPI 3.1 document the gateway serves: valid, complete, and built from the routes themselves."""

from __future__ import annotations

import importlib
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from access_harness import RunningGateway
from aiohttp import web
from control_harness import control_api
from jsonschema import Draft202012Validator
from media_harness import Sink
from openapi_spec_validator import validate
from playback_harness import make_clip, window
from upper_harness import FakeUpper, upstream_config

from gbgw.conformance.simulator.media import MediaOptions
from gbgw.gb28181.app.api import ApiServices, make_app
from gbgw.gb28181.app.api.common import Role, route_doc
from gbgw.gb28181.app.api.openapi import document
from gbgw.gb28181.boundary.audit import AuditLog
from gbgw.gb28181.config import ApiConfig
from gbgw.gb28181.observe.metrics import GatewayMetrics

app_module = importlib.import_module("gbgw.gb28181.app.api.app")


def declared_routes() -> set[tuple[str, str]]:
    """(method, path) of every route every resource module declares, read from their route tables."""
    found = set()
    for resource in app_module.RESOURCES:
        for definition in resource.routes:
            path = re.sub(r"\{(\w+)[^}]*\}", r"{\1}", definition.path)
            found.add((definition.method.lower(), path))
    return found


async def test_the_served_document_validates_and_lists_every_route(
    gateway_factory: Callable[..., Awaitable[RunningGateway]],
) -> None:
    gw = await gateway_factory()
    status, doc = await gw.api("/api/openapi.json")
    assert status == 200
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    listed = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert listed == declared_routes()
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    play = doc["paths"]["/api/channels/{channel_id}/play"]["post"]
    assert play["x-role"] == "operator" and play["security"] == [{"bearer": []}]
    assert play["parameters"] == [{"name": "channel_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    body = play["requestBody"]["content"]["application/json"]["schema"]
    schema = doc["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert set(schema["properties"]) == {"host", "port", "transport", "ssrc", "stream"}
    assert schema["additionalProperties"] is False
    health = doc["paths"]["/api/health"]["get"]
    assert health["security"] == [] and health["x-public"] is True


async def test_the_docs_page_is_self_contained_and_lists_the_routes(
    gateway_factory: Callable[..., Awaitable[RunningGateway]],
) -> None:
    gw = await gateway_factory({"api": {"tokens": [{"name": "noc", "role": "viewer", "sha256": "0" * 64}]}})
    status, page = await gw.api("/api/docs")  # public, even with tokens configured
    assert status == 200
    assert page.startswith("<!doctype html>")
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for method, path in declared_routes():
        assert f"<code>{method.upper()}</code></td><td><code>{path}</code>" in page, (method, path)


class Thing(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    size: int = 0


class Made(msgspec.Struct):
    id: str


def services(tmp_path: Path) -> ApiServices:
    unused = cast(Any, None)
    return ApiServices(registry=unused, storage=unused, metrics=GatewayMetrics(), requests=unused, live=unused,
                       cascade=unused, tasks=unused, clock=unused, audit=AuditLog(str(tmp_path / "audit.log")),
                       config=ApiConfig())


def test_answer_and_body_types_become_schemas_and_the_role_an_extension() -> None:
    routes = web.RouteTableDef()

    @routes.put("/api/things/{thing_id:\\d+}")
    @route_doc("Make a thing", role=Role.ADMIN, body=Thing, answer=list[Made])
    async def make_thing(request: web.Request) -> web.Response:
        return web.json_response([])

    app = web.Application()
    app.add_routes(routes)
    doc = document(app.router)
    validate(doc)
    op = doc["paths"]["/api/things/{thing_id}"]["put"]
    assert op["x-role"] == "admin" and op["operationId"].endswith(".make_thing")
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Thing"}
    answer = op["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"type": "array", "items": {"$ref": "#/components/schemas/Made"}}
    assert doc["components"]["schemas"]["Thing"]["required"] == ["name"]


def test_an_undeclared_route_stops_the_app_from_being_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_app(services(tmp_path))  # every real route is declared
    stray = web.RouteTableDef()

    @stray.get("/api/stray")
    async def undeclared(request: web.Request) -> web.Response:
        return web.json_response({})

    class Stray:
        routes = stray

    monkeypatch.setattr(app_module, "RESOURCES", (*app_module.RESOURCES, Stray))
    with pytest.raises(app_module.UndeclaredRoute, match="GET /api/stray"):
        make_app(services(tmp_path))


def _generic(schema: dict[str, Any]) -> bool:
    """A schema that says nothing: any value, or any object."""
    return not schema or schema == {"type": "object"} or (
        schema.get("type") == "object" and not schema.get("properties") and "additionalProperties" not in schema)


async def test_every_get_route_declares_what_it_answers(
    gateway_factory: Callable[..., Awaitable[RunningGateway]],
) -> None:
    gw = await gateway_factory()
    _, doc = await gw.api("/api/openapi.json")
    vague = []
    for path, operations in doc["paths"].items():
        if "get" not in operations:
            continue
        content = operations["get"]["responses"]["200"].get("content", {})
        if not content or any(_generic(form["schema"]) for form in content.values()):
            vague.append(path)
    assert vague == []


class Answers:
    """Validates real answers against the 200 schema the served document gives their route."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.checked: set[tuple[str, str]] = set()

    def check(self, method: str, template: str, body: Any) -> None:
        schema = self.doc["paths"][template][method]["responses"]["200"]["content"]["application/json"]["schema"]
        validator = Draft202012Validator({**schema, "components": self.doc["components"]})
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
        assert errors == [], (method, template, errors)
        self.checked.add((method, template))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg (Debian package ffmpeg)")
async def test_real_answers_validate_against_their_declared_schemas(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], tmp_path: Path,
) -> None:
    upper = await FakeUpper().start()
    gw = await gateway_factory({"upstreams": [upstream_config(upper)]})
    api = await control_api(gw)
    sink = await Sink.open("udp")
    try:
        sim = await api.simulator(channels=2, presets=2, media=MediaOptions(file=make_clip(tmp_path), fps=25))
        device, channel = sim.device_id(0), sim.config.channel_id(1, 1)
        _, doc = await gw.api("/api/openapi.json")
        answers = Answers(doc)
        one = f"/api/devices/{device}/channels/{channel}"

        async def get(template: str, path: str | None = None, **values: str) -> Any:
            status, body = await api.call(path or template.format(**values), "GET")
            assert status == 200, (template, body)
            answers.check("get", template, body)
            return body

        async def post(template: str, path: str, body: Any = None, status: int = 200) -> Any:
            got, answer = await api.call(path, "POST", body)
            assert got == status, (path, answer)
            answers.check("post", template, answer)
            return answer

        await gw.wait_for(lambda: _true(gw.gateway.cascade.links["district"].online), 10, "the upstream online")
        await get("/api/health")
        assert len(await get("/api/devices")) == 1
        assert (await get("/api/devices", "/api/devices?limit=1"))["next"] is None
        await get("/api/devices/{device_id}", device_id=device)
        assert len(await get("/api/devices/{device_id}/channels", device_id=device)) == 2
        page = await get("/api/devices/{device_id}/channels", f"/api/devices/{device}/channels?limit=1")
        assert page["next"] is not None
        await get("/api/devices/{device_id}/status", device_id=device)
        await get("/api/devices/{device_id}/trace", device_id=device)
        await get("/api/devices/{device_id}/warnings", device_id=device)
        await get("/api/devices/{device_id}/subscriptions", device_id=device)
        await get("/api/devices/{device_id}/positions", device_id=device)
        await get("/api/devices/{device_id}/sd-cards", device_id=device)
        await get("/api/devices/{device_id}/config/{config_type}", device_id=device, config_type="BasicParam")
        channel_routes = ("presets", "home-position", "ptz/position", "cruise-tracks")
        for route in channel_routes:
            await get(f"/api/devices/{{device_id}}/channels/{{channel_id}}/{route}", f"{one}/{route}")
        await get("/api/devices/{device_id}/channels/{channel_id}/cruise-tracks/{number}", f"{one}/cruise-tracks/1")
        start, end = window(60)
        records = await get("/api/devices/{device_id}/channels/{channel_id}/records",
                            f"{one}/records?start={start.replace('+', '%2B')}&end={end.replace('+', '%2B')}")
        assert records["records"]
        await post("/api/devices/{device_id}/catalog/refresh", f"/api/devices/{device}/catalog/refresh")
        control = "/api/devices/{device_id}/channels/{channel_id}/ptz"
        assert (await post(control, f"{one}/ptz", {"command": "left"}))["ptz_cmd"]
        await post("/api/devices/{device_id}/channels/{channel_id}/keyframe", f"{one}/keyframe")

        session = await post("/api/devices/{device_id}/channels/{channel_id}/play", f"{one}/play", sink.request())
        await sink.first_packet()
        assert len(await get("/api/sessions")) == 1
        live = await get("/api/sessions/{session_id}", session_id=session["id"])
        assert live["device"]["packets_in"] > 0
        history = await post("/api/devices/{device_id}/channels/{channel_id}/playback", f"{one}/playback",
                             {"start": start, "end": end, **sink.request()})
        await get("/api/sessions/{session_id}", session_id=history["id"])
        await post("/api/sessions/{session_id}/control", f"/api/sessions/{history['id']}/control",
                   {"action": "pause"})

        upstreams = await get("/api/upstreams")
        assert [u["name"] for u in upstreams] == ["district"]
        await get("/api/upstreams/{name}", name="district")
        await get("/api/upstreams/{name}/sessions", name="district")
        await get("/api/alarms")
        await get("/api/registrations/failed")
        await get("/api/reports/availability")
        await get("/api/webrtc/viewers")
        await get("/api/openapi.json")
        for path in ("/api/sessions/{session_id}",):
            assert ("delete", path) not in answers.checked
        status, stopped = await api.call(f"/api/sessions/{history['id']}", "DELETE")
        assert status == 200
        answers.check("delete", "/api/sessions/{session_id}", stopped)
        json_gets = {path for path, ops in doc["paths"].items() if "get" in ops
                     and "application/json" in ops["get"]["responses"]["200"].get("content", {})}
        unchecked = json_gets - {path for method, path in answers.checked if method == "get"}
        # Routes another test runs against devices or features this one does not set up.
        assert unchecked <= {"/api/devices/{device_id}/snapshots", "/api/snapshots/{snapshot_id}",
                             "/api/broadcasts/{broadcast_id}"}, unchecked
    finally:
        await sink.close()
        await api.close()
        await upper.close()


async def _true(value: bool) -> bool:
    return value

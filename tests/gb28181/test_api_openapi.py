"""The OpenAPI 3.1 document the gateway serves: valid, complete, and built from the routes themselves."""

from __future__ import annotations

import importlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest
from access_harness import RunningGateway
from aiohttp import web
from openapi_spec_validator import validate

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

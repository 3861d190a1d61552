"""The OpenAPI 3.1 document of the running application, built from its routes, and a page that lists them.

Nothing here is written by hand: each operation comes from a route and its handler's ``RouteDoc``
(summary, role as ``x-role``, body and answer types, whose JSON Schemas msgspec derives from the
Structs the handlers decode), so the document cannot forget a route or describe one the app lacks.
Both are public: they say what exists, not what is in it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import msgspec
from aiohttp import web

from gbgw.gb28181.app.api import schemas
from gbgw.gb28181.app.api.common import RouteDoc, doc_of, dumps, route_doc

routes = web.RouteTableDef()

DOCUMENT: web.AppKey[dict[str, Any]] = web.AppKey("openapi_document", dict)
_PARAM = re.compile(r"\{(\w+)[^}]*\}")
_SCHEMAS = "#/components/schemas/{name}"
_ERROR = {"$ref": _SCHEMAS.format(name="Error")}
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {"type": "string", "description": "what went wrong, for a person"},
        "stage": {"type": "string", "description": "the step of a device or media request that failed"},
    },
    "required": ["error"],
}


def _version() -> str:
    try:
        return metadata.version("gb28181-gateway")
    except metadata.PackageNotFoundError:
        return "0"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _operation(method: str, path: str, name: str, doc: RouteDoc, schemas: dict[type, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": doc.summary, "operationId": name}
    params = _PARAM.findall(path)
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
    if doc.body is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": schemas[doc.body]}}}
    ok: dict[str, Any] = {"description": "done"}
    if doc.answer is not None:
        ok["content"] = {media: {"schema": schemas[kind]} for media, kind in _answers(doc)}
    responses: dict[str, Any] = {"200": ok}
    if doc.body is not None or params:
        responses["400"] = _error("the body or a path value is not what the route takes")
    if doc.public:
        op["security"] = []
        op["x-public"] = True
    else:
        op["security"] = [{"bearer": []}]
        op["x-role"] = doc.required_role(method.upper()).name.lower()
        responses["401"] = _error("no token, or not a valid one")
        responses["403"] = _error(f"the token's role is below {op['x-role']}")
        responses["429"] = _error("too many wrong tokens from this address")
    op["responses"] = responses
    return op


def _answers(doc: RouteDoc) -> list[tuple[str, Any]]:
    """(media type, msgspec type) of each form the route's answer takes."""
    if doc.answer is None:
        return []
    if isinstance(doc.answer, Mapping):
        return list(doc.answer.items())
    return [("application/json", doc.answer)]


def _either(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One operation for two routes the same path template names (``/api/sessions/{session_id}``: a
    pattern picks playback and download IDs out before the live sessions' route): either answer."""
    merged = {**first, "summary": f"{first['summary']}; or {second['summary']}"}
    ok = first["responses"]["200"].get("content", {})
    other = second["responses"]["200"].get("content", {})
    content = {media: {"schema": {"anyOf": [ok[media]["schema"], other[media]["schema"]]}}
               if media in ok and media in other else ok.get(media, other.get(media))
               for media in {**ok, **other}}
    merged["responses"] = {**first["responses"], "200": {**first["responses"]["200"], "content": content}}
    return merged


def document(router: web.UrlDispatcher) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route in ``router`` (the HEAD twins of GET routes left out)."""
    declared: list[tuple[str, str, str, RouteDoc]] = []
    for route in router.routes():
        doc = doc_of(route.handler)
        if route.method == "HEAD" or doc is None or route.resource is None:
            continue
        path = _PARAM.sub(r"{\1}", route.resource.canonical)
        # Two resources may both name a handler ``play``: the module keeps operation IDs unique.
        name = f"{route.handler.__module__.rsplit('.', 1)[-1]}.{route.handler.__name__}"
        declared.append((route.method.lower(), path, name, doc))
    kinds = sorted({k for *_, doc in declared for k in (doc.body, *(kind for _, kind in _answers(doc)))
                    if k is not None}, key=repr)
    found, components = msgspec.json.schema_components(kinds, ref_template=_SCHEMAS)
    schemas = dict(zip(kinds, found, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for method, path, name, doc in declared:
        operations = paths.setdefault(path, {})
        op = _operation(method, path, name, doc, schemas)
        operations[method] = _either(operations[method], op) if method in operations else op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "GB/T 28181 gateway API",
            "version": _version(),
            "description": "Devices, channels, live sessions and upper platforms of one gateway. "
                           "Authorization: Bearer <token> unless an operation is public; x-role names "
                           "the lowest role that may call it (viewer < operator < admin).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": _ERROR_SCHEMA, **components},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@routes.get("/api/openapi.json")
@route_doc("This document: every route, its role and its body schema", public=True,
           answer=schemas.OpenApiDocument)
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[DOCUMENT], dumps=dumps)


@routes.get("/api/docs")
@route_doc("The routes as a readable page (no scripts, nothing fetched from elsewhere)", public=True,
           answer=schemas.HTML)
async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=page(request.app[DOCUMENT]), content_type="text/html", charset="utf-8")


def page(doc: dict[str, Any]) -> str:
    """``doc`` as one self-contained HTML page: a table of operations, each body schema below it."""
    rows = []
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            body_name = body["$ref"].rsplit("/", 1)[-1] if body and "$ref" in body else ""
            role = "public" if op.get("x-public") else op.get("x-role", "")
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(role)}</td><td>{html.escape(op.get('summary', ''))}</td>"
                f"<td>{f'<a href=#{html.escape(body_name)}>{html.escape(body_name)}</a>' if body_name else ''}</td></tr>"
            )
    schemas = [
        f"<h3 id={html.escape(name)}>{html.escape(name)}</h3><pre>{html.escape(msgspec.json.format(msgspec.json.encode(schema)).decode())}</pre>"
        for name, schema in doc["components"]["schemas"].items()
    ]
    info = doc["info"]
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(info['title'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}pre{background:#f6f6f6;padding:.5em}</style>"
        f"</head><body><h1>{html.escape(info['title'])} {html.escape(info['version'])}</h1>"
        f"<p>{html.escape(info['description'])}</p><p><a href=/api/openapi.json>/api/openapi.json</a></p>"
        "<table><tr><th>method</th><th>path</th><th>role</th><th>summary</th><th>body</th></tr>"
        + "".join(rows) + "</table><h2>Schemas</h2>" + "".join(schemas) + "</body></html>"
    )

"""API authentication and roles (issue 10), driven over HTTP against an in-process gateway.

The route list is taken from the gateway's own /api/openapi.json, so a route added later is checked
without anyone editing this file: without a token 401 (unless public), with a wrong token 401, with each
role 403 or not according to its x-role. Not 2xx: a made-up device's 404 is fine, the point is the gate.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from access_harness import RunningGateway
from aiohttp.test_utils import TestClient, TestServer
from gwproc import parse_metrics

from gbgw.gb28181.app.api import make_metrics_app
from gbgw.gb28181.observe.metrics import GatewayMetrics

TOKENS = {
    "viewer": "v1ewer-T0ken-aaaaaaaaaaaaaaaa",
    "operator": "0perator-T0ken-bbbbbbbbbbbbbbbb",
    "admin": "adm1n-T0ken-cccccccccccccccccccc",
}
WRONG = "wr0ng-T0ken-dddddddddddddddddddd"
RANK = {"viewer": 1, "operator": 2, "admin": 3}
CONFIG = {"api": {"tokens": [{"name": f"{role}-holder", "role": role,
                              "sha256": hashlib.sha256(token.encode()).hexdigest()}
                             for role, token in TOKENS.items()]}}
MADE_UP_ID = "34020000001320000999"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fill(path: str) -> str:
    """A concrete path for a templated one: 20-digit IDs for ``*_id``, a name nothing has otherwise."""
    return re.sub(r"\{(\w+)\}", lambda m: MADE_UP_ID if m.group(1).endswith("_id") else "no-such", path)


@asynccontextmanager
async def client_from(source: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose connections come from ``source`` (any 127/8 address is this host on Linux)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


async def status_of(http: aiohttp.ClientSession, base: str, method: str, path: str,
                    headers: dict[str, str] | None = None) -> tuple[int, aiohttp.typedefs.LooseHeaders, Any]:
    """Status, headers and JSON body (None if not JSON) of one request; a body ``{}`` for non-GET."""
    body = None if method in ("get", "head") else b"{}"
    async with http.request(method.upper(), base + path, data=body,
                            headers={**(headers or {}), "Content-Type": "application/json"}) as response:
        payload = await response.json() if response.content_type == "application/json" else None
        return response.status, response.headers, payload


async def operations(gw: RunningGateway) -> list[tuple[str, str, dict[str, Any]]]:
    status, doc = await gw.api("/api/openapi.json")
    assert status == 200
    return [(method, path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


async def test_every_route_in_the_document_is_gated_by_its_role(
    gateway_factory: Callable[..., Awaitable[RunningGateway]],
) -> None:
    gw = await gateway_factory(CONFIG)
    ops = await operations(gw)
    assert len(ops) >= 15
    wrong_count = 0
    for method, path, op in ops:
        url = fill(path)
        public = bool(op.get("x-public"))
        if public:
            assert op["security"] == []
            status, _, _ = await status_of(gw.http, gw.api_url, method, url)
            assert status not in (401, 403), (method, path, status)
            continue
        role = op["x-role"]
        assert role in RANK, (method, path, op)
        status, headers, body = await status_of(gw.http, gw.api_url, method, url)
        assert status == 401, (method, path, status, body)
        assert headers["WWW-Authenticate"] == 'Bearer realm="gb28181-gateway"'
        assert body is not None and "error" in body
        # Wrong tokens are what the brake counts: a fresh source address every ten keeps it out of the way.
        async with client_from(f"127.0.1.{1 + wrong_count // 10}") as other:
            status, headers, body = await status_of(other, gw.api_url, method, url, auth(WRONG))
        wrong_count += 1
        assert status == 401, (method, path, status, body)
        assert "WWW-Authenticate" in headers
        for holder, token in TOKENS.items():
            status, _, body = await status_of(gw.http, gw.api_url, method, url, auth(token))
            if RANK[holder] < RANK[role]:
                assert status == 403, (holder, method, path, status, body)
            else:
                assert status not in (401, 403, 429, 500), (holder, method, path, status, body)


async def test_roles_follow_the_methods_and_tokens_are_kept_out_of_logs_and_audit(
    gateway_factory: Callable[..., Awaitable[RunningGateway]],
) -> None:
    gw = await gateway_factory(CONFIG)
    ops = {(method, path): op for method, path, op in await operations(gw)}
    assert ops[("get", "/api/health")].get("x-public") is True
    assert ops[("get", "/api/devices")]["x-role"] == "viewer"
    assert ops[("get", "/metrics")]["x-role"] == "viewer"
    assert ops[("post", "/api/channels/{channel_id}/play")]["x-role"] == "operator"
    assert ops[("delete", "/api/sessions/{session_id}")]["x-role"] == "operator"
    # An operator's state-changing request is audited under the token's name, the refused ones are not.
    status, _, _ = await status_of(gw.http, gw.api_url, "delete", "/api/sessions/nope", auth(TOKENS["operator"]))
    assert status == 404
    status, _, _ = await status_of(gw.http, gw.api_url, "delete", "/api/sessions/nope2", auth(TOKENS["viewer"]))
    assert status == 403
    status, _, _ = await status_of(gw.http, gw.api_url, "post", f"/api/channels/{MADE_UP_ID}/play",
                                   {"Authorization": f"bearer {WRONG}"})
    assert status == 401
    status, _, body = await status_of(gw.http, gw.api_url, "get", "/api/devices", {"Authorization": WRONG})
    assert status == 401, body  # no scheme: not a bearer token at all
    status, _, _ = await status_of(gw.http, gw.api_url, "get", "/metrics", auth(TOKENS["viewer"]))
    assert status == 200
    gw.gateway.audit.retry()
    audit_text = Path(gw.config.audit.path).read_text(encoding="utf-8")
    lines = [line for line in audit_text.splitlines() if '"api_request"' in line]
    assert len(lines) == 1, lines
    assert '"token_name": "operator-holder"' in lines[0] and "/api/sessions/nope" in lines[0]
    for secret in (*TOKENS.values(), WRONG):
        assert secret not in gw.log_text
        assert secret not in audit_text


async def test_wrong_tokens_from_one_source_are_braked_without_locking_out_others(
    gateway_factory: Callable[..., Awaitable[RunningGateway]],
) -> None:
    gw = await gateway_factory(CONFIG)
    async with client_from("127.0.0.77") as guesser:
        for _ in range(20):
            status, _, _ = await status_of(guesser, gw.api_url, "get", "/api/devices", auth(WRONG))
            assert status == 401
        status, headers, body = await status_of(guesser, gw.api_url, "get", "/api/devices", auth(TOKENS["admin"]))
        assert status == 429, body
        assert int(headers["Retry-After"]) > 0
        # Public routes stay public for everyone.
        status, _, _ = await status_of(guesser, gw.api_url, "get", "/api/health")
        assert status == 200
    status, _, _ = await status_of(gw.http, gw.api_url, "get", "/api/devices", auth(TOKENS["viewer"]))
    assert status == 200
    # Missing tokens are a client's mistake, not a guess: they are counted but never brake.
    for _ in range(25):
        status, _, _ = await status_of(gw.http, gw.api_url, "get", "/api/devices")
        assert status == 401
    async with gw.http.get(gw.api_url + "/metrics", headers=auth(TOKENS["viewer"])) as response:
        assert response.status == 200
        metrics = parse_metrics(await response.text())
    assert metrics['gb_api_auth_failures_total{reason="invalid"}'] == 20
    assert metrics['gb_api_auth_failures_total{reason="rate_limited"}'] == 1
    assert metrics['gb_api_auth_failures_total{reason="missing"}'] == 25


async def test_unknown_routes_and_methods_are_json(gateway_factory: Callable[..., Awaitable[RunningGateway]]) -> None:
    gw = await gateway_factory(CONFIG)
    for headers in ({}, auth(TOKENS["admin"])):
        status, _, body = await status_of(gw.http, gw.api_url, "get", "/api/nothing-here", headers)
        assert status == 404 and body is not None and "error" in body
        status, resp_headers, body = await status_of(gw.http, gw.api_url, "put", "/api/devices", headers)
        assert status == 405 and body is not None and "GET" in resp_headers["Allow"]


async def test_without_tokens_the_loopback_api_needs_none(
    gateway_factory: Callable[..., Awaitable[RunningGateway]],
) -> None:
    gw = await gateway_factory()
    for method, path, _ in await operations(gw):
        status, _, _ = await status_of(gw.http, gw.api_url, method, fill(path))
        assert status not in (401, 403, 429, 500), (method, path, status)


# -- HTTPS ------------------------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    cert, key = tmp_path / "api.crt", tmp_path / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


async def test_https_with_a_test_certificate(
    gateway_factory: Callable[..., Awaitable[RunningGateway]], certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    gw = await gateway_factory({"api": {**CONFIG["api"], "tls": {"cert": str(cert), "key": str(key)}}})
    base = f"https://127.0.0.1:{gw.gateway.api_port}"
    trust = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trust)) as https:
        async with https.get(base + "/api/health") as response:
            assert response.status == 200
        async with https.get(base + "/api/devices", headers=auth(TOKENS["viewer"])) as response:
            assert response.status == 200
            assert await response.json() == []
        async with https.get(base + "/api/devices") as response:
            assert response.status == 401
    # Plain HTTP on the TLS port gets no API answer.
    with pytest.raises(aiohttp.ClientError):
        async with gw.http.get(f"http://127.0.0.1:{gw.gateway.api_port}/api/health") as response:
            await response.read()
            assert response.status != 200
            raise aiohttp.ClientError("answered, but not as the API")


async def test_the_metrics_listener_app_serves_metrics_without_a_token() -> None:
    """What the daemon runs on metrics.listen: /metrics alone, no token, nothing else."""
    async with TestClient(TestServer(make_metrics_app(GatewayMetrics()))) as client:
        response = await client.get("/metrics")
        assert response.status == 200 and "gb_registrations" in await response.text()
        assert (await client.get("/api/devices")).status == 404

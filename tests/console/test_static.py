"""The console's files: public, from the package folder only, with a policy that keeps the page to the
gateway's own origin; the API behind them still needs the token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from access_harness import RunningGateway
from whep_harness import TOKEN_CONFIG

from gbgw.gb28181.app.api import console


async def test_the_console_is_public_and_serves_only_its_own_files(
    console_gateway: Callable[[dict[str, Any]], Awaitable[RunningGateway]],
) -> None:
    gw = await console_gateway(TOKEN_CONFIG)
    async with gw.http.get(gw.api_url + "/") as r:
        assert r.status == 200 and r.content_type == "text/html" and r.charset == "utf-8"
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        page = await r.text()
    assert '<meta charset="utf-8">' in page and "/console/app.js" in page and "/console/app.css" in page
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        async with gw.http.get(f"{gw.api_url}/console/{name}") as r:
            assert r.status == 200 and r.content_type == kind
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/console/nope.js", "/console/..%2Fapi%2Fconsole.py", "/console/%2E%2E/config.py",
                 "/console/../api/console.py"):
        async with gw.http.get(gw.api_url + path) as r:
            assert r.status == 404, path
    # The page is public; what it shows is not.
    assert (await gw.api("/api/devices"))[0] == 401
    assert set(console.FILES) == {"index.html", "app.js", "app.css"}
    # Small enough to read in one sitting: login, tree, channels, live and playback, PTZ and presets, alarms,
    # upstreams, sessions and live events, no library.
    assert sum(len(body) for body, _ in console.FILES.values()) < 28_000

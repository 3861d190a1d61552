"""The upstream link: registration with digest, keepalives, re-registration, who may talk to it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from access_harness import GATEWAY_ID, RunningGateway
from upper_harness import FakeUpper, cascade_rig, upstream_config

from gbgw.gb28181 import manscdp
from gbgw.sip.endpoint import EndpointConfig, SipEndpoint
from gbgw.sip.transport import SipTimeout, SipTransport

Factory = Callable[..., Awaitable[RunningGateway]]


async def test_registers_with_digest_and_keeps_alive(gateway_factory: Factory) -> None:
    async with cascade_rig(gateway_factory, {"keepalive_interval": 5}) as rig:
        upper = rig.upper
        (first,) = upper.registers
        request = first.request
        assert request.uri == f"sip:{upper.id}@3402000000"
        assert GATEWAY_ID in (request.get("From") or "")
        assert request.get("Authorization")
        # It registered from its police-side listen address, not the device-side one.
        link = rig.gateway.gateway.cascade.links["district"]
        assert (first.source.host, first.source.port) == (link.config.listen.host, link.config.listen.port)
        assert link.online
        keepalives = await upper.wait(lambda: upper.documents("Notify", "Keepalive"), 8, "a keepalive")
        assert keepalives[0].device_id == GATEWAY_ID
        assert await rig.gateway.metric("gb_upstream_online", upstream="district") == 1


async def test_wrong_password_is_reported_and_retried(gateway_factory: Factory, tmp_path: Path) -> None:
    upper = await FakeUpper().start()
    try:
        gateway = await gateway_factory({"upstreams": [upstream_config(upper, password="not-the-password")]})
        link = gateway.gateway.cascade.links["district"]
        await upper.wait(lambda: len([r for r in upper.requests if r.request.method == "REGISTER"]) >= 2, 5,
                         "a REGISTER answering the challenge")
        await gateway.wait_for(lambda: _async("wrong password" in link.reason), 5, "the failure reason")
        assert not link.online and not upper.registered.is_set()
        assert "not-the-password" not in gateway.log_text
    finally:
        await upper.close()


async def test_keepalive_refused_makes_it_register_again(gateway_factory: Factory) -> None:
    async with cascade_rig(gateway_factory, {"keepalive_interval": 5}) as rig:
        upper = rig.upper
        upper.message_status = 403  # the upper restarted and forgot us
        await upper.wait(lambda: len(upper.registers) >= 2, 10, "a second registration")
        upper.message_status = 200
        link = rig.gateway.gateway.cascade.links["district"]
        await rig.gateway.wait_for(lambda: _async(link.online), 5, "the link back online")


async def test_requests_from_other_addresses_are_ignored(gateway_factory: Factory) -> None:
    async with cascade_rig(gateway_factory) as rig:
        link = rig.gateway.gateway.cascade.links["district"]
        # Another host on the police network (127.0.0.2 stands in for it) asks for the catalog.
        intruder = SipTransport(SipEndpoint(EndpointConfig()), lambda txn: None)
        await intruder.start("127.0.0.2", 0)
        try:
            upper = rig.upper
            request = upper.request("MESSAGE", body=manscdp.encode_body(manscdp.query_catalog(7, GATEWAY_ID)),
                                    content_type="Application/MANSCDP+xml")
            request.set("Via", intruder.via("UDP"))
            future = intruder.send_request(request, upper.gateway)  # type: ignore[arg-type]
            try:
                await asyncio.wait_for(future, 2)
                raise AssertionError("the gateway answered a host that is not its upper")
            except (TimeoutError, SipTimeout):
                pass
            assert link.transport is not None and link.transport.refused_sources >= 1
            assert await rig.gateway.metric("gb_boundary_drops_total", side="district", reason="source") >= 1
        finally:
            await intruder.close()


async def test_registration_is_audited(gateway_factory: Factory, tmp_path: Path) -> None:
    async with cascade_rig(gateway_factory) as rig:
        path = Path(rig.gateway.config.audit.path)
        await rig.gateway.wait_for(lambda: _async("upstream-register" in path.read_text()), 5, "the audit record")
        records = [json.loads(line) for line in path.read_text().splitlines()]
        (record,) = [r for r in records if r["action"] == "upstream-register"]
        assert record["upstream"] == "district" and record["result"] == "ok" and record["ts"]
        assert rig.upper.password not in path.read_text()


async def _async(value: Any) -> Any:
    return value


async def test_upper_subscription_dialog(gateway_factory: Factory) -> None:
    """A SUBSCRIBE from the upper makes a dialog: 200 with a To-tag and Expires, NOTIFYs inside it,
    refresh in the dialog, Expires 0 ends it."""
    async with cascade_rig(gateway_factory) as rig:
        link = rig.gateway.gateway.cascade.links["district"]
        seen: list[int | None] = []
        link.handle_subscribe("MobilePosition", lambda sub: seen.append(sub.sn))
        upper = rig.upper
        body = manscdp.encode_body(manscdp.query_mobile_position(31, GATEWAY_ID, interval=5))
        request = upper.request("SUBSCRIBE", body=body, content_type="Application/MANSCDP+xml",
                                headers=[("Event", "presence"), ("Expires", "120")])
        response = await upper.send(request)
        assert response.status == 200 and response.to.tag and response.get("Expires") == "120"
        assert seen == [31]
        sub = link.subscription("MobilePosition")
        assert sub is not None
        await sub.notify(manscdp.notify_keepalive(31, GATEWAY_ID))
        (notify,) = [r for r in upper.requests if r.request.method == "NOTIFY"]
        assert notify.request.call_id == request.call_id
        assert notify.request.get("Event") == "presence"
        assert (notify.request.get("Subscription-State") or "").startswith("active;expires=")
        # An unknown dialog is refused; Expires 0 in the dialog ends the subscription.
        stray = upper.request("SUBSCRIBE", body=body, content_type="Application/MANSCDP+xml",
                              headers=[("Expires", "0")])
        stray.set("To", f"{stray.get('To')};tag=nosuch")
        assert (await upper.send(stray)).status == 481
        end = upper.request("SUBSCRIBE", body=body, content_type="Application/MANSCDP+xml",
                            headers=[("Expires", "0")])
        end.set("Call-ID", request.call_id or "")
        end.set("From", request.get("From") or "")
        end.set("To", f"{request.get('To')};tag={response.to.tag}")
        end.set("CSeq", "2 SUBSCRIBE")
        assert (await upper.send(end)).status == 200
        assert link.subscription("MobilePosition") is None


async def test_api_shows_the_upstream_without_its_password(gateway_factory: Factory) -> None:
    async with cascade_rig(gateway_factory, {"share": [{"prefix": "3402", "type": "131"}]}) as rig:
        await rig.add_cameras(count=1, channels=3)
        status, upstreams = await rig.gateway.api("/api/upstreams")
        assert status == 200
        (up,) = upstreams
        assert up["name"] == "district" and up["online"] is True and up["id"] == rig.upper.id
        assert up["shared_channels"] == 3 and 0 < up["registration_expires_in"] <= 3600
        assert rig.upper.password not in json.dumps(upstreams)
        status, one = await rig.gateway.api("/api/upstreams/district")
        assert status == 200 and one["listen"] == up["listen"]
        status, _ = await rig.gateway.api("/api/upstreams/nosuch")
        assert status == 404
        assert up["sessions"] == 0 and up["invites"] == {}
        assert await rig.gateway.api("/api/upstreams/district/sessions") == (200, [])
        assert (await rig.gateway.api("/api/upstreams/nosuch/sessions"))[0] == 404

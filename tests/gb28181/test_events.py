"""Live events: ``GET /api/events`` read as a plain Server-Sent Events client (lines, not the product's
types), and webhooks delivered to a receiver that is down at first."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from access_harness import PASSWORD, RunningGateway
from aiohttp import web

from gbgw.conformance.simulator.config import SimulatorConfig
from gbgw.conformance.simulator.devices import DeviceSimulator
from gbgw.gb28181.config import ConfigError, load_config
from gbgw.gb28181.observe.event_types import EventType
from gbgw.gb28181.observe.events import EventBus, Overflow


@asynccontextmanager
async def sse(gateway: RunningGateway, query: str = "") -> AsyncIterator[list[dict[str, Any]]]:
    """The events the stream delivers, appended as they arrive (each with its ``event:`` and ``id:``)."""
    events: list[dict[str, Any]] = []
    async with gateway.http.get(f"{gateway.api_url}/api/events{query}") as response:
        assert response.status == 200 and response.content_type == "text/event-stream"

        async def read() -> None:
            fields: dict[str, str] = {}
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if not line:
                    if "data" in fields:
                        events.append({**json.loads(fields["data"]), "_event": fields["event"],
                                       "_id": int(fields["id"])})
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value

        reader = asyncio.get_running_loop().create_task(read())
        await asyncio.sleep(0.05)
        try:
            yield events
        finally:
            reader.cancel()


def simulator(gateway: RunningGateway, **options: Any) -> DeviceSimulator:
    return DeviceSimulator(SimulatorConfig(server_host="127.0.0.1", server_port=gateway.sip_port,
                                           password=PASSWORD, channels=1, **options))


async def test_a_client_sees_online_alarm_offline_in_order(
        gateway_factory: Callable[..., Awaitable[RunningGateway]]) -> None:
    gateway = await gateway_factory({"sip": {"alarm_subscribe": True}})
    async with sse(gateway) as events:
        sim = simulator(gateway)
        device = ""  # known once the simulator started

        def seen(kind: str) -> bool:
            return any(e["_event"] == kind and e.get("device_id") == device for e in events)

        await sim.start()
        device = sim.device_id(0)
        try:
            await sim.wait_registered(timeout=5)

            async def subscribed() -> bool:
                return (device, "Alarm") in sim.event_subscriptions

            await gateway.wait_for(subscribed, 5, "the alarm subscription")
            assert await sim.notify_alarm(0, description="周界入侵") is not None

            async def alarmed() -> bool:
                return seen("alarm")

            # A NOTIFY's alarm is stored after its 200 is sent: the device goes away only once it is.
            await gateway.wait_for(alarmed, 5, "the alarm event")
        finally:
            await sim.stop()

        async def offline() -> bool:
            return seen("device.offline")

        await gateway.wait_for(offline, 5, "the offline event")
    mine = [e for e in events if e.get("device_id") == device]
    kinds = [e["_event"] for e in mine if e["_event"] in ("device.online", "alarm", "device.offline")]
    assert kinds == ["device.online", "alarm", "device.offline"]
    alarm = next(e for e in mine if e["_event"] == "alarm")
    assert alarm["description"] == "周界入侵" and alarm["type"] == "alarm"
    assert any(e["_event"] == "catalog.changed" and e["change"] == "ADD" for e in mine)
    ids = [e["_id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_refused_registrations_and_sessions_are_events(
        gateway_factory: Callable[..., Awaitable[RunningGateway]]) -> None:
    gateway = await gateway_factory({"sip": {"allowlist": True}})
    async with sse(gateway, "?types=registration.failed") as events:
        sim = simulator(gateway, id_prefix="3402000000132")
        await sim.start()
        try:
            async def refused() -> bool:
                return any(e["_event"] == "registration.failed" for e in events)

            await gateway.wait_for(refused, 5, "the refusal event")
        finally:
            await sim.stop(unregister=False, timeout=1)
    failure = events[0]
    assert failure["device_id"] == sim.device_id(0) and failure["status"] == 403
    assert failure["source"].startswith("127.0.0.1:")
    assert {e["_event"] for e in events} == {"registration.failed"}


def test_a_slow_subscriber_is_dropped_with_a_final_event() -> None:
    bus = EventBus(lambda: 0.0)
    slow = bus.subscribe(size=2)
    webhook = bus.subscribe(size=2, overflow=Overflow.DROP_OLDEST)
    for n in range(3):
        bus.publish(EventType.ALARM, n=n)
    assert bus.subscribers == 1 and slow.closed and webhook.lost == 1

    async def drain() -> list[Any]:
        return [await slow.next(), await slow.next(), await slow.next(), await slow.next()]

    got = asyncio.run(drain())
    assert [e.data.get("n") for e in got[:2]] == [0, 1]
    assert got[2].type is EventType.STREAM_DROPPED and got[3] is None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_webhook_delivered_once_the_receiver_is_up(
        gateway_factory: Callable[..., Awaitable[RunningGateway]]) -> None:
    port = _free_port()
    gateway = await gateway_factory({"events": {"webhooks": [
        {"url": f"http://127.0.0.1:{port}/hook", "events": ["device.online", "device.offline"]}]}})
    sim = simulator(gateway)
    await sim.start()
    await sim.wait_registered(timeout=5)
    await sim.stop()
    await asyncio.sleep(1.0)  # the receiver is down: each POST fails and is retried

    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async def both() -> bool:
            return len(received) >= 2

        await gateway.wait_for(both, 10, "the queued events at the webhook")
    finally:
        await runner.cleanup()
    assert [(e["type"], e["device_id"]) for e in received] == [
        ("device.online", sim.device_id(0)), ("device.offline", sim.device_id(0))]
    assert received[0]["seq"] < received[1]["seq"]


def test_webhook_urls_follow_the_media_destination_rule() -> None:
    with pytest.raises(ConfigError, match=r"api\.media_destinations"):
        load_config({"events": {"webhooks": [{"url": "http://10.1.2.3/hook"}]}})
    with pytest.raises(ConfigError, match="IP address"):
        load_config({"events": {"webhooks": [{"url": "http://receiver.example/hook"}]}})
    with pytest.raises(ConfigError, match="event types"):
        load_config({"events": {"webhooks": [{"url": "http://127.0.0.1/hook", "events": ["everything"]}]}})
    config = load_config({"api": {"media_destinations": ["10.1.0.0/16"]},
                          "events": {"webhooks": [{"url": "http://10.1.2.3:8000/hook", "events": ["alarm"]}]}})
    assert config.events.webhooks[0].events == frozenset({EventType.ALARM})

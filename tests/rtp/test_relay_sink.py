"""The in-process relay output (`Ingest.add_sink`): fed over real loopback UDP, it starts on the cached
GOP like a socket output, is counted like one, and hears when its ingest stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from test_relay import HOST, PORTS, Device, ps_frames, until  # type: ignore[import-not-found]

from gbgw.rtp.packet import RtpPacket
from gbgw.rtp.relay import IngestConfig, OutputState, RelayEngine, RelayOutput, StopReason


@pytest.fixture
async def engine() -> AsyncIterator[RelayEngine]:
    relay = RelayEngine(asyncio.get_running_loop(), bind_host=HOST, ports=PORTS)
    yield relay
    relay.close()
    assert relay.ports.leased == 0


async def test_sink_starts_on_the_cached_gop_then_gets_live_packets(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    frames = ps_frames([True, False, False, True, False, False])
    device = Device(ingest)
    for frame in frames[:5]:
        device.send(*frame)
    await until(lambda: ingest.stats.packets == sum(map(len, frames[:5])))
    got: list[RtpPacket] = []
    output = ingest.add_sink(lambda packet: got.append(RtpPacket.parse(bytes(packet))), ssrc=7, seq_base=10)
    assert output.transport is None and output.state is OutputState.LIVE
    assert output.stats.transport == "in-process" and output.local_port == 0
    assert output.stats.gop_packets == len(frames[3]) + len(frames[4])
    device.send(*frames[5])
    expected = [RtpPacket.parse(p) for p in frames[3] + frames[4] + frames[5]]
    await until(lambda: len(got) == len(expected))
    assert [bytes(p.payload) for p in got] == [bytes(p.payload) for p in expected]
    assert [p.timestamp for p in got] == [p.timestamp for p in expected]
    assert [p.sequence for p in got] == list(range(10, 10 + len(expected)))
    assert {p.ssrc for p in got} == {7}
    stats = output.stats
    assert stats.packets == len(expected) and stats.bytes == sum(
        len(p) for p in frames[3] + frames[4] + frames[5]
    )
    assert ingest.stats.outputs == 1
    device.close()


async def test_a_failing_sink_is_counted_and_does_not_stop_the_other_outputs(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))

    def broken(packet: memoryview) -> None:
        raise RuntimeError("consumer bug")

    good: list[bytes] = []
    bad = ingest.add_sink(broken)
    ingest.add_sink(lambda packet: good.append(bytes(packet)))
    frames = ps_frames([True, False])
    device = Device(ingest)
    for frame in frames:
        device.send(*frame)
    total = sum(map(len, frames))
    await until(lambda: len(good) == total)
    assert bad.send_errors == total and bad.sent == 0
    device.close()


async def test_removing_the_sink_starts_the_idle_timer_and_stopping_the_ingest_tells_it(
    engine: RelayEngine,
) -> None:
    stopped: list[StopReason] = []
    ingest = engine.open_ingest(
        IngestConfig(device_host=HOST, idle_timeout=0.05), on_stop=lambda _i, reason: stopped.append(reason)
    )
    output = ingest.add_sink(lambda packet: None)
    ingest.remove_output(output)
    assert output.state is OutputState.CLOSED and not ingest.outputs
    await until(lambda: ingest.closed)
    assert stopped == [StopReason.IDLE]

    ended: list[tuple[RelayOutput, StopReason]] = []
    second = engine.open_ingest(IngestConfig(device_host=HOST, first_packet_timeout=0.05))
    sink = second.add_sink(lambda packet: None, on_close=lambda out, reason: ended.append((out, reason)))
    await until(lambda: second.closed)
    assert ended == [(sink, StopReason.NO_MEDIA)]

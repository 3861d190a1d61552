"""The relay engine over real loopback sockets: UDP and TCP in and out, checks, GOP cache, timeouts, RTCP.

Each test plays the device with plain sockets and reads what the receivers get, so what is checked is the
bytes on the wire: payloads byte for byte, the output's own SSRC and sequence numbers, and the ingest's
counters for what it kept out. Timeouts are short (tens of milliseconds) to keep the file fast.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gbgw.rtp.elementary import StreamType
from gbgw.rtp.framing import Rfc4571Deframer
from gbgw.rtp.packet import (
    Bye,
    ReceiverReport,
    RtpPacket,
    SenderReport,
    SourceDescription,
    parse_rtcp,
    serialize_rtcp,
)
from gbgw.rtp.packetizer import PsRtpPacketizer
from gbgw.rtp.ports import PortRange, PortRangeExhausted
from gbgw.rtp.ps import PsMuxer
from gbgw.rtp.relay import (
    Ingest,
    IngestConfig,
    MediaTransport,
    OutputState,
    RelayEngine,
    RelayOutput,
    StopReason,
)

HOST = "127.0.0.1"
PORTS = "46000-46399"
DEVICE_SSRC = 0x0A0B0C0D


def rtp(seq: int, payload: bytes, *, ts: int = 3600, ssrc: int = DEVICE_SSRC, marker: bool = False) -> bytes:
    return RtpPacket(96, seq & 0xFFFF, ts, ssrc, payload, marker).serialize()


def udp_socket(host: str = HOST) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


async def receive(sock: socket.socket, count: int, timeout: float = 2.0) -> list[RtpPacket]:
    """The next ``count`` datagrams on ``sock`` as parsed RTP packets (payloads copied)."""
    loop = asyncio.get_running_loop()
    out: list[RtpPacket] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            packet = RtpPacket.parse(await loop.sock_recv(sock, 65536))
            packet.payload = bytes(packet.payload)
            out.append(packet)
    return out


async def nothing_more(sock: socket.socket, wait: float = 0.05) -> None:
    await asyncio.sleep(wait)
    with pytest.raises(BlockingIOError):
        sock.recv(65536)


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.002)


def continuous(packets: list[RtpPacket], first: int) -> bool:
    return [p.sequence for p in packets] == [(first + i) & 0xFFFF for i in range(len(packets))]


@pytest.fixture
async def engine() -> AsyncIterator[RelayEngine]:
    relay = RelayEngine(asyncio.get_running_loop(), bind_host=HOST, ports=PORTS)
    yield relay
    relay.close()
    assert relay.ports.leased == 0


class Device:
    """A camera sending RTP to an ingest over UDP from its own socket."""

    def __init__(self, ingest: Ingest, host: str = HOST) -> None:
        self.sock = udp_socket(host)
        self.target = (HOST, ingest.local_port)

    def send(self, *packets: bytes) -> None:
        for packet in packets:
            self.sock.sendto(packet, self.target)

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------------------------- ports


def test_port_range_leases_even_pairs_and_reports_exhaustion() -> None:
    ports = PortRange("46401-46406")  # odd low bound: pairs 46402/3, 46404/5 (46406 has no odd partner)
    assert ports.capacity == 2
    first = ports.lease_udp(HOST)
    second = ports.lease_udp(HOST)
    assert {first.port, second.port} == {46402, 46404}
    assert [s.getsockname()[1] for s in first.sockets] == [first.port, first.port + 1]
    with pytest.raises(PortRangeExhausted, match="46401-46406"):
        ports.lease_udp(HOST)
    first.release()
    first.release()
    assert ports.leased == 1
    third = ports.lease_tcp(HOST)
    assert third.port == first.port and third.sockets[0].type == socket.SOCK_STREAM
    second.release()
    third.release()
    assert ports.leased == 0


def test_port_range_skips_ports_bound_elsewhere() -> None:
    ports = PortRange((46410, 46413))
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((HOST, 46411))  # the RTCP half of the first pair
    try:
        lease = ports.lease_udp(HOST)
        assert lease.port == 46412
        with pytest.raises(PortRangeExhausted, match="1 bound by other sockets"):
            ports.lease_udp(HOST)
        lease.release()
    finally:
        squatter.close()


@pytest.mark.parametrize("spec", ["30000", "30001-30001", "80-90", "30000-70000", "a-b"])
def test_port_range_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        PortRange(spec)


# --------------------------------------------------------------------------------------------- UDP


async def test_udp_to_two_outputs_rewrites_ssrc_and_numbers_each_output(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    sink_a, sink_b = udp_socket(), udp_socket()
    out_a = ingest.add_output(MediaTransport.UDP, *sink_a.getsockname(), ssrc=0x11111111, seq_base=100)
    out_b = ingest.add_output(MediaTransport.UDP, *sink_b.getsockname(), ssrc=0x22222222, seq_base=65534)
    assert out_a.local_port != out_b.local_port != ingest.local_port
    device = Device(ingest)
    # Input numbering wraps; payload sizes vary so that runs of equal-size packets alternate with others.
    sent = [rtp(65530 + i, bytes([i]) * (200 if i % 3 else 57 + i), ts=90_000 + 3600 * (i // 4), marker=i % 4 == 3)
            for i in range(12)]
    device.send(*sent)
    got_a, got_b = await receive(sink_a, 12), await receive(sink_b, 12)
    originals = [RtpPacket.parse(p) for p in sent]
    for got, ssrc, base in ((got_a, 0x11111111, 100), (got_b, 0x22222222, 65534)):
        assert [bytes(p.payload) for p in got] == [bytes(p.payload) for p in originals]
        assert {p.ssrc for p in got} == {ssrc}
        assert continuous(got, base)
        assert [(p.timestamp, p.marker, p.payload_type) for p in got] == [
            (p.timestamp, p.marker, p.payload_type) for p in originals
        ]
    assert out_a.next_seq == 112 and out_b.next_seq == (65534 + 12) & 0xFFFF
    stats = ingest.stats
    assert (stats.packets, stats.bytes, stats.lost, stats.ssrc) == (12, sum(map(len, sent)), 0, DEVICE_SSRC)
    assert stats.device == f"{HOST}:{device.sock.getsockname()[1]}"
    assert out_a.stats.packets == 12 and out_a.stats.bytes == sum(map(len, sent))
    device.close()


async def test_input_loss_and_jumps_count_in_stats_not_as_output_gaps(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=5, seq_base=0)
    device = Device(ingest)
    seqs = [1, 2, 3, 6, 7, 40_000, 40_001, 40_002]  # 4 and 5 lost; then the device restarts numbering
    device.send(*(rtp(s, b"p%d" % s) for s in seqs))
    got = await receive(sink, len(seqs))
    assert [p.payload for p in got] == [b"p%d" % s for s in seqs]
    assert continuous(got, 0)
    stats = ingest.stats
    assert (stats.lost, stats.sequence_resets, stats.reordered, stats.duplicates) == (2, 1, 0, 0)
    device.close()


async def test_late_and_duplicate_packets_are_counted_and_kept_from_outputs(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=5, seq_base=9)
    device = Device(ingest)
    device.send(*(rtp(s, b"p%d" % s) for s in [10, 11, 13, 12, 14, 14, 15]))
    got = await receive(sink, 5)
    # 12 came after 13: with continuous output numbering it could not be put back, so it is dropped.
    assert [p.payload for p in got] == [b"p10", b"p11", b"p13", b"p14", b"p15"]
    assert continuous(got, 9)
    await nothing_more(sink)
    stats = ingest.stats
    assert (stats.lost, stats.reordered, stats.duplicates) == (0, 1, 1)
    assert stats.dropped == {"late": 1, "duplicate": 1}
    device.close()


async def test_reorder_window_puts_packets_back_in_order(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST, reorder_capacity=8, reorder_delay=0.03))
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=5, seq_base=0)
    device = Device(ingest)
    device.send(*(rtp(s, b"p%d" % s) for s in [1, 2, 4, 3, 5, 5, 8, 6]))  # 7 never comes
    got = await receive(sink, 7)
    assert [p.payload for p in got] == [b"p%d" % s for s in (1, 2, 3, 4, 5, 6, 8)]
    assert continuous(got, 0)
    stats = ingest.stats
    assert (stats.reordered, stats.duplicates, stats.lost) == (2, 1, 1)
    device.close()


@settings(max_examples=15, deadline=None)
@given(
    lost=st.sets(st.integers(1, 58), max_size=20),
    first=st.integers(0, 0xFFFF),
    base=st.integers(0, 0xFFFF),
)
def test_any_loss_pattern_reaches_outputs_in_order_and_is_counted(lost: set[int], first: int, base: int) -> None:
    async def scenario() -> None:
        relay = RelayEngine(asyncio.get_running_loop(), bind_host=HOST, ports=PORTS)
        ingest = relay.open_ingest(IngestConfig(device_host=HOST, gop_cache_bytes=0))
        sink = udp_socket()
        ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=9, seq_base=base)
        device = Device(ingest)
        kept = [i for i in range(60) if i not in lost]
        device.send(*(rtp(first + i, i.to_bytes(2, "big") * 50) for i in kept))
        got = await receive(sink, len(kept))
        assert [int.from_bytes(p.payload[:2], "big") for p in got] == kept
        assert continuous(got, base)
        assert ingest.stats.lost == len(lost)
        device.close()
        sink.close()
        relay.close()

    asyncio.run(scenario())


# ------------------------------------------------------------------------------- what is kept out


async def test_foreign_sources_garbage_and_rtcp_never_reach_outputs(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=5, seq_base=0)
    device = Device(ingest)
    stranger_host = Device(ingest, host="127.0.0.2")  # another host on the loopback network
    stranger_host.send(rtp(1, b"from another host"))  # before the device: must not latch either
    device.send(rtp(1, b"one"))
    await receive(sink, 1)
    stranger_port = Device(ingest)  # the device's host, another port
    stranger_port.send(rtp(2, b"from another port"))
    stranger_host.send(rtp(2, b"from another host"))
    device.send(b"not rtp at all", b"\x80")
    device.send(serialize_rtcp([ReceiverReport(DEVICE_SSRC)]))  # RTCP multiplexed on the RTP port
    device.send(rtp(2, b"two"))
    got = await receive(sink, 1)
    assert got[0].payload == b"two"
    await nothing_more(sink)
    stats = ingest.stats
    assert stats.packets == 2 and stats.rtcp_packets == 1
    # After the latch the kernel filters other sources (the socket is connected): only the first counts.
    assert stats.dropped == {"foreign source": 1, "not rtp": 2}
    assert stats.device == f"{HOST}:{device.sock.getsockname()[1]}"
    for sock in (device, stranger_host, stranger_port):
        sock.close()


async def test_known_device_port_is_enforced_from_the_start(engine: RelayEngine) -> None:
    device_sock = udp_socket()
    port = device_sock.getsockname()[1]
    ingest = engine.open_ingest(IngestConfig(device_host=HOST, device_port=port))
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=5, seq_base=0)
    other = Device(ingest)
    other.send(rtp(1, b"wrong port"))
    device_sock.sendto(rtp(1, b"right port"), (HOST, ingest.local_port))
    got = await receive(sink, 1)
    assert got[0].payload == b"right port"
    await nothing_more(sink)
    device_sock.close()
    other.close()


async def test_ssrc_check_drops_other_ssrcs(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST, ssrc=DEVICE_SSRC, check_ssrc=True))
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=5, seq_base=0)
    device = Device(ingest)
    device.send(rtp(1, b"old stream", ssrc=1234), rtp(1, b"a"), rtp(0, b"zero", ssrc=0), rtp(2, b"b"))
    got = await receive(sink, 2)
    assert [p.payload for p in got] == [b"a", b"b"]
    await nothing_more(sink)
    assert ingest.stats.dropped == {"wrong ssrc": 2}
    assert ingest.stats.lost == 0
    device.close()


async def test_without_ssrc_check_the_first_ssrc_is_latched_and_changes_followed(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST, ssrc=DEVICE_SSRC, check_ssrc=False))
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=0x33, seq_base=0)
    device = Device(ingest)
    device.send(rtp(100, b"a", ssrc=0), rtp(101, b"b", ssrc=0))  # ignores y= and sends SSRC 0
    await receive(sink, 2)
    assert ingest.ssrc == 0
    device.send(rtp(7, b"c", ssrc=77), rtp(8, b"d", ssrc=77))  # restarted with a new SSRC and numbering
    got = await receive(sink, 2)
    assert [p.payload for p in got] == [b"c", b"d"] and {p.ssrc for p in got} == {0x33}
    assert continuous(got, 2)
    stats = ingest.stats
    assert (stats.ssrc, stats.ssrc_changes, stats.lost, stats.sequence_resets) == (77, 1, 0, 0)
    device.close()


# --------------------------------------------------------------------------------------------- GOP


def ps_frames(keyframes: list[bool], first_seq: int = 1000) -> list[list[bytes]]:
    """A PS-over-RTP stream the way a camera sends it: one pack per frame, system header and stream map
    on keyframes, cut into RTP packets of at most 500 bytes."""
    muxer = PsMuxer(StreamType.H264)
    packetizer = PsRtpPacketizer(DEVICE_SSRC, 96, 500, first_seq)
    frames = []
    for index, key in enumerate(keyframes):
        if key:
            unit = b"\x00\x00\x00\x01\x67\x42\x00\x1e" + b"\x00\x00\x00\x01\x65" + bytes([index]) * 1500
        else:
            unit = b"\x00\x00\x00\x01\x41" + bytes([index]) * (300 + 50 * index)
        ps = muxer.mux_video(unit, 3600 * index, keyframe=key)
        frames.append(packetizer.packetize(ps, 3600 * index))
    return frames


async def test_new_output_starts_with_the_last_gop_then_live(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    sink_a, sink_b = udp_socket(), udp_socket()
    out_a = ingest.add_output(MediaTransport.UDP, *sink_a.getsockname(), ssrc=0xA, seq_base=0)
    frames = ps_frames([True, False, False, True, False, False])
    device = Device(ingest)
    for frame in frames[:5]:
        device.send(*frame)
    await receive(sink_a, sum(map(len, frames[:5])))
    assert ingest.stats.keyframes == 2
    assert ingest.stats.gop_packets == len(frames[3]) + len(frames[4])
    out_b = ingest.add_output(MediaTransport.UDP, *sink_b.getsockname(), ssrc=0xB, seq_base=500)
    assert out_b.stats.gop_packets == len(frames[3]) + len(frames[4])
    device.send(*frames[5])
    expected = [RtpPacket.parse(p) for p in frames[3] + frames[4] + frames[5]]
    got = await receive(sink_b, len(expected))
    assert [p.payload for p in got] == [bytes(p.payload) for p in expected]
    assert [(p.timestamp, p.marker) for p in got] == [(p.timestamp, p.marker) for p in expected]
    assert {p.ssrc for p in got} == {0xB} and continuous(got, 500)
    # The first output's stream went on unaffected by the replay.
    got_a = await receive(sink_a, len(frames[5]))
    assert [p.payload for p in got_a] == [bytes(RtpPacket.parse(p).payload) for p in frames[5]]
    assert continuous(got_a, out_a.next_seq - len(frames[5])) and out_a.next_seq == sum(map(len, frames))
    device.close()


async def test_gop_larger_than_the_cache_is_not_replayed(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST, gop_cache_bytes=2000))
    frames = ps_frames([True, False])
    device = Device(ingest)
    for frame in frames:
        device.send(*frame)
    await until(lambda: ingest.stats.packets == sum(map(len, frames)))
    stats = ingest.stats
    assert stats.keyframes == 1 and stats.gop_overflows == 1 and stats.gop_packets == 0
    sink = udp_socket()
    output = ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=1, seq_base=0)
    assert output.stats.gop_packets == 0
    await nothing_more(sink)
    device.close()


# ------------------------------------------------------------------------------- outputs come and go


async def test_an_output_leaving_does_not_disturb_the_other(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    sink_a, sink_b = udp_socket(), udp_socket()
    out_a = ingest.add_output(MediaTransport.UDP, *sink_a.getsockname(), ssrc=1, seq_base=7)
    out_b = ingest.add_output(MediaTransport.UDP, *sink_b.getsockname(), ssrc=2, seq_base=0)
    device = Device(ingest)
    device.send(*(rtp(s, b"x%d" % s) for s in range(5)))
    await receive(sink_a, 5)
    await receive(sink_b, 5)
    ingest.remove_output(out_b)
    assert out_b.state is OutputState.CLOSED and ingest.outputs == [out_a]
    device.send(*(rtp(s, b"x%d" % s) for s in range(5, 10)))
    got = await receive(sink_a, 5)
    assert [p.payload for p in got] == [b"x%d" % s for s in range(5, 10)]
    assert continuous(got, 12)
    await nothing_more(sink_b)
    device.close()


async def test_last_output_leaving_tears_the_ingest_down_after_the_idle_timeout(engine: RelayEngine) -> None:
    stops: list[tuple[Ingest, StopReason]] = []
    ingest = engine.open_ingest(
        IngestConfig(device_host=HOST, idle_timeout=0.15), on_stop=lambda i, r: stops.append((i, r))
    )
    sink = udp_socket()
    first = ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=1)
    ingest.remove_output(first)
    await asyncio.sleep(0.03)
    second = ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=1)  # cancels the timer
    await asyncio.sleep(0.2)
    assert not stops and not ingest.closed
    ingest.remove_output(second)
    await until(lambda: bool(stops))
    assert stops == [(ingest, StopReason.IDLE)] and ingest.closed
    assert engine.ingests == [] and engine.ports.leased == 0


async def test_idle_timeout_zero_tears_down_at_once(engine: RelayEngine) -> None:
    stops: list[StopReason] = []
    ingest = engine.open_ingest(IngestConfig(idle_timeout=0), on_stop=lambda i, r: stops.append(r))
    sink = udp_socket()
    ingest.remove_output(ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=1))
    await asyncio.sleep(0.01)
    assert stops == [StopReason.IDLE]


# --------------------------------------------------------------------------------------------- timeouts


async def test_media_timeout_after_packets_stop(engine: RelayEngine) -> None:
    stops: list[StopReason] = []
    ingest = engine.open_ingest(
        IngestConfig(device_host=HOST, media_timeout=0.25, first_packet_timeout=5),
        on_stop=lambda i, r: stops.append(r),
    )
    sink = udp_socket()
    output = ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=1)
    closed: list[StopReason] = []
    output.on_close = lambda o, r: closed.append(r)
    device = Device(ingest)
    for seq in range(10):
        device.send(rtp(seq, b"x"))
        await asyncio.sleep(0.03)  # keeps it alive past the timeout while packets flow
    assert not stops
    await until(lambda: bool(stops), timeout=1)
    assert stops == [StopReason.MEDIA_TIMEOUT] and ingest.stop_detail == "no RTP from the device for 0.25 s"
    assert closed == [StopReason.MEDIA_TIMEOUT] and output.state is OutputState.CLOSED
    device.close()


async def test_no_media_after_start_is_its_own_reason(engine: RelayEngine) -> None:
    stops: list[StopReason] = []
    ingest = engine.open_ingest(
        IngestConfig(device_host=HOST, media_timeout=5, first_packet_timeout=0.2),
        on_stop=lambda i, r: stops.append(r),
    )
    await asyncio.sleep(0.12)
    await ingest.start(host=HOST, port=9)  # the answer restarts the clock
    await asyncio.sleep(0.1)
    assert not stops
    await until(lambda: bool(stops), timeout=1)
    assert stops == [StopReason.NO_MEDIA]
    assert "within 0.2 s of start" in ingest.stop_detail


async def test_explicit_close_sends_no_callbacks(engine: RelayEngine) -> None:
    calls: list[Any] = []
    ingest = engine.open_ingest(IngestConfig(media_timeout=0.05), on_stop=lambda *a: calls.append(a))
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=1, on_close=lambda *a: calls.append(a))
    ingest.close()
    await asyncio.sleep(0.1)
    assert calls == [] and ingest.stop_reason is StopReason.CLOSED and engine.ports.leased == 0
    with pytest.raises(RuntimeError):
        ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=1)


# --------------------------------------------------------------------------------------------- TCP out


async def read_frames(reader: asyncio.StreamReader, count: int, timeout: float = 2.0) -> list[RtpPacket]:
    deframer = Rfc4571Deframer()
    out: list[RtpPacket] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            data = await reader.read(65536)
            assert data, "connection closed early"
            out += [RtpPacket.parse(p) for p in deframer.feed(data)]
    assert deframer.stats.resyncs == 0
    for packet in out:
        packet.payload = bytes(packet.payload)
    return out


async def test_tcp_passive_output_starts_when_the_receiver_connects(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    output = ingest.add_output(MediaTransport.TCP_PASSIVE, ssrc=0xC, seq_base=65535)
    assert output.state is OutputState.WAITING
    frames = ps_frames([True, False, False])
    device = Device(ingest)
    device.send(*frames[0], *frames[1])
    await until(lambda: ingest.stats.packets == len(frames[0]) + len(frames[1]))
    assert output.stats.packets == 0
    reader, writer = await asyncio.open_connection(HOST, output.local_port)
    await until(lambda: output.state is OutputState.LIVE)
    assert output.receiver == f"{HOST}:{writer.get_extra_info('sockname')[1]}"
    device.send(*frames[2])
    expected = [RtpPacket.parse(p) for frame in frames for p in frame]
    got = await read_frames(reader, len(expected))
    assert [p.payload for p in got] == [bytes(p.payload) for p in expected]
    assert {p.ssrc for p in got} == {0xC} and continuous(got, 65535)
    closed: list[StopReason] = []
    output.on_close = lambda o, r: closed.append(r)
    writer.close()
    await until(lambda: bool(closed))
    assert closed == [StopReason.RECEIVER_CLOSED] and ingest.outputs == []
    device.close()


async def test_slow_tcp_receiver_loses_whole_packets_and_no_sequence_numbers(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(device_host=HOST, max_pending=32 << 10, gop_cache_bytes=0))
    output = ingest.add_output(MediaTransport.TCP_PASSIVE, ssrc=0x5, seq_base=0)
    receiver = socket.socket()
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    receiver.connect((HOST, output.local_port))
    await until(lambda: output.state is OutputState.LIVE)
    assert output.sock is not None
    output.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    device = Device(ingest)
    for end in range(50, 601, 50):  # paced so the ingest's own socket buffer does not overflow
        device.send(*(rtp(s, s.to_bytes(2, "big") * 700) for s in range(end - 50, end)))
        await until(functools.partial(lambda n: ingest.stats.packets == n, end))
    assert output.dropped > 0 and output.sent + output.dropped == 600
    receiver.setblocking(False)
    loop = asyncio.get_running_loop()
    deframer = Rfc4571Deframer()
    got: list[RtpPacket] = []
    async with asyncio.timeout(5):
        while len(got) < output.sent:
            got += [RtpPacket.parse(p) for p in deframer.feed(await loop.sock_recv(receiver, 1 << 16))]
    assert deframer.stats.resyncs == 0 and continuous(got, 0)
    indexes = [int.from_bytes(p.payload[:2], "big") for p in got]
    assert indexes == sorted(indexes) and all(bytes(p.payload) == bytes(p.payload[:2]) * 700 for p in got)
    receiver.close()
    device.close()


async def test_tcp_active_output_connects_to_the_receiver(engine: RelayEngine) -> None:
    connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        asyncio.get_running_loop().create_future()
    )
    server = await asyncio.start_server(lambda r, w: connected.set_result((r, w)), HOST, 0)
    port = server.sockets[0].getsockname()[1]
    ingest = engine.open_ingest(IngestConfig(device_host=HOST))
    output = ingest.add_output(MediaTransport.TCP_ACTIVE, HOST, port, ssrc=0xD, seq_base=3)
    reader, writer = await asyncio.wait_for(connected, 2)
    assert writer.get_extra_info("peername")[1] == output.local_port  # leaves from the port in the SDP
    await until(lambda: output.state is OutputState.LIVE)
    device = Device(ingest)
    sent = [rtp(s, bytes([s]) * 1000) for s in range(20)]
    device.send(*sent)
    got = await read_frames(reader, 20)
    assert [p.payload for p in got] == [bytes(RtpPacket.parse(p).payload) for p in sent]
    assert {p.ssrc for p in got} == {0xD} and continuous(got, 3)
    writer.close()
    server.close()
    device.close()


async def test_tcp_active_output_that_cannot_connect_reports_it(engine: RelayEngine) -> None:
    closed: list[StopReason] = []
    ingest = engine.open_ingest(IngestConfig(device_host=HOST, idle_timeout=10))
    unused = socket.socket()
    unused.bind((HOST, 0))
    port = unused.getsockname()[1]
    unused.close()  # nothing listens there now
    output = ingest.add_output(
        MediaTransport.TCP_ACTIVE, HOST, port, ssrc=1, on_close=lambda o, r: closed.append(r)
    )
    await until(lambda: bool(closed))
    assert closed == [StopReason.CONNECT_FAILED] and output.state is OutputState.CLOSED
    assert ingest.outputs == []


# --------------------------------------------------------------------------------------------- TCP in


def framed(packet: bytes) -> bytes:
    return struct.pack("!H", len(packet)) + packet


async def test_tcp_passive_ingest_resyncs_after_garbage(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(MediaTransport.TCP_PASSIVE, device_host=HOST))
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=0xE, seq_base=0)
    _, writer = await asyncio.open_connection(HOST, ingest.local_port)
    sent = [rtp(s, bytes([s]) * (100 + s)) for s in range(30)]
    stream = b"".join(framed(p) for p in sent[:10])
    stream += b"\xff" * 13  # half-written junk after a device hiccup
    stream += b"".join(framed(p) for p in sent[10:20])
    stream += b"".join(b"$\x00" + framed(p) for p in sent[20:25])  # RTSP-style interleaving
    stream += framed(serialize_rtcp([SenderReport(DEVICE_SSRC, 1 << 40, 0, 1, 1)]))  # RTCP in-band
    stream += b"".join(framed(p) for p in sent[25:])
    for cut in range(0, len(stream), 777):  # arbitrary TCP segmentation
        writer.write(stream[cut : cut + 777])
        await writer.drain()
    got = await receive(sink, 30)
    assert [p.payload for p in got] == [bytes(RtpPacket.parse(p).payload) for p in sent]
    assert continuous(got, 0)
    stats = ingest.stats
    assert stats.deframer is not None
    assert (stats.deframer.resyncs, stats.deframer.skipped_bytes, stats.deframer.interleaved_frames) == (1, 13, 5)
    assert stats.rtcp_packets == 1 and stats.packets == 30
    stops: list[StopReason] = []
    ingest.on_stop = lambda i, r: stops.append(r)
    writer.close()
    await until(lambda: bool(stops))
    assert stops == [StopReason.DEVICE_CLOSED]


async def test_tcp_passive_ingest_refuses_other_hosts(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(MediaTransport.TCP_PASSIVE, device_host="127.0.0.3"))
    stranger = socket.socket()
    stranger.bind(("127.0.0.2", 0))
    stranger.setblocking(False)
    await asyncio.get_running_loop().sock_connect(stranger, (HOST, ingest.local_port))
    await until(lambda: ingest.stats.dropped.get("foreign connection") == 1)
    stranger.close()


async def test_tcp_active_ingest_connects_to_the_device_and_reports(engine: RelayEngine) -> None:
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(1)
    listener.setblocking(False)
    ingest = engine.open_ingest(
        IngestConfig(MediaTransport.TCP_ACTIVE, device_host=HOST, rtcp_interval=0.05)
    )
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=0xF, seq_base=0)
    accept = asyncio.ensure_future(loop.sock_accept(listener))
    await ingest.start(host=HOST, port=listener.getsockname()[1])
    conn, peer = await accept
    assert peer[1] == ingest.local_port
    sent = [rtp(s, b"t%d" % s) for s in (1, 2, 5, 6)]
    await loop.sock_sendall(conn, b"".join(framed(p) for p in sent))
    got = await receive(sink, 4)
    assert [p.payload for p in got] == [b"t1", b"t2", b"t5", b"t6"]
    # Receiver reports come back over the same connection, framed.
    deframer = Rfc4571Deframer()
    report = None
    async with asyncio.timeout(2):
        while report is None:
            for packet in deframer.feed(await loop.sock_recv(conn, 4096)):
                parts = parse_rtcp(packet)
                if isinstance(parts[0], ReceiverReport) and parts[0].reports:
                    report = parts[0].reports[0]
    assert (report.ssrc, report.packets_lost, report.highest_sequence) == (DEVICE_SSRC, 2, 6)
    conn.close()
    listener.close()


async def test_tcp_active_ingest_connect_failure_raises(engine: RelayEngine) -> None:
    ingest = engine.open_ingest(IngestConfig(MediaTransport.TCP_ACTIVE, device_host=HOST))
    unused = socket.socket()
    unused.bind((HOST, 0))
    port = unused.getsockname()[1]
    unused.close()
    with pytest.raises(OSError):
        await ingest.start(port=port)
    with pytest.raises(ValueError):
        await ingest.start()


# --------------------------------------------------------------------------------------------- RTCP


async def test_rtcp_receiver_reports_sender_reports_and_byes(engine: RelayEngine) -> None:
    byes: list[str] = []
    ingest = engine.open_ingest(
        IngestConfig(device_host=HOST, rtcp_interval=0.05), on_device_bye=lambda i, reason: byes.append(reason)
    )
    device = Device(ingest)
    device_rtcp = udp_socket()
    await ingest.start(host=HOST, rtcp_port=device_rtcp.getsockname()[1])
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=1)
    device.send(*(rtp(s, b"r") for s in [65534, 65535, 2, 3]))  # 0 and 1 lost across the wrap
    await receive(sink, 4)
    ntp = 0x1122334455667788
    device_rtcp.sendto(serialize_rtcp([SenderReport(DEVICE_SSRC, ntp, 0, 4, 4)]), (HOST, ingest.local_port + 1))
    await until(lambda: ingest.stats.rtcp_packets == 1)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(2):
        while True:
            parts = parse_rtcp(await loop.sock_recv(device_rtcp, 2048))
            report = parts[0]
            assert isinstance(report, ReceiverReport) and isinstance(parts[1], SourceDescription)
            if report.reports and report.reports[0].last_sr:
                break
    block = report.reports[0]
    assert block.ssrc == DEVICE_SSRC and block.packets_lost == 2
    assert block.highest_sequence == 0x10003  # one wrap, then 3
    assert block.last_sr == 0x33445566
    device_rtcp.sendto(serialize_rtcp([ReceiverReport(DEVICE_SSRC), Bye([DEVICE_SSRC], "camera stopping")]),
                       (HOST, ingest.local_port + 1))
    await until(lambda: bool(byes))
    assert byes == ["camera stopping"] and ingest.stats.device_bye == "camera stopping"
    ingest.close()
    async with asyncio.timeout(2):
        while True:
            parts = parse_rtcp(await loop.sock_recv(device_rtcp, 2048))
            if any(isinstance(p, Bye) for p in parts):
                break
    device.close()
    device_rtcp.close()


async def test_dual_stack_engine_accepts_and_sends_to_ipv4_hosts() -> None:
    try:
        relay = RelayEngine(asyncio.get_running_loop(), bind_host="::", ports=PORTS)
        ingest = relay.open_ingest(IngestConfig(device_host=HOST))
    except OSError:
        pytest.skip("no IPv6 on this host")
    sink = udp_socket()
    ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=7, seq_base=0)
    device = udp_socket()
    device.sendto(rtp(1, b"v4 device"), (HOST, ingest.local_port))
    got = await receive(sink, 1)
    assert got[0].payload == b"v4 device" and not ingest.stats.dropped  # seen as ::ffff:127.0.0.1
    relay.close()
    device.close()


async def test_engine_close_releases_every_port(engine: RelayEngine) -> None:
    sink = udp_socket()
    for transport in MediaTransport:
        ingest = engine.open_ingest(IngestConfig(transport, device_host=HOST))
        outputs: list[RelayOutput] = [
            ingest.add_output(MediaTransport.UDP, *sink.getsockname(), ssrc=1),
            ingest.add_output(MediaTransport.TCP_PASSIVE, ssrc=2),
        ]
        assert len({o.local_port for o in outputs} | {ingest.local_port}) == 3
    assert engine.ports.leased == 9
    engine.close()
    assert engine.ports.leased == 0 and engine.ingests == []


# --------------------------------------------------------------------------------------------- uvloop

ENGINE_SCENARIOS = [
    function
    for name, function in list(globals().items())
    if name.startswith("test_")
    and inspect.iscoroutinefunction(function)
    and list(inspect.signature(function).parameters) == ["engine"]
]


@pytest.mark.parametrize("scenario", ENGINE_SCENARIOS, ids=lambda f: f.__name__.removeprefix("test_"))
def test_on_uvloop(scenario: Callable[[RelayEngine], Any]) -> None:
    """Every scenario above again on uvloop, which the gateway runs on: its add_reader, sock_connect and
    timers are not the default loop's."""
    uvloop = pytest.importorskip("uvloop")

    async def run() -> None:
        relay = RelayEngine(asyncio.get_running_loop(), bind_host=HOST, ports=PORTS)
        try:
            await scenario(relay)
        finally:
            relay.close()
        assert relay.ports.leased == 0

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())

"""The media relay: one `Ingest` per device stream, any number of `RelayOutput`s fed from it.

An ingest receives RTP from a device over UDP or TCP (RFC 4571; passive = we listen, active = we
connect), keeps out whatever is not the device's stream (other sources, non-RTP bytes, a wrong SSRC
when checked, RTCP, duplicates), counts loss and reordering from the sequence numbers, and hands each
packet to its outputs. Every output has its own SSRC and its own sequence counter (``seq_base + packets
sent``): upper platforms expect continuous numbering from a relay, and an input jump (device restart,
a gap) must not look like loss downstream. Input loss shows in the ingest's stats instead. Timestamps,
marker and payload type pass through untouched.

Latency comes first: packets are forwarded as they arrive. A packet that arrives after a later one is
dropped (counted as reordered and as dropped "late"), because with continuous output numbering a
receiver could not put it back in place; an ingest created with ``reorder_capacity`` holds packets in
a `ReorderWindow` instead, trading up to ``reorder_delay`` of latency for order.

The UDP hot path does not use asyncio datagram transports (the default loop allocates a 256 KiB buffer
per datagram). Each ingest's socket is a non-blocking raw socket registered with ``loop.add_reader``;
the reader drains it in bounded batches with ``recv_into`` straight into the GOP cache (no copy),
rewrites sequence number and SSRC in place with ``struct.pack_into`` and sends the same bytes on a
connected socket per output. Packets that arrive together and have the same size (a camera sends a
frame's packets back to back, all but the last at its MTU) sit next to each other in the buffer and
go out in one ``sendmsg`` with UDP GSO: ~0.35 µs per packet instead of ~0.93 µs for one ``send`` each.
Once the device's source address is known the RTP socket is ``connect``ed to it, so the kernel drops
other senders and ``recv_into`` saves the ~0.3 µs per packet that building the source address tuple
in ``recvfrom_into`` costs; datagrams from other sources are therefore only counted until the source
is latched. Figures are in `Ingest._relay` and tests/bench/bench_relay.py.

The GOP cache is the receive buffer itself: packets are received back to back into an anonymous memory
map (pages are only committed as a GOP grows), their sizes kept in a list. A packet starting a keyframe
(`gbgw.rtp.ps.starts_keyframe`: its PS pack header is followed by a system header or stream map, which
GB/T 28181 Annex C puts only in front of I-frames) is moved to the start and the write position
follows it; a new output is first sent the cached packets, so its receiver starts decoding at once.

Callbacks into the caller are never made from inside the packet loop, so they may add or remove outputs
and close ingests freely. Outputs and ingests report how they ended only when the engine ended them
(timeouts, peers closing); what the caller closes itself is not reported back.

Modules, one job each: `config` (what the gateway negotiated: `MediaTransport`, `IngestConfig`),
`states` (`StopReason`, `OutputState`), `ingest` (the socket engine and packet loop of one device
stream, its RTCP receiver reports), `outputs` (sending to one receiver: GSO runs, RFC 4571 frames,
or a callback in this process for the WebRTC egress),
`sockets` (the bounded TCP sender, the RTCP drain, host normalisation), `engine` (`RelayEngine`: the
ingests of one loop and their port range). RFC 3550 reception statistics are `gbgw.rtp.stats`.
"""

from gbgw.rtp.relay.config import IngestConfig, MediaTransport
from gbgw.rtp.relay.engine import RelayEngine
from gbgw.rtp.relay.ingest import ByeCallback, Ingest, IngestStats, StopCallback
from gbgw.rtp.relay.outputs import OutputCloseCallback, OutputStats, PacketSink, RelayOutput
from gbgw.rtp.relay.states import OutputState, StopReason

__all__ = [
    "ByeCallback",
    "Ingest",
    "IngestConfig",
    "IngestStats",
    "MediaTransport",
    "OutputCloseCallback",
    "OutputState",
    "OutputStats",
    "PacketSink",
    "RelayEngine",
    "RelayOutput",
    "StopCallback",
    "StopReason",
]

"""WebRTC egress: a channel's live PS stream to browsers over WHEP (RFC 9725), H.264 without transcoding.

The path: the device's ingest hands every RTP packet to one in-process relay output per stream
(`Ingest.add_sink`), `gbgw.rtp.psframes.PsFrameAssembler` turns the PS payloads into H.264 access
units, a `FrameFeed` fans them out to one `EncodedVideoTrack` per viewer, and aiortc packetises each
access unit (RFC 6184) and sends it over SRTP. No decoder or encoder runs: the track yields
`av.Packet`s, which aiortc's sender packs as they are (``RTCRtpSender._next_encoded_frame`` calls the
encoder's ``pack`` instead of ``encode`` for anything that is not an `av.Frame`).

The answer names a profile the browser offered and aiortc supports (42001f or 42e01f, see `offer`);
cameras' High-profile streams pass through under it and decode, because browsers take the decoder
configuration from the in-band SPS. H.265 cannot be sent (no H.265 in Chromium's WebRTC, and aiortc
has no H.265 packetiser): with ``console.transcode_h265`` the feed runs it through `transcode`
(PyAV hevc + libx264, one thread per stream); without, the offer is refused with
`WhepFailure.H265_UNSUPPORTED`, or a viewer that already joined is ended with
`ViewerEnd.CODEC_UNSUPPORTED`. A playback viewer (``?start=&end=``) watches its own playback session's
ingest, stamped by arrival (`EncodedVideoTrack`). G.711 audio passes through too: a live viewer whose
offer receives PCMA/PCMU gets an `EncodedAudioTrack` of the camera's G.711 frames, encoded as they came
(aiortc's G.711 encoder packs them, as the H.264 one does video), the other law by a byte table when
the browser did not offer the camera's (`g711`); a stream without G.711 answers audio inactive.

Modules, one job each: `errors` (`WhepFailure` and its HTTP status), `offer` (sans-IO offer
checks), `ice` (host candidates on ``console.address`` only), `track` (the passthrough track),
`feed` (one stream's frames and frame-level GOP cache), `g711` (law tables), `transcode` (H.265 to H.264), `sessions` (`WhepViewers`, `WhepSession`).
Needs the ``console`` extra (aiortc, PyAV).
"""

from gbgw.gb28181.webrtc.errors import WhepError, WhepFailure
from gbgw.gb28181.webrtc.feed import FrameFeed
from gbgw.gb28181.webrtc.ice import host_addresses
from gbgw.gb28181.webrtc.offer import OfferSummary, baseline_compatible, check_offer
from gbgw.gb28181.webrtc.sessions import (
    ViewerEnd,
    ViewerState,
    ViewerStats,
    ViewerTotals,
    WebrtcConfig,
    WhepAnswer,
    WhepSession,
    WhepViewers,
)
from gbgw.gb28181.webrtc.track import EncodedAudioTrack, EncodedVideoTrack

__all__ = [
    "EncodedAudioTrack",
    "EncodedVideoTrack",
    "FrameFeed",
    "OfferSummary",
    "ViewerEnd",
    "ViewerState",
    "ViewerStats",
    "ViewerTotals",
    "WebrtcConfig",
    "WhepAnswer",
    "WhepError",
    "WhepFailure",
    "WhepSession",
    "WhepViewers",
    "baseline_compatible",
    "check_offer",
    "host_addresses",
]

"""RTP/RTCP, RFC 4571 framing, MPEG-PS mux/demux and the media relay. Knows nothing of SIP."""

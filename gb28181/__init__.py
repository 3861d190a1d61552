"""GB/T 28181 on top of `sip`, `rtp` and `registry`: MANSCDP, device access, cascade, daemon."""

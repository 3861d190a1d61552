"""A sans-IO SIP stack (RFC 3261 and friends). Knows nothing of GB/T 28181."""

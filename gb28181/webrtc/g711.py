"""G.711 A-law and µ-law: the decoders of ITU-T G.711 and the byte tables that turn one law into the other.

A camera sends the law it was configured with (GB/T 28181 devices mostly A-law, stream type 0x90) and a
browser may offer only the other; translating a code to the other law's nearest code is one
``bytes.translate`` per frame (a 160-byte frame in well under a microsecond), no decoder, no resampling.
The tables are built at import from the decoders (512 bisections).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

_ULAW_BIAS = 0x84


def alaw_to_linear(code: int) -> int:
    """The 16-bit linear sample an A-law code stands for (G.711 table 1, even bits inverted)."""
    code ^= 0x55
    magnitude = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    if segment == 0:
        magnitude += 8
    else:
        magnitude = (magnitude + 0x108) << (segment - 1)
    return magnitude if code & 0x80 else -magnitude


def ulaw_to_linear(code: int) -> int:
    """The 16-bit linear sample a µ-law code stands for (G.711 table 2, all bits inverted)."""
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return _ULAW_BIAS - magnitude if code & 0x80 else magnitude - _ULAW_BIAS


def _translation(source: Callable[[int], int], target: Callable[[int], int]) -> bytes:
    """For each code of ``source``'s law, the code of ``target``'s law nearest in linear value."""
    ranked = sorted(range(256), key=target)
    values = [target(code) for code in ranked]
    table = bytearray(256)
    for code in range(256):
        value = source(code)
        at = bisect_left(values, value)
        nearest = min((i for i in (at - 1, at) if 0 <= i < 256), key=lambda i: abs(values[i] - value))
        table[code] = ranked[nearest]
    return bytes(table)


ALAW_TO_ULAW = _translation(alaw_to_linear, ulaw_to_linear)
ULAW_TO_ALAW = _translation(ulaw_to_linear, alaw_to_linear)

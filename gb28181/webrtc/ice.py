"""Host ICE candidates on chosen addresses only (``console.address``), per peer connection.

aioice gathers a host candidate on every address of every interface and leaves loopback out; neither
it nor aiortc can be told which addresses to use. Its gathering looks `aioice.ice.get_host_addresses`
up at call time, so that one function is replaced, once, by one that answers from a context variable
and falls back to the original when none is set. The variable is set around a peer connection's
`setLocalDescription` (where gathering happens): tasks created inside copy the context, other peer
connections in the process are not affected.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import aioice.ice

_ADDRESSES: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "gbgw_ice_host_addresses", default=None
)
_original = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _ADDRESSES.get()
    if chosen is None:
        return list(_original(use_ipv4, use_ipv6))
    return [
        address for address in chosen if (":" in address and use_ipv6) or (":" not in address and use_ipv4)
    ]


aioice.ice.get_host_addresses = _host_addresses


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Gather host candidates on ``addresses`` only, for peer connections gathering inside the block."""
    token = _ADDRESSES.set(tuple(addresses))
    try:
        yield
    finally:
        _ADDRESSES.reset(token)

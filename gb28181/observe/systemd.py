"""Tell systemd how the gateway is doing (``sd_notify``): readiness, reloads, stopping, watchdog pings.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named in ``$NOTIFY_SOCKET``, so
it is written here rather than pulled in as a dependency. Without ``$NOTIFY_SOCKET`` (a terminal, a
container, a unit of another ``Type=``) every call does nothing, and the daemon calls them unconditionally.
"""

from __future__ import annotations

import asyncio
import os
import socket

_READY = "READY=1"
_RELOADING = "RELOADING=1"
_STOPPING = "STOPPING=1"
_WATCHDOG = "WATCHDOG=1"


def notify(*assignments: str) -> bool:
    """Send ``assignments`` (``"READY=1"``, ``"STATUS=..."``) in one datagram; False when there is no
    socket to send to or the send failed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        # A socket in the abstract namespace: systemd spells its leading NUL byte as "@".
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        # Never block the event loop on a busy manager: a dropped ping is followed by the next one.
        sock.setblocking(False)
        try:
            sock.sendto("\n".join(assignments).encode(), address)
        except OSError:
            return False
    return True


def ready(text: str | None = None) -> bool:
    """Start-up is done (sockets bound): ``Type=notify`` units count as started from here."""
    return notify(_READY, *_status(text))


def reloading() -> bool:
    """A reload began; systemd shows the unit as reloading until the next ``ready()``."""
    return notify(_RELOADING)


def stopping() -> bool:
    return notify(_STOPPING)


def status(text: str) -> bool:
    """A one-line state for ``systemctl status`` (e.g. how many devices are online)."""
    return notify(*_status(text))


def watchdog_ping() -> bool:
    return notify(_WATCHDOG)


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings: half of ``WatchdogSec=`` (systemd's advice), None when the
    watchdog is off or meant for another process (``$WATCHDOG_PID``)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6 / 2


async def watchdog_pings(interval: float) -> None:
    """Ping the watchdog every ``interval`` seconds, forever. Run as a task on the gateway's own loop:
    a loop that hangs (a blocking call, a busy handler) stops the pings, and systemd restarts it."""
    while True:
        watchdog_ping()
        await asyncio.sleep(interval)


def _status(text: str | None) -> tuple[str, ...]:
    # One datagram line per assignment: a newline in the text would start a bogus one.
    return () if text is None else ("STATUS=" + " ".join(text.splitlines()),)

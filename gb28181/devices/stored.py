"""Answering a device only once what it told us is on disk.

A 200 to REGISTER, to a catalog page or to a catalog NOTIFY tells the device "accepted": it will not
send it again. The answer therefore leaves only when the registry's group commit that carries the change
has reached the database (``DeviceRegistry.commit_pending``), so a crash right after cannot lose what
the device saw acknowledged. It is a done-callback on the commit's future, not a task per request: at
thousands of registrations a second a coroutine each was measurable. A failed commit answers 500, and
the device sends again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from gbgw.registry.devices import DeviceRegistry
from gbgw.sip.transaction import ServerTransaction
from gbgw.sip.transport import SipTransport

log = structlog.get_logger("gb28181.access")


def reply_once_stored(
    registry: DeviceRegistry,
    transport: SipTransport,
    txn: ServerTransaction,
    headers: Sequence[tuple[str, str]] = (),
    then: Callable[[], None] | None = None,
) -> None:
    """Answer ``txn`` 200 (with ``headers``) once every registry change made so far is committed, then
    call ``then``; answer 500 without calling it if the commit fails."""
    pending = registry.commit_pending()
    if pending is None:
        transport.reply(txn, 200, headers=list(headers))
        if then is not None:
            then()
        return

    def answer(done: asyncio.Future[None]) -> None:
        failure = None if done.cancelled() else done.exception()
        if done.cancelled() or failure is not None:
            log.error("change not stored: answered 500", method=txn.request.method,
                      reason=str(failure) if failure is not None else "shutting down")
            transport.reply(txn, 500, "Not stored")
            return
        transport.reply(txn, 200, headers=list(headers))
        if then is not None:
            then()

    pending.add_done_callback(answer)

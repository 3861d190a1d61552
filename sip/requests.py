"""Out-of-dialog requests (RFC 3261 §8.1.1): the header block every request outside a dialog carries.

One :class:`RequestBuilder` stands for one local identity on one transport and owns the CSeq counter of
the requests it builds, so no sender bumps another's counter. It is sans-IO: it writes a
:class:`~sip.message.Request` and never sends it. The Via comes from the transport (its bound address and
a fresh branch), and the Call-ID's host part is read from it when a request is built, so a builder may be
made before its transport is started.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from gbgw.sip.message import Request, new_call_id, new_tag


class ViaSource(Protocol):
    """What a builder needs of a transport (``SipTransport`` is one): its host and a Via with a branch."""

    @property
    def host(self) -> str: ...

    def via(self, transport: str = "UDP") -> str: ...


class RequestBuilder:
    """Builds out-of-dialog requests from ``local_uri`` (``sip:ID@domain``).

    Headers, in order: Via, From (``<local_uri>;tag``), To, Call-ID, CSeq, Max-Forwards, User-Agent,
    then the caller's ``headers``. A caller that keeps one binding (a registration) passes its own
    ``call_id`` and ``from_tag``; everyone else gets fresh ones per request.
    """

    __slots__ = ("_cseq", "local_uri", "source", "user_agent")

    def __init__(self, source: ViaSource, local_uri: str, user_agent: str, *, cseq: int = 0) -> None:
        self.source = source
        self.local_uri = local_uri
        self.user_agent = user_agent
        self._cseq = cseq

    @property
    def cseq(self) -> int:
        """The CSeq number of the last request built."""
        return self._cseq

    def next_cseq(self) -> int:
        self._cseq += 1
        return self._cseq

    def new_call_id(self) -> str:
        return new_call_id(self.source.host or "localhost")

    def build(
        self,
        method: str,
        request_uri: str,
        to_uri: str,
        *,
        transport: str = "UDP",
        call_id: str | None = None,
        from_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Request:
        """A ``method`` request to ``request_uri`` with ``To: <to_uri>``, its Via for ``transport``."""
        block = [
            ("Via", self.source.via(transport)),
            ("From", f"<{self.local_uri}>;tag={from_tag or new_tag()}"),
            ("To", f"<{to_uri}>"),
            ("Call-ID", call_id or self.new_call_id()),
            ("CSeq", f"{self.next_cseq()} {method}"),
            ("Max-Forwards", "70"),
            ("User-Agent", self.user_agent),
        ]
        block.extend(headers)
        return Request(method, request_uri, block, body)

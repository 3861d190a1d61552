"""SIP dialogs (RFC 3261 §12) as plain state: built from the messages that create them, sans-IO.

A dialog is what turns one INVITE or SUBSCRIBE into a relationship: the later BYE, INFO, NOTIFY or
re-SUBSCRIBE must reach the same remote target through the same route set, with From/To tags and a CSeq
that the peer accepts. This module keeps exactly that state and builds those requests; sending them, and
the transactions they start, belong to the transaction layer and the adapter.

Subscriptions (RFC 6665) use the same mechanics. The dialog records the Event of the SUBSCRIBE that created
it. A NOTIFY may overtake the 2xx to its SUBSCRIBE (§4.1.2.4); the caller handles that as follows: it keeps
the outgoing SUBSCRIBE until its final response (it does anyway, in the client transaction), and when a
NOTIFY matches no dialog but :func:`notify_matches` says it answers that SUBSCRIBE, it creates the dialog
with :meth:`Dialog.from_notify` and adds it to the table. The 2xx that arrives later then finds the dialog
through :meth:`DialogTable.for_response` and only refreshes it with :meth:`Dialog.update_from_response`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from gbgw.sip.errors import SipError
from gbgw.sip.headers import NameAddr, parse_params
from gbgw.sip.message import Message, Request, Response

# Requests whose Contact replaces the remote target (RFC 3261 §12.2, RFC 3311, RFC 3515, RFC 6665 §4.3).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})

# URI parameters that may not appear in a Request-URI (RFC 3261 §19.1.1 table 1): stripped when a strict
# router's URI becomes the Request-URI (§12.2.1.1).
_NOT_IN_REQUEST_URI = frozenset({"method"})


class DialogState(Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogId(NamedTuple):
    """What identifies a dialog at our end (§12): the Call-ID and both tags, ours first."""

    call_id: str
    local_tag: str
    remote_tag: str


def dialog_id_for(message: Message, uas: bool) -> DialogId:
    """The dialog a message belongs to, seen from our side.

    ``uas`` is True when we are the server of the message's transaction (a request we received, a
    response we send): our tag is then in To. It is False for a request we send or a response we
    receive, where our tag is in From. A missing tag (RFC 2543 peers) is the empty string, which is how
    §12.2.2 says to compare it.
    """
    from_tag = message.from_.tag or ""
    to_tag = message.to.tag or ""
    call_id = message.call_id or ""
    return DialogId(call_id, to_tag, from_tag) if uas else DialogId(call_id, from_tag, to_tag)


def event_key(message: Message) -> str | None:
    """The subscription an Event header names: its package and ``id`` (RFC 6665 §8.2.1), or None.

    Package names are compared case-insensitively (they are tokens registered in lower case, and devices
    write ``Catalog``); the id is compared exactly.
    """
    value = message.get("Event")
    if value is None:
        return None
    package, _, params = value.partition(";")
    event_id = parse_params(params).get("id") if params else None
    package = package.strip().lower()
    return package if event_id is None else f"{package};id={event_id}"


def notify_matches(subscribe: Request, notify: Request) -> bool:
    """Whether a NOTIFY that arrived outside any dialog is for our pending ``subscribe`` (RFC 6665 §4.1.2.4)."""
    return (
        notify.call_id == subscribe.call_id
        and notify.to.tag == subscribe.from_.tag
        and event_key(notify) == event_key(subscribe)
    )


@dataclass(slots=True)
class Dialog:
    """The state of one dialog (§12.1) and the requests built from it (§12.2.1.1).

    ``local_uri``/``remote_uri`` go in From/To, ``remote_target`` is the Request-URI (the peer's Contact),
    and ``route_set`` holds Route values in the order they are sent. ``remote_seq`` is None until the peer
    sends its first request in the dialog. ``peer`` is the transport address the dialog lives on (opaque
    here: the adapter's :class:`~sip.endpoint.Peer`). ``local_contact`` is the Contact header value we
    advertise in it, and ``event`` the subscription (:func:`event_key`) of a SUBSCRIBE dialog.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False
    state: DialogState = DialogState.CONFIRMED
    peer: Any = None
    local_contact: str | None = None
    event: str | None = None

    # -- creation (§12.1) ----------------------------------------------------------------------------

    @classmethod
    def from_uac(cls, request: Request, response: Response, peer: Any = None) -> Dialog:
        """The dialog our INVITE/SUBSCRIBE ``request`` created, from a 2xx or a 101-199 with a To tag.

        The route set is the response's Record-Route reversed and the remote target its Contact
        (§12.1.2). A 2xx without a To tag (RFC 2543) gives an empty remote tag; a provisional response
        without one creates no dialog.
        """
        status = response.status
        remote_tag = response.to.tag
        if status >= 300 or status == 100 or (status < 200 and not remote_tag):
            raise SipError(f"A {status} response creates no dialog")
        contact = response.contact
        return cls(
            call_id=request.call_id or "",
            local_tag=request.from_.tag or "",
            remote_tag=remote_tag or "",
            local_uri=str(request.from_.uri),
            remote_uri=str(request.to.uri),
            # A 1xx may lack a Contact; until one arrives the request went to the right place already.
            remote_target=str(contact.uri) if contact is not None and not contact.wildcard else request.uri,
            route_set=list(reversed(response.values("Record-Route"))),
            local_seq=request.cseq.seq,
            secure=_is_sips(request.uri),
            state=DialogState.CONFIRMED if status >= 200 else DialogState.EARLY,
            peer=peer,
            local_contact=request.get("Contact"),
            event=event_key(request),
        )

    @classmethod
    def from_uas(
        cls, request: Request, local_tag: str, local_contact: str, *, early: bool = False, peer: Any = None
    ) -> Dialog:
        """The dialog we create by answering ``request`` with ``local_tag`` in To (§12.1.1).

        The route set is the request's Record-Route in order and the remote target its Contact. The TU
        puts ``local_tag`` and ``local_contact`` in its 1xx/2xx. With ``early`` the dialog starts early
        (the TU sent a 1xx with the tag) and the TU sets ``state`` to CONFIRMED when it sends the 2xx.
        Raises :class:`SipError` (400) when the request has no Contact: there would be nowhere to send
        the BYE or NOTIFY.
        """
        contact = request.contact
        if contact is None or contact.wildcard:
            raise SipError(f"{request.method} without a Contact cannot create a dialog")
        return cls(
            call_id=request.call_id or "",
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_uri=str(request.to.uri),
            remote_uri=str(request.from_.uri),
            remote_target=str(contact.uri),
            route_set=request.values("Record-Route"),
            local_seq=0,
            remote_seq=request.cseq.seq,
            secure=_is_sips(request.uri),
            state=DialogState.EARLY if early else DialogState.CONFIRMED,
            peer=peer,
            local_contact=local_contact,
            event=event_key(request),
        )

    @classmethod
    def from_notify(cls, subscribe: Request, notify: Request, peer: Any = None) -> Dialog:
        """The subscription dialog a NOTIFY creates when it overtakes the 2xx to our SUBSCRIBE.

        The NOTIFY is a request we receive, so its route set and target are taken as a UAS takes them
        (Record-Route in order, its Contact); our side is the SUBSCRIBE's. Check :func:`notify_matches`
        first.
        """
        contact = notify.contact
        if contact is None or contact.wildcard:
            raise SipError("NOTIFY without a Contact cannot create a dialog")
        return cls(
            call_id=subscribe.call_id or "",
            local_tag=subscribe.from_.tag or "",
            remote_tag=notify.from_.tag or "",
            local_uri=str(subscribe.from_.uri),
            remote_uri=str(subscribe.to.uri),
            remote_target=str(contact.uri),
            route_set=notify.values("Record-Route"),
            local_seq=subscribe.cseq.seq,
            remote_seq=notify.cseq.seq,
            secure=_is_sips(subscribe.uri),
            peer=peer,
            local_contact=subscribe.get("Contact"),
            event=event_key(subscribe),
        )

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # -- requests within the dialog (§12.2.1) ----------------------------------------------------------

    def create_request(
        self,
        method: str,
        *,
        via: str,
        contact: str | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """A new request in this dialog with the next local CSeq (§12.2.1.1).

        ``via`` is the whole Via value (a fresh branch). ``contact`` is sent as given (target refresh
        requests need one: pass ``local_contact``). ACK for a 2xx comes from :meth:`create_ack`; a CANCEL is
        not a dialog request but a copy of the INVITE (:meth:`TransactionLayer.cancel_request`).
        """
        if method in ("ACK", "CANCEL"):
            raise ValueError(f"{method} reuses the INVITE's CSeq: use create_ack or cancel_request")
        self.local_seq += 1
        return self._request(method, self.local_seq, via, contact, body, content_type, extra_headers)

    def create_ack(
        self,
        invite_cseq: int,
        *,
        via: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """The ACK for a 2xx to the INVITE numbered ``invite_cseq`` (§13.2.2.4).

        It is a dialog request with the INVITE's CSeq number, so the local sequence does not move; pass
        the INVITE's credentials in ``extra_headers`` when it carried any.
        """
        return self._request("ACK", invite_cseq, via, None, body, content_type, extra_headers)

    def _request(
        self,
        method: str,
        seq: int,
        via: str,
        contact: str | None,
        body: bytes,
        content_type: str | None,
        extra_headers: Iterable[tuple[str, str]],
    ) -> Request:
        uri, routes = self._request_uri_and_routes()
        headers: list[tuple[str, str]] = [("Via", via), ("Max-Forwards", "70")]
        headers += [("Route", route) for route in routes]
        headers += [
            ("From", _address(self.local_uri, self.local_tag)),
            ("To", _address(self.remote_uri, self.remote_tag)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{seq} {method}"),
        ]
        if contact is not None:
            headers.append(("Contact", contact))
        headers += extra_headers
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        return Request(method, uri, headers, body)

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        """Request-URI and Route values for loose (``lr``) or strict first routes (§12.2.1.1)."""
        routes = self.route_set
        if not routes:
            return self.remote_target, []
        first = NameAddr.parse(routes[0]).uri
        if "lr" in first.params:
            return self.remote_target, list(routes)
        # A strict router expects itself in the Request-URI and the real target as the last Route.
        first.params = {k: v for k, v in first.params.items() if k not in _NOT_IN_REQUEST_URI}
        first.headers = None
        return str(first), [*routes[1:], f"<{self.remote_target}>"]

    # -- what the peer sends (§12.2.2, §12.2.1.2) --------------------------------------------------------

    def receive_request(self, request: Request) -> None:
        """Account for a request the peer sent in this dialog, or raise SipError(500) if out of order.

        ACK and CANCEL carry their INVITE's number and are not checked (an ACK retransmitted after a
        later request would otherwise be refused); a BYE ends the dialog; a target refresh request with a
        Contact moves the remote target.
        """
        method = request.method
        if method != "ACK" and method != "CANCEL":
            seq = request.cseq.seq
            if self.remote_seq is not None and seq < self.remote_seq:
                raise SipError("CSeq out of order", status=500)
            self.remote_seq = seq
        if method == "BYE":
            self.state = DialogState.TERMINATED
        elif method in TARGET_REFRESH_METHODS:
            contact = request.contact
            if contact is not None and not contact.wildcard:
                self.remote_target = str(contact.uri)

    def update_from_response(self, response: Response) -> None:
        """Apply a response to a request we sent in this dialog, or to the one that created it.

        A 2xx confirms an early dialog and recomputes its route set (§13.2.2.4); a 2xx (or, while early,
        a 1xx) to a target refresh request with a Contact moves the remote target (§12.2.1.2); a 3xx-6xx
        ends an early dialog and a 481 or 408 a confirmed one (§12.3, §12.2.1.2).
        """
        status = response.status
        if self.state is DialogState.TERMINATED:
            return
        if status >= 300:
            if self.state is DialogState.EARLY or status in (408, 481):
                self.state = DialogState.TERMINATED
            return
        if status >= 200 and self.state is DialogState.EARLY:
            self.state = DialogState.CONFIRMED
            self.route_set = list(reversed(response.values("Record-Route")))
        elif status < 200 and self.state is not DialogState.EARLY:
            return
        if response.cseq.method in TARGET_REFRESH_METHODS:
            contact = response.contact
            if contact is not None and not contact.wildcard:
                self.remote_target = str(contact.uri)

    def matches(self, message: Message) -> bool:
        """Whether a message the peer sent (a request to us, or a response to our request) is in this dialog."""
        return dialog_id_for(message, uas=isinstance(message, Request)) == self.id


class DialogTable:
    """The dialogs of one endpoint, found from the messages the peers send."""

    __slots__ = ("_dialogs",)

    def __init__(self) -> None:
        self._dialogs: dict[DialogId, Dialog] = {}

    def add(self, dialog: Dialog) -> None:
        self._dialogs[dialog.id] = dialog

    def remove(self, dialog: Dialog) -> None:
        if self._dialogs.get(dialog.id) is dialog:
            del self._dialogs[dialog.id]

    def get(self, dialog_id: DialogId) -> Dialog | None:
        return self._dialogs.get(dialog_id)

    def for_request(self, request: Request) -> Dialog | None:
        """The dialog of a request we received (a BYE, NOTIFY, INFO...), or None (then §12.2.2: 481)."""
        return self._dialogs.get(dialog_id_for(request, uas=True))

    def for_response(self, response: Response) -> Dialog | None:
        return self._dialogs.get(dialog_id_for(response, uas=False))

    def __len__(self) -> int:
        return len(self._dialogs)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._dialogs.values()))


def _address(uri: str, tag: str) -> str:
    return f"<{uri}>;tag={tag}" if tag else f"<{uri}>"


def _is_sips(uri: str) -> bool:
    return uri[:5].lower() == "sips:"

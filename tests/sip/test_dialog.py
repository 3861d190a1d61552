"""Tests for sip.dialog: dialog creation from both sides, route sets, CSeq rules and in-dialog requests.

The messages are the ones a GB/T 28181 live play exchanges (platform INVITE to a camera channel, 200 with
SDP, ACK, BYE) and a catalog subscription, written as bytes and parsed, so that both ends of one dialog
can be built and made to talk to each other.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gbgw.sip.dialog import (
    Dialog,
    DialogId,
    DialogState,
    DialogTable,
    dialog_id_for,
    event_key,
    notify_matches,
)
from gbgw.sip.errors import SipError
from gbgw.sip.message import Request, Response, make_response, new_branch, parse_message

PLATFORM = "sip:34020000002000000001@3402000000"
CHANNEL = "sip:34020000001320000001@3402000000"
PLATFORM_CONTACT = "<sip:34020000002000000001@10.0.0.1:5060>"
CAMERA_CONTACT = "sip:34020000001320000001@192.168.1.64:5060"


def parse_request(text: str) -> Request:
    msg = parse_message(text.replace("\n", "\r\n").encode())
    assert isinstance(msg, Request)
    msg.check()
    return msg


def invite(*, record_route: tuple[str, ...] = (), uri: str = CHANNEL, cseq: int = 20) -> Request:
    rr = "".join(f"Record-Route: {value}\n" for value in record_route)
    return parse_request(
        f"INVITE {uri} SIP/2.0\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKinv1\n"
        f"{rr}"
        f"From: <{PLATFORM}>;tag=plat-tag\n"
        f"To: <{CHANNEL}>\n"
        "Call-ID: play-1@10.0.0.1\n"
        f"CSeq: {cseq} INVITE\n"
        f"Contact: {PLATFORM_CONTACT}\n"
        "Max-Forwards: 70\n"
        "Subject: 34020000001320000001:0200000001,34020000002000000001:0\n"
        "Content-Length: 0\n\n"
    )


def answer(request: Request, status: int = 200, *, to_tag: str | None = "cam-tag",
           contact: str | None = f"<{CAMERA_CONTACT}>", record_route: tuple[str, ...] = ()) -> Response:
    """The camera's response as the platform reads it off the wire."""
    headers = [("Record-Route", value) for value in record_route]
    if contact is not None:
        headers.append(("Contact", contact))
    response = make_response(request, status, to_tag=to_tag, headers=headers)
    msg = parse_message(response.serialize())
    assert isinstance(msg, Response)
    return msg


def via() -> str:
    return f"SIP/2.0/UDP 10.0.0.1:5060;rport;branch={new_branch()}"


def on_the_wire(request: Request) -> Request:
    msg = parse_message(request.serialize())
    assert isinstance(msg, Request)
    msg.check()
    return msg


# -- creation ------------------------------------------------------------------------------------------------


def test_uac_dialog_from_2xx() -> None:
    request = invite(record_route=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"))
    response = answer(request, record_route=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"))
    dialog = Dialog.from_uac(request, response, peer="peer-object")
    assert dialog.id == DialogId("play-1@10.0.0.1", "plat-tag", "cam-tag")
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.local_uri == PLATFORM and dialog.remote_uri == CHANNEL
    assert dialog.remote_target == CAMERA_CONTACT
    # The UAC reverses Record-Route (§12.1.2): the proxy nearest to it comes first.
    assert dialog.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert dialog.local_seq == 20 and dialog.remote_seq is None
    assert dialog.secure is False
    assert dialog.peer == "peer-object"
    assert dialog.local_contact == PLATFORM_CONTACT


def test_uac_early_dialog_from_a_provisional_with_a_tag() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 183))
    assert dialog.state is DialogState.EARLY and dialog.remote_tag == "cam-tag"


def test_uac_early_dialog_without_contact_targets_the_request_uri() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 180, contact=None))
    assert dialog.remote_target == CHANNEL


@pytest.mark.parametrize(("status", "to_tag"), [(100, None), (180, None), (486, "cam-tag"), (302, "cam-tag")])
def test_responses_that_create_no_dialog(status: int, to_tag: str | None) -> None:
    request = invite()
    with pytest.raises(SipError):
        Dialog.from_uac(request, answer(request, status, to_tag=to_tag))


def test_2xx_without_to_tag_from_an_rfc2543_peer_gives_an_empty_remote_tag() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 200, to_tag=None))
    assert dialog.remote_tag == ""
    assert "tag" not in dialog.create_request("BYE", via=via()).to.params


def test_sips_request_uri_makes_a_secure_dialog() -> None:
    request = invite(uri="sips:34020000001320000001@3402000000")
    assert Dialog.from_uac(request, answer(request)).secure is True


def test_uas_dialog_from_a_request() -> None:
    request = invite(record_route=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"))
    dialog = Dialog.from_uas(request, "cam-tag", f"<{CAMERA_CONTACT}>")
    assert dialog.id == DialogId("play-1@10.0.0.1", "cam-tag", "plat-tag")
    assert dialog.local_uri == CHANNEL and dialog.remote_uri == PLATFORM
    assert dialog.remote_target == "sip:34020000002000000001@10.0.0.1:5060"
    assert dialog.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]  # in order (§12.1.1)
    assert dialog.remote_seq == 20
    assert dialog.state is DialogState.CONFIRMED
    assert Dialog.from_uas(request, "cam-tag", "<sip:c@h>", early=True).state is DialogState.EARLY


def test_uas_dialog_needs_a_contact() -> None:
    request = invite()
    request.remove("Contact")
    with pytest.raises(SipError):
        Dialog.from_uas(request, "cam-tag", f"<{CAMERA_CONTACT}>")


# -- requests within the dialog --------------------------------------------------------------------------------


def test_in_dialog_request_construction() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    branch_via = via()
    bye = on_the_wire(dialog.create_request(
        "INFO", via=branch_via, contact=PLATFORM_CONTACT, body=b"PLAY RTSP/1.0\r\nCSeq: 2\r\n",
        content_type="Application/MANSRTSP", extra_headers=[("Subject", "x")],
    ))
    assert bye.method == "INFO"
    assert bye.uri == CAMERA_CONTACT  # the remote target, not the original Request-URI
    assert bye.get("Via") == branch_via
    assert bye.from_.uri.user == "34020000002000000001" and bye.from_.tag == "plat-tag"
    assert bye.to.uri.user == "34020000001320000001" and bye.to.tag == "cam-tag"
    assert bye.call_id == "play-1@10.0.0.1"
    assert bye.cseq == (21, "INFO")
    assert bye.get("Contact") == PLATFORM_CONTACT
    assert bye.content_type == "application/mansrtsp" and bye.body == b"PLAY RTSP/1.0\r\nCSeq: 2\r\n"
    assert bye.get("Subject") == "x"
    assert bye.max_forwards == 70
    assert bye.get("Route") is None


def test_cseq_increments_for_each_new_request() -> None:
    request = invite(cseq=5)
    dialog = Dialog.from_uac(request, answer(request))
    assert [dialog.create_request(m, via=via()).cseq.seq for m in ("INFO", "INFO", "BYE")] == [6, 7, 8]
    # The UAS side starts its own numbering.
    uas = Dialog.from_uas(request, "cam-tag", f"<{CAMERA_CONTACT}>")
    assert [uas.create_request("MESSAGE", via=via()).cseq.seq for _ in range(2)] == [1, 2]


def test_ack_for_2xx_keeps_the_invite_number_and_takes_a_new_branch() -> None:
    request = invite(cseq=20)
    dialog = Dialog.from_uac(request, answer(request, record_route=("<sip:p1.example.com;lr>",)))
    ack_via = via()
    ack = on_the_wire(dialog.create_ack(20, via=ack_via, extra_headers=[("Authorization", "Digest x")]))
    assert ack.method == "ACK" and ack.cseq == (20, "ACK")
    assert ack.uri == CAMERA_CONTACT
    assert ack.via.branch != request.via.branch and ack.get("Via") == ack_via
    assert ack.to.tag == "cam-tag" and ack.from_.tag == "plat-tag"
    assert ack.get_all("Route") == ["<sip:p1.example.com;lr>"]
    assert ack.get("Authorization") == "Digest x"
    assert dialog.local_seq == 20  # the ACK does not use up a number
    assert dialog.create_request("BYE", via=via()).cseq == (21, "BYE")


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_ack_and_cancel_are_not_new_dialog_requests(method: str) -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    with pytest.raises(ValueError):
        dialog.create_request(method, via=via())
    assert dialog.local_seq == 20


def test_loose_routing_keeps_the_target_in_the_request_uri() -> None:
    request = invite()
    routes = ("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>")
    dialog = Dialog.from_uac(request, answer(request, record_route=routes))
    bye = on_the_wire(dialog.create_request("BYE", via=via()))
    assert bye.uri == CAMERA_CONTACT
    assert bye.values("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]


def test_strict_routing_puts_the_first_route_in_the_request_uri() -> None:
    # §12.2.1.1: the first route (no lr) becomes the Request-URI, minus parameters a Request-URI may not
    # carry, and the remote target goes last in Route.
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, record_route=(
        "<sip:p1.example.com;lr>", "<sip:strict.example.com;method=INVITE;transport=udp>",
    )))
    bye = on_the_wire(dialog.create_request("BYE", via=via()))
    assert bye.uri == "sip:strict.example.com;transport=udp"
    assert bye.values("Route") == ["<sip:p1.example.com;lr>", f"<{CAMERA_CONTACT}>"]
    assert dialog.route_set[0].startswith("<sip:strict")  # the dialog's own state is untouched


# -- what the peer sends ----------------------------------------------------------------------------------------


def in_dialog_from_camera(method: str, cseq: int, contact: str | None = None) -> Request:
    contact_line = f"Contact: {contact}\n" if contact else ""
    return parse_request(
        f"{method} sip:34020000002000000001@10.0.0.1:5060 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 192.168.1.64:5060;branch={new_branch()}\n"
        f"From: <{CHANNEL}>;tag=cam-tag\n"
        f"To: <{PLATFORM}>;tag=plat-tag\n"
        "Call-ID: play-1@10.0.0.1\n"
        f"CSeq: {cseq} {method}\n"
        f"{contact_line}"
        "Max-Forwards: 70\n"
        "Content-Length: 0\n\n"
    )


def test_remote_cseq_must_not_go_backwards() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    dialog.receive_request(in_dialog_from_camera("MESSAGE", 10))  # the first sets the remote sequence
    assert dialog.remote_seq == 10
    dialog.receive_request(in_dialog_from_camera("MESSAGE", 12))  # gaps are allowed
    with pytest.raises(SipError) as caught:
        dialog.receive_request(in_dialog_from_camera("MESSAGE", 11))
    assert caught.value.status == 500 and caught.value.reason == "CSeq out of order"
    assert dialog.remote_seq == 12


def test_ack_is_not_held_to_the_cseq_order() -> None:
    request = invite(cseq=20)
    dialog = Dialog.from_uas(request, "cam-tag", f"<{CAMERA_CONTACT}>")
    platform = Dialog.from_uac(request, answer(request))
    dialog.receive_request(on_the_wire(platform.create_request("INFO", via=via())))
    assert dialog.remote_seq == 21
    # A retransmitted ACK (numbered 20, like its INVITE) arriving after request 21 is no error.
    dialog.receive_request(on_the_wire(platform.create_ack(20, via=via())))
    assert dialog.remote_seq == 21


def test_bye_terminates_the_dialog() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    dialog.receive_request(in_dialog_from_camera("BYE", 1))
    assert dialog.state is DialogState.TERMINATED


def test_target_refresh_by_request() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    dialog.receive_request(in_dialog_from_camera("INFO", 1, contact="<sip:elsewhere@192.168.1.99>"))
    assert dialog.remote_target == CAMERA_CONTACT  # INFO is no target refresh
    dialog.receive_request(in_dialog_from_camera("INVITE", 2, contact="<sip:moved@192.168.1.65:5062>"))
    assert dialog.remote_target == "sip:moved@192.168.1.65:5062"
    dialog.receive_request(in_dialog_from_camera("UPDATE", 3))  # no Contact: no change
    assert dialog.remote_target == "sip:moved@192.168.1.65:5062"


def test_early_dialog_confirmed_by_2xx_recomputes_route_set_and_target() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 180, record_route=("<sip:old.example.com;lr>",)))
    assert dialog.route_set == ["<sip:old.example.com;lr>"]
    ok = answer(request, 200, contact="<sip:final@192.168.1.64:5070>",
                record_route=("<sip:a.example.com;lr>", "<sip:b.example.com;lr>"))
    assert dialog.matches(ok)
    dialog.update_from_response(ok)
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.route_set == ["<sip:b.example.com;lr>", "<sip:a.example.com;lr>"]
    assert dialog.remote_target == "sip:final@192.168.1.64:5070"


def test_early_dialog_ends_with_an_error_response() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request, 180))
    dialog.update_from_response(answer(request, 486))
    assert dialog.state is DialogState.TERMINATED


@pytest.mark.parametrize(("status", "state"), [(481, DialogState.TERMINATED), (408, DialogState.TERMINATED),
                                               (404, DialogState.CONFIRMED), (500, DialogState.CONFIRMED)])
def test_confirmed_dialog_ends_only_on_481_or_408(status: int, state: DialogState) -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    info = dialog.create_request("INFO", via=via())
    dialog.update_from_response(answer(info, status))
    assert dialog.state is state


def test_target_refresh_by_2xx_to_reinvite_only() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    info = dialog.create_request("INFO", via=via())
    dialog.update_from_response(answer(info, 200, contact="<sip:ignored@192.168.1.99>"))
    assert dialog.remote_target == CAMERA_CONTACT
    reinvite = dialog.create_request("INVITE", via=via(), contact=PLATFORM_CONTACT)
    dialog.update_from_response(answer(reinvite, 200, contact="<sip:new@192.168.1.64:5080>"))
    assert dialog.remote_target == "sip:new@192.168.1.64:5080"


def test_matching_and_the_table() -> None:
    request = invite()
    dialog = Dialog.from_uac(request, answer(request))
    table = DialogTable()
    table.add(dialog)
    bye = in_dialog_from_camera("BYE", 1)
    assert dialog_id_for(bye, uas=True) == dialog.id
    assert dialog.matches(bye) and table.for_request(bye) is dialog
    assert table.for_response(answer(dialog.create_request("INFO", via=via()))) is dialog
    stranger = parse_message(bye.serialize().replace(b"tag=cam-tag", b"tag=other"))
    assert not dialog.matches(stranger) and table.for_request(stranger) is None
    assert list(table) == [dialog] and len(table) == 1
    table.remove(dialog)
    assert table.for_request(bye) is None and len(table) == 0


# -- both ends of one dialog talk to each other -----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(["INFO", "MESSAGE", "UPDATE", "NOTIFY"])), max_size=12),
       st.integers(1, 2**31 - 100))
def test_requests_built_by_one_end_are_accepted_by_the_other(moves: list[tuple[bool, str]], first: int) -> None:
    request = invite(cseq=first, record_route=("<sip:p1.example.com;lr>",))
    uac = Dialog.from_uac(request, answer(request, record_route=("<sip:p1.example.com;lr>",)))
    uas = Dialog.from_uas(request, "cam-tag", f"<{CAMERA_CONTACT}>")
    for from_uac, method in moves:
        sender, receiver = (uac, uas) if from_uac else (uas, uac)
        built = on_the_wire(sender.create_request(method, via=via()))
        assert receiver.matches(built)
        receiver.receive_request(built)  # never out of order
        assert receiver.remote_seq == sender.local_seq


# -- subscriptions (RFC 6665) -------------------------------------------------------------------------------------


def subscribe() -> Request:
    return parse_request(
        f"SUBSCRIBE {CHANNEL} SIP/2.0\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKsub1\n"
        f"From: <{PLATFORM}>;tag=sub-tag\n"
        f"To: <{CHANNEL}>\n"
        "Call-ID: catalog-sub@10.0.0.1\n"
        "CSeq: 1 SUBSCRIBE\n"
        f"Contact: {PLATFORM_CONTACT}\n"
        "Event: Catalog;id=7\n"
        "Expires: 3600\n"
        "Max-Forwards: 70\n"
        "Content-Length: 0\n\n"
    )


def notify(event: str = "catalog;id=7", to_tag: str = "sub-tag", cseq: int = 1) -> Request:
    return parse_request(
        f"NOTIFY sip:34020000002000000001@10.0.0.1:5060 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 192.168.1.64:5060;branch={new_branch()}\n"
        f"From: <{CHANNEL}>;tag=notifier-tag\n"
        f"To: <{PLATFORM}>;tag={to_tag}\n"
        "Call-ID: catalog-sub@10.0.0.1\n"
        f"CSeq: {cseq} NOTIFY\n"
        f"Contact: <{CAMERA_CONTACT}>\n"
        f"Event: {event}\n"
        "Subscription-State: active;expires=3600\n"
        "Max-Forwards: 70\n"
        "Content-Length: 0\n\n"
    )


def test_event_key_names_package_and_id() -> None:
    assert event_key(subscribe()) == "catalog;id=7"
    assert event_key(notify(event="Catalog ; id=7")) == "catalog;id=7"
    assert event_key(notify(event="Catalog")) == "catalog"
    assert event_key(invite()) is None


def test_subscribe_dialog_from_2xx() -> None:
    request = subscribe()
    dialog = Dialog.from_uac(request, answer(request, 200, to_tag="notifier-tag"))
    assert dialog.event == "catalog;id=7"
    assert dialog.matches(notify())
    dialog.receive_request(notify(cseq=1))
    refresh = on_the_wire(dialog.create_request(
        "SUBSCRIBE", via=via(), contact=dialog.local_contact, extra_headers=[("Event", "Catalog;id=7")]))
    assert refresh.cseq == (2, "SUBSCRIBE") and refresh.uri == CAMERA_CONTACT
    assert event_key(refresh) == dialog.event


def test_notify_before_the_2xx_creates_the_dialog_and_the_2xx_finds_it() -> None:
    request = subscribe()
    table = DialogTable()
    early_notify = notify()
    assert table.for_request(early_notify) is None
    assert notify_matches(request, early_notify)
    assert not notify_matches(request, notify(event="Alarm"))
    assert not notify_matches(request, notify(to_tag="someone-else"))
    dialog = Dialog.from_notify(request, early_notify)
    table.add(dialog)
    assert dialog.id == DialogId("catalog-sub@10.0.0.1", "sub-tag", "notifier-tag")
    assert dialog.remote_seq == 1 and dialog.local_seq == 1
    assert dialog.remote_target == CAMERA_CONTACT
    assert dialog.event == "catalog;id=7"

    late_ok = answer(request, 200, to_tag="notifier-tag", contact="<sip:34020000001320000001@192.168.1.64:5099>")
    assert table.for_response(late_ok) is dialog
    dialog.update_from_response(late_ok)
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.remote_target == "sip:34020000001320000001@192.168.1.64:5099"
    assert table.for_request(notify(cseq=2)) is dialog  # later NOTIFYs are ordinary in-dialog requests
    dialog.receive_request(notify(cseq=2))
    assert dialog.remote_seq == 2


def test_uas_subscription_sends_notify() -> None:
    request = subscribe()
    dialog = Dialog.from_uas(request, "notifier-tag", f"<{CAMERA_CONTACT}>")
    sent = on_the_wire(dialog.create_request(
        "NOTIFY", via=via(), contact=dialog.local_contact,
        extra_headers=[("Event", "Catalog;id=7"), ("Subscription-State", "active;expires=3600")],
        body=b"<Notify/>", content_type="Application/MANSCDP+xml",
    ))
    assert sent.uri == "sip:34020000002000000001@10.0.0.1:5060"
    assert sent.from_.tag == "notifier-tag" and sent.to.tag == "sub-tag"
    assert sent.cseq == (1, "NOTIFY")
    assert event_key(sent) == dialog.event == "catalog;id=7"
    assert sent.get("Contact") == f"<{CAMERA_CONTACT}>"

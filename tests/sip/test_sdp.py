"""SDP model: real device bodies from interop/, the quirks devices show, offers, and generated round trips."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wire import FIXTURES, needs_fixture

from gbgw.sip.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    MediaParams,
    Origin,
    SdpError,
    SessionDescription,
)

INTEROP = FIXTURES / "interop"

# An SDP body inside a capture or document: v=0 and the `x=` lines that follow it without a break.
_BODY = re.compile(rb"^v=0\r?\n(?:[a-z]=[^\n]*\n?)*", re.MULTILINE)


def bodies(relative: str) -> list[bytes]:
    return [m.group(0) for m in _BODY.finditer((INTEROP / relative).read_bytes())]


def sip_body(relative: str) -> bytes:
    """Body of a byte-exact SIP message file, checked against its Content-Length."""
    raw = (INTEROP / relative).read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length:\s*(\d+)", head).group(1))
    assert len(body) == length
    return body


SRS_INVITE = "hikvision/srs_utest/ProtocolGbSipTest_GbInviteRequest.sip"
SRS_200 = "hikvision/srs_utest/ProtocolGbSipTest_Gb200OkResponse.sip"
PCAP = "pcap/GB28181.Solution_invite-live-catalog.sip.txt"
SRS_OLD = "hikvision/srs-gb28181_deprecated-branch_code-comments_hik-IPC-NVR.txt"
CODEINDEX = "hikvision/codeindex-32433344081_feiyangqingyun_hik-IPC_DS-2CD5024EFWD_full-exchange.md"
DAHUA_RAW = "dahua/FlyLab_demo-gb28181_Example-g28181.reconstructed-raw.txt"
DAHUA_STREAM = "dahua/FlyLab_demo-gb28181_RequestStream.txt"
TEXT_SOURCES = [PCAP, SRS_OLD, CODEINDEX, DAHUA_RAW, DAHUA_STREAM]


def all_interop_bodies() -> list[tuple[str, bytes]]:
    found = [(SRS_INVITE, sip_body(SRS_INVITE)), (SRS_200, sip_body(SRS_200))]
    for source in (s for s in TEXT_SOURCES if (INTEROP / s).exists()):
        found.extend((f"{source}#{i}", body) for i, body in enumerate(bodies(source)))
    return found


ALL_BODIES = all_interop_bodies()


def normalized(body: bytes) -> bytes:
    """What a canonical serializer must make of an already canonical body: stripped lines, CRLF."""
    lines = [line.strip() for line in body.decode().split("\n")]
    return b"".join(line.encode() + b"\r\n" for line in lines if line)


@needs_fixture(INTEROP / CODEINDEX)
def test_interop_body_count() -> None:
    # 2 srs_utest, 2 pcap, 2 srs deprecated, 9 codeindex, 4 Dahua exchange, 195 NCG offers to Dahua.
    assert [len(bodies(s)) for s in TEXT_SOURCES] == [2, 2, 9, 4, 195]
    assert len(ALL_BODIES) == 214


def test_redistributable_interop_body_count() -> None:
    # The same counts for a clone without the withheld Hikvision document.
    assert [len(bodies(s)) for s in TEXT_SOURCES if s != CODEINDEX] == [2, 2, 4, 195]
    assert len([name for name, _ in ALL_BODIES if not name.startswith(CODEINDEX)]) == 205


@pytest.mark.parametrize("body", [body for _, body in ALL_BODIES], ids=[name for name, _ in ALL_BODIES])
def test_interop_bodies_reserialize_unchanged(body: bytes) -> None:
    desc = SessionDescription.parse(body)
    assert len(desc.media) == 1
    assert SessionDescription.parse(desc.serialize()) == desc
    # Every captured body is already in canonical order, so nothing but line ends may change.
    assert desc.serialize() == normalized(body)
    assert desc.unknown_lines == []
    assert desc.media[0].unknown_lines == []


def one_media(body: bytes) -> tuple[SessionDescription, MediaDescription]:
    desc = SessionDescription.parse(body)
    assert len(desc.media) == 1
    return desc, desc.media[0]


def test_srs_hikvision_tcp_invite() -> None:
    desc, media = one_media(sip_body(SRS_INVITE))
    assert desc.session_name == "Play"
    assert desc.address_of(media) == "192.168.3.82"
    assert (media.kind, media.port, media.proto, media.formats) == ("video", 9000, "TCP/RTP/AVP", [96])
    assert media.is_tcp
    assert media.setup is None
    assert media.direction == "recvonly"
    assert media.rtpmap == {96: ("PS", 90000)}
    assert desc.ssrc == "0200007585"
    assert desc.ssrc_int == 200007585


def test_srs_hikvision_tcp_answer() -> None:
    desc, media = one_media(sip_body(SRS_200))
    assert desc.origin == Origin("34020000001320000001", "1941", "1941", "IN", "IP4", "192.168.3.99")
    assert desc.address_of(media) == "192.168.3.99"
    assert (media.port, media.proto, media.is_tcp) == (15060, "TCP/RTP/AVP", True)
    assert media.setup == "active"
    assert media.direction == "sendonly"
    assert media.filesize == 0
    assert desc.ssrc == "0200007585"
    assert desc.media_params_text is None


def test_pcap_exosip_offer_without_y() -> None:
    desc, media = one_media(bodies(PCAP)[0])
    assert desc.address_of(media) == "192.168.230.11"
    assert (media.port, media.proto, media.formats) == (6000, "RTP/AVP", [96, 98, 97])
    assert not media.is_tcp
    assert media.rtpmap == {96: ("PS", 90000), 97: ("MPEG4", 90000), 98: ("H264", 90000)}
    assert desc.ssrc is None
    assert desc.ssrc_int is None


def test_pcap_exosip_answer_with_credentials_and_empty_f() -> None:
    desc, media = one_media(bodies(PCAP)[1])
    assert desc.session_name == "Embedded IPC"
    assert desc.address_of(media) == "192.168.230.100"
    assert media.port == 56147
    assert desc.ssrc == "0000000000"
    assert desc.ssrc_int == 0
    assert desc.media_params_text == ""
    assert desc.media_params is None
    assert media.attribute("password") == "12345678"
    assert media.attribute("username") == "34010000001310000001"
    assert "12345678" not in repr(desc)
    assert "34010000001310000001" not in repr(media)
    assert "12345678" not in repr(media.attributes)
    assert b"a=password:12345678\r\n" in desc.serialize()


def test_srs_old_branch_short_ssrc_and_setup_on_udp() -> None:
    offer, answer = (SessionDescription.parse(b) for b in bodies(SRS_OLD))
    assert offer.ssrc == "630886"
    assert offer.ssrc_int == 630886
    media = answer.media[0]
    assert answer.address_of(media) == "192.168.137.11"
    assert (media.port, media.proto, media.is_tcp, media.setup) == (15060, "RTP/AVP", False, "active")
    assert answer.ssrc == "0000630886"
    assert answer.media_params_text == ""


@needs_fixture(INTEROP / CODEINDEX)
def test_codeindex_hikvision_live_tcp_offer_and_answer() -> None:
    found = bodies(CODEINDEX)
    offer, offer_media = one_media(found[0])
    assert offer.uri == "34020000001310000001:0"
    assert (offer_media.port, offer_media.formats, offer_media.is_tcp) == (8888, [96, 97, 98], True)
    assert offer_media.setup == "active"
    assert offer_media.connection_attr == "new"
    assert offer_media.downloadspeed == 0
    assert offer_media.streamprofile == 0
    assert offer.ssrc == "0000010000"
    answer, media = one_media(found[1])
    assert answer.address_of(media) == "192.168.0.64"
    assert (media.port, media.is_tcp, media.setup) == (15060, True, "passive")
    assert answer.ssrc == "0000010000"


@needs_fixture(INTEROP / CODEINDEX)
def test_codeindex_hikvision_download() -> None:
    found = bodies(CODEINDEX)
    offer, media = one_media(found[2])
    assert offer.session_name == "Download"
    assert offer.timing == (1744946094, 1744947129)
    assert (media.port, media.is_tcp, media.setup, media.connection_attr) == (6902, False, "passive", "new")
    assert media.downloadspeed == 8
    assert media.streamprofile == 1
    assert offer.ssrc == "1000010003"
    answer, media = one_media(found[3])
    assert answer.timing == (0, 0)
    assert media.setup == "active"
    assert media.filesize == 262209536
    _, media = one_media(found[4])
    assert media.filesize == 1367160


@needs_fixture(INTEROP / CODEINDEX)
def test_codeindex_talk_audio_with_f_line() -> None:
    found = bodies(CODEINDEX)
    invite, media = one_media(found[5])
    assert invite.info == "VCam BroadCast Session"
    assert (media.kind, media.port, media.formats) == ("audio", 9776, [8, 96])
    # rtpmap with an encoding parameter (channels) still gives name and clock.
    assert media.rtpmap == {8: ("PCMA", 8000), 96: ("PS", 90000)}
    assert invite.ssrc == "0022440333"
    assert invite.media_params == MediaParams(0, 0, 0, 0, 0, 1, 8, 1)
    _, media = one_media(found[6])
    assert (media.port, media.direction) == (15060, "sendonly")
    tcp_invite, media = one_media(found[7])
    assert (media.kind, media.port, media.is_tcp, media.setup) == ("audio", 15066, True, "active")
    assert tcp_invite.media_params_text == "v/////a/1/8/1"
    assert tcp_invite.media_params == MediaParams(audio_codec=1, audio_bitrate=8, sample_rate=1)
    answer, media = one_media(found[8])
    assert answer.address_of(media) == "192.168.0.110"
    assert (media.port, media.setup, media.connection_attr) == (30004, "passive", "new")
    assert answer.ssrc == "0200000017"


def test_dahua_answer() -> None:
    found = bodies(DAHUA_RAW)
    offer, media = one_media(found[0])
    assert (media.port, media.formats) == (33736, [96, 98, 97])
    assert offer.ssrc is None
    answer, media = one_media(found[1])
    assert answer.info == "VCam Live Video"
    assert answer.address_of(media) == "192.168.28.110"
    assert media.port == 9708
    assert media.streamprofile == 0
    assert answer.ssrc == "0000000000"
    assert answer.media_params == MediaParams(0, 0, 0, 0, 0, 0, 0, 0)
    assert one_media(found[3])[1].port == 9712


def test_dahua_ncg_offers() -> None:
    found = bodies(DAHUA_STREAM)
    desc, media = one_media(found[0])
    assert desc.origin == Origin("43241", "0", "0", "IN", "IP4", "0.0.0.0")
    assert desc.address_of(media) == "0.0.0.0"
    assert media.port == 32500
    assert media.attribute("streamMode") == "MAIN"
    assert media.attribute("STREAMMODE") == "MAIN"
    assert media.filesize == -1
    assert desc.ssrc == "0999999999"
    assert one_media(found[-1])[1].port == 32648


# --- quirks -----------------------------------------------------------------------------------------

ANSWER = (
    "v=0\r\n"
    "o=34020000001320000001 0 0 IN IP4 192.168.1.64\r\n"
    "s=Play\r\n"
    "c=IN IP4 192.168.1.64\r\n"
    "t=0 0\r\n"
    "m=video 15060 TCP/RTP/AVP 96\r\n"
    "a=sendonly\r\n"
    "a=setup:active\r\n"
    "a=rtpmap:96 PS/90000\r\n"
    "y=0100000001\r\n"
)


def test_empty_addresses_in_o_and_c() -> None:
    desc = SessionDescription.parse("v=0\r\no=- 0 0 IN IP4\r\ns=Play\r\nc=IN IP4 \r\nt=0 0\r\nm=video 9 RTP/AVP 96\r\n")
    assert desc.origin == Origin("-", "0", "0", "IN", "IP4", "")
    assert desc.connection == Connection("IN", "IP4", "")
    assert desc.address_of(desc.media[0]) == ""
    assert SessionDescription.parse(desc.serialize()) == desc


def test_no_connection_anywhere_gives_empty_address() -> None:
    desc = SessionDescription.parse("v=0\r\nm=video 9 RTP/AVP 96\r\n")
    assert desc.address_of(desc.media[0]) == ""


def test_media_level_connection_wins() -> None:
    desc = SessionDescription.parse("v=0\nc=IN IP4 10.0.0.1\nm=video 9 RTP/AVP 96\nc=IN IP4 10.0.0.2\n")
    assert desc.address_of(desc.media[0]) == "10.0.0.2"


def test_username_with_spaces_in_origin() -> None:
    desc = SessionDescription.parse("v=0\r\no=Embedded Net DVR 1 2 IN IP4 10.0.0.1\r\n")
    assert desc.origin == Origin("Embedded Net DVR", "1", "2", "IN", "IP4", "10.0.0.1")


@pytest.mark.parametrize(
    "variant",
    [
        ANSWER[:-2],  # no final CRLF
        ANSWER.replace("\r\n", "\n"),  # LF only
        ANSWER.replace("\r\n", " \t\r\n"),  # trailing whitespace
        ANSWER.replace("\r\n", "\r\n\r\n"),  # blank lines
        "\r\n" + ANSWER.replace("t=0 0\r\n", "t=0 0\r\n\r\n") + "\r\n\r\n",
    ],
)
def test_line_end_and_whitespace_variants_parse_the_same(variant: str) -> None:
    assert SessionDescription.parse(variant) == SessionDescription.parse(ANSWER)
    assert SessionDescription.parse(variant).serialize() == ANSWER.encode()


def test_bytes_and_str_input_agree() -> None:
    assert SessionDescription.parse(ANSWER.encode()) == SessionDescription.parse(ANSWER)


def test_case_variants_of_setup_and_transport() -> None:
    desc = SessionDescription.parse(ANSWER.replace("a=setup:active", "a=Setup:Active").replace("TCP/RTP/AVP", "tcp/rtp/avp"))
    media = desc.media[0]
    assert media.setup == "active"
    assert media.is_tcp
    assert media.proto == "tcp/rtp/avp"
    # The device's spelling is echoed, not normalised.
    assert b"a=Setup:Active\r\n" in desc.serialize()
    assert b"m=video 15060 tcp/rtp/avp 96\r\n" in desc.serialize()


def test_connection_attr_case() -> None:
    desc = SessionDescription.parse(ANSWER.replace("a=sendonly", "a=CONNECTION:Existing\r\na=SendOnly"))
    assert desc.media[0].connection_attr == "existing"
    assert desc.media[0].direction == "sendonly"


def test_setup_on_udp_is_kept() -> None:
    desc = SessionDescription.parse(ANSWER.replace("TCP/RTP/AVP", "RTP/AVP"))
    assert not desc.media[0].is_tcp
    assert desc.media[0].setup == "active"


def test_missing_y_and_empty_f() -> None:
    desc = SessionDescription.parse(ANSWER.replace("y=0100000001\r\n", "f=\r\n"))
    assert desc.ssrc is None
    assert desc.ssrc_int is None
    assert desc.media_params_text == ""
    assert desc.media_params is None
    assert desc.serialize().endswith(b"a=rtpmap:96 PS/90000\r\nf=\r\n")


def test_non_decimal_ssrc_is_kept_as_text() -> None:
    desc = SessionDescription.parse(ANSWER.replace("y=0100000001", "y=abc"))
    assert desc.ssrc == "abc"
    assert desc.ssrc_int is None


def test_huge_numbers_do_not_raise() -> None:
    digits = "9" * 5000
    desc = SessionDescription.parse(
        f"v=0\r\nt={digits} 0\r\nm=video 9 RTP/AVP 96\r\na=filesize:{digits}\r\na=rtpmap:{digits} PS/90000\r\n"
        f"y={digits}\r\nf=v/{digits}/////a///\r\n"
    )
    assert desc.timing is None
    assert desc.media[0].filesize is None
    assert desc.media[0].rtpmap == {}
    assert desc.ssrc_int is None
    assert desc.media_params is None
    with pytest.raises(SdpError):
        SessionDescription.parse(f"v={digits}\r\n")
    with pytest.raises(SdpError):
        SessionDescription.parse(f"v=0\r\nm=video {digits} RTP/AVP 96\r\n")


def test_y_and_f_at_session_level_are_written_after_theone_media() -> None:
    body = "v=0\r\ns=Play\r\ny=0100000002\r\nf=v/2/4/25/1/4096a///\r\nm=video 9000 RTP/AVP 96\r\na=recvonly\r\n"
    desc = SessionDescription.parse(body)
    assert desc.ssrc == "0100000002"
    assert desc.media_params == MediaParams(2, 4, 25, 1, 4096)
    assert desc.serialize() == (
        b"v=0\r\ns=Play\r\nm=video 9000 RTP/AVP 96\r\na=recvonly\r\ny=0100000002\r\nf=v/2/4/25/1/4096a///\r\n"
    )


def test_lines_after_y_stay_in_their_media_section() -> None:
    desc = SessionDescription.parse(ANSWER + "a=filesize:10\r\n")
    assert desc.media[0].filesize == 10
    assert desc.serialize().endswith(b"a=filesize:10\r\ny=0100000001\r\n")


def test_repeated_y_last_wins_and_round_trips() -> None:
    desc = SessionDescription.parse("v=0\r\ny=0100000001\r\nm=video 9 RTP/AVP 96\r\ny=0100000002\r\n")
    assert desc.ssrc == "0100000002"
    assert desc.unknown_lines == ["y=0100000001"]
    again = SessionDescription.parse(desc.serialize())
    assert again == desc


def test_repeated_f_last_wins_and_round_trips() -> None:
    desc = SessionDescription.parse("v=0\r\nm=video 9 RTP/AVP 96\r\nf=\r\nx=1\r\nf=v/////a///\r\n")
    assert desc.media_params == MediaParams()
    assert desc.media[0].unknown_lines == ["f=", "x=1"]
    assert SessionDescription.parse(desc.serialize()) == desc


def test_repeated_y_and_f_interleaved_keep_their_places() -> None:
    body = "v=0\r\ny=1\r\nf=a\r\nx=1\r\ny=2\r\nf=b\r\ny=3\r\nx=2\r\nf=c\r\n"
    desc = SessionDescription.parse(body)
    assert (desc.ssrc, desc.media_params_text) == ("3", "c")
    assert desc.unknown_lines == ["y=1", "f=a", "x=1", "y=2", "f=b", "x=2"]
    assert SessionDescription.parse(desc.serialize()) == desc


def test_gb18030_session_name() -> None:
    body = "v=0\r\ns=Play\r\ni=前门摄像机\r\n".encode("gb18030")
    assert SessionDescription.parse(body).info == "前门摄像机"


def test_credentials_and_key_are_masked_in_repr() -> None:
    body = ANSWER + "a=username:admin\r\na=password:s3cret\r\na=Password:other\r\n"
    desc = SessionDescription.parse(body.replace("t=0 0\r\n", "t=0 0\r\nk=clear:topsecret\r\na=password:hunter2\r\n"))
    text = repr(desc)
    for secret in ("admin", "s3cret", "other", "topsecret", "hunter2"):
        assert secret not in text
    assert "'***'" in text
    assert "0100000001" in text  # the rest is still shown
    assert desc.key == "clear:topsecret"
    # Plain tuples put in by a caller are masked as well.
    media = MediaDescription("video", 9, "RTP/AVP", [96], attributes=[("password", "plain")])  # type: ignore[list-item]
    assert "plain" not in repr(media)
    assert media.attribute("password") == "plain"


def test_empty_credential_is_shown_as_empty() -> None:
    assert repr(Attribute("password", "")) == "Attribute(name='password', value='')"
    assert repr(Attribute("password", "x")) == "Attribute(name='password', value='***')"


def test_no_version_line_is_fatal() -> None:
    with pytest.raises(SdpError, match="no v= line") as info:
        SessionDescription.parse("o=- 0 0 IN IP4 1.2.3.4\r\ns=Play\r\n")
    assert info.value.line is None
    assert info.value.status_code == 400
    with pytest.raises(SdpError):
        SessionDescription.parse(b"")


def test_non_numeric_version_is_fatal() -> None:
    with pytest.raises(SdpError, match=r"'v=zero'"):
        SessionDescription.parse("v=zero\r\n")


@pytest.mark.parametrize(
    "line",
    ["m=video abc RTP/AVP 96", "m=video 9000 RTP/AVP PS", "m=video 9000", "m=video 70000 RTP/AVP 96", "m=video 9000/x RTP/AVP 96"],
)
def test_unusable_m_line_is_fatal_and_named(line: str) -> None:
    with pytest.raises(SdpError) as info:
        SessionDescription.parse(f"v=0\r\n{line}\r\n")
    assert isinstance(info.value, ValueError)
    assert info.value.line == line
    assert repr(line) in str(info.value)


def test_long_bad_line_is_shortened_in_the_message() -> None:
    line = "m=video " + "x" * 5000 + " RTP/AVP 96"
    with pytest.raises(SdpError) as info:
        SessionDescription.parse("v=0\r\n" + line)
    assert len(str(info.value)) < 300
    assert info.value.line == line


def test_port_count() -> None:
    desc = SessionDescription.parse("v=0\r\nm=video 9000/2 RTP/AVP 96\r\n")
    assert (desc.media[0].port, desc.media[0].port_count) == (9000, 2)
    assert b"m=video 9000/2 RTP/AVP 96\r\n" in desc.serialize()


def test_lines_that_cannot_be_understood_are_kept_in_order() -> None:
    body = (
        "v=0\r\n"
        "o=broken\r\n"
        "o=- 1 1 IN IP4 10.0.0.1\r\n"
        "s=Play\r\n"
        "s=Second\r\n"
        "garbage without equals\r\n"
        "t=now later\r\n"
        "x=extension\r\n"
        "m=video 9000 RTP/AVP 96\r\n"
        "c=IN\r\n"
        "Q=upper\r\n"
        "a=rtpmap:96 PS/90000\r\n"
        "v=0\r\n"
        "y=0100000001\r\n"
    )
    desc = SessionDescription.parse(body)
    assert desc.origin == Origin("-", "1", "1", "IN", "IP4", "10.0.0.1")
    assert desc.session_name == "Play"
    assert desc.timing is None
    assert desc.unknown_lines == ["o=broken", "s=Second", "garbage without equals", "t=now later", "x=extension"]
    assert desc.media[0].connection is None
    assert desc.media[0].unknown_lines == ["c=IN", "Q=upper", "v=0"]
    again = SessionDescription.parse(desc.serialize())
    assert again == desc
    assert again.serialize() == desc.serialize()


def test_attribute_helpers_tolerate_junk() -> None:
    media = SessionDescription.parse(
        "v=0\r\nm=video 9 RTP/AVP 96 97\r\na=downloadspeed:fast\r\na=filesize\r\n"
        "a=rtpmap:96\r\na=rtpmap:x PS/90000\r\na=rtpmap:97 H264/90000\r\na=setup\r\na=streamnumber: 1\r\n"
    ).media[0]
    assert media.downloadspeed is None
    assert media.filesize is None
    assert media.rtpmap == {97: ("H264", 90000)}
    assert media.setup is None
    assert media.streamnumber == 1
    assert media.streamprofile is None
    assert media.direction is None


def test_session_level_direction_applies_toone_media() -> None:
    desc = SessionDescription.parse("v=0\r\na=recvonly\r\nm=video 9 RTP/AVP 96\r\nm=audio 8 RTP/AVP 8\r\na=inactive\r\n")
    assert desc.direction == "recvonly"
    assert desc.direction_of(desc.media[0]) == "recvonly"
    assert desc.direction_of(desc.media[1]) == "inactive"
    plain = SessionDescription.parse("v=0\r\nm=video 9 RTP/AVP 96\r\n")
    assert plain.direction_of(plain.media[0]) == "sendrecv"


def test_all_session_fields_in_canonical_order() -> None:
    body = (
        "v=0\r\n"
        "o=u 1 2 IN IP4 10.0.0.1\r\n"
        "s=Playback\r\n"
        "i=info\r\n"
        "u=34020000001310000001:0\r\n"
        "e=a@b.c\r\n"
        "p=+86 10 1234\r\n"
        "c=IN IP4 10.0.0.1\r\n"
        "b=AS:2048\r\n"
        "t=1744946094 1744947129\r\n"
        "r=7d 1h 0 25h\r\n"
        "z=2882844526 -1h\r\n"
        "k=prompt\r\n"
        "a=tool:x\r\n"
        "m=video 9 RTP/AVP 96\r\n"
        "i=cam\r\n"
        "c=IN IP4 10.0.0.2\r\n"
        "b=AS:1024\r\n"
        "k=prompt\r\n"
        "a=recvonly\r\n"
        "m=audio 10 RTP/AVP 8\r\n"
        "y=1000000001\r\n"
        "f=v/2/6/25/2/4096a/1/8/1\r\n"
    )
    # Scramble the session-level lines: the serializer restores RFC 4566 order.
    lines = body.split("\r\n")
    scrambled = "\r\n".join([lines[0], *reversed(lines[1:14]), *lines[14:]])
    desc = SessionDescription.parse(scrambled)
    assert desc.uri == "34020000001310000001:0"
    assert desc.emails == ["a@b.c"]
    assert desc.phones == ["+86 10 1234"]
    assert desc.bandwidths == ["AS:2048"]
    assert desc.repeats == ["7d 1h 0 25h"]
    assert desc.zone == "2882844526 -1h"
    assert desc.media[0].info == "cam"
    assert desc.media[0].bandwidths == ["AS:1024"]
    assert desc.media[0].key == "prompt"
    assert desc.media_params == MediaParams(2, 6, 25, 2, 4096, 1, 8, 1)
    assert desc.serialize() == body.encode()


def test_empty_session_name_is_written_as_a_space() -> None:
    desc = SessionDescription.parse("v=0\r\ns=\r\n")
    assert desc.session_name == ""
    assert desc.serialize() == b"v=0\r\ns= \r\n"


def test_serialize_refuses_injected_lines() -> None:
    desc = SessionDescription.parse(ANSWER)
    desc.session_name = "Play\r\nc=IN IP4 6.6.6.6"
    with pytest.raises(ValueError, match="line break"):
        desc.serialize()
    desc.session_name = "Play"
    desc.media[0].attributes.append(Attribute("x", "1\n2"))
    with pytest.raises(ValueError, match="line break"):
        desc.serialize()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v/2/6/25/2/4096a/1/8/1", MediaParams(2, 6, 25, 2, 4096, 1, 8, 1)),
        ("v/2/4/25/1/4096a///", MediaParams(2, 4, 25, 1, 4096)),
        (" v/////a/1/8/1", MediaParams(None, None, None, None, None, 1, 8, 1)),
        ("", None),
        ("v/2/4/25/1a/1/8/1", None),  # a video field left out
        ("v/x/4/25/1/4096a/1/8/1", None),
        ("v/2/4/25/1/4096", None),
        ("v/2/4/25/1/4096a/1/8/1/9", None),
        ("v/２/4/25/1/4096a/1/8/1", None),  # full-width digit
        ("v/2/4/25/1/12345678901a///", None),  # longer than any 32-bit value
    ],
)
def test_media_params_parse(text: str, expected: MediaParams | None) -> None:
    assert MediaParams.parse(text) == expected


_params = st.builds(MediaParams, *[st.none() | st.integers(0, 4294967296)] * 8)


@given(_params)
def test_media_params_round_trip(params: MediaParams) -> None:
    assert MediaParams.parse(params.serialize()) == params


# --- offers -----------------------------------------------------------------------------------------

PS_H264_MPEG4 = [(96, "PS", 90000), (98, "H264", 90000), (97, "MPEG4", 90000)]

EXPECTED_UDP_OFFER = (
    b"v=0\r\n"
    b"o=34020000002000000001 0 0 IN IP4 192.168.1.10\r\n"
    b"s=Play\r\n"
    b"c=IN IP4 192.168.1.10\r\n"
    b"t=0 0\r\n"
    b"m=video 30000 RTP/AVP 96 98 97\r\n"
    b"a=recvonly\r\n"
    b"a=rtpmap:96 PS/90000\r\n"
    b"a=rtpmap:98 H264/90000\r\n"
    b"a=rtpmap:97 MPEG4/90000\r\n"
    b"y=0100000001\r\n"
)


def test_udp_offer_matches_the_standard_form() -> None:
    offer = SessionDescription.offer(
        "Play", "34020000002000000001", "192.168.1.10", 30000, "RTP/AVP", PS_H264_MPEG4, "0100000001"
    )
    assert offer.serialize() == EXPECTED_UDP_OFFER
    assert SessionDescription.parse(EXPECTED_UDP_OFFER) == offer


def test_tcp_offer() -> None:
    offer = SessionDescription.offer(
        "Play", "34020000002000000001", "192.168.1.10", 30000, "TCP/RTP/AVP", PS_H264_MPEG4, 100000001,
        setup="passive", connection="new",
    )
    expected = EXPECTED_UDP_OFFER.replace(b"RTP/AVP 96", b"TCP/RTP/AVP 96").replace(
        b"y=", b"a=setup:passive\r\na=connection:new\r\ny="
    )
    assert offer.serialize() == expected
    media = offer.media[0]
    assert (media.is_tcp, media.setup, media.connection_attr) == (True, "passive", "new")
    assert offer.ssrc == "0100000001"


def test_download_offer_with_uri_time_params_and_extra_attributes() -> None:
    offer = SessionDescription.offer(
        "Download", "34020000002000000001", "192.168.1.10", 30002, "RTP/AVP", [(96, "PS", 90000)], "1000010003",
        time=(1744946094, 1744947129), uri="34020000001310000001:0",
        media_params=MediaParams(2, 6, 25, 2, 4096), attributes=[("downloadspeed", "4")],
    )
    assert offer.serialize() == (
        b"v=0\r\n"
        b"o=34020000002000000001 0 0 IN IP4 192.168.1.10\r\n"
        b"s=Download\r\n"
        b"u=34020000001310000001:0\r\n"
        b"c=IN IP4 192.168.1.10\r\n"
        b"t=1744946094 1744947129\r\n"
        b"m=video 30002 RTP/AVP 96\r\n"
        b"a=recvonly\r\n"
        b"a=rtpmap:96 PS/90000\r\n"
        b"a=downloadspeed:4\r\n"
        b"y=1000010003\r\n"
        b"f=v/2/6/25/2/4096a///\r\n"
    )
    assert SessionDescription.parse(offer.serialize()).media[0].downloadspeed == 4


def test_talk_offer_audio_ipv6() -> None:
    offer = SessionDescription.offer(
        "Talk", "34020000002000000001", "fd00::10", 30004, "RTP/AVP", [(8, "PCMA", 8000)], None,
        kind="audio", direction="sendonly", media_params="v/////a/1/8/1",
    )
    text = offer.serialize()
    assert b"o=34020000002000000001 0 0 IN IP6 fd00::10\r\n" in text
    assert b"m=audio 30004 RTP/AVP 8\r\na=sendonly\r\na=rtpmap:8 PCMA/8000\r\nf=v/////a/1/8/1\r\n" in text
    assert b"y=" not in text


@pytest.mark.parametrize(
    "bad",
    [
        {"address": "0.0.0.0"},
        {"address": ""},
        {"ssrc": "123"},
        {"ssrc": "01000000x1"},
        {"ssrc": 10_000_000_000},
        {"ssrc": -1},
        {"setup": "Active"},
        {"connection": "old"},
        {"direction": "both"},
    ],
)
def test_offer_refuses_unusable_values(bad: dict[str, object]) -> None:
    args: dict[str, object] = {
        "session_name": "Play", "origin_user": "34020000002000000001", "address": "192.168.1.10", "port": 30000,
        "proto": "RTP/AVP", "payloads": PS_H264_MPEG4, "ssrc": "0100000001",
    }
    args.update(bad)
    with pytest.raises(ValueError):
        SessionDescription.offer(**args)  # type: ignore[arg-type]


# --- generated round trips --------------------------------------------------------------------------

_CHARS = st.sampled_from([*(chr(c) for c in range(0x21, 0x7F)), " ", "中", "文", "é"])
# Line contents never start or end with whitespace: the parser strips lines, as real bodies need.
_text = st.text(_CHARS, max_size=20).map(str.strip)
_token = st.text(st.sampled_from([chr(c) for c in range(0x21, 0x7F)]), min_size=1, max_size=12)
_address = st.one_of(st.just(""), st.ip_addresses().map(str), _token.filter(lambda t: t.upper() not in {"IP4", "IP6"}))
_addrtype = st.sampled_from(["IP4", "IP6"])
_digits = st.text(st.sampled_from("0123456789"), min_size=1, max_size=12)
_origin = st.builds(Origin, _token, _digits, _digits, st.just("IN"), _addrtype, _address)
_connection = st.builds(Connection, st.just("IN"), _addrtype, _address)
_attribute = st.builds(
    Attribute,
    st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True),
    st.none() | _text,
)
# Lines no parser rule claims: an upper-case type letter, or no "=" after the first character.
_unknown_line = st.one_of(
    st.builds(lambda letter, rest: f"{letter}={rest}", st.sampled_from("ABQXZ"), _text),
    st.from_regex(r"[a-z][a-z0-9 ]{2,10}[a-z0-9]", fullmatch=True).filter(lambda s: s[1] not in "= "),
)
_media_description = st.builds(
    MediaDescription,
    kind=st.sampled_from(["video", "audio"]) | _token,
    port=st.integers(0, 65535),
    proto=st.sampled_from(["RTP/AVP", "TCP/RTP/AVP", "tcp/rtp/avp", "RTP/AVPF"]),
    formats=st.lists(st.integers(0, 127), max_size=4),
    port_count=st.none() | st.integers(1, 8),
    info=st.none() | _text,
    connection=st.none() | _connection,
    bandwidths=st.lists(_text, max_size=2),
    key=st.none() | _text,
    attributes=st.lists(_attribute, max_size=6),
    unknown_lines=st.lists(_unknown_line, max_size=2),
)
_session = st.builds(
    SessionDescription,
    version=st.integers(0, 9),
    origin=st.none() | _origin,
    session_name=st.none() | st.sampled_from(["Play", "Playback", "Download", "Talk", "Embedded IPC"]) | _text,
    info=st.none() | _text,
    uri=st.none() | _text,
    emails=st.lists(_text, max_size=2),
    phones=st.lists(_text, max_size=2),
    connection=st.none() | _connection,
    bandwidths=st.lists(_text, max_size=2),
    timing=st.none() | st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)),
    repeats=st.lists(_text, max_size=2),
    zone=st.none() | _text,
    key=st.none() | _text,
    attributes=st.lists(_attribute, max_size=4),
    unknown_lines=st.lists(_unknown_line, max_size=2),
    media=st.lists(_media_description, max_size=3),
    ssrc=st.none() | st.text(st.sampled_from("0123456789"), max_size=10),
    media_params_text=st.none() | _text | _params.map(MediaParams.serialize),
)


@given(_session)
def test_generated_descriptions_round_trip(desc: SessionDescription) -> None:
    text = desc.serialize()
    again = SessionDescription.parse(text)
    assert again == desc
    assert again.serialize() == text
    assert text.endswith(b"\r\n")
    assert b"\n" not in text.replace(b"\r\n", b"")


@given(st.binary(max_size=300) | st.text(max_size=300))
def test_arbitrary_input_parses_or_raises_sdp_error(data: bytes | str) -> None:
    try:
        desc = SessionDescription.parse(data)
    except SdpError:
        return
    assert SessionDescription.parse(desc.serialize()) == desc


@given(st.lists(st.sampled_from(ANSWER.split("\r\n")[1:-1]) | _unknown_line, max_size=15))
def test_shuffled_real_lines_round_trip(lines: list[str]) -> None:
    desc = SessionDescription.parse("v=0\r\n" + "\r\n".join(lines))
    assert SessionDescription.parse(desc.serialize()) == desc

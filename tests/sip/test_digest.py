"""Tests for sip.digest: known vectors, real device captures, server semantics, round-trip properties."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire import FIXTURES, needs_fixture

from gbgw.sip.digest import (
    DigestAlgorithm,
    DigestChallenge,
    DigestClient,
    DigestCredentials,
    DigestError,
    DigestResult,
    DigestServer,
    answer_challenge,
    parse_challenge,
    parse_credentials,
)

INTEROP = FIXTURES / "interop"
HIKVISION_README = "hikvision/codeindex-32433344081_feiyangqingyun_hik-IPC_DS-2CD5024EFWD_full-exchange.md"
SECRET = b"0123456789abcdef-test-secret"
REALM = "3402000000"
TTL = 300.0
T0 = 1_700_000_000.0


def reference_response(
    hash_name: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    sess: bool = False,
) -> str:
    """RFC 2617 section 3.2.2 written out independently of sip.digest."""

    def kd(data: str) -> str:
        return hashlib.new(hash_name, data.encode("utf-8")).hexdigest()

    a1 = kd(":".join([username, realm, password]))
    if sess:
        a1 = kd(":".join([a1, nonce, str(cnonce)]))
    a2 = kd(method + ":" + uri)
    middle = [nonce, str(nc), str(cnonce), str(qop)] if qop else [nonce]
    return kd(":".join([a1, *middle, a2]))


def response_of(header: str) -> str:
    m = re.search(r'response="([0-9a-f]+)"', header)
    assert m is not None
    return m.group(1)


# --- known vectors -------------------------------------------------------------------------------

RFC2617_CHALLENGE = """Digest
        realm="testrealm@host.com",
        qop="auth,auth-int",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        opaque="5ccc069c403ebaf9f0171e9517f40e41\""""

RFC2617_AUTHORIZATION = """Digest username="Mufasa",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="/dir/index.html",
        qop=auth,
        nc=00000001,
        cnonce="0a4f113b",
        response="6629fae49393a05397450978507c4ef1",
        opaque="5ccc069c403ebaf9f0171e9517f40e41\""""


def test_rfc2617_example_parses() -> None:
    ch = parse_challenge(RFC2617_CHALLENGE)
    assert ch.realm == "testrealm@host.com"
    assert ch.nonce == "dcd98b7102dd2f0e8b11d0f600bfb0c093"
    assert ch.qop == ("auth", "auth-int")
    assert ch.opaque == "5ccc069c403ebaf9f0171e9517f40e41"
    assert ch.algorithm is DigestAlgorithm.MD5
    cr = parse_credentials(RFC2617_AUTHORIZATION)
    assert (cr.username, cr.uri, cr.qop, cr.nc, cr.cnonce) == (
        "Mufasa", "/dir/index.html", "auth", "00000001", "0a4f113b",
    )
    assert cr.response == "6629fae49393a05397450978507c4ef1"


def test_rfc2617_example_client_answer() -> None:
    ch = parse_challenge(RFC2617_CHALLENGE)
    header = answer_challenge(ch, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b")
    assert response_of(header) == "6629fae49393a05397450978507c4ef1"
    cr = parse_credentials(header)
    assert cr.qop == "auth" and cr.nc == "00000001" and cr.opaque == "5ccc069c403ebaf9f0171e9517f40e41"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_examples(algorithm: str, expected: str) -> None:
    ch = parse_challenge(
        'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=' + algorithm + ", "
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    header = answer_challenge(
        ch, "GET", "/dir/index.html", "Mufasa", "Circle of Life",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert response_of(header) == expected
    assert f"algorithm={algorithm}" in header


def _interop_headers() -> list[tuple[str, str, str]]:
    """(file, header name, value) for every auth header in the shared captures."""
    found = []
    pattern = re.compile(
        r"^\s*(WWW-Authenticate|Proxy-Authenticate|Authorization|Proxy-Authorization)\s*:\s*(.+?)\s*$",
        re.IGNORECASE | re.MULTILINE,
    )
    for path in sorted(INTEROP.rglob("*")):
        if not path.is_file() or path.suffix == ".pcapng":
            continue
        text = path.read_text("utf-8", errors="replace")
        for m in pattern.finditer(text):
            found.append((str(path.relative_to(INTEROP)), m.group(1).lower(), m.group(2)))
    return found


INTEROP_HEADERS = _interop_headers()


@needs_fixture(INTEROP / HIKVISION_README)
def test_interop_files_have_auth_headers() -> None:
    # 14 at the time of writing (eXosip pcap, Dahua, Hikvision); guards against the glob finding nothing.
    assert len(INTEROP_HEADERS) >= 12
    assert {name for _, name, _ in INTEROP_HEADERS} >= {"www-authenticate", "authorization"}


def test_redistributable_interop_files_have_auth_headers() -> None:
    # The same guard for a clone without the withheld Hikvision document: 9 from eXosip and Dahua.
    headers = [(s, n) for s, n, _ in INTEROP_HEADERS if s != HIKVISION_README]
    assert len(headers) >= 9
    assert {name for _, name in headers} >= {"www-authenticate", "authorization"}


@pytest.mark.parametrize(("source", "name", "value"), INTEROP_HEADERS)
def test_every_interop_auth_header_parses(source: str, name: str, value: str) -> None:
    if name.endswith("authenticate"):
        ch = parse_challenge(value)
        assert ch.realm and ch.nonce
        assert ch.algorithm is DigestAlgorithm.MD5
    else:
        cr = parse_credentials(value)
        assert cr.username and cr.nonce and cr.uri and len(cr.response) == 32


# The eXosip camera's password is in its own SDP (a=password:12345678, invite-live-catalog capture);
# the Hikvision IPC in the README uses the same common default.
DEVICE_PASSWORD_SOURCES = [
    "pcap/GB28181.Solution_reg-auth.sip.txt",
    HIKVISION_README,
]


def test_device_password_is_in_the_capture() -> None:
    sdp = (INTEROP / "pcap/GB28181.Solution_invite-live-catalog.sip.txt").read_text("utf-8", errors="replace")
    assert "a=password:12345678" in sdp


@pytest.mark.parametrize("source", [pytest.param(s, marks=needs_fixture(INTEROP / s)) for s in DEVICE_PASSWORD_SOURCES])
def test_real_device_responses_reproduced(source: str) -> None:
    creds = [parse_credentials(v) for s, n, v in INTEROP_HEADERS if s == source and n == "authorization"]
    assert len(creds) == 2
    for cr in creds:
        assert cr.response == reference_response(
            "md5", cr.username, cr.realm, "12345678", "REGISTER", cr.uri, cr.nonce
        )
        ch = DigestChallenge(realm=cr.realm, nonce=cr.nonce)
        header = answer_challenge(ch, "REGISTER", cr.uri, cr.username, "12345678")
        assert response_of(header) == cr.response


@needs_fixture(INTEROP / DEVICE_PASSWORD_SOURCES[1])
def test_hikvision_username_differs_from_device_id_and_lowercase_algorithm() -> None:
    source = DEVICE_PASSWORD_SOURCES[1]
    text = (INTEROP / source).read_text("utf-8")
    assert "algorithm=md5" in text
    challenges = [parse_challenge(v) for s, n, v in INTEROP_HEADERS if s == source and n == "www-authenticate"]
    creds = [parse_credentials(v) for s, n, v in INTEROP_HEADERS if s == source and n == "authorization"]
    assert [c.nonce for c in challenges] == [c.nonce for c in creds]
    for ch, cr in zip(challenges, creds, strict=True):
        assert ch.algorithm is DigestAlgorithm.MD5
        assert cr.username == "34020000001320000088"  # From: is ...0002
        header = answer_challenge(ch, "REGISTER", cr.uri, cr.username, "12345678")
        assert response_of(header) == cr.response


def test_exosip_challenge_without_algorithm_answered_like_the_device() -> None:
    source = DEVICE_PASSWORD_SOURCES[0]
    pairs = [(n, v) for s, n, v in INTEROP_HEADERS if s == source]
    challenge_value = next(v for n, v in pairs if n == "www-authenticate" and "9450c474d1150064" in v)
    device_answer = parse_credentials(next(v for n, v in pairs if n == "authorization" and "9450c474" in v))
    assert "algorithm" not in challenge_value
    ours = parse_credentials(
        answer_challenge(parse_challenge(challenge_value), "REGISTER", device_answer.uri,
                         device_answer.username, "12345678")
    )
    assert ours.response == device_answer.response
    assert ours.algorithm is DigestAlgorithm.MD5


# --- parsing tolerance ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        'digest realm="r", nonce="n"',
        'DIGEST realm="r",nonce="n"',
        '  Digest\trealm = "r" ,, nonce=n ,',
        'Digest realm="r",\r\n nonce="n", algorithm=md5',
        'Digest realm="r", nonce="n", algorithm="MD5"',
        'Digest realm="r" nonce="n"',
        'Digest nonce="n", realm="r", algorithm=MD5',
    ],
)
def test_challenge_forms_accepted(value: str) -> None:
    ch = parse_challenge(value)
    assert (ch.realm, ch.nonce, ch.algorithm) == ("r", "n", DigestAlgorithm.MD5)


def test_escapes_unknown_params_and_quoted_qop() -> None:
    cr = parse_credentials(
        r'Digest username="a\"b\\c", realm="r", nonce="n", uri="sip:x", response="ABCDEF01",'
        r' qop="AUTH", nc=00000002, cnonce="c", Foo=bar, baz="q\,x", algorithm=md5-SESS'
    )
    assert cr.username == 'a"b\\c'
    assert cr.response == "abcdef01"
    assert cr.qop == "auth" and cr.nc == "00000002"
    assert cr.params == {"foo": "bar", "baz": "q,x"}
    assert cr.algorithm is DigestAlgorithm.MD5_SESS


def test_stale_and_sha256_challenge() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n", stale=TRUE, algorithm=sha-256, qop=auth')
    assert ch.stale and ch.algorithm is DigestAlgorithm.SHA256 and ch.qop == ("auth",)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('Basic realm="r"', "not Digest"),
        ("", "no authentication scheme"),
        ("Digest", "missing"),
        ('Digest realm="r', "unparsable"),
        ('Digest realm="r", nonce="n", realm="s"', "duplicate"),
        ('Digest realm="r"', "missing nonce"),
        ('Digest realm="r", nonce=""', "empty nonce"),
        ('Digest realm="r", nonce="n", algorithm=SHA-512', "unsupported algorithm"),
        ('Digest realm="r", nonce="n", @@@', "unparsable"),
    ],
)
def test_malformed_challenges(value: str, reason: str) -> None:
    with pytest.raises(DigestError) as info:
        parse_challenge(value)
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)


GOOD_CREDS = 'Digest username="u", realm="r", nonce="n", uri="sip:x", response="0123abcd"'


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (GOOD_CREDS.replace('response="0123abcd"', 'response="zz"'), "hexadecimal"),
        (GOOD_CREDS.replace(', uri="sip:x"', ""), "missing uri"),
        (GOOD_CREDS + ", qop=auth", "qop without nc"),
        (GOOD_CREDS + ", qop=auth, nc=1x, cnonce=c", "nc is not"),
        (GOOD_CREDS + ", qop=auth, nc=123456789, cnonce=c", "nc is not"),
        (GOOD_CREDS.replace("Digest", "Bearer"), "not Digest"),
    ],
)
def test_malformed_credentials(value: str, reason: str) -> None:
    with pytest.raises(DigestError) as info:
        parse_credentials(value)
    assert reason in info.value.reason


def test_secrets_not_in_repr() -> None:
    cr = parse_credentials(GOOD_CREDS.replace('nonce="n"', 'nonce="SECRETNONCE"') + ", qop=auth, nc=1, cnonce=CNONCEX")
    ch = parse_challenge('Digest realm="r", nonce="SECRETNONCE"')
    for text in (repr(cr), repr(ch)):
        assert "SECRETNONCE" not in text
        assert "0123abcd" not in text
        assert "CNONCEX" not in text


@given(st.text(max_size=200))
@settings(max_examples=300)
def test_parsers_only_raise_digest_error(text: str) -> None:
    for parse in (parse_challenge, parse_credentials):
        for candidate in (text, "Digest " + text):
            with contextlib.suppress(DigestError):
                parse(candidate)


# --- server --------------------------------------------------------------------------------------


def device_authorization(challenge: str, username: str, password: str, uri: str, method: str = "REGISTER",
                         algorithm_text: str = "MD5") -> str:
    """What an eXosip/Hikvision device writes, built from the raw challenge text with independent code."""
    nonce = re.search(r'nonce="([^"]+)"', challenge)
    assert nonce is not None
    response = reference_response("md5", username, REALM, password, method, uri, nonce.group(1))
    return (f'Digest username="{username}", realm="{REALM}", nonce="{nonce.group(1)}", uri="{uri}", '
            f'response="{response}", algorithm={algorithm_text}')


def device_authorization_qop(challenge: str, username: str, password: str, uri: str, nc: int,
                             method: str = "REGISTER") -> str:
    nonce = re.search(r'nonce="([^"]+)"', challenge)
    assert nonce is not None
    nc_text = f"{nc:08x}"
    response = reference_response("md5", username, REALM, password, method, uri, nonce.group(1),
                                  qop="auth", nc=nc_text, cnonce="deadbeef")
    return (f'Digest username="{username}", realm="{REALM}", nonce="{nonce.group(1)}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, cnonce="deadbeef", qop=auth, nc={nc_text}')


URI = "sip:34020000002000000001@3402000000"


@pytest.mark.parametrize("qop", [False, True])
@pytest.mark.parametrize("stale", [False, True])
def test_challenge_always_names_md5(qop: bool, stale: bool) -> None:
    value = DigestServer(REALM, SECRET, qop=qop).challenge(T0, stale=stale)
    assert "algorithm=MD5" in value
    assert f'realm="{REALM}"' in value
    assert ('qop="auth"' in value) == qop
    assert ("stale=true" in value) == stale
    ch = parse_challenge(value)
    assert ch.stale == stale and ch.qop == (("auth",) if qop else ())


def test_challenges_are_unique_and_stateless() -> None:
    server = DigestServer(REALM, SECRET)
    nonces = {parse_challenge(server.challenge(T0)).nonce for _ in range(1000)}
    assert len(nonces) == 1000
    assert server.tracked_nonces == 0


def test_device_shaped_answer_verifies_and_another_node_accepts_it() -> None:
    server = DigestServer(REALM, SECRET)
    other_node = DigestServer(REALM, SECRET)
    challenge = server.challenge(T0)
    creds = parse_credentials(device_authorization(challenge, "34020000001320000088", "12345678", URI))
    assert other_node.verify(creds, "REGISTER", "12345678", T0 + 1) is DigestResult.OK


def test_lowercase_algorithm_in_credentials_verifies() -> None:
    server = DigestServer(REALM, SECRET)
    value = device_authorization(server.challenge(T0), "dev", "pw", URI, algorithm_text="md5")
    assert server.verify(parse_credentials(value), "REGISTER", "pw", T0) is DigestResult.OK


def test_wrong_password_and_wrong_method() -> None:
    server = DigestServer(REALM, SECRET)
    creds = parse_credentials(device_authorization(server.challenge(T0), "dev", "pw", URI))
    assert server.verify(creds, "REGISTER", "other", T0) is DigestResult.BAD_RESPONSE
    assert server.verify(creds, "INVITE", "pw", T0) is DigestResult.BAD_RESPONSE
    assert server.verify(creds, "REGISTER", "pw", T0) is DigestResult.OK


def test_expired_nonce_is_stale_only_with_the_right_password() -> None:
    server = DigestServer(REALM, SECRET, nonce_ttl=TTL)
    creds = parse_credentials(device_authorization(server.challenge(T0), "dev", "pw", URI))
    assert server.verify(creds, "REGISTER", "pw", T0 + TTL + 1) is DigestResult.STALE
    assert server.verify(creds, "REGISTER", "bad", T0 + TTL + 1) is DigestResult.BAD_RESPONSE
    assert server.verify(creds, "REGISTER", "pw", T0 + TTL - 1) is DigestResult.OK


def test_forged_nonces() -> None:
    server = DigestServer(REALM, SECRET)
    genuine = parse_challenge(server.challenge(T0)).nonce
    flipped = genuine[:30] + ("0" if genuine[30] != "0" else "1") + genuine[31:]
    foreign = parse_challenge(DigestServer(REALM, b"another-secret-of-16+").challenge(T0)).nonce
    other_realm = parse_challenge(DigestServer("3401000000", SECRET).challenge(T0)).nonce
    for nonce in (flipped, foreign, other_realm, "0540eb8f630c60f0", "g" * len(genuine), genuine[:-2]):
        challenge = f'Digest realm="{REALM}", nonce="{nonce}"'
        creds = parse_credentials(device_authorization(challenge, "dev", "pw", URI))
        assert server.verify(creds, "REGISTER", "pw", T0) is DigestResult.BAD_NONCE, nonce


def test_nonce_from_the_future_beyond_skew_is_rejected() -> None:
    issuer = DigestServer(REALM, SECRET)
    creds = parse_credentials(device_authorization(issuer.challenge(T0 + 100), "dev", "pw", URI))
    assert DigestServer(REALM, SECRET).verify(creds, "REGISTER", "pw", T0) is DigestResult.BAD_NONCE
    assert DigestServer(REALM, SECRET).verify(creds, "REGISTER", "pw", T0 + 90) is DigestResult.OK


def test_bad_realm() -> None:
    server = DigestServer(REALM, SECRET)
    value = device_authorization(server.challenge(T0), "dev", "pw", URI).replace(REALM, "3401000000")
    assert server.verify(parse_credentials(value), "REGISTER", "pw", T0) is DigestResult.BAD_REALM


def test_qop_replay_same_nc_is_stale_and_higher_nc_ok() -> None:
    server = DigestServer(REALM, SECRET, qop=True)
    challenge = server.challenge(T0)

    def verify(nc: int) -> DigestResult:
        creds = parse_credentials(device_authorization_qop(challenge, "dev", "pw", URI, nc))
        return server.verify(creds, "REGISTER", "pw", T0 + nc)

    assert verify(1) is DigestResult.OK
    assert verify(1) is DigestResult.STALE
    assert verify(3) is DigestResult.OK
    assert verify(2) is DigestResult.STALE
    assert verify(4) is DigestResult.OK


def test_no_qop_reuse_only_for_same_username_and_call_id() -> None:
    server = DigestServer(REALM, SECRET)
    creds = parse_credentials(device_authorization(server.challenge(T0), "dev", "pw", URI))
    assert server.verify(creds, "REGISTER", "pw", T0, call_id="507780873") is DigestResult.OK
    assert server.verify(creds, "REGISTER", "pw", T0 + 60, call_id="507780873") is DigestResult.OK
    assert server.verify(creds, "REGISTER", "pw", T0 + 61, call_id="other") is DigestResult.STALE
    assert server.verify(creds, "REGISTER", "pw", T0 + 62) is DigestResult.STALE


def test_no_qop_single_use_without_call_id_or_when_disabled() -> None:
    for server, call_id in ((DigestServer(REALM, SECRET), None),
                            (DigestServer(REALM, SECRET, refresh_reuse=False), "cid")):
        creds = parse_credentials(device_authorization(server.challenge(T0), "dev", "pw", URI))
        assert server.verify(creds, "REGISTER", "pw", T0, call_id=call_id) is DigestResult.OK
        assert server.verify(creds, "REGISTER", "pw", T0 + 1, call_id=call_id) is DigestResult.STALE


def test_nonce_cannot_switch_between_qop_and_no_qop() -> None:
    server = DigestServer(REALM, SECRET, qop=True)
    challenge = server.challenge(T0)
    plain = parse_credentials(device_authorization(challenge, "dev", "pw", URI))
    counted = parse_credentials(device_authorization_qop(challenge, "dev", "pw", URI, 5))
    assert server.verify(plain, "REGISTER", "pw", T0, call_id="c") is DigestResult.OK
    assert server.verify(counted, "REGISTER", "pw", T0) is DigestResult.STALE
    challenge = server.challenge(T0)
    plain = parse_credentials(device_authorization(challenge, "dev", "pw", URI))
    counted = parse_credentials(device_authorization_qop(challenge, "dev", "pw", URI, 5))
    assert server.verify(counted, "REGISTER", "pw", T0) is DigestResult.OK
    assert server.verify(plain, "REGISTER", "pw", T0, call_id="c") is DigestResult.STALE


def test_replay_is_caught_across_a_generation_rotation_and_store_is_pruned() -> None:
    server = DigestServer(REALM, SECRET, qop=True, nonce_ttl=TTL)
    first = server.challenge(T0)
    late = server.challenge(T0 + 320)
    creds = [parse_credentials(device_authorization_qop(first, "a", "pw", URI, 1)),
             parse_credentials(device_authorization_qop(late, "b", "pw", URI, 1))]
    assert server.verify(creds[0], "REGISTER", "pw", T0) is DigestResult.OK
    assert server.verify(creds[1], "REGISTER", "pw", T0 + 325) is DigestResult.OK
    third = parse_credentials(device_authorization_qop(server.challenge(T0 + 331), "c", "pw", URI, 1))
    assert server.verify(third, "REGISTER", "pw", T0 + 340) is DigestResult.OK  # rotates
    assert server.tracked_nonces == 3
    assert server.verify(creds[1], "REGISTER", "pw", T0 + 345) is DigestResult.STALE
    for i in range(50):
        c = parse_credentials(device_authorization_qop(server.challenge(T0 + 400), f"d{i}", "pw", URI, 1))
        assert server.verify(c, "REGISTER", "pw", T0 + 400) is DigestResult.OK
    assert server.tracked_nonces == 53
    last = parse_credentials(device_authorization_qop(server.challenge(T0 + 2000), "e", "pw", URI, 1))
    assert server.verify(last, "REGISTER", "pw", T0 + 2000) is DigestResult.OK
    assert server.tracked_nonces == 1


def test_malformed_results() -> None:
    server = DigestServer(REALM, SECRET, qop=True)
    challenge = server.challenge(T0)
    auth_int = device_authorization_qop(challenge, "dev", "pw", URI, 1).replace("qop=auth", "qop=auth-int")
    assert server.verify(parse_credentials(auth_int), "REGISTER", "pw", T0) is DigestResult.MALFORMED
    sess = device_authorization(challenge, "dev", "pw", URI, algorithm_text="MD5-sess")
    assert server.verify(parse_credentials(sess), "REGISTER", "pw", T0) is DigestResult.MALFORMED
    unencodable = device_authorization(challenge, "dev", "pw", URI).replace('username="dev"', 'username="\ud800"')
    assert server.verify(parse_credentials(unencodable), "REGISTER", "pw", T0) is DigestResult.MALFORMED


def test_raw_header_bytes_survive_surrogateescape() -> None:
    """A GBK username decoded by the SIP layer with surrogateescape hashes to the bytes the device used."""
    server = DigestServer(REALM, SECRET)
    nonce = parse_challenge(server.challenge(T0)).nonce
    raw_user = "摄像机".encode("gbk")

    def md5(data: bytes) -> str:
        return hashlib.md5(data).hexdigest()

    ha1 = md5(raw_user + b":" + REALM.encode() + b":pw")
    response = md5(f"{ha1}:{nonce}:{md5(f'REGISTER:{URI}'.encode())}".encode())
    wire = (b'Digest username="' + raw_user + f'", realm="{REALM}", nonce="{nonce}", uri="{URI}", '
            f'response="{response}"'.encode())
    creds = parse_credentials(wire.decode("utf-8", "surrogateescape"))
    assert server.verify(creds, "REGISTER", "pw", T0) is DigestResult.OK


def test_server_rejects_weak_configuration() -> None:
    with pytest.raises(ValueError):
        DigestServer(REALM, b"short")
    with pytest.raises(ValueError):
        DigestServer(REALM, SECRET, nonce_ttl=0)


# --- client --------------------------------------------------------------------------------------


def test_client_answer_without_qop_has_no_cnonce_and_echoes_algorithm() -> None:
    header = answer_challenge(parse_challenge('Digest realm="r", nonce="n"'), "REGISTER", URI, "u", "p")
    cr = parse_credentials(header)
    assert cr.qop is None and cr.nc is None and cr.cnonce is None
    assert "algorithm=MD5" in header
    assert cr.response == reference_response("md5", "u", "r", "p", "REGISTER", URI, "n")


def test_client_sess_answer_has_cnonce() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n", algorithm=MD5-sess')
    cr = parse_credentials(answer_challenge(ch, "REGISTER", URI, "u", "p", cnonce="abc"))
    assert cr.algorithm is DigestAlgorithm.MD5_SESS and cr.cnonce == "abc" and cr.qop is None
    assert cr.response == reference_response("md5", "u", "r", "p", "REGISTER", URI, "n", cnonce="abc", sess=True)


def test_client_refuses_auth_int_only_and_header_injection() -> None:
    with pytest.raises(DigestError):
        answer_challenge(parse_challenge('Digest realm="r", nonce="n", qop="auth-int"'), "REGISTER", URI, "u", "p")
    evil = parse_challenge('Digest realm="r\r\nVia: x", nonce="n"')
    with pytest.raises(DigestError):
        answer_challenge(evil, "REGISTER", URI, "u", "p")


def test_stateful_client_counts_nc_per_nonce() -> None:
    server = DigestServer(REALM, SECRET, qop=True)
    client = DigestClient("platform", "pw")
    ch = parse_challenge(server.challenge(T0))
    for expected_nc in ("00000001", "00000002", "00000003"):
        creds = parse_credentials(client.authorization(ch, "REGISTER", URI))
        assert creds.nc == expected_nc
        assert server.verify(creds, "REGISTER", "pw", T0 + 1) is DigestResult.OK
    ch = parse_challenge(server.challenge(T0 + 10, stale=True))
    creds = parse_credentials(client.authorization(ch, "REGISTER", URI))
    assert creds.nc == "00000001"
    assert server.verify(creds, "REGISTER", "pw", T0 + 11) is DigestResult.OK


# --- properties ----------------------------------------------------------------------------------

safe_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"), max_size=40)
token = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ-"), min_size=1, max_size=12)


@given(
    username=safe_text,
    password=safe_text,
    method=token,
    uri=safe_text,
    qop=st.booleans(),
    algorithm=st.sampled_from(list(DigestAlgorithm)),
    nc=st.integers(1, 0xFFFFFFFF),
)
@settings(max_examples=200, deadline=None)
def test_client_answer_verifies_on_server(
    username: str, password: str, method: str, uri: str, qop: bool, algorithm: DigestAlgorithm, nc: int
) -> None:
    server = DigestServer(REALM, SECRET, qop=qop)
    ch = dataclasses.replace(parse_challenge(server.challenge(T0)), algorithm=algorithm)
    header = answer_challenge(ch, method, uri, username, password, nc=nc)
    creds = parse_credentials(header)
    assert (creds.username, creds.uri, creds.algorithm) == (username, uri, algorithm)
    hash_name = "md5" if algorithm.value.startswith("MD5") else "sha256"
    assert creds.response == reference_response(
        hash_name, username, REALM, password, method, uri, ch.nonce,
        qop=creds.qop, nc=creds.nc, cnonce=creds.cnonce, sess=algorithm.is_session,
    )
    assert server.verify(creds, method, password, T0 + 1) is DigestResult.OK
    assert server.verify(creds, method, password + "x", T0 + 1) is DigestResult.BAD_RESPONSE


@given(text=st.text(max_size=120))
@settings(max_examples=200)
def test_verify_never_raises_on_parsed_input(text: str) -> None:
    server = DigestServer(REALM, SECRET)
    nonce = parse_challenge(server.challenge(T0)).nonce
    value = f'Digest realm="{REALM}", nonce="{nonce}", uri="sip:x", response="00", username=' + text
    try:
        creds: DigestCredentials = parse_credentials(value)
    except DigestError:
        return
    assert isinstance(server.verify(creds, "REGISTER", text, T0), DigestResult)

"""The configuration keys for the API's tokens and TLS, media destinations and source rules, the time zone,
the metrics listener and the history retention: defaults, values, and errors naming key, value and
expectation."""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gbgw.gb28181.config import (
    ApiRole,
    ConfigError,
    MediaSourceKind,
    MediaSourceRule,
    host_timezone,
    load_config,
)

TOKEN = "noc-token-0123456789abcdef"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()


def refused(data: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(data)
    assert len(caught.value.errors) == 1, str(caught.value)
    return str(caught.value)


def api(**keys: Any) -> dict[str, Any]:
    return {"api": keys}


# -- sip.timezone ---------------------------------------------------------------------------------------


def test_timezone_defaults_to_the_hosts_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config(None).sip.timezone == host_timezone()
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    assert host_timezone() == "Asia/Shanghai"
    assert load_config(None).sip.timezone == "Asia/Shanghai"
    # A POSIX TZ string is no IANA name: the next source is asked.
    monkeypatch.setenv("TZ", "CST-8")
    assert host_timezone() != "CST-8"


def test_timezone_given() -> None:
    cfg = load_config({"sip": {"timezone": "Asia/Shanghai"}})
    assert cfg.sip.timezone == "Asia/Shanghai" and cfg.sip.tzinfo.key == "Asia/Shanghai"


@pytest.mark.parametrize("value", ["Mars/Olympus", "../../etc/passwd", "", 8])
def test_unknown_timezone_named(value: object) -> None:
    assert refused({"sip": {"timezone": value}}) == (
        f"sip.timezone: {value!r} is not valid: expected an IANA time zone name known to this host, "
        'e.g. "Asia/Shanghai"')


# -- api.tokens -----------------------------------------------------------------------------------------


def test_no_tokens_by_default() -> None:
    assert load_config(None).api.tokens == ()


def test_three_ways_to_give_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "ops.token"
    token_file.write_text("ops-token-0123456789abcdef\n", encoding="utf-8")
    monkeypatch.setenv("GB_TEST_ROOT_TOKEN", "root-token-0123456789abcdef")
    cfg = load_config(api(tokens=[
        {"name": "noc", "role": "viewer", "sha256": DIGEST.upper()},
        {"name": "ops", "role": "operator", "token_file": str(token_file)},
        {"name": "root", "role": "ADMIN", "token": {"env": "GB_TEST_ROOT_TOKEN"}},
        {"name": "lab", "role": "viewer", "token": "lab-token-0123456789abcdef"},
    ]))
    tokens = cfg.api.tokens
    assert [(t.name, t.role) for t in tokens] == [
        ("noc", ApiRole.VIEWER), ("ops", ApiRole.OPERATOR), ("root", ApiRole.ADMIN), ("lab", ApiRole.VIEWER)]
    assert tokens[0].digest == hashlib.sha256(TOKEN.encode()).digest()
    assert tokens[1].digest == hashlib.sha256(b"ops-token-0123456789abcdef").digest()
    assert all(isinstance(t.digest, bytes) and len(t.digest) == 32 for t in tokens)
    # Only the digest is kept: nothing of any token in the object or its repr.
    shown = repr(cfg)
    for secret in (TOKEN, "ops-token", "root-token", "lab-token", DIGEST):
        assert secret not in shown
    assert cfg.api.token_for(TOKEN) is tokens[0]
    assert cfg.api.token_for("root-token-0123456789abcdef") is tokens[2]
    assert cfg.api.token_for("wrong") is None


def test_roles_include_the_ones_before() -> None:
    assert ApiRole.ADMIN.includes(ApiRole.OPERATOR) and ApiRole.OPERATOR.includes(ApiRole.VIEWER)
    assert ApiRole.VIEWER.includes(ApiRole.VIEWER) and not ApiRole.VIEWER.includes(ApiRole.OPERATOR)


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "noc", "role": "root", "sha256": DIGEST},
     "api.tokens[0].role: 'root' is not valid: expected one of viewer, operator, admin"),
    ({"name": "noc", "role": "viewer", "sha256": "abc"},
     "api.tokens[0].sha256: 'abc' is not valid: expected the token's SHA-256 as 64 hex digits "
     "(printf %s TOKEN | sha256sum)"),
    ({"name": "noc", "role": "viewer"},
     "api.tokens[0].sha256: missing is not valid: expected one of sha256, token_file, token for each token"),
    ({"role": "viewer", "sha256": DIGEST},
     "api.tokens[0].name: missing is not valid: expected a value (this key is required)"),
    ({"name": "no spaces", "role": "viewer", "sha256": DIGEST},
     "api.tokens[0].name: 'no spaces' is not valid: expected a name of letters, digits, '.', '-' or '_'"),
    ({"name": "noc", "role": "viewer", "token": "short"},
     "api.tokens[0].token: the value given is not valid: expected a token of at least 16 characters, "
     "without spaces"),
    ({"name": "noc", "role": "viewer", "sha256": DIGEST, "token_file": "/x"},
     "api.tokens[0].token_file: '/x' is not valid: expected no second token source (sha256 is given: one of "
     "sha256, token_file, token)"),
])
def test_token_errors(entry: dict[str, Any], message: str) -> None:
    assert refused(api(tokens=[entry])) == message


def test_token_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert refused(api(tokens=[{"name": "ops", "role": "operator", "token_file": str(missing)}])) == (
        f"api.tokens[0].token_file: '{missing}' is not valid: expected a readable file holding the secret "
        "(No such file or directory)")
    weak = tmp_path / "weak"
    weak.write_text("1234\n", encoding="utf-8")
    message = refused(api(tokens=[{"name": "ops", "role": "operator", "token_file": str(weak)}]))
    assert message == (f"api.tokens[0].token_file: '{weak}' is not valid: expected a file holding a token of at "
                       "least 16 characters, without spaces")


def test_names_and_tokens_unique() -> None:
    assert refused(api(tokens=[{"name": "noc", "role": "viewer", "sha256": DIGEST},
                               {"name": "noc", "role": "admin", "token": "another-token-0123456789"}])) == (
        "api.tokens[1].name: 'noc' is not valid: expected a name of its own (api.tokens[0] has it)")
    message = refused(api(tokens=[{"name": "noc", "role": "viewer", "sha256": DIGEST},
                                  {"name": "ops", "role": "admin", "token": TOKEN}]))
    assert message == ("api.tokens[1].token: the value given is not valid: expected a token of its own (the same "
                       "token as api.tokens[0])")
    assert TOKEN not in message


def test_tokens_must_be_a_list() -> None:
    assert refused(api(tokens={"name": "noc"})).startswith("api.tokens: {'name': 'noc'} is not valid: expected a "
                                                            "list of tokens")


@pytest.mark.parametrize("listen", ["10.1.0.2:8080", "[2001:db8::5]:8080", "gateway.example:8080"])
def test_a_reachable_api_needs_tokens(listen: str) -> None:
    shown = listen
    assert refused(api(listen=listen)) == (
        "api.tokens: missing is not valid: expected a list of tokens (required when api.listen is not a "
        f"loopback address; it is {shown})")
    assert load_config(api(listen=listen, tokens=[{"name": "noc", "role": "viewer", "sha256": DIGEST}])).api.tokens


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "127.9.0.1:8080", "[::1]:8080", "localhost:8080"])
def test_a_loopback_api_needs_none(listen: str) -> None:
    assert load_config(api(listen=listen)).api.tokens == ()


# -- api.tls --------------------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "api.crt", tmp_path / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=gateway", "-days", "2"],
                   check=True, capture_output=True)
    return cert, key


def test_api_tls_loads(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    tls = load_config(api(tls={"cert": str(cert), "key": str(key)})).api.tls
    assert tls is not None and (tls.cert, tls.key) == (str(cert), str(key))
    assert load_config(None).api.tls is None


def test_api_tls_errors(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    missing = tmp_path / "none.key"
    assert refused(api(tls={"cert": str(cert), "key": str(missing)})) == (
        f"api.tls.key: '{missing}' is not valid: expected a readable PEM file (no such file)")
    assert refused(api(tls={"cert": str(key), "key": str(key)})).startswith(
        f"api.tls.cert: '{key}' is not valid: expected a readable PEM file (")
    assert refused(api(tls={"cert": str(cert)})) == (
        "api.tls.key: missing is not valid: expected a value (this key is required)")
    assert refused(api(tls={"cert": str(cert), "key": str(key), "ca": "x"})).startswith(
        "api.tls.ca: 'x' is not valid: expected a known key here (cert, key)")
    assert refused(api(tls="on")) == "api.tls: 'on' is not valid: expected a mapping of keys to values"


# -- api.media_destinations, metrics.listen, storage.history_days ----------------------------------------------


def test_media_destinations() -> None:
    assert [str(n) for n in load_config(None).api.media_destinations] == ["127.0.0.0/8", "::1/128"]
    given = load_config(api(media_destinations=["10.20.0.5/24", "2001:db8::/32", "192.0.2.7"])).api
    assert given.media_destinations == (ipaddress.ip_network("10.20.0.0/24"), ipaddress.ip_network("2001:db8::/32"),
                                        ipaddress.ip_network("192.0.2.7/32"))
    assert load_config(api(media_destinations=[])).api.media_destinations == ()
    assert refused(api(media_destinations=["10.0.0.0/40"])) == (
        "api.media_destinations[0]: '10.0.0.0/40' is not valid: expected a network in CIDR form, e.g. "
        '"10.1.0.0/24", or one address')
    assert refused(api(media_destinations="10.0.0.0/8")).startswith(
        "api.media_destinations: '10.0.0.0/8' is not valid: expected a list of networks in CIDR form")


def test_metrics_listen() -> None:
    assert load_config(None).metrics.listen is None
    assert str(load_config({"metrics": {"listen": "127.0.0.1:9100"}}).metrics.listen) == "127.0.0.1:9100"
    assert refused({"metrics": {"listen": "9100"}}).startswith(
        "metrics.listen: '9100' is not valid: expected an address \"host:port\"")


def test_history_days() -> None:
    assert load_config(None).storage.history_days == 30
    assert load_config({"storage": {"history_days": 400}}).storage.history_days == 400
    assert refused({"storage": {"history_days": 0}}) == (
        "storage.history_days: 0 is not valid: expected an integer from 1 to 3660")


# -- media_source ---------------------------------------------------------------------------------------------


def test_media_source_default_is_signalling_everywhere() -> None:
    cfg = load_config({"devices": [{"id": "34020000001320000001"}],
                       "upstreams": [{"name": "district", "id": "34020000002000000009", "address": "10.20.0.1:5060",
                                      "listen": "127.0.0.2:5061", "media_ip": "127.0.0.2"}]})
    signalling = MediaSourceRule(MediaSourceKind.SIGNALLING)
    assert cfg.media.media_source == signalling
    assert cfg.devices[0].media_source == signalling and cfg.upstreams[0].media_source == signalling
    assert cfg.media_source("34020000001320000099") == signalling


def test_media_source_global_per_device_and_per_upstream() -> None:
    upper = {"name": "district", "id": "34020000002000000009", "address": "10.20.0.1:5060",
             "listen": "127.0.0.2:5061", "media_ip": "127.0.0.2"}
    cfg = load_config({
        "media": {"media_source": "sdp"},
        "devices": [{"id": "34020000001320000001"},
                    {"id": "34020000001180000001", "media_source": ["10.1.0.0/24", "10.2.0.9"]},
                    {"id": "34020000001180000002", "media_source": "Signalling"}],
        "upstreams": [{**upper, "media_source": "10.20.0.0/16"}],
    })
    assert cfg.devices[0].media_source.kind is MediaSourceKind.SDP  # inherits media.media_source
    nvr = cfg.devices[1].media_source
    assert nvr.kind is MediaSourceKind.NETWORKS and str(nvr) == "10.1.0.0/24, 10.2.0.9/32"
    assert cfg.devices[2].media_source.kind is MediaSourceKind.SIGNALLING
    assert str(cfg.upstreams[0].media_source) == "10.20.0.0/16"
    assert cfg.media_source("34020000001180000001") is nvr
    assert cfg.media_source("34020000001320000099").kind is MediaSourceKind.SDP  # unlisted: the global one


@pytest.mark.parametrize(("where", "value", "message"), [
    ("media", "any", "media.media_source: 'any' is not valid: expected signalling, sdp, or a non-empty list of "
                     'networks, e.g. ["10.1.0.0/24"]'),
    ("media", [], "media.media_source: [] is not valid: expected signalling, sdp, or a non-empty list of networks"),
    ("device", ["10.1.0.0/24", "bogus"],
     "devices[0].media_source[1]: 'bogus' is not valid: expected a network in CIDR form"),
    ("upstream", "10.300.0.0/16", "upstreams[0].media_source: '10.300.0.0/16' is not valid: expected a network"),
])
def test_media_source_errors(where: str, value: object, message: str) -> None:
    upper = {"name": "district", "id": "34020000002000000009", "address": "10.20.0.1:5060",
             "listen": "127.0.0.2:5061", "media_ip": "127.0.0.2"}
    data: dict[str, Any] = {
        "media": {"media": {"media_source": value}},
        "device": {"devices": [{"id": "34020000001320000001", "media_source": value}]},
        "upstream": {"upstreams": [{**upper, "media_source": value}]},
    }[where]
    assert refused(data).startswith(message)


def test_signalling_rule_permits_only_the_signalling_address() -> None:
    rule = MediaSourceRule()
    assert rule.permits("10.1.0.5", "10.1.0.5", "10.9.0.1")
    assert not rule.permits("10.9.0.1", "10.1.0.5", "10.9.0.1")
    # A dual-stack socket reports IPv4 peers as mapped addresses.
    assert rule.permits("::ffff:10.1.0.5", "10.1.0.5", None)
    assert not rule.permits("not an address", "10.1.0.5", None)


def test_sdp_rule_permits_the_sdp_address_and_the_signalling_one() -> None:
    rule = MediaSourceRule(MediaSourceKind.SDP)
    assert rule.permits("10.9.0.1", "10.1.0.5", "10.9.0.1")  # media server on another host (ZLMediaKit)
    assert rule.permits("10.1.0.5", "10.1.0.5", "192.168.1.20")  # NAT: SDP names the private address
    assert not rule.permits("10.9.0.2", "10.1.0.5", "10.9.0.1")
    assert not rule.permits("10.9.0.1", "10.1.0.5", None) and not rule.permits("10.9.0.1", "10.1.0.5", "")


def test_network_rule_permits_only_its_networks() -> None:
    rule = MediaSourceRule(MediaSourceKind.NETWORKS, (ipaddress.ip_network("10.1.0.0/24"),
                                                      ipaddress.ip_network("2001:db8::/64")))
    assert rule.permits("10.1.0.77", "10.5.5.5", None)
    assert rule.permits("2001:db8::9", "10.5.5.5", None)
    # Neither the signalling address nor the SDP's is taken on the peer's word.
    assert not rule.permits("10.5.5.5", "10.5.5.5", "10.5.5.5")
    assert not rule.permits("10.1.1.1", "10.1.0.5", "10.1.1.1")

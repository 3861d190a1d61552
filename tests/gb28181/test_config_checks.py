"""Configuration checks across values and against the host, and every error of a file in one run.

An administrator fixing a file wants the whole list at once (not one error per ``check-config`` run),
and wants the files that would fail or mislead at run time refused before anything listens: an ID
that is not a platform's, a domain that is not the ID's, two listeners on one address, an address
this machine does not have.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from gbgw.gb28181.config import (
    ConfigError,
    ConfigErrors,
    bind_error,
    config_warnings,
    load_config,
    load_config_file,
    local_address_problem,
)

UPPER = {"name": "district", "id": "34020000002000000009", "address": "10.20.0.1:5060",
         "listen": "127.0.0.2:5061", "media_ip": "127.0.0.2"}
ABSENT_V4 = "192.0.2.77"
"""TEST-NET-1 (RFC 5737): documentation only, on no real interface."""


def errors_of(data: Any, **options: bool) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(data, **options)
    return [str(error) for error in caught.value.errors]


def refused(data: Any, **options: bool) -> str:
    found = errors_of(data, **options)
    assert len(found) == 1, found
    return found[0]


def host_address() -> str | None:
    """A non-loopback address of this machine (the source it would use toward TEST-NET), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((ABSENT_V4, 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


# -- every error in one run ----------------------------------------------------------------------------


def test_every_error_is_reported_in_file_order() -> None:
    data = {
        "storage": {"backend": "redis"},
        "sip": {"keepalive_interval": 1, "passwrd": "x"},
        "media": {"ip": "0.0.0.0"},
        "devices": [{"id": "3402"}],
        "upstreams": [{**UPPER, "keepalive_misses": 0}],
        "colour": "blue",
    }
    with pytest.raises(ConfigErrors) as caught:
        load_config(data)
    keys = [error.key for error in caught.value.errors]
    assert keys == ["storage.backend", "sip.keepalive_interval", "sip.passwrd", "media.ip", "devices[0].id",
                    "upstreams[0].keepalive_misses", "colour"]
    # The first error's fields stay on the exception, for callers that handle one.
    assert (caught.value.key, caught.value.value) == ("storage.backend", "redis")
    text = str(caught.value)
    assert text.startswith("7 errors:\n  storage.backend: 'redis' is not valid: expected one of sqlite, memory\n")
    assert "\n  colour: 'blue' is not valid: expected a known key here (" in text


def test_one_error_reads_exactly_as_before() -> None:
    assert refused({"sip": {"id": "1234"}}) == "sip.id: '1234' is not valid: expected a 20-digit GB/T 28181 ID"


def test_a_value_that_is_not_a_mapping_is_one_error_not_one_per_missing_key() -> None:
    assert errors_of({"upstreams": [5], "devices": ["x"], "api": {"tokens": [7]}}) == [
        "api.tokens[0]: 7 is not valid: expected a mapping of keys to values",
        "devices[0]: 'x' is not valid: expected a mapping of keys to values",
        "upstreams[0]: 5 is not valid: expected a mapping of keys to values",
    ]


def test_required_keys_all_named() -> None:
    found = errors_of({"upstreams": [{"name": "district"}]})
    assert found == [f"upstreams[0].{key}: missing is not valid: expected a value (this key is required)"
                     for key in ("id", "address", "listen", "media_ip")]


def test_a_bad_value_does_not_cause_a_second_misleading_error() -> None:
    # sip.id is refused, so its default must not then be compared with the domain or an upper's ID.
    assert errors_of({"sip": {"id": "x", "domain": "3401000000"},
                      "upstreams": [{**UPPER, "id": "34020000002000000001"}]}) == [
        "sip.id: 'x' is not valid: expected a 20-digit GB/T 28181 ID"]
    # A refused sip.listen is not compared with the API's.
    assert errors_of({"sip": {"listen": "127.0.0.1:0"}, "api": {"listen": "127.0.0.1:5060"}}) == [
        "sip.listen: '127.0.0.1:0' is not valid: expected a port from 1 to 65535"]


@pytest.mark.parametrize(("data", "key", "meant"), [
    ({"sip": {"passwrd": "abc"}}, "sip.passwrd", "password"),
    ({"sip": {"keepalive_intervall": 60}}, "sip.keepalive_intervall", "keepalive_interval"),
    ({"medai": {}}, "medai", "media"),
    ({"upstreams": [{**UPPER, "adress": "10.0.0.1:5060"}]}, "upstreams[0].adress", "address"),
    ({"api": {"tokens": [{"name": "a", "role": "viewer", "sha265": "0" * 64}]}}, "api.tokens[0].sha265", "sha256"),
])
def test_unknown_keys_name_the_closest_known_one(data: dict[str, Any], key: str, meant: str) -> None:
    message = errors_of(data)[0]
    assert message.startswith(f"{key}: ") and "expected a known key here (" in message
    assert message.endswith(f"; did you mean {meant}?")


def test_no_guess_when_nothing_is_close() -> None:
    assert "did you mean" not in refused({"colour": "blue"})


# -- checks across values -----------------------------------------------------------------------------


@pytest.mark.parametrize("gateway_id", ["34020000001320000001", "34020000002150000001", "34020000001180000001"])
def test_the_gateway_id_must_be_a_platform_type(gateway_id: str) -> None:
    code = gateway_id[10:13]
    message = refused({"sip": {"id": gateway_id}})
    assert message.startswith(f"sip.id: '{gateway_id}' is not valid: expected the ID of a platform: type code "
                              "(digits 11-13) 200 SIP server, 209 access gateway")
    assert f"not {code} (" in message


@pytest.mark.parametrize("gateway_id", ["34020000002000000001", "34020000002090000001", "34020000002020000001"])
def test_platform_types_are_accepted(gateway_id: str) -> None:
    assert load_config({"sip": {"id": gateway_id}}).sip.id == gateway_id


def test_the_domain_must_be_the_ids_first_ten_digits() -> None:
    assert refused({"sip": {"id": "34010000002000000001", "domain": "3402000000"}}) == (
        "sip.domain: '3402000000' is not valid: expected the first 10 digits of sip.id (3401000000), as "
        "GB/T 28181 makes the domain the server ID's prefix")
    # Given only the ID, the message says where the domain it does not match came from.
    assert refused({"sip": {"id": "34010000002000000001"}}).endswith(
        "; sip.domain is not set and defaults to 3402000000")
    assert load_config({"sip": {"id": "34010000002000000001", "domain": "3401000000"}}).sip.domain == "3401000000"


@pytest.mark.parametrize(("data", "message"), [
    ({"api": {"listen": "127.0.0.1:5060"}},
     "api.listen: '127.0.0.1:5060' is not valid: expected an address and port of its own (sip.listen has it)"),
    ({"sip": {"listen": "127.0.0.3:7000"}, "api": {"listen": "127.0.0.3:7000"}},
     "api.listen: '127.0.0.3:7000' is not valid: expected an address and port of its own (sip.listen has it)"),
    ({"upstreams": [UPPER], "api": {"listen": "127.0.0.2:5061"}},
     "api.listen: '127.0.0.2:5061' is not valid: expected an address and port of its own "
     "(upstreams[0].listen has it)"),
    ({"metrics": {"listen": "127.0.0.1:8080"}},
     "metrics.listen: '127.0.0.1:8080' is not valid: expected an address and port of its own (api.listen has it)"),
])
def test_listeners_need_a_port_of_their_own(data: dict[str, Any], message: str) -> None:
    assert refused(data) == message


def test_the_same_port_on_another_address_is_fine() -> None:
    cfg = load_config({"sip": {"listen": "127.0.0.1:5060"}, "api": {"listen": "127.0.0.2:5060"},
                       "metrics": {"listen": "127.0.0.1:9100"}})
    assert (str(cfg.api.listen), str(cfg.metrics.listen)) == ("127.0.0.2:5060", "127.0.0.1:9100")


# -- against this host ------------------------------------------------------------------------------


def test_loopback_and_own_addresses_bind() -> None:
    assert local_address_problem("127.0.0.1") is None
    assert local_address_problem("127.4.5.6") is None
    assert local_address_problem("localhost") is None
    own = host_address()
    if own is not None:
        assert local_address_problem(own) is None


@pytest.mark.parametrize(("data", "key", "shown"), [
    ({"sip": {"listen": f"{ABSENT_V4}:5060"}, "api": {"listen": "127.0.0.1:8080"}}, "sip.listen", f"{ABSENT_V4}:5060"),
    ({"media": {"ip": ABSENT_V4}}, "media.ip", ABSENT_V4),
    ({"upstreams": [{**UPPER, "listen": f"{ABSENT_V4}:5061"}]}, "upstreams[0].listen", f"{ABSENT_V4}:5061"),
    ({"upstreams": [{**UPPER, "media_ip": ABSENT_V4}]}, "upstreams[0].media_ip", ABSENT_V4),
    ({"metrics": {"listen": f"{ABSENT_V4}:9100"}}, "metrics.listen", f"{ABSENT_V4}:9100"),
])
def test_an_address_not_on_this_host_is_named(data: dict[str, Any], key: str, shown: str) -> None:
    assert load_config(data) is not None  # checked against the file alone, it is valid
    message = refused(data, check_host=True)
    assert message.startswith(f"{key}: '{shown}' is not valid: expected an address of this host (binding to it "
                              "failed: "), message


def test_api_listen_not_on_this_host() -> None:
    token = {"name": "noc", "role": "viewer", "sha256": "ab" * 32}
    message = refused({"api": {"listen": f"{ABSENT_V4}:8080", "tokens": [token]}}, check_host=True)
    assert message.startswith(f"api.listen: '{ABSENT_V4}:8080' is not valid: expected an address of this host")


def test_a_name_that_does_not_resolve() -> None:
    message = refused({"sip": {"listen": "no-such-host.invalid:5060"}, "media": {"ip": "127.0.0.1"}},
                      check_host=True)
    assert message.startswith("sip.listen: 'no-such-host.invalid:5060' is not valid: expected an address of this "
                              "host (the name does not resolve")


def test_host_errors_join_the_others(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(f'sip:\n  id: "1234"\nmedia:\n  ip: "{ABSENT_V4}"\nlog:\n  level: loud\n', encoding="utf-8")
    with pytest.raises(ConfigErrors) as caught:
        load_config_file(path, check_host=True)
    assert [error.key for error in caught.value.errors] == ["log.level", "sip.id", "media.ip"]
    with pytest.raises(ConfigErrors) as caught:
        load_config_file(path)
    assert [error.key for error in caught.value.errors] == ["log.level", "sip.id"]


def test_bind_error_is_one_line_naming_the_key() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as second, pytest.raises(OSError) as failed:
            second.bind(("127.0.0.1", port))
    message = str(bind_error("api.listen", f"127.0.0.1:{port}", failed.value))
    assert message == (f"api.listen: '127.0.0.1:{port}' is not valid: expected an address this gateway can "
                       "listen on (Address already in use)")


# -- warnings ---------------------------------------------------------------------------------------------


def test_no_warnings_on_loopback_defaults() -> None:
    assert config_warnings(load_config(None)) == []


def test_default_password_and_any_id_on_a_reachable_address() -> None:
    cfg = load_config({"sip": {"listen": "10.1.0.2:5060"}})
    found = config_warnings(cfg)
    assert [line.split(":", 1)[0] for line in found] == ["sip.password", "sip.allowlist"]
    assert "10.1.0.2:5060" in found[0] and "12345678" not in found[0]
    assert "any device ID is accepted" in found[1]


def test_the_default_password_unused_when_every_listed_device_has_its_own() -> None:
    cfg = load_config({"sip": {"listen": "10.1.0.2:5060", "allowlist": True},
                       "devices": [{"id": "34020000001320000001", "password": "own-secret"}]})
    assert config_warnings(cfg) == []
    cfg = load_config({"sip": {"listen": "10.1.0.2:5060", "allowlist": True},
                       "devices": [{"id": "34020000001320000001"}]})
    assert [line.split(":", 1)[0] for line in config_warnings(cfg)] == ["sip.password"]


def test_a_changed_password_leaves_only_the_allowlist_warning() -> None:
    cfg = load_config({"sip": {"listen": "10.1.0.2:5060", "password": "site-secret"}})
    assert [line.split(":", 1)[0] for line in config_warnings(cfg)] == ["sip.allowlist"]


def test_tokens_over_plain_http_on_a_reachable_api() -> None:
    token = {"name": "noc", "role": "viewer", "sha256": "ab" * 32}
    cfg = load_config({"api": {"listen": "10.1.0.2:8080", "tokens": [token]}})
    assert [line.split(":", 1)[0] for line in config_warnings(cfg)] == ["api.tls"]

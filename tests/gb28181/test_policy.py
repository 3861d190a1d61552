"""Share policy: default deny, rule matching by ID position, ID mapping both ways, names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gbgw.gb28181.boundary.policy import SharePolicy
from gbgw.gb28181.config import ConfigError, load_config

UPPER = {"name": "district", "id": "34020000002000000009", "address": "10.20.0.1:5060",
         "listen": "10.20.0.2:5061", "media_ip": "10.20.0.2", "password": "p"}


def policy(**entry: object) -> SharePolicy:
    config = load_config({"upstreams": [{**UPPER, **entry}]})
    return SharePolicy(config.upstreams[0])


# 3402000001 131 8 000001: centre 34020000, industry 01 (community), type 131 (camera)
COMMUNITY_CAMERA = "34020000011318000001"
SCHOOL_IPC = "34020000111328000002"  # industry 11 (education), type 132
ENTERPRISE_CAMERA = "34020000051318000003"  # industry 05
OTHER_CITY_CAMERA = "35010000011318000004"


def test_nothing_is_shared_without_rules() -> None:
    p = policy()
    assert not p.shared(COMMUNITY_CAMERA)
    assert not p.control_allowed(COMMUNITY_CAMERA)


def test_all_given_fields_of_a_rule_must_match() -> None:
    p = policy(share=[{"prefix": "340200", "industry": ["01", "11"], "type": ["131", "132"]}])
    assert p.shared(COMMUNITY_CAMERA)
    assert p.shared(SCHOOL_IPC)
    assert not p.shared(ENTERPRISE_CAMERA)  # industry 05
    assert not p.shared(OTHER_CITY_CAMERA)  # prefix
    assert not p.shared("34020000011348000001")  # type 134 alarm input


def test_any_rule_shares_and_control_needs_a_rule_saying_so() -> None:
    p = policy(share=[{"prefix": "340200", "industry": "01"},
                      {"ids": [ENTERPRISE_CAMERA], "control": True}])
    assert p.shared(COMMUNITY_CAMERA) and not p.control_allowed(COMMUNITY_CAMERA)
    assert p.shared(ENTERPRISE_CAMERA) and p.control_allowed(ENTERPRISE_CAMERA)
    assert not p.control_allowed(SCHOOL_IPC)


def test_empty_prefix_shares_everything_but_an_empty_rule_is_refused() -> None:
    assert policy(share=[{"prefix": ""}]).shared(OTHER_CITY_CAMERA)
    with pytest.raises(ConfigError) as info:
        policy(share=[{"control": True}])
    assert info.value.key == "upstreams[0].share[0]"


def test_mapping_table_and_rule_round_trip() -> None:
    p = policy(share=[{"prefix": ""}], channel_ids={COMMUNITY_CAMERA: "35010000011318000100"},
               channel_id_rule={"from": "34020000", "to": "35019900"})
    assert p.to_upper(COMMUNITY_CAMERA) == "35010000011318000100"
    assert p.to_local("35010000011318000100") == COMMUNITY_CAMERA
    assert p.to_upper(SCHOOL_IPC) == "35019900111328000002"
    assert p.to_local("35019900111328000002") == SCHOOL_IPC
    # The device-side name of a mapped channel is not a way in.
    assert p.to_local(COMMUNITY_CAMERA) == ""
    assert p.to_local(SCHOOL_IPC) == ""
    assert p.to_upper(OTHER_CITY_CAMERA) == OTHER_CITY_CAMERA == p.to_local(OTHER_CITY_CAMERA)


@given(st.from_regex(r"\d{20}", fullmatch=True))
def test_mapping_is_invertible(channel_id: str) -> None:
    p = policy(share=[{"prefix": ""}], channel_id_rule={"from": "3402", "to": "3501"})
    assert p.to_local(p.to_upper(channel_id)) == channel_id


def test_name_override() -> None:
    p = policy(channel_names={COMMUNITY_CAMERA: "Gate 1"})
    assert p.name_for(COMMUNITY_CAMERA, "IPC-01") == "Gate 1"
    assert p.name_for(SCHOOL_IPC, "IPC-02") == "IPC-02"


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"id": "123"}, "upstreams[0].id"),
        ({"address": "0.0.0.0:5060"}, "upstreams[0].address"),
        ({"transport": "sctp"}, "upstreams[0].transport"),
        ({"media_ports": "5-4"}, "upstreams[0].media_ports"),
        ({"share": [{"industry": ["1"]}]}, "upstreams[0].share[0].industry[0]"),
        ({"share": [{"type": "13"}]}, "upstreams[0].share[0].type[0]"),
        ({"share": [{"prefix": "34x"}]}, "upstreams[0].share[0].prefix[0]"),
        ({"share": [{"colour": "red"}]}, "upstreams[0].share[0].colour"),
        ({"channel_ids": {COMMUNITY_CAMERA: "1", SCHOOL_IPC: "2"}}, f"upstreams[0].channel_ids.{COMMUNITY_CAMERA}"),
        ({"channel_ids": {COMMUNITY_CAMERA: SCHOOL_IPC, ENTERPRISE_CAMERA: SCHOOL_IPC}}, "upstreams[0].channel_ids"),
        ({"channel_id_rule": {"from": "3402", "to": "35"}}, "upstreams[0].channel_id_rule"),
        ({"keepalive_interval": 1}, "upstreams[0].keepalive_interval"),
        ({"id": "34020000002000000001"}, "upstreams[0].id"),
        ({"listen": "127.0.0.1:5060"}, "upstreams[0].listen"),
    ],
)
def test_config_errors_name_the_key(entry: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"upstreams": [{**UPPER, **entry}]})
    assert info.value.key == key


def test_required_keys_and_duplicates() -> None:
    for missing in ("name", "id", "address", "listen", "media_ip"):
        entry = {k: v for k, v in UPPER.items() if k != missing}
        with pytest.raises(ConfigError) as info:
            load_config({"upstreams": [entry]})
        assert info.value.key == f"upstreams[0].{missing}" and "missing" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config({"upstreams": [UPPER, {**UPPER, "listen": "10.20.0.2:5062"}]})
    assert info.value.key == "upstreams[1].name"
    with pytest.raises(ConfigError) as info:
        load_config({"upstreams": [UPPER, {**UPPER, "name": "city"}]})
    assert info.value.key == "upstreams[1].listen"


def test_password_is_never_quoted() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"upstreams": [{**UPPER, "password": "x" * 200}]})
    assert "x" * 20 not in str(info.value)


def test_defaults() -> None:
    (up,) = load_config({"upstreams": [UPPER]}).upstreams
    assert up.domain == "3402000000" and up.username == "34020000002000000001"
    assert up.transport == "udp" and up.register_expires == 3600 and up.keepalive_interval == 60
    assert up.catalog_max_bytes == 1300 and up.rate_limit >= 5000 and up.share == ()
    assert load_config(None).sip.rate_limit >= 5000

"""GB/T 28181 Annex D identifiers. Expected names come from tables D.1 and D.3 of the standard."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gbgw.gb28181.ids import (
    CivilCode,
    GbDomain,
    GbId,
    InvalidGbId,
    industry_name,
    network_name,
    parse_civil_code,
    parse_domain,
    type_category,
    type_name,
)

# A Hikvision IPC from tests/fixtures/interop: centre 3402 (city level), industry 00, type 132, network 0.
HIK_IPC = "34020000001320000001"


def test_fields_split_at_the_annex_d_positions() -> None:
    # Anhui (34) Hefei (01) Shushan (04) grassroots 05, industry 01, type 131, network 8, serial 000123
    gb = GbId.parse("34010405011318000123")
    assert (gb.province, gb.city, gb.district, gb.grassroots) == ("34", "01", "04", "05")
    assert gb.center == "34010405"
    assert gb.industry == "01"
    assert gb.type == "131"
    assert gb.network == "8"
    assert gb.serial == "000123"
    assert gb.domain == "3401040501"
    assert str(gb) == "34010405011318000123"


def test_named_fields_of_real_device_ids() -> None:
    ipc = GbId.parse(HIK_IPC)
    assert ipc.type_name == "IPC"
    assert ipc.industry_name == "road"
    assert ipc.network_name == "surveillance and alarm private network"
    server = GbId.parse("34020000002000000001")
    assert server.type_name == "SIP server / platform"
    assert server.is_platform
    alarm_in = GbId.parse("34020000001340000001")
    assert alarm_in.type_name == "alarm input device"
    assert alarm_in.is_channel_type and not alarm_in.is_camera


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("00", "road"),
        ("01", "community"),
        ("02", "internal unit"),
        ("03", "other public security"),
        ("04", "traffic road"),
        ("05", "traffic checkpoint"),
        ("08", "city management"),
        ("09", "health and environmental protection"),
        ("10", "commodity inspection and customs"),
        ("11", "education"),
        ("12", "government (reserved)"),
        ("39", "government (reserved)"),
        ("40", "agriculture, forestry, animal husbandry and fishery"),
        ("44", "power enterprise"),
        ("45", "gas enterprise"),
        ("51", "finance enterprise"),
        ("55", "entertainment enterprise"),
        ("56", "enterprise or institution (reserved)"),
        ("79", "enterprise or institution (reserved)"),
        ("80", "residents' own (reserved)"),
        ("89", "residents' own (reserved)"),
        ("90", "other party (reserved)"),
        ("99", "other party (reserved)"),
        ("1", "undefined"),
        ("ab", "undefined"),
    ],
)
def test_industry_table_d3(code: str, name: str) -> None:
    assert industry_name(code) == name


@pytest.mark.parametrize(
    ("code", "name", "category"),
    [
        ("111", "DVR", "front-end main device"),
        ("118", "NVR", "front-end main device"),
        ("119", "extended front-end main device", "front-end main device"),
        ("130", "HVR", "front-end main device"),
        ("131", "camera", "front-end peripheral device"),
        ("132", "IPC", "front-end peripheral device"),
        ("134", "alarm input device", "front-end peripheral device"),
        ("135", "alarm output device", "front-end peripheral device"),
        ("139", "other peripheral device", "front-end peripheral device"),
        ("140", "extended front-end peripheral device", "front-end peripheral device"),
        ("199", "extended front-end peripheral device", "front-end peripheral device"),
        ("200", "SIP server / platform", "platform device"),
        ("209", "access gateway", "platform device"),
        ("211", "signalling security routing gateway", "platform device"),
        ("212", "extended platform device", "platform device"),
        ("215", "business group", "platform device"),
        ("216", "virtual organisation", "platform device"),
        ("217", "extended platform device", "platform device"),
        ("300", "centre user", "centre user"),
        ("301", "industry role user", "centre user"),
        ("343", "industry role user", "centre user"),
        ("344", "extended centre user", "centre user"),
        ("400", "terminal user", "terminal user"),
        ("443", "industry role user", "terminal user"),
        ("444", "extended terminal user", "terminal user"),
        ("500", "video image integrated application platform signalling server", "external platform server"),
        ("502", "extended external platform server", "external platform server"),
        ("600", "extended type", "extension"),
        ("999", "extended type", "extension"),
        ("000", "undefined", "undefined"),
        ("110", "undefined", "undefined"),
    ],
)
def test_type_table_d1(code: str, name: str, category: str) -> None:
    assert type_name(code) == name
    assert type_category(code) == category


@pytest.mark.parametrize(
    ("digit", "name"),
    [
        ("0", "surveillance and alarm private network"),
        ("4", "surveillance and alarm private network"),
        ("5", "public security information network"),
        ("6", "government network"),
        ("7", "Internet"),
        ("8", "social resource access network"),
        ("9", "reserved"),
        ("x", "undefined"),
    ],
)
def test_network_digit(digit: str, name: str) -> None:
    assert network_name(digit) == name


@pytest.mark.parametrize(
    ("value", "device", "channel", "camera", "platform", "organisation"),
    [
        ("34020000001320000001", True, True, True, False, False),  # IPC
        ("34020000001310000001", True, True, True, False, False),  # camera channel of an NVR
        ("34020000001180000001", True, False, False, False, False),  # NVR
        ("34020000001110000001", True, False, False, False, False),  # DVR
        ("34020000001340000001", True, True, False, False, False),  # alarm input
        ("34020000002000000001", False, False, False, True, False),  # SIP server
        ("34020000002090000001", False, False, False, True, False),  # access gateway
        ("34020000002150000001", False, False, False, False, True),  # business group
        ("34020000002160000001", False, False, False, False, True),  # virtual organisation
        ("34020000003000000001", False, False, False, False, False),  # centre user
    ],
)
def test_kind_predicates(
    value: str, device: bool, channel: bool, camera: bool, platform: bool, organisation: bool
) -> None:
    gb = GbId.parse(value)
    assert (gb.is_device, gb.is_channel_type, gb.is_camera, gb.is_platform, gb.is_organisation) == (
        device,
        channel,
        camera,
        platform,
        organisation,
    )


@pytest.mark.parametrize(
    "value",
    [
        "3402000000132000000",  # 19 digits
        "340200000013200000011",  # 21 digits
        "3402000000132000000A",
        " 34020000001320000001",
        "34020000001320000001\n",
        "",
        "３４０２００００００１３２００００００１",  # full-width digits: isdigit() is True for these
        "٣٤٠٢٠٠٠٠٠٠١٣٢٠٠٠٠٠٠١",  # Arabic-Indic digits
    ],
)
def test_invalid_ids_raise_naming_the_value(value: str) -> None:
    with pytest.raises(InvalidGbId) as caught:
        GbId.parse(value)
    assert repr(value) in str(caught.value)
    assert caught.value.value == value
    assert isinstance(caught.value, ValueError)


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidGbId):
        GbId.parse(34020000001320000001)  # type: ignore[arg-type]


def test_constructor_validates_too() -> None:
    with pytest.raises(InvalidGbId):
        GbId("123")


def test_ids_are_values() -> None:
    assert GbId.parse(HIK_IPC) == GbId.parse(HIK_IPC)
    assert len({GbId.parse(HIK_IPC), GbId.parse(HIK_IPC)}) == 1


def test_as_dict_is_json_and_complete() -> None:
    # Beijing (11) Chaoyang (0105), a school (industry 11) camera (131) on the social resource network (8)
    data = GbId.parse("11010500111318000001").as_dict()
    json.dumps(data)
    assert data["id"] == "11010500111318000001"
    assert data["civil_code"] == "110105"
    assert data["industry_name"] == "education"
    assert data["type_name"] == "camera"
    assert data["network_name"] == "social resource access network"
    assert data["is_camera"] is True
    assert data["is_platform"] is False


@pytest.mark.parametrize(
    ("value", "civil"),
    [
        ("34020000001320000001", "3402"),
        ("34020100001320000001", "340201"),
        ("34020105001320000001", "34020105"),
        ("11000000001320000001", "11"),
    ],
)
def test_civil_code_drops_empty_levels(value: str, civil: str) -> None:
    assert GbId.parse(value).civil_code == civil


def test_domain_codes() -> None:
    domain = parse_domain("3402000000")
    assert isinstance(domain, GbDomain)
    assert domain.center == "34020000"
    assert domain.civil_code == "3402"
    assert domain.industry == "00"
    assert domain.contains(GbId.parse(HIK_IPC))
    assert not domain.contains(GbId.parse("34010000001320000001"))
    # 6.1.2: "ten digits plus .spvmn.cn" is an allowed form; Hikvision NVRs use it.
    assert parse_domain("3402000000.spvmn.cn") == domain
    assert parse_domain("3402000000.SPVMN.CN") == domain
    assert domain.as_dict()["industry_name"] == "road"


@pytest.mark.parametrize(
    "value", ["340200000", "34020000000", "3402000000.example.cn", "abcdefghij.spvmn.cn"]
)
def test_invalid_domains(value: str) -> None:
    with pytest.raises(InvalidGbId):
        parse_domain(value)


@pytest.mark.parametrize(
    ("value", "level"),
    [("34", "province"), ("3402", "city"), ("340201", "district"), ("34020105", "grassroots")],
)
def test_civil_code_prefixes(value: str, level: str) -> None:
    code = parse_civil_code(value)
    assert isinstance(code, CivilCode)
    assert code.level == level
    assert code.contains(GbId.parse("34020105001320000001"))
    assert not code.contains(GbId.parse("35020105001320000001"))


@pytest.mark.parametrize("value", ["3", "340", "3402000000", "", "34a2", "３４"])
def test_invalid_civil_codes(value: str) -> None:
    with pytest.raises(InvalidGbId):
        parse_civil_code(value)


@given(st.text(alphabet="0123456789", min_size=20, max_size=20))
def test_any_twenty_digits_parse_and_fields_concatenate_back(value: str) -> None:
    gb = GbId.parse(value)
    assert gb.center + gb.industry + gb.type + gb.network + gb.serial == value
    assert gb.province + gb.city + gb.district + gb.grassroots == gb.center
    assert value.startswith(gb.civil_code)
    assert set(gb.as_dict()) >= {"industry_name", "type_name", "network_name"}


@given(st.text(max_size=25).filter(lambda s: not (len(s) == 20 and s.isascii() and s.isdigit())))
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(InvalidGbId):
        GbId.parse(value)

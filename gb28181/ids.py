"""The GB/T 28181 identifiers of Annex D: 20-digit IDs, 10-digit domains and civil-code prefixes.

An ID is `CCCCCCCC II TTT N SSSSSS`: centre code (province, city, district and grassroots unit, two digits
each, trailing levels zero when the centre is not a grassroots unit), industry (table D.3), type (table D.1),
network (table D.1, digit 14) and serial. The fields carry policy meaning (which industry a camera belongs
to, whether an ID is a platform or a channel), so they are decoded here once and named in English.

Note: D.1's prose says the serial has 7 digits, but its table gives digit 14 to the network and 15-20 to the
serial; every device follows the table, and so does this module.

`GbId.parse` runs once per catalog item, so it does one length check, one ASCII check and one digit check
and defers slicing to the properties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "CivilCode",
    "GbDomain",
    "GbId",
    "InvalidGbId",
    "industry_name",
    "network_name",
    "parse_civil_code",
    "parse_domain",
    "type_category",
    "type_name",
]


class InvalidGbId(ValueError):
    """A string that is not the identifier it was expected to be; names the offending value."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__(f"invalid GB/T 28181 ID {value!r}: {reason}")
        self.value = value
        self.reason = reason


# Table D.3. Ranges the standard reserves are named by their constructing party.
# 02 is "social security internal access"; the standard's note lists police office buildings and
# detention rooms as its examples, which matters to any policy that reads 02 as "enterprise internal".
_INDUSTRY_NAMES: dict[str, str] = {
    "00": "road",
    "01": "community",
    "02": "internal unit",
    "03": "other public security",
    "04": "traffic road",
    "05": "traffic checkpoint",
    "06": "traffic internal",
    "07": "traffic other",
    "08": "city management",
    "09": "health and environmental protection",
    "10": "commodity inspection and customs",
    "11": "education",
    "40": "agriculture, forestry, animal husbandry and fishery",
    "41": "mining enterprise",
    "42": "manufacturing enterprise",
    "43": "metallurgy enterprise",
    "44": "power enterprise",
    "45": "gas enterprise",
    "46": "construction enterprise",
    "47": "logistics enterprise",
    "48": "postal enterprise",
    "49": "information enterprise",
    "50": "accommodation and catering",
    "51": "finance enterprise",
    "52": "real estate",
    "53": "business services",
    "54": "water conservancy enterprise",
    "55": "entertainment enterprise",
}
_INDUSTRY_RANGES: tuple[tuple[int, int, str], ...] = (
    (12, 39, "government (reserved)"),
    (56, 79, "enterprise or institution (reserved)"),
    (80, 89, "residents' own (reserved)"),
    (90, 99, "other party (reserved)"),
)

# Table D.1, type codes (digits 11-13).
_TYPE_NAMES: dict[int, str] = {
    111: "DVR",
    112: "video server",
    113: "encoder",
    114: "decoder",
    115: "video switching matrix",
    116: "audio switching matrix",
    117: "alarm controller",
    118: "NVR",
    130: "HVR",
    131: "camera",
    132: "IPC",
    133: "display",
    134: "alarm input device",
    135: "alarm output device",
    136: "voice input device",
    137: "voice output device",
    138: "mobile transmission device",
    139: "other peripheral device",
    200: "SIP server / platform",
    201: "web application server",
    202: "media distribution server",
    203: "proxy server",
    204: "security server",
    205: "alarm server",
    206: "database server",
    207: "GIS server",
    208: "management server",
    209: "access gateway",
    210: "media storage server",
    211: "signalling security routing gateway",
    215: "business group",
    216: "virtual organisation",
    300: "centre user",
    400: "terminal user",
    500: "video image integrated application platform signalling server",
    501: "video image operation and maintenance platform signalling server",
}
# (first, last, category, name of the codes the standard leaves unnamed in that range)
_TYPE_RANGES: tuple[tuple[int, int, str, str], ...] = (
    (111, 130, "front-end main device", "extended front-end main device"),
    (131, 199, "front-end peripheral device", "extended front-end peripheral device"),
    (200, 299, "platform device", "extended platform device"),
    (300, 399, "centre user", "extended centre user"),
    (400, 499, "terminal user", "extended terminal user"),
    (500, 599, "external platform server", "extended external platform server"),
    (600, 999, "extension", "extended type"),
)
# Role users sit inside the user ranges (D.1: 301-343 and 401-443).
_ROLE_USERS: tuple[tuple[int, int], ...] = ((301, 343), (401, 443))

_NETWORK_NAMES: tuple[str, ...] = (
    "surveillance and alarm private network",
    "surveillance and alarm private network",
    "surveillance and alarm private network",
    "surveillance and alarm private network",
    "surveillance and alarm private network",
    "public security information network",
    "government network",
    "Internet",
    "social resource access network",
    "reserved",
)


def industry_name(code: str) -> str:
    """English name of a 2-digit industry code (table D.3); "undefined" outside the table."""
    name = _INDUSTRY_NAMES.get(code)
    if name is not None:
        return name
    if len(code) == 2 and code.isascii() and code.isdigit():
        value = int(code)
        for first, last, range_name in _INDUSTRY_RANGES:
            if first <= value <= last:
                return range_name
    return "undefined"


def _type_value(code: str) -> int:
    return int(code) if len(code) == 3 and code.isascii() and code.isdigit() else -1


def type_name(code: str) -> str:
    """English name of a 3-digit type code (table D.1); unnamed codes get their range's name."""
    value = _type_value(code)
    name = _TYPE_NAMES.get(value)
    if name is not None:
        return name
    for first, last in _ROLE_USERS:
        if first <= value <= last:
            return "industry role user"
    for first, last, _category, range_name in _TYPE_RANGES:
        if first <= value <= last:
            return range_name
    return "undefined"


def type_category(code: str) -> str:
    """The D.1 range a type code falls in (front-end main device, platform device, ...)."""
    value = _type_value(code)
    for first, last, category, _range_name in _TYPE_RANGES:
        if first <= value <= last:
            return category
    return "undefined"


def network_name(digit: str) -> str:
    """English name of the network digit (D.1, digit 14)."""
    if len(digit) == 1 and "0" <= digit <= "9":
        return _NETWORK_NAMES[ord(digit) - 48]
    return "undefined"


def _is_digits(value: str, length: int) -> bool:
    # isdigit() alone accepts non-ASCII digits such as "²" or "٣"; isascii() excludes them.
    return len(value) == length and value.isascii() and value.isdigit()


@dataclass(frozen=True, slots=True)
class GbId:
    """A validated 20-digit ID. Hashable and ordered by its string, so it can key dictionaries."""

    value: str

    def __post_init__(self) -> None:
        # Validating here rather than only in parse() means no unvalidated GbId can exist.
        value = self.value
        if type(value) is not str:
            raise InvalidGbId(value, "not a string")
        if not _is_digits(value, 20):
            raise InvalidGbId(value, "expected 20 ASCII digits")

    @classmethod
    def parse(cls, value: str) -> GbId:
        """Validate `value` (exactly 20 ASCII digits, no surrounding space) or raise InvalidGbId."""
        return cls(value)

    def __str__(self) -> str:
        return self.value

    @property
    def center(self) -> str:
        """The 8-digit centre code (civil code of the centre, zero-padded)."""
        return self.value[:8]

    @property
    def province(self) -> str:
        return self.value[0:2]

    @property
    def city(self) -> str:
        return self.value[2:4]

    @property
    def district(self) -> str:
        return self.value[4:6]

    @property
    def grassroots(self) -> str:
        return self.value[6:8]

    @property
    def civil_code(self) -> str:
        """The centre code without its empty levels: "34020000" -> "3402" (city level)."""
        return _trim_civil(self.value[:8])

    @property
    def domain(self) -> str:
        """The 10-digit domain (centre + industry), the usual SIP realm and URI host."""
        return self.value[:10]

    @property
    def industry(self) -> str:
        return self.value[8:10]

    @property
    def type(self) -> str:
        return self.value[10:13]

    @property
    def network(self) -> str:
        return self.value[13]

    @property
    def serial(self) -> str:
        return self.value[14:]

    @property
    def industry_name(self) -> str:
        return industry_name(self.value[8:10])

    @property
    def type_name(self) -> str:
        return type_name(self.value[10:13])

    @property
    def type_category(self) -> str:
        return type_category(self.value[10:13])

    @property
    def network_name(self) -> str:
        return network_name(self.value[13])

    @property
    def is_device(self) -> bool:
        """Front-end equipment: a main device (111-130) or a peripheral (131-199)."""
        return 111 <= int(self.value[10:13]) <= 199

    @property
    def is_channel_type(self) -> bool:
        """A front-end peripheral (131-199): what a catalog lists as a channel under a main device."""
        return 131 <= int(self.value[10:13]) <= 199

    @property
    def is_camera(self) -> bool:
        """131 camera or 132 IPC: the IDs that carry video."""
        return self.value[10:13] in ("131", "132")

    @property
    def is_platform(self) -> bool:
        """A platform device (200-299) other than the catalog grouping nodes 215 and 216."""
        code = int(self.value[10:13])
        return 200 <= code <= 299 and code not in (215, 216)

    @property
    def is_organisation(self) -> bool:
        """A business group (215) or virtual organisation (216): catalog tree nodes, not equipment."""
        return self.value[10:13] in ("215", "216")

    def as_dict(self) -> dict[str, Any]:
        """All fields and names, for the API and logs."""
        return {
            "id": self.value,
            "center": self.center,
            "province": self.province,
            "city": self.city,
            "district": self.district,
            "grassroots": self.grassroots,
            "civil_code": self.civil_code,
            "domain": self.domain,
            "industry": self.industry,
            "industry_name": self.industry_name,
            "type": self.type,
            "type_name": self.type_name,
            "type_category": self.type_category,
            "network": self.network,
            "network_name": self.network_name,
            "serial": self.serial,
            "is_device": self.is_device,
            "is_channel_type": self.is_channel_type,
            "is_camera": self.is_camera,
            "is_platform": self.is_platform,
            "is_organisation": self.is_organisation,
        }


def _trim_civil(center: str) -> str:
    # D.1: levels below the centre's own are zero; GB/T 2260 never uses 00 for a real level below
    # the province, so trailing "00" pairs are empty levels.
    end = 8
    while end > 2 and center[end - 2 : end] == "00":
        end -= 2
    return center[:end]


_DOMAIN_SUFFIX = ".spvmn.cn"


@dataclass(frozen=True, slots=True)
class GbDomain:
    """A 10-digit domain code (centre + industry), used as SIP realm and URI host (6.1.2)."""

    value: str

    def __post_init__(self) -> None:
        if type(self.value) is not str or not _is_digits(self.value, 10):
            raise InvalidGbId(self.value, "expected a 10-digit domain code")

    @property
    def center(self) -> str:
        return self.value[:8]

    @property
    def civil_code(self) -> str:
        return _trim_civil(self.value[:8])

    @property
    def industry(self) -> str:
        return self.value[8:]

    @property
    def industry_name(self) -> str:
        return industry_name(self.value[8:])

    def contains(self, gb_id: GbId) -> bool:
        return gb_id.value.startswith(self.value)

    def __str__(self) -> str:
        return self.value

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.value,
            "center": self.center,
            "civil_code": self.civil_code,
            "industry": self.industry,
            "industry_name": self.industry_name,
        }


def parse_domain(value: str) -> GbDomain:
    """Parse a 10-digit domain, also in the "3402000000.spvmn.cn" form 6.1.2 allows."""
    if type(value) is not str:
        raise InvalidGbId(value, "not a string")
    if len(value) == 10 + len(_DOMAIN_SUFFIX) and value[10:].lower() == _DOMAIN_SUFFIX:
        if not _is_digits(value[:10], 10):
            raise InvalidGbId(value, "expected a 10-digit domain code")
        return GbDomain(value[:10])
    return GbDomain(value)


_CIVIL_LEVELS: dict[int, str] = {2: "province", 4: "city", 6: "district", 8: "grassroots"}


@dataclass(frozen=True, slots=True)
class CivilCode:
    """An administrative-region prefix of 2, 4, 6 or 8 digits (A.1), used as a catalog parent."""

    value: str

    def __post_init__(self) -> None:
        value = self.value
        if (
            type(value) is not str
            or len(value) not in _CIVIL_LEVELS
            or not (value.isascii() and value.isdigit())
        ):
            raise InvalidGbId(value, "expected a civil code of 2, 4, 6 or 8 digits")

    @property
    def level(self) -> str:
        """Administrative level: province, city, district or grassroots."""
        return _CIVIL_LEVELS[len(self.value)]

    def contains(self, gb_id: GbId) -> bool:
        """Whether an ID's centre lies inside this region."""
        return gb_id.value.startswith(self.value)

    def __str__(self) -> str:
        return self.value


def parse_civil_code(value: str) -> CivilCode:
    """Parse a civil-code prefix: 2, 4, 6 or 8 ASCII digits."""
    return CivilCode(value)

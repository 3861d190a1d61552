"""MANSCDP values, both ways: a typed message's fields read from an element by a declarative table, and one
value written as a child element.

A `FieldTable` lists (attribute, XML tag, converter) rows; `read_fields` returns every attribute of the
table, found or not, so a slotted dataclass is built as `cls(**read_fields(element, TABLE))`. A converter
is called as `convert(tag, text)`: `text` is the element's text ("" for an empty element), None when the
element is absent. Converters are tolerant: a value that is absent, unparsable or a placeholder ("null",
an empty element, the element's own name such as `<Owner>Owner</Owner>`) reads as None, never raises.
"""

from __future__ import annotations

import enum
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeAlias

from gbgw.gb28181.manscdp.text import xml_safe

Converter: TypeAlias = Callable[[str, "str | None"], Any]

_PLACEHOLDERS = frozenset({"null", "(null)", "none", "nil", "n/a"})


def is_placeholder(tag: str, value: str) -> bool:
    """Whether a device wrote `value` only to fill the mandatory element `tag`."""
    value = value.strip()
    if not value:
        return True
    lowered = value.lower()
    return lowered in _PLACEHOLDERS or lowered == tag.lower()


def as_str(tag: str, text: str | None) -> str | None:
    """Stripped text; None for placeholders."""
    if text is None:
        return None
    value = text.strip()
    length = len(value)
    if not length:
        return None
    # Lower-casing only when the length could match keeps this cheap: it runs for every catalog field.
    if length <= 6 and value.lower() in _PLACEHOLDERS:
        return None
    if length == len(tag) and value.lower() == tag.lower():
        return None
    return value


def as_int(tag: str, text: str | None) -> int | None:
    if text is None:
        return None
    value = text.strip()
    # The length cap keeps int() away from its quadratic-time conversion of huge digit strings.
    if value.isdigit() and len(value) <= 18 and value.isascii():
        return int(value)
    digits = value[1:] if value[:1] in ("-", "+") else ""
    if digits.isdigit() and len(digits) <= 18 and digits.isascii():
        return int(value)
    return None


def as_float(tag: str, text: str | None) -> float | None:
    if text is None:
        return None
    value = text.strip()
    if not value or len(value) > 40:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def as_raw(tag: str, text: str | None) -> str | None:
    """Stripped text, placeholders kept: for values where "Name"-like words are legitimate."""
    if text is None:
        return None
    value = text.strip()
    return value or None


def as_id(tag: str, text: str | None) -> str:
    """An identifier the record cannot be without: stripped text, "" when absent."""
    return as_raw(tag, text) or ""


def as_present(tag: str, text: str | None) -> bool:
    """Whether the element is there at all: for commands whose element carries no value (TeleBoot)."""
    return text is not None


def parse_time(value: str | None) -> datetime | None:
    """A MANSCDP dateTime ("2025-04-22T11:26:02", also with a space, fraction or offset) or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def format_time(value: datetime | str) -> str:
    """The form devices expect: local time, seconds precision, no offset ("2025-04-22T11:26:02")."""
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def child_text(element: ET.Element, tag: str) -> str | None:
    """Stripped text of the first child `tag` ("" when empty), None when there is none."""
    child = element.find(tag)
    if child is None:
        return None
    return (child.text or "").strip()


def attribute(element: ET.Element, name: str) -> str | None:
    """An XML attribute, also found under its lower-case name."""
    value = element.get(name)
    if value is None:
        value = element.get(name.lower())
    return value


def leaves(element: ET.Element) -> dict[str, str]:
    """Every leaf under `element` by tag, first occurrence winning."""
    found: dict[str, str] = {}
    for node in element.iter():
        if not len(node) and node.tag not in found:
            found[node.tag] = node.text or ""
    return found


class Scope(enum.Enum):
    """Where `read_fields` looks for a tag."""

    CHILDREN = "children"
    """Direct children of the element: the standard's layout for most messages."""
    SUBTREE = "subtree"
    """The first element with the tag anywhere in the subtree, in document order: catalog items, whose
    <Info> fields devices put at either level."""
    LEAVES = "leaves"
    """The first element with the tag and no children, anywhere in the subtree: flat commands whose
    optional fields devices put either directly under the root or inside <Info>."""


class FieldTable:
    """(attribute, XML tag, converter) rows, in the order the standard lists the elements.

    Several rows may name one attribute (spelling variants): the first tag found wins."""

    __slots__ = ("by_tag", "defaults", "rows")

    def __init__(self, *rows: tuple[str, str, Converter]) -> None:
        self.rows = rows
        self.by_tag = {tag: (attr, convert) for attr, tag, convert in rows}
        # What an absent element reads as, computed once: converters are pure.
        self.defaults: dict[str, Any] = {}
        for attr, tag, convert in rows:
            self.defaults.setdefault(attr, convert(tag, None))


def read_fields(
    element: ET.Element | None,
    table: FieldTable,
    scope: Scope = Scope.CHILDREN,
    *,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Every attribute of `table` read from `element` (None: nothing there, all defaults).

    With `extra`, the texts of subtree leaves the table does not name are added to it (first occurrence
    winning), so elements a vendor adds survive; only SUBTREE and LEAVES walk the subtree to find them."""
    if element is None:
        return dict(table.defaults)
    found: dict[str, Any] = {}
    if scope is Scope.CHILDREN:
        for attr, tag, convert in table.rows:
            if attr not in found:
                child = element.find(tag)
                if child is not None:
                    found[attr] = convert(tag, child.text or "")
    else:
        by_tag = table.by_tag
        leaves_only = scope is Scope.LEAVES
        # iter() walks the subtree in C and in document order.
        for node in element.iter():
            tag = node.tag
            spec = by_tag.get(tag)
            if spec is None:
                if extra is not None:
                    text = node.text
                    if text and not len(node) and not text.isspace() and tag not in extra:
                        extra[tag] = text.strip()
                continue
            if leaves_only and len(node):
                continue
            attr, convert = spec
            if attr not in found:
                found[attr] = convert(tag, node.text)
    if len(found) == len(table.defaults):
        return found
    return {**table.defaults, **found}


# ---------------------------------------------------------------------------------------------------------
# Writing

Field: TypeAlias = "str | int | float | ET.Element | Mapping[str, Field] | None"


def _number(value: float) -> str:
    text = repr(value)
    if "e" in text or "E" in text:
        # Devices parse plain decimals only.
        text = format(value, ".10f").rstrip("0").rstrip(".")
    return text


def append_field(parent: ET.Element, tag: str, value: Field) -> None:
    """Append `value` as <tag>: a Mapping becomes nested elements, an Element is appended as is, None is
    skipped."""
    if value is None:
        return
    if isinstance(value, ET.Element):
        parent.append(value)
        return
    child = ET.SubElement(parent, tag)
    if isinstance(value, Mapping):
        for sub_tag, sub_value in value.items():
            append_field(child, sub_tag, sub_value)
    elif isinstance(value, bool):
        raise TypeError(f"<{tag}>: MANSCDP has no boolean type; pass 0/1 or the command's words")
    elif isinstance(value, int):
        child.text = str(value)
    elif isinstance(value, float):
        child.text = _number(value)
    else:
        child.text = xml_safe(value)

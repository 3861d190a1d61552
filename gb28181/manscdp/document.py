"""The MANSCDP document envelope: a body read into its root, CmdType, SN, DeviceID and element tree, and
serialized back in the charset to answer in.

Safety: no DTD is ever processed (see text), bodies over `max_size` are refused before decoding, and
nothing read from the network raises anything but ManscdpError.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from gbgw.gb28181.manscdp.fields import as_int, child_text
from gbgw.gb28181.manscdp.messages import TypedMessage, typed
from gbgw.gb28181.manscdp.text import XmlTextError, codec_for, decode_body, read_element, to_text

ROOTS = ("Query", "Control", "Notify", "Response")
DEFAULT_MAX_SIZE = 256 * 1024

_ROOT_BY_LOWER = {root.lower(): root for root in ROOTS}
_CMD_TYPES = (
    "Keepalive",
    "Catalog",
    "DeviceInfo",
    "DeviceStatus",
    "RecordInfo",
    "Alarm",
    "MobilePosition",
    "MediaStatus",
    "PresetQuery",
    "ConfigDownload",
    "DeviceControl",
    "DeviceConfig",
    "Broadcast",
    "PTZPosition",
    "HomePositionQuery",
    "CruiseTrackListQuery",
    "CruiseTrackQuery",
    "SDCardStatus",
    "DeviceUpgradeResult",
    "UploadSnapShotFinished",
)
_CMD_TYPE_BY_LOWER = {cmd.lower(): cmd for cmd in _CMD_TYPES}


class ManscdpError(ValueError):
    """A body that cannot be used. `status` is the SIP status to answer the carrying request with."""

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(slots=True)
class ManscdpDocument:
    """One MANSCDP body. `element` is the root element and is what gets serialized; the header fields
    are read from it when parsing and written to it when building."""

    root: str
    cmd_type: str
    sn: int | None
    device_id: str
    element: ET.Element = field(repr=False)
    encoding: str = "GB2312"
    repairs: list[str] = field(default_factory=list)

    def text(self, path: str) -> str | None:
        """Stripped text at an ElementPath (e.g. "Info/AlarmType"); None when absent."""
        value = self.element.findtext(path)
        return None if value is None else value.strip()

    def typed(self) -> TypedMessage | None:
        """The typed form of this command, or None when the gateway has no typed form for it."""
        return typed(self)

    def with_header(self, *, sn: int | None = None, device_id: str | None = None) -> ManscdpDocument:
        """A copy with a new SN and/or DeviceID, for relaying a command under our own numbering."""
        element = copy.deepcopy(self.element)
        new_sn = self.sn if sn is None else sn
        new_device_id = self.device_id if device_id is None else device_id
        if sn is not None:
            _set_header(element, "SN", str(sn))
        if device_id is not None:
            _set_header(element, "DeviceID", device_id)
        return ManscdpDocument(
            self.root, self.cmd_type, new_sn, new_device_id, element, self.encoding, list(self.repairs)
        )


def _set_header(element: ET.Element, tag: str, value: str) -> None:
    child = element.find(tag)
    if child is None:
        child = ET.Element(tag)
        position = 1 if tag == "SN" else 2
        element.insert(min(position, len(element)), child)
    child.text = value


def parse(body: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> ManscdpDocument:
    """Decode and read a MANSCDP body. Raises ManscdpError (with the SIP status to answer) when the body
    is too large, is not XML even tolerantly, carries a DTD, has a foreign root, or lacks a CmdType."""
    if len(body) > max_size:
        raise ManscdpError(f"body of {len(body)} bytes exceeds the {max_size}-byte limit", status=413)
    decoded = decode_body(body)
    repairs = []
    if decoded.replaced:
        repairs.append(f"{decoded.replaced} undecodable byte sequences replaced ({decoded.encoding})")
    return parse_text(decoded.text, encoding=decoded.encoding, repairs=repairs)


def parse_text(text: str, *, encoding: str = "UTF-8", repairs: list[str] | None = None) -> ManscdpDocument:
    """Read an already decoded body; `encoding` is recorded as the charset to answer in."""
    found = [] if repairs is None else repairs
    try:
        element, reader_repairs = read_element(text)
    except XmlTextError as exc:
        raise ManscdpError(str(exc)) from None
    found.extend(reader_repairs)
    root = _ROOT_BY_LOWER.get(element.tag.lower())
    if root is None:
        raise ManscdpError(f"root element <{element.tag}> is not one of {', '.join(ROOTS)}")
    if element.tag != root:
        found.append(f"root <{element.tag}> read as <{root}>")
        element.tag = root
    cmd_text = child_text(element, "CmdType")
    if not cmd_text:
        raise ManscdpError(f"<{root}> has no CmdType")
    cmd_type = _CMD_TYPE_BY_LOWER.get(cmd_text.lower(), cmd_text)
    sn_text = child_text(element, "SN")
    sn = as_int("SN", sn_text)
    if sn is None or sn < 0:
        sn = None
        found.append("SN missing" if sn_text is None else f"SN {sn_text!r} is not a number")
    device_id = child_text(element, "DeviceID") or ""
    return ManscdpDocument(root, cmd_type, sn, device_id, element, encoding, found)


def encode_body(doc: ManscdpDocument, encoding: str = "GB2312") -> bytes:
    """Serialize with `<?xml version="1.0" encoding="..."?>`. GB2312 and GBK are written with the GB18030
    codec so that characters outside them survive; characters the charset cannot hold become references.
    Answer a device in the charset it used (`request.encoding`)."""
    label, codec = codec_for(encoding)
    text = f'<?xml version="1.0" encoding="{label}"?>\n{to_text(doc.element)}\n'
    return text.encode(codec, "xmlcharrefreplace")

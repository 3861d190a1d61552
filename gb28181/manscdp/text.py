"""XML text as devices really send it: charset detection, a DTD-free tolerant reader, and serialization.

Knows nothing of MANSCDP. Two readers share one contract (an `xml.etree.ElementTree.Element` tree plus a
list of what had to be repaired):

* the fast path is expat through ElementTree's C parser and tree builder (a 30-item catalog in about
  0.2 ms). Expat would expand entities declared in a DTD, so any `<!` other than a comment or CDATA section
  is refused before expat sees the text; without a DTD no entity can be declared, so bombs and external
  entities are inert. Stray `&` is escaped first because expat rejects it.
* when expat still refuses (mismatched or unclosed tags, a bare `<` in text, control characters, junk
  after the root), a regex tokenizer rebuilds the tree, closing what was left open and keeping stray
  text. It is about 2.5 times slower, so it only runs for bodies that need it.

Element texts are kept as received (surrounding whitespace included); callers strip.
"""

from __future__ import annotations

import codecs
import copy
import re
import xml.etree.ElementTree as ET
from typing import NamedTuple

__all__ = [
    "MAX_DEPTH",
    "DecodedBody",
    "XmlTextError",
    "codec_for",
    "decode_body",
    "read_element",
    "read_tolerant",
    "to_text",
    "xml_safe",
]

MAX_DEPTH = 16
"""Deepest nesting accepted. MANSCDP needs 5 (Response/SVACEncodeConfig/ROIParam/Item/ROISeq); the bound
keeps hostile nesting away from ElementTree's recursive serializer."""


class XmlTextError(ValueError):
    """Text that cannot be read as XML even tolerantly, or that carries a DTD."""


class DecodedBody(NamedTuple):
    """A body as text. `encoding` is the charset label to answer with; `replaced` counts the replacement
    characters put in for undecodable bytes (0 when the body was clean), for the caller to log."""

    text: str
    encoding: str
    replaced: int
    declared: str | None


# Labels devices put in the declaration. GB2312 and GBK are decoded with GB18030: it is a superset of both,
# and devices write characters outside GB2312 (rare surname characters, for instance) under those labels.
_CHARSETS: dict[str, tuple[str, str]] = {
    "gb2312": ("GB2312", "gb18030"),
    "gb_2312": ("GB2312", "gb18030"),
    "gb_2312-80": ("GB2312", "gb18030"),
    "csgb2312": ("GB2312", "gb18030"),
    "euc-cn": ("GB2312", "gb18030"),
    "euccn": ("GB2312", "gb18030"),
    "x-euc-cn": ("GB2312", "gb18030"),
    "gbk": ("GBK", "gb18030"),
    "x-gbk": ("GBK", "gb18030"),
    "cp936": ("GBK", "gb18030"),
    "ms936": ("GBK", "gb18030"),
    "windows-936": ("GBK", "gb18030"),
    "gb18030": ("GB18030", "gb18030"),
    "gb-18030": ("GB18030", "gb18030"),
    "utf-8": ("UTF-8", "utf-8"),
    "utf8": ("UTF-8", "utf-8"),
    "utf_8": ("UTF-8", "utf-8"),
}

_DECLARATION = re.compile(rb"\s*<\?xml\b([^>]*?)\?>")
_ENCODING_ATTR = re.compile(rb"""\bencoding\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""")
_UTF8_BOM = b"\xef\xbb\xbf"
_REPLACEMENT = "\ufffd"
_REPLACEMENT_BYTES: dict[str, bytes] = {
    "gb18030": _REPLACEMENT.encode("gb18030"),
    "utf-8": _REPLACEMENT.encode(),
}


def codec_for(label: str) -> tuple[str, str]:
    """Map a charset label to (label to declare, Python codec). GB2312/GBK map to the GB18030 codec.

    Raises LookupError for a label Python does not know.
    """
    known = _CHARSETS.get(label.strip().lower())
    if known is not None:
        return known
    info = codecs.lookup(label.strip())
    return label.strip().upper(), info.name


def _decode(body: bytes, codec: str) -> tuple[str, int]:
    try:
        return body.decode(codec), 0
    except UnicodeDecodeError:
        text = body.decode(codec, "replace")
        genuine = body.count(_REPLACEMENT_BYTES.get(codec) or _REPLACEMENT.encode(codec, "replace"))
        return text, max(text.count(_REPLACEMENT) - genuine, 1)


def decode_body(body: bytes) -> DecodedBody:
    """Decode a body the way the device meant it; never raises.

    A declared charset is honoured (any case, single or double quotes); without one (or with a label Python
    does not know) UTF-8 is tried strictly, then GB18030. Undecodable bytes become U+FFFD and are counted.
    """
    if body.startswith(_UTF8_BOM):
        text, replaced = _decode(body[3:], "utf-8")
        return DecodedBody(text, "UTF-8", replaced, None)
    declared: str | None = None
    declaration = _DECLARATION.match(body)
    if declaration is not None:
        found = _ENCODING_ATTR.search(declaration.group(1))
        if found is not None:
            declared = found.group(1).decode("ascii")
            try:
                label, codec = codec_for(declared)
            except LookupError:
                pass
            else:
                text, replaced = _decode(body, codec)
                return DecodedBody(text, label, replaced, declared)
    if body.isascii():
        return DecodedBody(body.decode("ascii"), "UTF-8", 0, declared)
    try:
        return DecodedBody(body.decode("utf-8"), "UTF-8", 0, declared)
    except UnicodeDecodeError:
        text, replaced = _decode(body, "gb18030")
        return DecodedBody(text, "GB18030", replaced, declared)


# An '&' that does not start one of the five predefined entities or a character reference.
_STRAY_AMP = re.compile(r"&(?!(?:#[0-9]+|#x[0-9a-fA-F]+|lt|gt|amp|quot|apos);)")
_REFERENCE = re.compile(r"&(?:#([0-9]+)|#x([0-9a-fA-F]+)|(lt|gt|amp|quot|apos));")
_PREDEFINED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"', "apos": "'"}
# Characters XML 1.0 forbids; expat refuses them, the tolerant reader replaces them.
_FORBIDDEN_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _refuse_declarations(text: str) -> None:
    """Refuse any markup declaration (<!DOCTYPE, <!ENTITY, ...): only comments and CDATA may use '<!'."""
    start = text.find("<!")
    while start != -1:
        if text.startswith("<!--", start):
            end = text.find("-->", start + 4)
        elif text.startswith("<![CDATA[", start):
            end = text.find("]]>", start + 9)
        else:
            word = text[start + 2 : start + 12].split(None, 1)
            name = word[0] if word else ""
            raise XmlTextError(f"markup declaration <!{name} refused: no DTD or entity processing")
        if end == -1:
            return
        start = text.find("<!", end)


def _check_depth(root: ET.Element, max_depth: int) -> None:
    # Level by level over elements that have children: one C-level pass over the tree, no recursion.
    level = [root]
    depth = 1
    while level:
        if depth > max_depth:
            raise XmlTextError(f"elements nested deeper than {max_depth} levels")
        level = [child for element in level for child in element if len(child)]
        depth += 1


def read_element(text: str, *, max_depth: int = MAX_DEPTH) -> tuple[ET.Element, list[str]]:
    """Read the first element of `text` and its subtree; return it with a list of repairs made.

    Raises XmlTextError for a DTD or markup declaration, no element at all, or excessive nesting.
    """
    _refuse_declarations(text)
    text = text.lstrip("\ufeff \t\r\n")
    repairs: list[str] = []
    prepared = text
    if "&" in text:
        prepared, stray = _STRAY_AMP.subn("&amp;", text)
        if stray:
            repairs.append(f"{stray} stray '&' kept as text")
    parser = ET.XMLParser()
    try:
        parser.feed(prepared)
        root = parser.close()
    except ET.ParseError as exc:
        root, tolerant_repairs = read_tolerant(text, max_depth=max_depth)
        return root, [f"not well-formed XML ({exc}); read tolerantly", *tolerant_repairs]
    _check_depth(root, max_depth)
    return root, repairs


_TOKEN = re.compile(
    r"<([A-Za-z_][\w.:-]*)(\s[^<>]*?)?>([^<]*)</\1\s*>"  # 1-3: element holding only text
    r"|<([A-Za-z_][\w.:-]*)(\s[^<>]*?)?(/?)>"  # 4-6: start tag or empty-element tag
    r"|</([A-Za-z_][\w.:-]*)\s*>"  # 7: end tag
    r"|<!\[CDATA\[(.*?)\]\]>"  # 8: CDATA section
    r"|<!--.*?-->|<\?.*?\?>"  # comment, declaration or processing instruction: skipped
    r"|(<!)"  # 9: anything else starting '<!'
    r"|([^<]+|<)",  # 10: text, or a '<' that starts nothing
    re.S,
)
_ATTRIBUTE = re.compile(r"""([A-Za-z_][\w.:-]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'/>]+))""")


def _character(match: re.Match[str]) -> str:
    decimal, hexadecimal, name = match.groups()
    if name is not None:
        return _PREDEFINED[name]
    code = int(decimal) if decimal is not None else int(hexadecimal, 16)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF or (code < 0x20 and code not in (0x09, 0x0A, 0x0D)):
        return _REPLACEMENT
    return chr(code)


def _unescape(text: str, repairs: list[str]) -> str:
    if "&" not in text:
        return text
    result, count = _REFERENCE.subn(_character, text)
    stray = text.count("&") - count
    if stray:
        repairs.append(f"{stray} stray '&' kept as text")
    return result


def _attributes(raw: str | None, repairs: list[str]) -> dict[str, str]:
    if not raw or raw.isspace():
        return {}
    return {
        m.group(1): _unescape(m.group(2) or m.group(3) or m.group(4) or "", repairs)
        for m in _ATTRIBUTE.finditer(raw)
    }


def read_tolerant(text: str, *, max_depth: int = MAX_DEPTH) -> tuple[ET.Element, list[str]]:
    """Read the first element of `text` however broken it is; return it with the repairs made.

    Closes tags left open (at a mismatched end tag or at the end of the text), ignores end tags that close
    nothing, keeps a bare '<' or '&' as text, replaces characters XML forbids, and ignores anything after
    the first element. Never processes a DTD: '<!' other than a comment or CDATA raises XmlTextError.
    """
    repairs: list[str] = []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text, forbidden = _FORBIDDEN_CHARS.subn(_REPLACEMENT, text)
    if forbidden:
        repairs.append(f"characters not allowed in XML replaced: {forbidden}")
    builder = ET.TreeBuilder()
    stack: list[str] = []
    root_seen = False
    for match in _TOKEN.finditer(text):
        kind = match.lastindex
        if root_seen and not stack:
            if kind != 10 or not match.group(10).isspace():
                repairs.append("content after the root element ignored")
                break
            continue
        if kind == 3 or kind == 6:
            if kind == 3:
                tag, raw_attributes, content = match.group(1, 2, 3)
                empty = True
            else:
                tag, raw_attributes, slash = match.group(4, 5, 6)
                content = ""
                empty = bool(slash)
            if len(stack) >= max_depth:
                raise XmlTextError(f"elements nested deeper than {max_depth} levels")
            root_seen = True
            builder.start(tag, _attributes(raw_attributes, repairs))
            if content:
                builder.data(_unescape(content, repairs))
            if empty:
                builder.end(tag)
            else:
                stack.append(tag)
        elif kind == 7:
            tag = match.group(7)
            if tag not in stack:
                if stack and tag.lower() == stack[-1].lower():
                    repairs.append(f"<{stack[-1]}> closed by </{tag}>")
                    builder.end(stack.pop())
                else:
                    repairs.append(f"end tag </{tag}> that closes nothing ignored")
                continue
            while stack[-1] != tag:
                repairs.append(f"<{stack[-1]}> left open, closed by </{tag}>")
                builder.end(stack.pop())
            builder.end(stack.pop())
        elif kind == 8:
            if stack:
                builder.data(match.group(8))
        elif kind == 9:
            if not text.startswith(("<!--", "<![CDATA["), match.start()):
                _refuse_declarations(text[match.start() :])
            repairs.append("unterminated comment or CDATA section ignored")
            break
        elif kind == 10:
            piece = match.group(10)
            if stack:
                if not piece.isspace():
                    builder.data(_unescape(piece, repairs))
            elif not piece.isspace() and not root_seen:
                repairs.append("text before the root element ignored")
    if not root_seen:
        raise XmlTextError("no XML element found")
    while stack:
        repairs.append(f"<{stack[-1]}> left open at the end of the body")
        builder.end(stack.pop())
    return builder.close(), repairs


def xml_safe(text: str) -> str:
    """`text` with the characters XML 1.0 forbids replaced by U+FFFD, so that what we send parses."""
    if _FORBIDDEN_CHARS.search(text) is None:
        return text
    return _FORBIDDEN_CHARS.sub(_REPLACEMENT, text)


def to_text(element: ET.Element) -> str:
    """Serialize a tree one element per line, as devices and the standard's examples do (some device
    parsers work line by line). Works on a copy: the caller's tree keeps its whitespace."""
    tree = copy.deepcopy(element)
    ET.indent(tree, space="  ")
    return ET.tostring(tree, encoding="unicode")

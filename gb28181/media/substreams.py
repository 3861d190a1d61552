"""Which of a camera's encoded streams a live play asks for (main, sub, third ...), and how the INVITE says it.

The 2016 standard has no way to name a sub-stream; platforms and vendors added SDP media attributes, and
no single one is read by every device, so the offer carries each form (a device ignores attributes it does
not know, RFC 4566 §5.13) unless ``media.substream_attributes`` narrows the list:

- ``streamnumber``   ``a=streamnumber:N``, 0 main, 1 sub, 2 third (the common form, read by most IPCs
                     and by the 2022 edition's devices)
- ``stream``         ``a=stream:N``, the 2022 edition's short form
- ``streamprofile``  ``a=streamprofile:N``, Hikvision
- ``streamMode``     ``a=streamMode:MAIN|SUB|SUBn``, Dahua (``SUB`` is the first sub-stream, ``SUB2``
                     the second)

Nothing is offered when the caller does not choose, so a device keeps its own default (the main stream).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from gbgw.gb28181.config import SUBSTREAM_FORMS
from gbgw.sip.sdp import MediaDescription

ATTRIBUTE_FORMS = SUBSTREAM_FORMS
MAX_STREAM = 9
"""Cameras number their streams from 0 and none has more than a handful."""
_NAMED = {"main": 0, "sub": 1, "third": 2}


def parse_stream(value: int | str | None) -> int | None:
    """The stream number of an API ``stream`` value (``main``, ``sub``, ``third`` or a number); None for
    the device's default. Raises ValueError naming what is accepted."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _NAMED:
            return _NAMED[text]
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"stream must be main, sub, third or a number 0-{MAX_STREAM}, not {value!r}")
        value = int(text)
    if isinstance(value, bool) or not 0 <= value <= MAX_STREAM:
        raise ValueError(f"stream must be main, sub, third or a number 0-{MAX_STREAM}, not {value!r}")
    return value


def _dahua_mode(number: int) -> str:
    return "MAIN" if number == 0 else "SUB" if number == 1 else f"SUB{number}"


def offer_attributes(number: int | None, forms: Sequence[str] = ATTRIBUTE_FORMS) -> list[tuple[str, str | None]]:
    """The media attributes asking for stream ``number`` in each of ``forms``."""
    if number is None:
        return []
    values = {
        "streamnumber": str(number),
        "stream": str(number),
        "streamprofile": str(number),
        "streamMode": _dahua_mode(number),
    }
    return [(form, values[form]) for form in forms]


def requested_stream(media: Iterable[MediaDescription]) -> int | None:
    """The stream an offer (an upper's INVITE) asks for, in whichever form it uses; None when it does not."""
    for section in media:
        for attribute in section.attributes:
            name = attribute.name.lower()
            value = (attribute.value or "").strip()
            if name in ("streamnumber", "stream", "streamprofile") and value.isascii() and value.isdigit():
                number = int(value)
                if number <= MAX_STREAM:
                    return number
            elif name == "streammode":
                mode = value.upper()
                if mode == "MAIN":
                    return 0
                if mode.startswith("SUB"):
                    rest = mode[3:] or "1"
                    if rest.isascii() and rest.isdigit() and int(rest) <= MAX_STREAM:
                        return int(rest)
    return None

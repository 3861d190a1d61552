"""MANSRTSP (GB/T 28181-2016 Annex B): the playback control carried in the body of an INFO.

Sans-IO: bytes in, objects out, bytes back. A request is ``PLAY`` (``Range: npt=N-`` seeks to N seconds
from the start of the requested range, ``Range: npt=now-`` resumes, ``Scale:`` sets the speed), ``PAUSE``
(``PauseTime: now``) or ``TEARDOWN``; the answer is an RTSP status line with the request's CSeq, carried in
the body of the INFO's 200 OK (or left out: B.2.6 makes it optional, and many devices send only the 200).

Reading is tolerant (method and header names in any case, LF or CRLF, spaces around ``:``, ``RTSP/1.0`` or
``MANSRTSP/1.0``, the standard's own ``ntp=now-`` typo); writing is strict (``RTSP/1.0`` as B.1 says,
CRLF, ``Name: value``, the closing empty line, Scale only from :data:`SCALES`). Anything unusable raises
:class:`MansrtspError`, which carries the SIP status the INFO carrying it should be answered with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

CONTENT_TYPE = "Application/MANSRTSP"
VERSION = "RTSP/1.0"
# Annex J writes MANSRTSP/1.0 where Annex B writes RTSP/1.0; devices send either.
_VERSIONS = frozenset({"RTSP/1.0", "MANSRTSP/1.0"})
# B.2.7 names 0.25 to 4; 8 is what NVRs and upper platforms offer beyond it.
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
_MAX_BODY = 4096
_MAX_SHOWN = 120


class MansrtspError(ValueError):
    """A MANSRTSP body or answer that cannot be used; ``status`` is the SIP status to answer with
    (400 unreadable, 415 not MANSRTSP, 481 no such dialog, 488 a value we do not support, 501 a method
    Annex B does not define, 502 a device answer that does not fit the request)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Method(Enum):
    PLAY = "PLAY"
    PAUSE = "PAUSE"
    TEARDOWN = "TEARDOWN"


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _format_scale(value: float) -> str:
    """As Annex B writes it: ``1.0``, ``2.0``, ``0.25``."""
    return repr(float(value))


def _format_seconds(value: float) -> str:
    """``100`` as Annex B writes it; fractions to the millisecond (``12.5``)."""
    return str(int(value)) if value == int(value) else f"{value:.3f}".rstrip("0")


@dataclass(slots=True, frozen=True)
class Request:
    """One MANSRTSP request. ``position`` is the ``npt`` start in seconds (None: no Range, or ``now``);
    ``resume`` is True for ``Range: npt=now-``; ``scale`` is None when there is no Scale header."""

    method: Method
    cseq: int
    position: float | None = None
    scale: float | None = None
    resume: bool = False
    headers: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def serialize(self) -> bytes:
        """The request as it goes on the wire; MansrtspError(488) for values devices are not asked for."""
        if self.cseq < 0:
            raise MansrtspError(f"CSeq {self.cseq} is negative")
        lines = [f"{self.method.value} {VERSION}", f"CSeq: {self.cseq}"]
        if self.method is Method.PLAY:
            if self.scale is not None:
                if self.scale not in SCALES:
                    raise MansrtspError(f"scale {self.scale} is not one of {SCALES}", 488)
                lines.append(f"Scale: {_format_scale(self.scale)}")
            if self.position is not None:
                if not (math.isfinite(self.position) and self.position >= 0):
                    raise MansrtspError(f"seek position {self.position} is not a time from the start", 488)
                lines.append(f"Range: npt={_format_seconds(self.position)}-")
            elif self.resume:
                lines.append("Range: npt=now-")
        elif self.method is Method.PAUSE:
            lines.append("PauseTime: now")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


@dataclass(slots=True, frozen=True)
class Response:
    """A MANSRTSP answer: ``RTSP/1.0 200 OK`` with the request's CSeq."""

    status: int
    reason: str
    cseq: int | None
    headers: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def serialize(self) -> bytes:
        lines = [f"{VERSION} {self.status} {self.reason}"]
        if self.cseq is not None:
            lines.append(f"CSeq: {self.cseq}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def play(cseq: int, *, position: float | None = None, scale: float | None = None) -> Request:
    """PLAY: a seek to ``position`` seconds from the range start and/or a new ``scale``."""
    return Request(Method.PLAY, cseq, position=position, scale=scale)


def resume(cseq: int) -> Request:
    """PLAY ``Range: npt=now-`` without Scale: on from the pause position at the original speed (B.2.1)."""
    return Request(Method.PLAY, cseq, resume=True)


def pause(cseq: int) -> Request:
    return Request(Method.PAUSE, cseq)


def teardown(cseq: int) -> Request:
    return Request(Method.TEARDOWN, cseq)


def is_mansrtsp(content_type: str | None) -> bool:
    """Whether a Content-Type names MANSRTSP, in any case and with any parameters."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == CONTENT_TYPE.lower()


def _lines(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The start line and the headers (name lower-cased) of a message, up to its empty line."""
    if len(data) > _MAX_BODY:
        raise MansrtspError(f"MANSRTSP body of {len(data)} bytes is over {_MAX_BODY}")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise MansrtspError("MANSRTSP body is not ASCII") from None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    if index == len(lines):
        raise MansrtspError("empty MANSRTSP body")
    start = lines[index].strip()
    headers: list[tuple[str, str]] = []
    for line in lines[index + 1 :]:
        if not line.strip():
            break
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise MansrtspError(f"MANSRTSP header without a name: {_shown(line)!r}")
        headers.append((name.strip().lower(), value.strip()))
    return start, headers


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for header, value in headers:
        if header == name:
            return value
    return None


def _cseq(headers: list[tuple[str, str]]) -> int | None:
    value = _header(headers, "cseq")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 10):
        raise MansrtspError(f"MANSRTSP CSeq is not a number: {_shown(value)!r}")
    return int(value)


def _number(name: str, value: str) -> float:
    try:
        number = float(value) if len(value) <= 20 else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise MansrtspError(f"MANSRTSP {name} is not a number: {_shown(value)!r}")
    return number


def _range(value: str) -> tuple[float | None, bool]:
    """(position, resume) of a Range value: ``npt=100-``, ``npt=100-200``, ``npt=now-``."""
    unit, sep, span = value.partition("=")
    # "ntp" is how B.2.1 itself spells it once; a device copying the standard sends it.
    if not sep or unit.strip().lower() not in ("npt", "ntp"):
        raise MansrtspError(f"MANSRTSP Range is not an npt range: {_shown(value)!r}", 488)
    begin = span.partition("-")[0].strip()
    if begin.lower() == "now":
        return None, True
    position = _number("Range", begin)
    if position < 0:
        raise MansrtspError(f"MANSRTSP Range starts before the record: {_shown(value)!r}")
    return position, False


def parse_request(data: bytes) -> Request:
    """Read a request from an INFO body (tolerantly, see the module's docstring)."""
    start, headers = _lines(data)
    parts = start.split()
    if not parts or len(parts) > 2:
        raise MansrtspError(f"not a MANSRTSP request line: {_shown(start)!r}")
    if len(parts) == 2 and parts[1].upper() not in _VERSIONS:
        raise MansrtspError(f"MANSRTSP version {_shown(parts[1])!r} is not RTSP/1.0")
    try:
        method = Method(parts[0].upper())
    except ValueError:
        raise MansrtspError(
            f"MANSRTSP method {_shown(parts[0])!r} is not PLAY, PAUSE or TEARDOWN", 501
        ) from None
    cseq = _cseq(headers)
    if cseq is None:
        raise MansrtspError("MANSRTSP request without CSeq")
    position: float | None = None
    scale: float | None = None
    resumed = False
    if method is Method.PLAY:
        range_value = _header(headers, "range")
        if range_value is not None:
            position, resumed = _range(range_value)
        scale_value = _header(headers, "scale")
        if scale_value is not None:
            scale = _number("Scale", scale_value)
            if scale == 0:
                raise MansrtspError("MANSRTSP Scale 0 would never play", 488)
    return Request(method, cseq, position, scale, resumed, tuple(headers))


def parse_response(data: bytes) -> Response:
    """Read an answer (``RTSP/1.0 200 OK``) from the body of an INFO's response."""
    start, headers = _lines(data)
    version, _, rest = start.partition(" ")
    code, _, reason = rest.strip().partition(" ")
    if version.upper() not in _VERSIONS or not (code.isascii() and code.isdigit() and len(code) == 3):
        raise MansrtspError(f"not a MANSRTSP status line: {_shown(start)!r}", 502)
    try:
        cseq = _cseq(headers)
    except MansrtspError as exc:
        raise MansrtspError(exc.reason, 502) from None
    return Response(int(code), reason.strip(), cseq, tuple(headers))


def parse_info(content_type: str | None, body: bytes) -> Request:
    """The request an INFO carries, or MansrtspError(415) when its body is not MANSRTSP."""
    if not is_mansrtsp(content_type):
        raise MansrtspError(f"INFO body is {content_type or 'untyped'}, not {CONTENT_TYPE}", 415)
    return parse_request(body)


def answer(request: Request, status: int = 200, reason: str = "OK") -> Response:
    """The answer to ``request`` (for the body of the 200 to an INFO the gateway serves)."""
    return Response(status, reason, request.cseq)


class CSeqCounter:
    """The CSeq of one dialog's MANSRTSP requests, and the check of each answer against its request.

    One per dialog: a relay gives the device leg its own counter and answers the upper with the
    upper's CSeq, so the two numberings never mix.
    """

    __slots__ = ("_next", "outstanding")

    def __init__(self, first: int = 1) -> None:
        self._next = first
        self.outstanding: Request | None = None

    def _take(self) -> int:
        cseq = self._next
        self._next += 1
        return cseq

    def play(self, *, position: float | None = None, scale: float | None = None) -> Request:
        return self._sent(play(self._take(), position=position, scale=scale))

    def resume(self) -> Request:
        return self._sent(resume(self._take()))

    def pause(self) -> Request:
        return self._sent(pause(self._take()))

    def teardown(self) -> Request:
        return self._sent(teardown(self._take()))

    def relay(self, request: Request) -> Request:
        """``request`` (as another dialog numbered it) renumbered for this dialog."""
        return self._sent(
            Request(request.method, self._take(), request.position, request.scale, request.resume)
        )

    def _sent(self, request: Request) -> Request:
        self.outstanding = request
        return request

    def check(self, body: bytes | None) -> Response | None:
        """Check the answer body of the INFO's 2xx against the request that INFO carried.

        No body is fine (the 200 is the answer, B.2.6); a body with another CSeq or an error status
        raises MansrtspError: its status is the device's own for a 4xx/5xx, 502 for a mismatch.
        """
        request = self.outstanding
        self.outstanding = None
        if not body or not body.strip():
            return None
        response = parse_response(body)
        if request is not None and response.cseq is not None and response.cseq != request.cseq:
            raise MansrtspError(f"answer has CSeq {response.cseq}, the request {request.cseq}", 502)
        if not response.ok:
            status = response.status if 400 <= response.status < 700 else 502
            raise MansrtspError(f"device answered {response.status} {response.reason}".rstrip(), status)
        return response

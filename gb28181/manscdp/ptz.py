"""The PTZ front-end control code (A.3): 8 bytes carried as 16 hex digits in <PTZCmd>, built and verified.

`PtzCmd` is the wire form and the one place where byte 2's check nibble and byte 8's sum are computed.
The typed commands (`Move`, `FocusIris`, `Preset`, `Cruise`, `Scan`, `Auxiliary`) say what a code does:
each builds its code with `code()`, and `PtzCmd.command()` reads any code back into one of them (or
`UnknownPtz`), so that a relay's audit and policy see "preset call 3", not hex.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from gbgw.gb28181.manscdp.document import ManscdpError

VERSION = 0
"""The version nibble of byte 2: 0H for the 1.0 code of both the 2016 and the 2022 edition."""


def _byte2(version: int) -> int:
    """Byte 2: version in the high nibble, check nibble (byte 1's high + low nibble + version) % 16 low."""
    return (version << 4) | ((0xA + 0x5 + version) & 0x0F)


def _check(name: str, value: int, high: int, low: int = 0) -> int:
    if not low <= value <= high:
        raise ValueError(f"PTZ {name} {value} outside {low}-{high}")
    return value


class PtzKind(enum.StrEnum):
    """The instruction families of A.3.2-A.3.7."""

    PTZ = "ptz"
    FI = "fi"
    PRESET = "preset"
    CRUISE = "cruise"
    SCAN = "scan"
    AUXILIARY = "auxiliary"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PtzCmd:
    """The 8-byte front-end control code carried as 16 hex digits in <PTZCmd> (A.3.1).

    Byte 1 is A5H; byte 2 is version 0 plus a check nibble; byte 3 and the low nibble of byte 7 hold a
    12-bit address the standard says receivers ignore (devices and platforms send 1); byte 4 is the
    instruction, bytes 5 and 6 its data, the high nibble of byte 7 a third datum; byte 8 the sum of bytes
    1-7 modulo 256.
    """

    instruction: int
    data1: int = 0
    data2: int = 0
    data3: int = 0
    address: int = 1

    def serialize(self) -> str:
        if not (
            0 <= self.instruction <= 0xFF
            and 0 <= self.data1 <= 0xFF
            and 0 <= self.data2 <= 0xFF
            and 0 <= self.data3 <= 0xF
            and 0 <= self.address <= 0xFFF
        ):
            raise ValueError(f"PTZ command field out of range: {self!r}")
        body = bytes(
            (
                0xA5,
                _byte2(VERSION),
                self.address & 0xFF,
                self.instruction,
                self.data1,
                self.data2,
                (self.data3 << 4) | (self.address >> 8),
            )
        )
        return (body + bytes((sum(body) & 0xFF,))).hex().upper()

    @classmethod
    def parse(cls, text: str) -> PtzCmd:
        """Read and verify a code; raises ManscdpError naming what is wrong."""
        value = text.strip()
        try:
            code = bytes.fromhex(value)
        except ValueError:
            raise ManscdpError(f"PTZCmd {text!r} is not hexadecimal") from None
        if len(code) != 8:
            raise ManscdpError(f"PTZCmd {text!r} is not 8 bytes")
        if code[0] != 0xA5:
            raise ManscdpError(f"PTZCmd {text!r} does not start with A5")
        if code[1] != _byte2(code[1] >> 4):
            raise ManscdpError(f"PTZCmd {text!r} has a wrong check nibble in byte 2")
        if sum(code[:7]) & 0xFF != code[7]:
            raise ManscdpError(f"PTZCmd {text!r} has a wrong checksum")
        return cls(code[3], code[4], code[5], code[6] >> 4, code[2] | ((code[6] & 0x0F) << 8))

    @property
    def kind(self) -> PtzKind:
        """The instruction family (A.3.2-A.3.7)."""
        instruction = self.instruction
        if instruction & 0xC0 == 0:
            return PtzKind.PTZ
        if instruction & 0xF0 == 0x40:
            return PtzKind.FI
        if 0x81 <= instruction <= 0x83:
            return PtzKind.PRESET
        if 0x84 <= instruction <= 0x88:
            return PtzKind.CRUISE
        if instruction in (0x89, 0x8A):
            return PtzKind.SCAN
        if instruction in (0x8C, 0x8D):
            return PtzKind.AUXILIARY
        return PtzKind.UNKNOWN

    def command(self) -> PtzCommand:
        """What this code does. Codes the standard forbids (both bits of one axis set, undefined data)
        read as UnknownPtz, so a policy can refuse them."""
        return _decode(self)

    @classmethod
    def move(
        cls,
        *,
        pan: int = 0,
        tilt: int = 0,
        zoom: int = 0,
        pan_speed: int = 0x80,
        tilt_speed: int = 0x80,
        zoom_speed: int = 0x8,
    ) -> PtzCmd:
        """Pan (-1 left, +1 right), tilt (-1 down, +1 up), zoom (-1 out, +1 in); all 0 stops (A.3.2).
        A speed is written only for an axis that moves."""
        return Move(
            pan,
            tilt,
            zoom,
            pan_speed if pan else 0,
            tilt_speed if tilt else 0,
            zoom_speed if zoom else 0,
        ).code()

    @classmethod
    def stop(cls) -> PtzCmd:
        """Stops every PTZ movement, and also a running cruise or scan (A.9 note 4, A.10 note 3)."""
        return cls(0)

    @classmethod
    def focus_iris(
        cls, *, focus: int = 0, iris: int = 0, focus_speed: int = 0x80, iris_speed: int = 0x80
    ) -> PtzCmd:
        """Focus (-1 near, +1 far) and iris (-1 close, +1 open); both 0 stops (A.3.3)."""
        return FocusIris(focus, iris, focus_speed if focus else 0, iris_speed if iris else 0).code()

    @classmethod
    def preset(cls, action: str, index: int) -> PtzCmd:
        """Preset "set", "call" or "delete" for index 1-255 (A.3.4)."""
        try:
            preset_action = PresetAction(action)
        except ValueError:
            choices = sorted(a.value for a in PresetAction)
            raise ValueError(f"preset action must be one of {choices}, not {action!r}") from None
        return Preset(preset_action, index).code()


# ---------------------------------------------------------------------------------------------------------
# Typed commands

_DIRECTIONS: dict[str, tuple[int, int, int]] = {
    "stop": (0, 0, 0),
    "left": (-1, 0, 0),
    "right": (1, 0, 0),
    "up": (0, 1, 0),
    "down": (0, -1, 0),
    "upleft": (-1, 1, 0),
    "upright": (1, 1, 0),
    "downleft": (-1, -1, 0),
    "downright": (1, -1, 0),
    "zoomin": (0, 0, 1),
    "zoomout": (0, 0, -1),
}
DIRECTIONS = tuple(_DIRECTIONS)
"""The direction words `Move.named` takes (the API's PTZ commands)."""


def _axis(value: int, negative: int, positive: int) -> int:
    """The instruction bit for a signed direction: `negative` below 0, `positive` above, none at 0."""
    if value < 0:
        return negative
    return positive if value > 0 else 0


def _signed(instruction: int, negative: int, positive: int) -> int | None:
    """The signed direction of one axis; None when both bits are set (A.3.2 forbids it)."""
    has_negative = bool(instruction & negative)
    has_positive = bool(instruction & positive)
    if has_negative and has_positive:
        return None
    return -1 if has_negative else (1 if has_positive else 0)


@dataclass(frozen=True, slots=True)
class Move:
    """Pan (-1 left, +1 right), tilt (-1 down, +1 up), zoom (-1 out, +1 in) with their speeds: pan and
    tilt 0-255, zoom 0-15 (A.3.2). All axes 0 is the stop command."""

    pan: int = 0
    tilt: int = 0
    zoom: int = 0
    pan_speed: int = 0
    tilt_speed: int = 0
    zoom_speed: int = 0

    @property
    def is_stop(self) -> bool:
        return not (self.pan or self.tilt or self.zoom)

    @classmethod
    def named(cls, direction: str, speed: int = 0x80) -> Move:
        """One of DIRECTIONS at `speed` 0-255; zoom takes the speed's high nibble (0-255 onto 0-15)."""
        if direction not in _DIRECTIONS:
            raise ValueError(f"PTZ direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
        _check("speed", speed, 0xFF)
        pan, tilt, zoom = _DIRECTIONS[direction]
        return cls(pan, tilt, zoom, speed if pan else 0, speed if tilt else 0, (speed >> 4) if zoom else 0)

    def code(self) -> PtzCmd:
        instruction = (
            _axis(self.zoom, 0x20, 0x10) | _axis(self.tilt, 0x04, 0x08) | _axis(self.pan, 0x02, 0x01)
        )
        return PtzCmd(
            instruction,
            _check("pan speed", self.pan_speed, 0xFF),
            _check("tilt speed", self.tilt_speed, 0xFF),
            _check("zoom speed", self.zoom_speed, 0xF),
        )


@dataclass(frozen=True, slots=True)
class FocusIris:
    """Focus (-1 near, +1 far) and iris (-1 close, +1 open), speeds 0-255; both 0 stops (A.3.3)."""

    focus: int = 0
    iris: int = 0
    focus_speed: int = 0
    iris_speed: int = 0

    @property
    def is_stop(self) -> bool:
        return not (self.focus or self.iris)

    def code(self) -> PtzCmd:
        instruction = 0x40 | _axis(self.iris, 0x08, 0x04) | _axis(self.focus, 0x02, 0x01)
        return PtzCmd(
            instruction,
            _check("focus speed", self.focus_speed, 0xFF),
            _check("iris speed", self.iris_speed, 0xFF),
        )


class PresetAction(enum.StrEnum):
    SET = "set"
    CALL = "call"
    DELETE = "delete"


_PRESET_CODES = {PresetAction.SET: 0x81, PresetAction.CALL: 0x82, PresetAction.DELETE: 0x83}


@dataclass(frozen=True, slots=True)
class Preset:
    """Set, call or delete preset 1-255 (A.3.4; 0 is reserved)."""

    action: PresetAction
    index: int

    def code(self) -> PtzCmd:
        return PtzCmd(_PRESET_CODES[self.action], 0, _check("preset index", self.index, 0xFF, 1))


class CruiseAction(enum.StrEnum):
    ADD_POINT = "add_point"
    REMOVE_POINT = "remove_point"
    SPEED = "speed"
    DWELL = "dwell"
    START = "start"


_CRUISE_CODES = {
    CruiseAction.ADD_POINT: 0x84,
    CruiseAction.REMOVE_POINT: 0x85,
    CruiseAction.SPEED: 0x86,
    CruiseAction.DWELL: 0x87,
    CruiseAction.START: 0x88,
}


@dataclass(frozen=True, slots=True)
class Cruise:
    """A cruise (tour) command for group 0-255 (A.3.5). `value` is the preset 1-255 for ADD_POINT, the
    preset for REMOVE_POINT (0 removes the whole cruise), the speed or the dwell time in seconds 1-4095
    for SPEED and DWELL (12 bits: byte 6 low, byte 7 high nibble), 0 for START. Stop is `PtzCmd.stop()`."""

    action: CruiseAction
    group: int
    value: int = 0

    def code(self) -> PtzCmd:
        group = _check("cruise group", self.group, 0xFF)
        instruction = _CRUISE_CODES[self.action]
        if self.action is CruiseAction.START:
            return PtzCmd(instruction, group, _check("cruise start value", self.value, 0, 0))
        if self.action in (CruiseAction.SPEED, CruiseAction.DWELL):
            value = _check(f"cruise {self.action.value}", self.value, 0xFFF, 1)
            return PtzCmd(instruction, group, value & 0xFF, value >> 8)
        low = 0 if self.action is CruiseAction.REMOVE_POINT else 1
        return PtzCmd(instruction, group, _check("cruise preset", self.value, 0xFF, low))


class ScanAction(enum.StrEnum):
    START = "start"
    LEFT_EDGE = "left_edge"
    RIGHT_EDGE = "right_edge"
    SPEED = "speed"


_SCAN_DATA2 = {ScanAction.START: 0, ScanAction.LEFT_EDGE: 1, ScanAction.RIGHT_EDGE: 2}


@dataclass(frozen=True, slots=True)
class Scan:
    """An automatic scan command for group 0-255 (A.3.6): start, set the left or right edge at the
    current position, or set the speed 1-4095 (12 bits like the cruise speed). Stop is `PtzCmd.stop()`."""

    action: ScanAction
    group: int
    speed: int = 0

    def code(self) -> PtzCmd:
        group = _check("scan group", self.group, 0xFF)
        if self.action is ScanAction.SPEED:
            speed = _check("scan speed", self.speed, 0xFFF, 1)
            return PtzCmd(0x8A, group, speed & 0xFF, speed >> 8)
        _check("scan speed", self.speed, 0, 0)
        return PtzCmd(0x89, group, _SCAN_DATA2[self.action])


class AuxSwitch(enum.IntEnum):
    """Auxiliary switch numbers (byte 5 of A.3.7). The standard defines only 1, the wiper; 2 for the
    light is the common vendor convention (Hikvision, Dahua, WVP), not the standard's."""

    WIPER = 1
    LIGHT = 2


@dataclass(frozen=True, slots=True)
class Auxiliary:
    """Auxiliary switch 0-255 on or off (A.3.7); an analogue output steps up or down by one instead."""

    switch: int
    on: bool

    def code(self) -> PtzCmd:
        return PtzCmd(0x8C if self.on else 0x8D, _check("auxiliary switch", self.switch, 0xFF))


@dataclass(frozen=True, slots=True)
class UnknownPtz:
    """A code whose instruction the standard does not define, or defines other data for."""

    ptz: PtzCmd

    def code(self) -> PtzCmd:
        return self.ptz


PtzCommand: TypeAlias = Move | FocusIris | Preset | Cruise | Scan | Auxiliary | UnknownPtz

_PRESET_BY_CODE = {code: action for action, code in _PRESET_CODES.items()}
_CRUISE_BY_CODE = {code: action for action, code in _CRUISE_CODES.items()}
_SCAN_BY_DATA2 = {data2: action for action, data2 in _SCAN_DATA2.items()}


def _decode(ptz: PtzCmd) -> PtzCommand:
    command = _read(ptz)
    try:
        # A code this module would refuse to send (preset 0, a cruise speed of 0, ...) is not the command
        # it looks like.
        command.code()
    except ValueError:
        return UnknownPtz(ptz)
    return command


def _read(ptz: PtzCmd) -> PtzCommand:
    instruction, kind = ptz.instruction, ptz.kind
    unknown = UnknownPtz(ptz)
    if kind is PtzKind.PTZ:
        zoom, tilt, pan = (
            _signed(instruction, 0x20, 0x10),
            _signed(instruction, 0x04, 0x08),
            _signed(instruction, 0x02, 0x01),
        )
        if zoom is None or tilt is None or pan is None:
            return unknown
        return Move(pan, tilt, zoom, ptz.data1, ptz.data2, ptz.data3)
    if kind is PtzKind.FI:
        iris, focus = _signed(instruction, 0x08, 0x04), _signed(instruction, 0x02, 0x01)
        if iris is None or focus is None:
            return unknown
        return FocusIris(focus, iris, ptz.data1, ptz.data2)
    if kind is PtzKind.PRESET:
        return Preset(_PRESET_BY_CODE[instruction], ptz.data2)
    if kind is PtzKind.CRUISE:
        action = _CRUISE_BY_CODE[instruction]
        if action in (CruiseAction.SPEED, CruiseAction.DWELL):
            return Cruise(action, ptz.data1, ptz.data2 | (ptz.data3 << 8))
        return Cruise(action, ptz.data1, ptz.data2)
    if kind is PtzKind.SCAN:
        if instruction == 0x8A:
            return Scan(ScanAction.SPEED, ptz.data1, ptz.data2 | (ptz.data3 << 8))
        scan_action = _SCAN_BY_DATA2.get(ptz.data2)
        return unknown if scan_action is None else Scan(scan_action, ptz.data1)
    if kind is PtzKind.AUXILIARY:
        return Auxiliary(ptz.data1, instruction == 0x8C)
    return unknown

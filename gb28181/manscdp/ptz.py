"""The PTZ front-end control code (A.3): 8 bytes carried as 16 hex digits in <PTZCmd>, built and verified."""

from __future__ import annotations

from dataclasses import dataclass

from gbgw.gb28181.manscdp.document import ManscdpError


def _direction(value: int, negative: int, positive: int) -> int:
    """The instruction bit for a signed direction: `negative` below 0, `positive` above, none at 0."""
    if value < 0:
        return negative
    return positive if value > 0 else 0


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
        # Check nibble: (high nibble of byte 1 + low nibble of byte 1 + version) % 16 = (0xA + 0x5 + 0) % 16.
        body = bytes(
            (
                0xA5,
                0x0F,
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
        if (code[1] & 0x0F) != ((0xA + 0x5 + (code[1] >> 4)) & 0x0F):
            raise ManscdpError(f"PTZCmd {text!r} has a wrong check nibble in byte 2")
        if sum(code[:7]) & 0xFF != code[7]:
            raise ManscdpError(f"PTZCmd {text!r} has a wrong checksum")
        return cls(code[3], code[4], code[5], code[6] >> 4, code[2] | ((code[6] & 0x0F) << 8))

    @property
    def kind(self) -> str:
        """The instruction family (A.3.2-A.3.7): ptz, fi (focus/iris), preset, cruise, scan, auxiliary or unknown."""
        instruction = self.instruction
        if instruction & 0xC0 == 0:
            return "ptz"
        if instruction & 0xF0 == 0x40:
            return "fi"
        if 0x81 <= instruction <= 0x83:
            return "preset"
        if 0x84 <= instruction <= 0x88:
            return "cruise"
        if instruction in (0x89, 0x8A):
            return "scan"
        if instruction in (0x8C, 0x8D):
            return "auxiliary"
        return "unknown"

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
        """Pan (-1 left, +1 right), tilt (-1 down, +1 up), zoom (-1 out, +1 in); all 0 stops (A.3.2)."""
        instruction = (
            _direction(zoom, 0x20, 0x10) | _direction(tilt, 0x04, 0x08) | _direction(pan, 0x02, 0x01)
        )
        return cls(
            instruction,
            pan_speed if pan else 0,
            tilt_speed if tilt else 0,
            zoom_speed if zoom else 0,
        )

    @classmethod
    def stop(cls) -> PtzCmd:
        return cls(0)

    @classmethod
    def focus_iris(
        cls, *, focus: int = 0, iris: int = 0, focus_speed: int = 0x80, iris_speed: int = 0x80
    ) -> PtzCmd:
        """Focus (-1 near, +1 far) and iris (-1 close, +1 open); both 0 stops (A.3.3)."""
        instruction = 0x40 | _direction(iris, 0x08, 0x04) | _direction(focus, 0x02, 0x01)
        return cls(instruction, focus_speed if focus else 0, iris_speed if iris else 0)

    @classmethod
    def preset(cls, action: str, index: int) -> PtzCmd:
        """Preset "set", "call" or "delete" for index 1-255 (A.3.4)."""
        codes = {"set": 0x81, "call": 0x82, "delete": 0x83}
        if action not in codes:
            raise ValueError(f"preset action must be one of {sorted(codes)}, not {action!r}")
        if not 1 <= index <= 255:
            raise ValueError(f"preset index {index} outside 1-255")
        return cls(codes[action], 0, index)

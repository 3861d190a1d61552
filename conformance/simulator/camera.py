"""The state a simulated camera (a channel, or the device itself) keeps for the commands it is sent, and the
answers that show it: PTZ position, presets remembered, cruise tracks, home position, guard, recording,
storage card. No sockets, no clock: `devices.py` hands each DeviceControl or DeviceConfig to `apply` and
asks the query answers of it.

A move steps the position at once by the speed (a real dome keeps moving until the stop); presets store
the position they were set at and calling one returns there, so a test sees a command take effect in
PTZPosition and PresetQuery. Refusals a camera would answer with Result ERROR: a home position on a
preset that was never set, a heartbeat interval under 5 s, guard or alarm reset of an input that is not
there.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from gbgw.gb28181.manscdp import (
    Auxiliary,
    Cruise,
    CruiseAction,
    FocusIris,
    ManscdpDocument,
    ManscdpError,
    Move,
    Preset,
    PresetAction,
    PtzCmd,
    build,
)

# Degrees (pan, tilt) and zoom ratio a move at full speed steps by.
_PAN_STEP = 10.0
_TILT_STEP = 5.0
_ZOOM_STEP = 1.0


@dataclass(slots=True)
class CameraState:
    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 1.0
    focus: int = 0
    iris: int = 0
    presets: dict[int, tuple[float, float, float, str]] = field(default_factory=dict)
    cruises: dict[int, list[int]] = field(default_factory=dict)
    cruising: int | None = None
    auxiliary: dict[int, bool] = field(default_factory=dict)
    home: tuple[int, int, int] | None = None
    """enabled, reset time, preset index"""
    guard: bool = True
    recording: bool = False
    tracking: str = "Stop"
    formatted: int = 0
    config: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def with_presets(cls, count: int) -> CameraState:
        state = cls()
        for index in range(1, count + 1):
            state.presets[index] = (index * 30.0 % 360, 0.0, 1.0, f"预置位{index}")
        return state

    # -- commands ------------------------------------------------------------------------------------

    def apply(self, doc: ManscdpDocument, alarm_inputs: frozenset[str] = frozenset()) -> bool:
        """Take a DeviceControl or DeviceConfig; the Result it earns (False: ERROR)."""
        e = doc.element
        if doc.cmd_type == "DeviceConfig":
            return self._configure(e)
        ok = True
        code = doc.text("PTZCmd")
        if code is not None:
            ok = self._ptz(code, doc.text("PTZCmdParams/PresetName"))
        if (guard := doc.text("GuardCmd")) is not None:
            if alarm_inputs and doc.device_id not in alarm_inputs:
                return False
            self.guard = guard == "SetGuard"
        if doc.text("AlarmCmd") is not None and alarm_inputs and doc.device_id not in alarm_inputs:
            return False
        if (record := doc.text("RecordCmd")) is not None:
            self.recording = record == "Record"
        home = e.find("HomePosition")
        if home is not None:
            enabled = int(home.findtext("Enabled") or "0")
            index = int(home.findtext("PresetIndex") or "0")
            if enabled and index not in self.presets:
                return False
            self.home = (enabled, int(home.findtext("ResetTime") or "0"), index)
        precise = e.find("PTZPreciseCtrl")
        if precise is not None:
            self.pan = float(precise.findtext("Pan") or self.pan)
            self.tilt = float(precise.findtext("Tilt") or self.tilt)
            self.zoom = float(precise.findtext("Zoom") or self.zoom)
        for tag, sign in (("DragZoomIn", 1), ("DragZoomOut", -1)):
            if e.find(tag) is not None:
                self.zoom = max(1.0, self.zoom + sign * _ZOOM_STEP)
        if (track := doc.text("TargetTrack")) is not None:
            self.tracking = track
        if (card := doc.text("FormatSDCard")) is not None:
            self.formatted += 1 if card == "1" else 0
        return ok

    def _ptz(self, code: str, preset_name: str | None) -> bool:
        try:
            command = PtzCmd.parse(code).command()
        except ManscdpError:
            return False
        if isinstance(command, Move):
            if command.is_stop:
                self.cruising = None
            self.pan = (self.pan + command.pan * _PAN_STEP * command.pan_speed / 255) % 360
            self.tilt = min(90.0, max(-30.0, self.tilt + command.tilt * _TILT_STEP * command.tilt_speed / 255))
            self.zoom = max(1.0, self.zoom + command.zoom * _ZOOM_STEP * command.zoom_speed / 15)
        elif isinstance(command, FocusIris):
            self.focus += command.focus
            self.iris += command.iris
        elif isinstance(command, Preset):
            if command.action is PresetAction.SET:
                self.presets[command.index] = (self.pan, self.tilt, self.zoom, preset_name or f"预置位{command.index}")
            elif command.action is PresetAction.CALL:
                if command.index not in self.presets:
                    return False
                self.pan, self.tilt, self.zoom, _ = self.presets[command.index]
            else:
                self.presets.pop(command.index, None)
        elif isinstance(command, Cruise):
            points = self.cruises.setdefault(command.group, [])
            if command.action is CruiseAction.ADD_POINT:
                points.append(command.value)
            elif command.action is CruiseAction.REMOVE_POINT:
                if command.value == 0:
                    points.clear()
                elif command.value in points:
                    points.remove(command.value)
            elif command.action is CruiseAction.START:
                self.cruising = command.group
            if not points:
                self.cruises.pop(command.group, None)
        elif isinstance(command, Auxiliary):
            self.auxiliary[command.switch] = command.on
        return True

    def _configure(self, element: ET.Element) -> bool:
        for section in element:
            if not len(section):
                continue
            values = {child.tag: (child.text or "").strip() for child in section}
            interval = values.get("HeartBeatInterval")
            if interval is not None and (not interval.isdigit() or int(interval) < 5):
                return False
            self.config.setdefault(section.tag, {}).update(values)
        return True

    # -- answers -------------------------------------------------------------------------------------

    def preset_list(self, sn: int, device_id: str) -> ManscdpDocument:
        listed = ET.Element("PresetList", Num=str(len(self.presets)))
        for index, (*_, name) in sorted(self.presets.items()):
            item = ET.SubElement(listed, "Item")
            ET.SubElement(item, "PresetID").text = str(index)
            ET.SubElement(item, "PresetName").text = name
        return build("Response", "PresetQuery", sn, device_id, [("PresetList", listed)])

    def position(self, sn: int, device_id: str) -> ManscdpDocument:
        return build("Response", "PTZPosition", sn, device_id, [
            ("Result", "OK"), ("Pan", round(self.pan, 2)), ("Tilt", round(self.tilt, 2)),
            ("Zoom", round(self.zoom, 2)), ("HorizontalFieldAngle", round(60 / self.zoom, 2)),
            ("VerticalFieldAngle", round(34 / self.zoom, 2)), ("MaxViewDistance", 100),
        ])

    def home_position(self, sn: int, device_id: str) -> ManscdpDocument:
        home = None
        if self.home is not None:
            home = {"Enabled": self.home[0], "ResetTime": self.home[1], "PresetIndex": self.home[2]}
        return build("Response", "HomePositionQuery", sn, device_id, [("Result", "OK"), ("HomePosition", home)])

    def cruise_tracks(self, sn: int, device_id: str) -> ManscdpDocument:
        listed = ET.Element("CruiseTrackList", Num=str(len(self.cruises)))
        for number in sorted(self.cruises):
            item = ET.SubElement(listed, "Item")
            ET.SubElement(item, "Number").text = str(number)
            ET.SubElement(item, "Name").text = f"巡航{number}"
        return build("Response", "CruiseTrackListQuery", sn, device_id,
                     [("Result", "OK"), ("SumNum", len(self.cruises)), ("CruiseTrackList", listed)])

    def cruise_track(self, sn: int, device_id: str, number: int) -> ManscdpDocument:
        points = self.cruises.get(number, [])
        listed = ET.Element("CruisePointList", Num=str(len(points)))
        for preset in points:
            item = ET.SubElement(listed, "Item")
            ET.SubElement(item, "PresetIndex").text = str(preset)
            ET.SubElement(item, "StayTime").text = "10"
            ET.SubElement(item, "Speed").text = "5"
        return build("Response", "CruiseTrackQuery", sn, device_id, [
            ("Result", "OK" if points else "ERROR"), ("Name", f"巡航{number}"), ("SumNum", len(points)),
            ("CruisePointList", listed)])

    def sd_cards(self, sn: int, device_id: str) -> ManscdpDocument:
        listed = ET.Element("SDCardList", Num="1")
        item = ET.SubElement(listed, "Item")
        for tag, value in (("ID", "1"), ("HddName", "SD1"), ("Status", "normal"),
                           ("FormatProgress", "100" if self.formatted else "0"), ("Capacity", "65536"),
                           ("FreeSpace", "65536" if self.formatted else "32768")):
            ET.SubElement(item, tag).text = value
        return build("Response", "SDCardStatus", sn, device_id, [("Result", "OK"), ("SumNum", 1), ("SDCardList", listed)])

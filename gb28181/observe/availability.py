"""The availability report: each device's online time fraction over a period, and its offline episodes.

Pure: it reads the transition history (`gbgw.registry.history`) and computes, so a test feeds it a list.
A device is counted from the period's start, or from its first known transition if that is later (a
camera installed mid-month is not charged for the days before it existed); the fraction is online time
over that observed time. A group's fraction is weighted by observed time, i.e. summed, not averaged, so a
group of one long-offline and many healthy cameras reads as the police would count it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from gbgw.gb28181.ids import GbId, InvalidGbId
from gbgw.registry.model import Transition


@dataclass(slots=True)
class OfflineEpisode:
    start: float
    """When the device went offline (may precede the period)."""
    reason: str
    end: float | None = None
    """When it came back; None while it is still offline at the period's end."""
    back: str | None = None
    """Why it came back online (registered, keepalive)."""
    seconds: float = 0.0
    """The episode's length inside the period."""


@dataclass(slots=True)
class DeviceAvailability:
    device_id: str
    observed: float = 0.0
    online: float = 0.0
    episodes: list[OfflineEpisode] = field(default_factory=list)

    @property
    def fraction(self) -> float | None:
        """None for a device with no known state in the period."""
        return self.online / self.observed if self.observed > 0 else None


class Grouping(StrEnum):
    INDUSTRY = "industry"
    """ID digits 9-10 (01 community, 02 internal units, 11 education...)."""
    CIVIL_CODE = "civil_code"
    """The administrative centre code, without its empty levels."""
    DEVICE = "device"


def group_key(grouping: Grouping) -> Callable[[str], str]:
    def industry(device_id: str) -> str:
        return device_id[8:10] if len(device_id) == 20 else ""

    def civil_code(device_id: str) -> str:
        try:
            return GbId.parse(device_id).civil_code
        except InvalidGbId:
            return ""

    def device(device_id: str) -> str:
        return device_id

    return {Grouping.INDUSTRY: industry, Grouping.CIVIL_CODE: civil_code, Grouping.DEVICE: device}[grouping]


@dataclass(slots=True)
class GroupAvailability:
    key: str
    devices: list[DeviceAvailability] = field(default_factory=list)

    @property
    def observed(self) -> float:
        return sum(d.observed for d in self.devices)

    @property
    def online(self) -> float:
        return sum(d.online for d in self.devices)

    @property
    def fraction(self) -> float | None:
        observed = self.observed
        return self.online / observed if observed > 0 else None


def availability(
    transitions: Iterable[Transition], start: float, end: float, known: Iterable[str] = ()
) -> dict[str, DeviceAvailability]:
    """Per device, from its transitions (time order; those before ``start`` give its state at ``start``).
    Devices in ``known`` without any transition are listed with nothing observed."""
    result: dict[str, DeviceAvailability] = {}
    state: dict[str, tuple[bool, float]] = {}
    """device -> (online, since when inside the period)."""
    for t in transitions:
        entry = result.get(t.device_id)
        if entry is None:
            entry = result[t.device_id] = DeviceAvailability(t.device_id)
        at = min(max(t.at, start), end)
        current = state.get(t.device_id)
        if current is not None:
            online, since = current
            if online:
                entry.online += at - since
            entry.observed += at - since
            if online == t.online:
                continue
        if t.online:
            if entry.episodes and entry.episodes[-1].end is None:
                episode = entry.episodes[-1]
                episode.end, episode.back = t.at, t.reason
                episode.seconds = at - min(max(episode.start, start), end)
        else:
            entry.episodes.append(OfflineEpisode(t.at, t.reason))
        state[t.device_id] = (t.online, at)
    for device_id, (online, since) in state.items():
        entry = result[device_id]
        entry.observed += end - since
        if online:
            entry.online += end - since
        elif entry.episodes and entry.episodes[-1].end is None:
            episode = entry.episodes[-1]
            episode.seconds = end - min(max(episode.start, start), end)
    for device_id in known:
        result.setdefault(device_id, DeviceAvailability(device_id))
    return result


def grouped(devices: Iterable[DeviceAvailability], grouping: Grouping) -> list[GroupAvailability]:
    key = group_key(grouping)
    groups: dict[str, GroupAvailability] = {}
    for device in devices:
        name = key(device.device_id)
        group = groups.get(name)
        if group is None:
            group = groups[name] = GroupAvailability(name)
        group.devices.append(device)
    for group in groups.values():
        group.devices.sort(key=lambda d: d.device_id)
    return [groups[name] for name in sorted(groups)]

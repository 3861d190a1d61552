"""Commands the gateway itself sends to a device (DeviceControl, DeviceConfig) and the on-demand queries
behind them (PresetQuery, ConfigDownload, the 2022 PTZ, home position, cruise and storage card queries).

Whether to wait for a Response is decided by ``manscdp.expects_response`` alone (§9.3.1): PTZ, TeleBoot,
IFrame, drag zoom and the 2022 precise PTZ, card formatting and target tracking are done when the device
answers the MESSAGE with 200; guard, alarm reset, record, home position, upgrade and every DeviceConfig
wait for the Response carrying Result. Waiting for a Response the standard never sends turns a working
camera into a timeout, and not waiting for one that comes reports OK for a command the device refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from gbgw.gb28181 import manscdp
from gbgw.gb28181.devices.requests import AccessError, DeviceRequests
from gbgw.gb28181.manscdp import ManscdpDocument
from gbgw.gb28181.media.stages import Stage

T = TypeVar("T")

Build = Callable[[int, str], ManscdpDocument]
"""(SN, DeviceID) -> the document to send, as the manscdp builders take them."""


class Answered(StrEnum):
    """What the outcome was read from."""

    RESPONSE = "response"
    """the device's Response MESSAGE and its Result"""
    ACCEPTED = "accepted"
    """the 200 to the MESSAGE: the standard gives the command no Response"""


@dataclass(frozen=True, slots=True)
class ControlResult:
    device_id: str
    target_id: str
    command: str
    """The command element sent (PTZCmd, GuardCmd, BasicParam, ...), for the API and the log."""
    sn: int
    ok: bool
    answered: Answered

    @property
    def result(self) -> str:
        return "OK" if self.ok else "ERROR"


def command_name(doc: ManscdpDocument) -> str:
    """The first element after the header: what a DeviceControl or DeviceConfig asks for."""
    for child in doc.element:
        if child.tag not in ("CmdType", "SN", "DeviceID"):
            return child.tag
    return doc.cmd_type


def _first_response(pages: list[ManscdpDocument]) -> bool:
    return bool(pages)


class DeviceControl:
    """Sends controls and queries through ``requests`` (which numbers them and matches their answers)."""

    def __init__(self, requests: DeviceRequests) -> None:
        self.requests = requests

    async def control(self, device_id: str, build: Build, target_id: str | None = None) -> ControlResult:
        """Send a DeviceControl or DeviceConfig to ``target_id`` (a channel, an alarm input, default the
        device) of ``device_id``. Raises AccessError with the stage that failed: device offline, request
        rejected (a non-2xx to the MESSAGE), no answer (no 200, or no Response where one is due)."""
        sn = self.requests.next_sn()
        target = target_id or device_id
        doc = build(sn, target)
        name = command_name(doc)
        if not manscdp.expects_response(doc):
            await self.requests.send_manscdp(device_id, doc)
            return ControlResult(device_id, target, name, sn, True, Answered.ACCEPTED)
        pages = await self.requests.query_pages(device_id, doc, _first_response)
        answer = pages[0].typed()
        ok = isinstance(answer, manscdp.ResultResponse) and answer.ok
        return ControlResult(device_id, target, name, sn, ok, Answered.RESPONSE)

    async def query(self, device_id: str, build: Build, target_id: str | None = None) -> ManscdpDocument:
        """A Query answered by one Response (PresetQuery, PTZPosition, SDCardStatus, ...)."""
        return await self.requests.query(device_id, build, target_id)

    async def query_typed(self, device_id: str, build: Build, kind: type[T], target_id: str | None = None) -> T:
        """``query``, the answer read into ``kind``; an answer of another shape is a bad answer."""
        doc = await self.query(device_id, build, target_id)
        answer = doc.typed()
        if not isinstance(answer, kind):
            raise AccessError(Stage.BAD_ANSWER, f"{device_id} answered {doc.cmd_type} without its fields")
        return answer

    async def config_download(
        self, device_id: str, config_types: Sequence[str], target_id: str | None = None
    ) -> manscdp.ConfigDownloadResponse:
        """ConfigDownload of ``config_types``: a device may answer each type in its own message under the
        same SN, so the pages are gathered until every type asked for is there (or no more come)."""
        sn = self.requests.next_sn()
        doc = manscdp.query_config_download(sn, target_id or device_id, list(config_types))
        wanted = set(config_types)

        def complete(pages: list[ManscdpDocument]) -> bool:
            seen = {child.tag for page in pages for child in page.element if len(child)}
            # SnapShot is asked for under one name and may be answered under the other.
            if "SnapShotConfig" in seen:
                seen.add("SnapShot")
            return wanted <= seen or any((page.text("Result") or "").upper() == "ERROR" for page in pages)

        pages = await self.requests.query_pages(device_id, doc, complete)
        merged = pages[0].typed()
        if not isinstance(merged, manscdp.ConfigDownloadResponse):
            raise AccessError(Stage.BAD_ANSWER, f"{device_id} answered ConfigDownload without its fields")
        for page in pages[1:]:
            more = page.typed()
            if isinstance(more, manscdp.ConfigDownloadResponse):
                merged.sections.update(more.sections)
                merged.config.update(more.config)
                if (more.result or "").upper() == "ERROR":
                    merged.result = more.result
        return merged


"""The certification sheets' device rows: item numbers and names as the sheets write them, and which
check of this tool each row runs.

The 2016 sheet lists the DVR/NVR rows (#71-101) and the IPC rows (#102-132) in the same order, so one
list of checks serves both; the 2022 sheet numbers IPC (#89-129) and NVR (#130-168) rows separately and
adds rows, so its rows name their checks one by one. A row without a check is reported as skipped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Check(enum.StrEnum):
    """What the tool checks; several sheet rows (per edition and device type) run the same check."""

    REGISTER = "register"
    UNREGISTER = "unregister"
    TIME_SYNC = "time-sync"
    KEEPALIVE = "keepalive"
    CATALOG = "catalog"
    LIVE_UDP = "live-udp"
    PTZ = "ptz"
    PTZ_STOP = "ptz-stop"
    PRESET_QUERY = "preset-query"
    RECORD_INFO = "record-info"
    RECORD_START = "record-start"
    RECORD_STOP = "record-stop"
    GUARD_SET = "guard-set"
    GUARD_RESET = "guard-reset"
    ALARM_RESET = "alarm-reset"
    DEVICE_INFO = "device-info"
    DEVICE_STATUS = "device-status"
    CONFIG_DOWNLOAD = "config-download"
    PRESET_SET = "preset-set"
    PRESET_CALL = "preset-call"
    PRESET_DELETE = "preset-delete"
    HOME_POSITION = "home-position"
    IFRAME = "iframe"
    PLAYBACK = "playback"
    DOWNLOAD = "download"
    DEVICE_CONFIG = "device-config"


class PlatformCheck(enum.StrEnum):
    """Checks of the upper and lower modes that the device rows have no equivalent of."""

    UPPER_CATALOG = "upper-catalog"
    ALARM = "alarm"
    EVENT_SUBSCRIBE = "event-subscribe"
    EVENT_UNSUBSCRIBE = "event-unsubscribe"
    EVENT_NOTIFY = "event-notify"
    CATALOG_SUBSCRIBE = "catalog-subscribe"
    CATALOG_NOTIFY = "catalog-notify"
    L_REGISTER = "lower-register"
    L_UNREGISTER = "lower-unregister"
    L_TIME_SYNC = "lower-time-sync"
    L_KEEPALIVE = "lower-keepalive"
    L_CATALOG = "lower-catalog"
    L_LIVE = "lower-live"
    L_PTZ = "lower-ptz"
    L_PTZ_STOP = "lower-ptz-stop"
    L_PRESET_QUERY = "lower-preset-query"
    L_RECORD_INFO = "lower-record-info"
    L_RECORD_START = "lower-record-start"
    L_RECORD_STOP = "lower-record-stop"
    L_GUARD_SET = "lower-guard-set"
    L_GUARD_RESET = "lower-guard-reset"
    L_ALARM = "lower-alarm"
    L_ALARM_RESET = "lower-alarm-reset"
    L_DEVICE_INFO = "lower-device-info"
    L_DEVICE_STATUS = "lower-device-status"
    L_CONFIG_DOWNLOAD = "lower-config-download"
    L_CATALOG_SUBSCRIBE = "lower-catalog-subscribe"
    L_CATALOG_NOTIFY = "lower-catalog-notify"
    L_PLAYBACK = "lower-playback"


AnyCheck = Check | PlatformCheck


@dataclass(frozen=True, slots=True)
class Row:
    number: int
    name: str
    check: AnyCheck | None


# The 2016 device rows in sheet order (the IPC row names; NVR rows read "DVR/NVR 设备..." instead).
_ROWS_2016: tuple[tuple[str, str, AnyCheck | None], ...] = (
    ("IPC 设备注册", "DVR/NVR 设备注册", Check.REGISTER),
    ("IPC 设备注销", "DVR/NVR 设备注销", Check.UNREGISTER),
    ("IPC 设备校时", "DVR/NVR 设备校时", Check.TIME_SYNC),
    ("IPC 心跳", "DVR/NVR 设备心跳", Check.KEEPALIVE),
    ("IPC 设备目录查询", "DVR/NVR 设备目录查询", Check.CATALOG),
    ("IPC 设备实时点播", "DVR/NVR 实时点播", Check.LIVE_UDP),
    ("IPC 设备遥控", "DVR/NVR 设备遥控", Check.PTZ),
    ("IPC 设备遥控取消", "DVR/NVR 设备遥控取消", Check.PTZ_STOP),
    ("IPC 预置位设置", "DVR/NVR 预置位设置", Check.PRESET_SET),
    ("IPC 预置位查询", "DVR/NVR 预置位查询", Check.PRESET_QUERY),
    ("IPC 调用预置位", "DVR/NVR 调用预置位", Check.PRESET_CALL),
    ("IPC 删除预置位", "DVR/NVR 删除预置位", Check.PRESET_DELETE),
    ("IPC 看守位控制", "DVR/NVR 看守位控制", Check.HOME_POSITION),
    ("IPC 强制关键帧命令", "DVR/NVR 强制关键帧命令", Check.IFRAME),
    ("IPC 设备录像文件检索", "DVR/NVR 设备录像文件检索", Check.RECORD_INFO),
    ("IPC 设备视音频文件回放及回放控制", "DVR/NVR 设备视音频文件回放及回放控制", Check.PLAYBACK),
    ("IPC 设备开始手动录像", "DVR/NVR 设备开始手动录像", Check.RECORD_START),
    ("IPC 设备停止手动录像", "DVR/NVR 设备停止手动录像", Check.RECORD_STOP),
    ("IPC 设备布防", "DVR/NVR 设备布防", Check.GUARD_SET),
    ("IPC 设备撤防", "DVR/NVR 设备撤防", Check.GUARD_RESET),
    ("IPC 设备报警", "DVR/NVR 设备报警", PlatformCheck.ALARM),
    ("IPC 设备报警复位", "DVR/NVR 设备报警复位", Check.ALARM_RESET),
    ("IPC 设备信息查询", "DVR/NVR 设备信息查询", Check.DEVICE_INFO),
    ("IPC 设备状态查询", "DVR/NVR 设备状态查询", Check.DEVICE_STATUS),
    ("IPC 设备视音频文件下载", "DVR/NVR 设备视音频文件下载", Check.DOWNLOAD),
    ("IPC 设备远程启动", "DVR/NVR 设备远程启动", None),
    ("IPC 设备配置获取", "DVR/NVR 设备配置获取", Check.CONFIG_DOWNLOAD),
    ("IPC 设备配置", "DVR/NVR 设备配置", Check.DEVICE_CONFIG),
    ("IPC 事件订阅", "DVR/NVR 事件订阅", PlatformCheck.EVENT_SUBSCRIBE),
    ("IPC 取消事件订阅", "DVR/NVR 取消事件订阅", PlatformCheck.EVENT_UNSUBSCRIBE),
    ("IPC 事件通知", "DVR/NVR 事件通知", PlatformCheck.EVENT_NOTIFY),
)

_IPC_2022 = (
    "IPC 设备注册", "IPC 设备注册重定向", "IPC 设备注销", "IPC 设备校时", "IPC 心跳", "IPC 设备目录查询",
    "IPC 设备实时点播", "IPC 设备遥控", "IPC 设备遥控取消", "IPC PTZ 精准位置控制", "IPC 设备PTZ 精准状态查询",
    "IPC 预置位设置", "IPC 预置位查询", "IPC 调用预置位", "IPC 删除预置位", "IPC 看守位控制",
    "IPC 设备看守位信息查询", "IPC 存储卡格式化", "IPC 设备存储卡状态查询", "IPC 目标跟踪", "IPC 强制关键帧命令",
    "IPC 设备开始手动录像", "IPC 设备停止手动录像", "IPC 设备录像文件检索", "IPC 设备视音频文件回放及回放控制",
    "IPC 设备布防", "IPC 设备撤防", "IPC 设备报警", "IPC 设备报警复位", "IPC 设备信息查询", "IPC 设备状态查询",
    "IPC 设备视音频文件下载", "IPC 设备远程启动", "IPC 设备配置", "IPC 设备配置获取", "IPC 设备巡航轨迹列表查询",
    "IPC 设备巡航轨迹查询", "IPC 事件订阅/取消订阅", "IPC 事件通知", "IPC 设备软件升级", "IPC 设备图像抓拍",
)
_NVR_2022 = (
    "NVR 设备注册", "NVR 设备注册重定向", "NVR 设备注销", "NVR 设备校时", "NVR 设备心跳", "NVR 设备目录查询",
    "NVR 实时点播", "NVR 设备遥控", "NVR 设备遥控取消", "NVR 设备PTZ 精准位置控制", "NVR 设备PTZ 精准状态查询",
    "NVR 预置位设置", "NVR 预置位查询", "NVR 调用预置位", "NVR 删除预置位", "NVR 看守位控制",
    "NVR 设备看守位信息查询", "NVR 目标跟踪", "NVR 强制关键帧命令", "NVR 设备开始手动录像",
    "NVR 设备停止手动录像", "NVR 设备录像文件检索", "NVR 设备视音频文件回放及回放控制", "NVR 设备布防",
    "NVR 设备撤防", "NVR 设备报警", "NVR 设备报警复位", "NVR 设备信息查询", "NVR 设备状态查询",
    "NVR 设备视音频文件下载", "NVR 设备远程启动", "NVR 设备配置", "NVR 设备配置获取", "NVR 设备巡航轨迹列表查询",
    "NVR 设备巡航轨迹查询", "NVR 事件订阅/取消订阅", "NVR 事件通知", "NVR 设备软件升级", "NVR 设备图像抓拍",
)
# 2022 rows are matched to checks by what their name ends with (after the "IPC "/"NVR " prefix).
_CHECKS_2022: dict[str, AnyCheck] = {
    "设备注册": Check.REGISTER, "设备注销": Check.UNREGISTER, "设备校时": Check.TIME_SYNC,
    "心跳": Check.KEEPALIVE, "设备心跳": Check.KEEPALIVE, "设备目录查询": Check.CATALOG,
    "设备实时点播": Check.LIVE_UDP, "实时点播": Check.LIVE_UDP, "设备遥控": Check.PTZ,
    "设备遥控取消": Check.PTZ_STOP, "预置位查询": Check.PRESET_QUERY, "设备开始手动录像": Check.RECORD_START,
    "设备停止手动录像": Check.RECORD_STOP, "设备录像文件检索": Check.RECORD_INFO, "设备布防": Check.GUARD_SET,
    "设备撤防": Check.GUARD_RESET, "设备报警复位": Check.ALARM_RESET, "设备信息查询": Check.DEVICE_INFO,
    "设备状态查询": Check.DEVICE_STATUS, "设备配置获取": Check.CONFIG_DOWNLOAD,
    "预置位设置": Check.PRESET_SET, "调用预置位": Check.PRESET_CALL, "删除预置位": Check.PRESET_DELETE,
    "看守位控制": Check.HOME_POSITION, "强制关键帧命令": Check.IFRAME,
    "设备视音频文件回放及回放控制": Check.PLAYBACK, "设备视音频文件下载": Check.DOWNLOAD,
    "设备配置": Check.DEVICE_CONFIG, "设备报警": PlatformCheck.ALARM,
    "事件订阅/取消订阅": PlatformCheck.EVENT_SUBSCRIBE, "事件通知": PlatformCheck.EVENT_NOTIFY,
}
FIRST_2016 = {"nvr": 71, "ipc": 102}
FIRST_2022 = {"ipc": 89, "nvr": 130}
DEVICE_TYPES = ("ipc", "nvr")
EDITIONS = ("2016", "2022")


def rows(edition: str, device_type: str) -> list[Row]:
    """The device rows of one sheet for one device type, in sheet order."""
    if edition == "2016":
        first = FIRST_2016[device_type]
        column = 0 if device_type == "ipc" else 1
        return [Row(first + i, names[column], check) for i, (*names, check) in enumerate(_ROWS_2016)]
    names_2022 = _IPC_2022 if device_type == "ipc" else _NVR_2022
    first = FIRST_2022[device_type]
    return [Row(first + i, name, _CHECKS_2022.get(name.split(" ", 1)[1])) for i, name in enumerate(names_2022)]


def select(all_rows: list[Row], spec: str | None) -> list[Row]:
    """The rows named by ``--items`` ("102-106,111"); ValueError names a number outside the sheet."""
    if not spec:
        return all_rows
    wanted: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"--items: {part!r} is not a number or a range like 102-106") from None
        wanted.update(range(first, last + 1))
    known = {row.number for row in all_rows}
    outside = sorted(wanted - known)
    if outside:
        raise ValueError(f"--items: {outside} are not rows of this sheet ({min(known)}-{max(known)})")
    return [row for row in all_rows if row.number in wanted]


# -- the platform rows: 上联 (the tool is the upper platform) and 下联 (the tool is the lower side) ----------




# The 2016 platform rows #1-35 (上联) and #36-70 (下联) share one list of subjects; the sheet writes
# "受测平台<subject>(上联)" and "(下联)". Each entry: subject, upper check, lower check.
_P = PlatformCheck
_PLATFORM_2016: tuple[tuple[str, AnyCheck | None, AnyCheck | None], ...] = (
    ("注册", Check.REGISTER, _P.L_REGISTER),
    ("注销", Check.UNREGISTER, _P.L_UNREGISTER),
    ("校时", Check.TIME_SYNC, _P.L_TIME_SYNC),
    ("心跳", Check.KEEPALIVE, _P.L_KEEPALIVE),
    ("目录查询", _P.UPPER_CATALOG, _P.L_CATALOG),
    ("实时点播", Check.LIVE_UDP, _P.L_LIVE),
    ("遥控", Check.PTZ, _P.L_PTZ),
    ("遥控取消", Check.PTZ_STOP, _P.L_PTZ_STOP),
    ("预置位设置", Check.PRESET_SET, None),
    ("预置位查询", Check.PRESET_QUERY, _P.L_PRESET_QUERY),
    ("调用预置位", Check.PRESET_CALL, None),
    ("删除预置位", Check.PRESET_DELETE, None),
    ("看守位控制", Check.HOME_POSITION, None),
    ("强制关键帧命令", Check.IFRAME, None),
    ("录像文件检索", Check.RECORD_INFO, _P.L_RECORD_INFO),
    ("视音频文件回放及回放控制", Check.PLAYBACK, _P.L_PLAYBACK),
    ("开始手动录像", Check.RECORD_START, _P.L_RECORD_START),
    ("停止手动录像", Check.RECORD_STOP, _P.L_RECORD_STOP),
    ("布防", Check.GUARD_SET, _P.L_GUARD_SET),
    ("撤防", Check.GUARD_RESET, _P.L_GUARD_RESET),
    ("报警", _P.ALARM, _P.L_ALARM),
    ("报警复位", Check.ALARM_RESET, _P.L_ALARM_RESET),
    ("设备信息查询", Check.DEVICE_INFO, _P.L_DEVICE_INFO),
    ("设备状态查询", Check.DEVICE_STATUS, _P.L_DEVICE_STATUS),
    ("视音频文件下载", Check.DOWNLOAD, None),
    ("设备远程启动", None, None),
    ("注册心跳状态检测", None, None),
    ("媒体流保活机制检测", None, None),
    ("设备配置获取", Check.CONFIG_DOWNLOAD, _P.L_CONFIG_DOWNLOAD),
    ("设备配置", Check.DEVICE_CONFIG, None),
    ("事件订阅", _P.EVENT_SUBSCRIBE, None),
    ("取消事件订阅", _P.EVENT_UNSUBSCRIBE, None),
    ("事件通知", _P.EVENT_NOTIFY, None),
    ("语音广播和语音对讲", None, None),
    ("目录订阅/取消订阅与通知", _P.CATALOG_SUBSCRIBE, _P.L_CATALOG_SUBSCRIBE),
)
# The 2022 platform rows #1-44 (上联) and #45-88 (下联): "系统<subject>（上联）"/"（下联）".
_PLATFORM_2022: tuple[tuple[str, AnyCheck | None, AnyCheck | None], ...] = (
    ("注册", Check.REGISTER, _P.L_REGISTER),
    ("注册重定向", None, None),
    ("注销", Check.UNREGISTER, _P.L_UNREGISTER),
    ("校时", Check.TIME_SYNC, _P.L_TIME_SYNC),
    ("心跳", Check.KEEPALIVE, _P.L_KEEPALIVE),
    ("目录查询", _P.UPPER_CATALOG, _P.L_CATALOG),
    ("实时点播", Check.LIVE_UDP, _P.L_LIVE),
    ("遥控", Check.PTZ, _P.L_PTZ),
    ("遥控取消", Check.PTZ_STOP, _P.L_PTZ_STOP),
    ("PTZ 精准位置控制", None, None),
    ("PTZ 精准状态查询", None, None),
    ("预置位设置", Check.PRESET_SET, None),
    ("预置位查询", Check.PRESET_QUERY, _P.L_PRESET_QUERY),
    ("调用预置位", Check.PRESET_CALL, None),
    ("删除预置位", Check.PRESET_DELETE, None),
    ("看守位控制", Check.HOME_POSITION, None),
    ("看守位信息查询", None, None),
    ("存储卡状态查询", None, None),
    ("目标跟踪", None, None),
    ("强制关键帧命令", Check.IFRAME, None),
    ("开始手动录像", Check.RECORD_START, _P.L_RECORD_START),
    ("停止手动录像", Check.RECORD_STOP, _P.L_RECORD_STOP),
    ("录像文件检索", Check.RECORD_INFO, _P.L_RECORD_INFO),
    ("视音频文件回放及回放控制", Check.PLAYBACK, _P.L_PLAYBACK),
    ("布防", Check.GUARD_SET, _P.L_GUARD_SET),
    ("撤防", Check.GUARD_RESET, _P.L_GUARD_RESET),
    ("报警", _P.ALARM, _P.L_ALARM),
    ("报警复位", Check.ALARM_RESET, _P.L_ALARM_RESET),
    ("设备信息查询", Check.DEVICE_INFO, _P.L_DEVICE_INFO),
    ("设备状态查询", Check.DEVICE_STATUS, _P.L_DEVICE_STATUS),
    ("视音频文件下载", Check.DOWNLOAD, None),
    ("设备远程启动", None, None),
    ("注册心跳状态检测", None, None),
    ("媒体流保活机制检测", None, None),
    ("设备配置", Check.DEVICE_CONFIG, None),
    ("设备配置获取", Check.CONFIG_DOWNLOAD, _P.L_CONFIG_DOWNLOAD),
    ("巡航轨迹列表查询", None, None),
    ("巡航轨迹查询", None, None),
    ("事件订阅/取消订阅", _P.EVENT_SUBSCRIBE, None),
    ("事件通知", _P.EVENT_NOTIFY, None),
    ("语音广播和语音对讲", None, None),
    ("目录订阅/取消订阅", _P.CATALOG_SUBSCRIBE, _P.L_CATALOG_SUBSCRIBE),
    ("目录订阅通知", _P.CATALOG_NOTIFY, _P.L_CATALOG_NOTIFY),
    ("图像抓拍", None, None),
)
SIDES = ("upper", "lower")


def platform_rows(edition: str, side: str) -> list[Row]:
    """The 上联 (``upper``) or 下联 (``lower``) rows of one sheet, in sheet order, with the sheet's names."""
    table = _PLATFORM_2016 if edition == "2016" else _PLATFORM_2022
    first = 1 if side == "upper" else len(table) + 1
    mark = "上联" if side == "upper" else "下联"
    out = []
    for index, (subject, upper, lower) in enumerate(table):
        check = upper if side == "upper" else lower
        if edition == "2016":
            # The sheet's one odd name: row 70 reads "平台订阅/取消订阅与通知(下联)".
            name = f"平台订阅/取消订阅与通知({mark})" if side == "lower" and subject.startswith("目录订阅") \
                else f"受测平台{subject}({mark})"
        else:
            name = f"系统{subject}（{mark}）"
        out.append(Row(first + index, name, check))
    return out

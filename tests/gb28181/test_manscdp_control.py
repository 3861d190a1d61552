"""MANSCDP camera operation (issue 12): PTZCmd codes and their typed commands, DeviceControl and
DeviceConfig builders, the 2022 queries and their answers, subscriptions and broadcast, and which
commands the device answers with a Response."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gbgw.gb28181 import manscdp as m

DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"
PLATFORM = "34020000002000000001"
SESSION = "0123456789abcdef0123456789abcdef"


def round_trip(doc: m.ManscdpDocument, encoding: str = "GB2312") -> m.ManscdpDocument:
    return m.parse(m.encode_body(doc, encoding))


def independent_code(*bytes3_to_7: int) -> str:
    """The A.3.1 formula written out again, as a cross-check of the codec: A5H, 0FH, bytes 3-7, sum."""
    body = [0xA5, 0x0F, *bytes3_to_7]
    return "".join(f"{b:02X}" for b in [*body, sum(body) % 256])


# --- PTZCmd ---------------------------------------------------------------------------------------------

# (typed command, expected code): J.6 and the Hikvision capture's codes, the rest computed by hand.
VECTORS: list[tuple[m.PtzCommand, str]] = [
    (m.Move(pan=-1, pan_speed=0x96), "A50F01029600004D"),  # capture: left at 96H
    (m.Move(), "A50F0100000000B5"),  # capture: stop
    (m.Preset(m.PresetAction.SET, 2), "A50F018100020038"),  # capture
    (m.Preset(m.PresetAction.CALL, 2), "A50F018200020039"),  # capture
    (m.Preset(m.PresetAction.DELETE, 2), "A50F01830002003A"),  # capture
    (m.Move(pan=1, pan_speed=0x80), "A50F010180000036"),
    (m.Move(tilt=1, tilt_speed=0x40), "A50F0108004000FD"),
    (m.Move(zoom=1, zoom_speed=0xF), "A50F01100000F0B5"),
    (m.FocusIris(focus=-1, focus_speed=0x20), "A50F014220000017"),
    (m.FocusIris(iris=1, iris_speed=0x30), "A50F014400300029"),
    (m.FocusIris(), "A50F0140000000F5"),
    (m.Cruise(m.CruiseAction.ADD_POINT, 1, 3), "A50F01840103003D"),
    (m.Cruise(m.CruiseAction.DWELL, 1, 300), "A50F0187012C1079"),  # 300 = 12CH: 2CH in byte 6, 1 in byte 7
    (m.Cruise(m.CruiseAction.START, 1), "A50F01880100003E"),
    (m.Scan(m.ScanAction.LEFT_EDGE, 0), "A50F01890001003F"),
    (m.Scan(m.ScanAction.SPEED, 0, 0x155), "A50F018A005510A4"),
    (m.Auxiliary(m.AuxSwitch.WIPER, True), "A50F018C01000042"),
    (m.Auxiliary(m.AuxSwitch.LIGHT, False), "A50F018D02000044"),
]


@pytest.mark.parametrize(("command", "code"), VECTORS)
def test_ptz_vectors_build_and_parse_back(command: m.PtzCommand, code: str) -> None:
    assert command.code().serialize() == code
    assert m.PtzCmd.parse(code).command() == command


def test_j6_example_keeps_0f_with_another_address() -> None:
    # J.6: address 4DH, zoom in at zoom speed 1; byte 2 stays 0FH because its check nibble is computed
    # from byte 1 and the version, never from the address.
    ptz = m.PtzCmd.parse("A50F4D1000001021")
    assert ptz.address == 0x4D
    assert ptz.command() == m.Move(zoom=1, zoom_speed=1)
    assert m.PtzCmd(0x10, 0, 0, 1, address=0x4D).serialize() == "A50F4D1000001021"
    assert m.PtzCmd(0x10, 0, 0, 1, address=0x14D).serialize() == independent_code(0x4D, 0x10, 0, 0, 0x11)


def test_check_nibble_follows_the_version_nibble() -> None:
    # version 1: (A + 5 + 1) % 16 = 0, so byte 2 is 10H
    assert m.PtzCmd.parse("A5100100000000B6").command() == m.Move()
    with pytest.raises(m.ManscdpError, match="check nibble"):
        m.PtzCmd.parse("A51F0100000000C5")


def test_every_direction_word() -> None:
    for word, (instruction, b5, b6, b7) in {
        "left": (0x02, 0x20, 0, 0),
        "right": (0x01, 0x20, 0, 0),
        "up": (0x08, 0, 0x20, 0),
        "down": (0x04, 0, 0x20, 0),
        "upleft": (0x0A, 0x20, 0x20, 0),
        "upright": (0x09, 0x20, 0x20, 0),
        "downleft": (0x06, 0x20, 0x20, 0),
        "downright": (0x05, 0x20, 0x20, 0),
        "zoomin": (0x10, 0, 0, 0x20),
        "zoomout": (0x20, 0, 0, 0x20),
        "stop": (0x00, 0, 0, 0),
    }.items():
        code = m.Move.named(word, 0x20).code().serialize()
        assert code == independent_code(0x01, instruction, b5, b6, b7), word
        assert m.PtzCmd.parse(code).command() == m.Move.named(word, 0x20)
    assert set(m.DIRECTIONS) == {
        "left", "right", "up", "down", "upleft", "upright", "downleft", "downright", "zoomin", "zoomout", "stop"
    }  # fmt: skip
    assert m.Move.named("zoomin", 255).zoom_speed == 0xF and m.Move.named("zoomout", 15).zoom_speed == 0
    assert m.Move.named("stop", 0x80).is_stop


def test_classmethod_helpers_agree_with_typed_commands() -> None:
    assert m.PtzCmd.move(pan=1, tilt=1, zoom=-1) == m.Move(1, 1, -1, 0x80, 0x80, 8).code()
    assert m.PtzCmd.move(pan=1) == m.Move(pan=1, pan_speed=0x80).code()  # no speed for still axes
    assert m.PtzCmd.focus_iris(focus=1, iris=-1) == m.FocusIris(1, -1, 0x80, 0x80).code()
    assert m.PtzCmd.preset("call", 7) == m.Preset(m.PresetAction.CALL, 7).code()
    assert m.PtzCmd.stop().command() == m.Move()
    assert m.PtzCmd.parse("A50F01029600004D").kind == m.PtzKind.PTZ == "ptz"


def test_cruise_remove_whole_track_and_scan_start() -> None:
    whole = m.Cruise(m.CruiseAction.REMOVE_POINT, 4, 0)
    assert whole.code().serialize() == independent_code(0x01, 0x85, 4, 0, 0)
    assert m.PtzCmd.parse(whole.code().serialize()).command() == whole
    speed = m.Cruise(m.CruiseAction.SPEED, 2, 0xFFF)
    assert speed.code().serialize() == independent_code(0x01, 0x86, 2, 0xFF, 0xF0)
    start = m.Scan(m.ScanAction.START, 3)
    assert m.PtzCmd.parse(start.code().serialize()).command() == start
    right = m.Scan(m.ScanAction.RIGHT_EDGE, 3)
    assert right.code().serialize() == independent_code(0x01, 0x89, 3, 2, 0)


@pytest.mark.parametrize(
    "code",
    [
        independent_code(0x01, 0x03, 0x10, 0, 0),  # left and right at once
        independent_code(0x01, 0x30, 0, 0, 0x10),  # zoom in and out at once
        independent_code(0x01, 0x4C, 0, 0x10, 0),  # iris open and close at once
        independent_code(0x01, 0x82, 0, 0, 0),  # preset 0 is reserved
        independent_code(0x01, 0x89, 0, 7, 0),  # scan data 2 beyond 02H
        independent_code(0x01, 0x86, 1, 0, 0),  # cruise speed 0
        independent_code(0x01, 0xF0, 0, 0, 0),  # undefined instruction
    ],
)
def test_codes_the_standard_forbids_read_as_unknown(code: str) -> None:
    ptz = m.PtzCmd.parse(code)
    assert ptz.command() == m.UnknownPtz(ptz)


@pytest.mark.parametrize(
    "build",
    [
        lambda: m.Move(pan=1, pan_speed=256).code(),
        lambda: m.Move(zoom=1, zoom_speed=16).code(),
        lambda: m.Preset(m.PresetAction.SET, 0).code(),
        lambda: m.Preset(m.PresetAction.SET, 256).code(),
        lambda: m.Cruise(m.CruiseAction.DWELL, 1, 4096).code(),
        lambda: m.Cruise(m.CruiseAction.ADD_POINT, 256, 1).code(),
        lambda: m.Scan(m.ScanAction.SPEED, 0, 0).code(),
        lambda: m.Auxiliary(256, True).code(),
        lambda: m.Move.named("sideways"),
        lambda: m.Move.named("left", 300),
    ],
)
def test_out_of_range_commands_are_refused(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        build()


# --- DeviceControl --------------------------------------------------------------------------------------


def test_ptz_control_with_2022_params_round_trips() -> None:
    doc = m.control_ptz(
        1, CHANNEL, m.Preset(m.PresetAction.SET, 5).code(), control_priority=5, preset_name="东门 & 入口"
    )
    assert [child.tag for child in doc.element][3:] == ["PTZCmd", "PTZCmdParams", "Info"]
    control = round_trip(doc).typed()
    assert isinstance(control, m.DeviceControl)
    assert control.ptz_cmd == independent_code(0x01, 0x81, 0, 5, 0) == "A50F01810005003B"
    assert (control.preset_name, control.cruise_track_name, control.control_priority) == (
        "东门 & 入口",
        None,
        5,
    )
    assert control.ptz_cmd is not None
    assert m.PtzCmd.parse(control.ptz_cmd).command() == m.Preset(m.PresetAction.SET, 5)
    track = round_trip(
        m.control_ptz(2, CHANNEL, m.Cruise(m.CruiseAction.START, 1).code(), cruise_track_name="t1")
    )
    assert b"PTZCmdParams" in m.encode_body(track)
    assert isinstance(typed := track.typed(), m.DeviceControl) and typed.cruise_track_name == "t1"


def test_2016_controls_round_trip() -> None:
    record = round_trip(m.control_record(3, CHANNEL, record=True, stream_number=1)).typed()
    assert isinstance(record, m.DeviceControl) and (record.record_cmd, record.stream_number) == ("Record", 1)
    plain = round_trip(m.control_record(4, CHANNEL, record=False))
    assert plain.text("StreamNumber") is None
    guard = round_trip(m.control_guard(5, DEVICE, guard=False)).typed()
    assert isinstance(guard, m.DeviceControl) and guard.guard_cmd == "ResetGuard"
    reset = round_trip(m.control_alarm_reset(6, DEVICE)).typed()
    assert isinstance(reset, m.DeviceControl) and (reset.alarm_cmd, reset.alarm_method) == (
        "ResetAlarm",
        None,
    )
    boot = round_trip(m.control_tele_boot(7, DEVICE))
    assert boot.text("TeleBoot") == "Boot"
    iframe = round_trip(m.control_iframe(8, CHANNEL))
    assert iframe.text("IFameCmd") == "Send" and iframe.element.find("IFrameCmd") is None
    box = m.DragZoom(1920, 1080, 960, 540, 100, 80)
    zoom_in = round_trip(m.control_drag_zoom(9, CHANNEL, box, zoom_in=True)).typed()
    assert isinstance(zoom_in, m.DeviceControl) and zoom_in.drag_zoom_in == box


def test_corrected_iframe_spelling_is_accepted() -> None:
    body = (
        b"<Control><CmdType>DeviceControl</CmdType><SN>1</SN><DeviceID>" + CHANNEL.encode()
        + b"</DeviceID><IFrameCmd>Send</IFrameCmd></Control>"
    )  # fmt: skip
    control = m.parse(body).typed()
    assert isinstance(control, m.DeviceControl) and control.iframe
    assert not m.expects_response(m.parse(body))


def test_2022_controls_round_trip() -> None:
    precise = round_trip(m.control_ptz_precise(10, CHANNEL, m.PtzPrecise(180.5, -15.25, 2.0))).typed()
    assert isinstance(precise, m.DeviceControl) and precise.ptz_precise == m.PtzPrecise(180.5, -15.25, 2.0)
    pan_only = round_trip(m.control_ptz_precise(11, CHANNEL, m.PtzPrecise(pan=90.0)))
    assert pan_only.text("PTZPreciseCtrl/Pan") == "90.0" and pan_only.text("PTZPreciseCtrl/Tilt") is None
    upgrade = m.DeviceUpgrade("V5.7.3", "http://10.0.0.1:8080/firmware/a.bin?x=1&y=2", "Hikvision", SESSION)
    doc = round_trip(m.control_device_upgrade(12, DEVICE, upgrade))
    assert doc.text("DeviceUpgrade/FileURL") == "http://10.0.0.1:8080/firmware/a.bin?x=1&y=2"
    assert b"a.bin?x=1&amp;y=2" in m.encode_body(m.control_device_upgrade(12, DEVICE, upgrade))
    assert isinstance(typed := doc.typed(), m.DeviceControl) and typed.device_upgrade == upgrade
    card = round_trip(m.control_format_sd_card(13, DEVICE)).typed()
    assert isinstance(card, m.DeviceControl) and card.format_sd_card == 1
    area = m.DragZoom(1920, 1080, 400, 300, 80, 120)
    track = m.control_target_track(14, CHANNEL, "Manual", device_id2=DEVICE, area=area)
    assert [child.tag for child in track.element][3:] == ["TargetTrack", "DeviceID2", "TargetArea"]
    manual = round_trip(track).typed()
    assert isinstance(manual, m.DeviceControl)
    assert (manual.target_track, manual.device_id2, manual.target_area) == ("Manual", DEVICE, area)
    stop = round_trip(m.control_target_track(15, CHANNEL, "Stop")).typed()
    assert isinstance(stop, m.DeviceControl) and (stop.target_track, stop.target_area) == ("Stop", None)
    with pytest.raises(ValueError):
        m.control_target_track(16, CHANNEL, "Follow")


def test_which_commands_get_a_response() -> None:
    box = m.DragZoom(1, 1, 1, 1, 1, 1)
    answered_by_200_only = [
        m.control_ptz(1, CHANNEL, m.PtzCmd.stop()),
        m.control_tele_boot(2, DEVICE),
        m.control_iframe(3, CHANNEL),
        m.control_drag_zoom(4, CHANNEL, box, zoom_in=True),
        m.control_drag_zoom(5, CHANNEL, box, zoom_in=False),
        m.control_ptz_precise(6, CHANNEL, m.PtzPrecise(1.0, 2.0, 3.0)),
        m.control_format_sd_card(7, DEVICE),
        m.control_target_track(8, CHANNEL, "Auto"),
        m.notify_keepalive(9, DEVICE),
        m.response_result("DeviceControl", 10, DEVICE),
    ]
    answered_with_result = [
        m.control_guard(20, DEVICE, guard=True),
        m.control_alarm_reset(21, DEVICE, alarm_method="2"),
        m.control_record(22, CHANNEL, record=True),
        m.control_home_position(23, CHANNEL, m.HomePosition(1, 30, 2)),
        m.control_device_upgrade(24, DEVICE, m.DeviceUpgrade("1", "http://x/f", "v", SESSION)),
        m.config_basic_param(25, DEVICE, heart_beat_interval=30),
        m.query_preset(26, CHANNEL),
        m.query_ptz_position(27, CHANNEL),
        m.notify_broadcast(28, PLATFORM, CHANNEL),
    ]
    assert [m.expects_response(round_trip(doc)) for doc in answered_by_200_only] == [False] * 10
    assert [m.expects_response(round_trip(doc)) for doc in answered_with_result] == [True] * 9
    assert m.CONTROL_ANSWERS["IFameCmd"] is m.CONTROL_ANSWERS["IFrameCmd"] is False


# --- DeviceConfig and ConfigDownload ----------------------------------------------------------------------


def test_basic_param_config_round_trips() -> None:
    doc = m.config_basic_param(
        30, DEVICE, name="学校<东门>", expiration=3600, heart_beat_interval=30, heart_beat_count=3
    )
    assert [child.tag for child in doc.element.find("BasicParam") or []] == [
        "Name", "Expiration", "HeartBeatInterval", "HeartBeatCount"
    ]  # fmt: skip
    config = round_trip(doc).typed()
    assert isinstance(config, m.DeviceConfig)
    assert config.section(m.BasicParam) == m.BasicParam("学校<东门>", 3600, 30, 3)
    assert config.sections["BasicParam"]["HeartBeatCount"] == "3"
    only = round_trip(m.config_basic_param(31, DEVICE, heart_beat_interval=60)).typed()
    assert isinstance(only, m.DeviceConfig) and only.section(m.BasicParam) == m.BasicParam(
        heart_beat_interval=60
    )
    assert only.section(m.SnapShotConfig) is None
    mapping = round_trip(m.device_config(32, DEVICE, {"BasicParam": {"Name": "x"}})).typed()
    assert isinstance(mapping, m.DeviceConfig) and mapping.section(m.BasicParam) == m.BasicParam("x")


def test_svac_config_round_trips() -> None:
    encode = m.SvacEncodeConfig(roi_flag=1, roi_number=0, background_qp=2, audio_recognition_flag=0)
    decode = m.SvacDecodeConfig(svc_stm_mode=1, time_show_flag=1, alert_show_flag=0)
    doc = m.device_config(33, DEVICE, [encode, decode])
    assert doc.text("SVACEncodeConfig/ROIParam/BackGroundQP") == "2"
    assert doc.text("SVACEncodeConfig/AudioParam/AudioRecognitionFlag") == "0"
    # the standard's spelling is what is sent
    assert doc.text("SVACDecodeConfig/SurveillanceParam/AlerShowtFlag") == "0"
    config = round_trip(doc).typed()
    assert isinstance(config, m.DeviceConfig)
    assert (config.section(m.SvacEncodeConfig), config.section(m.SvacDecodeConfig)) == (encode, decode)


def test_snapshot_config_round_trips_and_checks_limits() -> None:
    url = "http://10.0.0.1:8080/api/snapshots/upload?device=1&t=2"
    config = round_trip(
        m.config_snap_shot(34, DEVICE, snap_num=3, interval=2, upload_url=url, session_id=SESSION)
    )
    assert config.text("SnapShotConfig/UploadURL") == url
    typed = config.typed()
    assert isinstance(typed, m.DeviceConfig)
    assert typed.section(m.SnapShotConfig) == m.SnapShotConfig(3, 2, url, SESSION)
    with pytest.raises(ValueError):
        m.config_snap_shot(35, DEVICE, snap_num=11, interval=1, upload_url=url, session_id=SESSION)
    with pytest.raises(ValueError):
        m.config_snap_shot(36, DEVICE, snap_num=1, interval=1, upload_url=url, session_id="short")


def test_every_2022_section_round_trips_through_device_config() -> None:
    sections: list[m.ConfigSection] = [
        m.VideoParamOpt("1/2/4", "5/6"),
        m.VideoRecordPlan(1, 0, 0),
        m.VideoAlarmRecord(1, 30, 5, 0),
        m.PictureMask(1, 0),
        m.FrameMirror(1),
        m.AlarmReport(1, 0),
        m.OsdConfig(704, 576, 10, 10, 1, 0, 1, 0),
        m.VideoParamAttribute(
            [
                m.VideoStreamAttribute("main", "2", "5", "25", "1", "4096"),
                m.VideoStreamAttribute("sub", "2", "3"),
            ]
        ),
    ]
    config = round_trip(m.device_config(37, DEVICE, sections), "UTF-8").typed()
    assert isinstance(config, m.DeviceConfig)
    assert list(config.config.values()) == sections
    assert set(m.CONFIG_SECTIONS) >= set(m.CONFIG_TYPES)


def test_config_download_query_and_typed_answer() -> None:
    query = round_trip(m.query_config_download(40, DEVICE, m.CONFIG_TYPES))
    assert query.text("ConfigType") == "/".join(m.CONFIG_TYPES)
    assert "SnapShot" in m.CONFIG_TYPES and "OSDConfig" in m.CONFIG_TYPES
    body = """<?xml version="1.0" encoding="GB2312"?>
<Response><CmdType>ConfigDownload</CmdType><SN>40</SN><DeviceID>34020000001320000001</DeviceID>
<Result>OK</Result>
<BasicParam><Name>IPC 东门</Name><Expiration>3600</Expiration><HeartBeatInterval>60</HeartBeatInterval>
<HeartBeatCount>3</HeartBeatCount><PositionCapability>0</PositionCapability></BasicParam>
<VideoParamOpt><DownloadSpeed>1/2/4</DownloadSpeed><Resolution>5/6</Resolution></VideoParamOpt>
<SVACDecodeConfig><SVCParam><SVCSpaceSupportMode>1</SVCSpaceSupportMode></SVCParam>
<SurveillanceParam><AlertShowFlag>1</AlertShowFlag></SurveillanceParam></SVACDecodeConfig>
<SnapShot><SnapNum>2</SnapNum><Interval>1</Interval></SnapShot>
</Response>""".encode("gb18030")
    answer = m.parse(body).typed()
    assert isinstance(answer, m.ConfigDownloadResponse)
    assert answer.section(m.BasicParam) == m.BasicParam("IPC 东门", 3600, 60, 3, 0)
    assert (answer.expiration, answer.heart_beat_interval, answer.heart_beat_count) == (3600, 60, 3)
    assert answer.section(m.VideoParamOpt) == m.VideoParamOpt("1/2/4", "5/6")
    decode = answer.section(m.SvacDecodeConfig)
    assert decode is not None and (decode.svc_space_support_mode, decode.alert_show_flag) == (1, 1)
    assert answer.section(m.SnapShotConfig) == m.SnapShotConfig(2, 1)
    assert answer.section(m.OsdConfig) is None
    assert "IPC" not in repr(answer)


# --- 2022 queries, presets -------------------------------------------------------------------------------


def test_2022_query_builders_round_trip() -> None:
    for build, cmd_type in [
        (m.query_ptz_position, "PTZPosition"),
        (m.query_home_position, "HomePositionQuery"),
        (m.query_cruise_track_list, "CruiseTrackListQuery"),
        (m.query_sd_card_status, "SDCardStatus"),
        (m.query_preset, "PresetQuery"),
    ]:
        doc = round_trip(build(50, CHANNEL))
        assert (doc.root, doc.cmd_type, doc.sn, doc.device_id) == ("Query", cmd_type, 50, CHANNEL)
        assert m.expects_response(doc)
    track = round_trip(m.query_cruise_track(51, CHANNEL, 2))
    assert (track.cmd_type, track.text("Number")) == ("CruiseTrackQuery", "2")


def response(cmd_type: str, inner: str) -> bytes:
    return (
        f"<Response><CmdType>{cmd_type}</CmdType><SN>7</SN><DeviceID>{CHANNEL}</DeviceID>{inner}</Response>"
    ).encode()


def test_ptz_position_answer() -> None:
    answer = m.parse(
        response(
            "PTZPosition",
            "<Pan>123.45</Pan><Tilt>-15</Tilt><Zoom>3.5</Zoom><HorizontalFieldAngle>60.2</HorizontalFieldAngle>"
            "<VerticalFieldAngle>34.1</VerticalFieldAngle><MaxViewDistance>150</MaxViewDistance>",
        )
    ).typed()
    assert answer == m.PtzPositionResponse(7, CHANNEL, None, 123.45, -15.0, 3.5, 60.2, 34.1, 150.0)
    nested = m.parse(response("ptzposition", "<PTZPreciseCtrl><Pan>1</Pan></PTZPreciseCtrl>")).typed()
    assert isinstance(nested, m.PtzPositionResponse) and nested.pan == 1.0


def test_home_position_answer() -> None:
    body = "<Result>OK</Result><HomePosition><Enabled>1</Enabled><ResetTime>30</ResetTime><PresetIndex>2</PresetIndex></HomePosition>"
    answer = m.parse(response("HomePositionQuery", body)).typed()
    assert answer == m.HomePositionResponse(7, CHANNEL, "OK", m.HomePosition(1, 30, 2))
    empty = m.parse(response("HomePositionQuery", "<Result>OK</Result>")).typed()
    assert isinstance(empty, m.HomePositionResponse) and empty.home_position is None


def test_cruise_track_answers() -> None:
    listing = m.parse(
        response(
            "CruiseTrackListQuery",
            '<SumNum>2</SumNum><CruiseTrackList Num="2"><Item><Number>0</Number><Name>巡航A</Name></Item>'
            "<Item><Number>1</Number><Name>null</Name></Item></CruiseTrackList>",
        )
    ).typed()
    assert isinstance(listing, m.CruiseTrackListResponse)
    assert (listing.sum_num, listing.num) == (2, 2)
    assert listing.tracks == [m.CruiseTrack(0, "巡航A"), m.CruiseTrack(1, "null")]
    track = m.parse(
        response(
            "CruiseTrackQuery",
            '<Name>巡航A</Name><SumNum>2</SumNum><CruisePointList Num="2">'
            "<Item><PresetIndex>1</PresetIndex><StayTime>10</StayTime><Speed>5</Speed></Item>"
            "<Item><PresetIndex>3</PresetIndex><StayTime>x</StayTime></Item></CruisePointList>",
        )
    ).typed()
    assert isinstance(track, m.CruiseTrackResponse)
    assert (track.name, track.sum_num, track.num) == ("巡航A", 2, 2)
    assert track.points == [m.CruisePoint(1, 10, 5), m.CruisePoint(3, None, None)]


def test_sd_card_status_answer() -> None:
    answer = m.parse(
        response(
            "SDCardStatus",
            '<SumNum>1</SumNum><SDCardList Num="1"><Item><ID>1</ID><HddName>sd0</HddName><Status>formatting</Status>'
            "<FormatProgress>40</FormatProgress><Capacity>61440</Capacity><FreeSpace>1024</FreeSpace></Item></SDCardList>",
        )
    ).typed()
    assert answer == m.SdCardStatusResponse(
        7, CHANNEL, None, 1, 1, [m.SdCard(1, "sd0", "formatting", 40, 61440, 1024)]
    )


def test_preset_answer_still_typed() -> None:
    answer = m.parse(
        response(
            "PresetQuery",
            '<PresetList Num="2"><Item><PresetID>1</PresetID><PresetName>门口</PresetName></Item>'
            "<Item><PresetID>2</PresetID><PresetName>Name</PresetName></Item></PresetList>",
        )
    ).typed()
    assert isinstance(answer, m.PresetQueryResponse) and answer.num == 2
    assert [p.preset_id for p in answer.items] == ["1", "2"]


# --- subscriptions and broadcast --------------------------------------------------------------------------


def test_alarm_subscription_body_round_trips() -> None:
    doc = m.query_alarm(
        60,
        DEVICE,
        start_priority=1,
        end_priority=4,
        method="25",
        alarm_type="2",
        start_time="2025-04-22T00:00:00",
        end_time="2025-04-23T00:00:00",
    )
    assert [child.tag for child in doc.element][3:] == [
        "StartAlarmPriority", "EndAlarmPriority", "AlarmMethod", "AlarmType", "StartAlarmTime", "EndAlarmTime"
    ]  # fmt: skip
    query = round_trip(doc).typed()
    assert query == m.AlarmQuery(60, DEVICE, 1, 4, "25", "2", "2025-04-22T00:00:00", "2025-04-23T00:00:00")
    everything = round_trip(m.query_alarm(61, DEVICE)).typed()
    assert everything == m.AlarmQuery(61, DEVICE, None, None, None, None, None, None)


def test_mobile_position_subscription_body_round_trips() -> None:
    assert round_trip(m.query_mobile_position(62, DEVICE, interval=10)).typed() == m.MobilePositionQuery(
        62, DEVICE, 10
    )
    assert round_trip(m.query_mobile_position(63, DEVICE)).typed() == m.MobilePositionQuery(63, DEVICE, None)


def test_broadcast_notify_and_response() -> None:
    notify = round_trip(m.notify_broadcast(70, PLATFORM, CHANNEL))
    assert notify.typed() == m.BroadcastNotify(70, PLATFORM, CHANNEL)
    assert m.expects_response(notify)
    answer = round_trip(m.response_result("Broadcast", 70, CHANNEL)).typed()
    assert isinstance(answer, m.ResultResponse) and answer.ok and answer.cmd_type == "Broadcast"
    refused = round_trip(m.response_result("Broadcast", 70, CHANNEL, ok=False)).typed()
    assert isinstance(refused, m.ResultResponse) and not refused.ok

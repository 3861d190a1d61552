"""The security boundary, with real networks: devnet -- gateway host -- policenet in namespaces (netns.py).

The gateway runs as the daemon (``python3 -m gb28181 run``) in the gateway namespace with one interface on
each side, a simulated camera streams from the device namespace, and the upper platform in the police
namespace (netns_upper.py) registers the gateway, reads its catalog, plays the camera, and captures every
frame that reaches its network. A hostile host on the device network (netns_inject.py) then tries what
scapy lets it: spoofed and unspoofed SIP and RTP at both sides of the gateway, malformed packets, floods.

The tests share one set of namespaces and processes (starting them costs seconds) and run in file order:
the stream the upper plays in the first tests must still be intact, and decodable, at the end, and the
last test reads everything the police network received over the whole run.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import yaml
from media_harness import ffprobe, gaps, parse_rtp, starts_keyframe
from netns import (
    DEV_GW,
    DEV_HOST,
    DEV_OTHER,
    HERE,
    OUTER_IF,
    POLICE_GW,
    POLICE_HOST,
    POLICE_IF,
    Topology,
    stop,
    topology,
    unavailable,
    wait_for,
)
from netns_inject import FIRST_SN
from netns_upper import RTP_RECORD
from upper_harness import UPPER_DOMAIN, UPPER_ID, UPPER_PASSWORD

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
        reason="needs ffmpeg/ffprobe (Debian package ffmpeg; tests/run.sh installs it)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root (ip netns add)"),
]

GATEWAY_ID = "34020000002000000001"
DOMAIN = "3402000000"
DEVICE_PASSWORD = "boundary-device-pw"
DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"
"""The simulator's first device and its first camera channel."""
SIP_PORT = 5060
POLICE_SIP_PORT = 5061
DEV_MEDIA = "30000-30099"
POLICE_MEDIA = "40000-40099"
UPPER_RTP = 46000
CANARY_PORT = 7000
API = "http://127.0.0.1:8080"
SSRC = "0100000042"
FPS = 25
RATE_LIMIT = 300
"""sip.rate_limit of the gateway here: messages per second from one source IP on the device side."""
DEVNET = ipaddress.ip_network("10.77.1.0/24")
HTTP_CLIENT = """
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(urllib.request.Request(sys.argv[1], method=sys.argv[2]), timeout=10) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
except OSError:
    print(0)
"""
"""Run inside the gateway namespace, where the API listens (curl may not be installed)."""


# -- what reached the police network -------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One frame the police network's interface received, reduced to what the assertions read."""

    time: float
    kind: str
    """"udp", "tcp", "icmp", "arp", "link" (no IP: e.g. an Ethernet loopback test frame) or "other"."""
    src: str = ""
    dst: str = ""
    sport: int = 0
    dport: int = 0
    payload: bytes = b""
    raw: bytes = b""
    tcp_flags: str = ""

    def describe(self) -> str:
        return f"{self.kind} {self.src}:{self.sport} -> {self.dst}:{self.dport} {self.payload[:60]!r}"


def read_frames(path: Path) -> list[Frame]:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.l2 import ARP
    from scapy.utils import PcapReader

    frames: list[Frame] = []
    with PcapReader(str(path)) as reader:
        for packet in reader:
            when = float(packet.time)
            raw = bytes(packet)
            if ARP in packet:
                frames.append(Frame(when, "arp", raw=raw))
            elif IP not in packet:
                frames.append(Frame(when, "link", raw=raw))
            else:
                ip = packet[IP]
                if UDP in packet:
                    layer = packet[UDP]
                    frames.append(Frame(when, "udp", ip.src, ip.dst, layer.sport, layer.dport, bytes(layer.payload), raw))
                elif TCP in packet:
                    layer = packet[TCP]
                    frames.append(Frame(when, "tcp", ip.src, ip.dst, layer.sport, layer.dport, bytes(layer.payload),
                                        raw, str(layer.flags)))
                elif ICMP in packet:
                    frames.append(Frame(when, "icmp", ip.src, ip.dst, payload=bytes(packet[ICMP].payload), raw=raw))
                else:
                    frames.append(Frame(when, "other", ip.src, ip.dst, raw=raw))
    return frames


@dataclass(frozen=True)
class Received:
    time: float
    host: str
    port: int
    data: bytes


# -- the rig ----------------------------------------------------------------------------------------------


@dataclass
class BoundaryRig:
    net: Topology
    tmp: Path
    clip: Path
    upper: subprocess.Popen[bytes] | None = None
    gateway: subprocess.Popen[bytes] | None = None
    simulator: subprocess.Popen[bytes] | None = None
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    stream: dict[str, Any] | None = None
    """The upper's INVITE answer once it plays the channel."""
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Named periods of the run (wall-clock), for reading the capture."""
    logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def upper_dir(self) -> Path:
        return self.tmp / "upper"

    @property
    def gateway_log(self) -> Path:
        return self.tmp / "gateway.log"

    def start(self) -> None:
        self.upper_dir.mkdir()
        self.upper = self.net.police.popen(
            [sys.executable, str(HERE / "netns_upper.py"), "--host", POLICE_HOST, "--out", str(self.upper_dir),
             "--rtp-port", str(UPPER_RTP), "--canary-port", str(CANARY_PORT), "--interface", OUTER_IF],
            self.log("upper.log"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        threading.Thread(target=self._read_events, daemon=True).start()
        self.wait_event("ready", 20)
        config_path = self.tmp / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(self.gateway_config()), encoding="utf-8")
        self.gateway = self.net.gw.popen([sys.executable, "-m", "gbgw.gb28181", "run", "--config", str(config_path)],
                                         self.log(self.gateway_log.name))
        wait_for(lambda: self._gateway_alive() and self.api("/api/health")[0] == 200, 20, "the gateway's API")
        self.wait_event("registered", 10)
        self.simulator = self.net.dev.popen(
            [sys.executable, "-m", "gbgw.gb28181", "simulate", "--server", f"{DEV_GW}:{SIP_PORT}", "--bind", DEV_HOST,
             "--password", DEVICE_PASSWORD, "--media", str(self.clip), "--fps", str(FPS),
             "--keepalive-interval", "5", "--log-level", "warning"],
            self.log("simulator.log"),
        )

        def channel_known() -> bool:
            status, channels = self.api(f"/api/devices/{DEVICE}/channels")
            return self._gateway_alive() and status == 200 and CHANNEL in [c["id"] for c in channels]

        wait_for(channel_known, 20, "the camera and its catalog at the gateway", interval=0.2)

    def log(self, name: str) -> IO[bytes]:
        """A file under tmp for a process's output, closed with the rig."""
        handle = (self.tmp / name).open("ab")
        self.logs.append(handle)
        return handle

    def gateway_config(self) -> dict[str, Any]:
        return {
            "sip": {"id": GATEWAY_ID, "domain": DOMAIN, "listen": f"{DEV_GW}:{SIP_PORT}", "password": DEVICE_PASSWORD,
                    "rate_limit": RATE_LIMIT, "t1": 0.2, "query_timeout": 3, "catalog_first_wait": 5,
                    "catalog_gap_timeout": 0.5},
            "media": {"ip": DEV_GW, "ports": DEV_MEDIA},
            "storage": {"backend": "sqlite", "path": str(self.tmp / "gateway.db")},
            "api": {"listen": API.removeprefix("http://")},
            "audit": {"path": str(self.tmp / "audit.log")},
            "log": {"level": "info", "format": "json"},
            "upstreams": [{
                "name": "district", "id": UPPER_ID, "domain": UPPER_DOMAIN,
                "address": f"{POLICE_HOST}:5060", "listen": f"{POLICE_GW}:{POLICE_SIP_PORT}",
                "media_ip": POLICE_GW, "media_ports": POLICE_MEDIA, "password": UPPER_PASSWORD,
                "keepalive_interval": 5, "share": [{"prefix": "34020000"}],
            }],
        }

    def _gateway_alive(self) -> bool:
        assert self.gateway is not None
        if self.gateway.poll() is not None:
            raise AssertionError(f"the gateway exited ({self.gateway.returncode}):\n{self.gateway_text()[-3000:]}")
        return True

    def gateway_text(self) -> str:
        return self.gateway_log.read_text(encoding="utf-8", errors="replace")

    def gateway_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.gateway_text().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def stop(self) -> None:
        if self.upper is not None and self.upper.poll() is None:
            with contextlib.suppress(Exception):
                self.command("quit", timeout=5)
        for process in (self.simulator, self.gateway, self.upper):
            stop(process)
        for handle in self.logs:
            handle.close()

    # -- talking to the processes ----------------------------------------------------------------------

    def api(self, path: str, method: str = "GET") -> tuple[int, Any]:
        """An HTTP request to the gateway's API (on the gateway namespace's loopback); status 0: no answer."""
        result = self.net.gw.run(sys.executable, "-c", HTTP_CLIENT, API + path, method, check=False)
        code, _, body = result.stdout.partition("\n")
        status = int(code) if code.isdigit() else 0
        with contextlib.suppress(ValueError):
            return status, json.loads(body)
        return status, body

    def boundary_drops(self, side: str = "device", reason: str = "rate") -> float:
        """gb_boundary_drops for one side and reason, from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        status, text = self.api("/metrics")
        assert status == 200, text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "gb_boundary_drops_total" and sample.labels == {"side": side, "reason": reason}:
                    return float(sample.value)
        raise AssertionError(f"no gb_boundary_drops for {side}/{reason} in /metrics")

    def _read_events(self) -> None:
        assert self.upper is not None and self.upper.stdout is not None
        for line in self.upper.stdout:
            with contextlib.suppress(ValueError):
                self.events.put(json.loads(line))

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the upper sent no {name!r} within {timeout} s; its log:\n"
                                     + (self.tmp / "upper.log").read_text(errors="replace")[-3000:])
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event.get("event") == name:
                return event

    def command(self, cmd: str, timeout: float = 15, **fields: Any) -> dict[str, Any]:
        assert self.upper is not None and self.upper.stdin is not None
        self.upper.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        self.upper.stdin.flush()
        return self.wait_event(cmd, timeout)

    def frames(self) -> list[Frame]:
        """Every frame the police network received so far."""
        self.command("sync")
        return read_frames(self.upper_dir / "police.pcap")

    def audit(self) -> list[dict[str, Any]]:
        path = self.tmp / "audit.log"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []

    def sip_seen(self) -> list[dict[str, Any]]:
        """Every SIP message the upper's SIP stack received, with its source."""
        self.command("sync")
        lines = (self.upper_dir / "sip.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]

    def rtp(self) -> list[Received]:
        """Every datagram the upper's RTP socket received so far."""
        self.command("sync")
        data = (self.upper_dir / "rtp.bin").read_bytes()
        out = []
        offset = 0
        while offset < len(data):
            when, address, port, size = RTP_RECORD.unpack_from(data, offset)
            offset += RTP_RECORD.size
            out.append(Received(when, socket.inet_ntoa(address), port, data[offset : offset + size]))
            offset += size
        return out

    def inject(self, marker: str) -> dict[str, Any]:
        result: dict[str, Any] = self.net.dev.python(
            "netns_inject.py", "inject", "--marker", marker, "--upper", POLICE_HOST, "--upper-sip", "5060",
            "--upper-rtp", str(UPPER_RTP), "--police-gw", POLICE_GW, "--police-sip", str(POLICE_SIP_PORT),
            "--police-media", POLICE_MEDIA, "--dev-gw", DEV_GW, "--dev-sip", str(SIP_PORT),
            "--dev-media", DEV_MEDIA, "--camera", DEV_HOST, "--other", DEV_OTHER, "--gateway-id", GATEWAY_ID,
            "--upper-id", UPPER_ID, "--channel", CHANNEL, "--flood", "3000",
        )
        return result


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of 320x240 H.264 at 25 fps, a keyframe every second, no B-frames (as cameras encode)."""
    path = tmp_path_factory.mktemp("boundary-clip") / "clip.h264"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}",
                    "-t", "2", "-g", str(FPS), "-bf", "0", "-c:v", "libx264", "-f", "h264", str(path)],
                   check=True, timeout=60)
    return path


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, clip: Path) -> Iterator[BoundaryRig]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(f"network namespace tests need root with CAP_NET_ADMIN: {reason}")
    tmp = tmp_path_factory.mktemp("boundary")
    with topology() as net:
        rig = BoundaryRig(net, tmp, clip)
        try:
            rig.start()
            yield rig
        finally:
            rig.stop()


def marker_for(test: str) -> str:
    return f"XB{os.getpid() % 10000:04d}{test}"


# -- the tests --------------------------------------------------------------------------------------------


def test_device_network_cannot_reach_the_police_network(rig: BoundaryRig) -> None:
    """Both outer networks route through the gateway host; with forwarding off (as deployed) nothing
    passes. The same probe with forwarding switched on for a moment does pass: the probe can see a route."""
    net = rig.net
    assert net.gw.read_sysctl("net.ipv4.ip_forward") == "0"
    marker = marker_for("reach")
    probe = ("reach", "--target", POLICE_HOST, "--tcp", str(CANARY_PORT), "--udp", str(CANARY_PORT + 1))
    blocked = net.dev.python("netns_inject.py", *probe, "--marker", marker + "off")
    started = time.time()
    net.set_forwarding(True)
    try:
        routed = net.dev.python("netns_inject.py", *probe, "--marker", marker + "on")
    finally:
        net.set_forwarding(False)
        rig.windows["forwarding"] = (started, time.time())
    assert (blocked["icmp"], blocked["tcp"]) == (False, False), blocked
    assert (routed["icmp"], routed["tcp"]) == (True, True), routed
    arrived = [bytes.fromhex(c["data"]) for c in rig.command("sync")["canary"] if c["kind"] == "udp"]
    assert (marker + "on").encode() in arrived, arrived
    assert (marker + "off").encode() not in arrived, arrived
    # Reaching the gateway host itself on its device side is what devices do; that works.
    gateway = net.dev.run(sys.executable, "-c", f"import socket; socket.create_connection(('{DEV_GW}', {SIP_PORT}), 1)",
                          check=False)
    assert gateway.returncode == 0, gateway.stderr


def test_sockets_bound_to_an_interface_take_nothing_that_came_in_on_another(rig: BoundaryRig) -> None:
    """The mechanism the gateway relies on, on its own: a SipTransport and a PortRange lease given the
    interface of the police-side address take nothing a device-side host sends to that address, while the
    same without an interface (the control) takes all of it."""
    net = rig.net
    bound = net.gw.popen([sys.executable, str(HERE / "netns_bound.py"), "--host", POLICE_GW],
                         rig.log("bound.log"), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert bound.stdin is not None and bound.stdout is not None
        ports = json.loads(bound.stdout.readline())
        sip, media = ports["sip"], ports["rtp"]
        probe = net.dev.python(
            "netns_inject.py", "probe", "--target", POLICE_GW, "--source", DEV_OTHER, "--gateway-id", GATEWAY_ID,
            "--sip", str(sip["bound"]), str(sip["unbound"]), "--rtp", str(media["bound"]), str(media["unbound"]),
            "--tcp", str(sip["bound"]), str(sip["unbound"]),
        )
        bound.stdin.write(b"done\n")
        bound.stdin.flush()
        report = json.loads(bound.stdout.readline())
    finally:
        stop(bound)
    assert ports["interface"] == POLICE_IF
    received = report["received"]
    assert received["bound"] == [], received
    assert sorted(item.split()[0] for item in received["unbound"]) == ["rtp", "sip"], received
    assert probe["answered"] == [sip["unbound"]], probe
    assert probe["tcp"] == {str(sip["bound"]): False, str(sip["unbound"]): True}, probe
    # interface_for: a secondary address (SIOCGIFADDR would only give the primary one), loopback, absent.
    assert probe["interface_for"] == OUTER_IF
    assert report["interface_for"] == {"loopback": "lo", "absent": None, "name": None}


def test_upper_registers_reads_the_catalog_and_plays_a_camera(rig: BoundaryRig) -> None:
    catalog = rig.command("catalog", timeout=15, wait=5)
    assert catalog["status"] == 200, catalog
    assert CHANNEL in catalog["items"], catalog
    answer = rig.command("invite", timeout=20, channel=CHANNEL, ssrc=SSRC)
    assert answer["status"] == 200, answer
    rig.stream = answer
    sdp = answer["sdp"]
    assert f"c=IN IP4 {POLICE_GW}" in sdp, sdp

    first = wait_for(rig.rtp, 5, "the first RTP packet at the upper", interval=0.2)
    assert starts_keyframe(parse_rtp(first[0].data).payload)


def test_spoofed_and_foreign_traffic_never_reaches_the_police_network(rig: BoundaryRig) -> None:
    """The documented host setup: strict reverse-path filtering on the gateway host (deploy/README-boundary.md).
    Nothing the hostile host sends gets anything into the police network: no answer, no error, no copy."""
    inject_and_check(rig, "strict", rp_filter=1)


def test_the_gateway_holds_the_boundary_without_reverse_path_filtering(rig: BoundaryRig) -> None:
    """A host set up without rp_filter: Linux then hands a packet that came in on the device side to a socket
    bound to the police-side address. The gateway's sockets are bound to their interfaces, so the gateway
    itself never answers, forwards or acts on any of it. The host's own ICMP errors and TCP resets for the
    spoofed packets (about closed ports, carrying no answer) do go out toward the spoofed source: that is
    what the documented rp_filter setting stops (previous test)."""
    inject_and_check(rig, "loose", rp_filter=0)


def inject_and_check(rig: BoundaryRig, name: str, rp_filter: int) -> None:
    marker = marker_for(name)
    canaries = len(rig.command("sync")["canary"])
    audited = len(rig.audit())
    rig.net.set_rp_filter(rp_filter)
    started = time.time()
    try:
        result = rig.inject(marker)
        time.sleep(0.5)  # for late answers
    finally:
        rig.net.set_rp_filter(1)
    ended = time.time() + 0.2
    rig.windows[name] = (started, ended)

    assert sum(result["sent"].values()) > 3000, result["sent"]
    # No answer to this host's own requests on the police-side port, no media where a spoofed INVITE asked.
    assert result["answers"] == [], result["answers"]
    assert result["media"] == [], result["media"]
    # What the police network gets from the gateway anyway: its SIP toward the upper and the stream.
    stream = rig.rtp()[:1]
    expected_flows = {("udp", POLICE_GW, POLICE_SIP_PORT, POLICE_HOST, 5060)}
    expected_flows |= {("udp", r.host, r.port + i, POLICE_HOST, UPPER_RTP + i) for r in stream for i in (0, 1)}
    unexpected = []
    kernel_errors = []
    for frame in rig.frames():
        # Link-layer frames without IP (ARP, the kernel's Ethernet loopback test frames, ethertype 0x9000)
        # never leave the segment they are sent on: they are not traffic crossing from the device side,
        # unless they carry what was injected there.
        if not started <= frame.time <= ended or (frame.kind in ("arp", "link") and marker.encode() not in frame.raw):
            continue
        if is_kernel_error(frame):
            kernel_errors.append(frame)
        elif marker.encode() in frame.raw or flow(frame) not in expected_flows:
            unexpected.append(frame)
    assert not unexpected, [f.describe() for f in unexpected[:20]]
    if rp_filter:
        assert not kernel_errors, [f.describe() for f in kernel_errors[:20]]
    else:
        print(f"\nhost ICMP errors / TCP resets toward the spoofed upper without rp_filter: {len(kernel_errors)}")
    # The gateway's SIP toward the upper meanwhile is its own (keepalives): never an answer to injected SIP.
    injected_sns = [f"<SN>{sn}</SN>" for sn in range(FIRST_SN, FIRST_SN + 50)]
    for message in rig.sip_seen():
        if started <= message["time"] <= ended:
            assert marker not in message["text"], message["text"]
            assert not [sn for sn in injected_sns if sn in message["text"]], message["text"]
    sync = rig.command("sync")
    assert sync["stray_responses"] == 0, sync
    assert sync["canary"][canaries:] == []
    # Nothing crossed on the upper's behalf either (catalog, INVITE, control are all audited).
    assert rig.audit()[audited:] == []


def flow(frame: Frame) -> tuple[str, str, int, str, int]:
    return frame.kind, frame.src, frame.sport, frame.dst, frame.dport


def is_kernel_error(frame: Frame) -> bool:
    """An ICMP error or a bare TCP reset: what a host's kernel sends about a packet no socket took."""
    return frame.kind == "icmp" or (frame.kind == "tcp" and "R" in frame.tcp_flags and not frame.payload)


def test_a_flooding_address_is_rate_limited_while_a_device_behind_another_keeps_working(rig: BoundaryRig) -> None:
    """One device-side address sends SIP at five times sip.rate_limit: the excess is dropped unparsed
    (gb_boundary_drops, and a warning naming the source), while the camera at another address answers a
    query the gateway sends it in the middle of the flood."""
    rate, seconds = 5 * RATE_LIMIT, 2.0
    before = len(rig.gateway_events())
    drops_before = rig.boundary_drops()
    flood = rig.net.dev.popen(
        [sys.executable, str(HERE / "netns_inject.py"), "flood", "--target", f"{DEV_GW}:{SIP_PORT}",
         "--source", DEV_OTHER, "--rate", str(rate), "--seconds", str(seconds), "--gateway-id", GATEWAY_ID],
        rig.log("flood.log"), stdout=subprocess.PIPE,
    )
    try:
        assert flood.stdout is not None
        assert b"started" in flood.stdout.readline()
        time.sleep(0.5)
        status, body = rig.api(f"/api/devices/{DEVICE}/status")
        out, _ = flood.communicate(timeout=30)
    finally:
        stop(flood)
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert (status, body.get("result") if isinstance(body, dict) else body) == (200, "OK"), body
    assert result["sent"] >= rate * seconds * 0.8, result
    # At most the limit per one-second window, and a window edge can let up to twice that through.
    allowed = RATE_LIMIT * (int(seconds) + 2)
    assert 0 < result["answered"] <= allowed, result
    dropped = rig.boundary_drops() - drops_before
    assert result["sent"] - allowed <= dropped <= result["sent"] - result["answered"], (dropped, result)
    flooders = {e.get("source") for e in rig.gateway_events()[before:]
                if e.get("event") == "source over its message rate; dropping"}
    assert flooders == {DEV_OTHER}, flooders
    _, device = rig.api(f"/api/devices/{DEVICE}")
    assert device["online"] is True, device


def test_the_stream_ran_undisturbed_and_decodes(rig: BoundaryRig, tmp_path: Path) -> None:
    assert rig.stream is not None, "the upper never got a stream (see the play test)"
    time.sleep(0.5)
    packets = rig.rtp()
    sources = {(r.host, r.port) for r in packets}
    assert len(sources) == 1, sources
    rtp = [parse_rtp(r.data) for r in packets]
    assert {p.ssrc for p in rtp} == {int(SSRC)}
    assert gaps(rtp) == []
    # It kept flowing through every injection and the flood, up to now.
    times = [f.time for f in packets]
    longest = max(b - a for a, b in itertools.pairwise(times))
    assert longest < 1.0, longest
    assert time.time() - times[-1] < 1.0
    ps = tmp_path / "upper.ps"
    ps.write_bytes(b"".join(p.payload for p in rtp))
    stream = ffprobe(ps)
    assert stream["codec_name"] == "h264"
    assert (stream["width"], stream["height"]) == (320, 240)
    elapsed = times[-1] - times[0]
    assert int(stream["nb_read_frames"]) >= int(elapsed * FPS) - 5, (stream["nb_read_frames"], elapsed)


def test_the_upper_never_saw_a_device_network_address(rig: BoundaryRig) -> None:
    """Over the whole run: no frame from or about a device-side address, and no SIP message or SDP that
    names one. Left out: the moment the first test switched forwarding on (its probe did cross, as it
    should), and the host's ICMP errors and resets during the no-rp_filter test (they quote the spoofed
    packets and come from the address they were sent to)."""
    forwarding = rig.windows["forwarding"]
    loose = rig.windows.get("loose", (0.0, 0.0))
    frames = [f for f in rig.frames()
              if not (forwarding[0] <= f.time <= forwarding[1] + 0.5)
              and not (is_kernel_error(f) and loose[0] <= f.time <= loose[1] + 0.5)]
    seen = {f.src for f in frames if f.src}
    assert seen <= {POLICE_GW}, seen
    assert not any(ipaddress.ip_address(f.dst) in DEVNET for f in frames if f.dst)
    messages = rig.sip_seen()
    assert any("REGISTER" in m["text"].split("\r\n", 1)[0] for m in messages)
    for message in messages:
        assert {message["source"][0]} <= {POLICE_GW}, message["source"]
        text = message["text"]
        assert "10.77.1." not in text, text
    for frame in frames:
        if frame.kind in ("udp", "tcp") and frame.sport == POLICE_SIP_PORT:
            assert b"10.77.1." not in frame.payload, frame.describe()

"""SIGHUP on a real daemon process: what can change live does, everything else is named.

The upper is the cascade tests' FakeUpper; the daemon is a subprocess reading a YAML file, as an
administrator runs it, so the signal handler, the log level filter and the in-place policy update are the
production ones.
"""

from __future__ import annotations

import dataclasses
import enum
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gwproc import (
    GATEWAY_ID,
    DaemonProcess,
    GbDevice,
    catalog_xml,
    daemon_config,
    device_info_xml,
)
from upper_harness import FakeUpper, upstream_config
from wire import free_port

from gbgw.gb28181 import manscdp
from gbgw.gb28181.app.reload import LIVE, compare
from gbgw.gb28181.config import GatewayConfig, HostPort, UpstreamConfig

DEVICE_ID = "34020000011328000001"
ENTRANCE = "34020000011318000001"
GARAGE = "34020000011318000002"
CHANNELS = [
    {"DeviceID": ENTRANCE, "Name": "小区东门入口", "ParentID": DEVICE_ID, "Status": "ON"},
    {"DeviceID": GARAGE, "Name": "地下车库", "ParentID": DEVICE_ID, "Status": "ON"},
]


# -- the comparison: every key is applied or named --------------------------------------------------------


def _other(value: Any) -> Any:
    """A value of the same kind that differs from ``value``."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, HostPort):
        return HostPort(value.host, value.port + 1)
    if isinstance(value, enum.Enum):
        return next(member for member in type(value) if member is not value)
    if isinstance(value, tuple | list):
        return type(value)([*value, None])
    if isinstance(value, dict):
        return {**value, "extra": "x"}
    return object()


def _leaves(section: object, prefix: str = "") -> list[str]:
    """The dotted key of every field under ``section`` (non-frozen dataclasses recurse)."""
    found = []
    for f in dataclasses.fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not value.__dataclass_params__.frozen:  # type: ignore[union-attr]
            found += _leaves(value, f"{key}.")
        elif key != "upstreams":
            found.append(key)
    return found


@pytest.mark.parametrize("key", _leaves(GatewayConfig()))
def test_every_changed_key_is_applied_or_named(key: str) -> None:
    old, new = GatewayConfig(), GatewayConfig()
    *path, leaf = key.split(".")
    holder: Any = new
    for part in path:
        holder = getattr(holder, part)
    setattr(holder, leaf, _other(getattr(holder, leaf)))
    change = compare(old, new)
    assert change.live + change.restart == [key]
    assert (key in change.live) == (key in LIVE)


def _upstream(name: str, **changes: Any) -> UpstreamConfig:
    base = UpstreamConfig(name, "34020000002000000009", "3402000000", HostPort("127.0.0.1", 5070),
                          HostPort("127.0.0.1", 5071), "127.0.0.1")
    return dataclasses.replace(base, **changes)


def test_upstreams_compared_by_name() -> None:
    old, new = GatewayConfig(), GatewayConfig()
    old.upstreams = [_upstream("gone"), _upstream("district"), _upstream("city")]
    new.upstreams = [_upstream("district", share=(), channel_names={ENTRANCE: "东门"}, password="new"),
                     _upstream("city", address=HostPort("10.0.0.9", 5060)), _upstream("county")]
    change = compare(old, new)
    # Every upstream key is live: removed, added, replaced (address, password) or updated in place.
    assert change.live == ["upstreams[gone] (removed)", "upstreams[county] (added)",
                           "upstreams[city].address", "upstreams[district].password",
                           "upstreams[district].channel_names"]
    assert change.restart == []
    assert change.upstreams.removed == ["gone"]
    assert [u.name for u in change.upstreams.added] == ["county"]
    assert [u.name for u in change.upstreams.replaced] == ["city", "district"]
    assert change.upstreams.policy == []
    policy_only = compare(old, GatewayConfig(upstreams=[_upstream("gone"), _upstream("city"),
                                                        _upstream("district", channel_names={ENTRANCE: "东门"})]))
    assert [u.name for u in policy_only.upstreams.policy] == ["district"]
    assert not policy_only.upstreams.replaced and not policy_only.upstreams.added
    disabled = compare(old, GatewayConfig(upstreams=[_upstream("gone"), _upstream("city"),
                                                     _upstream("district", enabled=False)]))
    assert disabled.upstreams.removed == ["district"] and not disabled.upstreams.replaced
    for f in dataclasses.fields(UpstreamConfig):
        if f.name == "name":
            continue
        changed = [_upstream("district", **{f.name: _other(getattr(_upstream("district"), f.name))})]
        one = GatewayConfig(upstreams=[_upstream("district")])
        assert compare(one, GatewayConfig(upstreams=changed)).live + \
            compare(one, GatewayConfig(upstreams=changed)).restart == [f"upstreams[district].{f.name}"]


# -- a real daemon --------------------------------------------------------------------------------------


@pytest.fixture
async def upper() -> AsyncIterator[FakeUpper]:
    fake = await FakeUpper().start()
    try:
        yield fake
    finally:
        await fake.close()


async def shared_catalog(upper: FakeUpper, sn: int) -> set[str]:
    """The channel IDs of the gateway's whole catalog answer to a Query with ``sn``."""
    assert (await upper.manscdp(manscdp.query_catalog(sn, GATEWAY_ID))).status == 200

    def pages() -> list[manscdp.CatalogResponse] | None:
        found = [manscdp.CatalogResponse.from_document(doc) for doc in upper.documents("Response", "Catalog", sn)]
        if found and sum(len(p.items) for p in found) >= found[0].sum_num:
            return found
        return None

    answer = await upper.wait(pages, 10, f"the catalog for SN {sn}")
    return {item.device_id for page in answer for item in page.items if item.device_id in (ENTRANCE, GARAGE)}


async def test_sighup_applies_level_and_share_rules_and_names_the_rest(tmp_path: Path, upper: FakeUpper) -> None:
    entry = upstream_config(upper, share=[{"ids": [ENTRANCE]}])
    config, sip_port, _ = daemon_config(tmp_path, upstreams=[entry])  # type: ignore[arg-type]
    config_path = tmp_path / "gateway.yaml"
    process = DaemonProcess.with_config(config, config_path, tmp_path / "gateway.log")
    device = await GbDevice(DEVICE_ID, sip_port).open()
    try:
        await process.start()
        assert (await device.register("12345678")).status == 200
        await device.answer_query("DeviceInfo", lambda sn: device_info_xml(DEVICE_ID, sn, "东门IPC", "TestVendor",
                                                                            "IPC-1", "V1.0"))
        await device.answer_query("Catalog", lambda sn: catalog_xml(DEVICE_ID, sn, CHANNELS))
        await upper.wait(lambda: upper.gateway is not None, 10, "the gateway's registration")
        await process.wait_log("catalog received", timeout=10)
        assert await shared_catalog(upper, 101) == {ENTRANCE}
        assert not [e for e in process.log_events() if e.get("level") == "debug"]

        config["log"]["level"] = "debug"
        config["upstreams"][0]["share"] = [{"ids": [GARAGE]}]
        config["sip"]["listen"] = f"127.0.0.1:{free_port()}"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        before = len(process.log_events())
        process.send_signal(signal.SIGHUP)
        reloaded = await process.wait_log("configuration reloaded", after=before)

        assert reloaded["applied"] == ["log.level", "upstreams[district].share"]
        restart = await process.wait_log("reload: these settings need a restart to change", after=before)
        assert restart["keys"] == ["sip.listen"]
        applied = [e for e in process.log_events()[before:] if e.get("event") == "reload: applied"]
        assert [e["level"] for e in applied] == ["debug", "debug"]
        # The upper now sees the garage camera and no longer the entrance; the device side keeps its port.
        assert await shared_catalog(upper, 102) == {GARAGE}
        assert (await device.keepalive()).status == 200

        process.send_signal(signal.SIGTERM)
        assert await process.wait(timeout=10) == 0
    finally:
        device.close()
        await process.ensure_stopped()

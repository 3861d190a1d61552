"""What a reload (SIGHUP) may change in a running gateway, and what needs a restart.

The old and the new configuration are compared field by field, every section and every upstream, so a
changed key is always either applied or named: a new field in ``config.py`` is reported as "needs a
restart" until someone makes it live here and in ``Gateway.reload``. Frozen dataclasses (an address, a
media source rule, TLS files) and lists are compared whole: they are one key to an administrator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from gbgw.gb28181.config import GatewayConfig, UpstreamConfig

LIVE = frozenset({"log.level", "sip.password", "sip.allowlist", "devices", "audit.path", "api.media_destinations"})
"""Read on every request (registrar, API) or applied by ``Gateway.reload`` itself."""

LIVE_PER_UPSTREAM = frozenset({"share", "channel_ids", "channel_id_rule", "channel_names"})
"""An upstream's :class:`~gbgw.gb28181.boundary.policy.SharePolicy`, updated in place."""


@dataclass(frozen=True, slots=True)
class ConfigChange:
    live: list[str]
    """Changed keys the running gateway takes over."""
    restart: list[str]
    """Changed keys that keep their running value until the next start."""


def compare(old: GatewayConfig, new: GatewayConfig) -> ConfigChange:
    live: list[str] = []
    restart: list[str] = []
    for key, per_upstream in changed_keys(old, new):
        (live if key in LIVE or per_upstream in LIVE_PER_UPSTREAM else restart).append(key)
    return ConfigChange(live, restart)


def changed_keys(old: GatewayConfig, new: GatewayConfig) -> Iterator[tuple[str, str]]:
    """Every changed key, with the upstream field it is ('' outside ``upstreams``)."""
    for f in dataclasses.fields(old):
        if f.name == "upstreams":
            yield from _upstreams(old.upstreams, new.upstreams)
        else:
            yield from ((key, "") for key in _section(f.name, getattr(old, f.name), getattr(new, f.name)))


def _upstreams(old: list[UpstreamConfig], new: list[UpstreamConfig]) -> Iterator[tuple[str, str]]:
    # By name, not index: removing the first upstream must not read as every other one having changed.
    before = {u.name: u for u in old}
    after = {u.name: u for u in new}
    for name in sorted(before.keys() - after.keys()):
        yield f"upstreams[{name}] (removed)", ""
    for name in sorted(after.keys() - before.keys()):
        yield f"upstreams[{name}] (added)", ""
    for name in sorted(before.keys() & after.keys()):
        for f in dataclasses.fields(UpstreamConfig):
            if getattr(before[name], f.name) != getattr(after[name], f.name):
                yield f"upstreams[{name}].{f.name}", f.name


def _section(key: str, old: object, new: object) -> Iterator[str]:
    if type(old) is type(new) and dataclasses.is_dataclass(old) and not _frozen(old):
        for f in dataclasses.fields(old):
            yield from _section(f"{key}.{f.name}", getattr(old, f.name), getattr(new, f.name))
    elif old != new:
        yield key


def _frozen(value: object) -> bool:
    params = getattr(value, "__dataclass_params__", None)
    return bool(params is not None and params.frozen)

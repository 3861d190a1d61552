"""What a reload (SIGHUP) may change in a running gateway, and what needs a restart.

The old and the new configuration are compared field by field, every section and every upstream, so a
changed key is always either applied or named: a new field in ``config.py`` is reported as "needs a
restart" until someone makes it live here and in ``Gateway.reload``. Frozen dataclasses (an address, a
media source rule, TLS files) and lists are compared whole: they are one key to an administrator.

Every upstream key is live: an upstream added is started, one removed is stopped (its sessions get a BYE,
it unregisters), one whose share rules or mappings alone changed keeps its link and has its policy updated
in place, and one with any other change is replaced (it unregisters and registers again). Which of these
each upstream needs is :func:`upstream_changes`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from gbgw.gb28181.config import GatewayConfig, UpstreamConfig

LIVE = frozenset({"log.level", "sip.password", "sip.allowlist", "devices", "audit.path", "api.media_destinations"})
"""Read on every request (registrar, API) or applied by ``Gateway.reload`` itself."""

LIVE_PER_UPSTREAM = frozenset({"share", "channel_ids", "channel_id_rule", "channel_names"})
"""An upstream's :class:`~gbgw.gb28181.boundary.policy.SharePolicy`, updated in place; any other changed
field of an upstream replaces its link."""
_ADDED = "(added)"
_REMOVED = "(removed)"


@dataclass(frozen=True, slots=True)
class UpstreamChanges:
    """What a reload does to the upstreams, in this order: removed, replaced, added, policy updated."""

    removed: list[str]
    """Names no longer configured, or now ``enabled: false``."""
    replaced: list[UpstreamConfig]
    """Changed beyond the share policy: unregistered and started again with the new entry."""
    added: list[UpstreamConfig]
    """New names, or entries now enabled."""
    policy: list[UpstreamConfig]
    """Only share rules or mappings changed: the link, its registration and its streams stay."""

    def __bool__(self) -> bool:
        return bool(self.removed or self.replaced or self.added or self.policy)


def upstream_changes(old: list[UpstreamConfig], new: list[UpstreamConfig]) -> UpstreamChanges:
    before = {u.name: u for u in old if u.enabled}
    after = {u.name: u for u in new if u.enabled}
    changes = UpstreamChanges(sorted(before.keys() - after.keys()), [],
                              [after[name] for name in sorted(after.keys() - before.keys())], [])
    for name in sorted(before.keys() & after.keys()):
        fields = {f.name for f in dataclasses.fields(UpstreamConfig)
                  if getattr(before[name], f.name) != getattr(after[name], f.name)}
        if fields - LIVE_PER_UPSTREAM:
            changes.replaced.append(after[name])
        elif fields:
            changes.policy.append(after[name])
    return changes


@dataclass(frozen=True, slots=True)
class ConfigChange:
    live: list[str]
    """Changed keys the running gateway takes over."""
    restart: list[str]
    """Changed keys that keep their running value until the next start."""
    upstreams: UpstreamChanges


def compare(old: GatewayConfig, new: GatewayConfig) -> ConfigChange:
    live: list[str] = []
    restart: list[str] = []
    for key, per_upstream in changed_keys(old, new):
        (live if key in LIVE or per_upstream else restart).append(key)
    return ConfigChange(live, restart, upstream_changes(old.upstreams, new.upstreams))


def changed_keys(old: GatewayConfig, new: GatewayConfig) -> Iterator[tuple[str, str]]:
    """Every changed key, with the upstream field it is ('' outside ``upstreams``; ``(added)`` and
    ``(removed)`` for a whole entry)."""
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
        yield f"upstreams[{name}] {_REMOVED}", _REMOVED
    for name in sorted(after.keys() - before.keys()):
        yield f"upstreams[{name}] {_ADDED}", _ADDED
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

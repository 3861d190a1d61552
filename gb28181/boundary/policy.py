"""Boundary policy toward one upper platform: which channels it sees, under which IDs and names, and
whether it may steer them.

Default deny: a channel crosses only if a ``share`` rule matches it. The decision is made on the
channel's own (device-side) ID, so mapping IDs for the upper never changes what is shared.
"""

from __future__ import annotations

from gbgw.gb28181.config import IdRule, ShareRule, UpstreamConfig


class SharePolicy:
    """The ``share``, ``channel_ids``, ``channel_id_rule`` and ``channel_names`` of one upstream."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.rules: tuple[ShareRule, ...] = ()
        self._up: dict[str, str] = {}
        self._down: dict[str, str] = {}
        self._rule: IdRule | None = None
        self._names: dict[str, str] = {}
        self._cache: dict[str, ShareRule | None] = {}
        self.update(config)

    def update(self, config: UpstreamConfig) -> None:
        """Take ``config``'s rules and mappings (a reload). Updated in place, not replaced: every feature of
        the link holds this object, so the next catalog answer, INVITE or query already follows them."""
        self.rules = config.share
        self._up = dict(config.channel_ids)
        self._down = {upper: local for local, upper in self._up.items()}
        self._rule = config.channel_id_rule
        self._names = dict(config.channel_names)
        self._cache = {}

    def rule_for(self, channel_id: str) -> ShareRule | None:
        """The first rule that shares ``channel_id`` (a device-side ID), or None when it is not shared."""
        try:
            return self._cache[channel_id]
        except KeyError:
            pass
        found = next((rule for rule in self.rules if rule.matches(channel_id)), None)
        if len(self._cache) > 200_000:
            self._cache.clear()
        self._cache[channel_id] = found
        return found

    def shared(self, channel_id: str) -> bool:
        return self.rule_for(channel_id) is not None

    def control_allowed(self, channel_id: str) -> bool:
        """Any matching rule with ``control: true`` allows PTZ/DeviceControl (rules are ORed, as for sharing)."""
        return any(rule.control and rule.matches(channel_id) for rule in self.rules)

    def to_upper(self, local_id: str) -> str:
        """The ID the upper knows a device-side channel by (unchanged unless a table entry or rule says)."""
        mapped = self._up.get(local_id)
        if mapped is not None:
            return mapped
        rule = self._rule
        if rule is not None and local_id.startswith(rule.source):
            return rule.target + local_id[len(rule.source):]
        return local_id

    def to_local(self, upper_id: str) -> str:
        """The device-side ID of what the upper calls ``upper_id`` (the inverse of :meth:`to_upper`).

        An ID the mapping would not produce is returned as the empty string, so the upper cannot reach a
        channel under its unmapped name when a mapping hides it.
        """
        local = self._down.get(upper_id)
        if local is not None:
            return local
        rule = self._rule
        candidate = upper_id
        if rule is not None and upper_id.startswith(rule.target):
            candidate = rule.source + upper_id[len(rule.target):]
        return candidate if self.to_upper(candidate) == upper_id else ""

    def name_for(self, local_id: str, name: str) -> str:
        return self._names.get(local_id, name)

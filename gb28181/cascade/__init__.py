"""The cascade: the gateway as a lower-level platform of upper (police) platforms.

- ``link``     :class:`UpstreamLink`, one per upper: registration, keepalive, subscriptions, routing
- ``catalog``  the shared catalog, its answers and change notifications; ``shared_count``
- ``media``    the upper's INVITEs relayed from the device leg to a police-side output
- ``queries``  queries and controls forwarded to devices, answers relayed back
- ``alarms``   alarms delivered upward through the durable outbox
- ``uppers``   :class:`Cascade`: the links and their features, built from explicit services
"""

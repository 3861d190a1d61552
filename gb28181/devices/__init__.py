"""Device side: the SIP transaction user behind the device-facing address, one module per job.

- ``router``         :class:`RequestRouter` — method → handler, 405 with Allow for the rest
- ``registrar``      :class:`DeviceRegistrar` — REGISTER: allowlist, digest, lockout, granted expiry, Date
                     (``gb_date``)
- ``messages``       :class:`DeviceMessages` — MESSAGE/NOTIFY intake: keepalives, Responses, alarms,
                     positions, catalog changes; ``add_alarm_listener``
- ``requests``       :class:`DeviceRequests` — SN, queries and their answers, ``send_manscdp``,
                     ``refresh_catalog``; :class:`AccessError`; ``apply_device_info``
- ``subscriptions``  :class:`CatalogSubscriptions` — catalog SUBSCRIBE and its refreshes
- ``bootstrap``      :class:`DeviceBootstrap` — DeviceInfo, Catalog, subscription after a registration
- ``timers``         :class:`DeviceTimers` — the periodic ``tick`` (expiry, catalog timeouts, lockouts,
                     subscription refreshes)
- ``catalog``        :class:`CatalogAssembler`, :class:`CatalogResult`, ``channel_from_item``
- ``lockout``        :class:`AuthLockout`
- ``side``           :class:`DeviceSide` — the services above built with their collaborators, for the daemon
- ``stored``         ``reply_once_stored`` — a 200 only once the change is committed
- ``control``        :class:`DeviceControl` — DeviceControl/DeviceConfig/queries answered with the Result
- ``device_subscriptions`` :class:`EventSubscriptions` — alarm and MobilePosition subscriptions
- ``channel_ids``    :class:`ChannelDirectory` — which devices report each channel ID
- ``diagnostics``    :class:`DeviceDiagnostics` — SIP traces, refused registrations, device warnings
- ``snapshots``      :class:`SnapshotCapture` — 2022 image capture and its uploads
- ``time_source``    :class:`DeviceTimeSource` — the time given to devices, the upper's offset, clock skew
"""

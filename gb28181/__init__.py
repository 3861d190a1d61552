"""GB/T 28181 composed from ``sip``, ``rtp`` and ``registry``; one sub-package per job.

- ``ids``        the 20-digit IDs of Annex D (centre, industry, type, network digit)
- ``config``     the configuration: keys, defaults, validation written for an administrator
- ``manscdp``    the MANSCDP codec (Annex A): documents, typed messages, builders, PTZ, paging
- ``devices``    the device side: registrar, MESSAGE/NOTIFY intake, requests to devices, catalog
- ``media``      live media sessions with devices; the failure ``Stage`` table
- ``recording``  recorded video: record search, playback/download offers, MANSRTSP
- ``boundary``   what may cross to the police side: share policy, ID mapping, audit
- ``cascade``    the gateway as a lower platform of upper (police) platforms
- ``observe``    metrics, logs, health, systemd notification
- ``app``        the daemon (the one place that wires everything), the CLI and the HTTP API
- ``tasks``      the background-task set services are given to start work in
"""

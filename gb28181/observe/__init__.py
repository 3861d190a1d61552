"""What an operator sees of the running gateway: ``metrics`` (Prometheus), ``logs`` (structlog set-up and
secret redaction), ``health`` (the components' ok/degraded states behind ``/api/health``), ``systemd``
(readiness and watchdog notification)."""

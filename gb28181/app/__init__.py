"""The application: ``daemon`` (the only place that builds and wires the services), ``cli`` (the
``gb28181-gateway`` command) and ``api`` (the HTTP API, one module per resource)."""

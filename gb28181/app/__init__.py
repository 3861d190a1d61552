"""The application: daemon, CLI, HTTP API."""

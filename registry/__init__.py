"""Devices, channels and sessions, and the storage backends that keep them across restarts."""

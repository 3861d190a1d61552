"""Simulated GB/T 28181 devices: `config` (what they are), `devices` (their SIP side), `answers` (what they
answer to queries), `media` (calls and PS over RTP), `cli` (the ``gb28181-gateway simulate`` command)."""

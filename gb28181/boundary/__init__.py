"""The security boundary: ``policy`` (what is shared with each upper platform, and the ID/name mapping both
ways) and ``audit`` (the audit log of everything that crosses, which never raises into its caller)."""

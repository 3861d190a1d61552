"""Device side: the SIP transaction user behind the device-facing address."""

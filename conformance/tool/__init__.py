"""``gb28181-conformance``: a vendor runs the GB/T 28181 certification sheets against a device (and, in
later modes, a platform) and gets, per sheet row, pass, fail (with the message that broke it and the
clause), skip (with why) or manual, in JSON, JUnit XML and HTML.

`sheet` (the rows and their checks), `registrar` (the tool's registrar, sans-IO), `platform` (the
tool's SIP side), `stream` (the PS/RTP stream checks, sans-IO), `device_items` (one function per
check), `runner` (waiting, budgets, progress), `report`, `cli`. It imports only the SIP stack, the RTP/PS
code and the MANSCDP codec of the gateway.
"""

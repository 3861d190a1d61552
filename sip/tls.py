"""TLS contexts for SIP over TLS (RFC 3261 §26.2, TLS 1.2/1.3 through Python's ssl).

The transport only needs two contexts: one to listen with (our certificate and key) and one to dial
peers with (the CA that signs them, and our certificate when the peer asks for one). Building them is
kept here so that a configuration reader can check the files before anything listens, and say which
file is wrong: :class:`TlsFileError` names its role (``cert``, ``key``, ``ca``).
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsFileError(ValueError):
    """A certificate, key or CA file that is missing or does not load."""

    def __init__(self, role: str, path: str, reason: str) -> None:
        self.role = role
        self.path = path
        self.reason = reason
        super().__init__(f"TLS {role} file {path!r}: {reason}")


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A context to accept TLS connections with ``cert`` (PEM, chain allowed) and its private ``key``.

    Client certificates are not asked for: devices authenticate with digest over the TLS channel.
    """
    _check_file("cert", cert)
    _check_file("key", key)
    _check_certificate("cert", cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        # The certificate alone loaded above, so what fails now is the key or the pair.
        raise TlsFileError("key", key, f"not a private key matching the certificate ({exc.reason or exc})") from exc
    except OSError as exc:
        raise TlsFileError("key", key, exc.strerror or str(exc)) from exc
    return context


def client_context(
    ca_file: str | None = None, cert: str | None = None, key: str | None = None, *, check_hostname: bool = True
) -> ssl.SSLContext:
    """A context to dial TLS peers: verified against ``ca_file`` (the system store without one).

    ``cert``/``key`` are our client certificate, for an upper platform that asks for one. GB/T 28181
    peers are usually dialled by IP address; Python checks an IP against the certificate's IP SANs.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    if ca_file:
        _check_file("ca", ca_file)
        try:
            context.load_verify_locations(cafile=ca_file)
        except ssl.SSLError as exc:
            raise TlsFileError("ca", ca_file, f"no PEM certificate in it ({exc.reason or exc})") from exc
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert:
        _check_file("cert", cert)
        _check_certificate("cert", cert)
        try:
            context.load_cert_chain(cert, key or None)
        except (ssl.SSLError, OSError) as exc:
            raise TlsFileError("key", key or cert, f"not a private key matching the certificate ({exc})") from exc
    return context


def _check_file(role: str, path: str) -> None:
    file = Path(path)
    if not file.is_file():
        raise TlsFileError(role, path, "no such file")
    try:
        with file.open("rb"):
            pass
    except OSError as exc:
        raise TlsFileError(role, path, exc.strerror or str(exc)) from exc


def _check_certificate(role: str, path: str) -> None:
    """Load the certificate on its own, so that a bad one is not reported as a bad key."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise TlsFileError(role, path, f"no PEM certificate in it ({exc.reason or exc})") from exc

"""The mutual-TLS listener: device client certificates verified against a configured CA.

A handshake without a certificate signed by ``mtls_ca`` is refused by OpenSSL before any
HTTP is read. Once in, the certificate's identity (its subject common name, or else its
first DNS subject-alternative name) must be the device id in the path; ``X-ApiKey`` is
still required, as on the plain listener (reference B.2).
"""

from __future__ import annotations

import ssl
from typing import Any

from aiohttp import web

from tether.settings.opengate import OpenGateSettings


def server_context(settings: OpenGateSettings) -> ssl.SSLContext:
    """TLS server context that requires a client certificate signed by ``mtls_ca``."""
    if settings.mtls_cert is None or settings.mtls_key is None or settings.mtls_ca is None:
        raise ValueError(
            "opengate.mtls_port needs opengate.mtls_cert, opengate.mtls_key and opengate.mtls_ca"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(settings.mtls_ca))
    context.load_cert_chain(settings.mtls_cert, settings.mtls_key)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def identity(cert: dict[str, Any] | None) -> str | None:
    """Common name of a peer certificate (as ``getpeercert()`` gives it), else its DNS SAN."""
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS":
            return str(value)
    return None


def peer_identity(request: web.Request) -> str | None:
    """The verified client certificate's identity on an mTLS connection, else None."""
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    return identity(ssl_object.getpeercert())

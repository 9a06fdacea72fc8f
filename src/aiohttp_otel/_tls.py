"""TLS facts of a connection, as semantic-convention attributes.

``tls.cipher`` must be the IANA name. OpenSSL already uses it for TLS 1.3 suites; for TLS 1.2
its own names are mapped here (the suites a current OpenSSL offers by default).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.util.types import AttributeValue

_IANA = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-RSA-AES128-GCM-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305": "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-RSA-CHACHA20-POLY1305": "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "DHE-RSA-AES128-GCM-SHA256": "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "DHE-RSA-AES256-GCM-SHA384": "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "DHE-RSA-CHACHA20-POLY1305": "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "ECDHE-ECDSA-AES128-SHA256": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "ECDHE-ECDSA-AES256-SHA384": "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    "ECDHE-RSA-AES128-SHA256": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    "ECDHE-RSA-AES256-SHA384": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    "ECDHE-ECDSA-AES128-SHA": "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "ECDHE-ECDSA-AES256-SHA": "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "ECDHE-RSA-AES128-SHA": "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "ECDHE-RSA-AES256-SHA": "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "AES128-GCM-SHA256": "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "AES256-GCM-SHA384": "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "AES128-SHA256": "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "AES256-SHA256": "TLS_RSA_WITH_AES_256_CBC_SHA256",
    "AES128-SHA": "TLS_RSA_WITH_AES_128_CBC_SHA",
    "AES256-SHA": "TLS_RSA_WITH_AES_256_CBC_SHA",
}


def iana_cipher(openssl_name: str) -> str | None:
    """The IANA name of a cipher suite, or None when it is not known."""
    if openssl_name.startswith("TLS_"):
        return openssl_name
    return _IANA.get(openssl_name)


def tls_attributes(ssl_object: Any) -> dict[str, AttributeValue]:
    """``tls.*`` attributes from an ``ssl.SSLObject`` after its handshake."""
    out: dict[str, AttributeValue] = {}
    version = ssl_object.version()  # "TLSv1.3"
    if version:
        name, _, number = version.partition("v")
        out["tls.protocol.name"] = name.lower()
        if number:
            out["tls.protocol.version"] = number
    cipher = ssl_object.cipher()
    if cipher:
        iana = iana_cipher(cipher[0])
        if iana is not None:
            out["tls.cipher"] = iana
    out["tls.resumed"] = bool(ssl_object.session_reused)
    alpn = ssl_object.selected_alpn_protocol()
    if alpn:
        out["tls.next_protocol"] = alpn
    return out

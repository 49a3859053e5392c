"""The certificate chain of a TLS Certificate message: fingerprints, names, hostname match.

Zeek's ssl.log carries ``cert_chain_fps`` (SHA-256 of each DER certificate), the leaf's
``subject``/``issuer`` (RFC 2253 order, as OpenSSL prints them) and ``sni_matches_cert``
(the SNI against the leaf's DNS names and common name, wildcards allowed in the left-most
label). Certificates are parsed with ``cryptography`` once per TLS 1.0-1.2 handshake;
TLS 1.3 sends them encrypted, so nothing here runs for it.
"""

from __future__ import annotations

import hashlib
import warnings

import attrs
from cryptography import utils as crypto_utils
from cryptography import x509
from cryptography.x509.oid import NameOID

#: what cryptography raises on a certificate it cannot decode
CERT_ERRORS = (ValueError, TypeError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


@attrs.frozen(slots=True)
class CertSummary:
    """What the ``ssl`` event reports of one leaf certificate."""

    subject: str | None
    issuer: str | None
    names: tuple[str, ...]  # DNS subject alternative names, then common names (lower case)


def parse_certificate_list(body: bytes) -> tuple[bytes, ...]:
    """The DER certificates of a TLS 1.0-1.2 Certificate message body, in chain order."""
    if len(body) < 3:
        raise ValueError("Certificate message too short")
    total = int.from_bytes(body[0:3], "big")
    end = min(3 + total, len(body))
    off = 3
    certs = []
    while off + 3 <= end:
        length = int.from_bytes(body[off : off + 3], "big")
        off += 3
        if off + length > end:
            raise ValueError("certificate overruns its message")
        certs.append(body[off : off + length])
        off += length
    return tuple(certs)


def fingerprint(der: bytes) -> str:
    """SHA-256 hex of a DER certificate: Zeek's x509 fingerprint."""
    return hashlib.sha256(der).hexdigest()


def summarize(der: bytes) -> CertSummary | None:
    """Subject, issuer and host names of a DER certificate; None if it does not decode."""
    try:
        with warnings.catch_warnings():
            # a negative serial number etc. is the sender's problem, not a log line of ours
            warnings.simplefilter("ignore", crypto_utils.CryptographyDeprecationWarning)
            cert = x509.load_der_x509_certificate(der)
        subject = cert.subject.rfc4514_string()
        issuer = cert.issuer.rfc4514_string()
        names: list[str] = []
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names.extend(name.lower() for name in san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            pass
        for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            if isinstance(attribute.value, str):
                names.append(attribute.value.lower())
        return CertSummary(subject, issuer, tuple(names))
    except CERT_ERRORS:
        return None


def _name_matches(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        head, dot, rest = host.partition(".")
        return bool(head) and bool(dot) and rest == pattern[2:] and "." in rest
    return False


def hostname_matches(summary: CertSummary, hostname: str) -> bool:
    """Whether ``hostname`` (an SNI) is one the certificate names (Zeek's x509_check_cert_hostname)."""
    host = hostname.lower().rstrip(".")
    return any(_name_matches(name, host) for name in summary.names)


__all__ = ["CERT_ERRORS", "CertSummary", "fingerprint", "hostname_matches", "parse_certificate_list", "summarize"]

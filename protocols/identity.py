"""Certificate checks for probe and Core identities: bytes and values in, verdicts out.

A probe certificate is an X.509 certificate issued by the Core's CA that binds a probe id
(the subject's common name) to an Ed25519 public key, the key that signs the probe's
events. Every check takes the time as an argument (unix seconds) and raises
:class:`CertificateRejected` whose ``reason`` is a short machine name used as a metric
label and, at the Core, as the protocol error code sent back to the probe.

Reading files, clocks and sockets belongs to the callers (probe/identity.py, probe/pki.py,
probe/core/auth.py).
"""

from __future__ import annotations

import datetime
import hashlib
import re
import ssl
from typing import Iterable, Sequence

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PROBE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# reasons (also the Core's error codes for a refused hello: docs/protocol.md)
BAD_CERTIFICATE = "bad_certificate"
UNKNOWN_CA = "unknown_ca"
EXPIRED = "cert_expired"
NOT_YET_VALID = "cert_not_yet_valid"
REVOKED = "cert_revoked"
PROBE_ID_MISMATCH = "probe_id_mismatch"
KEY_MISMATCH = "key_mismatch"
WRONG_PURPOSE = "wrong_purpose"

#: every reason a certificate can be refused for
REASONS = frozenset({BAD_CERTIFICATE, UNKNOWN_CA, EXPIRED, NOT_YET_VALID, REVOKED, PROBE_ID_MISMATCH, KEY_MISMATCH, WRONG_PURPOSE})

PROBE = "probe"  # purpose: TLS client + event signing
CORE = "core"  # purpose: TLS server


class CertificateRejected(ValueError):
    """A certificate (or revocation list) that cannot be accepted, and why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@attrs.frozen(slots=True)
class CertificateInfo:
    """What the rest of the probe needs to know of one certificate."""

    subject: str  # the common name: the probe id of a probe certificate
    serial: int
    issuer: str
    not_before: float
    not_after: float
    public_key: bytes  # raw Ed25519 public key (32 bytes); b"" for another key type
    fingerprint: str  # sha256 of the DER encoding, hex
    is_ca: bool
    purposes: tuple[str, ...]  # "client", "server" from the extended key usage
    hosts: tuple[str, ...]  # subject alternative names (DNS names and IP addresses)
    der: bytes = attrs.field(repr=False)

    def as_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "serial": self.serial,
            "issuer": self.issuer,
            "not_before": self.not_before,
            "not_after": self.not_after,
            "public_key": self.public_key.hex(),
            "fingerprint": self.fingerprint,
            "is_ca": self.is_ca,
            "purposes": list(self.purposes),
            "hosts": list(self.hosts),
        }


@attrs.frozen(slots=True)
class RevocationList:
    """The serial numbers a CA has revoked, from a CRL whose signature was checked."""

    serials: frozenset[int]
    issuer: str
    this_update: float
    next_update: float | None

    def stale(self, now: float) -> bool:
        """Past its next update: still used (revocations only grow) but worth a warning."""
        return self.next_update is not None and now > self.next_update


EMPTY_REVOCATIONS = RevocationList(frozenset(), "", 0.0, None)


# --- parsing ---------------------------------------------------------------------------


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in ``data`` (PEM, possibly several, or one DER)."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CertificateRejected(BAD_CERTIFICATE, f"not an X.509 certificate: {exc}") from None
    if not certs:
        raise CertificateRejected(BAD_CERTIFICATE, "no certificate found")
    return certs


def load_certificate(data: bytes) -> x509.Certificate:
    """The one certificate in ``data`` (PEM or DER)."""
    certs = load_certificates(data)
    if len(certs) != 1:
        raise CertificateRejected(BAD_CERTIFICATE, f"expected one certificate, found {len(certs)}")
    return certs[0]


def _common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = values[0].value if values else ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _extension(cert: x509.Certificate, kind: type) -> object | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def certificate_info(cert: x509.Certificate) -> CertificateInfo:
    """The fields of ``cert`` the probe and the Core use."""
    key = cert.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) if isinstance(key, ed25519.Ed25519PublicKey) else b""
    constraints = _extension(cert, x509.BasicConstraints)
    usage = _extension(cert, x509.ExtendedKeyUsage)
    purposes = []
    if usage is not None:
        if ExtendedKeyUsageOID.CLIENT_AUTH in usage:
            purposes.append("client")
        if ExtendedKeyUsageOID.SERVER_AUTH in usage:
            purposes.append("server")
    names = _extension(cert, x509.SubjectAlternativeName)
    hosts: list[str] = []
    if names is not None:
        hosts = [str(v) for v in names.get_values_for_type(x509.DNSName)]
        hosts += [str(v) for v in names.get_values_for_type(x509.IPAddress)]
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertificateInfo(
        subject=_common_name(cert.subject),
        serial=cert.serial_number,
        issuer=_common_name(cert.issuer),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        public_key=raw,
        fingerprint=hashlib.sha256(der).hexdigest(),
        is_ca=bool(constraints is not None and constraints.ca),
        purposes=tuple(purposes),
        hosts=tuple(hosts),
        der=der,
    )


# --- single checks ----------------------------------------------------------------------


def check_validity(info: CertificateInfo, now: float, what: str = "certificate") -> None:
    """Inside its validity window at ``now``."""
    if now < info.not_before:
        raise CertificateRejected(NOT_YET_VALID, f"{what} {info.subject!r} is not valid before {_iso(info.not_before)}")
    if now > info.not_after:
        raise CertificateRejected(EXPIRED, f"{what} {info.subject!r} expired at {_iso(info.not_after)}")


def check_issued_by(cert: x509.Certificate, cas: Sequence[x509.Certificate], now: float) -> x509.Certificate:
    """Signed by one of ``cas`` (a CA certificate valid at ``now``); returns that CA."""
    for ca in cas:
        if ca.subject != cert.issuer:
            continue
        ca_info = certificate_info(ca)
        if not ca_info.is_ca:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        check_validity(ca_info, now, "CA certificate")
        return ca
    issuer = _common_name(cert.issuer)
    raise CertificateRejected(UNKNOWN_CA, f"certificate {_common_name(cert.subject)!r} was not issued by a trusted CA (issuer {issuer!r})")


def check_not_revoked(info: CertificateInfo, revocations: RevocationList) -> None:
    if info.serial in revocations.serials:
        raise CertificateRejected(REVOKED, f"certificate {info.subject!r} (serial {info.serial:x}) is revoked")


def check_purpose(info: CertificateInfo, purpose: str) -> None:
    """A probe certificate: client use and an Ed25519 key; a Core certificate: server use."""
    if info.is_ca:
        raise CertificateRejected(WRONG_PURPOSE, f"certificate {info.subject!r} is a CA certificate")
    if purpose == PROBE:
        if "client" not in info.purposes:
            raise CertificateRejected(WRONG_PURPOSE, f"certificate {info.subject!r} is not for a probe (no clientAuth usage)")
        if len(info.public_key) != 32:
            raise CertificateRejected(WRONG_PURPOSE, f"certificate {info.subject!r} does not hold an Ed25519 key")
    elif "server" not in info.purposes:
        raise CertificateRejected(WRONG_PURPOSE, f"certificate {info.subject!r} is not for a Core (no serverAuth usage)")


def check_probe_id(info: CertificateInfo, probe_id: str) -> None:
    if info.subject != probe_id:
        raise CertificateRejected(PROBE_ID_MISMATCH, f"certificate is for probe {info.subject!r}, not {probe_id!r}")


def check_key_match(info: CertificateInfo, public_key: bytes) -> None:
    """The certificate holds ``public_key`` (raw Ed25519): the key that signs is the one certified."""
    if info.public_key != public_key:
        raise CertificateRejected(KEY_MISMATCH, f"certificate {info.subject!r} does not hold this probe's key")


# --- whole verdicts ----------------------------------------------------------------------


def verify_certificate(
    cert_data: bytes,
    ca_data: bytes,
    now: float,
    *,
    purpose: str = PROBE,
    probe_id: str | None = None,
    public_key: bytes | None = None,
    revocations: RevocationList = EMPTY_REVOCATIONS,
) -> CertificateInfo:
    """Every check on one certificate, most telling first: issuer, revocation, time, use, id, key."""
    cert = load_certificate(cert_data)
    check_issued_by(cert, load_certificates(ca_data), now)
    info = certificate_info(cert)
    check_not_revoked(info, revocations)
    check_validity(info, now)
    check_purpose(info, purpose)
    if probe_id is not None:
        check_probe_id(info, probe_id)
    if public_key is not None:
        check_key_match(info, public_key)
    return info


def load_revocation_list(crl_data: bytes, ca_data: bytes) -> RevocationList:
    """The revoked serials of a CRL (PEM or DER) whose signature by one of the CAs checks."""
    try:
        crl = x509.load_pem_x509_crl(crl_data) if b"-----BEGIN" in crl_data else x509.load_der_x509_crl(crl_data)
    except ValueError as exc:
        raise CertificateRejected(BAD_CERTIFICATE, f"not an X.509 revocation list: {exc}") from None
    for ca in load_certificates(ca_data):
        if ca.subject == crl.issuer and crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
            break
    else:
        raise CertificateRejected(UNKNOWN_CA, "revocation list is not signed by the trusted CA")
    next_update = crl.next_update_utc
    return RevocationList(
        frozenset(entry.serial_number for entry in crl),
        _common_name(crl.issuer),
        crl.last_update_utc.timestamp(),
        next_update.timestamp() if next_update is not None else None,
    )


def public_key_of(private_pem: bytes) -> bytes:
    """The raw Ed25519 public key of a PKCS#8 PEM private key."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("not an Ed25519 key")
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- TLS refusals ----------------------------------------------------------------------

#: OpenSSL alert reasons a TLS server sends when it refuses the client's certificate
_ALERT_REASONS = {
    "TLSV1_ALERT_UNKNOWN_CA": UNKNOWN_CA,
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": EXPIRED,
    "SSLV3_ALERT_CERTIFICATE_REVOKED": REVOKED,
    "SSLV3_ALERT_BAD_CERTIFICATE": BAD_CERTIFICATE,
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": BAD_CERTIFICATE,
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": WRONG_PURPOSE,
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": BAD_CERTIFICATE,
    "TLSV1_ALERT_ACCESS_DENIED": BAD_CERTIFICATE,
}

#: OpenSSL X509 verify codes -> reasons (the server's view of a refused client certificate)
_VERIFY_CODES = {2: UNKNOWN_CA, 18: UNKNOWN_CA, 19: UNKNOWN_CA, 20: UNKNOWN_CA, 21: UNKNOWN_CA, 9: NOT_YET_VALID, 10: EXPIRED, 23: REVOKED, 26: WRONG_PURPOSE}


def _chain(exc: BaseException | None) -> Iterable[BaseException]:
    seen = 0
    while exc is not None and seen < 8:
        yield exc
        exc = exc.__cause__ or exc.__context__
        seen += 1


def tls_refusal_reason(exc: BaseException) -> str | None:
    """The reason when ``exc`` (or what caused it) is a TLS alert refusing our certificate."""
    for item in _chain(exc):
        if isinstance(item, ssl.SSLError) and not isinstance(item, ssl.SSLCertVerificationError):
            reason = _ALERT_REASONS.get(getattr(item, "reason", None) or "")
            if reason is not None:
                return reason
    return None


def tls_peer_verify_failure(exc: BaseException) -> str | None:
    """The message when ``exc`` (or its cause) is our own check of the peer's certificate failing."""
    for item in _chain(exc):
        if isinstance(item, ssl.SSLCertVerificationError):
            return str(item.verify_message or item)
    return None


def verify_code_reason(code: int) -> str:
    """The reason for an OpenSSL X509 verify code (a server refusing a client certificate)."""
    return _VERIFY_CODES.get(code, BAD_CERTIFICATE)


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

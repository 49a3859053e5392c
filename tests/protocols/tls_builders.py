"""Byte builders for TLS test traffic: records, handshake messages, hellos, certificates.

Tests compose real wire bytes from these (rather than mocking the parser's input) so that
the parser sees exactly what a client and server would send.
"""

from __future__ import annotations

import datetime
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols.events.base import ConnId

HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


def u8(v: int) -> bytes:
    return bytes((v,))


def u16(v: int) -> bytes:
    return struct.pack("!H", v)


def u24(v: int) -> bytes:
    return v.to_bytes(3, "big")


def vec8(data: bytes) -> bytes:
    return u8(len(data)) + data


def vec16(data: bytes) -> bytes:
    return u16(len(data)) + data


def u16s(values) -> bytes:
    return b"".join(u16(v) for v in values)


def record(content_type: int, payload: bytes, version: int = 0x0303) -> bytes:
    return u8(content_type) + u16(version) + u16(len(payload)) + payload


def handshake(msg_type: int, body: bytes) -> bytes:
    return u8(msg_type) + u24(len(body)) + body


def ext(ext_type: int, data: bytes = b"") -> bytes:
    return u16(ext_type) + vec16(data)


def sni_ext(*names: str) -> bytes:
    entries = b"".join(u8(0) + vec16(n.encode()) for n in names)
    return ext(0, vec16(entries))


def alpn_ext(*names: bytes) -> bytes:
    return ext(16, vec16(b"".join(vec8(n) for n in names)))


def client_hello(
    ciphers,
    extensions: bytes = b"",
    version: int = 0x0303,
    session_id: bytes = b"",
    with_extensions: bool = True,
) -> bytes:
    body = u16(version) + bytes(32) + vec8(session_id) + vec16(u16s(ciphers)) + vec8(b"\x00")
    if with_extensions:
        body += vec16(extensions)
    return handshake(1, body)


def server_hello(
    cipher: int,
    extensions: bytes = b"",
    version: int = 0x0303,
    session_id: bytes = b"",
    random: bytes = bytes(range(32)),
) -> bytes:
    body = u16(version) + random + vec8(session_id) + u16(cipher) + b"\x00" + vec16(extensions)
    return handshake(2, body)


def certificate_msg(*ders: bytes) -> bytes:
    return handshake(11, u24(sum(3 + len(d) for d in ders)) + b"".join(u24(len(d)) + d for d in ders))


def ecdhe_server_key_exchange(curve: int) -> bytes:
    return handshake(12, u8(3) + u16(curve) + vec8(b"\x04" + bytes(64)) + u16(0x0403) + vec16(bytes(70)))


def make_certificate(common_name: str, dns_names: tuple[str, ...] = ()) -> bytes:
    """A self-signed DER certificate (EC P-256) with the given CN and DNS SANs."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Probe Tests")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
    )
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class Context:
    """A FlowContext that records what the parser reports (the engine's side, in tests)."""

    def __init__(self, proto: str = "tcp") -> None:
        self.uid = "CtestUid"
        self.id = ConnId("10.0.0.1", 50000, "10.0.0.2", 443)
        self.proto = proto
        self.events: list = []
        self.weirds: list[tuple[str, str | None]] = []
        self.confirmed: list[str] = []
        self.violations: list[str] = []

    def emit(self, event) -> None:
        self.events.append(event)

    def weird(self, name: str, ts: float, addl: str | None = None) -> None:
        self.weirds.append((name, addl))

    def confirm(self, service: str) -> None:
        self.confirmed.append(service)

    def violation(self, reason: str, ts: float) -> None:
        self.violations.append(reason)

"""The probe's small PKI on disk: a CA, probe and Core certificates, a revocation list.

A CA directory holds ``ca.key`` (mode 0600), ``ca.pem``, ``crl.pem`` (the revocation list
the Core reloads) and ``issued.jsonl`` (one line per certificate issued, for the
operator). Every key is Ed25519 in PKCS#8 PEM, written 0600 and refused when group- or
world-readable. The checks themselves are pure and live in protocols/identity.py.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import time
from typing import Iterable

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from probe.identity import read_private_key, write_private_file
from protocols.identity import PROBE_ID, CertificateInfo, certificate_info, load_certificate, load_revocation_list

#: certificates start this long before "now", so that a slightly slow clock accepts them
CLOCK_SLACK = 300.0
CRL_DAYS = 30


class PkiError(Exception):
    """A PKI command that cannot be done (missing CA, file already there, bad name)."""


@attrs.frozen
class Issued:
    key_path: str
    cert_path: str
    info: CertificateInfo


def _utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_public(path: str, data: bytes, replace: bool) -> None:
    if os.path.exists(path) and not replace:
        raise PkiError(f"{path} already exists (use --force to replace it)")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _pem_key(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _new_key(path: str) -> ed25519.Ed25519PrivateKey:
    if os.path.exists(path):
        raise PkiError(f"{path} already exists: give it with --key to reuse it, or choose another --out")
    key = ed25519.Ed25519PrivateKey.generate()
    write_private_file(path, _pem_key(key))
    return key


def _load_key(path: str) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(bytes(read_private_key(path)))


def ca_paths(ca_dir: str) -> tuple[str, str, str]:
    """(key, certificate, revocation list) paths of a CA directory."""
    return os.path.join(ca_dir, "ca.key"), os.path.join(ca_dir, "ca.pem"), os.path.join(ca_dir, "crl.pem")


def init_ca(out_dir: str, name: str = "probe-ca", days: int = 3650, now: float | None = None) -> CertificateInfo:
    """A new self-signed Ed25519 CA in ``out_dir`` with an empty revocation list."""
    now = time.time() if now is None else now
    key_path, cert_path, crl_path = ca_paths(out_dir)
    if os.path.exists(cert_path) or os.path.exists(key_path):
        raise PkiError(f"{out_dir} already holds a CA")
    os.makedirs(out_dir, mode=0o700, exist_ok=True)
    key = _new_key(key_path)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - CLOCK_SLACK))
        .not_valid_after(_utc(now + days * 86400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, None)
    )
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM), replace=False)
    _write_crl(out_dir, key, cert, [], now)
    return certificate_info(cert)


def _load_ca(ca_dir: str) -> tuple[ed25519.Ed25519PrivateKey, x509.Certificate]:
    key_path, cert_path, _ = ca_paths(ca_dir)
    if not os.path.isfile(cert_path):
        raise PkiError(f"no CA in {ca_dir} (expected {cert_path}; create one with pki init-ca)")
    with open(cert_path, "rb") as fh:
        cert = load_certificate(fh.read())
    return _load_key(key_path), cert


def _issue(
    ca_dir: str,
    common_name: str,
    days: int,
    key_path: str,
    cert_path: str,
    *,
    usage: x509.ObjectIdentifier,
    hosts: Iterable[str] = (),
    reuse_key: bool,
    replace: bool,
    now: float | None,
) -> Issued:
    now = time.time() if now is None else now
    if days <= 0:
        raise PkiError("--days must be greater than 0")
    ca_key, ca_cert = _load_ca(ca_dir)
    if os.path.exists(cert_path) and not replace:
        raise PkiError(f"{cert_path} already exists (use --force to replace it)")
    key = _load_key(key_path) if reuse_key else _new_key(key_path)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_utc(now - CLOCK_SLACK))
        .not_valid_after(_utc(now + days * 86400))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, None)
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM), replace=True)
    info = certificate_info(cert)
    _log_issued(ca_dir, info, now)
    return Issued(key_path, cert_path, info)


def issue_probe(
    ca_dir: str,
    probe_id: str,
    days: int,
    out_dir: str,
    *,
    key_path: str | None = None,
    replace: bool = False,
    now: float | None = None,
) -> Issued:
    """A probe certificate binding ``probe_id`` to a new key (or the key at ``key_path``)."""
    if not PROBE_ID.match(probe_id):
        raise PkiError(f"invalid probe id {probe_id!r}: letters, digits, '.', '_' and '-', at most 64")
    os.makedirs(out_dir, exist_ok=True)
    return _issue(
        ca_dir, probe_id, days,
        key_path or os.path.join(out_dir, probe_id + ".key"),
        os.path.join(out_dir, probe_id + ".pem"),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH, reuse_key=key_path is not None, replace=replace, now=now,
    )


def issue_core(
    ca_dir: str,
    name: str,
    hosts: list[str],
    days: int,
    out_dir: str,
    *,
    key_path: str | None = None,
    replace: bool = False,
    now: float | None = None,
) -> Issued:
    """A Core (TLS server) certificate for ``hosts`` (DNS names or IP addresses)."""
    if not hosts:
        raise PkiError("a Core certificate needs at least one --host (the name or address probes connect to)")
    os.makedirs(out_dir, exist_ok=True)
    return _issue(
        ca_dir, name, days,
        key_path or os.path.join(out_dir, name + ".key"),
        os.path.join(out_dir, name + ".pem"),
        usage=ExtendedKeyUsageOID.SERVER_AUTH, hosts=hosts, reuse_key=key_path is not None, replace=replace, now=now,
    )


def _log_issued(ca_dir: str, info: CertificateInfo, now: float) -> None:
    line = {"issued_at": now, "subject": info.subject, "serial": f"{info.serial:x}", "not_after": info.not_after, "fingerprint": info.fingerprint}
    with open(os.path.join(ca_dir, "issued.jsonl"), "a") as fh:
        fh.write(json.dumps(line) + "\n")


def _write_crl(ca_dir: str, key: ed25519.Ed25519PrivateKey, ca_cert: x509.Certificate, revoked: list[tuple[int, float]], now: float) -> str:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(_utc(now - CLOCK_SLACK))
        .next_update(_utc(now + CRL_DAYS * 86400))
    )
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(_utc(when)).build()
        )
    crl = builder.sign(key, None)
    path = ca_paths(ca_dir)[2]
    _write_public(path, crl.public_bytes(serialization.Encoding.PEM), replace=True)
    return path


def revoke(ca_dir: str, serials: list[int], now: float | None = None) -> tuple[str, int]:
    """Add ``serials`` to the CA's revocation list; return (its path, how many it lists)."""
    now = time.time() if now is None else now
    key, ca_cert = _load_ca(ca_dir)
    crl_path = ca_paths(ca_dir)[2]
    revoked: dict[int, float] = {}
    if os.path.exists(crl_path):
        with open(crl_path, "rb") as fh:
            data = fh.read()
        crl = x509.load_pem_x509_crl(data)
        load_revocation_list(data, ca_cert.public_bytes(serialization.Encoding.PEM))  # refuses a foreign CRL
        revoked = {entry.serial_number: entry.revocation_date_utc.timestamp() for entry in crl}
    for serial in serials:
        revoked.setdefault(serial, now)
    return _write_crl(ca_dir, key, ca_cert, sorted(revoked.items()), now), len(revoked)

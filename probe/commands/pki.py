"""``python -m probe pki init-ca|issue|issue-core|revoke|show|verify``: the probe's PKI."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import time
from typing import Iterator

from probe.cli import EXIT_FAILED, EXIT_OK, Parser, UsageError


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None


@contextlib.contextmanager
def _pki_errors() -> Iterator[None]:
    """A PKI problem (missing CA, exposed key, bad certificate) is one line and exit code 2."""
    from probe.pki import PkiError
    from protocols.errors import IdentityError
    from protocols.identity import CertificateRejected

    try:
        yield
    except (PkiError, IdentityError, CertificateRejected) as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"not usable: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{exc.filename or ''}: {exc.strerror}") from None


def cmd_init_ca(args: argparse.Namespace) -> int:
    from probe.pki import init_ca

    with _pki_errors():
        info = init_ca(args.out, args.name, args.days)
    print(f"CA {info.subject!r} in {args.out}: ca.pem, ca.key (0600), crl.pem; valid until {_iso(info.not_after)}")
    return EXIT_OK


def cmd_issue(args: argparse.Namespace) -> int:
    from probe.pki import issue_probe

    with _pki_errors():
        issued = issue_probe(args.ca, args.probe_id, args.days, args.out, key_path=args.key, replace=args.force)
    info = issued.info
    print(f"probe {info.subject}: certificate {issued.cert_path} (serial {info.serial:x}, valid until {_iso(info.not_after)}), key {issued.key_path}")
    return EXIT_OK


def cmd_issue_core(args: argparse.Namespace) -> int:
    from probe.pki import issue_core

    with _pki_errors():
        issued = issue_core(args.ca, args.name, args.host, args.days, args.out, key_path=args.key, replace=args.force)
    info = issued.info
    print(
        f"Core {info.subject}: certificate {issued.cert_path} for {', '.join(info.hosts)} "
        f"(serial {info.serial:x}, valid until {_iso(info.not_after)}), key {issued.key_path}"
    )
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    from probe.pki import revoke
    from protocols.identity import certificate_info, load_certificate

    serials = []
    for item in args.cert or []:
        with _pki_errors():
            serials.append(certificate_info(load_certificate(_read(item))).serial)
    for item in args.serial or []:
        try:
            serials.append(int(item, 16))
        except ValueError:
            raise UsageError(f"--serial {item!r}: expected a hexadecimal serial number (as pki show prints it)") from None
    if not serials:
        raise UsageError("give --cert FILE or --serial HEX")
    with _pki_errors():
        path, count = revoke(args.ca, serials)
    print(f"revoked {', '.join(f'{s:x}' for s in serials)}; {path} now lists {count}; a Core using it reloads it within a second")
    return EXIT_OK


def _show_certificate(data: bytes, as_json: bool) -> None:
    from protocols.identity import certificate_info, load_certificates

    for cert in load_certificates(data):
        info = certificate_info(cert)
        if as_json:
            print(json.dumps(info.as_dict(), sort_keys=True))
            continue
        kind = "CA" if info.is_ca else ("probe" if "client" in info.purposes else ("Core" if "server" in info.purposes else "other"))
        print(f"certificate ({kind}): {info.subject}")
        print(f"  issuer       {info.issuer}")
        print(f"  serial       {info.serial:x}")
        print(f"  valid        {_iso(info.not_before)} .. {_iso(info.not_after)}")
        print(f"  public key   {info.public_key.hex() or '(not Ed25519)'}")
        print(f"  fingerprint  sha256:{info.fingerprint}")
        if info.hosts:
            print(f"  hosts        {', '.join(info.hosts)}")


def cmd_show(args: argparse.Namespace) -> int:
    from cryptography import x509

    from probe.identity import public_key_hex, read_private_key

    data = _read(args.file)
    with _pki_errors():
        if b"PRIVATE KEY" in data or data.startswith(b"probe-ed25519-key-v1"):
            key = read_private_key(args.file)
            print(f"Ed25519 private key {args.file} (mode ok); public key {public_key_hex(key)}")
            return EXIT_OK
        if b"X509 CRL" in data:
            crl = x509.load_pem_x509_crl(data)
            serials = sorted(entry.serial_number for entry in crl)
            print(f"revocation list of {crl.issuer.rfc4514_string()}: {len(serials)} revoked")
            for serial in serials:
                print(f"  {serial:x}")
            return EXIT_OK
        _show_certificate(data, args.json)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from probe.identity import read_private_key
    from protocols.identity import CORE, PROBE, EMPTY_REVOCATIONS, CertificateRejected, load_revocation_list, verify_certificate

    ca = _read(args.ca)
    revocations = EMPTY_REVOCATIONS
    public_key = None
    with _pki_errors():
        if args.crl:
            revocations = load_revocation_list(_read(args.crl), ca)
        if args.key:
            public_key = bytes(read_private_key(args.key).verify_key)
    now = time.time() if args.at is None else args.at
    try:
        info = verify_certificate(
            _read(args.cert), ca, now, purpose=CORE if args.core else PROBE,
            probe_id=args.probe_id, public_key=public_key, revocations=revocations,
        )
    except CertificateRejected as exc:
        print(f"REFUSED ({exc.reason}): {exc}")
        return EXIT_FAILED
    checks = ["issued by the CA", "inside its validity window", "not revoked" if args.crl else "revocation not checked (no --crl)"]
    if args.probe_id:
        checks.append(f"for probe {args.probe_id}")
    if args.key:
        checks.append("holds the key of " + os.path.basename(args.key))
    print(f"OK: {info.subject} (serial {info.serial:x}): " + ", ".join(checks))
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    pki = sub.add_parser("pki", help="certificates: a CA, probe and Core certificates, revocation")
    pki_sub = pki.add_subparsers(dest="pki_command", metavar="ACTION", parser_class=Parser)
    pki_sub.required = True

    init = pki_sub.add_parser("init-ca", help="create a CA (Ed25519) with an empty revocation list")
    init.add_argument("--out", required=True, help="directory for ca.pem, ca.key and crl.pem")
    init.add_argument("--name", default="probe-ca", help="the CA's common name")
    init.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    init.set_defaults(func=cmd_init_ca)

    issue = pki_sub.add_parser("issue", help="issue a probe certificate binding a probe id to an Ed25519 key")
    issue.add_argument("--ca", required=True, help="CA directory (pki init-ca)")
    issue.add_argument("--probe-id", required=True)
    issue.add_argument("--days", type=int, default=365)
    issue.add_argument("--out", required=True, help="directory for ID.pem and ID.key")
    issue.add_argument("--key", help="certify this existing key instead of making a new one (renewal)")
    issue.add_argument("--force", action="store_true", help="replace an existing certificate file")
    issue.set_defaults(func=cmd_issue)

    core = pki_sub.add_parser("issue-core", help="issue a Core (TLS server) certificate")
    core.add_argument("--ca", required=True, help="CA directory (pki init-ca)")
    core.add_argument("--name", default="core", help="the Core's name (file names and common name)")
    core.add_argument("--host", action="append", required=True, help="DNS name or IP address probes connect to (repeatable)")
    core.add_argument("--days", type=int, default=365)
    core.add_argument("--out", required=True)
    core.add_argument("--key", help="certify this existing key instead of making a new one")
    core.add_argument("--force", action="store_true", help="replace an existing certificate file")
    core.set_defaults(func=cmd_issue_core)

    rev = pki_sub.add_parser("revoke", help="add certificates to the CA's revocation list (crl.pem)")
    rev.add_argument("--ca", required=True, help="CA directory")
    rev.add_argument("--cert", action="append", help="certificate file to revoke (repeatable)")
    rev.add_argument("--serial", action="append", help="hexadecimal serial to revoke (repeatable)")
    rev.set_defaults(func=cmd_revoke)

    show = pki_sub.add_parser("show", help="print a certificate, key (public half only) or revocation list")
    show.add_argument("file")
    show.add_argument("--json", action="store_true", help="certificates as JSON lines")
    show.set_defaults(func=cmd_show)

    verify = pki_sub.add_parser("verify", help="check a certificate as the probe and the Core do")
    verify.add_argument("--ca", required=True, help="CA certificate file")
    verify.add_argument("--cert", required=True, help="certificate file to check")
    verify.add_argument("--probe-id", help="the probe id it must name")
    verify.add_argument("--key", help="the private key it must hold")
    verify.add_argument("--crl", help="revocation list to check against")
    verify.add_argument("--core", action="store_true", help="check it as a Core (server) certificate")
    verify.add_argument("--at", type=float, help="check at this unix time instead of now")
    verify.set_defaults(func=cmd_verify)

"""The probe's identity on disk: its Ed25519 key, its certificate and the CAs it trusts.

The key signs every event and authenticates the probe (hello proof, TLS client
certificate). Key files are mode 0600 and refused when group- or world-readable; keys
are never logged. :class:`ProbeIdentity` holds one validated generation of key,
certificate and CAs in memory; a reload validates a new generation completely before it
replaces the old one, so a bad file on disk never takes the place of a good identity.
"""

from __future__ import annotations

import logging
import os
import secrets
import ssl
import stat
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

import attrs
import nacl.encoding
import nacl.exceptions
import nacl.signing
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from actors.messages import Halt, ResumeTransmission
from protocols.errors import IdentityError
from protocols.events.envelope import EnvelopeHeader
from protocols.identity import PROBE, CertificateInfo, CertificateRejected, verify_certificate
from protocols.signing import self_test

if TYPE_CHECKING:
    from actors.metrics import Metrics
    from actors.supervisor import Directory
    from actors.uplink import TransmissionGate

log = logging.getLogger("probe.identity")

KEY_HEADER = "probe-ed25519-key-v1"  # the first key format (hex seed); still read


# --- key files -------------------------------------------------------------------------


def write_private_file(path: str, data: bytes) -> None:
    """Create ``path`` with mode 0600 (never replacing a file) and write ``data`` durably."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def key_pem(key: nacl.signing.SigningKey) -> bytes:
    """The key as PKCS#8 PEM (what TLS and the pki commands use)."""
    private = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(key))
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def create_key(path: str) -> nacl.signing.SigningKey:
    """Generate a new Ed25519 key and write it to ``path`` (PKCS#8 PEM, mode 0600)."""
    key = nacl.signing.SigningKey.generate()
    write_private_file(path, key_pem(key))
    return key


def key_stamp(path: str) -> tuple[int, int, int, int] | None:
    """What changes when the file at ``path`` is replaced or written: inode, mtime, size, mode."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size, st.st_mode


def check_private_file(path: str, what: str = "key") -> None:
    """A private key file must exist and be neither group- nor world-accessible."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise IdentityError(f"{what} {path} does not exist", reason="key_missing") from None
    except OSError as exc:
        raise IdentityError(f"{what} {path} unreadable: {exc.strerror}", reason="key_unreadable") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(
            f"{what} {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it",
            reason="key_permissions",
        )


def read_private_key(path: str) -> nacl.signing.SigningKey:
    """Read and self-test the key at ``path``; any problem is an :class:`IdentityError` naming it."""
    check_private_file(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 16)
    except OSError as exc:
        raise IdentityError(f"key {path} unreadable: {exc.strerror}", reason="key_unreadable") from None
    key = _parse_key(path, data)
    if not self_test(key):
        raise IdentityError(f"key {path} failed its sign-and-verify self-test", reason="key_selftest")
    return key


def _parse_key(path: str, data: bytes) -> nacl.signing.SigningKey:
    if data.startswith(b"-----BEGIN"):
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise IdentityError(f"key {path} is corrupt or encrypted: {exc}", reason="key_corrupt") from None
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise IdentityError(f"key {path} is not an Ed25519 key", reason="key_corrupt")
        seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        return nacl.signing.SigningKey(seed)
    lines = data.split()
    if len(lines) != 2 or lines[0] != KEY_HEADER.encode() or len(lines[1]) != 64:
        raise IdentityError(f"key {path} is corrupt (neither PEM nor a {KEY_HEADER} file)", reason="key_corrupt")
    try:
        return nacl.signing.SigningKey(lines[1], encoder=nacl.encoding.HexEncoder)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise IdentityError(f"key {path} is corrupt (bad seed)", reason="key_corrupt") from None


def load_key(path: str) -> nacl.signing.SigningKey:
    """Alias of :func:`read_private_key` (the name earlier code used)."""
    return read_private_key(path)


def load_or_create_key(path: str) -> tuple[nacl.signing.SigningKey, bool]:
    """The key at ``path``, creating it when absent; returns (key, created)."""
    if not os.path.exists(path):
        return create_key(path), True
    return read_private_key(path), False


def public_key_hex(key: nacl.signing.SigningKey) -> str:
    return key.verify_key.encode(encoder=nacl.encoding.HexEncoder).decode()


def _read_public(path: str, what: str, reason: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(1 << 20)
    except FileNotFoundError:
        raise IdentityError(f"{what} {path} does not exist", reason=reason) from None
    except OSError as exc:
        raise IdentityError(f"{what} {path} unreadable: {exc.strerror}", reason=reason) from None


# --- the identity in use -----------------------------------------------------------------


@attrs.frozen
class IdentityMaterial:
    """One validated generation: key, certificate and CAs as they were read together."""

    key: nacl.signing.SigningKey
    stamp: tuple[int, int, int, int] | None
    cert: CertificateInfo | None = None
    cert_pem: bytes | None = None
    ca_pem: bytes | None = None
    core_ca_pem: bytes | None = None


def _load_chain(context: ssl.SSLContext, cert_pem: bytes, private_pem: bytes) -> None:
    """Load certificate and key into ``context`` through pipes: the key never touches the disk again."""
    fds: list[int] = []
    try:
        paths = []
        for data in (cert_pem, private_pem):
            read_end, write_end = os.pipe()
            fds += [read_end, write_end]
            os.write(write_end, data)
            os.close(write_end)
            fds.remove(write_end)
            paths.append(f"/dev/fd/{read_end}")
        context.load_cert_chain(paths[0], paths[1])
    finally:
        for fd in fds:
            os.close(fd)


class ProbeIdentity:
    """Who this probe is for this boot: id, boot id, key, certificate, and whether it is good.

    Shared by the signer, the uplink and the application. ``problem`` holds the identity
    failure in force (None when the identity is good); the transmission gate, not this
    object, decides whether events leave.
    """

    def __init__(
        self,
        probe_id: str,
        key_path: str,
        boot_id: str | None = None,
        *,
        cert_path: str | None = None,
        ca_path: str | None = None,
        core_ca_path: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.probe_id = probe_id
        self.key_path = key_path
        self.cert_path = cert_path
        self.ca_path = ca_path
        self.core_ca_path = core_ca_path
        self.clock = clock
        self.boot_id = boot_id or secrets.token_hex(8)
        self.header = EnvelopeHeader(probe_id, self.boot_id)
        #: first sequence number this boot may assign (set by whoever opens the spool)
        self.boot_seq = 0
        self.problem: IdentityError | None = None
        self.problem_since: float | None = None
        self.reloads = 0
        self._lock = threading.Lock()
        self.created = False
        if cert_path is None and not os.path.exists(key_path):
            create_key(key_path)
            self.created = True
        key = read_private_key(key_path)
        self._seen_stamp = key_stamp(key_path)
        self._material = IdentityMaterial(key, self._seen_stamp)
        try:
            self._material = self._load_certificates(key, self._seen_stamp)
        except IdentityError as exc:
            self._fail(exc)

    # --- loading ------------------------------------------------------------------------

    def _load_certificates(self, key: nacl.signing.SigningKey, stamp: tuple[int, int, int, int] | None) -> IdentityMaterial:
        if self.cert_path is None:
            return IdentityMaterial(key, stamp)
        if self.ca_path is None:
            raise IdentityError("identity.cert is set but identity.ca is not: the certificate cannot be checked", reason="ca_missing")
        cert_pem = _read_public(self.cert_path, "certificate", "cert_missing")
        ca_pem = _read_public(self.ca_path, "CA certificate", "ca_missing")
        core_ca_pem = _read_public(self.core_ca_path, "Core CA certificate", "ca_missing") if self.core_ca_path else ca_pem
        try:
            info = verify_certificate(cert_pem, ca_pem, self.clock(), purpose=PROBE, probe_id=self.probe_id, public_key=bytes(key.verify_key))
        except CertificateRejected as exc:
            raise IdentityError(f"certificate {self.cert_path}: {exc}", reason=exc.reason) from None
        return IdentityMaterial(key, stamp, info, cert_pem, ca_pem, core_ca_pem)

    def record_failure(self, error: IdentityError) -> None:
        """An identity failure found elsewhere (the Core refused us): keep it until a good reload."""
        self._fail(error)

    def _fail(self, error: IdentityError) -> None:
        with self._lock:
            if self.problem is None:
                self.problem_since = self.clock()
            self.problem = error
        log.error("identity failure (%s): %s", error.reason, error, extra={"component": "identity", "event": "identity_failure", "reason": error.reason})

    # --- in use -------------------------------------------------------------------------

    def signing_key(self) -> nacl.signing.SigningKey:
        return self._material.key

    def certificate(self) -> bytes | None:
        """The DER certificate the hello carries (None without a certificate)."""
        cert = self._material.cert
        return cert.der if cert is not None else None

    @property
    def material(self) -> IdentityMaterial:
        return self._material

    @property
    def public_key_hex(self) -> str:
        return public_key_hex(self._material.key)

    def check_key_file(self) -> None:
        """Per batch: re-validate the key file when it changed; raise IdentityError once if it went bad.

        One ``stat`` when nothing changed. A change to another good key only takes effect
        on reload (rotation); a corrupt, unreadable or exposed key file is an identity
        failure, raised once per change, so that a restarted signer goes on signing with
        the key in memory while transmission stays halted.
        """
        stamp = key_stamp(self.key_path)
        if stamp == self._seen_stamp:
            return
        self._seen_stamp = stamp
        try:
            key = read_private_key(self.key_path)
        except IdentityError as exc:
            self._fail(exc)
            raise
        if bytes(key) != bytes(self._material.key):
            log.warning(
                "key file %s now holds another key; it takes effect on reload", self.key_path,
                extra={"component": "identity", "event": "key_changed"},
            )

    def check_current(self) -> None:
        """Before connecting: raise the identity failure in force, or a certificate that expired since."""
        problem = self.problem
        if problem is not None:
            raise problem
        cert = self._material.cert
        if cert is not None:
            now = self.clock()
            if now > cert.not_after or now < cert.not_before:
                reason = "cert_expired" if now > cert.not_after else "cert_not_yet_valid"
                error = IdentityError(f"certificate {self.cert_path} is outside its validity window now", reason=reason)
                self._fail(error)
                raise error

    def client_ssl_context(self) -> ssl.SSLContext | None:
        """Mutual TLS to the Core: our certificate and key, the Core's certificate checked against its CA."""
        m = self._material
        if m.cert is None or m.cert_pem is None or m.core_ca_pem is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cadata=m.core_ca_pem.decode("ascii", "replace"))
        _load_chain(context, m.cert_pem, key_pem(m.key))
        return context

    def reload(self) -> dict[str, Any]:
        """Re-read key, certificate and CAs; switch to them only if every check passes.

        Returns the new status; raises IdentityError (the running identity unchanged) if
        anything is wrong.
        """
        stamp = key_stamp(self.key_path)
        key = read_private_key(self.key_path)
        material = self._load_certificates(key, stamp)
        with self._lock:
            previous = self._material
            self._material = material
            self._seen_stamp = stamp
            self.problem = None
            self.problem_since = None
            self.reloads += 1
        if bytes(previous.key) != bytes(key):
            log.info("identity reloaded with a new key", extra={"component": "identity", "event": "key_rotated"})
        return self.status()

    def status(self) -> dict[str, Any]:
        """What the console and the summary show: state, reason, key and certificate."""
        m = self._material
        problem = self.problem
        out: dict[str, Any] = {
            "state": "failed" if problem is not None else "ok",
            "reason": problem.reason if problem is not None else None,
            "message": str(problem) if problem is not None else None,
            "since": self.problem_since,
            "probe_id": self.probe_id,
            "boot_id": self.boot_id,
            "key_path": self.key_path,
            "public_key": public_key_hex(m.key),
            "reloads": self.reloads,
            "certificate": None,
        }
        if m.cert is not None:
            out["certificate"] = {
                "path": self.cert_path,
                "serial": f"{m.cert.serial:x}",
                "issuer": m.cert.issuer,
                "not_before": m.cert.not_before,
                "not_after": m.cert.not_after,
                "fingerprint": m.cert.fingerprint,
            }
        return out


# --- halting and resuming ----------------------------------------------------------------


@attrs.frozen
class ReloadResult:
    """The outcome of an identity reload: ``ok``, or the reason and message why not."""

    ok: bool
    reason: str | None = None
    message: str | None = None
    resumed: bool = False


class IdentityGuard:
    """Halts transmission on an identity failure; a good reload resumes it.

    The supervisor calls :meth:`halt` (its halt strategy); the console and SIGHUP call
    :meth:`reload`. The alert is a log line (``alert: identity``), the counters
    ``identity_failures_total{reason}`` and ``identity_halts_total``, the gauges
    ``identity_ok`` and ``transmission_halted``, and :meth:`status`.
    """

    def __init__(
        self,
        identity: ProbeIdentity,
        gate: TransmissionGate,
        directory: Directory,
        metrics: Metrics,
        *,
        on_reload: Callable[[ProbeIdentity], None] | None = None,
    ) -> None:
        self.identity = identity
        self.gate = gate
        self.directory = directory
        self.metrics = metrics
        self.on_reload = on_reload
        metrics.set("identity_ok", 1.0)
        metrics.set("transmission_halted", 0.0)
        if identity.problem is not None:
            self.halt(f"identity: {identity.problem}")

    def halt(self, reason: str) -> None:
        """Nothing more is sent; capture, dissection and buffering go on."""
        self.gate.halt(reason)
        problem = self.identity.problem
        cause = problem.reason if problem is not None else "identity"
        self.metrics.inc("identity_halts_total")
        self.metrics.inc("identity_failures_total", reason=cause)
        self.metrics.set("identity_ok", 0.0)
        self.metrics.set("transmission_halted", 1.0)
        log.error(
            "ALERT transmission halted by an identity failure (%s): %s; capture and buffering go on; "
            "fix the identity, then reload (SIGHUP or the console)", cause, reason,
            extra={"component": "identity", "event": "transmission_halted", "reason": cause, "alert": "identity"},
        )
        self.directory.tell("uplink", Halt(reason), wait=0)

    def reload(self) -> ReloadResult:
        """Re-validate key, certificate and CAs; if good, use them and resume (or reconnect, for a rotation)."""
        self.metrics.inc("identity_reloads_total")
        try:
            self.identity.reload()
        except IdentityError as exc:
            self.metrics.inc("identity_reload_failures_total", reason=exc.reason)
            log.error(
                "identity reload refused (%s): %s", exc.reason, exc,
                extra={"component": "identity", "event": "identity_reload_failed", "reason": exc.reason},
            )
            return ReloadResult(False, exc.reason, str(exc))
        if self.on_reload is not None:
            self.on_reload(self.identity)
        resumed = self.gate.halted
        self.metrics.set("identity_ok", 1.0)
        self.metrics.set("transmission_halted", 0.0)
        self.gate.resume()
        log.info(
            "identity reloaded%s", "; transmission resumes" if resumed else "",
            extra={"component": "identity", "event": "identity_reloaded"},
        )
        self.directory.tell("uplink", ResumeTransmission(), wait=5)
        return ReloadResult(True, resumed=resumed)

    def status(self) -> dict[str, Any]:
        """Identity and transmission state for the console, the summary and alerts."""
        out = self.identity.status()
        out["transmission"] = {"halted": self.gate.halted, "reason": self.gate.reason, "since": self.gate.since}
        return out

"""The Core's side of identity: who may connect, with which keys, and which events fit.

A hello is authenticated either by certificate (the Core has a CA: the probe's
certificate, from the TLS handshake or the hello, must be issued by that CA, be inside
its validity window, not be revoked, name the probe id and hold the hello's key) or by
a pinned key (no CA: the embedded Core). Either way the probe proves it holds the key
by signing the Core's nonce. Events are then verified with the probe's current key and,
for events signed before a rotation, its earlier keys (never those of a revoked
certificate). Each boot of the probe owns a range of sequence numbers; an event whose
(boot, seq) does not fit is a replay and is refused.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Mapping, Sequence

import attrs
import nacl.exceptions
import nacl.signing

from probe.core.trust import KnownKey, TrustStore
from protocols import wire
from protocols.events.envelope import EventRecord
from protocols.identity import (
    EMPTY_REVOCATIONS,
    PROBE,
    PROBE_ID,
    CertificateInfo,
    CertificateRejected,
    RevocationList,
    certificate_info,
    load_certificate,
    load_revocation_list,
    verify_certificate,
)

log = logging.getLogger("probe.core")

#: boots remembered per probe (older ones count as unknown: still bounded by the current boot)
MAX_BOOTS = 64


class AuthRefused(Exception):
    """The hello does not authenticate; ``code`` goes back in the fatal error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class KeyRing:
    """Verifies a signed record with the probe's current key, then its earlier ones."""

    def __init__(self, keys: Sequence[nacl.signing.VerifyKey]) -> None:
        self.keys = list(keys)
        if len(self.keys) == 1:
            self.verify = self.keys[0].verify  # type: ignore[method-assign]

    def verify(self, record: bytes) -> bytes:
        error: nacl.exceptions.BadSignatureError | None = None
        for key in self.keys:
            try:
                return key.verify(record)
            except nacl.exceptions.BadSignatureError as exc:
                error = exc
        raise error or nacl.exceptions.BadSignatureError("no key")


@attrs.define
class Session:
    """An authenticated probe connection."""

    probe_id: str
    boot_id: str
    keys: KeyRing
    cert: CertificateInfo | None = None


# --- boots and their sequence ranges ----------------------------------------------------


def boot_ranges(starts: Mapping[str, int]) -> dict[str, tuple[int, int | None]]:
    """Each boot's range [start, next boot's start) from the boots' declared first sequences."""
    ordered = sorted(set(starts.values()))
    out: dict[str, tuple[int, int | None]] = {}
    for boot, start in starts.items():
        later = [s for s in ordered if s > start]
        out[boot] = (start, later[0] if later else None)
    return out


def replay_policy(starts: Mapping[str, int], current_boot: str) -> Callable[[EventRecord], str | None]:
    """A check per event: ``replayed_sequence`` when its (boot, seq) cannot have been assigned.

    A known boot owns [its start, the next boot's start); a boot the Core never saw (the
    probe restarted before it connected) is older than the current one, so its events
    lie below the current boot's start.
    """
    ranges = boot_ranges(starts)
    current_start = starts.get(current_boot)
    replayed = wire.ErrorCode.REPLAYED_SEQUENCE

    def check(event: EventRecord) -> str | None:
        span = ranges.get(event.boot_id)
        if span is None:
            return replayed if current_start is not None and event.seq >= current_start else None
        if event.seq < span[0] or (span[1] is not None and event.seq >= span[1]):
            return replayed
        return None

    return check


@attrs.frozen(slots=True)
class BootPolicy:
    """One session's replay check, and how far its boot's numbers were already taken.

    ``reused_through`` is non-zero when the boot's sequence space went back (spool wiped
    or restored, key kept): the Core moved the boot's start above it, so the probe's own
    numbers up to it belong to an earlier life and can never be stored.
    """

    check: Callable[[EventRecord], str | None]
    reused_through: int


class BootLedger:
    """Per probe: the first sequence number of each boot it announced (``DIR/<probe>.json``)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, probe_id: str) -> str:
        return os.path.join(self.directory, probe_id + ".json")

    def starts(self, probe_id: str) -> dict[str, int]:
        try:
            with open(self._path(probe_id)) as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return {}
        except ValueError:
            log.error(json.dumps({"event": "boot_ledger_damaged", "probe_id": probe_id}))
            return {}
        return {str(k): int(v) for k, v in data.items() if isinstance(v, int)}

    def note(self, probe_id: str, boot_id: str, boot_seq: int, acked: int) -> tuple[dict[str, int], str | None]:
        """Record a new boot's start; return the starts and a warning if the sequence space went back."""
        starts = self.starts(probe_id)
        if boot_id in starts or boot_seq <= 0:
            return starts, None
        highest = max(starts.values(), default=0)
        start, warning = boot_seq, None
        if boot_seq <= highest:
            start = max(highest + 1, acked + 1)
            warning = (
                f"boot {boot_id} starts at sequence {boot_seq}, not above the earlier boot that started at "
                f"{highest}: the probe's sequence space went back (spool wiped or restored); "
                f"its events below {start} are refused as replays"
            )
        starts[boot_id] = start
        if len(starts) > MAX_BOOTS:
            starts = dict(sorted(starts.items(), key=lambda item: item[1])[-MAX_BOOTS:])
        tmp = self._path(probe_id) + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(starts, fh)
        os.replace(tmp, self._path(probe_id))
        return starts, warning


# --- authentication ---------------------------------------------------------------------


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class Authenticator:
    """Authenticates hellos against a CA (with a reloadable revocation list) or pinned keys."""

    def __init__(
        self,
        data_dir: str,
        *,
        ca_path: str | None = None,
        crl_path: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.trust = TrustStore(os.path.join(data_dir, "trusted"))
        self.boots = BootLedger(os.path.join(data_dir, "boots"))
        self.clock = clock
        self.ca_path = ca_path
        self.crl_path = crl_path
        self.ca_pem: bytes | None = None
        self.crl: RevocationList = EMPTY_REVOCATIONS
        self._crl_stamp: tuple[int, int, int] | None = None
        if ca_path is not None:
            with open(ca_path, "rb") as fh:
                self.ca_pem = fh.read()
        if crl_path is not None:
            if self.ca_pem is None:
                raise ValueError("a revocation list needs the CA that signs it (--client-ca)")
            if not self.reload_crl():
                raise ValueError(f"revocation list {crl_path} cannot be used; see the log")

    @property
    def mode(self) -> str:
        return "certificate" if self.ca_pem is not None else "pinned"

    # --- revocation list ------------------------------------------------------------------

    def reload_crl(self) -> bool:
        """Read the revocation list again; True if it was read (a bad file keeps the previous list)."""
        if self.crl_path is None or self.ca_pem is None:
            return False
        stamp = _stamp(self.crl_path)
        try:
            with open(self.crl_path, "rb") as fh:
                crl = load_revocation_list(fh.read(), self.ca_pem)
        except (OSError, CertificateRejected) as exc:
            log.error(json.dumps({"event": "crl_unusable", "path": self.crl_path, "reason": str(exc)}))
            self._crl_stamp = stamp
            return False
        self._crl_stamp = stamp
        self.crl = crl
        if crl.stale(self.clock()):
            log.warning(json.dumps({"event": "crl_stale", "path": self.crl_path, "next_update": crl.next_update}))
        log.info(json.dumps({"event": "crl_loaded", "path": self.crl_path, "revoked": len(crl.serials)}))
        return True

    def crl_changed(self) -> bool:
        """One ``stat``: reload the revocation list if its file changed; True if it was reloaded."""
        if self.crl_path is None or _stamp(self.crl_path) == self._crl_stamp:
            return False
        return self.reload_crl()

    def revoked(self, serial: int | None) -> bool:
        return serial is not None and serial in self.crl.serials

    # --- hello ----------------------------------------------------------------------------

    def authenticate(self, hello: wire.Hello, nonce: bytes, peer_cert: bytes | None) -> Session:
        """The probe's session (its keys); raise :class:`AuthRefused` saying why it is refused."""
        if not PROBE_ID.match(hello.probe_id):
            raise AuthRefused(wire.ErrorCode.AUTH_FAILED, "invalid probe id")
        info: CertificateInfo | None = None
        if self.ca_pem is not None:
            self.crl_changed()
            presented = self._presented(hello, peer_cert)
            try:
                info = verify_certificate(
                    presented, self.ca_pem, self.clock(), purpose=PROBE,
                    probe_id=hello.probe_id, public_key=hello.public_key, revocations=self.crl,
                )
            except CertificateRejected as exc:
                raise AuthRefused(exc.reason, str(exc)) from None
            key = nacl.signing.VerifyKey(hello.public_key)
        else:
            pinned = self.trust.key_for(hello.probe_id)
            if pinned is None:
                raise AuthRefused(wire.ErrorCode.UNKNOWN_PROBE, f"probe {hello.probe_id} is not enrolled at this Core")
            if bytes(pinned) != hello.public_key:
                raise AuthRefused(wire.ErrorCode.AUTH_FAILED, f"key does not match the key enrolled for {hello.probe_id}")
            key = pinned
        message = wire.hello_proof_message(nonce, hello.probe_id, hello.boot_id, hello.public_key)
        try:
            key.verify(message, hello.proof)
        except (nacl.exceptions.BadSignatureError, ValueError):
            raise AuthRefused(wire.ErrorCode.AUTH_FAILED, "proof of key possession does not verify") from None
        if info is not None:
            self.trust.remember(hello.probe_id, KnownKey(hello.public_key, "certificate", info.serial, info.not_after, self.clock()))
        return Session(hello.probe_id, hello.boot_id, KeyRing(self._ring(hello.probe_id, key)), info)

    def _presented(self, hello: wire.Hello, peer_cert: bytes | None) -> bytes:
        """The certificate to check: the TLS client certificate, which the hello's must equal."""
        if peer_cert is not None:
            if hello.certificate is not None:
                try:
                    same = certificate_info(load_certificate(hello.certificate)).der == peer_cert
                except CertificateRejected:
                    same = False
                if not same:
                    raise AuthRefused(wire.ErrorCode.AUTH_FAILED, "the hello's certificate is not the TLS client certificate")
            return peer_cert
        if hello.certificate is None:
            raise AuthRefused(wire.ErrorCode.BAD_CERTIFICATE, "this Core requires a probe certificate")
        return hello.certificate

    def _ring(self, probe_id: str, current: nacl.signing.VerifyKey) -> list[nacl.signing.VerifyKey]:
        """The current key first, then the probe's earlier keys whose certificates are not revoked."""
        keys = [current]
        for known in self.trust.known_keys(probe_id):
            if known.key == bytes(current) or self.revoked(known.serial):
                continue
            if self.ca_pem is not None and known.source != "certificate":
                continue  # with a CA, only keys that came with a certificate count
            keys.append(nacl.signing.VerifyKey(known.key))
        return keys

    def boot_policy(self, probe_id: str, boot_id: str, boot_seq: int, acked: int) -> BootPolicy:
        """Note this boot's first sequence; the per-event replay check for this session."""
        starts, warning = self.boots.note(probe_id, boot_id, boot_seq, acked)
        if warning:
            log.warning(json.dumps({"event": "sequence_space_reset", "probe_id": probe_id, "boot_id": boot_id, "message": warning}))
        start = starts.get(boot_id, 0)
        return BootPolicy(replay_policy(starts, boot_id), start - 1 if 0 < boot_seq < start else 0)


#: refusals whose record may be damaged, so that its own seq field is not to be trusted
_DAMAGED = frozenset({wire.ErrorCode.BAD_EVENT, wire.ErrorCode.BAD_SIGNATURE})


def pin_rejected_seqs(checked: list[tuple[int, Any, str | None]]) -> list[tuple[int, Any, str | None]]:
    """Give each refused record of a frame the sequence its good neighbours pin it to.

    A damaged record's own seq field cannot be trusted (or read). A frame carries
    strictly increasing sequences, so when the good records around a run of refused
    ones are consecutive, the refused ones take the numbers between; otherwise their
    own seq stands only if it lies between the neighbours, else -1 (unknown).
    """
    out = list(checked)
    good = [(i, seq) for i, (seq, record, code) in enumerate(out) if code not in _DAMAGED]
    if len(good) == len(out):
        return out
    for i, (seq, record, code) in enumerate(out):
        if code not in _DAMAGED:
            continue
        before = next(((j, s) for j, s in reversed(good) if j < i), None)
        after = next(((j, s) for j, s in good if j > i), None)
        if before and after and after[1] - before[1] == after[0] - before[0]:
            pinned = before[1] + (i - before[0])
        elif (before is None or seq > before[1]) and (after is None or seq < after[1]) and seq > 0:
            pinned = seq
        else:
            pinned = -1
        out[i] = (pinned, record, code)
    return out

"""Which keys the Core accepts for a probe: pinned keys and keys it learnt from certificates.

``DIR/<probe_id>.pub`` holds the hex Ed25519 public key pinned for a probe (the embedded
Core and Cores without a CA). ``DIR/<probe_id>.keys`` remembers every key the probe
has authenticated with, newest first, with the certificate serial it came from: events
signed before a key rotation are verified with the older keys, until their certificate
is revoked.
"""

from __future__ import annotations

import json
import os
import time

import attrs
import nacl.encoding
import nacl.exceptions
import nacl.signing

from protocols.identity import PROBE_ID

#: older keys kept per probe (each costs one verification for an event signed with it)
MAX_KEYS = 8


class TrustError(ValueError):
    """A probe id or key file the Core cannot use."""


@attrs.frozen
class KnownKey:
    """A key a probe authenticated with, and where the Core learnt it."""

    key: bytes  # raw Ed25519 public key
    source: str  # "pinned" or "certificate"
    serial: int | None = None  # the certificate's serial number
    not_after: float | None = None
    added: float = 0.0

    def to_json(self) -> dict:
        return {"key": self.key.hex(), "source": self.source, "serial": None if self.serial is None else f"{self.serial:x}", "not_after": self.not_after, "added": self.added}

    @classmethod
    def from_json(cls, obj: dict) -> "KnownKey":
        serial = obj.get("serial")
        return cls(bytes.fromhex(obj["key"]), str(obj.get("source", "pinned")), None if serial is None else int(serial, 16), obj.get("not_after"), float(obj.get("added", 0.0)))


def _verify_key(public_key_hex: str) -> nacl.signing.VerifyKey:
    try:
        return nacl.signing.VerifyKey(public_key_hex.strip().encode(), encoder=nacl.encoding.HexEncoder)
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise TrustError(f"not an Ed25519 public key: {exc}") from None


class TrustStore:
    """Pinned keys and the key history of every probe, one small file each."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, probe_id: str, suffix: str = ".pub") -> str:
        if not PROBE_ID.match(probe_id):
            raise TrustError(f"invalid probe id {probe_id[:80]!r}")
        return os.path.join(self.directory, probe_id + suffix)

    def _write(self, path: str, text: str) -> None:
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)

    def enroll(self, probe_id: str, public_key_hex: str) -> None:
        """Pin ``public_key_hex`` for ``probe_id`` (an earlier key stays known for older events)."""
        key = _verify_key(public_key_hex)
        self._write(self._path(probe_id), public_key_hex.strip() + "\n")
        self.remember(probe_id, KnownKey(bytes(key), "pinned", added=time.time()))

    def key_for(self, probe_id: str) -> nacl.signing.VerifyKey | None:
        """The pinned key of ``probe_id``, or None when the probe is unknown."""
        try:
            with open(self._path(probe_id)) as fh:
                text = fh.read().strip()
        except (FileNotFoundError, TrustError):
            return None
        try:
            return _verify_key(text)
        except TrustError:
            return None

    def known_keys(self, probe_id: str) -> list[KnownKey]:
        """Keys ``probe_id`` authenticated with, newest first (empty for an unknown probe)."""
        try:
            with open(self._path(probe_id, ".keys")) as fh:
                data = json.load(fh)
            return [KnownKey.from_json(item) for item in data]
        except (FileNotFoundError, TrustError):
            return []
        except (ValueError, KeyError, TypeError):
            return []  # a damaged history only loses old keys; the current one comes with the hello

    def remember(self, probe_id: str, known: KnownKey) -> None:
        """Put ``known`` first in the probe's key history (moving it up if it is there)."""
        current = self.known_keys(probe_id)
        if current and current[0].key == known.key and current[0].serial == known.serial:
            return
        history = [k for k in current if k.key != known.key]
        history = [known] + history
        self._write(self._path(probe_id, ".keys"), json.dumps([k.to_json() for k in history[:MAX_KEYS]], indent=1) + "\n")

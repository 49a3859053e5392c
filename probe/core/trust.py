"""Which probes the Core accepts: pinned Ed25519 public keys, one file per probe id."""

from __future__ import annotations

import os
import re

import nacl.encoding
import nacl.exceptions
import nacl.signing

PROBE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class TrustError(ValueError):
    """A probe id or key file the Core cannot use."""


class TrustStore:
    """``DIR/<probe_id>.pub`` holds the hex Ed25519 public key the Core pins for that probe."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def _path(self, probe_id: str) -> str:
        if not PROBE_ID.match(probe_id):
            raise TrustError(f"invalid probe id {probe_id[:80]!r}")
        return os.path.join(self.directory, probe_id + ".pub")

    def enroll(self, probe_id: str, public_key_hex: str) -> None:
        """Pin ``public_key_hex`` for ``probe_id`` (replacing an earlier key)."""
        try:
            nacl.signing.VerifyKey(public_key_hex.strip().encode(), encoder=nacl.encoding.HexEncoder)
        except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
            raise TrustError(f"not an Ed25519 public key: {exc}") from None
        path = self._path(probe_id)
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(public_key_hex.strip() + "\n")
        os.replace(tmp, path)

    def key_for(self, probe_id: str) -> nacl.signing.VerifyKey | None:
        """The pinned key of ``probe_id``, or None when the probe is unknown."""
        try:
            with open(self._path(probe_id)) as fh:
                text = fh.read().strip()
        except (FileNotFoundError, TrustError):
            return None
        try:
            return nacl.signing.VerifyKey(text.encode(), encoder=nacl.encoding.HexEncoder)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            return None

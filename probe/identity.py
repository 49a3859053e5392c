"""The probe's signing key on disk: created on first run (mode 0600), never logged."""

from __future__ import annotations

import os
import stat

import nacl.encoding
import nacl.exceptions
import nacl.signing

from protocols.errors import IdentityError
from protocols.signing import self_test

KEY_HEADER = "probe-ed25519-key-v1"


def _write_private(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def create_key(path: str) -> nacl.signing.SigningKey:
    """Generate a new Ed25519 key and write its seed to ``path`` with mode 0600."""
    key = nacl.signing.SigningKey.generate()
    seed = key.encode(encoder=nacl.encoding.HexEncoder).decode()
    _write_private(path, f"{KEY_HEADER}\n{seed}\n")
    return key


def load_key(path: str) -> nacl.signing.SigningKey:
    """Read the key at ``path``; any problem is an :class:`IdentityError` naming the cause."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise IdentityError(f"signing key {path} does not exist", reason="key_missing") from None
    except OSError as exc:
        raise IdentityError(f"signing key {path} unreadable: {exc.strerror}", reason="key_unreadable") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityError(
            f"signing key {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it",
            reason="key_permissions",
        )
    try:
        with open(path, "r", encoding="ascii") as fh:
            lines = fh.read().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise IdentityError(f"signing key {path} unreadable: {exc}", reason="key_unreadable") from None
    if len(lines) != 2 or lines[0] != KEY_HEADER or len(lines[1]) != 64:
        raise IdentityError(f"signing key {path} is corrupt (not a {KEY_HEADER} file)", reason="key_corrupt")
    try:
        key = nacl.signing.SigningKey(lines[1].encode(), encoder=nacl.encoding.HexEncoder)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise IdentityError(f"signing key {path} is corrupt (bad seed)", reason="key_corrupt") from None
    if not self_test(key):
        raise IdentityError(f"signing key {path} failed its sign-and-verify self-test", reason="key_selftest")
    return key


def load_or_create_key(path: str) -> tuple[nacl.signing.SigningKey, bool]:
    """The key at ``path``, creating it when absent; returns (key, created)."""
    if not os.path.exists(path):
        return create_key(path), True
    return load_key(path), False


def public_key_hex(key: nacl.signing.SigningKey) -> str:
    return key.verify_key.encode(encoder=nacl.encoding.HexEncoder).decode()


class ProbeIdentity:
    """Who this probe is for this boot: id, boot id, signing key and envelope header.

    Shared by the signer and the uplink; a reload swaps the key in place so that both see
    the new one without a restart.
    """

    def __init__(self, probe_id: str, key_path: str, boot_id: str | None = None) -> None:
        import secrets

        from protocols.events.envelope import EnvelopeHeader

        self.probe_id = probe_id
        self.key_path = key_path
        self.boot_id = boot_id or secrets.token_hex(8)
        self.header = EnvelopeHeader(probe_id, self.boot_id)
        self._key, self.created = load_or_create_key(key_path)

    def signing_key(self) -> nacl.signing.SigningKey:
        return self._key

    def certificate(self) -> bytes | None:
        return None

    def reload(self) -> None:
        """Re-read and re-check the key; raise IdentityError if it is no longer good."""
        self._key = load_key(self.key_path)

    @property
    def public_key_hex(self) -> str:
        return public_key_hex(self._key)

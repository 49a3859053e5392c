"""Sequencing and signing a batch of encoded events with the probe's Ed25519 key.

A signed record is ``signature (64 bytes) + canonical envelope``, which is exactly what
libsodium's ``crypto_sign`` returns, so signing one event costs one C call and one copy.
The 64-byte secret key is expanded from the seed once per batch. An event that cannot
be signed keeps no sequence number: the next event takes it.
"""

from __future__ import annotations

import struct
from typing import Sequence

import attrs
import nacl.bindings
import nacl.exceptions
import nacl.signing

from protocols.events.base import EncodedEvent
from protocols.events.envelope import EnvelopeHeader, canonical_bytes

#: what signing one malformed event may raise (a body that is not bytes, a ts that is not a number)
SIGN_ERRORS = (nacl.exceptions.CryptoError, TypeError, ValueError, OverflowError, struct.error)


@attrs.frozen(slots=True)
class SignedBatch:
    """The outcome of signing a batch: (seq, record) pairs and the events that failed."""

    records: list[tuple[int, bytes]]
    failures: list[tuple[EncodedEvent, str]]

    @property
    def next_seq(self) -> int:
        return self.records[-1][0] + 1 if self.records else 0


def secret_key(key: nacl.signing.SigningKey) -> bytes:
    """libsodium's 64-byte secret key (seed + public key) for ``key``."""
    return nacl.bindings.crypto_sign_seed_keypair(bytes(key))[1]


def sign_batch(
    key: nacl.signing.SigningKey, header: EnvelopeHeader, events: Sequence[EncodedEvent], first_seq: int
) -> SignedBatch:
    """Give ``events`` consecutive sequence numbers from ``first_seq`` and sign each."""
    records: list[tuple[int, bytes]] = []
    failures: list[tuple[EncodedEvent, str]] = []
    seq = first_seq
    sign = nacl.bindings.crypto_sign
    secret = secret_key(key)
    encode = canonical_bytes
    append = records.append
    for event in events:
        try:
            record = sign(encode(header, seq, event.ts, event.kind, event.body), secret)
        except SIGN_ERRORS as exc:
            failures.append((event, f"{type(exc).__name__}: {exc}"))
            continue
        append((seq, record))
        seq += 1
    return SignedBatch(records, failures)


def self_test(key: nacl.signing.SigningKey) -> bool:
    """Sign and verify a fixed message both ways: False means the key cannot be trusted to sign."""
    message = b"probe signing self-test"
    try:
        key.verify_key.verify(key.sign(message))
        key.verify_key.verify(nacl.bindings.crypto_sign(message, secret_key(key)))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True

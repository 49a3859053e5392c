"""Sequencing and signing a batch of encoded events with the probe's Ed25519 key.

A signed record is ``signature (64 bytes) + canonical envelope``, which is exactly what
PyNaCl's ``SigningKey.sign`` returns, so signing costs one C call and no copies beyond it.
An event that cannot be signed keeps no sequence number: the next event takes it.
"""

from __future__ import annotations

from typing import Sequence

import attrs
import nacl.exceptions
import nacl.signing

from protocols.events.base import EncodedEvent
from protocols.events.envelope import EnvelopeHeader, canonical_bytes


@attrs.frozen(slots=True)
class SignedBatch:
    """The outcome of signing a batch: (seq, record) pairs and the events that failed."""

    records: list[tuple[int, bytes]]
    failures: list[tuple[EncodedEvent, str]]

    @property
    def next_seq(self) -> int:
        return self.records[-1][0] + 1 if self.records else 0


def sign_batch(
    key: nacl.signing.SigningKey, header: EnvelopeHeader, events: Sequence[EncodedEvent], first_seq: int
) -> SignedBatch:
    """Give ``events`` consecutive sequence numbers from ``first_seq`` and sign each."""
    records: list[tuple[int, bytes]] = []
    failures: list[tuple[EncodedEvent, str]] = []
    seq = first_seq
    sign = key.sign
    for event in events:
        try:
            record = bytes(sign(canonical_bytes(header, seq, event.ts, event.kind, event.body)))
        except (nacl.exceptions.CryptoError, TypeError, ValueError) as exc:
            failures.append((event, f"{type(exc).__name__}: {exc}"))
            continue
        records.append((seq, record))
        seq += 1
    return SignedBatch(records, failures)


def self_test(key: nacl.signing.SigningKey) -> bool:
    """Sign and verify a fixed message: False means the key cannot be trusted to sign."""
    message = b"probe signing self-test"
    try:
        key.verify_key.verify(key.sign(message))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError):
        return False
    return True

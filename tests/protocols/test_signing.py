"""Signing a batch: the record is signature + canonical envelope, a bad event does not stop the rest."""

from __future__ import annotations

import msgpack
import nacl.signing

from protocols.events import EncodedEvent, EnvelopeHeader, Weird, encode_body
from protocols.events.envelope import canonical_bytes, decode_canonical, split_signed
from protocols.signing import self_test, sign_batch

KEY = nacl.signing.SigningKey(bytes(range(32)))
HEADER = EnvelopeHeader("probe-1", "boot-a")


def test_each_record_verifies_and_decodes_to_its_event_and_sequence():
    events = [encode_body(Weird(1_700_000_000.5 + i, f"w{i}")) for i in range(3)]
    batch = sign_batch(KEY, HEADER, events, 41)
    assert [seq for seq, _ in batch.records] == [41, 42, 43] and batch.next_seq == 44
    for (seq, record), event in zip(batch.records, events):
        assert KEY.verify_key.verify(record) == record[64:]
        decoded = decode_canonical(split_signed(record)[1])
        assert (decoded.probe_id, decoded.boot_id, decoded.seq, decoded.ts, decoded.kind) == ("probe-1", "boot-a", seq, event.ts, "weird")


def test_canonical_bytes_are_exactly_msgpack_of_the_envelope_array():
    body = encode_body(Weird(12.25, "x")).body
    for seq in (1, 127, 128, 65_536, 2**40):
        for ts in (0.0, 12.25, 1_700_000_000.123456):
            expected = b"\x97" + b"".join(msgpack.packb(v) for v in (1, "probe-1", "boot-a", seq, ts, "weird")) + body
            assert canonical_bytes(HEADER, seq, ts, "weird", body) == expected
    # an integer time is encoded as the float it stands for
    assert canonical_bytes(HEADER, 5, 12, "weird", body) == canonical_bytes(HEADER, 5, 12.0, "weird", body)


def test_signing_is_deterministic_for_the_same_key_and_event():
    event = encode_body(Weird(3.0, "same"))
    assert sign_batch(KEY, HEADER, [event], 7).records == sign_batch(KEY, HEADER, [event], 7).records


def test_an_event_that_cannot_be_signed_is_reported_and_the_next_takes_its_sequence():
    good = encode_body(Weird(1.0, "ok"))
    bad_body = EncodedEvent(2.0, "weird", None)  # type: ignore[arg-type]
    bad_ts = EncodedEvent("noon", "weird", good.body)  # type: ignore[arg-type]
    batch = sign_batch(KEY, HEADER, [good, bad_body, bad_ts, good], 10)
    assert [seq for seq, _ in batch.records] == [10, 11]
    assert [event for event, _ in batch.failures] == [bad_body, bad_ts]
    assert all(why.startswith(("TypeError", "struct.error", "error")) for _, why in batch.failures)


def test_an_empty_batch_signs_nothing():
    batch = sign_batch(KEY, HEADER, [], 5)
    assert batch.records == [] and batch.failures == [] and batch.next_seq == 0


def test_self_test_passes_for_a_sound_key():
    assert self_test(KEY)

"""Core ingest logic: verified, once, in order; gaps explained by drop reports or counted."""

from __future__ import annotations

import nacl.signing

from probe.core.ingest import apply_drops, apply_events, verify_records
from protocols.events import EnvelopeHeader, Weird, encode_body
from protocols.signing import sign_batch
from protocols.wire import ErrorCode
from storage.core_store import CoreStore, ProbeAccount

KEY = nacl.signing.SigningKey.generate()
HEADER = EnvelopeHeader("p1", "boot")


def signed(first: int, n: int) -> list[bytes]:
    return [r for _, r in sign_batch(KEY, HEADER, [encode_body(Weird(float(i), "w")) for i in range(n)], first).records]


def test_good_events_are_stored_and_acked_in_order():
    account = ProbeAccount("p1")
    result = apply_events(account, verify_records(signed(1, 5), "p1", KEY.verify_key), set())
    assert [s for s, _ in result.store] == [1, 2, 3, 4, 5]
    assert (account.acked, account.stored, account.gaps) == (5, 5, 0)


def test_tampered_event_is_rejected_and_others_kept():
    records = signed(1, 3)
    bad = bytearray(records[1])
    bad[5] ^= 0x01  # inside the signature
    account = ProbeAccount("p1")
    result = apply_events(account, verify_records([records[0], bytes(bad), records[2]], "p1", KEY.verify_key), set())
    assert [s for s, _ in result.store] == [1, 3]
    assert result.rejected == [(2, ErrorCode.BAD_SIGNATURE)]
    assert account.rejected == {ErrorCode.BAD_SIGNATURE: 1}


def test_event_of_another_probe_or_key_is_rejected():
    other = nacl.signing.SigningKey.generate()
    foreign = [r for _, r in sign_batch(other, EnvelopeHeader("p2", "b"), [encode_body(Weird(1.0, "w"))], 1).records]
    checked = verify_records(foreign + [b"short"], "p1", KEY.verify_key)
    assert [code for _, _, code in checked] == [ErrorCode.BAD_EVENT, ErrorCode.BAD_EVENT]


def test_duplicates_counted_not_stored_twice():
    account = ProbeAccount("p1")
    apply_events(account, verify_records(signed(1, 3), "p1", KEY.verify_key), set())
    result = apply_events(account, verify_records(signed(2, 3), "p1", KEY.verify_key), {2, 3})
    assert [s for s, _ in result.store] == [4]
    assert account.duplicates == 2 and account.acked == 4


def test_drop_reports_explain_gaps_and_unreported_gaps_are_counted():
    account = ProbeAccount("p1")
    apply_events(account, verify_records(signed(1, 2), "p1", KEY.verify_key), set())
    apply_drops(account, [(3, 10, "buffer_full")])
    apply_events(account, verify_records(signed(11, 1), "p1", KEY.verify_key), set())
    apply_events(account, verify_records(signed(15, 1), "p1", KEY.verify_key), set())
    assert account.reported == {"buffer_full": 8}
    assert account.gaps == 3 and account.acked == 15


def test_store_keeps_each_sequence_once(tmp_path):
    store = CoreStore(str(tmp_path))
    account = ProbeAccount("p1")
    records = signed(1, 3)
    store.commit(account, [(1, records[0]), (2, records[1])])
    store.commit(account, [(2, b"other copy"), (3, records[2])])
    stored = list(store.events("p1"))
    assert [s for _, s, _ in stored] == [1, 2, 3]
    assert stored[1][2] == records[1]
    assert store.has("p1", [1, 2, 3, 4]) == {1, 2, 3}


def test_envelope_header_checks_what_decode_canonical_checks():
    import msgpack
    import pytest

    from probe.core.ingest import envelope_header
    from protocols.events.envelope import MalformedEvent, decode_canonical

    good = signed(7, 1)[0][64:]
    envelope, full = envelope_header(good), decode_canonical(good)
    assert (envelope.probe_id, envelope.boot_id, envelope.seq, envelope.ts, envelope.kind) == ("p1", "boot", 7, full.ts, full.kind)
    bad = [
        good[:-1],  # truncated body
        good + b"\x00",  # trailing bytes
        msgpack.packb([2, "p1", "b", 1, 1.0, "weird", {}]),  # version
        msgpack.packb([1, "p1", "b", 1, 1, "weird", {}]),  # ts not a float
        msgpack.packb([1, "p1", "b", -1, 1.0, "weird", {}]),  # negative seq
        msgpack.packb([1, "p1", "b", 1, 1.0, "weird", [1]]),  # body not a map
        msgpack.packb([1, b"p1", "b", 1, 1.0, "weird", {}]),  # probe id not a string
        msgpack.packb([1, "p1", "b", 1, 1.0, "weird"]),  # six elements
        msgpack.packb({"a": 1}),
        b"",
        b"\xc1",
    ]
    for data in bad:
        with pytest.raises(MalformedEvent):
            envelope_header(data)
        with pytest.raises(MalformedEvent):
            decode_canonical(data)

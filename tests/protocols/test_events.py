"""Event schema and canonical encoding: same values, same bytes; signatures cover all of it."""

from __future__ import annotations

import msgpack
import nacl.signing
import pytest

from protocols.errors import EventError
from protocols.events import Conn, ConnId, EnvelopeHeader, Weird, canonical_bytes, decode_canonical, encode_body, flatten
from protocols.events.envelope import MalformedEvent, split_signed
from protocols.signing import sign_batch


def conn(**over):
    base = dict(
        ts=1.5, uid="CabcdefghijklmnopQ", id=ConnId("10.0.0.1", 1234, "10.0.0.2", 80), proto="tcp", service=None,
        duration=0.25, orig_bytes=10, resp_bytes=20, conn_state="SF", local_orig=None, local_resp=None,
        missed_bytes=0, history="ShADadFf", orig_pkts=5, orig_ip_bytes=300, resp_pkts=4, resp_ip_bytes=400,
        tunnel_parents=None, ip_proto=6,
    )
    base.update(over)
    return Conn(**base)


def test_body_uses_zeek_names_sorted_without_ts():
    body = msgpack.unpackb(encode_body(conn()).body)
    assert list(body) == sorted(body)
    assert body["id.orig_h"] == "10.0.0.1" and body["id.resp_p"] == 80
    assert "ts" not in body and "id" not in body


def test_encoding_is_canonical():
    assert encode_body(conn()).body == encode_body(conn()).body
    assert encode_body(conn(vlans=(1, 2))).body != encode_body(conn(vlans=(2, 1))).body


def test_optional_nested_record_flattens_to_nulls():
    body = flatten(Weird(1.0, "bad_IP_checksum"))
    assert body["id.orig_h"] is None and body["name"] == "bad_IP_checksum"


def test_unencodable_value_is_an_event_error():
    with pytest.raises(EventError):
        encode_body(conn(history=object()))
    with pytest.raises(EventError):
        encode_body(conn(history="\udcff"))


def test_envelope_round_trip_and_signature():
    key = nacl.signing.SigningKey.generate()
    header = EnvelopeHeader("probe-1", "boot-1")
    signed = sign_batch(key, header, [encode_body(conn()), encode_body(Weird(2.0, "x"))], 41)
    assert [s for s, _ in signed.records] == [41, 42]
    sig, canonical = split_signed(signed.records[0][1])
    key.verify_key.verify(canonical, sig)
    record = decode_canonical(canonical)
    assert (record.probe_id, record.boot_id, record.seq, record.ts, record.kind) == ("probe-1", "boot-1", 41, 1.5, "conn")
    assert record.as_json_object()["id.orig_h"] == "10.0.0.1"
    assert canonical == canonical_bytes(header, 41, 1.5, "conn", encode_body(conn()).body)


@pytest.mark.parametrize("data", [b"", b"\x93\x01\x02\x03", msgpack.packb([2, "p", "b", 1, 1.0, "k", {}]), msgpack.packb([1, "p", "b", -1, 1.0, "k", {}]), msgpack.packb([1, "p", "b", 1, 1, "k", {}])])
def test_malformed_envelopes_are_refused(data):
    with pytest.raises(MalformedEvent):
        decode_canonical(data)


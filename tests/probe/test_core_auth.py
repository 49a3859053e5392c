"""The Core's authentication: certificate checks with reasons, key history, boot ranges."""

from __future__ import annotations

import os
import time

import nacl.signing
import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from probe.core.auth import AuthRefused, Authenticator, BootLedger, pin_rejected_seqs, replay_policy
from probe.core.ingest import apply_events, verify_records
from protocols import wire
from protocols.events import EnvelopeHeader, Weird, encode_body
from protocols.signing import sign_batch
from storage.core_store import ProbeAccount
from tests.certs import DAY, der, make_ca, make_cert, make_crl, pem

NOW = time.time()
CA = make_ca("core-ca", NOW - 30 * DAY)
NONCE = b"n" * 32


def nacl_key(private) -> nacl.signing.SigningKey:
    from cryptography.hazmat.primitives import serialization

    return nacl.signing.SigningKey(private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()))


def hello(key: nacl.signing.SigningKey, probe_id: str = "p1", cert: bytes | None = None, boot: str = "b1", nonce: bytes = NONCE) -> wire.Hello:
    public = bytes(key.verify_key)
    proof = key.sign(wire.hello_proof_message(nonce, probe_id, boot, public)).signature
    return wire.Hello(probe_id, boot, public, proof, 0, 0, cert)


@pytest.fixture
def core_dir(tmp_path):
    path = tmp_path / "core"
    path.mkdir()
    (tmp_path / "ca.pem").write_bytes(CA.pem)
    return str(path)


def ca_auth(core_dir: str, crl: bytes | None = None) -> Authenticator:
    root = os.path.dirname(core_dir)
    crl_path = None
    if crl is not None:
        crl_path = os.path.join(root, "crl.pem")
        with open(crl_path, "wb") as fh:
            fh.write(crl)
    return Authenticator(core_dir, ca_path=os.path.join(root, "ca.pem"), crl_path=crl_path)


def refused(auth: Authenticator, h: wire.Hello, peer: bytes | None = None) -> str:
    with pytest.raises(AuthRefused) as caught:
        auth.authenticate(h, NONCE, peer)
    return caught.value.code


def test_a_probe_certificate_from_the_ca_authenticates_and_gives_the_event_key(core_dir):
    cert, private = make_cert(CA, "p1")
    key = nacl_key(private)
    session = ca_auth(core_dir).authenticate(hello(key, cert=pem(cert)), NONCE, None)
    assert session.probe_id == "p1" and session.cert.serial == cert.serial_number
    record = sign_batch(key, EnvelopeHeader("p1", "b1"), [encode_body(Weird(1.0, "w"))], 1).records[0][1]
    assert session.keys.verify(record) == record[64:]


def test_each_certificate_problem_is_refused_with_its_own_code(core_dir):
    auth = ca_auth(core_dir)
    good, private = make_cert(CA, "p1")
    key = nacl_key(private)
    other_ca = make_ca("core-ca", NOW - DAY)
    foreign, fp = make_cert(other_ca, "p1")
    assert refused(auth, hello(nacl_key(fp), cert=pem(foreign))) == "unknown_ca"
    expired, ep = make_cert(CA, "p1", start=NOW - 10 * DAY, days=1)
    assert refused(auth, hello(nacl_key(ep), cert=pem(expired))) == "cert_expired"
    early, yp = make_cert(CA, "p1", start=NOW + DAY)
    assert refused(auth, hello(nacl_key(yp), cert=pem(early))) == "cert_not_yet_valid"
    assert refused(auth, hello(key, "p2", cert=pem(good))) == "probe_id_mismatch"
    assert refused(auth, hello(nacl.signing.SigningKey.generate(), cert=pem(good))) == "key_mismatch"
    core, cp = make_cert(CA, "p1", usage=ExtendedKeyUsageOID.SERVER_AUTH)
    assert refused(auth, hello(nacl_key(cp), cert=pem(core))) == "wrong_purpose"
    assert refused(auth, hello(key)) == "bad_certificate"  # no certificate at all
    assert refused(auth, hello(key, cert=pem(good), nonce=b"x" * 32)) == "auth_failed"  # proof over another nonce
    assert refused(auth, hello(key, "bad id!", cert=pem(good))) == "auth_failed"


def test_the_tls_certificate_is_the_one_checked_and_the_hello_must_not_differ(core_dir):
    auth = ca_auth(core_dir)
    cert, private = make_cert(CA, "p1")
    other, _ = make_cert(CA, "p1")
    key = nacl_key(private)
    assert auth.authenticate(hello(key), NONCE, der(cert)).cert.serial == cert.serial_number
    assert refused(auth, hello(key, cert=pem(other)), der(cert)) == "auth_failed"


def test_a_revocation_list_refuses_and_is_reloaded_when_its_file_changes(core_dir):
    cert, private = make_cert(CA, "p1")
    key = nacl_key(private)
    auth = ca_auth(core_dir, make_crl(CA, []))
    assert auth.authenticate(hello(key, cert=pem(cert)), NONCE, None)
    crl_path = auth.crl_path
    with open(crl_path + ".new", "wb") as fh:
        fh.write(make_crl(CA, [cert.serial_number]))
    os.replace(crl_path + ".new", crl_path)
    assert refused(auth, hello(key, cert=pem(cert))) == "cert_revoked"
    # a damaged revocation list keeps the last good one
    with open(crl_path, "wb") as fh:
        fh.write(b"not a crl")
    assert auth.crl_changed() is False
    assert refused(auth, hello(key, cert=pem(cert))) == "cert_revoked"


def test_a_crl_of_another_ca_stops_the_core_from_starting(core_dir):
    with pytest.raises(ValueError):
        ca_auth(core_dir, make_crl(make_ca("core-ca"), []))


def test_events_signed_before_a_rotation_verify_with_the_earlier_key_unless_revoked(core_dir):
    cert1, p1 = make_cert(CA, "p1")
    cert2, p2 = make_cert(CA, "p1")
    k1, k2 = nacl_key(p1), nacl_key(p2)
    auth = ca_auth(core_dir, make_crl(CA, []))
    auth.authenticate(hello(k1, cert=pem(cert1)), NONCE, None)
    old_event = sign_batch(k1, EnvelopeHeader("p1", "b1"), [encode_body(Weird(1.0, "before"))], 1).records[0][1]
    restarted = ca_auth(core_dir, make_crl(CA, []))  # the key history is on disk
    session = restarted.authenticate(hello(k2, cert=pem(cert2)), NONCE, None)
    assert session.keys.verify(old_event) == old_event[64:]
    revoked = ca_auth(core_dir, make_crl(CA, [cert1.serial_number])).authenticate(hello(k2, cert=pem(cert2)), NONCE, None)
    checked = verify_records([old_event], "p1", revoked.keys)
    assert checked[0][2] == wire.ErrorCode.BAD_SIGNATURE


def test_pinned_mode_refuses_unknown_probes_and_other_keys(core_dir):
    auth = Authenticator(core_dir)
    key = nacl.signing.SigningKey.generate()
    assert refused(auth, hello(key)) == "unknown_probe"
    auth.trust.enroll("p1", key.verify_key.encode().hex())
    assert auth.authenticate(hello(key), NONCE, None).probe_id == "p1"
    assert refused(auth, hello(nacl.signing.SigningKey.generate())) == "auth_failed"


def test_boot_ranges_refuse_a_sequence_an_older_boot_cannot_have_assigned(tmp_path):
    ledger = BootLedger(str(tmp_path))
    starts, warning = ledger.note("p1", "A", 1, 0)
    assert warning is None
    starts, _ = ledger.note("p1", "B", 65_537, 500)
    policy = replay_policy(starts, "B")

    def event(boot: str, seq: int):
        from protocols.events.envelope import EventRecord

        return EventRecord("p1", boot, seq, 1.0, "weird", {})

    assert policy(event("A", 10)) is None
    assert policy(event("B", 70_000)) is None
    assert policy(event("A", 70_000)) == "replayed_sequence"  # boot A claims a number of boot B's range
    assert policy(event("B", 10)) == "replayed_sequence"  # below boot B's start
    assert policy(event("never-seen", 10)) is None  # a boot that never connected is older than B
    assert policy(event("never-seen", 65_537)) == "replayed_sequence"
    # a boot whose first sequence is not above the others: the sequence space went back
    starts, warning = ledger.note("p1", "C", 2, 70_100)
    assert warning and starts["C"] == 70_101
    assert BootLedger(str(tmp_path)).starts("p1") == starts


def test_a_replay_is_refused_in_ingest_and_does_not_move_the_stream_on(tmp_path):
    key = nacl.signing.SigningKey.generate()
    policy = replay_policy({"A": 1, "B": 100}, "B")
    replay = sign_batch(key, EnvelopeHeader("p1", "A"), [encode_body(Weird(1.0, "w"))], 150).records
    good = sign_batch(key, EnvelopeHeader("p1", "B"), [encode_body(Weird(1.0, "w"))], 100).records
    account = ProbeAccount("p1", acked=99)
    result = apply_events(account, verify_records([r for _, r in replay + good], "p1", key.verify_key, policy), set())
    assert result.rejected == [(150, "replayed_sequence")]
    assert [s for s, _ in result.store] == [100] and account.acked == 100


def test_a_damaged_record_takes_the_sequence_its_good_neighbours_pin():
    ok = lambda seq: (seq, b"r", None)  # noqa: E731
    bad = lambda seq: (seq, None, "bad_signature")  # noqa: E731
    assert pin_rejected_seqs([ok(4), bad(999), ok(6)])[1][0] == 5  # a damaged seq field
    assert pin_rejected_seqs([ok(4), (-1, None, "bad_event"), (-1, None, "bad_event"), ok(7)])[1:3] == [(5, None, "bad_event"), (6, None, "bad_event")]
    assert pin_rejected_seqs([ok(4), bad(5), ok(9)])[1][0] == 5  # not pinned, but plausible
    assert pin_rejected_seqs([ok(4), bad(12), ok(9)])[1][0] == -1  # implausible: unknown
    assert pin_rejected_seqs([bad(3)]) == [bad(3)]
    assert pin_rejected_seqs([ok(1), (50, None, "replayed_sequence")])[1][0] == 50  # well signed: trusted

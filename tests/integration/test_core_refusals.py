"""The Core process refuses, counts and logs each identity problem, spoken to with the real protocol.

A bare protocol client (the real frame codec over a real WebSocket on loopback) plays
probes with bad certificates, a replaying probe and a forging one.
"""

from __future__ import annotations

import inspect
import json
import time

import nacl.signing
import pytest
from websockets.sync.client import connect

from probe.identity import read_private_key
from protocols import wire
from protocols.events import EnvelopeHeader, Weird, encode_body
from protocols.signing import sign_batch
from tests.integration.identity_rig import CoreProcess, Pki, wait_for


#: websockets 17 wants ``legacy=True`` for a connection kept outside a ``with`` block
_LEGACY = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}


class BareProbe:
    """One protocol session: challenge, hello, then event frames answered by acks."""

    def __init__(self, url: str, probe_id: str, key: nacl.signing.SigningKey, cert: bytes | None, boot: str, boot_seq: int) -> None:
        self.key, self.probe_id, self.boot = key, probe_id, boot
        self.ws = connect(url, subprotocols=[wire.SUBPROTOCOL], compression=None, open_timeout=5, **_LEGACY)
        challenge = wire.decode(self.ws.recv(timeout=5))
        public = bytes(key.verify_key)
        proof = key.sign(wire.hello_proof_message(challenge.nonce, probe_id, boot, public)).signature
        self.ws.send(wire.encode(wire.Hello(probe_id, boot, public, proof, 0, 0, cert, boot_seq)))
        self.answer = wire.decode(self.ws.recv(timeout=5))

    def events(self, first_seq: int, n: int, boot: str | None = None) -> list[bytes]:
        header = EnvelopeHeader(self.probe_id, boot or self.boot)
        return [r for _, r in sign_batch(self.key, header, [encode_body(Weird(1.0 + i, f"e{i}")) for i in range(n)], first_seq).records]

    def send(self, records: list[bytes]) -> wire.Ack:
        self.ws.send(wire.encode(wire.Events(tuple(records))))
        return wire.decode(self.ws.recv(timeout=5))

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def setup(tmp_path):
    ca = Pki(str(tmp_path))
    core = CoreProcess(str(tmp_path / "core"), client_ca=ca.ca_pem, crl=ca.crl)
    core.start()
    yield ca, core
    core.stop()


def hello_answer(core: CoreProcess, issued, probe_id: str = "p1") -> wire.Frame:
    with open(issued.cert_path, "rb") as fh:
        cert = fh.read()
    probe = BareProbe(core.url, probe_id, read_private_key(issued.key_path), cert, "boot", 1)
    probe.close()
    return probe.answer


def test_each_certificate_problem_is_refused_counted_and_logged(setup, tmp_path):
    ca, core = setup
    rogue = Pki(str(tmp_path / "rogue"), "rogue-ca")
    expired = ca.probe("p1", "expired", days=1, now=time.time() - 5 * 86400)
    early = ca.probe("p1", "early", now=time.time() + 2 * 86400)
    revoked = ca.probe("p1", "revoked")
    ca.revoke(revoked)
    cases = {
        "unknown_ca": (rogue.probe("p1", "rogue-certs"), "p1"),
        "cert_expired": (expired, "p1"),
        "cert_not_yet_valid": (early, "p1"),
        "probe_id_mismatch": (ca.probe("p1", "good"), "p2"),
        "cert_revoked": (revoked, "p1"),
    }
    for code, (issued, probe_id) in cases.items():
        answer = hello_answer(core, issued, probe_id)
        assert isinstance(answer, wire.Error) and answer.code == code and answer.fatal, code
        assert code in wire.IDENTITY_CODES  # the probe halts on each
    counters = wait_for(lambda: (c := core.counters()).get("refused:auth:cert_revoked") and c)
    assert {k: v for k, v in counters.items() if k.startswith("refused:")} == {f"refused:auth:{code}": 1 for code in cases}
    logged = [json.loads(json.loads(line)["message"]) for line in core.log().splitlines() if "probe_refused" in line]
    assert {entry["code"] for entry in logged} == set(cases)
    assert all(entry["reason"] for entry in logged)
    assert core.counters().get("event_frames", 0) == 0


def test_replayed_sequences_of_an_old_boot_and_forged_events_are_refused(setup):
    ca, core = setup
    issued = ca.probe("p1", "certs")
    key = read_private_key(issued.key_path)
    with open(issued.cert_path, "rb") as fh:
        cert = fh.read()
    first = BareProbe(core.url, "p1", key, cert, "boot-a", 1)
    assert isinstance(first.answer, wire.Welcome)
    assert first.send(first.events(1, 5)).rejected == ()
    first.close()
    second = BareProbe(core.url, "p1", key, cert, "boot-b", 100)
    assert second.send(second.events(100, 3)).rejected == ()
    # a well-signed event of the old boot, numbered in the new boot's range
    ack = second.send(second.events(103, 1, boot="boot-a"))
    assert ack.rejected == ((103, "replayed_sequence"),)
    # the new boot claiming a number below its own start
    assert second.send(second.events(50, 1)).rejected == ((50, "replayed_sequence"),)
    # an event signed with another key
    forger = BareProbe.__new__(BareProbe)
    forger.key, forger.probe_id, forger.boot = nacl.signing.SigningKey.generate(), "p1", "boot-b"
    ack = second.send(forger.events(103, 1))
    assert ack.rejected == ((103, "bad_signature"),)
    assert second.send(second.events(103, 1)).rejected == ()  # the genuine one is taken
    second.close()
    counters = wait_for(lambda: (c := core.counters()).get("events_rejected:bad_signature") and c)
    assert counters["events_rejected:replayed_sequence"] == 2 and counters["events_rejected:bad_signature"] == 1
    assert [seq for _, seq, _ in core.stored()] == [1, 2, 3, 4, 5, 100, 101, 102, 103]
    assert "replayed_sequence" in core.log()

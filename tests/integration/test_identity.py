"""Identity with real parts: a PKI on disk, a Core process (TLS), the delivery actors, a proxy.

Each test counts what reaches the Core (its counters file and its store), not what the
probe believes it sent.
"""

from __future__ import annotations

import logging
import os
import time

import nacl.signing
import pytest

from probe.identity import ProbeIdentity
from protocols.events import EncodedEvent, Weird, encode_body
from protocols.events.envelope import decode_canonical, split_signed
from tests.integration.flip_proxy import FlippingProxy
from tests.integration.identity_rig import CoreProcess, IdentityRig, Pki, wait_for


def weirds(n: int, start: int = 0) -> list:
    return [encode_body(Weird(1_700_000_000.0 + i, f"w{i}")) for i in range(start, start + n)]


@pytest.fixture
def pki_root(tmp_path):
    return Pki(str(tmp_path))


@pytest.fixture
def cleanup():
    items: list = []
    yield items
    for item in reversed(items):
        item.stop() if hasattr(item, "stop") else item.close()


def names(core: CoreProcess) -> list[str]:
    return [decode_canonical(split_signed(rec)[1]).body["name"] for _, _, rec in core.stored()]


def start_core(tmp_path, cleanup, **kwargs) -> CoreProcess:
    core = CoreProcess(str(tmp_path / "core"), **kwargs)
    core.start()
    cleanup.append(core)
    return core


def test_a_key_file_corrupted_while_running_halts_within_one_batch(tmp_path, pki_root, cleanup, caplog):
    core = start_core(tmp_path, cleanup, client_ca=pki_root.ca_pem)
    issued = pki_root.probe("p1", "certs")
    identity = ProbeIdentity("p1", issued.key_path, cert_path=issued.cert_path, ca_path=pki_root.ca_pem)
    rig = IdentityRig(str(tmp_path / "probe"), identity, core.url)
    cleanup.append(rig)
    rig.feed("t", 0, weirds(100))
    assert wait_for(rig.delivered)
    frames_before = wait_for(lambda: core.counters().get("event_frames"))
    assert frames_before
    good_key = open(issued.key_path, "rb").read()

    with open(issued.key_path, "r+b") as fh:  # a disk error scribbles over the key file
        fh.seek(20)
        fh.write(b"\xff" * 16)
    caplog.set_level(logging.ERROR, logger="probe.identity")
    rig.feed("t", 100, weirds(100, 100))
    assert wait_for(lambda: rig.gate.halted and rig.settled())
    rig.feed("t", 200, weirds(100, 200))  # capture goes on: buffered, not sent
    assert wait_for(lambda: rig.settled() and rig.buffer.pending == 200)
    time.sleep(0.5)

    assert core.counters()["event_frames"] == frames_before  # not one more event frame
    assert names(core) == [f"w{i}" for i in range(100)]
    assert rig.metrics.counter("identity_failures_total", reason="key_corrupt") == 1
    assert rig.metrics.gauge("transmission_halted") == 1.0
    status = rig.guard.status()
    assert status["state"] == "failed" and status["reason"] == "key_corrupt" and status["transmission"]["halted"]
    assert any(getattr(r, "alert", None) == "identity" for r in caplog.records)

    assert not rig.guard.reload().ok  # still corrupt: refused, still halted
    assert rig.gate.halted
    with open(issued.key_path + ".new", "wb") as fh:
        fh.write(good_key)
    os.chmod(issued.key_path + ".new", 0o600)
    os.replace(issued.key_path + ".new", issued.key_path)
    result = rig.guard.reload()
    assert result.ok and result.resumed
    assert wait_for(rig.delivered)
    assert names(core) == [f"w{i}" for i in range(300)]
    assert rig.buffer.accounts().balanced and rig.buffer.accounts().delivered == 300


@pytest.mark.parametrize("offset, code", [(-3, "bad_signature"), (65, "bad_event")])
def test_a_record_damaged_in_transit_is_refused_and_the_spool_copy_is_stored_once(tmp_path, pki_root, cleanup, offset, code):
    core = start_core(tmp_path, cleanup, client_ca=pki_root.ca_pem)
    proxy = FlippingProxy(core.port, offset)
    cleanup.append(proxy)
    issued = pki_root.probe("p1", "certs")
    identity = ProbeIdentity("p1", issued.key_path, cert_path=issued.cert_path, ca_path=pki_root.ca_pem)
    rig = IdentityRig(str(tmp_path / "probe"), identity, f"ws://127.0.0.1:{proxy.port}")
    cleanup.append(rig)
    rig.feed("t", 0, weirds(50))
    assert wait_for(rig.delivered)
    assert len(proxy.flipped) == 1
    assert wait_for(lambda: core.counters().get(f"events_rejected:{code}")) == 1  # the damaged copy, refused with its reason
    stored = core.stored()
    assert [seq for _, seq, _ in stored] == list(range(1, 51))  # each once, none missing
    assert proxy.flipped[0] in [rec for _, _, rec in stored]  # the good copy from the spool
    key = nacl.signing.VerifyKey(issued.info.public_key)
    assert all(key.verify(rec) for _, _, rec in stored)
    assert rig.metrics.total("events_resent_total") == 1
    accounts = rig.buffer.accounts()
    assert accounts.delivered == 50 and accounts.dropped == {} and accounts.pending == 0 and accounts.balanced


def test_a_record_refused_again_after_its_resend_is_dropped_and_accounted(tmp_path, pki_root, cleanup, caplog):
    core = start_core(tmp_path, cleanup, client_ca=pki_root.ca_pem)
    proxy = FlippingProxy(core.port, -3, every_copy=True)
    cleanup.append(proxy)
    issued = pki_root.probe("p1", "certs")
    identity = ProbeIdentity("p1", issued.key_path, cert_path=issued.cert_path, ca_path=pki_root.ca_pem)
    rig = IdentityRig(str(tmp_path / "probe"), identity, f"ws://127.0.0.1:{proxy.port}")
    cleanup.append(rig)
    caplog.set_level(logging.WARNING, logger="probe.uplink")
    rig.feed("t", 0, weirds(50))
    assert wait_for(rig.delivered)
    assert len(proxy.flipped) == 2  # the original and its one re-send
    assert wait_for(lambda: core.counters().get("events_rejected:bad_signature")) == 2
    assert [seq for _, seq, _ in core.stored()] == [s for s in range(1, 51) if s != 2]
    accounts = rig.buffer.accounts()
    assert accounts.dropped == {"rejected_bad_signature": 1} and accounts.delivered == 49 and accounts.balanced
    assert rig.metrics.counter("events_dropped_total", reason="rejected_bad_signature") == 1
    assert any(getattr(r, "event", None) == "event_dropped" for r in caplog.records)


def test_a_certificate_of_another_ca_is_refused_by_the_cores_tls_and_the_probe_halts(tmp_path, pki_root, cleanup):
    core = start_core(tmp_path, cleanup, tls=pki_root.core(), client_ca=pki_root.ca_pem)
    rogue = Pki(str(tmp_path / "rogue"), "rogue-ca")
    issued = rogue.probe("p1", "certs")
    # the probe trusts its own CA for its certificate and the real CA for the Core
    identity = ProbeIdentity("p1", issued.key_path, cert_path=issued.cert_path, ca_path=rogue.ca_pem, core_ca_path=pki_root.ca_pem)
    assert identity.problem is None
    rig = IdentityRig(str(tmp_path / "probe"), identity, core.url)
    cleanup.append(rig)
    rig.feed("t", 0, weirds(50))
    assert wait_for(lambda: rig.gate.halted)
    assert wait_for(lambda: core.counters().get("refused:tls:unknown_ca", 0) >= 1)
    assert identity.problem.reason == "unknown_ca"
    assert rig.metrics.counter("identity_failures_total", reason="unknown_ca") == 1
    assert wait_for(lambda: rig.settled() and rig.buffer.pending == 50)
    assert core.counters().get("event_frames", 0) == 0 and core.stored() == []


def test_a_core_certificate_the_probe_cannot_verify_is_a_connection_failure_not_a_halt(tmp_path, pki_root, cleanup):
    core = start_core(tmp_path, cleanup, tls=Pki(str(tmp_path / "impostor"), "impostor-ca").core(), client_ca=pki_root.ca_pem)
    issued = pki_root.probe("p1", "certs")
    identity = ProbeIdentity("p1", issued.key_path, cert_path=issued.cert_path, ca_path=pki_root.ca_pem)
    rig = IdentityRig(str(tmp_path / "probe"), identity, core.url)
    cleanup.append(rig)
    rig.feed("t", 0, weirds(20))
    assert wait_for(lambda: rig.metrics.total("uplink_core_certificate_failures_total") >= 2)
    assert not rig.gate.halted and identity.problem is None  # our identity is fine: keep trying
    assert rig.buffer.pending == 20 and core.counters().get("event_frames", 0) == 0


def test_a_revoked_certificate_ends_the_session_and_is_refused_at_the_next_hello(tmp_path, pki_root, cleanup):
    core = start_core(tmp_path, cleanup, tls=pki_root.core(), client_ca=pki_root.ca_pem, crl=pki_root.crl)
    issued = pki_root.probe("p1", "certs")
    identity = ProbeIdentity("p1", issued.key_path, cert_path=issued.cert_path, ca_path=pki_root.ca_pem)
    rig = IdentityRig(str(tmp_path / "probe"), identity, core.url)
    cleanup.append(rig)
    rig.feed("t", 0, weirds(40))
    assert wait_for(rig.delivered)

    pki_root.revoke(issued)  # the Core notices the new revocation list by itself
    assert wait_for(lambda: rig.gate.halted)
    assert identity.problem.reason == "cert_revoked"
    assert wait_for(lambda: core.counters().get("refused:session:cert_revoked")) == 1
    frames = core.counters()["event_frames"]
    rig.feed("t", 40, weirds(40, 40))
    assert wait_for(lambda: rig.settled() and rig.buffer.pending == 40)

    # the probe itself cannot see the revocation: its reload passes, the Core refuses the hello
    assert rig.guard.reload().ok
    assert wait_for(lambda: core.counters().get("refused:auth:cert_revoked", 0) == 1)
    assert wait_for(lambda: rig.gate.halted)
    time.sleep(0.3)
    assert core.counters()["event_frames"] == frames and len(core.stored()) == 40
    assert "cert_revoked" in core.log()


def test_rotation_to_a_new_key_without_restart_keeps_earlier_events_verifiable(tmp_path, pki_root, cleanup):
    core = start_core(tmp_path, cleanup, tls=pki_root.core(), client_ca=pki_root.ca_pem, crl=pki_root.crl)
    issued = pki_root.probe("p1", "certs")
    identity = ProbeIdentity("p1", issued.key_path, cert_path=issued.cert_path, ca_path=pki_root.ca_pem)
    rig = IdentityRig(str(tmp_path / "probe"), identity, core.url)
    cleanup.append(rig)
    rig.feed("t", 0, weirds(30))
    assert wait_for(rig.delivered)
    core.stop()  # the Core goes away for a while: events signed with the old key wait in the spool
    rig.feed("t", 30, weirds(30, 30))
    assert wait_for(lambda: rig.settled() and rig.buffer.pending == 30)

    new = pki_root.probe("p1", "new-certs")
    os.replace(new.key_path, issued.key_path)
    os.replace(new.cert_path, issued.cert_path)
    result = rig.guard.reload()
    assert result.ok and not result.resumed
    rig.feed("t", 60, weirds(30, 60))  # signed with the new key
    assert wait_for(lambda: rig.settled() and rig.buffer.pending == 60)
    core.start()
    assert wait_for(rig.delivered, timeout=20)

    stored = core.stored()
    assert [seq for _, seq, _ in stored] == list(range(1, 91))
    old_key, new_key = nacl.signing.VerifyKey(issued.info.public_key), nacl.signing.VerifyKey(new.info.public_key)
    assert all(old_key.verify(rec) for _, seq, rec in stored if seq <= 60)
    assert all(new_key.verify(rec) for _, seq, rec in stored if seq > 60)
    assert core.counters().get("events_rejected", 0) == 0


def test_an_event_that_cannot_be_signed_is_dropped_counted_and_the_next_goes_on(tmp_path, cleanup):
    core = CoreProcess(str(tmp_path / "core"))
    identity = ProbeIdentity("p1", str(tmp_path / "probe.key"))
    from probe.core.trust import TrustStore

    TrustStore(os.path.join(core.data_dir, "trusted")).enroll("p1", identity.public_key_hex)
    core.start()
    cleanup.append(core)
    rig = IdentityRig(str(tmp_path / "probe"), identity, core.url)
    cleanup.append(rig)
    events = weirds(3)
    rig.feed("t", 0, [events[0], EncodedEvent(1.0, "weird", None), events[1], events[2]])  # type: ignore[arg-type]
    assert wait_for(rig.delivered)
    assert [seq for _, seq, _ in core.stored()] == [1, 2, 3]
    assert rig.metrics.total("signature_failures_total") == 1
    accounts = rig.buffer.accounts()
    assert accounts.dropped == {"signature": 1} and accounts.delivered == 3 and accounts.balanced
    assert not rig.gate.halted


@pytest.fixture
def sample_pcap():
    from probe.commands.run import sample_capture

    return sample_capture()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_an_expired_certificate_sends_nothing_until_sighup_reloads_a_good_one(tmp_path, pki_root, cleanup, sample_pcap):
    import signal

    from probe.app import ProbeApp
    from probe.commands.run import install_reload_signal
    from probe.config import build_config

    core = start_core(tmp_path, cleanup, tls=pki_root.core(), client_ca=pki_root.ca_pem, crl=pki_root.crl)
    good = pki_root.probe("p1", "certs")
    expired = pki_root.probe("p1", "certs", key_path=good.key_path, replace=True, days=1, now=time.time() - 5 * 86400)
    config = build_config(
        {
            "probe": {"id": "p1", "data_dir": str(tmp_path / "probe")},
            "capture": {"pcap": sample_pcap},
            "identity": {"key": good.key_path, "cert": expired.cert_path, "ca": pki_root.ca_pem},
            "uplink": {"core_url": core.url},
        }
    )
    app = ProbeApp(config)
    previous = install_reload_signal(app)
    try:
        app.start()
        assert app.wait() == "halted"
        created = app.accounts().created
        assert created > 100 and app.buffer.pending == created  # captured, dissected, signed, spooled
        assert app.identity_status()["reason"] == "cert_expired"
        assert app.metrics.counter("identity_failures_total", reason="cert_expired") == 1
        time.sleep(0.3)
        assert core.counters().get("event_frames", 0) == 0 and core.counters().get("connections", 0) == 0

        pki_root.probe("p1", "certs", key_path=good.key_path, replace=True)  # renewed, same key
        os.kill(os.getpid(), signal.SIGHUP)
        assert wait_for(lambda: not app.gate.halted)
        assert app.wait() == "complete"
        # everything created is delivered; an alert's notice (the halt clearing) may have joined meanwhile
        final = app.accounts()
        assert len(core.stored()) == final.created == final.delivered >= created
        assert final.balanced and final.created - created <= 2
    finally:
        app.stop()
        signal.signal(signal.SIGHUP, previous)

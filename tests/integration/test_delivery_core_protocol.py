"""The reference Core over a real socket: every bad frame answered with its code and counted,
forged events rejected, duplicates discarded, credit enforced, backpressure on demand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import msgpack
import nacl.signing
import pytest
from websockets.sync.client import connect

from actors.uplink import _CONNECT_EXTRA
from probe.core.embedded import EmbeddedCore
from protocols import wire
from protocols.events import EnvelopeHeader, Weird, encode_body
from protocols.signing import sign_batch
from storage.core_store import CoreStore
from tests.integration.delivery_rig import core_stats

PROBE = "proto-probe"


class Client:
    """A hand-driven probe side of protocol v1."""

    def __init__(self, url: str, key: nacl.signing.SigningKey, probe_id: str = PROBE, boot: str = "boot-1") -> None:
        self.key = key
        self.header = EnvelopeHeader(probe_id, boot)
        self.ws = connect(url, subprotocols=[wire.SUBPROTOCOL], compression=None, max_size=wire.MAX_FRAME, open_timeout=5, **_CONNECT_EXTRA)
        challenge = self.recv()
        assert isinstance(challenge, wire.Challenge)
        public = bytes(key.verify_key)
        proof = key.sign(wire.hello_proof_message(challenge.nonce, probe_id, boot, public)).signature
        self.send(wire.Hello(probe_id, boot, public, proof, 0, 0))
        self.welcome = self.recv()
        assert isinstance(self.welcome, wire.Welcome), self.welcome

    def send(self, frame: wire.Frame) -> None:
        self.ws.send(wire.encode(frame))

    def recv(self, timeout: float = 5.0) -> wire.Frame:
        return wire.decode(self.ws.recv(timeout=timeout))

    def expect(self, kind: type, timeout: float = 5.0) -> wire.Frame:
        """The next frame of ``kind``, skipping backpressure notices."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            if isinstance(frame, kind):
                return frame
            assert isinstance(frame, wire.Backpressure), frame

    def records(self, first: int, n: int) -> list[bytes]:
        events = [encode_body(Weird(1_700_000_000.0 + s, f"w{s}")) for s in range(first, first + n)]
        return [r for _, r in sign_batch(self.key, self.header, events, first).records]

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def core(tmp_path):
    cores: list[EmbeddedCore] = []

    def start(*args: str) -> tuple[str, EmbeddedCore, nacl.signing.SigningKey]:
        key = nacl.signing.SigningKey.generate()
        c = EmbeddedCore(str(tmp_path / f"core{len(cores)}"), args=args)
        c.enroll(PROBE, key.verify_key.encode().hex())
        cores.append(c)
        return c.start(), c, key

    yield start
    for c in cores:
        c.stop()


def account(c: EmbeddedCore):
    store = CoreStore(os.path.join(c.data_dir, "store"))
    try:
        return store.account(PROBE)
    finally:
        store.close()


def test_every_bad_frame_gets_its_code_and_a_counter_and_the_session_goes_on(core):
    url, c, key = core()
    client = Client(url, key)
    assert client.welcome == wire.Welcome(0, 20_000)
    client.ws.send("a text message")
    client.ws.send(b"\xc1 not msgpack")
    client.ws.send(msgpack.packb({"t": "events", "records": "not a list"}))
    client.ws.send(msgpack.packb({"t": "teleport"}))
    client.send(wire.Challenge(b"n" * 32, "me"))  # a Core's frame, from a probe
    codes = [client.expect(wire.Error) for _ in range(5)]
    assert [(e.code, e.fatal) for e in codes] == [
        ("bad_frame", False), ("bad_frame", False), ("bad_frame", False), ("unknown_frame", False), ("unexpected_frame", False)
    ]
    client.send(wire.Events(tuple(client.records(1, 10))))
    assert client.expect(wire.Ack) == wire.Ack(10, 20_000, ())
    client.close()
    time.sleep(0.3)
    a = account(c)
    assert a.bad_frames == {"bad_frame": 3, "unknown_frame": 1, "unexpected_frame": 1}
    assert a.stored == 10
    time.sleep(1.2)
    live = core_stats(c.data_dir)["counters"]
    assert live["bad_frames:bad_frame"] == 3 and live["bad_frames:unknown_frame"] == 1


def test_hello_refusals_are_fatal_with_identity_codes(core):
    url, c, key = core()
    with pytest.raises(AssertionError):
        Client(url, nacl.signing.SigningKey.generate())  # not the enrolled key
    ws = connect(url, subprotocols=[wire.SUBPROTOCOL], compression=None, **_CONNECT_EXTRA)
    wire.decode(ws.recv(timeout=5))
    ws.send(wire.encode(wire.Events(())))  # no hello first
    refused = wire.decode(ws.recv(timeout=5))
    assert (refused.code, refused.fatal) == ("unexpected_frame", True)
    ws.close()
    with pytest.raises(AssertionError):
        Client(url, key, probe_id="not-enrolled")
    time.sleep(1.2)
    counters = core_stats(c.data_dir)["counters"]
    assert counters["refused:auth:auth_failed"] == 1
    assert counters["refused:auth:unknown_probe"] == 1
    assert counters["refused:bad_hello:unexpected_frame"] == 1


def test_forged_events_are_rejected_counted_and_the_rest_stored(core):
    url, c, key = core()
    client = Client(url, key)
    records = client.records(1, 5)
    forged = bytearray(records[2])
    at = forged.rindex(b"w3")
    forged[at + 1 : at + 2] = b"9"  # the event's name, changed after signing
    foreign = Client.records(type("K", (), {"key": nacl.signing.SigningKey.generate(), "header": client.header})(), 4, 1)
    client.send(wire.Events((records[0], records[1], bytes(forged), foreign[0], records[4])))
    ack = client.expect(wire.Ack)
    assert ack.seq == 5 and sorted(ack.rejected) == [(3, "bad_signature"), (4, "bad_signature")]
    client.close()
    time.sleep(0.3)
    a = account(c)
    assert a.stored == 3 and a.rejected == {"bad_signature": 2} and a.received == 5


def test_duplicates_are_discarded_and_a_reused_sequence_is_flagged(core):
    url, c, key = core()
    client = Client(url, key)
    client.send(wire.Events(tuple(client.records(1, 100))))
    assert client.expect(wire.Ack).seq == 100
    client.close()
    again = Client(url, key, boot="boot-2")  # as after a kill: a range the Core already holds comes again
    assert again.welcome.resume == 100
    again.send(wire.Events(tuple(client.records(51, 100))))
    assert again.expect(wire.Ack).seq == 150
    other = Client.records(type("K", (), {"key": key, "header": EnvelopeHeader(PROBE, "boot-3")})(), 10, 1)
    again.send(wire.Events(tuple(other)))  # seq 10 again, but another event
    assert again.expect(wire.Ack).seq == 150
    again.close()
    time.sleep(0.3)
    a = account(c)
    assert (a.stored, a.duplicates, a.conflicts, a.gaps) == (150, 51, 1, 0)
    store = CoreStore(os.path.join(c.data_dir, "store"))
    try:
        assert [s for _, s, _ in store.events(PROBE)] == list(range(1, 151))
    finally:
        store.close()


def test_events_beyond_the_credit_are_refused_and_the_session_closed(core):
    url, c, key = core("--credit", "100", "--high-watermark", "90", "--low-watermark", "10")
    client = Client(url, key)
    assert client.welcome.credit == 100
    client.send(wire.Events(tuple(client.records(1, 150))))
    refused = client.expect(wire.Error)
    assert (refused.code, refused.fatal) == ("over_credit", True)
    client.close()
    time.sleep(0.3)
    a = account(c)
    assert a.stored == 0 and a.bad_frames == {"over_credit": 1}


@pytest.mark.slow
def test_pause_and_resume_at_runtime_through_the_control_command(core):
    url, c, key = core("--pause")
    client = Client(url, key)
    assert client.recv() == wire.Backpressure(True, 0.0), "a paused Core asks for nothing at all"
    client.send(wire.Events(tuple(client.records(1, 50))))
    with pytest.raises(TimeoutError):
        client.expect(wire.Ack, timeout=1.0)
    out = subprocess.run(
        [sys.executable, "-m", "probe", "core", "control", "--data-dir", c.data_dir, "--resume", "--slow-disk-ms", "20"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert '"paused": false' in out
    frames = [client.recv(timeout=5), client.recv(timeout=5)]
    assert wire.Ack(50, 20_000, ()) in frames and wire.Backpressure(False, None) in frames
    client.close()
    time.sleep(1.2)
    live = core_stats(c.data_dir)
    assert live["overload"] == {"paused": False, "rate_limit": None, "slow_disk_ms": 20.0}
    assert live["backpressure"]["episodes"] == 1 and live["backpressure"]["seconds"] >= 1.0
    text = subprocess.run([sys.executable, "-m", "probe", "core", "stats", "--data-dir", c.data_dir], capture_output=True, text=True, check=True).stdout
    assert "stored        50" in text and "backpressure  off" in text and "slow disk 20 ms" in text
    as_json = json.loads(subprocess.run(
        [sys.executable, "-m", "probe", "core", "stats", "--data-dir", c.data_dir, "--json"], capture_output=True, text=True, check=True
    ).stdout)
    assert as_json["probes"][0]["stored"] == 50


def test_a_bad_control_file_is_refused_and_counted_and_the_settings_stay(core):
    url, c, key = core("--rate-limit", "500")
    with open(os.path.join(c.data_dir, "control.json"), "w") as fh:
        fh.write('{"rate_limit": -3}')
    time.sleep(1.5)
    live = core_stats(c.data_dir)
    assert live["counters"]["control_errors"] == 1 and live["overload"]["rate_limit"] == 500.0
    bad = subprocess.run(
        [sys.executable, "-m", "probe", "core", "control", "--data-dir", c.data_dir, "--rate-limit", "0"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "rate_limit" in bad.stderr


def test_the_probe_answers_a_misbehaving_core_with_codes_counts_and_keeps_its_events(tmp_path):
    """A Core that sends garbage and acknowledges what was never sent: the probe refuses, counts, goes on."""
    import threading

    from websockets.sync.server import serve

    from tests.integration.delivery_rig import DeliveryRig, weird_events

    answers: list[wire.Frame] = []
    acked = threading.Event()
    seen: dict = {}

    def handler(ws) -> None:
        ws.send(wire.encode(wire.Challenge(b"n" * 32, "rogue")))
        wire.decode(ws.recv(timeout=5))  # hello
        ws.send(wire.encode(wire.Welcome(0, 1000)))
        ws.send(b"\xc1 garbage")
        ws.send("text")
        ws.send(msgpack.packb({"t": "teleport"}))
        ws.send(wire.encode(wire.Welcome(0, 1000)))
        events = wire.decode(ws.recv(timeout=10))
        while not isinstance(events, wire.Events):
            answers.append(events)
            events = wire.decode(ws.recv(timeout=10))
        last = len(events.records)
        ws.send(wire.encode(wire.Ack(last + 500, 1000)))  # beyond anything sent
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and len(answers) < 5:
            try:
                answers.append(wire.decode(ws.recv(timeout=0.5)))
            except TimeoutError:
                continue
        seen["pending_after_bogus_ack"] = seen["rig"].buffer.pending
        ws.send(wire.encode(wire.Ack(last, 1000)))
        acked.set()
        try:
            while True:
                ws.recv(timeout=5)
        except Exception:  # the probe hangs up at the end of the test
            return

    with serve(handler, "127.0.0.1", 0, subprotocols=[wire.SUBPROTOCOL], compression=None) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        with DeliveryRig(str(tmp_path), core_url=url) as rig:
            seen["rig"] = rig
            rig.feed("rogue", 0, weird_events(10))
            assert acked.wait(15)
            deadline = time.monotonic() + 5
            while rig.buffer.pending and time.monotonic() < deadline:
                time.sleep(0.02)
            bad = rig.metrics.by_label("uplink_bad_frames_total", "code")
            connects = rig.metrics.total("uplink_connects_total")
            pending = rig.buffer.pending
            accounts = rig.buffer.accounts()
        server.shutdown()
    codes = sorted(a.code for a in answers if isinstance(a, wire.Error))
    assert codes == ["bad_frame", "bad_frame", "unexpected_frame", "unexpected_frame", "unknown_frame"], answers
    assert bad == {"bad_frame": 2, "unknown_frame": 1, "unexpected_frame": 2}
    assert connects == 1, "one connection throughout: bad frames do not break it"
    assert seen["pending_after_bogus_ack"] == 10, "the bogus ack deleted nothing"
    assert pending == 0 and accounts.delivered == 10 and accounts.balanced, "the real ack delivered them"


def test_a_slow_disk_delays_every_commit_and_frames_queue_into_group_commits(core):
    url, c, key = core("--slow-disk-ms", "300")
    client = Client(url, key)
    started = time.monotonic()
    for i in range(6):
        client.send(wire.Events(tuple(client.records(1 + 10 * i, 10))))
    acks = [client.expect(wire.Ack, timeout=10)]
    while acks[-1].seq < 60:
        acks.append(client.expect(wire.Ack, timeout=10))
    elapsed = time.monotonic() - started
    client.close()
    time.sleep(1.3)
    commits = core_stats(c.data_dir)["counters"]["commits"]
    assert [a.seq for a in acks] == [10, 20, 30, 40, 50, 60], "one ack per frame, in order"
    assert commits < 6, f"six frames, {commits} commits: frames that queued behind a slow commit share the next"
    assert elapsed >= 0.3 * commits, "each commit took its 300 ms"

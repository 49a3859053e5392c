"""Uplink frame codec: every frame round-trips; every malformed input is a FrameError with a code."""

from __future__ import annotations

import random

import msgpack
import pytest

from protocols import wire

FRAMES = [
    wire.Hello("probe-1", "boot", b"k" * 32, b"s" * 64, 1, 5),
    wire.Hello("probe-1", "boot", b"k" * 32, b"s" * 64, 0, 0, b"-----BEGIN CERTIFICATE-----"),
    wire.Events((b"a" * 70, b"b" * 80)),
    wire.DropReport(((1, 2, "buffer_full"), (5, 9, "unassigned"))),
    wire.Challenge(b"n" * 32, "core"),
    wire.Welcome(0, 100),
    wire.Welcome(300, 100, 300),
    wire.Ack(5, 100, ((3, "bad_signature"),)),
    wire.Backpressure(True, 10.0),
    wire.Backpressure(False),
    wire.Error("bad_frame", "x", True),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_frames_round_trip(frame):
    assert wire.decode(wire.encode(frame)) == frame


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", wire.ErrorCode.BAD_FRAME),
        (b"\xc1", wire.ErrorCode.BAD_FRAME),
        (msgpack.packb([1, 2]), wire.ErrorCode.BAD_FRAME),
        (msgpack.packb({"t": "nope"}), wire.ErrorCode.UNKNOWN_FRAME),
        (msgpack.packb({"t": "welcome", "resume": True, "credit": 1}), wire.ErrorCode.BAD_FRAME),
        (msgpack.packb({"t": "welcome", "resume": -1, "credit": 1}), wire.ErrorCode.BAD_FRAME),
        (msgpack.packb({"t": "welcome", "resume": 1, "credit": 1, "reused_through": -5}), wire.ErrorCode.BAD_FRAME),
        (msgpack.packb({"t": "welcome", "resume": 1, "credit": 1, "reused_through": "all"}), wire.ErrorCode.BAD_FRAME),
        (msgpack.packb({"t": "ack", "seq": 1}), wire.ErrorCode.BAD_FRAME),
        (msgpack.packb({"t": "events", "records": ["text"]}), wire.ErrorCode.BAD_FRAME),
        (msgpack.packb({"t": "drops", "ranges": [[5, 1, "x"]]}), wire.ErrorCode.BAD_FRAME),
        (msgpack.packb({"t": "hello", "probe_id": "p", "boot_id": "b", "public_key": b"short", "proof": b"", "first_seq": 0, "last_seq": 0}), wire.ErrorCode.BAD_FRAME),
        ("a text message", wire.ErrorCode.BAD_FRAME),
    ],
)
def test_malformed_frames_are_refused_with_a_code(data, code):
    with pytest.raises(wire.FrameError) as info:
        wire.decode(data)
    assert info.value.code == code


def test_a_welcome_without_reused_through_means_none():
    """An older Core's welcome (no such field) decodes as no reused numbers."""
    assert wire.decode(msgpack.packb({"t": "welcome", "resume": 7, "credit": 10})) == wire.Welcome(7, 10, 0)


def test_random_bytes_never_escape_as_another_exception():
    rng = random.Random(7)
    valid = [wire.encode(f) for f in FRAMES]
    for _ in range(5000):
        data = bytearray(rng.choice(valid))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = rng.randint(0, len(data))
        try:
            wire.decode(bytes(data[:cut]))
        except wire.FrameError:
            pass


def test_hello_proof_binds_nonce_and_identity():
    a = wire.hello_proof_message(b"n" * 32, "p1", "b1", b"k" * 32)
    assert a != wire.hello_proof_message(b"m" * 32, "p1", "b1", b"k" * 32)
    assert a != wire.hello_proof_message(b"n" * 32, "p2", "b1", b"k" * 32)
    assert a != wire.hello_proof_message(b"n" * 32, "p1", "b2", b"k" * 32)

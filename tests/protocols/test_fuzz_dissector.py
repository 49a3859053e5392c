"""Fuzzing the whole dissector with mutated real packets: nothing escapes, every rejection counts.

Packets come from the shared captures; each mutation is a truncation, bit flips, or a
corrupted length field (IP total length, IHL, TCP data offset, UDP length, and the
length fields of the application protocols that sit at fixed offsets). The parsers must
handle all of it themselves: the engine's last-resort boundary (``analyzer_error``)
must never be needed.
"""

from __future__ import annotations

import random
import struct

import pytest

from probe.replay import read_frames
from protocols.dissect import DissectSettings, Dissector
from tests.conftest import corpus_captures, shared_pcaps

MUTATED_PACKETS = 100_000


def _seed_frames() -> list[tuple[float, int, bytes, int]]:
    frames = []
    for path in shared_pcaps() + corpus_captures():
        frames.extend(read_frames(path))
    return frames


def _mutate(rng: random.Random, frame: tuple[float, int, bytes, int]) -> tuple[float, int, bytes, int]:
    ts, linktype, data, wirelen = frame
    buf = bytearray(data)
    choice = rng.random()
    if choice < 0.25 and buf:
        del buf[rng.randrange(len(buf)) :]  # truncation
    elif choice < 0.6 and buf:
        for _ in range(rng.randint(1, 8)):  # bit flips
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif len(buf) > 60:
        # a corrupted 16-bit length at a header offset: IPv4 total length (16), IPv6 payload
        # length (18), UDP length (38), NetBIOS/SMB/DCE-RPC/TLS/DNS lengths further in
        offset = rng.choice([14 + 2, 14 + 4, 14 + 20 + 4, 14 + 20 + 12, 14 + 40 + 4, 54, 56, 58, 62, 66, 70, 74])
        if offset + 2 <= len(buf):
            struct.pack_into(">H", buf, offset, rng.choice([0, 1, 0x7FFF, 0xFFFF, rng.randrange(65536)]))
        if rng.random() < 0.3:
            buf[14] = (buf[14] & 0xF0) | rng.randrange(16)  # IHL
    return ts, linktype, bytes(buf), wirelen


@pytest.mark.timeout(600)
@pytest.mark.slow
def test_hundred_thousand_mutated_packets(pcaps_dir, corpus_dir):
    rng = random.Random(20261129)
    seeds = _seed_frames()
    assert len(seeds) > 1000
    dissector = Dissector(DissectSettings(verify_ip_checksum=False))
    fed = 0
    batch = []
    while fed < MUTATED_PACKETS:
        # mutated packets interleave with intact ones so that parsers reach deep states
        frame = rng.choice(seeds)
        batch.append(_mutate(rng, frame) if rng.random() < 0.7 else frame)
        fed += 1
        if len(batch) == 1024:
            dissector.feed(batch)
            batch = []
    dissector.feed(batch)
    dissector.finish()
    counters = dissector.counters
    assert counters["packets"] == MUTATED_PACKETS
    rejected = {k: v for k, v in counters.items() if k.startswith(("skip:", "weird:"))}
    assert sum(rejected.values()) > 0, "mutations must show up as counted rejections"
    assert counters.get("weird:analyzer_error", 0) == 0, {k: v for k, v in counters.items() if "analyzer" in k}

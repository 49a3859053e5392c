"""The two-tier buffer: disk first, memory when the disk is full, oldest shed last, exact accounts."""

from __future__ import annotations

from storage.buffer import TieredBuffer
from storage.memtier import MemoryTier
from storage.spool import RECORD_OVERHEAD, Spool


def batch(first: int, n: int) -> list[tuple[int, bytes]]:
    return [(s, b"r" * 100) for s in range(first, first + n)]


def make(tmp_path, quota_records: int, memory_events: int) -> TieredBuffer:
    spool = Spool(str(tmp_path), quota_records * (100 + RECORD_OVERHEAD))
    return TieredBuffer(spool, MemoryTier(memory_events, 1 << 20))


def test_disk_full_spills_to_memory_and_reads_merge_in_order(tmp_path):
    buf = make(tmp_path, 30, 100)
    n = buf.spool.next_seq
    assert buf.store(batch(n, 20)) == "disk"
    assert buf.store(batch(n + 20, 20)) == "memory"
    assert [s for s, _ in buf.read(n - 1, 100)] == list(range(n, n + 40))
    acc = buf.accounts()
    assert (acc.created, acc.pending, acc.balanced) == (40, 40, True)


def test_both_tiers_full_drop_the_oldest_not_in_flight(tmp_path):
    buf = make(tmp_path, 20, 20)
    n = buf.spool.next_seq
    buf.in_flight_upto = n + 4  # the first five were sent and are not acked yet
    seq = n
    for _ in range(6):
        buf.store(batch(seq, 10))
        seq += 10
    acc = buf.accounts()
    assert acc.created == 60 and acc.balanced
    assert acc.dropped.get("buffer_full", 0) > 0
    held = [s for s, _ in buf.read(n - 1, 1000)]
    assert held[:5] == list(range(n, n + 5)), "in-flight events are never shed"
    assert held[-10:] == list(range(seq - 10, seq)), "the newest events are kept"
    reported = sum(b - a + 1 for a, b, _ in buf.drop_reports(0) if _ == "buffer_full")
    assert reported == acc.dropped["buffer_full"]


def test_acknowledge_empties_both_tiers(tmp_path):
    buf = make(tmp_path, 10, 100)
    n = buf.spool.next_seq
    buf.store(batch(n, 10))
    buf.store(batch(n + 10, 10))
    assert buf.acknowledge(n + 14) == 15
    acc = buf.accounts()
    assert (acc.delivered, acc.pending, acc.balanced) == (15, 5, True)


def test_shed_memory_drops_the_older_half(tmp_path):
    buf = make(tmp_path, 0, 100)
    n = buf.spool.next_seq
    buf.store(batch(n, 10))
    assert buf.shed_memory("memory_budget") == 5
    assert [s for s, _ in buf.read(0, 100)] == list(range(n + 5, n + 10))
    assert buf.accounts().dropped == {"memory_budget": 5}

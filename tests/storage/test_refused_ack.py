"""An acknowledgement that carries events the Core refused for good: dropped by reason, not delivered."""

from __future__ import annotations

from storage.buffer import TieredBuffer
from storage.memtier import MemoryTier
from storage.spool import RECORD_OVERHEAD, Spool


def batch(first: int, n: int) -> list[tuple[int, bytes]]:
    return [(s, b"r" * 100) for s in range(first, first + n)]


def test_refused_events_in_either_tier_count_as_dropped_and_the_rest_as_delivered(tmp_path):
    buf = TieredBuffer(Spool(str(tmp_path), 10 * (100 + RECORD_OVERHEAD), record_share=1.0), MemoryTier(100, 1 << 20))
    n = buf.spool.next_seq
    assert buf.store(batch(n, 10)).tier == "disk"
    assert buf.store(batch(n + 10, 10)).tier == "memory"
    delivered, dropped = buf.acknowledge(n + 14, {n + 3: "rejected_bad_signature", n + 12: "rejected_bad_signature", n + 13: "rejected_replayed_sequence"})
    acc = buf.accounts()
    assert delivered == 12
    assert dropped == acc.dropped == {"rejected_bad_signature": 2, "rejected_replayed_sequence": 1}
    assert (acc.delivered, acc.pending, acc.balanced) == (12, 5, True)
    assert [s for s, _ in buf.read(0, 100)] == list(range(n + 15, n + 20))
    # the disk had room again: the rest left the memory tier for the spool
    assert len(buf.memory) == 0 and buf.spool.pending == 5

"""The two-tier buffer: disk first, memory when the disk cannot, oldest shed first, exact accounts."""

from __future__ import annotations

import subprocess

import pytest

from storage.buffer import BUFFER_FULL, SHUTDOWN, TieredBuffer
from storage.memtier import MemoryTier
from storage.spool import RECORD_OVERHEAD, Spool


def batch(first: int, n: int, size: int = 100) -> list[tuple[int, bytes]]:
    return [(s, s.to_bytes(8, "big") + b"r" * (size - 8)) for s in range(first, first + n)]


def make(path, quota_records: int, memory_events: int, **kw) -> TieredBuffer:
    spool = Spool(str(path), quota_records * (100 + RECORD_OVERHEAD), record_share=1.0)
    return TieredBuffer(spool, MemoryTier(memory_events, 1 << 20), **kw)


def held(buf: TieredBuffer) -> list[int]:
    return [s for s, _ in buf.read(0, 1 << 20)]


def dropped_seqs(buf: TieredBuffer, reason: str) -> list[int]:
    return [s for a, b, r in buf.drop_reports(0) if r == reason for s in range(a, b + 1)]


def test_disk_full_spills_to_memory_and_reads_merge_in_order(tmp_path):
    buf = make(tmp_path, 30, 100)
    n = buf.spool.next_seq
    assert buf.store(batch(n, 20)).tier == "disk"
    assert buf.store(batch(n + 20, 20)).tier == "memory"
    assert buf.store(batch(n + 40, 5)).tier == "memory", "behind memory events, new ones queue in memory too"
    assert held(buf) == list(range(n, n + 45))
    assert buf.read(n + 17, 6) == batch(n + 18, 6)
    acc = buf.accounts()
    assert (acc.created, acc.pending, acc.dropped, acc.balanced) == (45, 45, {}, True)


def test_memory_events_move_back_to_disk_when_acks_free_room(tmp_path):
    buf = make(tmp_path, 30, 100)
    n = buf.spool.next_seq
    buf.store(batch(n, 30), ("file:a", 30))
    buf.store(batch(n + 30, 20), ("file:a", 50))
    assert len(buf.memory) == 20 and buf.spool.source_progress("file:a") == 30
    delivered, _ = buf.acknowledge(n + 14)
    assert delivered == 15
    # 15 records of room: the 15 oldest memory events are now durable, in order
    assert len(buf.memory) == 5 and buf.spool.pending == 30
    assert [s for s, _ in buf.spool.read(0, 100)] == list(range(n + 15, n + 45))
    assert buf.spool.source_progress("file:a") == 30, "progress waits until its whole batch is on disk"
    buf.acknowledge(n + 20)
    assert len(buf.memory) == 0 and buf.spool.source_progress("file:a") == 50
    acc = buf.accounts()
    assert (acc.created, acc.delivered, acc.pending, acc.balanced) == (50, 21, 29, True)
    buf.close()
    reopened = Spool(str(tmp_path), 1 << 20)
    assert [s for s, _ in reopened.read(0, 100)] == list(range(n + 21, n + 50))
    assert reopened.counter("created") == 50 and reopened.counter("delivered") == 21


def test_both_tiers_full_drop_the_oldest_not_in_flight_exactly(tmp_path):
    buf = make(tmp_path, 20, 20)
    n = buf.spool.next_seq
    assert buf.take(0, 5) is None
    buf.store(batch(n, 10))
    out = buf.take(0, 5)
    assert [s for s, _ in out.records] == list(range(n, n + 5)) and buf.in_flight_upto == n + 4
    seq = n + 10
    for _ in range(5):
        buf.store(batch(seq, 10))
        seq += 10
    acc = buf.accounts()
    lost = dropped_seqs(buf, BUFFER_FULL)
    kept = held(buf)
    assert acc.created == 60 and acc.balanced
    assert acc.dropped[BUFFER_FULL] == len(lost) > 0
    assert sorted(kept + lost) == list(range(n, seq)), "every event is held or reported dropped"
    assert kept[:5] == list(range(n, n + 5)), "in-flight events are never shed"
    assert max(lost) < min(s for s in kept if s > n + 4), "only events older than every kept one are dropped"
    assert len(kept) <= 40


def test_take_sends_drop_reports_before_the_records_after_them(tmp_path):
    buf = make(tmp_path, 20, 10)
    n = buf.spool.next_seq
    buf.store(batch(n, 20))
    buf.store(batch(n + 20, 10))
    buf.store(batch(n + 30, 10))  # sheds the oldest from the spool
    lost = dropped_seqs(buf, BUFFER_FULL)
    assert lost and lost[0] == n
    out = buf.take(n - 1, 100)
    assert out.drops and out.drops[0][:2] == (n, lost[-1]) and not out.records
    out2 = buf.take(out.last, 100)
    assert out2.records and out2.records[0][0] == lost[-1] + 1
    assert buf.in_flight_upto == out2.last


def test_a_batch_larger_than_memory_goes_to_disk_after_shedding(tmp_path):
    buf = make(tmp_path, 30, 5)
    n = buf.spool.next_seq
    buf.store(batch(n, 30))
    outcome = buf.store(batch(n + 30, 10))
    assert outcome.tier == "disk" and outcome.dropped[BUFFER_FULL] >= 10
    acc = buf.accounts()
    assert acc.balanced and acc.pending + acc.dropped[BUFFER_FULL] == 40


def test_shed_memory_moves_what_fits_to_disk_then_drops_the_older_half(tmp_path):
    buf = make(tmp_path, 0, 100)
    n = buf.spool.next_seq
    buf.store(batch(n, 10))
    assert buf.shed_memory("memory_budget") == 5
    assert held(buf) == list(range(n + 5, n + 10))
    assert buf.accounts().dropped == {"memory_budget": 5}
    assert dropped_seqs(buf, "memory_budget") == list(range(n, n + 5))


def test_close_keeps_what_fits_and_reports_the_rest_as_shutdown(tmp_path):
    buf = make(tmp_path, 10, 100)
    n = buf.spool.next_seq
    buf.store(batch(n, 10))
    buf.store(batch(n + 10, 5))
    buf.count_dropped("signature", 2)
    acc = buf.close()
    assert acc.balanced and acc.dropped == {SHUTDOWN: 5, "signature": 2} and acc.pending == 10
    again = TieredBuffer(Spool(str(tmp_path), 10 * (100 + RECORD_OVERHEAD), record_share=1.0), MemoryTier(100, 1 << 20))
    acc2 = again.accounts()
    assert (acc2.created, acc2.dropped, acc2.pending, acc2.balanced) == (17, {SHUTDOWN: 5, "signature": 2}, 10, True)
    reports = again.drop_reports(0)
    assert (n + 10, n + 14, SHUTDOWN) in reports
    assert all(r[0] > n + 14 for r in reports if r[2] == "unassigned"), "no report covers another"


def test_refused_events_leave_the_buffer_as_dropped_not_delivered(tmp_path):
    buf = make(tmp_path, 10, 100)
    n = buf.spool.next_seq
    buf.store(batch(n, 10))
    buf.store(batch(n + 10, 5))  # these five wait in memory
    refused = {n + 3: "rejected_bad_signature", n + 12: "rejected_bad_event"}
    assert buf.acknowledge(n + 14, refused) == (13, {"rejected_bad_signature": 1, "rejected_bad_event": 1})
    acc = buf.accounts()
    assert (acc.delivered, acc.pending, acc.balanced) == (13, 0, True)
    assert acc.dropped == {"rejected_bad_signature": 1, "rejected_bad_event": 1}


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 256 KiB tmpfs: writes beyond it fail with ENOSPC."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_moves_capture_to_memory_and_back_when_space_returns(tiny_disk):
    clock = [0.0]
    spool = Spool(str(tiny_disk / "spool"), 64 << 20, map_size=32 << 20)
    buf = TieredBuffer(spool, MemoryTier(100_000, 64 << 20), disk_retry_interval=5.0, clock=lambda: clock[0])
    n = spool.next_seq
    seq = n
    tiers = []
    for _ in range(120):  # 600 KB of events into 256 KB of disk
        tiers.append(buf.store(batch(seq, 10, 500)).tier)
        seq += 10
    assert tiers[0] == "disk" and "memory" in tiers and "dropped" not in tiers
    assert not buf.disk_ok and buf.disk_error
    assert held(buf) == list(range(n, seq)), "capture went on: every event is held, in order"
    on_disk = spool.pending
    subprocess.run(["mount", "-o", "remount,size=8m", str(tiny_disk)], check=True)
    buf.store(batch(seq, 10, 500))
    assert not buf.disk_ok, "the disk is retried only after the interval"
    clock[0] += 5.0
    assert buf.store(batch(seq + 10, 10, 500)).tier == "disk"
    assert len(buf.memory) == 0 and spool.pending == seq + 20 - n > on_disk
    acc = buf.accounts()
    assert acc.balanced and acc.pending == seq + 20 - n and acc.dropped == {}
    buf.close()


def test_a_spool_paused_from_outside_stays_paused_until_resumed(tmp_path):
    clock = [0.0]
    buf = make(tmp_path, 100, 100, clock=lambda: clock[0])
    n = buf.spool.next_seq
    buf.disk_ok = False  # e.g. free disk below the minimum
    clock[0] += 60
    assert buf.store(batch(n, 10)).tier == "memory", "no timed retry while held"
    buf.disk_ok = True
    assert buf.store(batch(n + 10, 10)).tier == "disk", "the memory events moved back first, then the new ones followed"
    assert len(buf.memory) == 0 and [s for s, _ in buf.spool.read(0, 100)] == list(range(n, n + 20))


def test_on_a_disk_still_full_the_retry_deletes_what_the_core_holds_before_it_writes(tiny_disk):
    """The Core acknowledged events while the disk was full (their deletion refused): the retry deletes them
    first, which frees pages inside the spool's file, so the file system can stay full and the spool still works."""
    clock = [0.0]
    spool = Spool(str(tiny_disk / "spool"), 64 << 20, map_size=32 << 20)
    buf = TieredBuffer(spool, MemoryTier(100_000, 64 << 20), disk_retry_interval=5.0, clock=lambda: clock[0])
    n = seq = spool.next_seq
    while buf.store(batch(seq, 10, 500)).tier == "disk":  # the spool fills the file system
        seq += 10
    seq += 10
    on_disk = spool.pending
    try:  # someone else takes whatever room is left
        with open(tiny_disk / "other", "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:
        pass
    delivered, _ = buf.acknowledge(seq - 1)  # the Core holds everything; the disk refuses the deletion
    assert delivered == seq - n - on_disk and spool.pending == on_disk
    delivered_later = 0
    for _ in range(3):  # capture goes on; the disk is due for a retry, and the actor's maintenance tick comes
        clock[0] += 5.0
        buf.store(batch(seq, 10, 500))
        seq += 10
        delivered_later += buf.maintain()[0]
    assert delivered_later == on_disk, "the deletion the disk refused was done at the retry"
    assert buf.disk_ok and len(buf.memory) == 0 and spool.pending == 30, "and the spool took the new events, in the pages it freed"
    acc = buf.accounts()
    assert acc.balanced and acc.delivered == seq - n - 30 and acc.pending == 30
    buf.close()

"""The two-tier event buffer: the LMDB spool first, the memory tier when the disk cannot.

Normally every event goes through the durable spool. When the spool is at its quota or
the disk fails, new events go to the memory tier only (capture goes on). When both are
full the **oldest** events not yet in flight are dropped, counted by reason, and kept
as drop reports for the Core. Reads merge both tiers in sequence order.
"""

from __future__ import annotations

import threading
from typing import Iterator, Mapping

from protocols.errors import ResourceError, TransientError
from storage.accounting import Accounts
from storage.memtier import MemoryTier
from storage.spool import Spool

#: fraction of the spool shed at once when both tiers are full (avoids shedding per batch)
SHED_FRACTION = 0.05


def _ranges(records: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
    """Consecutive seq ranges covering ``records``."""
    out: list[tuple[int, int]] = []
    for seq, _ in records:
        if out and out[-1][1] == seq - 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out


class TieredBuffer:
    """Spool + memory tier with exact accounting; the buffer actor writes, the uplink reads."""

    def __init__(self, spool: Spool, memory: MemoryTier) -> None:
        self.spool = spool
        self.memory = memory
        self.disk_ok = True
        self.disk_error: str | None = None
        #: highest seq the uplink has sent; nothing at or below it is ever shed
        self.in_flight_upto = 0
        self._lock = threading.Lock()
        self._mem_created = 0
        self._mem_delivered = 0
        self._mem_dropped: dict[str, int] = {}
        self._mem_drop_ranges: list[tuple[int, int, str]] = []

    # --- writing (buffer actor) -----------------------------------------------------

    def store(self, records: list[tuple[int, bytes]], progress: tuple[str, int] | None = None) -> str:
        """Keep a signed batch; return the tier that took it ("disk" or "memory")."""
        if self.disk_ok:
            try:
                self.spool.append(records, progress)
                return "disk"
            except ResourceError as exc:
                self.disk_error = str(exc)
            except TransientError as exc:
                self.disk_ok = False
                self.disk_error = str(exc)
        if not self.memory.room_for(records) and not self._shed_for(records):
            with self._lock:
                self._mem_created += len(records)
            self._note_memory_drops(_ranges(records), "buffer_full")
            return "dropped"
        with self._lock:
            self.memory.append(records)
            self._mem_created += len(records)
        return "memory"

    def retry_disk(self) -> None:
        """Let the next batch try the spool again (after a disk error cleared)."""
        self.disk_ok = True

    def _shed_for(self, records: list[tuple[int, bytes]]) -> bool:
        """Both tiers full: drop the oldest events not in flight; True if the batch fits now.

        The oldest events sit in the spool; dropping them there frees disk, so the batch
        may fit in the spool again. Otherwise the memory tier's oldest go.
        """
        need = max(len(records), int(self.spool.pending * SHED_FRACTION))
        if self.spool.pending:
            dropped = self.spool.drop_oldest(need, self.in_flight_upto, "buffer_full")
            if dropped is not None:
                need -= dropped[1] - dropped[0] + 1
        while not self.memory.room_for(records) and len(self.memory):
            ranges = self.memory.drop_oldest(max(need, len(records)), self.in_flight_upto)
            if not ranges:
                break
            self._note_memory_drops(ranges, "buffer_full")
        return self.memory.room_for(records)

    def _note_memory_drops(self, ranges: list[tuple[int, int]], reason: str) -> int:
        n = sum(b - a + 1 for a, b in ranges)
        with self._lock:
            self._mem_dropped[reason] = self._mem_dropped.get(reason, 0) + n
            self._mem_drop_ranges.extend((a, b, reason) for a, b in ranges)
        return n

    def shed_memory(self, reason: str) -> int:
        """Resource pressure: drop the older half of the memory tier (never in-flight events)."""
        count = (len(self.memory) + 1) // 2
        if not count:
            return 0
        return self._note_memory_drops(self.memory.drop_oldest(count, self.in_flight_upto), reason)

    def count_dropped(self, reason: str, count: int) -> None:
        """Events created and dropped before they had a sequence number (e.g. signing failed)."""
        if self.disk_ok:
            try:
                self.spool.count_created(count)
                self.spool.note_drops(reason, count)
                return
            except (ResourceError, TransientError):
                pass
        with self._lock:
            self._mem_created += count
            self._mem_dropped[reason] = self._mem_dropped.get(reason, 0) + count

    # --- delivery (uplink) ----------------------------------------------------------

    def read(self, after: int, max_events: int) -> list[tuple[int, bytes]]:
        """Up to ``max_events`` records after ``after`` from both tiers, in seq order."""
        disk = self.spool.read(after, max_events)
        mem = self.memory.read(after, max_events)
        if not mem:
            return disk
        if not disk:
            return mem
        merged = sorted(disk + mem)
        return merged[:max_events]

    def drop_reports(self, after: int) -> list[tuple[int, int, str]]:
        with self._lock:
            mem = [r for r in self._mem_drop_ranges if r[1] > after]
        return sorted(self.spool.drop_reports(after) + mem)

    def acknowledge(self, upto: int, refused: Mapping[int, str] | None = None) -> int:
        """Delete what the Core holds up to ``upto``; ``refused`` seqs count dropped by reason."""
        in_memory: list[str] = []
        if refused:
            for seq, reason in refused.items():
                found = self.memory.read(seq - 1, 1)
                if found and found[0][0] == seq:
                    in_memory.append(reason)
        removed_disk = self.spool.acknowledge(upto, refused=refused)
        removed_mem = self.memory.acknowledge(upto) - len(in_memory)
        with self._lock:
            for reason in in_memory:
                self._mem_dropped[reason] = self._mem_dropped.get(reason, 0) + 1
            self._mem_delivered += removed_mem
            self._mem_drop_ranges = [r for r in self._mem_drop_ranges if r[1] > upto]
        return removed_disk + removed_mem

    # --- state ----------------------------------------------------------------------

    def accounts(self) -> Accounts:
        with self._lock:
            counters = self.spool.counters()
            dropped = {k[8:]: v for k, v in counters.items() if k.startswith("dropped:") and v}
            for reason, n in self._mem_dropped.items():
                dropped[reason] = dropped.get(reason, 0) + n
            return Accounts(
                created=counters.get("created", 0) + self._mem_created,
                delivered=counters.get("delivered", 0) + self._mem_delivered,
                dropped=dropped,
                pending=self.spool.pending + len(self.memory),
            )

    @property
    def pending(self) -> int:
        return self.spool.pending + len(self.memory)

    def first_seq(self) -> int:
        firsts = [s for s in (self.spool.first_seq(), self.memory.first_seq()) if s]
        return min(firsts) if firsts else 0

    def iter_disk(self) -> Iterator[tuple[int, bytes]]:
        return self.spool.iter_all()

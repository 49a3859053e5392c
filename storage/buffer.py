"""The two-tier event buffer: the LMDB spool first, the memory tier when the disk cannot.

Normally every event goes through the durable spool. When the spool is at its quota or
the disk fails, new events go to the memory tier only (capture goes on). When both are
full the **oldest** events not yet in flight are dropped, counted by reason, and kept
as drop reports for the Core.

One invariant keeps this simple: the spool holds an older prefix of the pending
sequence numbers and the memory tier the newer rest. While the memory tier holds
anything, new events join it, and its oldest events move back into the spool as soon
as the spool has room again (after acks, or after shedding): memory-tier events become
durable at the first chance, and the oldest events are always the spool's.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable, Mapping

import attrs

from protocols.errors import ResourceError, TransientError
from storage.accounting import Accounts
from storage.memtier import MemoryTier
from storage.spool import RECORD_OVERHEAD, Spool, SpoolFull

#: fraction of the spool shed at once when both tiers are full (avoids shedding per batch)
SHED_FRACTION = 0.05
#: records moved from memory to the spool per transaction
MIGRATE_CHUNK = 2000
#: reason of events dropped because both tiers were full
BUFFER_FULL = "buffer_full"
#: reason of events still in the memory tier when the probe stopped and the spool had no room
SHUTDOWN = "shutdown"
#: reason of events whose numbers the Core already held from before the spool was wiped or restored
SEQUENCE_REUSED = "sequence_reused"

Record = tuple[int, bytes]
Progress = tuple[str, int]


def _ranges(seqs: list[int], reason: str) -> list[tuple[int, int, str]]:
    """Consecutive (first, last, reason) ranges covering sorted ``seqs``."""
    out: list[tuple[int, int, str]] = []
    for seq in seqs:
        if out and out[-1][1] == seq - 1:
            out[-1] = (out[-1][0], seq, reason)
        else:
            out.append((seq, seq, reason))
    return out


@attrs.frozen(slots=True)
class StoreOutcome:
    """Where a batch went ("disk", "memory", "dropped", "none") and what was dropped for room."""

    tier: str
    dropped: dict[str, int] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class Outgoing:
    """What the uplink sends next: a run of drop reports, or records; ``last`` is the highest seq covered."""

    last: int
    records: list[Record] = attrs.field(factory=list)
    drops: tuple[tuple[int, int, str], ...] = ()


class TieredBuffer:
    """Spool + memory tier with exact accounting; the buffer actor writes, the uplink takes."""

    def __init__(
        self,
        spool: Spool,
        memory: MemoryTier,
        *,
        disk_retry_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spool = spool
        self.memory = memory
        self.disk_retry_interval = disk_retry_interval
        self.clock = clock
        self._disk_ok = True
        self._disk_held = False  # paused from outside (low free disk): no automatic retry
        self.disk_error: str | None = None
        self._disk_failed_at = 0.0
        #: highest seq the uplink has taken for sending; nothing at or below it is ever shed
        self.in_flight_upto = 0
        #: events moved from the memory tier back into the spool so far
        self.migrated = 0
        #: the Core's acknowledged point, and its final refusals (seq -> reason) not yet applied
        self._acked_upto = 0
        self._refused: dict[int, str] = {}
        # guards what the uplink reads (tiers' contents, drop reports, in_flight_upto)
        # against the moves and drops the buffer actor makes
        self._lock = threading.RLock()
        # accounting of the events the memory tier took (folded into the spool at close)
        self._mem_created = 0
        self._mem_delivered = 0
        self._mem_dropped: collections.Counter[str] = collections.Counter()
        # drop ranges not yet durable (the disk refused them)
        self._mem_ranges: list[tuple[int, int, str]] = []
        # replay progress of batches that went to memory: (last seq of the batch, progress)
        self._mem_progress: collections.deque[tuple[int, Progress]] = collections.deque()

    # --- writing (buffer actor) -----------------------------------------------------

    def store(self, records: list[Record], progress: Progress | None = None) -> StoreOutcome:
        """Keep a signed batch (seq order, above everything held); say where it went."""
        if not self._deletions_due():
            # with deletions the disk refused still due, the retry is left to maintain() and
            # acknowledge(): they delete first, which frees pages inside the spool's file; a
            # write tried first on a disk that is still full fails and puts the retry off again
            self._maybe_retry_disk()
        if not records:
            self._note_progress(progress)
            return StoreOutcome("none")
        dropped: collections.Counter[str] = collections.Counter()
        if self.disk_ok and not len(self.memory):
            # the usual path, without the lock: only this thread adds to or moves between
            # the tiers, and a reader sees the spool before or after this commit, whole
            try:
                self.spool.append(records, progress)
                return StoreOutcome("disk")
            except SpoolFull as exc:
                self._spool_refused(exc)
            except TransientError as exc:
                self._disk_failed(exc)
        with self._lock:
            for _ in range(64):
                if self.disk_ok and len(self.memory):
                    self._migrate()
                if self.disk_ok and not len(self.memory):
                    try:
                        self.spool.append(records, progress)
                        return StoreOutcome("disk", dict(dropped))
                    except SpoolFull as exc:
                        self._spool_refused(exc)
                    except TransientError as exc:
                        self._disk_failed(exc)
                if self.memory.room_for(records):
                    self._reserve(records[-1][0])
                    self.memory.append(records)
                    self._mem_created += len(records)
                    if progress is not None:
                        self._mem_progress.append((records[-1][0], progress))
                    return StoreOutcome("memory", dict(dropped))
                need = max(len(records), int((self.spool.pending + len(self.memory)) * SHED_FRACTION))
                if not self._drop_oldest(need, dropped):
                    break
            # nothing older is left to drop (all in flight): the batch itself is dropped
            self._mem_created += len(records)
            self._note_memory_drops([s for s, _ in records], BUFFER_FULL)
            dropped[BUFFER_FULL] += len(records)
            self._note_progress(progress, records[-1][0])
        return StoreOutcome("dropped", dict(dropped))

    def _reserve(self, seq: int) -> None:
        """Make the spool's sequence reservation cover a memory-tier event before it can be sent."""
        if not self.disk_ok:
            return
        try:
            self.spool.reserve_through(seq)
        except (ResourceError, TransientError) as exc:
            self._disk_failed(exc)

    def _spool_refused(self, exc: SpoolFull) -> None:
        """The spool is full: at its quota or LMDB's map (it still deletes), or the disk itself (it fails)."""
        self.disk_error = str(exc)
        if exc.reason == "disk_full":
            self._disk_failed(exc)

    @property
    def disk_ok(self) -> bool:
        """Whether new events go to the spool (False: the memory tier takes them)."""
        return self._disk_ok

    @disk_ok.setter
    def disk_ok(self, value: bool) -> None:
        """An outside decision (the resources monitor pausing the spool while free disk is low):
        held until set True again, never retried on a timer."""
        self._disk_ok = value
        self._disk_held = not value

    @property
    def disk_held(self) -> bool:
        """Whether the spool is paused from outside (set ``disk_ok`` True to resume it)."""
        return self._disk_held

    def _disk_failed(self, exc: Exception) -> None:
        self._disk_ok = False
        self.disk_error = str(exc)
        self._disk_failed_at = self.clock()

    def _deletions_due(self) -> bool:
        """Whether the spool still holds events the Core acknowledged (the disk refused their deletion)."""
        return not self._disk_ok and bool(self.spool.pending) and self.spool.first_seq() <= self._acked_upto

    def _maybe_retry_disk(self) -> None:
        if not self._disk_ok and not self._disk_held and self.clock() - self._disk_failed_at >= self.disk_retry_interval:
            self._disk_ok = True  # the next write tries the disk again

    def _migrate(self) -> int:
        """Move the memory tier's oldest events into the spool while it has room; return how many."""
        moved = 0
        while len(self.memory) and self.disk_ok:
            room = self.spool.capacity - self.spool.bytes_used
            # moderate transactions: LMDB needs free pages for a big one besides the records
            chunk = self.memory.oldest(MIGRATE_CHUNK, min(room, max(1 << 16, self.spool.capacity // 8)))
            chunk = self._fit(chunk, room)
            if not chunk:
                break
            last = chunk[-1][0]
            settled = self._settled_progress(last)
            try:
                self.spool.append(chunk, settled, created=len(chunk))
            except SpoolFull as exc:
                self._requeue_progress(settled, last)
                self._spool_refused(exc)
                break
            except TransientError as exc:
                self._requeue_progress(settled, last)
                self._disk_failed(exc)
                break
            self.memory.acknowledge(last)
            self._mem_created -= len(chunk)
            moved += len(chunk)
        self.migrated += moved
        return moved

    @staticmethod
    def _fit(chunk: list[Record], room: int) -> list[Record]:
        """The leading records of ``chunk`` whose spool footprint fits in ``room`` bytes."""
        size = 0
        for i, (_, record) in enumerate(chunk):
            size += len(record) + RECORD_OVERHEAD
            if size > room:
                return chunk[:i]
        return chunk

    def _drop_oldest(self, count: int, dropped: collections.Counter[str]) -> bool:
        """Both tiers full: drop up to ``count`` of the oldest events not in flight; False if none."""
        if self.disk_ok and self.spool.pending:
            try:
                span = self.spool.drop_oldest(count, self.in_flight_upto, BUFFER_FULL)
            except (ResourceError, TransientError) as exc:
                self._disk_failed(exc)
                span = None
            if span is not None:
                dropped[BUFFER_FULL] += span[1] - span[0] + 1
                return True
        spans = self.memory.drop_oldest(count, self.in_flight_upto)
        if not spans:
            return False
        dropped[BUFFER_FULL] += self._note_memory_drops([s for a, b in spans for s in range(a, b + 1)], BUFFER_FULL)
        self._settle_memory_progress()
        return True

    def _note_memory_drops(self, seqs: list[int], reason: str) -> int:
        """Count memory-tier drops and make their report durable when the disk allows."""
        ranges = _ranges(seqs, reason)
        self._mem_dropped[reason] += len(seqs)
        if self.disk_ok:
            try:
                self.spool.fold({}, ranges)
                return len(seqs)
            except (ResourceError, TransientError) as exc:
                self._disk_failed(exc)
        self._mem_ranges.extend(ranges)
        return len(seqs)

    # --- replay progress of memory-tier batches --------------------------------------

    def _note_progress(self, progress: Progress | None, last: int | None = None) -> None:
        """Record replay progress; durable now unless memory-tier events stand before it."""
        if progress is None:
            return
        with self._lock:
            behind = max(last or 0, self.memory.last_seq())
            if behind or self._mem_progress:
                self._mem_progress.append((behind, progress))
                self._settle_memory_progress()
                return
        if self.disk_ok:
            try:
                self.spool.append([], progress)
            except (ResourceError, TransientError) as exc:
                self._disk_failed(exc)

    def _settled_progress(self, upto: int) -> list[Progress]:
        """Pop the progress of memory batches wholly at or below ``upto`` (latest per source)."""
        latest: dict[str, int] = {}
        while self._mem_progress and self._mem_progress[0][0] <= upto:
            source, ordinal = self._mem_progress.popleft()[1]
            latest[source] = max(latest.get(source, 0), ordinal)
        return list(latest.items())

    def _requeue_progress(self, settled: list[Progress], last: int) -> None:
        for item in reversed(settled):
            self._mem_progress.appendleft((last, item))

    def _settle_memory_progress(self) -> None:
        """Persist progress of memory batches whose events have all left the tier."""
        if not self._mem_progress or not self.disk_ok:
            return
        front = self.memory.first_seq()
        settled = self._settled_progress(front - 1 if front else 1 << 62)
        if settled:
            try:
                self.spool.append([], settled)
            except (ResourceError, TransientError) as exc:
                self._disk_failed(exc)

    # --- other accounting entries (buffer actor) ----------------------------------------

    def shed_memory(self, reason: str) -> int:
        """Resource pressure: move what fits to disk, then drop the older half of the rest."""
        with self._lock:
            if self.disk_ok:
                self._migrate()
            count = (len(self.memory) + 1) // 2
            if not count:
                return 0
            spans = self.memory.drop_oldest(count, self.in_flight_upto)
            n = self._note_memory_drops([s for a, b in spans for s in range(a, b + 1)], reason)
            self._settle_memory_progress()
            return n

    def count_dropped(self, reason: str, count: int) -> None:
        """Events created and dropped before they had a sequence number (e.g. signing failed)."""
        if self.disk_ok:
            try:
                self.spool.fold({"created": count, "dropped:" + reason: count})
                return
            except (ResourceError, TransientError) as exc:
                self._disk_failed(exc)
        with self._lock:
            self._mem_created += count
            self._mem_dropped[reason] += count

    def acknowledge(self, upto: int, refused: Mapping[int, str] | None = None) -> tuple[int, dict[str, int]]:
        """The Core holds everything up to ``upto``: (delivered, dropped by reason).

        ``refused`` (seq -> reason) are events of that range the Core refused for good:
        they leave the buffer counted dropped with their reason, not delivered. If the
        disk refuses the deletion, the events stay pending until :meth:`maintain` manages
        it (they are never sent again: the uplink is past them).
        """
        self._maybe_retry_disk()
        dropped: collections.Counter[str] = collections.Counter()
        with self._lock:
            self._acked_upto = max(self._acked_upto, upto)
            if refused:
                self._refused.update(refused)
            in_memory = {s: r for s, r in self._refused.items() if s <= upto and self.memory.holds(s)}
            removed_disk = 0
            if self.disk_ok:
                on_disk = {s: r for s, r in self._refused.items() if s <= upto and s not in in_memory}
                try:
                    removed_disk = self.spool.acknowledge(upto, on_disk)
                    dropped.update(on_disk.values())
                    for s in on_disk:
                        del self._refused[s]
                except (ResourceError, TransientError) as exc:
                    self._disk_failed(exc)
            removed_mem = self.memory.acknowledge(upto) - len(in_memory)
            for s, reason in in_memory.items():
                del self._refused[s]
                self._mem_dropped[reason] += 1
            dropped.update(in_memory.values())
            self._mem_delivered += removed_mem
            self._mem_ranges = [r for r in self._mem_ranges if r[1] > upto]
            self._settle_memory_progress()
            if len(self.memory) and self.disk_ok:
                self._migrate()
        return removed_disk + removed_mem, dict(dropped)

    def drop_reused(self, upto: int, reason: str = SEQUENCE_REUSED) -> tuple[int, dict[str, int]]:
        """The Core holds numbers up to ``upto`` from an earlier life of this sequence space.

        Our own events numbered that low were never stored (the numbers are taken), so they
        leave the buffer counted dropped with ``reason``, not delivered.
        """
        with self._lock:
            seqs = set(self.memory.seqs_through(upto))
            if self.disk_ok:
                seqs.update(self.spool.seqs_through(upto))
        return self.acknowledge(upto, dict.fromkeys(seqs, reason))

    def maintain(self) -> tuple[int, dict[str, int]]:
        """Periodic care: retry a failed disk, finish deletions it refused, move memory events to disk.

        Returns (delivered, dropped by reason) for deletions completed now.
        """
        self._maybe_retry_disk()
        if not self.disk_ok:
            return 0, {}
        with self._lock:
            first = self.spool.first_seq() if self.spool.pending else 0
            if first and first <= self._acked_upto:
                return self.acknowledge(self._acked_upto)
            if len(self.memory):
                self._migrate()
            self._settle_memory_progress()
        return 0, {}

    # --- delivery (uplink) ----------------------------------------------------------

    def take(self, after: int, max_events: int) -> Outgoing | None:
        """What to send after ``after``: drop reports first where they come first, else records.

        Marks what it returns as in flight (never shed), atomically with the read.
        """
        with self._lock:
            drops = self.drop_reports(after)
            if drops and drops[0][0] <= after + 1:
                run = [drops[0]]
                for item in drops[1:]:
                    if item[0] > run[-1][1] + 1:
                        break
                    run.append(item)
                self.in_flight_upto = max(self.in_flight_upto, run[-1][1])
                return Outgoing(run[-1][1], drops=tuple(run))
            records = self.read(after, max_events)
            if drops:
                records = [r for r in records if r[0] < drops[0][0]]
                if not records:
                    # nothing stands before the next report: send it (the Core counts the hole)
                    self.in_flight_upto = max(self.in_flight_upto, drops[0][1])
                    return Outgoing(drops[0][1], drops=(drops[0],))
            if not records:
                return None
            self.in_flight_upto = max(self.in_flight_upto, records[-1][0])
            return Outgoing(records[-1][0], records=records)

    def rewind(self, acked: int) -> None:
        """A new connection resumes after ``acked``: events above it are no longer in flight."""
        with self._lock:
            self.in_flight_upto = acked

    def read(self, after: int, max_events: int) -> list[Record]:
        """Up to ``max_events`` records after ``after`` from both tiers, in seq order."""
        with self._lock:
            disk = self.spool.read(after, max_events) if self.spool.pending else []
            if len(disk) >= max_events:
                return disk
            start = max(after, disk[-1][0]) if disk else after
            return disk + self.memory.read(start, max_events - len(disk))

    def drop_reports(self, after: int) -> list[tuple[int, int, str]]:
        """Drop reports (first, last, reason) not yet acknowledged past ``after``, in seq order."""
        with self._lock:
            mem = [r for r in self._mem_ranges if r[1] > after]
            disk = self.spool.drop_reports(after)
        return sorted(disk + mem) if mem else disk

    # --- state ----------------------------------------------------------------------

    def accounts(self) -> Accounts:
        with self._lock:
            counters = self.spool.counters()
            dropped = collections.Counter({k[8:]: v for k, v in counters.items() if k.startswith("dropped:") and v})
            dropped.update(self._mem_dropped)
            return Accounts(
                created=counters.get("created", 0) + self._mem_created,
                delivered=counters.get("delivered", 0) + self._mem_delivered,
                dropped={k: v for k, v in sorted(dropped.items()) if v},
                pending=self.spool.pending + len(self.memory),
            )

    @property
    def pending(self) -> int:
        return self.spool.pending + len(self.memory)

    def settled(self) -> bool:
        """Nothing left for the Core: no event pending and no drop report unacknowledged."""
        return self.pending == 0 and not self.drop_reports(0)

    def first_seq(self) -> int:
        firsts = [s for s in (self.spool.first_seq(), self.memory.first_seq()) if s]
        return min(firsts) if firsts else 0

    def close(self) -> Accounts:
        """Stop: move what fits to disk, drop (and report) the rest, make the totals durable."""
        with self._lock:
            self._maybe_retry_disk()
            if self.disk_ok and len(self.memory):
                self._migrate()
            if len(self.memory):
                spans = self.memory.drop_oldest(len(self.memory), 0)
                self._note_memory_drops([s for a, b in spans for s in range(a, b + 1)], SHUTDOWN)
            self._settle_memory_progress()
            if self.disk_ok:
                deltas = {"created": self._mem_created, "delivered": self._mem_delivered}
                deltas.update({"dropped:" + r: n for r, n in self._mem_dropped.items()})
                try:
                    self.spool.fold(deltas, self._mem_ranges)
                    self._mem_created = self._mem_delivered = 0
                    self._mem_dropped.clear()
                    self._mem_ranges = []
                except (ResourceError, TransientError) as exc:
                    self._disk_failed(exc)
            accounts = self.accounts()
        self.spool.close()
        return accounts

"""The memory tier: a bounded, ordered holding area for events the disk tier cannot take."""

from __future__ import annotations

import bisect
import itertools
import threading
from collections import deque


def _seq_of(item: tuple[int, bytes]) -> int:
    return item[0]


class MemoryTier:
    """Signed records by sequence, bounded in count and bytes; oldest leave first.

    Thread-safe: the buffer actor appends and drops, the uplink reads.
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._items: deque[tuple[int, bytes]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def room_for(self, records: list[tuple[int, bytes]]) -> bool:
        size = sum(len(r) for _, r in records)
        return len(self._items) + len(records) <= self.max_events and self._bytes + size <= self.max_bytes

    def fits(self, records: list[tuple[int, bytes]]) -> bool:
        """Whether ``records`` would fit into an empty tier at all."""
        return len(records) <= self.max_events and sum(len(r) for _, r in records) <= self.max_bytes

    def append(self, records: list[tuple[int, bytes]]) -> None:
        with self._lock:
            for item in records:
                self._items.append(item)
                self._bytes += len(item[1])

    def read(self, after: int, max_events: int) -> list[tuple[int, bytes]]:
        with self._lock:
            start = bisect.bisect_right(self._items, after, key=_seq_of)
            return list(itertools.islice(self._items, start, start + max_events))

    def holds(self, seq: int) -> bool:
        """Whether ``seq`` is in the tier."""
        with self._lock:
            at = bisect.bisect_left(self._items, seq, key=_seq_of)
            return at < len(self._items) and self._items[at][0] == seq

    def seqs_through(self, upto: int) -> list[int]:
        """Sequence numbers held at or below ``upto``, oldest first."""
        with self._lock:
            return [seq for seq, _ in itertools.takewhile(lambda item: item[0] <= upto, self._items)]

    def acknowledge(self, upto: int) -> int:
        removed = 0
        with self._lock:
            while self._items and self._items[0][0] <= upto:
                self._bytes -= len(self._items.popleft()[1])
                removed += 1
        return removed

    def drop_oldest(self, count: int, above: int) -> list[tuple[int, int]]:
        """Remove up to ``count`` oldest records with seq > ``above``; return their seq ranges."""
        ranges: list[tuple[int, int]] = []
        with self._lock:
            kept: list[tuple[int, bytes]] = []
            while self._items and self._items[0][0] <= above:
                kept.append(self._items.popleft())
            removed = 0
            while self._items and removed < count:
                seq, record = self._items.popleft()
                self._bytes -= len(record)
                removed += 1
                if ranges and ranges[-1][1] == seq - 1:
                    ranges[-1] = (ranges[-1][0], seq)
                else:
                    ranges.append((seq, seq))
            self._items.extendleft(reversed(kept))
        return ranges

    def oldest(self, max_events: int, max_bytes: int) -> list[tuple[int, bytes]]:
        """The oldest records (without removing them) up to a count and a byte size."""
        out: list[tuple[int, bytes]] = []
        size = 0
        with self._lock:
            for item in itertools.islice(self._items, max_events):
                size += len(item[1])
                if size > max_bytes:
                    break
                out.append(item)
        return out

    def first_seq(self) -> int:
        with self._lock:
            return self._items[0][0] if self._items else 0

    def last_seq(self) -> int:
        with self._lock:
            return self._items[-1][0] if self._items else 0

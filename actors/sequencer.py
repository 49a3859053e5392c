"""The probe's one sequence space and per-source replay positions, shared across restarts.

Lives outside the signer actor so that a restarted signer continues where the failed one
stopped. Ordinals number the events of one source (a capture replay); a source replayed
again (after a crash, or the same file run twice) skips what the spool already took.
"""

from __future__ import annotations

import threading
from typing import Callable


class Sequencer:
    """Next sequence number and, per source, the next ordinal not yet signed."""

    def __init__(self, next_seq: int, committed_ordinal: Callable[[str], int]) -> None:
        self._next_seq = next_seq
        self._committed = committed_ordinal
        self._ordinals: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def advance(self, next_seq: int) -> None:
        with self._lock:
            self._next_seq = max(self._next_seq, next_seq)

    def ensure_above(self, seq: int) -> None:
        """Never hand out ``seq`` or anything below it (the Core already holds it)."""
        self.advance(seq + 1)

    def ordinal(self, source: str) -> int:
        """The next ordinal of ``source`` that has not been signed yet."""
        with self._lock:
            if source not in self._ordinals:
                self._ordinals[source] = self._committed(source)
            return self._ordinals[source]

    def skip_count(self, source: str, first_ordinal: int, count: int) -> int:
        """How many leading events of a batch were already signed (or committed earlier)."""
        return max(0, min(count, self.ordinal(source) - first_ordinal))

    def signed_through(self, source: str, next_ordinal: int) -> None:
        with self._lock:
            self._ordinals[source] = max(self._ordinals.get(source, 0), next_ordinal)

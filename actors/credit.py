"""Credit windows: how many batches a stage may have outstanding downstream.

The receiver grants a fixed window; the sender takes one credit per batch and the
receiver returns it when the batch is handled. A file replay waits for credit
(lossless); a live capture that finds the window closed drops at the source and counts.
"""

from __future__ import annotations

import threading


class Window:
    """A counting window of outstanding batches between two stages."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = threading.Semaphore(size)
        self._outstanding = 0
        self._lock = threading.Lock()

    def acquire(self, timeout: float | None = None) -> bool:
        """Take one credit, waiting up to ``timeout`` (None: forever); False if none came."""
        if not self._free.acquire(timeout=timeout):
            return False
        with self._lock:
            self._outstanding += 1
        return True

    def try_acquire(self) -> bool:
        """Take one credit only if one is free now."""
        return self.acquire(timeout=0) if self._outstanding < self.size else False

    def release(self) -> None:
        """Give one credit back (the batch is handled, or dropped)."""
        with self._lock:
            if self._outstanding == 0:
                return
            self._outstanding -= 1
        self._free.release()

    @property
    def outstanding(self) -> int:
        return self._outstanding

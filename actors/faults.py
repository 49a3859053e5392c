"""Fault injection for the scenario scripts (test hooks; off unless configured).

``[faults] sign_fail_file``: while that file exists and holds a number N, the signer
fails one event in N. It does so by handing the real signing code a copy of the event
whose body is not bytes, so the failure takes the path every unsignable event takes:
``sign_batch`` refuses it, the signer drops it with reason ``signature``, logs it, counts
it, and the next event takes its sequence number. Removing the file (or writing 0) ends
the fault. No event can be made unsignable from the wire (bodies are encoded by the
outbox, timestamps come from the capture), so ``scenarios/signature_failure.py`` needs
this switch to show what the probe does when signing fails.
"""

from __future__ import annotations

import os

from protocols.events.base import EncodedEvent


class SignFault:
    """Fails one event in N while the control file at ``path`` says N (0 or absent: none)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.every = 0
        self.injected = 0
        self._seen = 0
        self._stamp: tuple[int, int] | None = None

    def _refresh(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.every, self._stamp = 0, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            with open(self.path) as fh:
                self.every = max(0, int(fh.read().strip() or 0))
        except (OSError, ValueError):
            self.every = 0

    def apply(self, events: list[EncodedEvent]) -> list[EncodedEvent]:
        """``events`` with every N-th (counted over batches) made unsignable."""
        self._refresh()
        if not self.every:
            return events
        out = list(events)
        for i, event in enumerate(out):
            self._seen += 1
            if self._seen % self.every == 0:
                out[i] = EncodedEvent(event.ts, event.kind, None)  # type: ignore[arg-type]  # a body that is not bytes
                self.injected += 1
        return out

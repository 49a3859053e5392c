"""The dissection process's end of the pipe: encoded event batches out to the delivery process.

Events are numbered by ordinal within their source; those below ``resume_ordinal`` (already
committed by an earlier run) are counted but not sent. An event that cannot be encoded
travels as ``None`` so the delivery process can account for it as dropped.
"""

from __future__ import annotations

import threading
from typing import Any, BinaryIO

from protocols.errors import EventError
from protocols.events.base import encode_body
from protocols.ipc import encode_message


class Outbox:
    """Writes length-prefixed msgpack messages to the delivery process (blocking when full)."""

    def __init__(self, stream: BinaryIO, source: str, resume_ordinal: int = 0) -> None:
        self.stream = stream
        self.source = source
        self.resume_ordinal = resume_ordinal
        self.next_ordinal = 0
        self.encoding_failures = 0
        #: events not sent because an earlier run already committed them
        self.already_stored = 0
        self._lock = threading.Lock()

    def _write(self, message: dict[str, Any]) -> None:
        data = encode_message(message)
        with self._lock:
            self.stream.write(data)
            self.stream.flush()

    def emit(self, events: list[Any]) -> int:
        """Encode and send ``events`` (attrs instances); return how many were sent."""
        first = self.next_ordinal
        self.next_ordinal += len(events)
        skip = max(0, min(len(events), self.resume_ordinal - first))
        self.already_stored += skip
        if skip == len(events):
            return 0
        encoded: list[Any] = []
        for event in events[skip:]:
            try:
                e = encode_body(event)
            except EventError:
                self.encoding_failures += 1
                encoded.append(None)
                continue
            encoded.append((e.ts, e.kind, e.body))
        self._write({"t": "events", "src": self.source, "ord": first + skip, "ev": encoded})
        return len(encoded)

    def stats(self, counters: dict[str, int]) -> None:
        self._write({"t": "stats", "c": counters})

    def reply(self, request_id: int, result: dict[str, Any]) -> None:
        """Answer an operator request the delivery process forwarded (pause, flows, flush)."""
        self._write({"t": "reply", "id": request_id, "r": result})

    def done(self, counters: dict[str, int], error: str | None = None) -> None:
        """The source is exhausted (or failed with ``error``): nothing more will come."""
        self._write({"t": "done", "c": counters, "error": error, "events": self.next_ordinal})

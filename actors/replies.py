"""Request/reply over the one-way pipes to the dissection processes (operator requests only).

The delivery process numbers each request, sends it as a control line, and waits for the
``reply`` message with that number that the dissection process writes among its event
batches. Never used on the data path: one console request, one short wait.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any, Callable


class ReplyBoard:
    """Pending requests by id; the reader thread of each dissection process posts replies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, list[Any]] = {}  # id -> [event, reply]

    def ask_all(self, senders: list[Callable[[int], bool]], timeout: float) -> list[dict[str, Any] | None]:
        """Call each ``send(request_id)`` at once, then wait for all replies; None where none came in time."""
        slots: list[tuple[int, list[Any]]] = []
        with self._lock:
            for _ in senders:
                request_id = next(self._ids)
                slot: list[Any] = [threading.Event(), None]
                self._waiting[request_id] = slot
                slots.append((request_id, slot))
        try:
            sent = [send(request_id) for send, (request_id, _) in zip(senders, slots)]
            deadline = time.monotonic() + timeout
            for ok, (_, slot) in zip(sent, slots):
                if ok:
                    slot[0].wait(max(0.0, deadline - time.monotonic()))
            return [slot[1] if ok else None for ok, (_, slot) in zip(sent, slots)]
        finally:
            with self._lock:
                for request_id, _ in slots:
                    self._waiting.pop(request_id, None)

    def deliver(self, message: dict[str, Any]) -> None:
        """A ``reply`` message came off a pipe: wake whoever waits for it (late ones are dropped)."""
        reply = message.get("r")
        with self._lock:
            slot = self._waiting.get(message.get("id"))  # type: ignore[arg-type]
        if slot is not None:
            slot[1] = reply if isinstance(reply, dict) else {"error": "malformed reply"}
            slot[0].set()

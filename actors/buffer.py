"""The buffer actor: the one writer of the spool and the memory tier."""

from __future__ import annotations

import logging
import threading
from typing import Any

from actors.base import SupervisedActor, handles
from actors.credit import Window
from actors.messages import Acked, EventsDropped, SequenceReused, Shed, SignedEvents, Stored, Tick
from actors.metrics import Metrics
from actors.supervisor import Directory
from storage.buffer import TieredBuffer

log = logging.getLogger("probe.buffer")

#: seconds between maintenance rounds (disk retry, deferred deletions, moves back to disk)
MAINTAIN_EVERY = 1.0


class BufferActor(SupervisedActor):
    """Stores signed batches, applies the Core's acks, sheds on resource pressure.

    Every event that leaves the buffer is counted here, by outcome, so that the metrics
    ``events_created_total = events_delivered_total + events_dropped_total + buffer_events``
    agree with the buffer's own accounts.
    """

    name = "buffer"
    DATA_MESSAGES = (SignedEvents, EventsDropped, Acked)

    def __init__(self, supervisor: Any, *, buffer: TieredBuffer, directory: Directory, inbox: Window, metrics: Metrics) -> None:
        super().__init__(supervisor)
        self.buffer = buffer
        self.directory = directory
        self.inbox = inbox
        self.metrics = metrics
        self._disk_ok = True
        self._stopped = threading.Event()

    def start_child(self) -> None:
        self.start_ticking(MAINTAIN_EVERY, self._stopped)

    @handles(Tick)
    def on_tick(self, _: Tick) -> None:
        """Retry a failed disk, finish deletions it refused, move memory-tier events to disk."""
        migrated = self.buffer.migrated
        delivered, dropped = self.buffer.maintain()
        self._count_delivered(delivered, dropped, migrated)

    @handles(SignedEvents)
    def on_signed(self, batch: SignedEvents) -> None:
        try:
            outcome = self.buffer.store(batch.records, batch.progress)
            if batch.records:
                self.metrics.inc("events_buffered_total", len(batch.records), tier=outcome.tier)
                for kind, n in batch.kinds.items():
                    if n:
                        self.metrics.inc("events_created_total", n, kind=kind)
            self._count_drops(outcome.dropped)
        finally:
            self.inbox.release()
        self._publish_gauges()
        if batch.records:
            self.directory.tell("uplink", Stored(batch.records[-1][0]), wait=0)

    @handles(EventsDropped)
    def on_dropped(self, dropped: EventsDropped) -> None:
        self.buffer.count_dropped(dropped.reason, dropped.count)
        self.metrics.inc("events_created_total", dropped.count, kind="unsigned")
        self._count_drops({dropped.reason: dropped.count})

    @handles(Acked)
    def on_acked(self, acked: Acked) -> None:
        migrated = self.buffer.migrated
        delivered, dropped = self.buffer.acknowledge(acked.seq, dict(acked.refused))
        self._count_delivered(delivered, dropped, migrated)

    @handles(SequenceReused)
    def on_sequence_reused(self, reused: SequenceReused) -> None:
        migrated = self.buffer.migrated
        delivered, dropped = self.buffer.drop_reused(reused.through)
        self._count_delivered(delivered, dropped, migrated)

    def _count_delivered(self, delivered: int, dropped: dict[str, int], migrated: int) -> None:
        if delivered:
            self.metrics.inc("events_delivered_total", delivered)
        self._count_drops(dropped)
        if self.buffer.migrated > migrated:
            self.metrics.inc("buffer_migrated_total", self.buffer.migrated - migrated)
        self._publish_gauges()

    @handles(Shed)
    def on_shed(self, shed: Shed) -> None:
        dropped = self.buffer.shed_memory(shed.reason)
        self._count_drops({shed.reason: dropped})
        log.warning("shed %d events from the memory tier (%s)", dropped, shed.reason, extra={"component": "buffer", "event": "shed", "reason": shed.reason})
        self._publish_gauges()

    def stop_child(self) -> None:
        self._stopped.set()
        self._publish_gauges()

    def _count_drops(self, dropped: dict[str, int]) -> None:
        for reason, n in dropped.items():
            if n:
                self.metrics.inc("events_dropped_total", n, reason=reason)
                log.warning(
                    "dropped %d events (%s)", n, reason,
                    extra={"component": "buffer", "event": "events_dropped", "reason": reason, "count": n},
                )

    def _publish_gauges(self) -> None:
        b = self.buffer
        if b.disk_ok != self._disk_ok:
            self._disk_ok = b.disk_ok
            if b.disk_ok:
                log.info("the spool takes events again", extra={"component": "buffer", "event": "disk_recovered"})
            else:
                log.warning(
                    "the spool refuses writes (%s); events go to the memory tier", b.disk_error,
                    extra={"component": "buffer", "event": "disk_failed", "reason": b.disk_error},
                )
        self.metrics.set("buffer_disk_ok", 1.0 if b.disk_ok else 0.0)
        self.metrics.set("buffer_events", b.spool.pending, tier="disk")
        self.metrics.set("buffer_events", len(b.memory), tier="memory")
        self.metrics.set("buffer_bytes", b.spool.bytes_used, tier="disk")
        self.metrics.set("buffer_file_bytes", b.spool.file_bytes(), tier="disk")
        self.metrics.set("buffer_bytes", b.memory.bytes_used, tier="memory")
        self.metrics.set("buffer_utilization", b.spool.bytes_used / b.spool.capacity, tier="disk")
        self.metrics.set("buffer_utilization", max(len(b.memory) / b.memory.max_events, b.memory.bytes_used / b.memory.max_bytes), tier="memory")

"""The buffer actor: the one writer of the spool and the memory tier."""

from __future__ import annotations

import logging
from typing import Any

from actors.base import SupervisedActor, handles
from actors.credit import Window
from actors.messages import Acked, EventsDropped, Shed, SignedEvents, Stored
from actors.metrics import Metrics
from actors.supervisor import Directory
from storage.buffer import TieredBuffer

log = logging.getLogger("probe.buffer")


class BufferActor(SupervisedActor):
    """Stores signed batches, applies the Core's acks, sheds on resource pressure."""

    name = "buffer"
    DATA_MESSAGES = (SignedEvents, EventsDropped, Acked)

    def __init__(self, supervisor: Any, *, buffer: TieredBuffer, directory: Directory, inbox: Window, metrics: Metrics) -> None:
        super().__init__(supervisor)
        self.buffer = buffer
        self.directory = directory
        self.inbox = inbox
        self.metrics = metrics

    @handles(SignedEvents)
    def on_signed(self, batch: SignedEvents) -> None:
        try:
            if batch.records:
                tier = self.buffer.store(batch.records, batch.progress)
                self.metrics.inc("events_buffered_total", len(batch.records), tier=tier)
                for kind, n in batch.kinds.items():
                    if n:
                        self.metrics.inc("events_created_total", n, kind=kind)
            elif batch.progress is not None:
                self.buffer.spool.append([], batch.progress)
        finally:
            self.inbox.release()
        self._publish_gauges()
        if batch.records:
            self.directory.tell("uplink", Stored(batch.records[-1][0]), wait=0)

    @handles(EventsDropped)
    def on_dropped(self, dropped: EventsDropped) -> None:
        self.buffer.count_dropped(dropped.reason, dropped.count)
        self.metrics.inc("events_dropped_total", dropped.count, reason=dropped.reason)

    @handles(Acked)
    def on_acked(self, acked: Acked) -> None:
        delivered = self.buffer.acknowledge(acked.seq, dict(acked.refused))
        if delivered:
            self.metrics.inc("events_delivered_total", delivered)
        for _, reason in acked.refused:
            self.metrics.inc("events_dropped_total", 1, reason=reason)
        self._publish_gauges()

    @handles(Shed)
    def on_shed(self, shed: Shed) -> None:
        dropped = self.buffer.shed_memory(shed.reason)
        if dropped:
            self.metrics.inc("events_dropped_total", dropped, reason=shed.reason)
        log.warning("shed %d events from the memory tier (%s)", dropped, shed.reason, extra={"component": "buffer", "event": "shed", "reason": shed.reason})

    def _publish_gauges(self) -> None:
        b = self.buffer
        self.metrics.set("buffer_events", b.spool.pending, tier="disk")
        self.metrics.set("buffer_events", len(b.memory), tier="memory")
        self.metrics.set("buffer_bytes", b.spool.bytes_used, tier="disk")
        self.metrics.set("buffer_bytes", b.memory.bytes_used, tier="memory")
        self.metrics.set("buffer_utilization", b.spool.bytes_used / b.spool.quota_bytes, tier="disk")
        self.metrics.set("buffer_utilization", max(len(b.memory) / b.memory.max_events, b.memory.bytes_used / b.memory.max_bytes), tier="memory")

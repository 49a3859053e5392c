"""The dissector actor: frames in, Zeek-shaped events out, through the sans-I/O engine."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import attrs

from actors.base import SupervisedActor, handles
from actors.credit import Window
from actors.messages import FrameBatch, Tick
from actors.outbox import Outbox

log = logging.getLogger("probe.dissector")

#: seconds between counter reports to the delivery process
STATS_PERIOD = 1.0


# --- operator requests (from the console through the delivery process); each is answered
# with ``Outbox.reply(request_id, ...)`` after the frames queued before it are dissected


@attrs.frozen(slots=True)
class ReportCounters:
    """Send the counters now and answer ``request_id`` with ``info`` plus the packet count."""

    request_id: int
    info: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class TopFlows:
    """Answer with the ``n`` open flows that carried the most bytes."""

    request_id: int
    n: int


@attrs.frozen(slots=True)
class FlushFlows:
    """End flows idle for ``idle`` s at ``now`` (None: the engine's packet clock); answer with counts."""

    request_id: int
    idle: float
    now: float | None = None


@attrs.frozen(slots=True)
class EvictFlows:
    """Resource pressure: end the oldest idle ``fraction`` of the open flows now."""

    fraction: float


class DissectorActor(SupervisedActor):
    """Runs the flow engine over each frame batch and hands the events to the outbox."""

    name = "dissector"
    DATA_MESSAGES = (FrameBatch,)

    def __init__(
        self,
        supervisor: Any,
        *,
        engine: Any,
        outbox: Outbox,
        inbox: Window,
        counters: Callable[[], dict[str, int]],
        on_finished: Callable[[], None],
    ) -> None:
        super().__init__(supervisor)
        self.engine = engine
        self.outbox = outbox
        self.inbox = inbox
        self.counters = counters
        self.on_finished = on_finished
        self._last_stats = 0.0

    @handles(FrameBatch)
    def on_frames(self, batch: FrameBatch) -> None:
        try:
            events = self.engine.feed(batch.frames) if batch.frames else []
            if batch.frames:
                events += self.engine.advance(batch.frames[-1][0])
            if batch.final:
                events += self.engine.finish()
            if events:
                self.outbox.emit(events)
        finally:
            self.inbox.release()
        now = time.monotonic()
        if batch.final:
            self.on_finished()
        elif now - self._last_stats >= STATS_PERIOD:
            self._last_stats = now
            self.outbox.stats(self.counters())

    @handles(Tick)
    def on_tick(self, tick: Tick) -> None:
        """Live capture with no traffic: expire idle flows by the wall clock, report counters."""
        events = self.engine.advance(tick.now)
        if events:
            self.outbox.emit(events)
        now = time.monotonic()
        if now - self._last_stats >= STATS_PERIOD:
            self._last_stats = now
            self.outbox.stats(self.counters())

    @handles(ReportCounters)
    def on_report(self, request: ReportCounters) -> None:
        counters = self.counters()
        self.outbox.stats(counters)
        self.outbox.reply(request.request_id, {**request.info, "packets": counters.get("packets", 0)})

    @handles(TopFlows)
    def on_top_flows(self, request: TopFlows) -> None:
        self.outbox.reply(request.request_id, {"open": self.engine.active_flows, "clock": self.engine.clock, "top": self.engine.top_flows(request.n)})

    @handles(FlushFlows)
    def on_flush(self, request: FlushFlows) -> None:
        before = self.engine.active_flows
        events = self.engine.flush_idle(request.idle, request.now)
        if events:
            self.outbox.emit(events)
        self.outbox.stats(self.counters())
        self.outbox.reply(
            request.request_id,
            {"open_before": before, "open_after": self.engine.active_flows, "events": len(events), "clock": self.engine.clock},
        )

    @handles(EvictFlows)
    def on_evict(self, evict: EvictFlows) -> None:
        """End the least recently active flows (their conn events go out as usual)."""
        count = int(self.engine.active_flows * evict.fraction)
        events = self.engine.evict_oldest(count) if count else []
        if events:
            self.outbox.emit(events)
        log.warning("evicted %d idle flows to shed memory", count, extra={"component": "dissector", "event": "flows_evicted", "count": count})

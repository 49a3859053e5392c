"""Alerts: the design's thresholds over sliding windows, raised and cleared, sent to the Core.

Every ``evaluate_interval`` seconds the alerts actor reads the metrics and evaluates:

| alert | condition (defaults, all in [alerts]) |
|---|---|
| ``connection_failures`` | Core connection failures over the last 60 s, per minute, > 10 |
| ``backpressure`` | the Core has held the probe back (backpressure frames, or all its credit in flight) for > 300 s without a break |
| ``buffer_utilization:<tier>`` | a buffer tier (disk, memory) fuller than 80 % |
| ``drops`` | events dropped over the last 10 s, per second, > 100 |
| ``signature_failures`` | signing failures over the last 60 s, per minute, > 10 |
| ``resource:<name>`` | memory, spool, disk or CPU above 90 % of its budget |
| ``identity`` | transmission halted on an identity failure (critical; no threshold) |

A level alert clears only below 90 % of its threshold, so a value hovering at the
threshold does not flap. Each transition is logged, kept on the :class:`AlertBoard`
(the console's view; it survives a restart of the actor), and sent to the Core as a
``notice`` event: the notices go into the signer as an EventBatch from source
``alerts:<boot id>``, so they get sequence numbers and signatures like any other event.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

import attrs

from actors.base import SupervisedActor, handles
from actors.credit import Window
from actors.messages import EventBatch, Tick
from actors.metrics import Metrics
from actors.supervisor import Directory
from protocols.events import encode_body
from protocols.events.notice import Notice

log = logging.getLogger("probe.alerts")

#: a level alert clears below this fraction of its threshold (hysteresis)
CLEAR_FRACTION = 0.9

NOTES = {
    "connection_failures": "Probe::Connection_Failures",
    "backpressure": "Probe::Backpressure",
    "buffer_utilization": "Probe::Buffer_High",
    "drops": "Probe::Events_Dropped",
    "signature_failures": "Probe::Signature_Failures",
    "resource": "Probe::Resource_High",
    "identity": "Probe::Identity_Halt",
}
#: alerts an operator must act on at once (the others are warnings)
CRITICAL = frozenset({"identity"})


@attrs.frozen
class AlertSettings:
    """The thresholds and windows of [alerts]."""

    connection_failures_per_min: float = 10.0
    connection_failures_window: float = 60.0
    backpressure_seconds: float = 300.0
    buffer_utilization: float = 0.8
    drops_per_second: float = 100.0
    drops_window: float = 10.0
    signature_failures_per_min: float = 10.0
    signature_failures_window: float = 60.0
    resource_utilization: float = 0.9
    evaluate_interval: float = 1.0


@attrs.frozen
class Alert:
    """One alert's state at a transition (or now, for an active one)."""

    key: str
    name: str
    sub: str | None
    state: str  # "raised" | "cleared"
    value: float
    threshold: float
    message: str
    at: float  # wall-clock time of the transition

    @property
    def note(self) -> str:
        return NOTES[self.name]

    @property
    def severity(self) -> str:
        return "critical" if self.name in CRITICAL else "warning"

    def as_dict(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "note": self.note, "severity": self.severity}

    def notice(self) -> Notice:
        return Notice(self.at, self.note, self.message, self.sub, self.state, float(self.value), float(self.threshold))


class SlidingCounter:
    """How much a counter grew over the last ``window`` seconds, from periodic samples."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._samples: collections.deque[tuple[float, float]] = collections.deque()

    def increase(self, now: float, value: float) -> float:
        """Record ``value`` at ``now``; return its growth since ``now - window``."""
        samples = self._samples
        if samples and value < samples[-1][1]:
            samples.clear()  # the counter was reset: start over
        samples.append((now, value))
        while len(samples) > 1 and samples[1][0] <= now - self.window:
            samples.popleft()
        return value - samples[0][1]


class AlertEvaluator:
    """The alert conditions over a Metrics; ``evaluate()`` returns the transitions since the last call."""

    def __init__(self, settings: AlertSettings, metrics: Metrics, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.wall = wall
        self.active: dict[str, Alert] = {}
        self._connection_failures = SlidingCounter(settings.connection_failures_window)
        self._drops = SlidingCounter(settings.drops_window)
        self._signature_failures = SlidingCounter(settings.signature_failures_window)
        self._backpressure_since: float | None = None

    def evaluate(self) -> list[Alert]:
        """Evaluate every condition now; return the alerts raised or cleared by it."""
        s = self.settings
        now = self.clock()
        m = self.metrics
        out: list[Alert] = []
        failures = self._connection_failures.increase(now, m.total("uplink_connection_failures_total"))
        per_min = failures * 60.0 / s.connection_failures_window
        out += self._rate("connection_failures", None, per_min, s.connection_failures_per_min,
                          f"{failures:.0f} Core connection failures in the last {s.connection_failures_window:g} s ({per_min:.1f}/min)")
        drops = self._drops.increase(now, m.total("events_dropped_total"))
        per_s = drops / s.drops_window
        out += self._rate("drops", None, per_s, s.drops_per_second,
                          f"{drops:.0f} events dropped in the last {s.drops_window:g} s ({per_s:.1f}/s)")
        bad = self._signature_failures.increase(now, m.total("signature_failures_total"))
        bad_per_min = bad * 60.0 / s.signature_failures_window
        out += self._rate("signature_failures", None, bad_per_min, s.signature_failures_per_min,
                          f"{bad:.0f} events could not be signed in the last {s.signature_failures_window:g} s ({bad_per_min:.1f}/min)")
        held = any(v >= 1 for _, v in m.gauges("uplink_backpressure")) or any(v >= 1 for _, v in m.gauges("uplink_credit_exhausted"))
        if held:
            self._backpressure_since = now if self._backpressure_since is None else self._backpressure_since
        else:
            self._backpressure_since = None
        duration = now - self._backpressure_since if self._backpressure_since is not None else 0.0
        out += self._duration("backpressure", duration, s.backpressure_seconds, held,
                              f"the Core has held the probe back for {duration:.0f} s")
        halted = any(v >= 1 for _, v in m.gauges("transmission_halted")) or any(
            v >= 1 for labels, v in m.gauges("uplink_state") if labels.get("state") == "halted"
        )
        out += self._transition("identity", None, 1.0 if halted else 0.0, 1.0, halted, not halted,
                                "transmission halted on an identity failure: nothing is sent until an operator reloads the identity")
        for labels, value in m.gauges("buffer_utilization"):
            tier = labels.get("tier", "")
            out += self._level("buffer_utilization", tier, value, s.buffer_utilization, f"the {tier} buffer tier is {value:.0%} full")
        for labels, value in m.gauges("resource_utilization"):
            resource = labels.get("resource", "")
            out += self._level("resource", resource, value, s.resource_utilization, f"{resource} at {value:.0%} of its budget")
        return out

    # --- the three shapes of condition --------------------------------------------------

    def _rate(self, name: str, sub: str | None, value: float, threshold: float, message: str) -> list[Alert]:
        return self._transition(name, sub, value, threshold, value > threshold, value <= threshold, message)

    def _level(self, name: str, sub: str | None, value: float, threshold: float, message: str) -> list[Alert]:
        return self._transition(name, sub, value, threshold, value > threshold, value < threshold * CLEAR_FRACTION, message)

    def _duration(self, name: str, value: float, threshold: float, holding: bool, message: str) -> list[Alert]:
        return self._transition(name, None, value, threshold, holding and value > threshold, not holding, message)

    def _transition(self, name: str, sub: str | None, value: float, threshold: float, fire: bool, clear: bool, message: str) -> list[Alert]:
        key = f"{name}:{sub}" if sub else name
        current = self.active.get(key)
        if current is None and fire:
            alert = Alert(key, name, sub, "raised", value, threshold, message, self.wall())
            self.active[key] = alert
            return [alert]
        if current is not None and clear:
            del self.active[key]
            return [Alert(key, name, sub, "cleared", value, threshold, f"cleared: {message}", self.wall())]
        if current is not None:
            self.active[key] = attrs.evolve(current, value=value, message=message)
        return []


class AlertBoard:
    """Active alerts and recent transitions, shared with the console; survives restarts.

    Also holds the notices not yet handed to the signer and the next ordinal of the
    alerts' event source, so a restarted alerts actor neither loses nor renumbers them.
    """

    def __init__(self, history: int = 200) -> None:
        self._lock = threading.Lock()
        self._active: dict[str, Alert] = {}
        self._drops_at_raise: dict[str, float] = {}
        self._history: collections.deque[Alert] = collections.deque(maxlen=history)
        self.unsent: collections.deque[Alert] = collections.deque(maxlen=1000)
        self.next_ordinal = 0
        self.evaluator: AlertEvaluator | None = None

    def record(self, alert: Alert, drops_total: float = 0.0) -> None:
        """Keep a transition and queue its notice.

        A raised notice is an event like any other: while the alert is active the buffer
        may shed it with the oldest events. So when events were dropped between the raise
        and the clear, the raised notice is queued again (same ``ts``: the Core can tell
        a repeat) just before the cleared one.
        """
        with self._lock:
            if alert.state == "raised":
                self._active[alert.key] = alert
                self._drops_at_raise[alert.key] = drops_total
            else:
                raised = self._active.pop(alert.key, None)
                if raised is not None and drops_total > self._drops_at_raise.pop(alert.key, drops_total):
                    self.unsent.append(raised)
            self._history.append(alert)
            self.unsent.append(alert)

    def active(self) -> list[dict[str, Any]]:
        """The alerts raised now (with their latest value)."""
        live = self.evaluator.active if self.evaluator is not None else {}
        with self._lock:
            return [live.get(k, a).as_dict() for k, a in sorted(self._active.items())]

    def history(self, n: int = 50) -> list[dict[str, Any]]:
        """The latest ``n`` transitions, oldest first."""
        with self._lock:
            return [a.as_dict() for a in list(self._history)[-n:]]

    def snapshot(self) -> dict[str, Any]:
        """What the console shows: active alerts and recent transitions."""
        return {"active": self.active(), "history": self.history()}


class AlertsActor(SupervisedActor):
    """Evaluates the alerts every ``evaluate_interval`` s and hands notices to the signer."""

    name = "alerts"

    def __init__(
        self,
        supervisor: Any,
        *,
        settings: AlertSettings,
        metrics: Metrics,
        board: AlertBoard,
        directory: Directory,
        signer_window: Window,
        source: str,
        after_evaluate: Callable[[AlertBoard], None] | None = None,
    ) -> None:
        super().__init__(supervisor)
        self.settings = settings
        self.metrics = metrics
        self.board = board
        self.directory = directory
        self.signer_window = signer_window
        self.source = source
        self.after_evaluate = after_evaluate
        if board.evaluator is None:  # the sliding windows survive a restart with the board
            board.evaluator = AlertEvaluator(settings, metrics)
        self.evaluator = board.evaluator
        self._stopped = threading.Event()

    def start_child(self) -> None:
        self.start_ticking(self.settings.evaluate_interval, self._stopped)

    def stop_child(self) -> None:
        self._stopped.set()

    @handles(Tick)
    def on_tick(self, _: Tick) -> None:
        for alert in self.evaluator.evaluate():
            self._transition(alert)
        self._send_notices()
        if self.after_evaluate is not None:
            self.after_evaluate(self.board)

    def _transition(self, alert: Alert) -> None:
        self.board.record(alert, self.metrics.total("events_dropped_total"))
        self.metrics.set("alerts_active", 1.0 if alert.state == "raised" else 0.0, alert=alert.key)
        if alert.state == "raised":
            self.metrics.inc("alerts_raised_total", alert=alert.key)
            log.warning(
                "alert raised: %s", alert.message,
                extra={"component": "alerts", "event": "alert_raised", "alert": alert.key, "value": alert.value, "threshold": alert.threshold},
            )
        else:
            log.info(
                "alert cleared: %s", alert.key,
                extra={"component": "alerts", "event": "alert_cleared", "alert": alert.key, "value": alert.value, "threshold": alert.threshold},
            )

    def _send_notices(self) -> None:
        """Hand the pending notices to the signer as one batch, if it has credit now."""
        if not self.board.unsent or not self.signer_window.acquire(timeout=0):
            return
        alerts = list(self.board.unsent)
        events = [encode_body(alert.notice()) for alert in alerts]
        batch = EventBatch(self.source, self.board.next_ordinal, events)
        if not self.directory.tell("signer", batch, wait=0):
            self.signer_window.release()  # the signer is restarting: try again next time
            return
        self.board.next_ordinal += len(events)
        for _ in alerts:
            self.board.unsent.popleft()

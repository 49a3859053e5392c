"""Alert rules over real Metrics with a controlled clock: each rule raises and clears."""

from __future__ import annotations

import pytest

from actors.alerts import AlertBoard, AlertEvaluator, AlertSettings, SlidingCounter
from actors.metrics import Metrics
from protocols.events import as_json_object
from protocols.events.notice import Notice


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig():
    metrics = Metrics()
    clock = Clock()
    evaluator = AlertEvaluator(AlertSettings(), metrics, clock=clock, wall=lambda: 1_700_000_000.0 + clock.now)
    return metrics, clock, evaluator


def states(alerts):
    return [(a.key, a.state) for a in alerts]


def test_sliding_counter_counts_only_the_window():
    c = SlidingCounter(60)
    assert c.increase(0, 0) == 0
    assert c.increase(30, 5) == 5
    assert c.increase(59, 12) == 12
    assert c.increase(90, 12) == 7  # the 5 of t=30 are still in [30, 90]; the first 5 left
    assert c.increase(200, 12) == 0
    assert c.increase(201, 3) == 0  # a reset counter starts over


def test_connection_failures_over_ten_a_minute(rig):
    metrics, clock, ev = rig
    assert ev.evaluate() == []
    for _ in range(10):  # 10 in a minute is the limit, not over it
        clock.now += 5
        metrics.inc("uplink_connection_failures_total")
        assert ev.evaluate() == []
    clock.now += 1
    metrics.inc("uplink_connection_failures_total")
    raised = ev.evaluate()
    assert states(raised) == [("connection_failures", "raised")]
    assert raised[0].note == "Probe::Connection_Failures" and raised[0].value == pytest.approx(11.0)
    clock.now += 5  # failures stop, but the window still holds all 11
    assert ev.evaluate() == []
    clock.now += 25  # the first four have left the window: 7 in the last minute
    assert states(ev.evaluate()) == [("connection_failures", "cleared")]


def test_backpressure_held_for_five_minutes(rig):
    metrics, clock, ev = rig
    metrics.set("uplink_credit_exhausted", 1.0)
    assert ev.evaluate() == []
    clock.now += 200
    metrics.set("uplink_credit_exhausted", 0.0)  # a break resets the duration
    assert ev.evaluate() == []
    metrics.set("uplink_backpressure", 1.0)
    assert ev.evaluate() == []
    clock.now += 299
    assert ev.evaluate() == []
    clock.now += 2
    assert states(ev.evaluate()) == [("backpressure", "raised")]
    metrics.set("uplink_backpressure", 0.0)
    assert states(ev.evaluate()) == [("backpressure", "cleared")]


def test_buffer_utilization_per_tier_with_hysteresis(rig):
    metrics, clock, ev = rig
    metrics.set("buffer_utilization", 0.79, tier="disk")
    metrics.set("buffer_utilization", 0.95, tier="memory")
    assert states(ev.evaluate()) == [("buffer_utilization:memory", "raised")]
    metrics.set("buffer_utilization", 0.75, tier="memory")  # under 80 % but not under 72 %
    assert ev.evaluate() == []
    metrics.set("buffer_utilization", 0.71, tier="memory")
    assert states(ev.evaluate()) == [("buffer_utilization:memory", "cleared")]


def test_drops_over_a_hundred_a_second(rig):
    metrics, clock, ev = rig
    metrics.add_collector(lambda: [("counter", "events_dropped_total", {"reason": "buffer_full"}, float(drops[0]))])
    drops = [0]
    ev.evaluate()
    clock.now += 5
    drops[0] = 1000  # 1000 in the 10 s window: 100/s, not over
    assert ev.evaluate() == []
    clock.now += 1
    drops[0] = 1001
    assert states(ev.evaluate()) == [("drops", "raised")]
    clock.now += 11
    assert states(ev.evaluate()) == [("drops", "cleared")]


def test_signature_failures_over_ten_a_minute(rig):
    metrics, clock, ev = rig
    ev.evaluate()
    clock.now += 1
    metrics.inc("signature_failures_total", 11)
    assert states(ev.evaluate()) == [("signature_failures", "raised")]
    clock.now += 61
    assert states(ev.evaluate()) == [("signature_failures", "cleared")]


def test_any_resource_over_ninety_percent(rig):
    metrics, clock, ev = rig
    metrics.set("resource_utilization", 0.5, resource="memory")
    metrics.set("resource_utilization", 0.91, resource="disk")
    assert states(ev.evaluate()) == [("resource:disk", "raised")]
    metrics.set("resource_utilization", 0.95, resource="memory")
    assert states(ev.evaluate()) == [("resource:memory", "raised")]
    metrics.set("resource_utilization", 0.2, resource="disk")
    assert states(ev.evaluate()) == [("resource:disk", "cleared")]


def test_thresholds_come_from_the_settings():
    metrics, clock = Metrics(), Clock()
    ev = AlertEvaluator(AlertSettings(buffer_utilization=0.5, resource_utilization=0.99), metrics, clock=clock)
    metrics.set("buffer_utilization", 0.6, tier="disk")
    metrics.set("resource_utilization", 0.95, resource="cpu")
    assert states(ev.evaluate()) == [("buffer_utilization:disk", "raised")]


def test_the_board_keeps_active_alerts_history_and_notices(rig):
    metrics, clock, ev = rig
    board = AlertBoard()
    board.evaluator = ev
    metrics.set("resource_utilization", 0.97, resource="memory")
    for alert in ev.evaluate():
        board.record(alert)
    metrics.set("resource_utilization", 0.98, resource="memory")
    ev.evaluate()
    active = board.active()
    assert [a["key"] for a in active] == ["resource:memory"] and active[0]["value"] == 0.98
    metrics.set("resource_utilization", 0.1, resource="memory")
    for alert in ev.evaluate():
        board.record(alert)
    assert board.active() == []
    assert [(h["key"], h["state"]) for h in board.history()] == [("resource:memory", "raised"), ("resource:memory", "cleared")]
    notices = [a.notice() for a in board.unsent]
    assert all(isinstance(n, Notice) for n in notices)
    shown = as_json_object(notices[0])
    assert shown["kind"] == "notice" and shown["note"] == "Probe::Resource_High" and shown["sub"] == "memory"
    assert shown["state"] == "raised" and shown["threshold"] == 0.9 and shown["value"] == 0.97


def test_a_raised_notice_is_sent_again_with_the_clear_when_events_were_dropped_meanwhile(rig):
    metrics, clock, ev = rig
    board = AlertBoard()
    metrics.set("buffer_utilization", 0.99, tier="memory")
    (raised,) = ev.evaluate()
    board.record(raised, drops_total=0)
    metrics.set("buffer_utilization", 0.1, tier="memory")
    (cleared,) = ev.evaluate()
    board.record(cleared, drops_total=500)  # the buffer shed events (maybe that notice) meanwhile
    assert [(a.state, a.at) for a in board.unsent] == [("raised", raised.at), ("raised", raised.at), ("cleared", cleared.at)]
    metrics.set("buffer_utilization", 0.99, tier="memory")
    (again,) = ev.evaluate()
    board.record(again, drops_total=500)
    metrics.set("buffer_utilization", 0.1, tier="memory")
    (over,) = ev.evaluate()
    board.record(over, drops_total=500)  # nothing dropped this time: no repeat
    assert [a.state for a in list(board.unsent)[3:]] == ["raised", "cleared"]


def test_a_halted_transmission_is_a_critical_alert_until_it_resumes(rig):
    metrics, clock, ev = rig
    metrics.set("uplink_state", 1.0, state="connected")
    assert ev.evaluate() == []
    metrics.set("uplink_state", 0.0, state="connected")
    metrics.set("uplink_state", 1.0, state="halted")
    (raised,) = ev.evaluate()
    assert (raised.key, raised.state, raised.severity, raised.note) == ("identity", "raised", "critical", "Probe::Identity_Halt")
    assert raised.as_dict()["severity"] == "critical"
    metrics.set("uplink_state", 0.0, state="halted")
    metrics.set("uplink_state", 1.0, state="disconnected")
    assert states(ev.evaluate()) == [("identity", "cleared")]

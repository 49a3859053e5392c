"""Metrics: counters, gauges and collectors; the Prometheus exposition promtool accepts."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from actors.metrics import DESCRIPTIONS, Metrics
from probe.metrics_http import exposition


def test_a_collector_replaces_increments_of_the_same_name():
    m = Metrics()
    m.inc("events_dropped_total", 3, reason="shed")  # an actor's own count
    m.inc("events_created_total", 10, kind="dns")
    m.add_collector(lambda: [("counter", "events_dropped_total", {"reason": "buffer_full"}, 7.0), ("counter", "events_dropped_total", {"reason": "shed"}, 3.0)])
    assert m.total("events_dropped_total") == 10
    assert m.by_label("events_dropped_total", "reason") == {"buffer_full": 7.0, "shed": 3.0}
    assert m.counter("events_created_total", kind="dns") == 10
    assert m.snapshot()['events_dropped_total{reason="buffer_full"}'] == 7.0


def test_gauges_keep_the_last_value_per_label_set():
    m = Metrics()
    m.set("buffer_utilization", 0.2, tier="disk")
    m.set("buffer_utilization", 0.9, tier="disk")
    m.set("buffer_utilization", 0.1, tier="memory")
    assert m.gauge("buffer_utilization", tier="disk") == 0.9
    assert sorted((labels["tier"], v) for labels, v in m.gauges("buffer_utilization")) == [("disk", 0.9), ("memory", 0.1)]


def test_the_exposition_has_help_type_and_prefixed_names():
    m = Metrics()
    m.inc("events_created_total", 2, kind="conn")
    m.inc("supervisor_restarts_total", child="worker-0", strategy="restart")
    m.set("buffer_utilization", 0.5, tier="disk")
    m.inc("uplink_bad_frames_total", code='odd"code\\')  # label values are escaped
    text = exposition(m)
    assert f"# HELP probe_events_created_total {DESCRIPTIONS['events_created_total']}" in text
    assert "# TYPE probe_events_created_total counter" in text
    assert 'probe_events_created_total{kind="conn"} 2.0' in text
    assert 'probe_supervisor_restarts_total{child="worker-0",strategy="restart"} 1.0' in text
    assert "# TYPE probe_buffer_utilization gauge" in text
    assert 'code="odd\\"code\\\\"' in text
    assert "process_resident_memory_bytes" in text


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus package) is not installed")
def test_promtool_accepts_every_documented_metric():
    m = Metrics()
    for name in DESCRIPTIONS:
        if name.endswith("_total"):
            m.inc(name, 1, reason="x")
        else:
            m.set(name, 0.5, tier="disk")
    result = subprocess.run(["promtool", "check", "metrics"], input=exposition(m), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr

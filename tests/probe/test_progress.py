"""Progress lines: share of the file, rate and time left for a replay; drops for a live capture."""

from __future__ import annotations

import io
import time

from probe.progress import ProgressReporter, describe


def test_a_replay_shows_its_share_rate_and_time_left():
    counters = {"packets": 50_000, "capture_bytes_read": 26 << 20, "capture_bytes_done": 25 << 20, "capture_file_size": 100 << 20}
    line = describe(counters, 12_345.0, 30.0, bar=True)
    assert line.startswith("[######..................]")
    assert " 25.0%" in line and "50k packets" in line and "12k packets/s" in line and "ETA 1:30" in line
    plain = describe(counters, 12_345.0, 30.0, bar=False)
    assert "[" not in plain and " 25.0%" in plain
    assert "finishing" in describe({**counters, "capture_bytes_done": 100 << 20}, 0, 30, bar=False)
    assert describe({}, 0, 0.5, bar=True) == "starting"


def test_a_live_capture_shows_rate_flows_and_every_drop():
    counters = {"packets": 1_500_000, "flows": 321, "kernel_drops": 7, "capture_dropped:window": 2048, "capture_dropped:paused": 10}
    line = describe(counters, 80_000.0, 3725.0, bar=False, live=True)
    assert "1.5M packets" in line and "80k packets/s" in line and "321 flows" in line
    assert "drops: kernel 7, at source 2058" in line and "up 1:02:05" in line


def test_plain_lines_come_periodically_and_the_bar_is_cleared_at_the_end():
    stream = io.StringIO()
    counts = {"packets": 0}

    def counters():
        counts["packets"] += 1000
        return dict(counts)

    reporter = ProgressReporter(counters, stream, live=True, bar=False, period=0.05)
    reporter.start()
    time.sleep(0.3)
    reporter.stop()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and all(l.startswith("progress: ") and "packets/s" in l for l in lines)
    bar = io.StringIO()
    reporter = ProgressReporter(counters, bar, live=True, bar=True, period=0.05)
    reporter.start()
    time.sleep(0.15)
    reporter.stop()
    assert bar.getvalue().startswith("\r\x1b[K") and bar.getvalue().endswith("\r\x1b[K") and "\n" not in bar.getvalue()

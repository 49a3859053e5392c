"""Structured logs: one JSON object a line; repeats summarised by a line of their own."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest

from probe.logs import JsonFormatter, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logger():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    clock = Clock()
    repeat = RepeatFilter(window=10.0, clock=clock)
    repeat.handler = handler
    handler.addFilter(repeat)
    log = logging.getLogger("probe.test_uplink")
    log.propagate = False
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    yield log, stream, repeat, clock
    log.handlers = []


def emit(log, clock, message, *args, **extra):
    record = log.makeRecord(log.name, logging.WARNING, __file__, 1, message, args, None, extra=extra)
    record.created = clock.now
    log.handle(record)


def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_line_is_one_json_object_with_the_fields(logger):
    log, stream, repeat, clock = logger
    emit(log, clock, "Core unreachable (%s)", "refused", component="uplink", event="connection_failed", reason="refused", counters={"failures": 3})
    (line,) = lines(stream)
    assert line["level"] == "warning" and line["component"] == "uplink" and line["event"] == "connection_failed"
    assert line["reason"] == "refused" and line["counters"] == {"failures": 3}
    assert line["message"] == "Core unreachable (refused)" and line["time"].endswith("Z")


def test_repeats_are_summarised_on_a_line_of_their_own_when_the_window_ends(logger):
    log, stream, repeat, clock = logger
    for n in range(500):
        emit(log, clock, "Core unreachable (%s)", n, component="uplink", event="connection_failed")
        clock.now += 0.01
    emit(log, clock, "spool full", component="buffer", event="spool_full")
    assert [l["message"] for l in lines(stream)] == ["Core unreachable (0)", "spool full"]
    clock.now += 4.9  # the window (10 s from the first) has not ended yet
    assert repeat.flush() == 0
    clock.now += 0.2
    assert repeat.flush() == 1  # it has now: one summary line, without waiting for a new message
    summary = lines(stream)[-1]
    assert summary["event"] == "suppressed" and summary["suppressed"] == 499
    assert summary["component"] == "uplink" and summary["repeated_event"] == "connection_failed"
    assert summary["level"] == "warning"
    assert summary["message"] == "suppressed 499 similar messages in the last 10 s: Core unreachable (0)"
    emit(log, clock, "Core unreachable (%s)", "again", component="uplink", event="connection_failed")
    assert lines(stream)[-1]["message"] == "Core unreachable (again)"  # a new window starts
    assert repeat.flush() == 0


def test_a_window_without_repeats_writes_no_summary(logger):
    log, stream, repeat, clock = logger
    emit(log, clock, "connected", component="uplink", event="connected")
    clock.now += 60
    assert repeat.flush() == 0
    assert len(lines(stream)) == 1


def test_a_repeat_after_the_window_brings_the_summary_first(logger):
    log, stream, repeat, clock = logger
    for _ in range(3):
        emit(log, clock, "bad frame", component="uplink", event="bad_frame")
    clock.now += 11
    emit(log, clock, "bad frame", component="uplink", event="bad_frame")
    assert [l["event"] for l in lines(stream)] == ["bad_frame", "suppressed", "bad_frame"]
    assert lines(stream)[1]["suppressed"] == 2


def test_the_summary_is_written_at_exit():
    code = (
        "import logging, sys\n"
        "from probe.logs import setup_logging\n"
        "setup_logging('info', stream=sys.stdout, repeat_window=60)\n"
        "log = logging.getLogger('probe.buffer')\n"
        "for i in range(20): log.warning('spool full (%d)', i, extra={'component': 'buffer', 'event': 'spool_full'})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [l["event"] for l in out] == ["spool_full", "suppressed"]
    assert out[1]["suppressed"] == 19

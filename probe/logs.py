"""Structured logs: one JSON object a line, repeated messages rate-limited.

Fields: time, level, component, event, message, and whatever ``extra`` a call adds
(reason, counters, ...). A message repeated within the window (same logger, level and
format string) is suppressed and summarised by a line of its own, "suppressed N similar
messages", when the window ends, so a flood of errors cannot flood the log. Tracebacks
appear only at debug level.
"""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
from typing import Any, Callable, TextIO

import attrs

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def __init__(self, component: str = "probe", with_tracebacks: bool = False) -> None:
        super().__init__()
        self.component = component
        self.with_tracebacks = with_tracebacks

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "component": getattr(record, "component", None) or record.name.rpartition(".")[2] or self.component,
            "event": getattr(record, "event", None) or "log",
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)
        if record.exc_info and self.with_tracebacks:
            out["traceback"] = self.formatException(record.exc_info)
        elif record.exc_info and record.exc_info[1] is not None:
            out["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return json.dumps(out, default=str)


@attrs.define
class _Run:
    """A run of similar messages: when it started, how many were held back, the first one."""

    started: float
    first: logging.LogRecord
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Lets the first of a run of similar messages through per window; counts the rest.

    Similar means same logger, level and format string (the arguments may differ). When
    the window of a run ends with messages held back, one line of its own says so:
    ``suppressed N similar messages in the last W s: <first message>`` (event
    ``suppressed``, field ``suppressed``: N). :meth:`flush` writes those lines; the
    handler set up by :func:`setup_logging` calls it every second from a daemon thread
    and at exit, so the count appears when the window ends, not with the next message.
    """

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self.handler: logging.Handler | None = None
        self._runs: dict[tuple[str, int, str], _Run] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "event", None) == "suppressed" and getattr(record, "_summary", False):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = record.created
        ended: list[_Run] = []
        with self._lock:
            run = self._runs.get(key)
            if run is not None and now - run.started < self.window:
                run.suppressed += 1
                return False
            if run is not None and run.suppressed:
                ended.append(run)
            if len(self._runs) >= 10_000:  # bound the table: end every run now
                ended += [r for r in self._runs.values() if r.suppressed and r is not run]
                self._runs.clear()
            self._runs[key] = _Run(now, record)
        for old in ended:
            self._emit_summary(old, now)
        return True

    def flush(self, now: float | None = None, everything: bool = False) -> int:
        """Write a summary line for each run whose window has ended; return how many."""
        now = self.clock() if now is None else now
        ended: list[_Run] = []
        with self._lock:
            for key, run in list(self._runs.items()):
                if everything or now - run.started >= self.window:
                    del self._runs[key]
                    if run.suppressed:
                        ended.append(run)
        for run in ended:
            self._emit_summary(run, now)
        return len(ended)

    def _emit_summary(self, run: _Run, now: float) -> None:
        if self.handler is None:
            return
        first = run.first
        record = logging.makeLogRecord(
            {
                "name": first.name,
                "levelno": first.levelno,
                "levelname": first.levelname,
                "msg": "suppressed %d similar messages in the last %g s: %s",
                "args": (run.suppressed, self.window, first.getMessage()),
                "created": now,
                "msecs": (now - int(now)) * 1000,
                "component": getattr(first, "component", None) or first.name.rpartition(".")[2],
                "event": "suppressed",
                "suppressed": run.suppressed,
                "repeated_event": getattr(first, "event", None) or "log",
                "_summary": True,
            }
        )
        self.handler.handle(record)

    def attach(self, handler: logging.Handler, period: float = 1.0) -> None:
        """Filter ``handler``'s records and flush ended runs every ``period`` s in a thread."""
        self.handler = handler
        handler.addFilter(self)
        self._thread = threading.Thread(target=self._flush_loop, args=(period,), name="log-repeat-flush", daemon=True)
        self._thread.start()

    def _flush_loop(self, period: float) -> None:
        while not self._stop.wait(period):
            self.flush()

    def close(self) -> None:
        """Stop the flushing thread and write the summaries of every open run."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.flush(everything=True)


_active: RepeatFilter | None = None


def _close_active() -> None:
    global _active
    if _active is not None:
        _active.close()
        _active = None


atexit.register(_close_active)  # registered after logging's own: runs before its shutdown


def setup_logging(level: str = "info", *, component: str = "probe", stream: TextIO | None = None, path: str | None = None, repeat_window: float = 10.0) -> None:
    """Route every logger (pykka's included) to JSON lines on ``stream`` or ``path``."""
    handler: logging.Handler
    handler = logging.FileHandler(path) if path else logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(component, with_tracebacks=level == "debug"))
    global _active
    _close_active()
    _active = RepeatFilter(repeat_window)
    _active.attach(handler)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # pykka logs each actor failure with a traceback; the supervisor logs them in one line
    logging.getLogger("pykka").setLevel(logging.CRITICAL if level != "debug" else logging.DEBUG)
    logging.getLogger("websockets").setLevel(logging.WARNING)

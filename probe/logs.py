"""Structured logs: one JSON object a line, repeated messages rate-limited.

Fields: time, level, component, event, message, and whatever ``extra`` a call adds
(reason, counters, ...). A message repeated within the window (same logger, level and
format string) is suppressed and summarised as "suppressed N similar" when the window
ends, so a flood of errors cannot flood the log. Tracebacks appear only at debug level.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any, TextIO

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
            if key not in _STANDARD and key not in out:
                out[key] = value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)
        if record.exc_info and self.with_tracebacks:
            out["traceback"] = self.formatException(record.exc_info)
        elif record.exc_info and record.exc_info[1] is not None:
            out["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return json.dumps(out, default=str)


class RepeatFilter(logging.Filter):
    """Lets the first of a run of similar messages through per window; counts the rest."""

    def __init__(self, window: float = 10.0) -> None:
        super().__init__()
        self.window = window
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = record.created
        with self._lock:
            entry = self._seen.get(key)
            if entry is None or now - entry[0] >= self.window:
                suppressed = int(entry[1]) if entry else 0
                self._seen[key] = [now, 0]
                if len(self._seen) > 10_000:
                    self._seen.clear()
                if suppressed:
                    record.suppressed = suppressed
                    record.msg = f"{record.msg} (suppressed {suppressed} similar in the last {self.window:g} s)"
                return True
            entry[1] = int(entry[1]) + 1
            return False


def setup_logging(level: str = "info", *, component: str = "probe", stream: TextIO | None = None, path: str | None = None, repeat_window: float = 10.0) -> None:
    """Route every logger (pykka's included) to JSON lines on ``stream`` or ``path``."""
    handler: logging.Handler
    handler = logging.FileHandler(path) if path else logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(component, with_tracebacks=level == "debug"))
    handler.addFilter(RepeatFilter(repeat_window))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # pykka logs each actor failure with a traceback; the supervisor logs them in one line
    logging.getLogger("pykka").setLevel(logging.CRITICAL if level != "debug" else logging.DEBUG)
    logging.getLogger("websockets").setLevel(logging.WARNING)

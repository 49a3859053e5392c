"""Counters and gauges named after the failure model, shared by every actor in a process.

A metric is a name plus sorted label pairs. Updates take a lock (they are per batch,
never per packet). ``snapshot()`` feeds the summary, the console and the exporters.
"""

from __future__ import annotations

import threading
from typing import Iterator

LabelKey = tuple[str, tuple[tuple[str, str], ...]]


def _key(name: str, labels: dict[str, str]) -> LabelKey:
    return name, tuple(sorted((k, str(v)) for k, v in labels.items()))


class Metrics:
    """Thread-safe counters (only go up) and gauges (set to a value)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[LabelKey, float] = {}
        self._gauges: dict[LabelKey, float] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = _key(name, labels)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._gauges[_key(name, labels)] = value

    def counter(self, name: str, **labels: str) -> float:
        return self._counters.get(_key(name, labels), 0)

    def gauge(self, name: str, **labels: str) -> float | None:
        return self._gauges.get(_key(name, labels))

    def total(self, name: str) -> float:
        """Sum of a counter over all its label values."""
        with self._lock:
            return sum(v for (n, _), v in self._counters.items() if n == name)

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        with self._lock:
            for (n, labels), value in self._counters.items():
                if n == name:
                    for k, v in labels:
                        if k == label:
                            out[v] = out.get(v, 0) + value
        return out

    def items(self) -> Iterator[tuple[str, str, dict[str, str], float]]:
        """("counter"|"gauge", name, labels, value) for every series."""
        with self._lock:
            counters = list(self._counters.items())
            gauges = list(self._gauges.items())
        for (name, labels), value in counters:
            yield "counter", name, dict(labels), value
        for (name, labels), value in gauges:
            yield "gauge", name, dict(labels), value

    def snapshot(self) -> dict[str, float]:
        """Flat ``name{k="v"}`` -> value, for JSON output."""
        out = {}
        for _, name, labels, value in self.items():
            label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            out[f"{name}{{{label_text}}}" if label_text else name] = value
        return out

"""Counters and gauges named after the failure model, shared by every actor in a process.

A metric is a name plus sorted label pairs. Updates take a lock (they are per batch,
never per packet). ``snapshot()`` feeds the summary, the console and the exporters.

Some figures have a better source than increments scattered over the actors: the event
accounting (delivered, dropped by reason, pending) is kept exactly by the buffer, the
packet counters by the dissection processes. A *collector* (``add_collector``) is a
function called at read time that yields such series; a name a collector yields hides
the increments made under the same name, so every reader sees one value per series.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Iterator

LabelKey = tuple[str, tuple[tuple[str, str], ...]]
#: ("counter" | "gauge", name, labels, value)
Series = tuple[str, str, dict[str, str], float]

#: what each metric means (the HELP line of the Prometheus exposition and the console)
DESCRIPTIONS: dict[str, str] = {
    "events_created_total": "Events created (dissection and the probe's own notices), by kind",
    "events_delivered_total": "Events the Core acknowledged",
    "events_dropped_total": "Events dropped, by reason (buffer_full, signature, encoding, memory_budget, ...)",
    "events_pending": "Events buffered and not yet acknowledged by the Core",
    "events_buffered_total": "Events stored, by buffer tier",
    "events_sent_total": "Events sent to the Core (including resends after a reconnect)",
    "events_signed_total": "Events given a sequence number and signed",
    "events_from_workers_total": "Events received from each dissection process",
    "events_replayed_skipped_total": "Events of a replay skipped because an earlier run already stored them",
    "events_settled_in_signer_total": "Events the signer settled without signing (already stored)",
    "events_rejected_by_core_total": "Events the Core rejected",
    "signature_failures_total": "Events that could not be signed",
    "packets_captured_total": "Packets read by the dissection processes",
    "kernel_drops_total": "Packets the kernel dropped before the capture read them",
    "capture_drops_total": "Packets the live capture dropped at the source, by reason (window: dissection behind; paused; stopping; capture_failed)",
    "packets_dissected_total": "Packets the flow engine of each dissection process took in",
    "kernel_packets_total": "Packets the kernel handed to each live capture's ring (drops included)",
    "kernel_freezes_total": "Times the kernel found a live capture's ring full (TPACKET_V3 queue freezes)",
    "capture_failures_total": "Live capture failures, by reason (link_down, interface_vanished)",
    "capture_restarts_total": "Live capture actors restarted after a failure, by worker",
    "capture_open": "1 while a dissection process has its capture ring open",
    "capture_paused": "1 while an operator has paused a dissection process's capture",
    "flows_active": "Flows open in each dissection process",
    "buffer_events": "Events held, by buffer tier",
    "buffer_bytes": "Bytes held, by buffer tier",
    "buffer_utilization": "Fill level of each buffer tier (0..1 of its quota)",
    "uplink_state": "1 for the uplink's current state",
    "uplink_connects_total": "Successful connections to the Core",
    "uplink_sequence_reused_total": "Welcomes saying the Core already held this probe's sequence numbers (spool wiped or restored, key kept)",
    "uplink_connection_failures_total": "Failed or lost connections to the Core",
    "uplink_backoff_seconds": "Current reconnection delay",
    "uplink_backpressure": "1 while the Core asks the probe to slow down",
    "uplink_credit_exhausted": "1 while every event the Core's credit allows is in flight",
    "uplink_backpressure_seconds_total": "Seconds spent under backpressure signalled by the Core",
    "uplink_backpressure_episodes_total": "Times the Core switched backpressure on",
    "uplink_ack_timeouts_total": "Connections dropped because the Core stopped acknowledging",
    "uplink_bad_frames_total": "Malformed frames received from the Core, by error code",
    "uplink_core_errors_total": "Error frames received from the Core, by code",
    "identity_halts_total": "Times transmission was halted on an identity failure",
    "identity_failures_total": "Identity failures, by reason",
    "identity_ok": "1 while the probe's key and certificate are good",
    "identity_reloads_total": "Identity reloads asked for by an operator",
    "identity_reload_failures_total": "Identity reloads that failed, by reason",
    "transmission_halted": "1 while transmission is halted on an identity failure",
    "supervisor_failures_total": "Child failures, by child, strategy and reason",
    "supervisor_restarts_total": "Child restarts, by child and strategy",
    "supervisor_tree_restarts_total": "Restarts of the whole actor tree after a child exceeded its restart intensity",
    "worker_starts_total": "Dissection processes started, by worker",
    "resource_usage": "Current use of each resource (bytes, or CPU cores)",
    "resource_budget": "Budget of each resource (bytes, or CPU cores)",
    "resource_utilization": "Use of each resource as a fraction of its budget",
    "resident_memory_bytes": "Resident memory by process (delivery, dissection) and kind (anon: what the budget counts; file: page cache)",
    "resource_sheds_total": "Times load was shed, by reason",
    "disk_free_bytes": "Free bytes on the file system of the data directory",
    "alerts_active": "1 for each alert currently raised",
    "alerts_raised_total": "Alert transitions to raised, by alert",
    "buffer_limit_events": "Current event limit of a buffer tier (lowered under memory pressure)",
    "buffer_limit_bytes": "Current byte limit of a buffer tier (lowered under memory pressure)",
}


def _key(name: str, labels: dict[str, str]) -> LabelKey:
    return name, tuple(sorted((k, str(v)) for k, v in labels.items()))


class Metrics:
    """Thread-safe counters (only go up) and gauges (set to a value), plus collectors."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[LabelKey, float] = {}
        self._gauges: dict[LabelKey, float] = {}
        self._collectors: list[Callable[[], Iterable[Series]]] = []

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        key = _key(name, labels)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._gauges[_key(name, labels)] = value

    def add_collector(self, collector: Callable[[], Iterable[Series]]) -> None:
        """Call ``collector`` on every read; its series replace increments of the same names."""
        with self._lock:
            self._collectors.append(collector)

    def counter(self, name: str, **labels: str) -> float:
        want = dict((k, str(v)) for k, v in labels.items())
        return sum(v for kind, n, l, v in self.items() if kind == "counter" and n == name and l == want)

    def gauge(self, name: str, **labels: str) -> float | None:
        want = dict((k, str(v)) for k, v in labels.items())
        for kind, n, l, v in self.items():
            if kind == "gauge" and n == name and l == want:
                return v
        return None

    def total(self, name: str) -> float:
        """Sum of a counter over all its label values."""
        return sum(v for kind, n, _, v in self.items() if kind == "counter" and n == name)

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, n, labels, value in self.items():
            if kind == "counter" and n == name and label in labels:
                out[labels[label]] = out.get(labels[label], 0) + value
        return out

    def gauges(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every series of gauge ``name`` with its labels."""
        return [(labels, v) for kind, n, labels, v in self.items() if kind == "gauge" and n == name]

    def items(self) -> Iterator[Series]:
        """("counter"|"gauge", name, labels, value) for every series."""
        with self._lock:
            counters = list(self._counters.items())
            gauges = list(self._gauges.items())
            collectors = list(self._collectors)
        collected: list[Series] = []
        for collector in collectors:
            collected.extend(collector())
        hidden = {name for _, name, _, _ in collected}
        for (name, labels), value in counters:
            if name not in hidden:
                yield "counter", name, dict(labels), value
        for (name, labels), value in gauges:
            if name not in hidden:
                yield "gauge", name, dict(labels), value
        yield from collected

    def snapshot(self) -> dict[str, float]:
        """Flat ``name{k="v"}`` -> value, for JSON output (the console's view)."""
        out = {}
        for _, name, labels, value in self.items():
            label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            out[f"{name}{{{label_text}}}" if label_text else name] = value
        return out

"""The delivery process's handle on one dissection process.

Starts ``python -m probe.worker`` with its spec, forwards the event batches it writes to
the signer (waiting for the signer's credit: a full pipe then slows the dissection
process down, and a live capture there drops at its ring), records its counters, and
fails with a TransientError if the process dies, so that the supervisor restarts it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from typing import Any, Callable

import attrs

from actors.base import SupervisedActor, handles
from actors.credit import Window
from actors.messages import EventBatch
from actors.metrics import Metrics
from actors.replies import ReplyBoard
from actors.supervisor import Directory
from protocols.errors import TransientError
from protocols.events.base import EncodedEvent
from protocols.ipc import IpcError, MessageReader

log = logging.getLogger("probe.worker")


@attrs.frozen(slots=True)
class WorkerExited:
    """The dissection process ended without saying it was done."""

    returncode: int | None
    reason: str


#: counters a dissection process reports that are levels, not running totals
GAUGES = frozenset({"active_flows", "capture_open", "capture_paused"})

#: dissection-process counters forwarded into the delivery process's metrics (deltas);
#: packets_captured_total and kernel_drops_total come from the tracker's totals (probe/app.py)
_METRIC_OF = {
    "packets": "packets_dissected_total",
    "kernel_packets": "kernel_packets_total",
    "kernel_freezes": "kernel_freezes_total",
    "capture_restarts": "capture_restarts_total",
}
#: prefixed counters forwarded with the suffix as the ``reason`` label
_METRIC_OF_PREFIX = {
    "capture_dropped:": "capture_drops_total",
    "capture_failures:": "capture_failures_total",
}


class SourceTracker:
    """Per dissection process: its counters and whether its source is exhausted.

    A restarted process reports its counters from zero; what the earlier processes of the
    same slot counted is kept as a base, so totals never go backwards.
    """

    def __init__(self, workers: int) -> None:
        self._lock = threading.Lock()
        self.counters: list[dict[str, int]] = [{} for _ in range(workers)]
        self.base: list[dict[str, int]] = [{} for _ in range(workers)]
        self.done: list[bool] = [False] * workers
        self.errors: list[str | None] = [None] * workers
        self.changed = threading.Event()
        self.replies = ReplyBoard()  # answers to operator requests (pause, flows, flush, ...)

    def restarted(self, index: int) -> None:
        """A new process takes slot ``index``: fold the last one's counters into the base."""
        with self._lock:
            base = self.base[index]
            for key, value in self.counters[index].items():
                if key not in GAUGES:
                    base[key] = base.get(key, 0) + value
            self.counters[index] = {}

    def update(self, index: int, counters: dict[str, int]) -> None:
        with self._lock:
            self.counters[index] = counters
        self.changed.set()

    def finish(self, index: int, counters: dict[str, int], error: str | None) -> None:
        with self._lock:
            self.counters[index] = counters
            self.done[index] = True
            self.errors[index] = error
        self.changed.set()

    def all_done(self) -> bool:
        with self._lock:
            return all(self.done)

    def worker_totals(self, index: int) -> dict[str, int]:
        """Counters of slot ``index`` over all its processes."""
        with self._lock:
            out = dict(self.base[index])
            for key, value in self.counters[index].items():
                out[key] = value if key in GAUGES else out.get(key, 0) + value
            return out

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for index in range(len(self.counters)):
            for key, value in self.worker_totals(index).items():
                out[key] = out.get(key, 0) + value
        return out

    def capturing(self) -> list[bool]:
        """Per slot: its live capture has its ring open now."""
        with self._lock:
            return [bool(c.get("capture_open")) for c in self.counters]


class DissectionWorker(SupervisedActor):
    """Owns one ``probe.worker`` process and the thread that reads its output."""

    name = "worker"

    def __init__(
        self,
        supervisor: Any,
        *,
        index: int,
        spec: Callable[[], dict[str, Any]],
        directory: Directory,
        signer_window: Window,
        tracker: SourceTracker,
        metrics: Metrics,
    ) -> None:
        super().__init__(supervisor)
        self.name = f"worker-{index}"
        self.index = index
        self.spec = spec
        self.directory = directory
        self.signer_window = signer_window
        self.tracker = tracker
        self.metrics = metrics
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self._done = False
        self._reported: dict[str, int] = {}

    def start_child(self) -> None:
        if self.tracker.done[self.index]:
            return  # a source that is finished is not replayed again after a restart
        self.tracker.restarted(self.index)
        spec = self.spec()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "probe.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            env=env,
            close_fds=True,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(spec) + "\n").encode())
        self.proc.stdin.flush()
        self._reported = {}
        self.metrics.inc("worker_starts_total", worker=str(self.index))
        self.reader = threading.Thread(target=self._read_loop, name=f"{self.name}-reader", daemon=True)
        self.reader.start()

    def control(self, command: dict[str, Any]) -> None:
        """Send a control line (stop, kill) to the dissection process."""
        proc = self.proc
        if proc is None or proc.stdin is None or proc.poll() is not None:
            return
        try:
            proc.stdin.write((json.dumps(command) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    @handles(dict)
    def on_control(self, command: dict[str, Any]) -> None:
        self.control(command)

    def stop_child(self) -> None:
        self._stopping.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.control({"t": "kill"})
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.reader is not None and self.reader is not threading.current_thread():
            self.reader.join(timeout=10)

    def _read_loop(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        reader = MessageReader()
        reason = "end of output"
        try:
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                for message in reader.feed(chunk):
                    if not self._handle(message):
                        return
        except IpcError as exc:
            reason = f"malformed output: {exc}"
            proc.kill()
        except OSError as exc:
            reason = f"pipe error: {exc}"
        rc = proc.wait()
        if not self._done and not self._stopping.is_set():
            try:
                self.actor_ref.tell(WorkerExited(rc, reason))
            except Exception:  # the actor is gone already
                return

    def _handle(self, message: dict[str, Any]) -> bool:
        kind = message["t"]
        if kind == "events":
            events = [EncodedEvent(e[0], e[1], e[2]) if e is not None else None for e in message["ev"]]
            batch = EventBatch(message["src"], message["ord"], events)
            while not self.signer_window.acquire(timeout=0.2):
                if self._stopping.is_set():
                    return False
            if not self.directory.tell("signer", batch, wait=60):
                self.signer_window.release()
                log.error("signer unavailable for 60 s; stopping %s", self.name)
                return False
            self.metrics.inc("events_from_workers_total", len(events), worker=str(self.index))
        elif kind == "stats":
            self.tracker.update(self.index, message["c"])
            self._forward_metrics(message["c"])
        elif kind == "reply":
            self.tracker.replies.deliver(message)
        elif kind == "done":
            self._done = True
            self.tracker.finish(self.index, message["c"], message.get("error"))
            self._forward_metrics(message["c"])
        return True

    def _forward_metrics(self, counters: dict[str, int]) -> None:
        """Turn the process's running counters into metric increments and gauges."""
        worker = str(self.index)
        last = self._reported
        for key, value in counters.items():
            if key in GAUGES:
                self.metrics.set("flows_active" if key == "active_flows" else key, value, worker=worker)
                continue
            name = _METRIC_OF.get(key)
            labels = {"worker": worker}
            if name is None:
                prefix, sep, reason = key.partition(":")
                name = _METRIC_OF_PREFIX.get(prefix + sep) if sep else None
                if name is None:
                    continue
                labels["reason"] = reason
            delta = value - last.get(key, 0)
            if delta > 0:
                self.metrics.inc(name, delta, **labels)
            last[key] = value

    @handles(WorkerExited)
    def on_exited(self, exited: WorkerExited) -> None:
        raise TransientError(
            f"dissection process {self.index} exited (code {exited.returncode}, {exited.reason})",
            reason="worker_exited",
        )

"""What an operator may see and do through the console, over a running :class:`ProbeApp`.

Each console command is a method here returning a JSON-able dict; actors/console.py
serves them (it knows sockets, not the probe). Commands run on the console's own pool
threads, never on an actor's: they read shared state (counters, gauges, the buffer's
accounts), ``tell`` actors, and wait for the dissection processes' replies with a
timeout, so a busy or restarting part of the probe makes a command slow or answer
"unavailable", never hangs the console.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import pykka

from actors.console import Command, CommandError, Param
from actors.messages import Shed, Stored
from actors.uplink import Connect

if TYPE_CHECKING:
    from probe.app import ProbeApp

log = logging.getLogger("probe.control")

#: seconds to wait for the dissection processes to answer a request
WORKER_TIMEOUT = 10.0
#: seconds of samples the rates in ``status`` are computed over
RATE_WINDOW = 5.0
LOG_LEVELS = ("debug", "info", "warning", "error")


class ProbeControl:
    """The console's commands over one running probe."""

    def __init__(self, app: "ProbeApp") -> None:
        self.app = app
        self._samples: collections.deque[tuple[float, dict[str, float]]] = collections.deque(maxlen=64)
        self._lock = threading.Lock()
        self._commands = {
            c.name: c
            for c in (
                Command("status", "actors and their state, uptime, capture, rates, buffer tiers, identity, alerts", self.status),
                Command(
                    "metrics",
                    "every counter and gauge",
                    self.metrics,
                    (
                        Param("match", "str", "", "show only metrics whose name contains this"),
                        Param("format", "str", "table", "table (a JSON object) or prometheus (the exposition text)", choices=("table", "prometheus")),
                    ),
                ),
                Command("alerts", "the alerts raised now, and the latest transitions", self.alerts, (Param("history", "int", 10, "transitions to show", minimum=0, maximum=200),)),
                Command("flows", "the open flows that carried the most bytes", self.flows, (Param("n", "int", 10, "how many", minimum=1, maximum=1000),)),
                Command("pause", "stop capturing (a file replay stops reading; nothing is lost)", self.pause),
                Command("resume", "capture again after pause", self.resume),
                Command(
                    "flush",
                    "expire idle flows now and deliver what is buffered now",
                    self.flush,
                    (Param("idle", "float", None, "also end flows silent this many seconds (0: every open flow); default: each protocol's timeout", minimum=0),),
                ),
                Command("shed", "drop the older half of the memory tier now (counted as dropped: operator)", self.shed),
                Command("reload-identity", "re-read and re-check the signing key; transmit again if it is good", self.reload_identity),
                Command("loglevel", "show or set the log level", self.loglevel, (Param("level", "str", None, "new level", choices=LOG_LEVELS),)),
                Command(
                    "shutdown",
                    "stop capturing, deliver what can be delivered, then stop the probe",
                    self.shutdown,
                    (Param("drain_timeout", "float", None, "seconds to wait for delivery; default uplink.drain_timeout", minimum=0),),
                ),
            )
        }

    # --- the console backend protocol ----------------------------------------------------

    def commands(self) -> dict[str, Command]:
        return self._commands

    def greeting(self) -> dict[str, Any]:
        app = self.app
        return {"probe_id": app.identity.probe_id, "boot_id": app.identity.boot_id, "pid": os.getpid(), "capture": self._source()}

    def tick(self) -> None:
        """Once a second from the console thread: sample the counters the rates come from."""
        app = self.app
        sample = {
            "packets": float(app.tracker.totals().get("packets", 0)),
            "events": app.metrics.total("events_signed_total"),
            "dropped": app.metrics.total("events_dropped_total"),
            "connection_failures": app.metrics.total("uplink_connection_failures_total"),
            "signature_failures": app.metrics.total("signature_failures_total"),
        }
        with self._lock:
            self._samples.append((time.monotonic(), sample))

    def rates(self) -> dict[str, float]:
        """Per-second rates over the last RATE_WINDOW seconds of samples."""
        with self._lock:
            samples = list(self._samples)
        if len(samples) < 2:
            return {"packets_per_second": 0.0, "events_per_second": 0.0, "drops_per_second": 0.0, "window_seconds": 0.0}
        newest_t, newest = samples[-1]
        oldest_t, oldest = next((s for s in samples if newest_t - s[0] <= RATE_WINDOW + 0.5), samples[-2])
        dt = max(1e-6, newest_t - oldest_t)
        return {
            "packets_per_second": round((newest["packets"] - oldest["packets"]) / dt, 1),
            "events_per_second": round((newest["events"] - oldest["events"]) / dt, 1),
            "drops_per_second": round((newest["dropped"] - oldest["dropped"]) / dt, 1),
            "connection_failures_per_minute": round((newest["connection_failures"] - oldest["connection_failures"]) * 60 / dt, 1),
            "signature_failures_per_minute": round((newest["signature_failures"] - oldest["signature_failures"]) * 60 / dt, 1),
            "window_seconds": round(dt, 1),
        }

    # --- seeing --------------------------------------------------------------------------

    def _source(self) -> dict[str, Any]:
        capture = self.app.config.capture
        if capture.pcap:
            return {"kind": "file", "path": os.path.abspath(capture.pcap)}
        return {"kind": "live", "interface": capture.interface}

    def _supervisor_stats(self) -> dict[str, Any]:
        supervisor = self.app.supervisor
        if supervisor is None:
            return {"state": "stopped", "children": {}, "restarts": {}, "failures": []}
        try:
            return supervisor.ask("stats", timeout=2)
        except (pykka.Timeout, pykka.ActorDeadError):
            return {"state": "busy", "children": {}, "restarts": {}, "failures": []}

    def _buffer_tiers(self) -> dict[str, Any]:
        buffer = self.app.buffer
        spool, memory = buffer.spool, buffer.memory
        return {
            "disk": {
                "events": spool.pending,
                "bytes": spool.bytes_used,
                "quota_bytes": spool.quota_bytes,
                # against what records may fill (the rest of the quota is LMDB's own pages)
                "capacity_bytes": spool.capacity,
                "utilization": round(spool.bytes_used / spool.capacity, 4) if spool.capacity else 0.0,
                "ok": buffer.disk_ok,
                "error": buffer.disk_error,
            },
            "memory": {
                "events": len(memory),
                "bytes": memory.bytes_used,
                "max_events": memory.max_events,
                "max_bytes": memory.max_bytes,
                "utilization": round(max(len(memory) / memory.max_events, memory.bytes_used / memory.max_bytes), 4),
            },
        }

    def _identity(self) -> dict[str, Any]:
        """The identity's own status (state ok or failed, key, certificate) and the transmission gate."""
        return self.app.identity_status()

    def _uplink(self) -> dict[str, Any]:
        metrics = self.app.metrics
        state = next((s for s in ("connected", "connecting", "disconnected", "halted") if metrics.gauge("uplink_state", state=s) == 1.0), "starting")
        return {
            "state": state,
            "core": self.app.core_url,
            "connects": int(metrics.total("uplink_connects_total")),
            "connection_failures": int(metrics.total("uplink_connection_failures_total")),
            "backoff_seconds": metrics.gauge("uplink_backoff_seconds"),
            "backpressure": bool(metrics.gauge("uplink_backpressure")),
            "events_sent": int(metrics.total("events_sent_total")),
        }

    def _actors(self, stats: dict[str, Any]) -> list[dict[str, Any]]:
        app = self.app
        restarts: collections.Counter[str] = collections.Counter()
        for key, n in stats.get("restarts", {}).items():
            restarts[key.partition(":")[0]] += n
        uplink_state = self._uplink()["state"]
        out = [{"name": "supervisor", "state": stats.get("state", "unknown"), "alive": stats.get("state") == "running", "queued": 0, "restarts": restarts.get("tree", 0)}]
        for name, alive in stats.get("children", {}).items():
            ref = app.directory.get(name)
            queued = ref.actor_inbox.qsize() if ref is not None else 0
            if not alive:
                state = "down"
            elif name == "uplink":
                state = uplink_state
            elif name == "buffer":
                state = "disk" if app.buffer.disk_ok else "memory only"
            elif name.startswith("worker-"):
                index = int(name[7:])
                state = "done" if app.tracker.done[index] else "error" if app.tracker.errors[index] else "paused" if app.capture_paused else "capturing"
            else:
                state = "running"
            out.append({"name": name, "state": state, "alive": alive, "queued": queued, "restarts": restarts.get(name, 0)})
        return out

    def status(self, args: dict[str, Any]) -> dict[str, Any]:
        app = self.app
        totals = app.tracker.totals()
        accounts = app.accounts()
        stats = self._supervisor_stats()
        errors = [e for e in app.tracker.errors if e]
        if app.stop_requested.is_set() or app.operator_stop:
            state = "stopping"
        elif app.tracker.all_done():
            state = "draining" if app.buffer.pending else "idle"
        else:
            state = "paused" if app.capture_paused else "running"
        return {
            "probe_id": app.identity.probe_id,
            "pid": os.getpid(),
            "state": state,
            "health": app.status(),
            "uptime": round(time.monotonic() - app.started_at, 3),
            "log_level": logging.getLevelName(logging.getLogger().level).lower(),
            "capture": {
                **self._source(),
                "paused": app.capture_paused,
                "workers": len(app.workers),
                "done": app.tracker.all_done(),
                "packets": totals.get("packets", 0),
                "flows": totals.get("flows", 0),
                "errors": errors,
            },
            "rates": self.rates(),
            "events": accounts.as_dict(),
            "buffer": self._buffer_tiers(),
            "uplink": self._uplink(),
            "identity": self._identity(),
            "actors": self._actors(stats),
            "recent_failures": stats.get("failures", [])[-5:],
            "alerts": self.active_alerts(),
        }

    def metrics(self, args: dict[str, Any]) -> dict[str, Any]:
        match = args["match"]
        if args["format"] == "prometheus":
            lines = self.app.metrics_text().splitlines()
            return {"text": "".join(line + "\n" for line in lines if match in line)}
        snapshot = self.app.metrics_snapshot()
        return {"metrics": {k: snapshot[k] for k in sorted(snapshot) if match in k}}

    def active_alerts(self) -> list[dict[str, Any]]:
        """The alerts raised now (the alerts actor evaluates the [alerts] thresholds)."""
        return self.app.alerts.active()

    def alerts(self, args: dict[str, Any]) -> dict[str, Any]:
        board = self.app.alerts.snapshot()
        return {"alerts": board["active"], "history": board["history"][-args["history"]:] if args["history"] else []}

    # --- the dissection processes --------------------------------------------------------

    def _ask_workers(self, command: dict[str, Any]) -> list[dict[str, Any]]:
        """Send ``command`` to every running dissection process and collect the replies."""
        app = self.app
        live = [i for i in range(len(app.workers)) if not app.tracker.done[i]]

        def sender(index: int) -> Any:
            return lambda request_id: app.directory.tell(f"worker-{index}", {**command, "id": request_id}, wait=2)

        replies = app.tracker.replies.ask_all([sender(i) for i in live], WORKER_TIMEOUT) if live else []
        out = []
        for index, reply in zip(live, replies):
            if reply is None:
                out.append({"worker": index, "error": f"no answer within {WORKER_TIMEOUT:g} s"})
            else:
                out.append({"worker": index, **reply})
        out += [{"worker": i, "done": True} for i in range(len(app.workers)) if app.tracker.done[i]]
        return sorted(out, key=lambda r: r["worker"])

    def _capture(self, paused: bool) -> dict[str, Any]:
        app = self.app
        app.capture_paused = paused
        workers = self._ask_workers({"t": "pause" if paused else "resume"})
        return {"paused": paused, "packets": sum(w.get("packets", 0) for w in workers), "workers": workers}

    def pause(self, args: dict[str, Any]) -> dict[str, Any]:
        log.info("capture paused by the operator", extra={"component": "console", "event": "pause"})
        return self._capture(True)

    def resume(self, args: dict[str, Any]) -> dict[str, Any]:
        log.info("capture resumed by the operator", extra={"component": "console", "event": "resume"})
        return self._capture(False)

    def flows(self, args: dict[str, Any]) -> dict[str, Any]:
        n = args["n"]
        workers = self._ask_workers({"t": "flows", "n": n})
        top = []
        for reply in workers:
            for flow in reply.get("top", []):
                top.append({"worker": reply["worker"], **flow})
        top.sort(key=lambda f: f["bytes"], reverse=True)
        return {
            "open": sum(w.get("open", 0) for w in workers),
            "flows": top[:n],
            "workers": [{k: v for k, v in w.items() if k != "top"} for w in workers],
        }

    # --- steering ------------------------------------------------------------------------

    def flush(self, args: dict[str, Any]) -> dict[str, Any]:
        app = self.app
        idle = args["idle"]
        command: dict[str, Any] = {"t": "flush"}
        if idle is not None:
            command["idle"] = idle
        workers = self._ask_workers(command)
        app.directory.tell("uplink", Connect(), wait=0)  # reconnect now if waiting out a backoff
        app.directory.tell("uplink", Stored(0), wait=0)  # and send what is stored
        log.info("flush by the operator", extra={"component": "console", "event": "flush"})
        return {
            "flows_ended": sum(w.get("open_before", 0) - w.get("open_after", 0) for w in workers),
            "open_flows": sum(w.get("open_after", 0) for w in workers),
            "events": sum(w.get("events", 0) for w in workers),
            "pending": app.buffer.pending,
            "uplink": self._uplink()["state"],
            "workers": workers,
        }

    def shed(self, args: dict[str, Any]) -> dict[str, Any]:
        app = self.app
        ref = app.directory.get("buffer")
        if ref is None:
            raise CommandError("unavailable", "the buffer actor is not running")
        before = app.accounts()
        memory_before = len(app.buffer.memory)
        try:
            ref.ask(Shed("operator"), timeout=10)
        except (pykka.Timeout, pykka.ActorDeadError):
            raise CommandError("unavailable", "the buffer actor did not answer within 10 s") from None
        after = app.accounts()
        log.warning("memory tier shed by the operator", extra={"component": "console", "event": "shed"})
        return {
            "dropped": after.dropped_total - before.dropped_total,
            "memory_before": memory_before,
            "memory_after": len(app.buffer.memory),
            "pending": after.pending,
        }

    def reload_identity(self, args: dict[str, Any]) -> dict[str, Any]:
        result = self.app.reload_identity()  # a refused reload changes nothing: the running identity stays
        return {
            "ok": result.ok,
            "reason": result.reason,
            "message": result.message,
            "resumed": result.resumed,
            "identity": self._identity(),
        }

    def loglevel(self, args: dict[str, Any]) -> dict[str, Any]:
        root = logging.getLogger()
        previous = logging.getLevelName(root.level).lower()
        level = args["level"]
        if level is None:
            return {"level": previous}
        root.setLevel(level.upper())
        logging.getLogger("pykka").setLevel(logging.DEBUG if level == "debug" else logging.CRITICAL)
        workers = self._ask_workers({"t": "loglevel", "level": level})
        log.warning("log level set to %s by the operator (was %s)", level, previous, extra={"component": "console", "event": "loglevel"})
        return {"level": level, "previous": previous, "workers": workers}

    def shutdown(self, args: dict[str, Any]) -> dict[str, Any]:
        app = self.app
        timeout = args["drain_timeout"]
        if timeout is None:
            timeout = app.config.uplink.drain_timeout
        if app.operator_stop is None:
            app.operator_stop = "console shutdown"
            log.warning("shutdown requested on the console; draining for up to %g s", timeout, extra={"component": "console", "event": "shutdown"})
            for index in range(len(app.workers)):
                app.directory.tell(f"worker-{index}", {"t": "stop"}, wait=0)  # the source ends; open flows are flushed
            threading.Thread(target=self._stop_after_drain, args=(timeout,), name="console-shutdown", daemon=True).start()
        return {"stopping": True, "drain_timeout": timeout, "pending": app.buffer.pending}

    def _stop_after_drain(self, timeout: float) -> None:
        app = self.app
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not app.stop_requested.is_set():
            if app.pipeline_idle() and app.buffer.pending == 0:
                break
            time.sleep(0.05)
        app.stop_requested.set()

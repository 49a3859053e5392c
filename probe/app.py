"""The application: builds the actor tree of the delivery process and runs it to the end.

    dissection process(es) ──pipe──▶ signer ──▶ buffer (spool + memory tier) ◀── uplink ══▶ Core

The supervisor starts the children consumers first (buffer, signer, uplink) and the
producers (dissection workers) last, and stops them in reverse order. A replay ends when
every worker reports its source done, every batch has passed the signer and the buffer,
and the Core has acknowledged everything (or the drain timeout passed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
from typing import TYPE_CHECKING, Any

import attrs
import pykka

from actors.alerts import AlertBoard, AlertsActor, AlertSettings
from actors.buffer import BufferActor
from actors.console import ConsoleActor, ConsoleSettings, EventTap
from actors.credit import Window
from actors.faults import SignFault
from actors.messages import Shed
from actors.metrics import Metrics, Series
from actors.resources import ResourceBudgets, ResourceSampler, ResourcesActor, Shedder
from actors.sequencer import Sequencer
from actors.signer import SignerActor
from actors.supervisor import ChildSpec, Directory, Supervisor, SupervisorHooks, SupervisorSettings
from actors.uplink import TransmissionGate, UplinkActor, UplinkSettings
from actors.worker import DissectionWorker, SourceTracker
from probe.config import Config, ConfigError
from probe.control import ProbeControl
from probe.core.embedded import EmbeddedCore
from probe.health import HealthWriter, health_path
from probe.identity import IdentityGuard, ProbeIdentity, ReloadResult
from probe.metrics_http import MetricsServer
from storage.accounting import Accounts
from storage.buffer import TieredBuffer
from storage.memtier import MemoryTier
from storage.spool import Spool

if TYPE_CHECKING:
    from probe.interfaces import LivePlan

log = logging.getLogger("probe.app")

#: seconds a stopping probe waits for the Core to take more of the backlog before it
#: leaves the rest in the spool (delivered by the next run)
STOP_DRAIN_STALL = 3.0

#: capture-file counters that are totals, not reasons for skipping
_CAPFILE_TOTALS = ("capfile:packets", "capfile:bytes", "capfile:captured_bytes")

#: drop reasons exported at 0 before the first drop (others appear when they happen)
DROP_REASONS = ("buffer_full", "signature", "encoding", "memory_budget")


def file_source_id(path: str, config: Config) -> str:
    """A replay's identity: the file's size and ends plus every setting that shapes events.

    Replaying the same file with the same settings again yields the same events in the
    same order, so the spool's progress for this id says which ones it already holds.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(0)
        digest.update(fh.read(1 << 16))
        fh.seek(max(0, size - (1 << 16)))
        digest.update(fh.read(1 << 16))
    digest.update(str(size).encode())
    shaping = {"dissect": attrs.asdict(config.dissect), "batch_packets": config.capture.batch_packets}
    digest.update(json.dumps(shaping, sort_keys=True).encode())
    return "file:" + digest.hexdigest()[:24]


class ProbeApp:
    """One run of the probe: start, wait for the end (or a stop request), summarise."""

    def __init__(self, config: Config, live: LivePlan | None = None) -> None:
        self.config = config
        self.live = live  # the resolved interface and compiled filter of a live capture
        self.metrics = Metrics()
        self.gate = TransmissionGate()
        self.directory = Directory()
        self.stop_requested = threading.Event()  # graceful: stop the sources, drain, then the tree
        self.stop_now = threading.Event()  # immediate: stop the tree (a second signal)
        self.sources_stopped_at: float | None = None
        self.fatal_message: str | None = None
        self.core: EmbeddedCore | None = None
        self.core_url: str | None = None
        self.supervisor: pykka.ActorRef | None = None
        self.started_at = 0.0
        self.finished_at = 0.0
        self.sources: list[str] = []
        self.capture_paused = False  # set by the console's pause; a restarted worker starts paused
        self.operator_stop: str | None = None  # set by the console's shutdown: drain, then stop
        self.event_tap = EventTap()  # the console's live tail taps the signer's output
        #: raised alerts and their history (the console reads it; survives actor restarts)
        self.alerts = AlertBoard()
        self.metrics_server: MetricsServer | None = None
        self.health: HealthWriter | None = None
        self.shedder: Shedder | None = None
        #: test hook for the scenario scripts (docs/configuration.md [faults]); None in production
        self.sign_fault = SignFault(config.faults.sign_fail_file) if config.faults.sign_fail_file else None

    # --- building ---------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        self.started_at = time.monotonic()
        os.makedirs(cfg.probe.data_dir, exist_ok=True)
        if cfg.metrics.port is not None:
            try:
                self.metrics_server = MetricsServer(self.metrics, cfg.metrics.port).start()
            except OSError as exc:
                raise ConfigError("metrics.port", f"cannot listen on 127.0.0.1:{cfg.metrics.port}: {exc.strerror}") from None
        key_path = cfg.identity.key or cfg.data_path("identity", "probe.key")
        ident = cfg.identity
        self.identity = ProbeIdentity(cfg.probe_id, key_path, cert_path=ident.cert, ca_path=ident.ca, core_ca_path=ident.core_ca)
        if self.identity.created:
            log.info("created a new signing key at %s", key_path, extra={"component": "identity", "event": "key_created"})
        quota = cfg.buffer.disk_quota_mb << 20
        self.spool = Spool(cfg.data_path("spool"), quota, (cfg.buffer.map_size_mb << 20) or None)
        self.identity.boot_seq = self.spool.next_seq
        self.guard = IdentityGuard(self.identity, self.gate, self.directory, self.metrics, on_reload=self._identity_reloaded)
        self.buffer = TieredBuffer(self.spool, MemoryTier(cfg.buffer.memory_events, cfg.buffer.memory_bytes))
        self.sequencer = Sequencer(self.spool.next_seq, self.spool.source_progress)
        self.accounts_at_start = self.buffer.accounts()
        self.core_url = cfg.uplink.core_url or self._start_embedded_core()
        self.signer_window = Window(cfg.capture.window_batches)
        self.buffer_window = Window(cfg.capture.window_batches)
        self.workers = self._worker_specs()
        self.tracker = SourceTracker(len(self.workers))
        self.control = ProbeControl(self)
        self.metrics.add_collector(self._collected_series)
        self._declare_metrics()
        self.shedder = Shedder(self.buffer, self.directory, self.metrics, self.worker_names)
        self.health = HealthWriter(health_path(cfg.probe.data_dir), cfg.alerts.evaluate_interval)
        specs = [
            ChildSpec("buffer", self._start_buffer),
            ChildSpec("signer", self._start_signer),
            ChildSpec("uplink", self._start_uplink),
            ChildSpec("console", self._start_console),
            ChildSpec("resources", self._start_resources),
            ChildSpec("alerts", self._start_alerts),
        ] + [ChildSpec(name, self._worker_starter(i)) for i, name in enumerate(self.worker_names())]
        s = cfg.supervisor
        self.supervisor = Supervisor.start(
            specs,
            self.directory,
            SupervisorSettings(s.max_restarts, s.restart_window, s.restart_backoff_initial, s.restart_backoff_max, s.max_tree_restarts),
            SupervisorHooks(halt=self._halt, shed=self._shed, fatal=self._fatal),
            metrics=self.metrics,
        )
        self.publish_health()

    def _start_embedded_core(self) -> str:
        ident = self.config.identity
        self.core = EmbeddedCore(self.config.data_path("core"), self.config.core.listen, client_ca=ident.ca if ident.cert else None, crl=ident.crl)
        self.core.enroll(self.identity.probe_id, self.identity.public_key_hex)
        url = self.core.start()
        log.info("embedded Core listening at %s", url, extra={"component": "core", "event": "embedded_core"})
        return url

    def _worker_specs(self) -> list[dict[str, Any]]:
        cfg = self.config
        dissect = attrs.asdict(cfg.dissect)
        dissect["local_nets"] = tuple(dissect["local_nets"])
        common = {
            "dissect": dissect,
            "batch_packets": cfg.capture.batch_packets,
            "window_batches": cfg.capture.window_batches,
            "log_level": cfg.logging.level,
        }
        if not cfg.capture.pcap:
            return self._live_specs(common)
        source = file_source_id(cfg.capture.pcap, cfg)
        self.sources = [source]
        if cfg.capture.workers > 1:
            log.info("a capture file is replayed by one dissection process; --workers applies to live capture")
        capture = {"kind": "file", "path": os.path.abspath(cfg.capture.pcap), "pace": cfg.capture.pace}
        return [{"index": 0, "source": source, "capture": capture, **common}]

    def _live_specs(self, common: dict[str, Any]) -> list[dict[str, Any]]:
        """One spec per dissection process sharing the interface (PACKET_FANOUT when several)."""
        cfg = self.config
        if self.live is None:
            from probe.interfaces import plan_live_capture  # pyroute2 costs half a second to import

            self.live = plan_live_capture(cfg)
        workers = cfg.capture.workers
        ring = {
            "interface": self.live.interface,
            "hw_type": self.live.hw_type,
            "snaplen": cfg.capture.snaplen,
            "block_size": cfg.capture.ring_block_size,
            "block_count": cfg.capture.ring_block_count,
            "block_timeout_ms": cfg.capture.ring_block_timeout_ms,
            "batch_packets": cfg.capture.batch_packets,
            "program": [list(i) for i in self.live.program],
            "fanout_group": random.randrange(1, 0x10000) if workers > 1 else None,
            "promiscuous": cfg.capture.promiscuous,
        }
        self._live_starts = [0] * workers
        return [{"index": i, "source": "", "capture": {"kind": "ring", "ring": ring}, **common} for i in range(workers)]

    def _live_source(self, index: int) -> str:
        """A fresh source id per process start, so that no live event is taken for a replayed one."""
        self._live_starts[index] += 1
        assert self.live is not None
        return f"live:{self.live.interface}:{self.identity.boot_id}:{index}:{self._live_starts[index]}"

    def _worker_starter(self, index: int) -> Any:
        def spec() -> dict[str, Any]:
            out = dict(self.workers[index])
            if out["capture"]["kind"] == "ring":
                out["source"] = self._live_source(index)
                self.sources.append(out["source"])
            out["resume_ordinal"] = self.sequencer.ordinal(out["source"])
            out["paused"] = self.capture_paused
            return out

        def start(sup: pykka.ActorRef) -> pykka.ActorRef:
            return DissectionWorker.start(
                sup,
                index=index,
                spec=spec,
                directory=self.directory,
                signer_window=self.signer_window,
                tracker=self.tracker,
                metrics=self.metrics,
            )

        return start

    def worker_names(self) -> list[str]:
        return [f"worker-{i}" for i in range(len(self.workers))]

    def _start_resources(self, sup: pykka.ActorRef) -> pykka.ActorRef:
        r = self.config.resources
        budgets = ResourceBudgets(
            memory_bytes=r.memory_mb << 20,
            spool_quota_bytes=self.spool.capacity,  # what the records may fill (the file itself is bounded by the quota)
            shed_at=r.shed_at,
            min_free_disk_bytes=r.min_free_disk_mb << 20,
            cpu_cores=r.cpu_cores,
            check_interval=r.check_interval,
        )
        sampler = ResourceSampler(self.config.probe.data_dir, lambda: self.spool.bytes_used)
        return ResourcesActor.start(sup, budgets=budgets, sampler=sampler, shedder=self.shedder, buffer=self.buffer, metrics=self.metrics)

    def _start_alerts(self, sup: pykka.ActorRef) -> pykka.ActorRef:
        a = self.config.alerts
        settings = AlertSettings(**{f.name: getattr(a, f.name) for f in attrs.fields(AlertSettings)})
        return AlertsActor.start(
            sup,
            settings=settings,
            metrics=self.metrics,
            board=self.alerts,
            directory=self.directory,
            signer_window=self.signer_window,
            source=f"alerts:{self.identity.boot_id}",
            after_evaluate=lambda board: self.publish_health(),
        )

    def _start_buffer(self, sup: pykka.ActorRef) -> pykka.ActorRef:
        return BufferActor.start(sup, buffer=self.buffer, directory=self.directory, inbox=self.buffer_window, metrics=self.metrics)

    def _start_signer(self, sup: pykka.ActorRef) -> pykka.ActorRef:
        return SignerActor.start(
            sup,
            identity=self.identity,
            sequencer=self.sequencer,
            directory=self.directory,
            inbox=self.signer_window,
            downstream=self.buffer_window,
            metrics=self.metrics,
            tap=self.event_tap.publish,
            fault=self.sign_fault,
        )

    def _start_console(self, sup: pykka.ActorRef) -> pykka.ActorRef:
        c = self.config.console
        settings = ConsoleSettings(
            path=self.config.console_socket,
            group=c.group,
            allow_users=tuple(c.allow_users),
            max_clients=c.max_clients,
            max_line=c.max_line_bytes,
            client_buffer=c.client_buffer_bytes,
            tail_rate=float(c.tail_events_per_second),
        )
        return ConsoleActor.start(sup, settings=settings, backend=self.control, tap=self.event_tap, metrics=self.metrics)

    def _start_uplink(self, sup: pykka.ActorRef) -> pykka.ActorRef:
        u = self.config.uplink
        settings = UplinkSettings(
            url=self.core_url or "",
            batch_events=u.batch_events,
            connect_timeout=u.connect_timeout,
            ack_timeout=u.ack_timeout,
            backoff_initial=u.backoff_initial,
            backoff_max=u.backoff_max,
            backoff_jitter=u.backoff_jitter,
            stable_after=u.stable_after,
            compression=u.compression,
        )
        return UplinkActor.start(
            sup,
            settings=settings,
            buffer=self.buffer,
            identity=self.identity,
            sequencer=self.sequencer,
            gate=self.gate,
            directory=self.directory,
            metrics=self.metrics,
        )

    # --- strategies outside the tree --------------------------------------------------

    def _halt(self, reason: str) -> None:
        """Identity failure: nothing more is sent; capture, dissection and buffering go on."""
        self.guard.halt(reason)

    # --- identity (console and SIGHUP) ------------------------------------------------

    def reload_identity(self) -> ReloadResult:
        """Re-read key, certificate and CAs; if all are good, use them and resume transmission.

        A failed reload changes nothing (the running identity and any halt stay) and says
        why; the console and SIGHUP call this.
        """
        guard = getattr(self, "guard", None)
        if guard is None:
            return ReloadResult(False, "starting", "the probe is still starting; its identity is checked as it starts")
        return guard.reload()

    def _identity_reloaded(self, identity: ProbeIdentity) -> None:
        if self.core is not None and self.config.identity.cert is None:
            self.core.enroll(identity.probe_id, identity.public_key_hex)  # the embedded Core pins keys

    def identity_status(self) -> dict[str, Any]:
        """Identity and transmission state for the console, the summary and alerts."""
        return self.guard.status()

    def _shed(self, reason: str) -> None:
        if self.shedder is not None:
            self.shedder.shed(reason)
        else:
            self.directory.tell("buffer", Shed(reason), wait=0)

    def _fatal(self, message: str) -> None:
        self.fatal_message = message
        self.stop_requested.set()
        self.publish_health()

    # --- observability ----------------------------------------------------------------

    def _declare_metrics(self) -> None:
        """Every series the design names exists from the start (at 0), so dashboards and
        alert rules see a value, not an absence, before the first failure."""
        for name in ("uplink_connection_failures_total", "uplink_backpressure_seconds_total", "signature_failures_total", "supervisor_tree_restarts_total"):
            self.metrics.inc(name, 0)
        for child in ["buffer", "signer", "uplink", "resources", "alerts"] + self.worker_names():
            for strategy in ("restart", "halt", "shed"):
                self.metrics.inc("supervisor_restarts_total", 0, child=child, strategy=strategy)

    def _collected_series(self) -> list[Series]:
        """Figures with an exact source: the event accounting and the dissection counters."""
        now = self.buffer.accounts()
        run = now.minus(self.accounts_at_start)
        out: list[Series] = [
            ("counter", "events_delivered_total", {}, float(run.delivered)),
            ("gauge", "events_pending", {}, float(now.pending)),
        ]
        dropped = {reason: 0 for reason in DROP_REASONS}
        dropped.update(run.dropped)
        out += [("counter", "events_dropped_total", {"reason": reason}, float(n)) for reason, n in sorted(dropped.items())]
        totals = self.tracker.totals()
        out.append(("counter", "packets_captured_total", {}, float(totals.get("capture_packets", totals.get("packets", 0)))))
        out.append(("counter", "kernel_drops_total", {}, float(totals.get("kernel_drops", 0))))
        return out

    def status(self) -> str:
        """ok, degraded (alerts raised), halted (identity), failed (fatal) or stopped."""
        if self.fatal_message:
            return "failed"
        if self.supervisor is None and self.finished_at:
            return "stopped"
        if self.gate.halted:
            return "halted"
        return "degraded" if self.alerts.active() else "ok"

    def health_document(self) -> dict[str, Any]:
        """What health.json says (``probe health`` reads it)."""
        uplink = [labels.get("state") for labels, v in self.metrics.gauges("uplink_state") if v >= 1]
        return {
            "status": self.status(),
            "probe_id": self.identity.probe_id,
            "boot_id": self.identity.boot_id,
            "uplink": uplink[0] if uplink else "starting",
            "halt_reason": self.gate.reason,
            "alerts": [a["key"] for a in self.alerts.active()],
            "fatal": self.fatal_message,
            "pending": self.buffer.pending,
            "metrics_port": self.metrics_server.port if self.metrics_server else None,
        }

    def publish_health(self) -> None:
        if self.health is None:
            return
        try:
            self.health.write(self.health_document())
        except OSError as exc:
            log.warning("cannot write %s: %s", self.health.path, exc, extra={"component": "health", "event": "health_write_failed"})

    def metrics_text(self) -> str:
        """The metrics in the Prometheus text format (the console's ``metrics`` view)."""
        from probe.metrics_http import exposition

        return exposition(self.metrics)

    def metrics_snapshot(self) -> dict[str, float]:
        """The metrics as a flat dict (the console's JSON view)."""
        return self.metrics.snapshot()

    # --- running ----------------------------------------------------------------------

    def pipeline_idle(self) -> bool:
        """Every source done, every batch through the signer and the buffer, no alert notice waiting to be sent."""
        return (
            self.tracker.all_done()
            and self.signer_window.outstanding == 0
            and self.buffer_window.outstanding == 0
            and not self.alerts.unsent  # handed to the signer at the next evaluation round
        )

    def request_stop(self, immediate: bool = False) -> None:
        """Stop gracefully (sources first, then drain); a second request, or ``immediate``, at once."""
        if immediate or self.stop_requested.is_set():
            self.stop_now.set()
        self.stop_requested.set()

    def control_workers(self, command: str) -> None:
        """Send a control line without an answer (stop) to every dissection process."""
        for index in range(len(self.workers)):
            self.directory.tell(f"worker-{index}", {"t": command}, wait=0)

    def wait(self, poll: float = 0.05) -> str:
        """Block until the run ends; return why: "complete", "stopped", "drain_timeout",
        "stop_timeout", "interrupted", "halted" or "fatal".

        A stop request first ends every source (open flows are flushed as events), then
        waits for the pipeline and the Core to take everything, like the end of a replay.
        """
        outcome = self._wait(poll)
        self.finished_at = time.monotonic()
        return outcome

    def _wait(self, poll: float) -> str:
        drain_started: float | None = None
        stop_sent = 0.0
        last_pending = -1
        progress_at = 0.0
        while True:
            if self.fatal_message:
                return "fatal"
            if self.stop_now.is_set():
                return "interrupted"
            if self.stop_requested.is_set() and self.operator_stop:
                return "stopped"  # the console's shutdown stopped the sources and drained already
            now = time.monotonic()
            stopping = self.stop_requested.is_set()
            if stopping:
                if self.sources_stopped_at is None:
                    self.sources_stopped_at = now
                    log.info("stopping: ending the sources, then delivering", extra={"component": "app", "event": "stopping"})
                elif now - self.sources_stopped_at >= self.config.capture.stop_timeout:
                    return "stop_timeout"
                if not self.tracker.all_done() and now - stop_sent >= 1.0:  # again each second: a worker may have been restarting
                    stop_sent = now
                    self.control_workers("stop")
            if self.pipeline_idle():
                pending = self.buffer.pending
                if self.buffer.settled():  # nothing pending, no drop report unacknowledged
                    return "stopped" if stopping or self.operator_stop else "complete"
                if self.gate.halted:
                    return "halted"
                if stopping:  # deliver while the Core takes events; what it does not take stays spooled
                    if pending != last_pending:
                        last_pending, progress_at = pending, now
                    elif now - progress_at >= STOP_DRAIN_STALL:
                        return "stopped"
                else:
                    drain_started = drain_started or now
                    if now - drain_started >= self.config.uplink.drain_timeout:
                        return "drain_timeout"
            time.sleep(poll)

    def stop(self) -> None:
        self.finished_at = self.finished_at or time.monotonic()
        if self.supervisor is not None:
            try:
                self.supervisor.stop(block=True, timeout=60)
            except pykka.Timeout:
                log.error("the actor tree did not stop within 60 s")
            self.supervisor = None
        pykka.ActorRegistry.stop_all(block=True, timeout=10)
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if hasattr(self, "identity") and hasattr(self, "spool"):
            self.publish_health()
        if self.core is not None:
            self.core.stop()
        if getattr(self, "buffer", None) is not None:
            self.buffer.close()  # memory-tier events to disk where they fit, the rest reported; totals made durable
        elif getattr(self, "spool", None) is not None:
            self.spool.close()

    # --- reporting --------------------------------------------------------------------

    def _live_summary(self, counters: dict[str, int]) -> dict[str, Any]:
        """What the kernel and the capture saw and dropped; drops are never silent."""
        return {
            "interface": self.live.interface if self.live else None,
            "filter": self.config.capture.filter,
            "workers": [
                {k: w.get(k, 0) for k in ("packets", "flows", "capture_packets", "kernel_drops")}
                for w in (self.tracker.worker_totals(i) for i in range(len(self.workers)))
            ],
            "kernel_packets": counters.get("kernel_packets", 0),
            "kernel_drops": counters.get("kernel_drops", 0),
            "kernel_freezes": counters.get("kernel_freezes", 0),
            "captured": counters.get("capture_packets", 0),
            "dropped_at_source": {k.partition(":")[2]: v for k, v in sorted(counters.items()) if k.startswith("capture_dropped:") and v},
            "capture_failures": {k.partition(":")[2]: v for k, v in sorted(counters.items()) if k.startswith("capture_failures:") and v},
            "capture_restarts": counters.get("capture_restarts", 0),
            "worker_restarts": int(self.metrics.total("worker_starts_total")) - len(self.workers),
        }

    def accounts(self) -> Accounts:
        return self.buffer.accounts()

    def summary(self, outcome: str) -> dict[str, Any]:
        now = self.accounts()
        run = now.minus(self.accounts_at_start)
        counters = self.tracker.totals()
        seconds = max(1e-9, (self.finished_at or time.monotonic()) - self.started_at)
        packets = counters.get("packets", 0)
        kinds = {k: int(v) for k, v in sorted(self.metrics.by_label("events_created_total", "kind").items())}
        errors = [e for e in self.tracker.errors if e]
        return {
            "outcome": outcome,
            "capture": self.config.capture.pcap or (self.live and f"{self.live.interface} (live)"),
            "live": self._live_summary(counters) if self.live is not None else None,
            "core": self.core_url,
            "probe_id": self.identity.probe_id,
            "boot_id": self.identity.boot_id,
            "packets": packets,
            "flows": counters.get("flows", 0),
            "conversations": counters.get("conversations", 0),
            "events_by_kind": kinds,
            "events_created": run.created,
            "events_already_stored": int(self.metrics.total("events_replayed_skipped_total")) + counters.get("events_already_stored", 0),
            "delivered": run.delivered,
            "dropped": run.dropped,
            "pending": now.pending,
            "seconds": round(seconds, 3),
            "packets_per_second": round(packets / seconds, 1),
            "skipped": {k: v for k, v in sorted(counters.items()) if v and k.startswith(("skip:", "weird:", "capfile:")) and k not in _CAPFILE_TOTALS},
            "source_errors": errors,
            "identity": {"state": self.identity.status()["state"], "reason": self.identity.status()["reason"]},
            "uplink": {
                "connection_failures": int(self.metrics.total("uplink_connection_failures_total")),
                "connects": int(self.metrics.total("uplink_connects_total")),
                "backpressure_seconds": round(self.metrics.total("uplink_backpressure_seconds_total"), 3),
                "halted": self.gate.halted,
                "halt_reason": self.gate.reason,
            },
            "accounting": now.as_dict(),
            "restarts": {f"{labels['child']}:{labels['strategy']}": int(v) for kind, name, labels, v in self.metrics.items() if name == "supervisor_restarts_total" and v},
            "tree_restarts": int(self.metrics.total("supervisor_tree_restarts_total")),
            "alerts": self.alerts.history(),
            "fatal": self.fatal_message,
        }

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
import threading
import time
from typing import Any

import attrs
import pykka

from actors.buffer import BufferActor
from actors.credit import Window
from actors.messages import Halt, Shed
from actors.metrics import Metrics
from actors.sequencer import Sequencer
from actors.signer import SignerActor
from actors.supervisor import ChildSpec, Directory, Supervisor, SupervisorHooks, SupervisorSettings
from actors.uplink import TransmissionGate, UplinkActor, UplinkSettings
from actors.worker import DissectionWorker, SourceTracker
from probe.config import Config
from probe.core.embedded import EmbeddedCore
from probe.identity import ProbeIdentity
from storage.accounting import Accounts
from storage.buffer import TieredBuffer
from storage.memtier import MemoryTier
from storage.spool import Spool

log = logging.getLogger("probe.app")

#: settings whose change alters the events a capture yields (part of a replay's identity)
_EVENT_SHAPING = ("dissect", "capture.batch_packets")


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

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics = Metrics()
        self.gate = TransmissionGate()
        self.directory = Directory()
        self.stop_requested = threading.Event()
        self.fatal_message: str | None = None
        self.core: EmbeddedCore | None = None
        self.core_url: str | None = None
        self.supervisor: pykka.ActorRef | None = None
        self.started_at = 0.0
        self.finished_at = 0.0
        self.sources: list[str] = []

    # --- building ---------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        self.started_at = time.monotonic()
        os.makedirs(cfg.probe.data_dir, exist_ok=True)
        key_path = cfg.identity.key or cfg.data_path("identity", "probe.key")
        self.identity = ProbeIdentity(cfg.probe_id, key_path)
        if self.identity.created:
            log.info("created a new signing key at %s", key_path, extra={"component": "identity", "event": "key_created"})
        quota = cfg.buffer.disk_quota_mb << 20
        self.spool = Spool(cfg.data_path("spool"), quota, (cfg.buffer.map_size_mb << 20) or None)
        self.buffer = TieredBuffer(self.spool, MemoryTier(cfg.buffer.memory_events, cfg.buffer.memory_bytes))
        self.sequencer = Sequencer(self.spool.next_seq, self.spool.source_progress)
        self.accounts_at_start = self.buffer.accounts()
        self.core_url = cfg.uplink.core_url or self._start_embedded_core()
        self.signer_window = Window(cfg.capture.window_batches)
        self.buffer_window = Window(cfg.capture.window_batches)
        self.workers = self._worker_specs()
        self.tracker = SourceTracker(len(self.workers))
        specs = [
            ChildSpec("buffer", self._start_buffer),
            ChildSpec("signer", self._start_signer),
            ChildSpec("uplink", self._start_uplink),
        ] + [ChildSpec(f"worker-{i}", self._worker_starter(i)) for i in range(len(self.workers))]
        s = cfg.supervisor
        self.supervisor = Supervisor.start(
            specs,
            self.directory,
            SupervisorSettings(s.max_restarts, s.restart_window, s.restart_backoff_initial, s.restart_backoff_max, s.max_tree_restarts),
            SupervisorHooks(halt=self._halt, shed=self._shed, fatal=self._fatal),
        )

    def _start_embedded_core(self) -> str:
        self.core = EmbeddedCore(self.config.data_path("core"), self.config.core.listen)
        self.core.enroll(self.identity.probe_id, self.identity.public_key_hex)
        url = self.core.start()
        log.info("embedded Core listening at %s", url, extra={"component": "core", "event": "embedded_core"})
        return url

    def _worker_specs(self) -> list[dict[str, Any]]:
        cfg = self.config
        if not cfg.capture.pcap:
            raise ValueError("this build replays capture files: give --pcap FILE")
        source = file_source_id(cfg.capture.pcap, cfg)
        self.sources = [source]
        dissect = attrs.asdict(cfg.dissect)
        dissect["local_nets"] = tuple(dissect["local_nets"])
        return [
            {
                "index": 0,
                "source": source,
                "capture": {"kind": "file", "path": os.path.abspath(cfg.capture.pcap)},
                "dissect": dissect,
                "batch_packets": cfg.capture.batch_packets,
                "window_batches": cfg.capture.window_batches,
                "log_level": cfg.logging.level,
            }
        ]

    def _worker_starter(self, index: int) -> Any:
        def spec() -> dict[str, Any]:
            out = dict(self.workers[index])
            out["resume_ordinal"] = self.sequencer.ordinal(out["source"])
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
        )

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
        self.gate.halt(reason)
        self.metrics.inc("identity_halts_total")
        self.directory.tell("uplink", Halt(reason), wait=0)

    def _shed(self, reason: str) -> None:
        self.directory.tell("buffer", Shed(reason), wait=0)

    def _fatal(self, message: str) -> None:
        self.fatal_message = message
        self.stop_requested.set()

    # --- running ----------------------------------------------------------------------

    def pipeline_idle(self) -> bool:
        """Every source done and every batch through the signer and the buffer."""
        return self.tracker.all_done() and self.signer_window.outstanding == 0 and self.buffer_window.outstanding == 0

    def wait(self, poll: float = 0.05) -> str:
        """Block until the run ends; return why: "complete", "drain_timeout", "stopped" or "fatal"."""
        outcome = self._wait(poll)
        self.finished_at = time.monotonic()
        return outcome

    def _wait(self, poll: float) -> str:
        drain_started: float | None = None
        while True:
            if self.fatal_message:
                return "fatal"
            if self.stop_requested.is_set():
                return "stopped"
            if self.pipeline_idle():
                if self.buffer.settled():
                    return "complete"
                if self.gate.halted:
                    return "halted"
                drain_started = drain_started or time.monotonic()
                if time.monotonic() - drain_started >= self.config.uplink.drain_timeout:
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
        if self.core is not None:
            self.core.stop()
        self.buffer.close()  # memory-tier events to disk where they fit, the rest reported; totals made durable

    # --- reporting --------------------------------------------------------------------

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
            "capture": self.config.capture.pcap,
            "core": self.core_url,
            "probe_id": self.identity.probe_id,
            "boot_id": self.identity.boot_id,
            "packets": packets,
            "flows": counters.get("flows", kinds.get("conn", 0)),
            "events_by_kind": kinds,
            "events_created": run.created,
            "events_already_stored": int(self.metrics.total("events_replayed_skipped_total")) + counters.get("events_already_stored", 0),
            "delivered": run.delivered,
            "dropped": run.dropped,
            "pending": now.pending,
            "seconds": round(seconds, 3),
            "packets_per_second": round(packets / seconds, 1),
            "skipped": {k: v for k, v in sorted(counters.items()) if v and (k.startswith("skip:") or k.startswith("weird:") or k.startswith("capfile:"))},
            "source_errors": errors,
            "uplink": {
                "connection_failures": int(self.metrics.total("uplink_connection_failures_total")),
                "connects": int(self.metrics.total("uplink_connects_total")),
                "backpressure_seconds": round(self.metrics.total("uplink_backpressure_seconds_total"), 3),
                "halted": self.gate.halted,
                "halt_reason": self.gate.reason,
            },
            "accounting": now.as_dict(),
            "fatal": self.fatal_message,
        }

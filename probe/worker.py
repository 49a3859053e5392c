"""A dissection process: capture and dissection actors, feeding the delivery process.

Started by the delivery process as ``python -m probe.worker``; reads its spec (one JSON
line) and then control lines on stdin (``{"t": "stop"}`` ends the source gracefully,
``kill`` ends at once, ``shed`` evicts idle flows; the operator's ``pause``, ``resume``,
``flows``, ``flush`` and ``loglevel`` carry an ``id`` and are answered with a ``reply``
message), writes length-prefixed msgpack messages (event batches, counters, done) on
stdout, and logs on stderr. Keeping dissection in its own process keeps its GIL away
from signing, LMDB and sockets.

The capture is a file replay (``{"kind": "file", "path", "pace"}``) or a live ring
(``{"kind": "ring", "ring": RingSettings fields}``). The flow engine and the capture
counters belong to the process, not to an actor, so a restarted actor keeps them: a link
that goes down and up costs the capture one restart and the open flows nothing.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

import pykka

from actors.capture import FileCaptureActor, PauseCapture, ResumeCapture, StopCapture
from actors.credit import Window
from actors.dissector import DissectorActor, EvictFlows, FlushFlows, ReportCounters, TopFlows
from actors.outbox import Outbox
from actors.ring_capture import RingCaptureActor, RingSettings
from actors.supervisor import ChildSpec, Directory, Supervisor, SupervisorHooks, SupervisorSettings
from probe.logs import setup_logging
from protocols.dissect import DissectSettings, Dissector

log = logging.getLogger("probe.worker")

class WorkerProcess:
    """The actor tree of one dissection process and its lifecycle."""

    def __init__(self, spec: dict[str, Any], stream: Any) -> None:
        self.spec = spec
        self.finished = threading.Event()
        self.exit_code = 0
        self.error: str | None = None
        self.outbox = Outbox(stream, spec["source"], spec.get("resume_ordinal", 0))
        self.engine = Dissector(DissectSettings(**spec.get("dissect", {})))
        self.capture_counters: dict[str, int] = {}
        self.directory = Directory()
        self.frames_window = Window(spec.get("window_batches", 8))
        self.link: Any = None
        source = spec["capture"]
        if source["kind"] == "ring":
            from probe.interfaces import LinkWatcher

            self.link = LinkWatcher(source["ring"]["interface"])
        elif source["kind"] != "file":
            raise ValueError(f"unsupported capture kind {source['kind']!r}")
        specs = [
            ChildSpec("dissector", self._start_dissector),
            ChildSpec("capture", self._start_capture),
        ]
        sup = spec.get("supervisor", {})
        self.supervisor = Supervisor.start(
            specs,
            self.directory,
            SupervisorSettings(**sup),
            SupervisorHooks(fatal=self._fatal),
        )

    def _start_dissector(self, sup: pykka.ActorRef) -> pykka.ActorRef:
        return DissectorActor.start(
            sup,
            engine=self.engine,
            outbox=self.outbox,
            inbox=self.frames_window,
            counters=self.counters,
            on_finished=self._source_finished,
        )

    def _start_capture(self, sup: pykka.ActorRef) -> pykka.ActorRef:
        source = self.spec["capture"]
        if source["kind"] == "ring":
            ring = dict(source["ring"])
            ring["program"] = tuple(tuple(i) for i in ring.get("program", ()))
            return RingCaptureActor.start(
                sup,
                settings=RingSettings(**ring),
                link=self.link,
                directory=self.directory,
                downstream=self.frames_window,
                counters=self.capture_counters,
                on_change=self._report,
            )
        return FileCaptureActor.start(
            sup,
            path=source["path"],
            directory=self.directory,
            downstream=self.frames_window,
            batch_packets=self.spec.get("batch_packets", 2048),
            on_error=self._source_error,
            counters=self.capture_counters,
            pace=source.get("pace"),
        )

    def _report(self) -> None:
        """Send the counters now (the capture opened or failed: the delivery process may wait for it)."""
        self.outbox.stats(self.counters())

    def _source_error(self, message: str) -> None:
        if self.error is None:
            self.error = message
            log.error(message, extra={"component": "capture", "event": "source_error"})

    def _source_finished(self) -> None:
        """The final batch is dissected: report the counters and end the process."""
        self.outbox.done(self.counters(), self.error)
        self.finished.set()

    def stop_capture(self) -> None:
        """Graceful stop: end the source now; open flows are flushed as usual."""
        self.directory.tell("capture", StopCapture(), wait=5)

    def operator_request(self, command: dict[str, Any]) -> None:
        """An operator's request relayed by the delivery process; answered with a reply message."""
        kind, request_id = command["t"], command.get("id", 0)
        if kind == "pause":
            self.directory.tell("capture", PauseCapture(ReportCounters(request_id, {"paused": True})), wait=5)
        elif kind == "resume":
            self.directory.tell("capture", ResumeCapture(ReportCounters(request_id, {"paused": False})), wait=5)
        elif kind == "flows":
            self.directory.tell("dissector", TopFlows(request_id, int(command.get("n", 10))), wait=5)
        elif kind == "flush":
            now = None if self.spec["capture"]["kind"] == "file" else time.time()  # a live source runs on the wall clock
            self.directory.tell("dissector", FlushFlows(request_id, float(command.get("idle", 1e18)), now), wait=5)
        elif kind == "loglevel":
            level = str(command.get("level", "")).upper()
            if level in ("DEBUG", "INFO", "WARNING", "ERROR"):
                logging.getLogger().setLevel(level)
            self.outbox.reply(request_id, {"level": logging.getLevelName(logging.getLogger().level).lower()})

    def evict_flows(self, fraction: float) -> None:
        """Resource pressure in the delivery process: end the oldest idle flows."""
        self.directory.tell("dissector", EvictFlows(fraction), wait=0)

    def _fatal(self, message: str) -> None:
        self.error = message
        self.exit_code = 1
        self.finished.set()

    def counters(self) -> dict[str, int]:
        out = dict(self.engine.counters)
        out.update(dict(self.capture_counters))  # copies: the capture thread writes them
        out["encoding_failures"] = self.outbox.encoding_failures
        out["events_already_stored"] = self.outbox.already_stored
        out["active_flows"] = self.engine.active_flows
        if self.error:
            out["source_errors"] = 1
        return out

    def run(self) -> int:
        self.finished.wait()
        try:
            self.supervisor.stop(block=True, timeout=30)
        except pykka.Timeout:
            log.error("the dissection actors did not stop within 30 s")
        pykka.ActorRegistry.stop_all(block=True, timeout=5)
        if self.link is not None:
            self.link.close()
        return self.exit_code


#: control lines relayed from the operator's console, each answered with a reply message
OPERATOR_REQUESTS = ("pause", "resume", "flows", "flush", "loglevel")


def _control_loop(process: WorkerProcess) -> None:
    for line in sys.stdin:
        try:
            command = json.loads(line)
            if not isinstance(command, dict):
                raise ValueError("not an object")
        except ValueError:
            log.warning("ignoring malformed control line from the delivery process")
            continue
        if command.get("t") == "stop":
            process.stop_capture()
        elif command.get("t") == "shed":
            process.evict_flows(float(command.get("fraction", 0.25)))
        elif command.get("t") == "kill":
            process.finished.set()
            return
        elif command.get("t") in OPERATOR_REQUESTS:
            try:
                process.operator_request(command)
            except (ValueError, TypeError) as exc:  # a malformed request must not end this loop
                process.outbox.reply(command.get("id", 0), {"error": f"bad {command['t']} request: {exc}"})
    # stdin closed: the delivery process is gone; stop quietly
    process.finished.set()


def main() -> int:
    # the delivery process decides when we stop (a terminal's ^C and a service manager's
    # SIGTERM reach every process of the group; the worker then gets "stop" on stdin)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    line = sys.stdin.readline()
    try:
        spec = json.loads(line)
    except ValueError:
        print("probe.worker: expected a JSON spec on the first line of stdin", file=sys.stderr)
        return 2
    setup_logging(spec.get("log_level", "info"), component=f"worker-{spec.get('index', 0)}")
    stream = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    sys.stdout = sys.stderr  # nothing but messages may reach the pipe
    process = WorkerProcess(spec, stream)
    if spec.get("paused"):  # restarted while the operator had paused capture
        process.directory.tell("capture", PauseCapture(), wait=30)
    threading.Thread(target=_control_loop, args=(process,), daemon=True, name="control").start()
    return process.run()


if __name__ == "__main__":
    sys.exit(main())

"""The file capture actor: reads a capture file in chunks and hands frame batches on.

A replay waits for credit from the dissector (it never drops); reading happens one chunk
per message so that stop and pause requests are handled between chunks.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import attrs

from actors.base import SupervisedActor, handles
from actors.credit import Window
from actors.messages import FrameBatch
from actors.supervisor import Directory
from protocols.capfile import CaptureReader

log = logging.getLogger("probe.capture")

CHUNK = 1 << 20


@attrs.frozen(slots=True)
class ReadMore:
    """Self-message: read the next chunk (or retry handing on a batch)."""


@attrs.frozen(slots=True)
class StopCapture:
    """End the source now: what was read is dissected, then the final batch goes out."""


@attrs.frozen(slots=True)
class PauseCapture:
    """Operator: hand on no more frames until resumed; then tell the dissector ``report``."""

    report: Any = None


@attrs.frozen(slots=True)
class ResumeCapture:
    """Operator: go on from where the pause stopped; then tell the dissector ``report``."""

    report: Any = None


class FileCaptureActor(SupervisedActor):
    """Replays one capture file losslessly into the dissector."""

    name = "capture"

    def __init__(
        self,
        supervisor: Any,
        *,
        path: str,
        directory: Directory,
        downstream: Window,
        batch_packets: int,
        on_error: Callable[[str], None],
        publish: Callable[[dict[str, int]], None],
    ) -> None:
        super().__init__(supervisor)
        self.path = path
        self.directory = directory
        self.downstream = downstream
        self.batch_packets = batch_packets
        self.on_error = on_error
        self.publish = publish
        self.reader = CaptureReader()
        self.file: Any = None
        self.frames: list = []
        self.ready: list[FrameBatch] = []
        self.finished = False
        self.bytes_read = 0
        self.size = 0
        self.started = 0.0
        self.paused = False
        self._scheduled = False  # a ReadMore is in the mailbox

    def start_child(self) -> None:
        self.started = time.monotonic()
        try:
            self.file = open(self.path, "rb")
            self.size = self.file.seek(0, 2)
            self.file.seek(0)
        except OSError as exc:
            self.on_error(f"cannot read capture file {self.path}: {exc.strerror}")
            self.ready.append(FrameBatch([], final=True))
            self.finished = True
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.actor_ref.tell(ReadMore())

    def stop_child(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    @handles(ReadMore)
    def on_read_more(self, _: ReadMore) -> None:
        self._scheduled = False
        if self.paused:
            return  # ResumeCapture schedules the next read
        if not self.ready and not self.finished:
            self._read_chunk()
        while self.ready:
            if not self.downstream.acquire(timeout=0.05):
                self._schedule()  # let stop and pause requests in, then try again
                return
            self.directory.tell("dissector", self.ready.pop(0))
        if not self.finished:
            self._schedule()

    @handles(StopCapture)
    def on_stop_capture(self, _: StopCapture) -> None:
        self.paused = False
        if not self.finished:
            self.ready.append(FrameBatch(self.frames, final=True))
            self.frames = []
            self.finished = True
        self._schedule()

    @handles(PauseCapture)
    def on_pause(self, pause: PauseCapture) -> None:
        """Frames already handed on are still dissected; the report follows them."""
        self.paused = True
        self.publish(self.counters())
        if pause.report is not None:
            self.directory.tell("dissector", pause.report)

    @handles(ResumeCapture)
    def on_resume(self, resume: ResumeCapture) -> None:
        self.paused = False
        self.publish(self.counters())
        self._schedule()
        if resume.report is not None:
            self.directory.tell("dissector", resume.report)

    def _read_chunk(self) -> None:
        chunk = self.file.read(CHUNK)
        if chunk:
            self.bytes_read += len(chunk)
            self.frames += self.reader.feed(chunk)
        else:
            self.frames += self.reader.close()
        if self.reader.error:
            self.on_error(f"{self.path}: {self.reader.error}")
        self.publish(self.counters())
        end = not chunk or self.reader.error is not None
        size = self.batch_packets
        while len(self.frames) >= size:
            self.ready.append(FrameBatch(self.frames[:size]))
            del self.frames[:size]
        if end:
            self.ready.append(FrameBatch(self.frames, final=True))
            self.frames = []
            self.finished = True

    def counters(self) -> dict[str, int]:
        out = {f"capfile:{k}": v for k, v in self.reader.counters.items()}
        out["capture_bytes_read"] = self.bytes_read
        out["capture_file_size"] = self.size
        out["capture_paused"] = int(self.paused)
        return out

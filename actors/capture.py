"""Capture actors' common messages and the file capture actor.

The file capture reads a capture file in chunks and hands frame batches on. A replay
waits for credit from the dissector (it never drops); reading happens one chunk per
message so that stop and pause requests are handled between chunks. With a pace other
than ``fast`` it hands frames on when their time comes (capture time / speed factor).

Counters live in a dict the dissection process owns (``counters``), so they survive a
restart of the actor; the dissection process reads copies of it from another thread.
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
#: longest sleep inside one message while pacing or paused (keeps stop requests prompt)
NAP = 0.05


@attrs.frozen(slots=True)
class ReadMore:
    """Self-message: read the next chunk (or retry handing on a batch)."""


@attrs.frozen(slots=True)
class StopCapture:
    """End the source now: what was read is dissected, then the final batch goes out."""


@attrs.frozen(slots=True)
class PauseCapture:
    """Operator: hand on no more frames until resumed (a file waits; a live capture discards
    and counts); then tell the dissector ``report``."""

    report: Any = None


@attrs.frozen(slots=True)
class ResumeCapture:
    """Operator: go on from where the pause stopped; then tell the dissector ``report``."""

    report: Any = None


def pace_factor(pace: str | float | None) -> float | None:
    """Speed factor of a ``--pace`` value: None for ``fast``, 1.0 for ``realtime``."""
    if pace in (None, "fast"):
        return None
    if pace == "realtime":
        return 1.0
    factor = float(pace)
    if not factor > 0:
        raise ValueError(f"pace must be fast, realtime or a positive factor, not {pace!r}")
    return factor


def bump(counters: dict[str, int], key: str, amount: int = 1) -> None:
    """Add to a counter (a zero amount leaves no key behind)."""
    if amount:
        counters[key] = counters.get(key, 0) + amount


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
        counters: dict[str, int] | None = None,
        pace: str | float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(supervisor)
        self.path = path
        self.directory = directory
        self.downstream = downstream
        self.batch_packets = batch_packets
        self.on_error = on_error
        self.counters = counters if counters is not None else {}
        self.factor = pace_factor(pace)
        self.clock = clock
        self.reader = CaptureReader()
        self.file: Any = None
        self.frames: list = []
        self.ready: list[FrameBatch] = []
        self.finished = False
        self.paused = False
        self.paused_at = 0.0
        self.started = 0.0
        self.first_ts: float | None = None  # capture time that maps to ``started`` when pacing
        self._scheduled = False  # a ReadMore is in the mailbox

    def start_child(self) -> None:
        self.started = self.clock()
        try:
            self.file = open(self.path, "rb")
            self.counters["capture_file_size"] = self.file.seek(0, 2)
            self.file.seek(0)
        except OSError as exc:
            self.on_error(f"cannot read capture file {self.path}: {exc.strerror}")
            self.ready.append(FrameBatch([], final=True))
            self.finished = True
        self.counters.setdefault("capture_bytes_read", 0)
        self.counters["capture_paused"] = 0
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
            batch = self.ready[0]
            if self.factor is not None:
                batch, wait = self._due(batch)
                if batch is None:
                    time.sleep(min(wait, NAP))
                    self._schedule()
                    return
            if not self.downstream.acquire(timeout=NAP):
                self._schedule()  # let stop and pause requests in, then try again
                return
            if batch is self.ready[0]:
                self.ready.pop(0)
            else:
                rest = self.ready[0]
                self.ready[0] = FrameBatch(rest.frames[len(batch.frames) :], rest.final)
            self.counters["capture_packets"] = self.counters.get("capture_packets", 0) + len(batch.frames)
            self._progress()
            self.directory.tell("dissector", batch)
        if not self.finished:
            self._schedule()

    def _progress(self) -> None:
        """Bytes of the file behind the frames handed on so far (read-ahead excluded), for progress."""
        parsed = self.reader.counters.get("packets", 0)
        read = self.counters.get("capture_bytes_read", 0)
        done = read if self.finished and not self.ready else read * self.counters.get("capture_packets", 0) // max(1, parsed)
        self.counters["capture_bytes_done"] = min(read, done)

    def _due(self, batch: FrameBatch) -> tuple[FrameBatch | None, float]:
        """The leading frames of ``batch`` whose paced time has come, or (None, seconds to wait)."""
        frames = batch.frames
        if not frames:
            return batch, 0.0
        assert self.factor is not None
        if self.first_ts is None:
            self.first_ts = frames[0][0]
            self.started = self.clock()
        horizon = self.first_ts + (self.clock() - self.started) * self.factor
        due = 0
        for frame in frames:
            if frame[0] > horizon:
                break
            due += 1
        if due == len(frames):
            return batch, 0.0
        if due == 0:
            return None, (frames[0][0] - horizon) / self.factor
        return FrameBatch(frames[:due]), 0.0

    @handles(StopCapture)
    def on_stop_capture(self, _: StopCapture) -> None:
        """End now. A fast replay dissects what it read; a paced one stops at the current
        capture time and counts the frames it read ahead but never replayed."""
        if self.finished and not self.ready:
            return  # the final batch is on its way already
        if self.factor is not None:
            unplayed = sum(len(b.frames) for b in self.ready) + len(self.frames)
            self.counters["capture_unreplayed"] = self.counters.get("capture_unreplayed", 0) + unplayed
            self.ready = [FrameBatch([], final=True)]
            self.frames = []
            self.finished = True
        elif not self.finished:
            self.ready.append(FrameBatch(self.frames, final=True))
            self.frames = []
            self.finished = True
        self.paused = False
        self.counters["capture_paused"] = 0
        self._schedule()

    @handles(PauseCapture)
    def on_pause(self, pause: PauseCapture) -> None:
        """Frames already handed on are still dissected; the report follows them."""
        if not self.paused:
            self.paused = True
            self.paused_at = self.clock()
        self.counters["capture_paused"] = 1
        if pause.report is not None:
            self.directory.tell("dissector", pause.report)

    @handles(ResumeCapture)
    def on_resume(self, resume: ResumeCapture) -> None:
        if self.paused:
            self.paused = False
            self.started += self.clock() - self.paused_at  # pacing resumes where it left off
        self.counters["capture_paused"] = 0
        self._schedule()
        if resume.report is not None:
            self.directory.tell("dissector", resume.report)

    def _read_chunk(self) -> None:
        chunk = self.file.read(CHUNK)
        if chunk:
            self.counters["capture_bytes_read"] = self.counters.get("capture_bytes_read", 0) + len(chunk)
            self.frames += self.reader.feed(chunk)
        else:
            self.frames += self.reader.close()
        for key, value in dict(self.reader.counters).items():
            self.counters[f"capfile:{key}"] = value
        if self.reader.error:
            self.on_error(f"{self.path}: {self.reader.error}")
        end = not chunk or self.reader.error is not None
        size = self.batch_packets
        while len(self.frames) >= size:
            self.ready.append(FrameBatch(self.frames[:size]))
            del self.frames[:size]
        if end:
            self.ready.append(FrameBatch(self.frames, final=True))
            self.frames = []
            self.finished = True

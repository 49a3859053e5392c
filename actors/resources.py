"""The resources monitor: memory, spool, disk and CPU against their budgets, and shedding.

Every ``check_interval`` seconds the monitor (a supervised child of the delivery
process) measures:

- memory: anonymous resident memory (``RssAnon`` + ``RssShmem`` of /proc/PID/status) of
  the delivery process and of its dissection processes together. File-backed resident
  pages (shared libraries, the LMDB map the uplink reads through) are page cache the
  kernel reclaims on its own; they are reported (``kind="file"``) but not budgeted;
- spool: the bytes the LMDB spool holds against its quota;
- disk: free and used space of the file system under the data directory;
- CPU: cores used by those processes since the last check, against ``cpu_cores``.

It keeps the memory tier's limits inside the room the memory budget leaves (shrinking
the buffer before the budget is reached, growing it back when there is room again), and
reports a :class:`ResourceError` to the supervisor, whose strategy table turns it into a
shed, when memory passes ``shed_at`` of its budget, when the spool refuses batches
because the LMDB map or the disk is full, or when free disk falls below its minimum
(the spool then stops growing until there is room). Shedding (:class:`Shedder`) drops
the older half of the memory tier (counted by reason), shrinks it, asks the dissection
processes to evict their oldest idle flows, and logs a warning; the probe keeps running.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import threading
import time
from typing import Any, Callable

import attrs

from actors.base import SupervisedActor, handles
from actors.messages import Shed, Tick
from actors.metrics import Metrics
from actors.supervisor import Directory, FailureReport
from protocols.errors import ResourceError
from storage.buffer import TieredBuffer

log = logging.getLogger("probe.resources")

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: memory a record costs in the memory tier beyond its bytes (tuple, object headers, deque)
RECORD_OVERHEAD_FACTOR = 2.0
#: the memory tier never shrinks below these (a few batches), so events keep flowing
MEMORY_TIER_FLOOR_EVENTS = 2_000
MEMORY_TIER_FLOOR_BYTES = 1 << 20


@attrs.frozen
class ResourceBudgets:
    """The budgets of [resources] (and the spool quota of [buffer]) in bytes and cores."""

    memory_bytes: int
    spool_quota_bytes: int
    shed_at: float = 0.85
    min_free_disk_bytes: int = 256 << 20
    cpu_cores: float = 0.0
    check_interval: float = 1.0

    @property
    def cores(self) -> float:
        return self.cpu_cores or float(os.cpu_count() or 1)


def process_memory(pid: int | str = "self") -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of process ``pid``; (0, 0) if it is gone."""
    anon = file = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith((b"RssAnon:", b"RssShmem:")):
                    anon += int(line.split()[1]) << 10
                elif line.startswith(b"RssFile:"):
                    file = int(line.split()[1]) << 10
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0, 0
    return anon, file


def process_cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of process ``pid`` (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0.0
    fields = stat[stat.rfind(b")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def child_pids(marker: bytes = b"probe.worker", parent: int | str = "self") -> list[int]:
    """Child processes of ``parent`` (this process by default), whichever of its threads
    started them, whose command line holds ``marker`` (``b""``: every child)."""
    pids: list[int] = []
    for path in glob.glob(f"/proc/{parent}/task/*/children"):
        try:
            with open(path, "rb") as fh:
                candidates = [int(p) for p in fh.read().split()]
        except OSError:
            continue
        for pid in candidates:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if marker in fh.read():
                        pids.append(pid)
            except OSError:
                continue
    return sorted(set(pids))


@attrs.frozen
class ResourceSample:
    """One measurement of every resource."""

    memory_anon: int
    memory_file: int
    memory_by_process: dict[str, int]
    spool_bytes: int
    disk_free: int  # bytes available to the probe (statvfs f_bavail)
    disk_used: int  # bytes in use on the file system (f_blocks - f_bfree)
    cpu_cores_used: float

    @property
    def disk_size(self) -> int:
        """used + available, as df counts it (the blocks reserved for root left out)."""
        return self.disk_used + self.disk_free

    def utilization(self, budgets: ResourceBudgets) -> dict[str, float]:
        """Each resource's use as a fraction of its budget."""
        return {
            "memory": self.memory_anon / budgets.memory_bytes,
            "spool": self.spool_bytes / budgets.spool_quota_bytes,
            "disk": self.disk_used / self.disk_size if self.disk_size else 0.0,
            "cpu": self.cpu_cores_used / budgets.cores,
        }

    def usage(self) -> dict[str, float]:
        return {
            "memory": float(self.memory_anon),
            "spool": float(self.spool_bytes),
            "disk": float(self.disk_used),
            "cpu": self.cpu_cores_used,
        }


class ResourceSampler:
    """Measures the probe's processes, its spool and its disk (keeps CPU readings between calls)."""

    def __init__(self, data_dir: str, spool_bytes: Callable[[], int], worker_pids: Callable[[], list[int]] = child_pids) -> None:
        self.data_dir = data_dir
        self.spool_bytes = spool_bytes
        self.worker_pids = worker_pids
        self._cpu: dict[int | str, float] = {}
        self._at = 0.0

    def sample(self) -> ResourceSample:
        now = time.monotonic()
        workers = self.worker_pids()
        anon, file = process_memory()
        by_process = {"delivery": anon, "dissection": 0}
        cpu_now: dict[int | str, float] = {"self": process_cpu_seconds()}
        for pid in workers:
            w_anon, w_file = process_memory(pid)
            anon += w_anon
            file += w_file
            by_process["dissection"] += w_anon
            cpu_now[pid] = process_cpu_seconds(pid)
        elapsed = now - self._at if self._at else 0.0
        used = sum(max(0.0, v - self._cpu.get(k, v)) for k, v in cpu_now.items())
        self._cpu, self._at = cpu_now, now
        try:
            disk = shutil.disk_usage(self.data_dir)
            free, disk_used = disk.free, disk.used
        except OSError:
            free = disk_used = 0
        return ResourceSample(anon, file, by_process, self.spool_bytes(), free, disk_used, used / elapsed if elapsed > 0 else 0.0)


class Shedder:
    """What shedding does; thread-safe, for the supervisor's shed hook and the monitor.

    Drops the older half of the memory tier (the buffer actor does it, counting each
    event under ``reason``), caps the memory tier at what is left, asks every dissection
    process to evict its oldest idle flows, and logs a warning. Two sheds are at least
    ``min_interval`` apart, so a burst of triggers does not empty the buffer at once.
    """

    def __init__(
        self,
        buffer: TieredBuffer,
        directory: Directory,
        metrics: Metrics,
        workers: Callable[[], list[str]],
        min_interval: float = 1.0,
        evict_fraction: float = 0.25,
    ) -> None:
        self.buffer = buffer
        self.directory = directory
        self.metrics = metrics
        self.workers = workers
        self.min_interval = min_interval
        self.evict_fraction = evict_fraction
        self.configured = (buffer.memory.max_events, buffer.memory.max_bytes)
        self.sheds = 0
        self._last = -1e18
        self._lock = threading.Lock()

    def shed(self, reason: str) -> bool:
        """Shed load for ``reason``; False if the previous shed was too recent."""
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.min_interval:
                return False
            self._last = now
            self.sheds += 1
        memory = self.buffer.memory
        held, held_bytes = len(memory), memory.bytes_used
        self.directory.tell("buffer", Shed(reason), wait=0)
        self.cap_memory_tier(max(MEMORY_TIER_FLOOR_EVENTS, held // 2), max(MEMORY_TIER_FLOOR_BYTES, held_bytes // 2))
        for worker in self.workers():
            self.directory.tell(worker, {"t": "shed", "fraction": self.evict_fraction}, wait=0)
        self.metrics.inc("resource_sheds_total", reason=reason)
        log.warning(
            "shedding load (%s): dropping the older half of %d events in the memory tier, capping it, evicting idle flows",
            reason,
            held,
            extra={"component": "resources", "event": "shed", "reason": reason, "memory_tier_events": held},
        )
        return True

    def cap_memory_tier(self, max_events: int, max_bytes: int) -> None:
        """Limit the memory tier (never above its configured size, never below the floor)."""
        memory = self.buffer.memory
        memory.max_events = max(MEMORY_TIER_FLOOR_EVENTS, min(self.configured[0], max_events))
        memory.max_bytes = max(MEMORY_TIER_FLOOR_BYTES, min(self.configured[1], max_bytes))
        self.metrics.set("buffer_limit_events", memory.max_events, tier="memory")
        self.metrics.set("buffer_limit_bytes", memory.max_bytes, tier="memory")


def spool_refusal_reason(disk_error: str | None) -> str | None:
    """Why the spool refused a batch, from TieredBuffer.disk_error (None: a quota, not a fault)."""
    if not disk_error:
        return None
    text = disk_error.lower()
    if "map full" in text:
        return "map_full"
    if "disk full" in text or "no space" in text:
        return "disk_full"
    if "quota" in text:
        return None  # buffer exhaustion: the buffer itself sheds the oldest
    return "spool_error"


class ResourcesActor(SupervisedActor):
    """Measures every ``check_interval`` s, publishes the figures, keeps memory in budget."""

    name = "resources"

    def __init__(
        self,
        supervisor: Any,
        *,
        budgets: ResourceBudgets,
        sampler: ResourceSampler,
        shedder: Shedder,
        buffer: TieredBuffer,
        metrics: Metrics,
    ) -> None:
        super().__init__(supervisor)
        self.budgets = budgets
        self.sampler = sampler
        self.shedder = shedder
        self.buffer = buffer
        self.metrics = metrics
        self.last: ResourceSample | None = None
        self._stopped = threading.Event()
        self._memory_tier_taken = 0.0
        self._reported: dict[str, float] = {}

    def start_child(self) -> None:
        self._memory_tier_taken = self.metrics.counter("events_buffered_total", tier="memory")
        self.start_ticking(self.budgets.check_interval, self._stopped)
        self.check()

    def stop_child(self) -> None:
        self._stopped.set()

    @handles(Tick)
    def on_tick(self, _: Tick) -> None:
        self.check()

    def check(self) -> ResourceSample:
        """Measure, publish, and act on what is over budget."""
        sample = self.sampler.sample()
        self.last = sample
        self._publish(sample)
        self._fit_memory_tier(sample)
        budgets = self.budgets
        if sample.memory_anon >= budgets.shed_at * budgets.memory_bytes:
            self._report(
                "memory_budget",
                f"resident memory {sample.memory_anon >> 20} MB is over {budgets.shed_at:.0%} of the {budgets.memory_bytes >> 20} MB budget",
            )
        self._watch_spool(sample)
        return sample

    def _publish(self, sample: ResourceSample) -> None:
        m = self.metrics
        for process, anon in sample.memory_by_process.items():
            m.set("resident_memory_bytes", anon, process=process, kind="anon")
        m.set("resident_memory_bytes", sample.memory_file, process="all", kind="file")
        m.set("disk_free_bytes", sample.disk_free)
        budgets = {
            "memory": float(self.budgets.memory_bytes),
            "spool": float(self.budgets.spool_quota_bytes),
            "disk": float(sample.disk_size),
            "cpu": self.budgets.cores,
        }
        usage = sample.usage()
        for resource, fraction in sample.utilization(self.budgets).items():
            m.set("resource_utilization", fraction, resource=resource)
            m.set("resource_usage", usage[resource], resource=resource)
            m.set("resource_budget", budgets[resource], resource=resource)

    def _fit_memory_tier(self, sample: ResourceSample) -> None:
        """Cap the memory tier to the room the budget leaves (so a flood cannot overshoot it)."""
        memory = self.buffer.memory
        room = self.budgets.shed_at * self.budgets.memory_bytes - sample.memory_anon
        limit_bytes = memory.bytes_used + int(room / RECORD_OVERHEAD_FACTOR)
        average = memory.bytes_used / len(memory) if len(memory) else 512
        self.shedder.cap_memory_tier(int(limit_bytes / max(average, 1)), limit_bytes)

    def _watch_spool(self, sample: ResourceSample) -> None:
        taken = self.metrics.counter("events_buffered_total", tier="memory")
        refused = taken > self._memory_tier_taken
        self._memory_tier_taken = taken
        # the memory tier took events because the spool refused them, not because the spool
        # is paused from here (disk_low, reported below); a failed disk stays off between
        # the buffer's retries, so whether it is on now says nothing
        reason = spool_refusal_reason(self.buffer.disk_error) if refused and not self.buffer.disk_held else None
        if reason is not None:
            self._report(reason, f"the spool refuses events ({self.buffer.disk_error}); they go to the memory tier")
        low = sample.disk_size > 0 and sample.disk_free < self.budgets.min_free_disk_bytes
        if low and self.buffer.disk_ok:
            self.buffer.disk_ok = False  # new events go to the memory tier until there is room
            self.buffer.disk_error = f"free disk {sample.disk_free >> 20} MB below the {self.budgets.min_free_disk_bytes >> 20} MB minimum"
            self._report("disk_low", self.buffer.disk_error)
        elif not low and self.buffer.disk_held:
            # room again: resume the spool this monitor (or the one before a restart) paused. A
            # spool that failed on its own is retried by the buffer, which first deletes what the
            # Core acknowledged meanwhile (that frees pages on a disk still full)
            self.buffer.disk_ok = True  # the next batch tries the spool again
            log.info("the spool takes events again", extra={"component": "resources", "event": "spool_resumed"})

    def _since_report(self, reason: str) -> float:
        return time.monotonic() - self._reported.get(reason, -1e18)

    def _report(self, reason: str, message: str) -> None:
        """Hand the supervisor a ResourceError (its strategy: shed), at most every few checks."""
        if self._since_report(reason) < max(2.0, 3 * self.budgets.check_interval):
            return
        self._reported[reason] = time.monotonic()
        if self.supervisor is not None:
            self.supervisor.tell(FailureReport(self.name, ResourceError(message, reason=reason)))
        else:
            self.shedder.shed(reason)

"""The resources monitor on real processes, a real spool and a real buffer actor."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pykka
import pytest

from actors.buffer import BufferActor
from actors.credit import Window
from actors.messages import SignedEvents
from actors.metrics import Metrics
from actors.resources import (
    MEMORY_TIER_FLOOR_BYTES,
    MEMORY_TIER_FLOOR_EVENTS,
    ResourceBudgets,
    ResourceSampler,
    ResourcesActor,
    Shedder,
    child_pids,
    process_cpu_seconds,
    process_memory,
    spool_refusal_reason,
)
from actors.supervisor import ChildSpec, Directory, Supervisor, SupervisorHooks
from storage.buffer import TieredBuffer
from storage.memtier import MemoryTier
from storage.spool import Spool


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_process_figures_come_from_proc():
    anon, file = process_memory()
    with open("/proc/self/status") as fh:
        status = {line.split(":")[0]: int(line.split()[1]) << 10 for line in fh if line.startswith("Rss")}
    assert anon == pytest.approx(status["RssAnon"] + status["RssShmem"], rel=0.2) and file > 0
    assert process_memory(2**22 + 12345) == (0, 0)
    assert process_cpu_seconds() > 0


def test_child_pids_finds_the_dissection_processes_and_their_cpu():
    busy = subprocess.Popen([sys.executable, "-c", "import sys; x = sys.argv; [i * i for i in range(10**8)]", "probe.worker"])
    other = subprocess.Popen(["sleep", "5"])
    try:
        assert wait_for(lambda: busy.pid in child_pids())
        assert other.pid not in child_pids()
        sampler = ResourceSampler("/", lambda: 0, worker_pids=lambda: [busy.pid])
        sampler.sample()
        time.sleep(0.5)
        sample = sampler.sample()
        assert sample.cpu_cores_used > 0.1  # the busy child's CPU is counted
        assert sample.memory_by_process["dissection"] > 0
    finally:
        busy.kill()
        other.kill()
        busy.wait()
        other.wait()


def records(first: int, n: int, size: int = 300) -> list[tuple[int, bytes]]:
    return [(seq, bytes([seq % 251]) * size) for seq in range(first, first + n)]


@pytest.fixture
def delivery(tmp_path):
    """A real spool (tiny quota: new events go to the memory tier), buffer actor and supervisor."""
    yield from delivery_parts(Spool(str(tmp_path / "spool"), quota_bytes=64 << 10))


def delivery_parts(spool: Spool):
    metrics = Metrics()
    directory = Directory()
    buffer = TieredBuffer(spool, MemoryTier(100_000, 64 << 20))
    window = Window(64)
    sheds: list[str] = []
    shedder = Shedder(buffer, directory, metrics, workers=lambda: [], min_interval=0.0)

    def shed(reason: str) -> None:
        sheds.append(reason)
        shedder.shed(reason)

    sup = Supervisor.start(
        [ChildSpec("buffer", lambda s: BufferActor.start(s, buffer=buffer, directory=directory, inbox=window, metrics=metrics))],
        directory,
        hooks=SupervisorHooks(shed=shed),
        metrics=metrics,
    )

    def store(first: int, n: int) -> None:
        window.acquire()
        directory.tell("buffer", SignedEvents(records(first, n), None, {"weird": n}))
        assert wait_for(lambda: window.outstanding == 0)

    yield metrics, directory, buffer, shedder, sup, sheds, store
    sup.stop()
    pykka.ActorRegistry.stop_all()
    spool.close()


def test_shedding_drops_the_older_half_of_the_memory_tier_and_caps_it(delivery):
    metrics, directory, buffer, shedder, sup, sheds, store = delivery
    for first in range(1, 10_001, 1000):
        store(first, 1000)
    assert len(buffer.memory) > 9000  # the spool took only its quota's worth
    in_memory = len(buffer.memory)
    assert shedder.shed("memory_budget")
    assert wait_for(lambda: len(buffer.memory) == in_memory - (in_memory + 1) // 2)
    assert buffer.memory.max_events == max(MEMORY_TIER_FLOOR_EVENTS, in_memory // 2)
    accounts = buffer.accounts()
    assert accounts.dropped == {"memory_budget": (in_memory + 1) // 2} and accounts.balanced
    assert metrics.counter("resource_sheds_total", reason="memory_budget") == 1
    assert metrics.counter("events_dropped_total", reason="memory_budget") == (in_memory + 1) // 2


def budgets(buffer, **kw) -> ResourceBudgets:
    settings = {"memory_bytes": 8 << 30, "spool_quota_bytes": buffer.spool.quota_bytes, "check_interval": 0.05, "min_free_disk_bytes": 0}
    settings.update(kw)
    return ResourceBudgets(**settings)


def start_monitor(tmp_path, buffer, shedder, metrics, sup, **kw) -> pykka.ActorRef:
    sampler = ResourceSampler(str(tmp_path), lambda: buffer.spool.bytes_used, worker_pids=lambda: [])
    return ResourcesActor.start(sup, budgets=budgets(buffer, **kw), sampler=sampler, shedder=shedder, buffer=buffer, metrics=metrics)


def test_memory_over_budget_is_reported_and_shed(tmp_path, delivery):
    metrics, directory, buffer, shedder, sup, sheds, store = delivery
    for first in range(1, 5001, 1000):
        store(first, 1000)
    anon, _ = process_memory()
    monitor = start_monitor(tmp_path, buffer, shedder, metrics, sup, memory_bytes=int(anon * 0.9))
    try:
        assert wait_for(lambda: sheds)
        assert sheds[0] == "memory_budget"
        assert metrics.counter("supervisor_failures_total", child="resources", strategy="shed", reason="memory_budget") >= 1
        assert metrics.gauge("resource_utilization", resource="memory") > 1.0
        assert wait_for(lambda: buffer.accounts().dropped.get("memory_budget", 0) > 0)
        # no room left under the budget: the memory tier is held at its floor
        assert wait_for(lambda: (buffer.memory.max_events, buffer.memory.max_bytes) == (MEMORY_TIER_FLOOR_EVENTS, MEMORY_TIER_FLOOR_BYTES))
        assert monitor.is_alive()  # reported, not restarted
    finally:
        monitor.stop()


def test_low_free_disk_stops_the_spool_and_room_resumes_it(tmp_path, delivery):
    metrics, directory, buffer, shedder, sup, sheds, store = delivery
    monitor = start_monitor(tmp_path, buffer, shedder, metrics, sup, min_free_disk_bytes=1 << 60)
    try:
        assert wait_for(lambda: not buffer.disk_ok and "disk_low" in sheds)
        assert "below" in buffer.disk_error
        store(1, 10)
        assert len(buffer.memory) == 10 and buffer.spool.pending == 0  # new events skip the spool
    finally:
        monitor.stop()
    monitor = start_monitor(tmp_path, buffer, shedder, metrics, sup, min_free_disk_bytes=0)
    try:
        assert wait_for(lambda: buffer.disk_ok)
        store(11, 10)
        # the memory tier's events moved back to the spool first (storage/buffer.py), then the new ones
        assert buffer.spool.pending == 20 and len(buffer.memory) == 0
    finally:
        monitor.stop()


@pytest.fixture
def full_disk_delivery(tmp_path):
    """The same parts, the spool on a real 256 KiB tmpfs (a large quota: the file system runs out first)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        yield from delivery_parts(Spool(str(mount / "spool"), quota_bytes=64 << 20, map_size=32 << 20))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_under_the_spool_is_reported_as_disk_full_and_shed(tmp_path, full_disk_delivery):
    metrics, directory, buffer, shedder, sup, sheds, store = full_disk_delivery
    monitor = start_monitor(tmp_path, buffer, shedder, metrics, sup)
    try:
        for first in range(1, 4001, 200):  # 1.2 MB of events into 256 KB of disk
            store(first, 200)
        assert not buffer.disk_ok and len(buffer.memory) > 0, "the disk refused; the memory tier took the rest"
        assert wait_for(lambda: "disk_full" in sheds), f"sheds {sheds}, disk error {buffer.disk_error}"
        assert metrics.counter("supervisor_failures_total", child="resources", strategy="shed", reason="disk_full") >= 1
        assert monitor.is_alive()
        # the monitor resumes only a spool it paused; a failed one is the buffer's to retry (deleting first)
        time.sleep(20 * 0.05)
        assert not buffer.disk_ok and not buffer.disk_held
    finally:
        monitor.stop()


def test_resource_figures_are_published(tmp_path, delivery):
    metrics, directory, buffer, shedder, sup, sheds, store = delivery
    store(1, 100)
    monitor = start_monitor(tmp_path, buffer, shedder, metrics, sup)
    try:
        assert wait_for(lambda: metrics.gauge("resource_utilization", resource="spool") is not None)
        assert metrics.gauge("resource_usage", resource="spool") == buffer.spool.bytes_used > 0
        assert metrics.gauge("resource_utilization", resource="spool") == pytest.approx(buffer.spool.bytes_used / (64 << 10))
        st = os.statvfs(tmp_path)
        disk = metrics.gauge("resource_utilization", resource="disk")
        used, free = (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_bavail * st.f_frsize
        assert disk == pytest.approx(used / (used + free), abs=0.01)
        assert metrics.gauge("resident_memory_bytes", process="delivery", kind="anon") > 0
        assert metrics.gauge("resource_budget", resource="cpu") == os.cpu_count()
    finally:
        monitor.stop()


def test_spool_refusals_are_classified():
    assert spool_refusal_reason("spool map full: mdb_put: MDB_MAP_FULL") == "map_full"
    assert spool_refusal_reason("disk full under the spool: No space left on device") == "disk_full"
    assert spool_refusal_reason("spool quota of 1048576 bytes reached") is None
    assert spool_refusal_reason(None) is None

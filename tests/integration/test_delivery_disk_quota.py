"""A disk quota too small for an outage: the oldest events go, counted exactly, and the Core's gap equals the report.

Real Core process killed with SIGKILL and restarted on the same port; real LMDB spool
at a small quota; the memory tier takes what the disk cannot, then both are full.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from probe.core.overload import CONTROL_FILE, write_control
from protocols.events.envelope import decode_canonical
from storage.spool import RECORD_OVERHEAD
from tests.integration.delivery_rig import DeliveryRig, conn_events, free_port

QUOTA_EVENTS = 7200  # a quota above the smallest LMDB map, so the map itself enforces it
MEMORY_EVENTS = 1000
OUTAGE_EVENTS = 14_000


@pytest.mark.timeout(120)
def test_quota_too_small_for_an_outage_drops_the_oldest_and_the_core_gap_equals_the_report(tmp_path):
    record_size = len(conn_events(1)[0].body) + 120  # the envelope and signature around the body
    quota = QUOTA_EVENTS * (record_size + RECORD_OVERHEAD)
    port = free_port()
    with DeliveryRig(str(tmp_path), quota=quota, memory_events=MEMORY_EVENTS, core_listen=f"127.0.0.1:{port}") as rig:
        rig.feed("capture", 0, conn_events(1000))
        assert rig.wait_delivered()
        rig.core.proc.kill()  # the Core crashes; the outage begins
        rig.core.proc.wait()
        peak_bytes = peak_file = 0
        for first in range(1000, 1000 + OUTAGE_EVENTS, 200):
            rig.feed("capture", first, conn_events(200, first))
            peak_bytes = max(peak_bytes, rig.spool.bytes_used)
            peak_file = max(peak_file, rig.spool.file_bytes())
        deadline = time.monotonic() + 30
        while rig.signer_window.outstanding or rig.buffer_window.outstanding:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        during = rig.buffer.accounts()
        held_during = rig.buffer.pending
        memory_during = len(rig.buffer.memory)
        rig.core.start()  # the Core is back: the uplink reconnects with its backoff
        deadline = time.monotonic() + 60
        while not rig.buffer.settled():
            assert time.monotonic() < deadline, "the backlog and its drop report reached the Core"
            time.sleep(0.02)
        accounts = rig.buffer.accounts()
        dropped_metric = rig.metrics.counter("events_dropped_total", reason="buffer_full")
        metrics = (
            rig.metrics.total("events_created_total"),
            rig.metrics.total("events_delivered_total"),
            rig.metrics.by_label("events_dropped_total", "reason"),
        )
        account = rig.core_account()
        stored = rig.core_events()

    created = 1000 + OUTAGE_EVENTS
    dropped = accounts.dropped.get("buffer_full", 0)
    # both tiers were full: the buffer held no more than the quota and the memory tier
    assert held_during <= QUOTA_EVENTS + MEMORY_EVENTS and memory_during <= MEMORY_EVENTS
    assert during.dropped["buffer_full"] == created - 1000 - held_during
    assert peak_bytes <= quota and peak_file <= quota, "the spool's file stayed inside its disk quota"
    # exact accounting on the probe, agreeing with the metrics and the Core
    assert accounts.balanced and accounts.pending == 0 and set(accounts.dropped) == {"buffer_full"}
    assert accounts.created == created and accounts.delivered == created - dropped
    assert dropped == dropped_metric == during.dropped["buffer_full"] > 0
    assert metrics == (accounts.created, accounts.delivered, accounts.dropped), "the metrics tell the same story"
    assert account.reported == {"buffer_full": dropped}, "the Core's explained gap is the reported drop count"
    assert account.gaps == 0 and account.stored == len(stored) == created - dropped
    # the oldest were dropped: the Core holds the first 1000 and then the newest, contiguous
    seqs = [seq for _, seq, _ in stored]
    first = seqs[0]
    assert seqs == list(range(first, first + 1000)) + list(range(first + 1000 + dropped, first + created))
    uids = [decode_canonical(rec[64:]).body["uid"] for _, _, rec in stored]
    wanted = [f"C{i:017x}" for i in list(range(1000)) + list(range(1000 + dropped, created))]
    assert uids == wanted
    print(f"dropped {dropped} of {OUTAGE_EVENTS} made during the outage; spool peak {peak_bytes} B counted, {peak_file} B on disk (quota {quota} B)")


@pytest.fixture
def small_disk(tmp_path):
    """A real 512 KiB tmpfs for the spool: the disk itself fills (ENOSPC), whatever the quota says."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_full_disk_sends_events_to_memory_and_capture_goes_on(tmp_path, small_disk):
    rig = DeliveryRig(str(tmp_path), quota=64 << 20, spool_path=str(small_disk / "spool"), spool_map_size=32 << 20, core_args=("--pause",))
    with rig:
        for first in range(0, 3000, 100):
            rig.feed("capture", first, conn_events(100, first))
        deadline = time.monotonic() + 30
        while rig.signer_window.outstanding or rig.buffer_window.outstanding:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        disk_ok = rig.buffer.disk_ok
        on_disk, in_memory = rig.spool.pending, len(rig.buffer.memory)
        write_control(os.path.join(rig.core.data_dir, CONTROL_FILE), {"paused": False})
        deadline = time.monotonic() + 30
        while rig.core_account().stored < 3000:
            assert time.monotonic() < deadline, "the Core got every event, those held only in memory too"
            time.sleep(0.05)
        # the Core has them all; the spool deletes its copies once the disk has room again
        subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
        assert rig.wait_delivered(timeout=30)
        accounts = rig.buffer.accounts()
        account = rig.core_account()
        stored = rig.core_events()
    assert not disk_ok and on_disk > 0 and in_memory > 0 and on_disk + in_memory == 3000
    assert accounts.balanced and accounts.dropped == {} and accounts.created == accounts.delivered == 3000
    assert account.stored == 3000 and account.gaps == 0 and account.duplicates == 0
    assert [decode_canonical(rec[64:]).body["uid"] for _, _, rec in stored] == [f"C{i:017x}" for i in range(3000)]

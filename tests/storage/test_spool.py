"""The LMDB spool: durable, ordered, quota-bound, with transactional accounting."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from storage.spool import SEQ_BLOCK, Spool, SpoolFull


def records(first: int, n: int, size: int = 100) -> list[tuple[int, bytes]]:
    return [(s, bytes([s % 251]) * size) for s in range(first, first + n)]


def test_append_read_acknowledge(tmp_path):
    spool = Spool(str(tmp_path), 1 << 20)
    first = spool.next_seq
    spool.append(records(first, 10), ("file:x", 10))
    assert [s for s, _ in spool.read(first - 1, 100)] == list(range(first, first + 10))
    assert spool.read(first + 4, 3) == records(first + 5, 3)
    assert spool.acknowledge(first + 3) == 4
    assert spool.pending == 6 and spool.counter("delivered") == 4 and spool.counter("created") == 10
    assert spool.source_progress("file:x") == 10 and spool.source_progress("file:y") == 0


def test_survives_reopen_and_never_reuses_a_sequence(tmp_path):
    spool = Spool(str(tmp_path), 1 << 20)
    first = spool.next_seq
    spool.append(records(first, 5))
    spool.close()
    again = Spool(str(tmp_path), 1 << 20)
    assert again.pending == 5 and again.counter("created") == 5
    assert again.next_seq > first + 4
    assert again.next_seq >= first + SEQ_BLOCK
    # the skipped numbers are reported to the Core as unassigned
    assert (first + 5, again.next_seq - 1, "unassigned") in again.drop_reports()


def test_quota_refuses_a_batch_without_writing_it(tmp_path):
    spool = Spool(str(tmp_path), 5_000)
    first = spool.next_seq
    spool.append(records(first, 20))
    with pytest.raises(SpoolFull):
        spool.append(records(first + 20, 100))
    assert spool.pending == 20 and spool.counter("created") == 20


def test_drop_oldest_skips_in_flight_and_reports_the_range(tmp_path):
    spool = Spool(str(tmp_path), 1 << 20)
    first = spool.next_seq
    spool.append(records(first, 10))
    assert spool.drop_oldest(3, above=first + 1, reason="buffer_full") == (first + 2, first + 4)
    assert [s for s, _ in spool.read(0, 100)] == [first, first + 1] + list(range(first + 5, first + 10))
    assert spool.counter("dropped:buffer_full") == 3
    assert (first + 2, first + 4, "buffer_full") in spool.drop_reports()
    spool.acknowledge(first + 9)
    assert spool.drop_reports() == []
    assert spool.counter("created") == spool.counter("delivered") + spool.counter("dropped:buffer_full") + spool.pending


def test_committed_batches_survive_sigkill(tmp_path):
    """A writer killed with SIGKILL right after a commit loses nothing it committed."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        from storage.spool import Spool
        spool = Spool({str(tmp_path)!r}, 1 << 24)
        first = spool.next_seq
        for i in range(50):
            spool.append([(first + i * 10 + j, b"x" * 200) for j in range(10)], ("file:k", (i + 1) * 10))
        print(first, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -9
    first = int(proc.stdout.split()[0])
    spool = Spool(str(tmp_path), 1 << 24)
    assert spool.pending == 500
    assert [s for s, _ in spool.read(0, 1000)] == list(range(first, first + 500))
    assert spool.source_progress("file:k") == 500


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_file_system_that_runs_out_is_reported_as_disk_full(tmp_path):
    """LMDB reports a short write on a full file system as EIO; the spool still says disk_full."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
    try:
        spool = Spool(str(mount / "spool"), 64 << 20, map_size=32 << 20)
        first = seq = spool.next_seq
        with pytest.raises(SpoolFull) as refused:
            for _ in range(200):  # 1 MB of records into 256 KB of disk
                spool.append(records(seq, 10, 500))
                seq += 10
        assert refused.value.reason == "disk_full", str(refused.value)
        assert seq > first and spool.pending == seq - first, "what was committed before stays"
        spool.env.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)

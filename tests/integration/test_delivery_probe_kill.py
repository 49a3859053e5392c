"""The probe is killed with SIGKILL at five random moments of a replay and restarted each time.

Whatever the spool had committed reaches the Core after the restart, the replay resumes
where the spool's progress says, and the Core ends up holding every event of the
capture exactly once (the copies in flight at a kill are discarded as duplicates; the
sequence numbers a kill left unused are explained by ``unassigned`` drop reports).
"""

from __future__ import annotations

import collections
import os
import random
import time

import pytest

from probe.core.embedded import EmbeddedCore
from storage.core_store import CoreStore
from storage.spool import SEQ_BLOCK
from tests.integration.delivery_rig import ProbeProcess, build_capture, event_key, free_port, reference_events


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_probe_killed_at_five_random_moments_loses_nothing_and_doubles_nothing(tmp_path, pcaps_dir):
    seed = int(os.environ.get("PROBE_KILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    pcap = tmp_path / "replay.pcap"
    build_capture([pcaps_dir / "mixed.pcap"], 120, pcap)
    expected = reference_events(pcap)
    total = sum(expected.values())
    port = free_port()
    core = EmbeddedCore(str(tmp_path / "core"), f"127.0.0.1:{port}")
    probe = ProbeProcess(tmp_path / "probe", pcap, f"ws://127.0.0.1:{port}")
    core.enroll(probe.probe_id, probe.public_key_hex)
    core.start()
    store = CoreStore(str(tmp_path / "core" / "store"))
    moments = sorted(rng.uniform(0.05, 0.9) for _ in range(5))
    kills = []
    try:
        for fraction in moments:
            probe.start()
            target = int(fraction * total)
            deadline = time.monotonic() + 60
            while store.account(probe.probe_id).stored < target and probe.proc.poll() is None:
                assert time.monotonic() < deadline, f"no progress to {target} events (seed {seed})"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.25))  # somewhere after that point: mid-commit, mid-send, mid-ack
            assert probe.proc.poll() is None, f"the replay ended before the kill at {fraction:.2f} (seed {seed})"
            stored = store.account(probe.probe_id).stored
            probe.kill()
            kills.append((fraction, stored))
        probe.start()
        summary = probe.wait(timeout=120)
    finally:
        probe.cleanup()
        core.stop()
    try:
        account = store.account(probe.probe_id)
        stored_events = list(store.events(probe.probe_id))
        records = [rec for _, _, rec in stored_events]
        last_seq = stored_events[-1][1]
    finally:
        store.close()

    assert len(kills) == 5 and all(stored < total for _, stored in kills), (kills, seed)
    assert summary["outcome"] == "complete" and summary["pending"] == 0 and summary["accounting"]["balanced"], summary
    got = collections.Counter(event_key(rec) for rec in records)
    missing = expected - got
    doubled = {k: n for k, n in got.items() if n > 1}
    assert not missing, f"{sum(missing.values())} events never reached the Core (seed {seed}, kills {kills})"
    assert not doubled, f"{len(doubled)} events stored twice (seed {seed})"
    assert got == expected
    assert account.stored == total and account.gaps == 0, (account, seed)
    assert set(account.reported) == {"unassigned"}, "every hole in the sequence is a restart's unused block"
    # the Core's resume point is the last event, or, when the last boot had nothing left to sign
    # (the killed one had signed it all), the end of the number block that boot reserved and reported unassigned
    assert last_seq <= account.acked <= last_seq + SEQ_BLOCK, (account.acked, last_seq, seed)

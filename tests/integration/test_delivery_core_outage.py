"""The Core dies in the middle of a replay and comes back: nothing lost, nothing twice, backoff as documented.

Real processes: the probe (``python -m probe run``, its dissection process) and the
reference Core, killed with SIGKILL and restarted on the same port. PROBE_QUICK=1
shortens the outage from 10 s to 4 s, which still shows five doublings of the backoff.
"""

from __future__ import annotations

import os
import random
import time
from datetime import datetime
from pathlib import Path

import pytest

from actors.uplink import UplinkSettings, backoff_delay
from probe.core.embedded import EmbeddedCore
from storage.core_store import CoreStore
from tests.integration.delivery_rig import ProbeProcess, build_capture, event_key, free_port, reference_events

OUTAGE = 4.0 if os.environ.get("PROBE_QUICK") == "1" else 10.0


def test_backoff_doubles_from_100ms_to_a_30s_cap_within_the_jitter():
    settings = UplinkSettings(url="ws://unused")
    rng = random.Random(7)
    for attempt in range(20):
        base = min(30.0, 0.1 * 2**attempt)
        for _ in range(50):
            delay = backoff_delay(attempt, settings, rng.random)
            assert base * 0.8 <= delay <= base * 1.2
    assert backoff_delay(0, settings, lambda: 0.5) == pytest.approx(0.1)
    assert backoff_delay(8, settings, lambda: 0.5) == pytest.approx(25.6)
    assert backoff_delay(9, settings, lambda: 0.5) == pytest.approx(30.0)
    assert backoff_delay(200, settings, lambda: 1.0) == pytest.approx(36.0)


def _ts(line: dict) -> float:
    return datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_core_killed_mid_replay_then_restarted(tmp_path, pcaps_dir):
    pcap = tmp_path / "replay.pcap"
    build_capture([pcaps_dir / "mixed.pcap"], 200, pcap)
    expected = reference_events(pcap)
    port = free_port()
    core = EmbeddedCore(str(tmp_path / "core"), f"127.0.0.1:{port}")
    probe = ProbeProcess(tmp_path / "probe", pcap, f"ws://127.0.0.1:{port}")
    core.enroll(probe.probe_id, probe.public_key_hex)
    core.start()
    store = None
    try:
        probe.start()
        store = CoreStore(str(tmp_path / "core" / "store"))
        deadline = time.monotonic() + 60
        while store.account(probe.probe_id).stored < 2000:
            assert time.monotonic() < deadline, "the Core got nothing within 60 s"
            time.sleep(0.02)
        core.proc.kill()  # SIGKILL: the Core crashes mid-replay
        core.proc.wait()
        killed_at = time.time()
        stored_at_kill = store.account(probe.probe_id).stored
        time.sleep(OUTAGE)
        core.start()
        summary = probe.wait(timeout=150)
    finally:
        probe.cleanup()
        core.stop()
    try:
        account = store.account(probe.probe_id)
        records = [(seq, rec) for _, seq, rec in store.events(probe.probe_id)]
    finally:
        store.close()

    # the probe: everything created was delivered, nothing dropped, the books balance
    assert summary["outcome"] == "complete", summary
    assert summary["pending"] == 0 and summary["dropped"] == {} and summary["accounting"]["balanced"]
    assert summary["events_created"] == summary["delivered"] == sum(expected.values())
    assert stored_at_kill < summary["events_created"], "the Core died before the end of the replay"
    # the Core: every event exactly once, in sequence order, no hole
    assert account.stored == len(records) == sum(expected.values())
    assert [seq for seq, _ in records] == list(range(1, len(records) + 1))
    assert (account.gaps, account.late, account.acked) == (0, 0, len(records))
    assert sum(1 for _ in records) == len({event_key(rec) for _, rec in records})
    from collections import Counter

    assert Counter(event_key(rec) for _, rec in records) == expected
    # the outage: counted, and retried at 100 ms x 2^n within the +/-20 % jitter
    failures = [f for f in probe.log_events("connection_failed") if _ts(f) >= killed_at - 0.5]
    assert summary["uplink"]["connection_failures"] >= len(failures) >= (6 if OUTAGE >= 10 else 5)
    assert [f["attempt"] for f in failures] == list(range(len(failures)))
    for f in failures:
        base = min(30.0, 0.1 * 2 ** f["attempt"])
        assert base * 0.8 - 1e-3 <= f["delay"] <= base * 1.2 + 1e-3, f
    for before, after in zip(failures, failures[1:]):
        waited = _ts(after) - _ts(before)
        assert before["delay"] - 0.01 <= waited <= before["delay"] + 0.5, (before, after, waited)
    reconnected = [c for c in probe.log_events("connected") if _ts(c) > _ts(failures[-1])]
    assert reconnected, "the probe came back to the restarted Core"
    assert _ts(reconnected[0]) - _ts(failures[-1]) <= failures[-1]["delay"] + 1.0
    assert sum(f["delay"] for f in failures) >= OUTAGE * 0.8 - 0.5

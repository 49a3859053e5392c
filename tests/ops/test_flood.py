"""A flood under a small memory budget: resident memory stays under it, drops are counted.

The memory tier is configured to hold every event of the flood (2 million events, 2 GB),
the spool only 1 MB, and the Core is stalled: only the resources monitor stands between
the flood and the budget. It caps the memory tier to the room the budget leaves and
sheds when memory passes 85 % of it. The test samples the anonymous resident memory of
the probe and its dissection process every 20 ms from outside.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from actors.resources import child_pids, process_memory
from tests.ops.flood import write_flood_pcap
from tests.ops.rig import PROBE_ID, REPO, CoreProcess, enrolled_key

BUDGET_MB = 100


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_flood_stays_under_the_memory_budget_and_drops_are_counted(tmp_path):
    queries = 60_000
    pcap = write_flood_pcap(tmp_path / "flood.pcap", queries, per_flow=100)
    core = CoreProcess(tmp_path / "core")
    url = core.start()
    data = tmp_path / "data"
    enrolled_key(data, core)
    config = tmp_path / "probe.toml"
    config.write_text(
        f'[probe]\nid = "{PROBE_ID}"\n'
        "[buffer]\ndisk_quota_mb = 1\nmemory_events = 2000000\nmemory_bytes = 2000000000\n"
        f"[resources]\nmemory_mb = {BUDGET_MB}\ncheck_interval = 0.2\n"
        "[dissect]\nudp_idle_timeout = 1.0\n[uplink]\ndrain_timeout = 120\nconnect_timeout = 1.0\nbackoff_max = 1.0\n"
    )
    core.stall()
    probe = subprocess.Popen(
        [sys.executable, "-m", "probe", "run", "--config", str(config), "--data-dir", str(data), "--pcap", str(pcap), "--core", url, "--json-summary"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    peak = 0
    worker_seen = False
    try:
        while probe.poll() is None:
            workers = child_pids(b"probe.worker", probe.pid)
            used = process_memory(probe.pid)[0] + sum(process_memory(pid)[0] for pid in workers)
            peak = max(peak, used)
            worker_seen = worker_seen or bool(workers)
            if worker_seen and not workers and core.stalled:
                core.resume()  # the flood is over: let the Core take what is left
            time.sleep(0.02)
        out = probe.stdout.read()
    finally:
        probe.kill()
        core.stop()
    summary = json.loads(out)
    assert probe.returncode == 0 and summary["outcome"] == "complete"
    assert peak < BUDGET_MB << 20, f"resident memory peaked at {peak / 2**20:.1f} MB"
    accounts = summary["accounting"]
    kinds = summary["events_by_kind"]
    assert kinds["dns"] == queries and kinds["conn"] == queries // 100  # plus the alerts' notices
    assert accounts["balanced"] and accounts["created"] == sum(kinds.values())
    # the memory tier as configured could have held the whole flood: every drop is the
    # budget's doing, shed (memory_budget) or refused by the tier the monitor shrank (buffer_full)
    assert accounts["dropped_total"] > 0
    assert set(accounts["dropped"]) <= {"memory_budget", "buffer_full"}

"""Each supervisor strategy in the real tree: real processes, real signals, a real Core.

- restart: kill -9 the dissection process mid-replay; it is restarted, the replay
  resumes where the spool says, and the Core gets every event exactly once;
- halt: the Core refuses the probe's key; transmission halts, capture and buffering go on;
- shed: the LMDB map fills up; the probe sheds, logs, counts and keeps running;
- escalation: a restart storm restarts the tree, then ``python -m probe run`` exits 1
  with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from actors.resources import child_pids
from probe.app import ProbeApp
from probe.replay import dissect_file
from protocols.dissect import DissectSettings
from storage.core_store import CoreStore
from tests.ops.flood import write_flood_pcap
from tests.ops.rig import PROBE_ID, REPO, CoreProcess, enrolled_key, probe_config, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def run_probe(args: list[str], data_dir: Path, config: str = "") -> subprocess.Popen:
    toml = data_dir.parent / f"{data_dir.name}.toml"
    toml.write_text(config)
    return subprocess.Popen(
        [sys.executable, "-m", "probe", "run", "--config", str(toml), "--data-dir", str(data_dir), "--json-summary", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_a_killed_dissection_process_is_restarted_and_nothing_is_lost_or_doubled(tmp_path):
    pcap = write_flood_pcap(tmp_path / "flood.pcap", 20_000, per_flow=100)
    expected = len(dissect_file(str(pcap), DissectSettings(udp_idle_timeout=1.0))[0])
    data = tmp_path / "data"
    probe = run_probe(
        ["--pcap", str(pcap), "--metrics-port", "0"], data,
        "[dissect]\nudp_idle_timeout = 1.0\n[capture]\nbatch_packets = 256\n[alerts]\nevaluate_interval = 0.2\n",
    )
    try:
        port = wait_for(lambda: json.loads((data / "health.json").read_text()).get("metrics_port") if (data / "health.json").exists() else None)
        wait_for(lambda: metric(port, "probe_events_signed_total") > 0, poll=0.01)
        (worker,) = wait_for(lambda: child_pids(b"probe.worker", probe.pid))
        os.kill(worker, signal.SIGKILL)
        out, err = probe.communicate(timeout=150)
    finally:
        probe.kill()
    summary = json.loads(out)
    assert probe.returncode == 0, err[-2000:]
    assert summary["restarts"] == {"worker-0:restart": 1}
    # the new process was told where the signer had got to (the sequencer's ordinal for
    # this source): it sends only the rest, so every event is created exactly once
    assert summary["outcome"] == "complete" and summary["events_created"] == expected
    store = CoreStore(str(data / "core" / "store"))
    try:
        seqs = [seq for probe_id, seq, _ in store.events(summary["probe_id"])]
    finally:
        store.close()
    assert len(seqs) == expected and seqs == sorted(set(seqs))


def test_an_identity_failure_halts_transmission_and_capture_goes_on(tmp_path):
    pcap = write_flood_pcap(tmp_path / "small.pcap", 2000, per_flow=50)
    core = CoreProcess(tmp_path / "core")
    url = core.start()
    data = tmp_path / "data"
    enrolled_key(data, core)
    core.enroll(PROBE_ID, "11" * 32)  # the Core now pins another key for this probe id
    try:
        probe = run_probe(
            ["--pcap", str(pcap), "--core", url], data,
            f'[probe]\nid = "{PROBE_ID}"\n[dissect]\nudp_idle_timeout = 1.0\n[alerts]\nevaluate_interval = 0.1\n',
        )
        out, err = probe.communicate(timeout=120)
        summary = json.loads(out)
        assert summary["outcome"] == "halted" and probe.returncode == 3
        assert summary["restarts"] == {"uplink:halt": 1}
        assert summary["uplink"]["halted"] and "auth_failed" in summary["uplink"]["halt_reason"]
        kinds = summary["events_by_kind"]
        assert kinds["dns"] + kinds["conn"] == 2040  # dissected, signed and buffered, not lost
        assert summary["pending"] == summary["events_created"] == sum(kinds.values())
        assert core.events() == []  # not one event frame reached the Core
        assert [(a["key"], a["state"], a["severity"]) for a in summary["alerts"]][:1] == [("identity", "raised", "critical")]
    finally:
        core.stop()


def test_a_full_lmdb_map_is_shed_and_the_probe_keeps_running(tmp_path, caplog):
    pcap = write_flood_pcap(tmp_path / "flood.pcap", 20_000, per_flow=100)
    core = CoreProcess(tmp_path / "core")
    url = core.start()
    data = tmp_path / "data"
    enrolled_key(data, core)
    config = probe_config(data, pcap, url, buffer__map_size_mb=1, dissect__udp_idle_timeout=1.0)
    core.stall()  # nothing is acknowledged: the 1 MB map fills up
    app = ProbeApp(config)
    caplog.set_level(logging.WARNING)
    try:
        app.start()
        wait_for(lambda: app.tracker.all_done() and app.signer_window.outstanding == 0, 120)
        wait_for(lambda: app.metrics.counter("supervisor_failures_total", child="resources", strategy="shed", reason="map_full"))
        assert "map full" in app.buffer.disk_error
        wait_for(lambda: app.buffer.accounts().dropped.get("map_full", 0) > 0)
        assert any(getattr(r, "event", None) == "shed" and r.reason == "map_full" for r in caplog.records)
        assert app.supervisor.ask("stats")["state"] == "running" and app.fatal_message is None
        core.resume()
        wait_for(lambda: app.buffer.pending == 0, 120)
        accounts = app.buffer.accounts()
        kinds = app.metrics.by_label("events_created_total", "kind")
        assert kinds["dns"] + kinds["conn"] == 20_200
        assert accounts.balanced and accounts.created == sum(kinds.values())  # the rest: notices
        stored = core.events()
        assert len(stored) == accounts.delivered == accounts.created - accounts.dropped_total
    finally:
        app.stop()
        core.stop()


def test_a_restart_storm_restarts_the_tree_then_the_probe_exits_non_zero(tmp_path):
    pcap = write_flood_pcap(tmp_path / "flood.pcap", 100_000, per_flow=100)
    data = tmp_path / "data"
    probe = run_probe(
        ["--pcap", str(pcap)], data,
        "[dissect]\nudp_idle_timeout = 1.0\n[supervisor]\nmax_restarts = 1\nmax_tree_restarts = 1\n"
        "restart_window = 120\nrestart_backoff_initial = 0.05\n",
    )
    killed: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while probe.poll() is None and time.monotonic() < deadline:
            for pid in set(child_pids(b"probe.worker", probe.pid)) - killed:
                time.sleep(0.2)  # let it start reading, as a real crash would
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.02)
        out, err = probe.communicate(timeout=60)
    finally:
        probe.kill()
    assert probe.returncode == 1, err[-2000:]
    assert len(killed) == 4  # restart, tree restart, restart, give up
    message = "child worker-0 failed more than 1 times in 120 s and the tree was already restarted 1 times in that window: giving up"
    assert f"probe: fatal: {message}; last failure: worker_exited: dissection process 0 exited (code -9" in err
    summary = json.loads(out)
    assert summary["outcome"] == "fatal" and summary["tree_restarts"] == 1
    assert summary["accounting"]["balanced"]

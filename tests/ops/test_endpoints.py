"""A running ``python -m probe run``: its /metrics endpoint (promtool-clean) and ``probe health``."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.ops.flood import write_flood_pcap
from tests.ops.rig import PROBE_ID, REPO, CoreProcess, enrolled_key, wait_for

#: the series the design names, each present from the start
DESIGN_METRICS = (
    "probe_uplink_connection_failures_total",
    "probe_uplink_backpressure_seconds_total",
    'probe_buffer_utilization{tier="disk"}',
    'probe_buffer_utilization{tier="memory"}',
    "probe_events_created_total{",
    "probe_events_delivered_total",
    'probe_events_dropped_total{reason="buffer_full"}',
    "probe_signature_failures_total",
    "probe_packets_captured_total",
    "probe_kernel_drops_total",
    'probe_supervisor_restarts_total{child="worker-0",strategy="restart"}',
    'probe_resource_utilization{resource="memory"}',
    'probe_resource_utilization{resource="spool"}',
    'probe_resource_utilization{resource="disk"}',
    'probe_resource_utilization{resource="cpu"}',
    'probe_resident_memory_bytes{kind="anon",process="delivery"}',
)


def health(data_dir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probe", "health", "--data-dir", str(data_dir)], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_metrics_endpoint_and_health_of_a_running_probe(tmp_path):
    pcap = write_flood_pcap(tmp_path / "flood.pcap", 5_000, per_flow=100)
    core = CoreProcess(tmp_path / "core")
    url = core.start()
    data = tmp_path / "data"
    enrolled_key(data, core)
    config = tmp_path / "probe.toml"
    config.write_text(f'[probe]\nid = "{PROBE_ID}"\n[dissect]\nudp_idle_timeout = 1.0\n[alerts]\nevaluate_interval = 0.2\n[buffer]\ndisk_quota_mb = 1\n')
    core.stall()  # the backlog cannot drain: the probe keeps running until we stop it
    probe = subprocess.Popen(
        [sys.executable, "-m", "probe", "run", "--config", str(config), "--data-dir", str(data), "--pcap", str(pcap),
         "--core", url, "--metrics-port", "0", "--json-summary"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        port = wait_for(lambda: (data / "health.json").exists() and json.loads((data / "health.json").read_text())["metrics_port"])
        endpoint = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: 'probe_buffer_utilization{tier="disk"}' in urllib.request.urlopen(endpoint, timeout=5).read().decode())
        response = urllib.request.urlopen(endpoint, timeout=5)
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
        for name in DESIGN_METRICS:
            assert name in text, name
        if shutil.which("promtool"):
            check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
            assert check.returncode == 0, check.stdout + check.stderr
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert missing.value.code == 404

        verdict = health(data)
        assert verdict.returncode == 0 and "running" in verdict.stdout, verdict.stdout
        probe.send_signal(signal.SIGSTOP)  # a wedged probe stops rewriting its health file
        try:
            time.sleep(5.5)
            verdict = health(data)
            assert verdict.returncode == 1 and verdict.stdout.startswith("not responding"), verdict.stdout
        finally:
            probe.send_signal(signal.SIGCONT)
        wait_for(lambda: health(data).returncode == 0, 30)
        probe.send_signal(signal.SIGTERM)
        out, _ = probe.communicate(timeout=60)
    finally:
        probe.kill()
        core.stop()
    assert json.loads(out)["outcome"] == "stopped"
    verdict = health(data)
    assert verdict.returncode == 1 and verdict.stdout.startswith("not running: probe ops-probe"), verdict.stdout

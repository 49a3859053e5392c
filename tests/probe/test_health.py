"""``probe health``: the verdict on a health file, and the command's exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from probe.health import HealthWriter, check_health, health_path

REPO = Path(__file__).resolve().parents[2]


def write(data_dir: Path, **doc) -> None:
    HealthWriter(health_path(str(data_dir)), 1.0).write({"probe_id": "p1", "uplink": "connected", "alerts": [], **doc})


def test_a_fresh_ok_file_of_a_live_process_is_healthy(tmp_path):
    write(tmp_path, status="ok")
    healthy, reason, doc = check_health(str(tmp_path))
    assert healthy and reason.startswith("ok: probe p1 (pid ") and "uplink connected, 0 alerts" in reason
    assert doc["pid"] == os.getpid()


def test_raised_alerts_are_degraded_but_running(tmp_path):
    write(tmp_path, status="degraded", alerts=["drops", "resource:memory"])
    healthy, reason, _ = check_health(str(tmp_path))
    assert healthy and reason.startswith("degraded:") and reason.endswith("2 alerts: drops, resource:memory")


def test_unhealthy_cases(tmp_path):
    assert check_health(str(tmp_path))[:2] == (False, f"not running: no {tmp_path}/health.json")
    write(tmp_path, status="ok")
    assert not check_health(str(tmp_path), now=time.time() + 6)[0]
    assert "not responding" in check_health(str(tmp_path), now=time.time() + 6)[1]
    write(tmp_path, status="halted", halt_reason="uplink: the Core refused this probe: auth_failed")
    assert check_health(str(tmp_path))[:2] == (False, f"transmission halted: probe p1 (pid {os.getpid()}): uplink: the Core refused this probe: auth_failed")
    write(tmp_path, status="failed", fatal="child worker-0 failed more than 5 times")
    assert "failed: " in check_health(str(tmp_path))[1]
    write(tmp_path, status="stopped")
    assert check_health(str(tmp_path))[1].startswith("not running: probe p1")
    (tmp_path / "health.json").write_text("{not json")
    assert check_health(str(tmp_path))[1].startswith("unreadable health file")


def test_a_dead_process_is_not_running(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    write(tmp_path, status="ok")
    doc = json.loads((tmp_path / "health.json").read_text())
    doc["pid"] = child.pid
    (tmp_path / "health.json").write_text(json.dumps(doc))
    healthy, reason, _ = check_health(str(tmp_path))
    assert not healthy and reason == f"not running: probe p1 (pid {child.pid}) is gone without stopping cleanly"


def health_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probe", "health", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_the_command_exits_zero_only_when_healthy(tmp_path):
    result = health_cli("--data-dir", str(tmp_path))
    assert result.returncode == 1 and result.stdout.startswith("not running")
    write(tmp_path, status="degraded", alerts=["drops"])
    assert health_cli("--data-dir", str(tmp_path)).returncode == 0
    strict = health_cli("--data-dir", str(tmp_path), "--strict", "--json")
    verdict = json.loads(strict.stdout)
    assert strict.returncode == 1 and verdict["healthy"] is False and verdict["health"]["alerts"] == ["drops"]
    config = tmp_path / "probe.toml"
    config.write_text(f'[probe]\ndata_dir = "{tmp_path}"\n')
    assert health_cli("--config", str(config)).returncode == 0


def test_systemd_is_told_ready_and_alive(tmp_path, monkeypatch):
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    try:
        writer = HealthWriter(health_path(str(tmp_path)), 1.0)
        writer.write({"status": "ok"})
        writer.write({"status": "degraded"})
        writer.write({"status": "stopped"})
        assert [sock.recv(100) for _ in range(4)] == [b"READY=1", b"WATCHDOG=1", b"WATCHDOG=1", b"STOPPING=1"]
    finally:
        sock.close()

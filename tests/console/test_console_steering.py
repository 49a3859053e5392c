"""Steering a real probe whose Core is unreachable: shed drops from the memory tier, flush
reconnects now, a configured group opens the console to its members, shutdown drains and stops.

With a 1 MB spool and no Core, events pile up: the spool fills and the rest go to the memory
tier, which is what ``shed`` drops from.
"""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from probe.console_client import ConsoleClient
from tests.console.running_probe import REPO, RunningProbe, wait_for
from tests.console.users import NOBODY, NOGROUP, as_user

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

NO_CORE = """
[uplink]
core_url = "ws://127.0.0.1:1"
backoff_initial = 5.0
backoff_max = 30.0
backoff_jitter = 0.1
[buffer]
disk_quota_mb = 1
[console]
group = "nogroup"
"""


@pytest.fixture(scope="module")
def probe(open_dir: Path, long_capture: Path) -> Iterator[RunningProbe]:
    running = RunningProbe(open_dir, long_capture, NO_CORE)
    try:
        with running.wait_ready() as client:
            client.call("pause")
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(probe: RunningProbe) -> Iterator[ConsoleClient]:
    with probe.client() as c:
        yield c


def test_a_configured_group_opens_the_console_to_its_members(probe: RunningProbe) -> None:
    st = os.stat(probe.socket)
    assert stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == grp.getgrnam("nogroup").gr_gid
    outcome = as_user(NOBODY, NOGROUP, lambda: str(ConsoleClient(probe.socket, timeout=5).call("status")["state"]))
    assert outcome == "paused"


def test_shed_drops_the_older_half_of_the_memory_tier(client: ConsoleClient) -> None:
    client.call("resume")
    try:
        wait_for(lambda: client.call("status")["buffer"]["memory"]["events"] > 1000, timeout=60)
    finally:
        client.call("pause")
    time.sleep(0.5)  # let the batches in flight reach the buffer
    status = client.call("status")
    assert status["buffer"]["disk"]["utilization"] > 0.8  # the spool is at its 1 MB quota (the next batch does not fit)
    wait_for(lambda: "buffer_utilization" in [a["name"] for a in client.call("alerts")["alerts"]])
    memory = status["buffer"]["memory"]["events"]

    shed = client.call("shed")
    assert shed["memory_before"] == memory and shed["dropped"] == (memory + 1) // 2
    assert shed["memory_after"] == memory - shed["dropped"]
    events = client.call("status")["events"]
    assert events["dropped"] == {"operator": shed["dropped"]} and events["balanced"]
    assert events["pending"] == status["events"]["pending"] - shed["dropped"]

    again = client.call("shed")
    assert again["memory_before"] == shed["memory_after"] and again["dropped"] == (shed["memory_after"] + 1) // 2
    assert client.call("status")["events"]["dropped"] == {"operator": shed["dropped"] + again["dropped"]}


def test_flush_reconnects_now_instead_of_waiting_out_the_backoff(client: ConsoleClient) -> None:
    def failures() -> int:
        return client.call("status")["uplink"]["connection_failures"]

    seen = failures()
    wait_for(lambda: failures() > seen, timeout=40)  # a failure just happened: the next try is >= 4.5 s away
    after = failures()
    flushed = client.call("flush")
    assert flushed["uplink"] in ("disconnected", "connecting")
    wait_for(lambda: failures() == after + 1, timeout=2.5)


def test_shutdown_drains_what_it_can_then_stops(probe: RunningProbe, client: ConsoleClient) -> None:
    pending = client.call("status")["events"]["pending"]
    answer = client.call("shutdown", drain_timeout=1)
    assert answer == {"stopping": True, "drain_timeout": 1.0, "pending": pending}
    assert client.call("status")["state"] == "stopping"
    assert probe.wait_exit(30) == 3  # events are still buffered for a later delivery
    summary = probe.summary()
    assert summary["outcome"] == "stopped" and summary["pending"] > 0 and summary["accounting"]["balanced"]
    assert not os.path.exists(probe.socket)


def test_shutdown_with_a_reachable_core_delivers_everything_first(tmp_path: Path, long_capture: Path) -> None:
    probe = RunningProbe(tmp_path, long_capture)
    try:
        with probe.wait_ready() as client:
            client.call("resume")
            wait_for(lambda: client.call("status")["events"]["created"] > 1000)
            paused = client.call("pause")
            answer = client.call("shutdown")
            assert answer["stopping"] and answer["drain_timeout"] == 60.0
            started = time.monotonic()
            assert probe.wait_exit(30) == 0
        assert time.monotonic() - started < 15
        summary = probe.summary()
        assert summary["outcome"] == "stopped" and summary["pending"] == 0 and summary["accounting"]["balanced"]
        assert summary["delivered"] == summary["events_created"] > 1000
        assert paused["packets"] <= summary["packets"] < 200_000  # the capture ended where it was paused, not at its end
    finally:
        probe.stop()


def test_a_console_that_cannot_be_created_does_not_stop_the_probe(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a socket")
    config = tmp_path / "probe.toml"
    config.write_text(f'[console]\nsocket = "{taken}"\n')
    run = subprocess.run(
        [sys.executable, "-m", "probe", "run", "--sample", "--data-dir", str(tmp_path / "data"), "--json-summary", "--config", str(config)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["outcome"] == "complete"
    assert '"event": "unavailable"' in run.stderr and "exists and is not a socket" in run.stderr
    assert taken.read_text() == "not a socket"

"""``python -m probe run --interface`` and ``python -m probe interfaces`` as a user runs them.

Real processes and real signals: the probe is started as a command, traffic is sent into
its interface from a namespace, and it is stopped with SIGINT/SIGTERM (or a dissection
process is killed with SIGKILL under it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from actors.resources import child_pids
from tests.integration.netlab import NetLab

pytestmark = [pytest.mark.netns]

if os.geteuid() != 0:  # pragma: no cover
    pytest.skip("live capture tests need root", allow_module_level=True)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RING = ["--config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "small_ring.toml")]


def probe(*argv: str) -> subprocess.CompletedProcess:
    """Run a probe command to its end (on a timeout its whole process group is killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", *argv], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def kill_group(proc: subprocess.Popen) -> None:
    """Whatever is left of a probe started here (its embedded Core, its workers) goes too."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def start_probe(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "probe", "run", "--json-summary", "--no-progress", *RING, *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group: signals from the test reach the probe only; cleanup reaches all
    )


def wait_capturing(proc: subprocess.Popen, count: int = 1, timeout: float = 20.0) -> None:
    """Read the probe's log until ``count`` rings are open."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    opened = 0
    while opened < count:
        assert time.monotonic() < deadline, "the probe did not open its capture"
        line = proc.stderr.readline()
        assert line, f"the probe exited early (code {proc.poll()})"
        if '"event": "capture_open"' in line:
            opened += 1


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, dict, str]:
    out, err = proc.communicate(timeout=timeout)
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return proc.returncode, summary, err


def test_a_bad_filter_is_one_clear_line_and_nothing_starts(tmp_path):
    data = tmp_path / "data"
    done = probe("run", "--interface", "lo", "--filter", "tcp prt 80", "--data-dir", str(data))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "invalid capture filter 'tcp prt 80'" in lines[0] and "syntax error" in lines[0]
    assert not data.exists()  # refused before the spool, the identity or the Core were made


def test_an_unknown_interface_or_a_filter_on_a_file_is_refused(tmp_path):
    done = probe("run", "--interface", "nosuchif0", "--data-dir", str(tmp_path / "a"))
    assert done.returncode == 2 and "no interface named 'nosuchif0'" in done.stderr
    done = probe("run", "--sample", "--filter", "udp", "--data-dir", str(tmp_path / "b"))
    assert done.returncode == 2 and "--filter applies to live capture" in done.stderr


def test_interfaces_lists_the_lab_interface():
    with NetLab() as lab:
        listed = json.loads(probe("interfaces", "--json").stdout)
        table = probe("interfaces").stdout
    mine = [i for i in listed if i["name"] == lab.capture]
    assert len(mine) == 1 and mine[0]["admin_up"] and mine[0]["mtu"] == 9000 and mine[0]["hw_type"] == 1
    assert lab.capture in table and "MTU" in table.splitlines()[0]


@pytest.mark.slow
def test_sigint_flushes_open_flows_delivers_and_exits_0(tmp_path):
    with NetLab() as lab:
        proc = start_probe("--interface", lab.capture, "--data-dir", str(tmp_path))
        try:
            wait_capturing(proc)
            sent = lab.send_udp(8, 25)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)  # the flows are still open: only a flush logs them
            code, summary, err = finish(proc)
        finally:
            kill_group(proc)
    assert code == 0, err[-2000:]
    assert summary["outcome"] == "stopped"
    assert summary["packets"] == sent == 200 and summary["flows"] == 8
    assert summary["events_by_kind"] == {"conn": 8}
    assert summary["delivered"] == 8 and summary["pending"] == 0 and summary["accounting"]["balanced"]
    assert summary["live"]["kernel_drops"] == 0


@pytest.mark.slow
def test_a_second_signal_stops_at_once_and_the_spool_stays_good(tmp_path):
    with NetLab() as lab:
        # no Core listens there: after the first signal the probe waits to deliver
        proc = start_probe("--interface", lab.capture, "--data-dir", str(tmp_path), "--core", "ws://127.0.0.1:9")
        try:
            wait_capturing(proc)
            sent = lab.send_udp(4, 10)
            proc.send_signal(signal.SIGTERM)
            time.sleep(1.5)  # flows flushed into the spool; now waiting for the Core
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code, summary, err = finish(proc)
            took = time.monotonic() - started
        finally:
            kill_group(proc)
    assert summary["outcome"] == "interrupted" and code == 3, err[-2000:]
    assert took < 10
    assert summary["packets"] == sent and summary["events_created"] == 4 and summary["pending"] == 4
    assert summary["accounting"]["balanced"]
    # the spool opens again and the next run delivers what it kept, with its own events
    again = probe("run", "--sample", "--json-summary", "--no-progress", "--data-dir", str(tmp_path))
    assert again.returncode == 0, again.stderr[-2000:]
    later = json.loads(again.stdout.strip().splitlines()[-1])
    assert later["outcome"] == "complete" and later["pending"] == 0 and later["accounting"]["balanced"]
    assert later["accounting"]["delivered"] == later["events_created"] + 4


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_the_others_go_on(tmp_path):
    with NetLab() as lab:
        proc = start_probe("--interface", lab.capture, "--workers", "2", "--data-dir", str(tmp_path))
        try:
            wait_capturing(proc, 2)
            before = child_pids(b"probe.worker", proc.pid)
            assert len(before) == 2
            os.kill(before[0], signal.SIGKILL)
            wait_capturing(proc, 1)  # its replacement opened a ring
            after = child_pids(b"probe.worker", proc.pid)
            assert len(after) == 2 and before[0] not in after and before[1] in after
            sent = lab.send_udp(10, 5)
            time.sleep(1.0)
            proc.send_signal(signal.SIGINT)
            code, summary, err = finish(proc)
        finally:
            kill_group(proc)
    assert code == 0, err[-2000:]
    assert summary["live"]["worker_restarts"] == 1
    assert summary["packets"] == sent and summary["flows"] == 10 and summary["events_by_kind"] == {"conn": 10}


LOOPBACK_SENDER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    s.sendto(b"ping %d" % i, ("127.0.0.1", 9999))
"""


@pytest.mark.slow
def test_inside_a_namespace_the_default_route_and_loopback(tmp_path):
    """Run the probe itself in the namespace: its default route's interface, and lo captured once per packet."""
    with NetLab() as lab:
        lab.ns_exec(["ip", "link", "set", "lo", "up"])
        lab.ns_exec(["ip", "route", "add", "default", "via", "10.77.0.1"])
        listed = json.loads(lab.ns_exec([sys.executable, "-m", "probe", "interfaces", "--json"], cwd=REPO).stdout)
        assert [i["name"] for i in listed if i["default_route"]] == [lab.inner]
        chosen = lab.ns_exec(
            [sys.executable, "-c", "from probe.config import load_config; from probe.interfaces import plan_live_capture; "
             "print(plan_live_capture(load_config()).interface)"],
            cwd=REPO,
        )
        assert chosen.stdout.decode().strip() == lab.inner
        # the Core's WebSocket runs over lo too: the filter keeps the probe from watching itself
        proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.namespace, sys.executable, "-m", "probe", "run", "--json-summary", "--no-progress", *RING,
             "--interface", "lo", "--filter", "udp port 9999", "--data-dir", str(tmp_path)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        try:
            wait_capturing(proc)
            lab.ns_exec([sys.executable, "-c", LOOPBACK_SENDER, "30"])
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            code, summary, err = finish(proc)
        finally:
            kill_group(proc)
    assert code == 0, err[-2000:]
    assert summary["packets"] == 30 and summary["flows"] == 1  # each datagram once, not out and in
    assert summary["live"]["kernel_packets"] == 60  # the kernel handed both copies to the socket

"""The whole pipeline, as a user runs it: capture file -> dissection process -> signer -> spool -> Core."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from actors.resources import child_pids
from tests.conftest import corpus_captures, shared_pcaps
from tests.integration.probe_runs import REPO, core_accounts, core_events, run_probe


def fold(out: dict, proto: str, a_ip: str, a_port: int, b_ip: str, b_port: int, a_pkts: int, b_pkts: int) -> None:
    """Add one flow to tshark's conversations: TCP/UDP per 5-tuple with its originator;
    ICMP per address pair (Zeek splits ICMP by type and code, tshark does not), counted
    from the lower address to the higher and back."""
    if proto in ("icmp", "icmpv6"):
        if b_ip < a_ip:
            a_ip, b_ip, a_pkts, b_pkts = b_ip, a_ip, b_pkts, a_pkts
        key: tuple = ("icmp", a_ip, b_ip)
    else:
        key = (proto, a_ip, a_port, b_ip, b_port)
    counts = out.setdefault(key, [0, 0])
    counts[0] += a_pkts
    counts[1] += b_pkts


def conn_packets_by_conversation(conns: list[dict]) -> dict[tuple, list[int]]:
    """Our conn events folded into tshark's conversations: [packets a->b, packets b->a]."""
    out: dict[tuple, list[int]] = {}
    for c in conns:
        fold(out, c["proto"], c["id.orig_h"], c["id.orig_p"], c["id.resp_h"], c["id.resp_p"], c["orig_pkts"], c["resp_pkts"])
    return out


def truth_packets_by_conversation(truth: dict) -> dict[tuple, list[int]]:
    out: dict[tuple, list[int]] = {}
    for f in truth["flows"]:
        fold(out, f["proto"], f["a_ip"], f["a_port"], f["b_ip"], f["b_port"], f["a_to_b"]["packets"], f["b_to_a"]["packets"])
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pcap", shared_pcaps(), ids=lambda p: p.name)
def test_conn_events_at_the_core_match_tshark(pcap, pcaps_dir, tmp_path):
    result = run_probe("--pcap", str(pcap), "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    truth = json.loads(pcap.with_suffix(".truth.json").read_text())
    conns = core_events(tmp_path / "core", "conn")
    ours = conn_packets_by_conversation(conns)
    theirs = truth_packets_by_conversation(truth)
    assert set(ours) == set(theirs), f"endpoint pairs differ: extra {set(ours) - set(theirs)}, missing {set(theirs) - set(ours)}"
    for key, counts in theirs.items():
        assert ours[key] == counts, f"{key}: packets each way {ours[key]} != tshark's {counts}"
    summary = result.summary
    assert summary["packets"] == truth["summary"]["packets"]
    assert summary["accounting"]["balanced"] and summary["pending"] == 0
    assert summary["delivered"] == summary["events_created"] == len(core_events(tmp_path / "core"))


@pytest.mark.timeout(120)
def test_the_readme_sample_run_counts_every_conversation(pcaps_dir, tmp_path):
    """`run --sample` replays the bundled copy of mixed.pcap: its conversations are tshark's."""
    truth = json.loads((pcaps_dir / "mixed.truth.json").read_text())
    result = run_probe("--sample", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = result.summary
    assert summary["conversations"] == len(truth["flows"])
    assert summary["packets"] == truth["summary"]["packets"]
    assert summary["delivered"] == summary["events_created"] > summary["flows"]
    assert summary["accounting"]["balanced"]


@pytest.mark.timeout(120)
def test_running_twice_stores_nothing_twice(pcaps_dir, tmp_path):
    pcap = str(pcaps_dir / "dns.pcap")
    first = run_probe("--pcap", pcap, "--data-dir", str(tmp_path))
    second = run_probe("--pcap", pcap, "--data-dir", str(tmp_path))
    assert first.returncode == second.returncode == 0, second.stderr
    stored = core_events(tmp_path / "core")
    assert len(stored) == first.summary["events_created"] > 0
    assert second.summary["events_created"] == 0
    assert second.summary["events_already_stored"] == first.summary["events_created"]
    (account,) = core_accounts(tmp_path / "core")
    assert account.duplicates == 0 and account.gaps == 0 and account.stored == len(stored)


def replay_problems(capture, data_dir) -> list[str]:
    """What is wrong with replaying one corpus capture (nothing, for a good run)."""
    expected = json.loads(capture.with_name(capture.stem + ".expected.json").read_text())["capture"]
    result = run_probe("--pcap", str(capture), "--data-dir", str(data_dir), "--log-level", "warning")
    if result.returncode != 0 or "Traceback" in result.stderr + result.stdout:
        return [f"{capture.name}: exit {result.returncode}: {result.stderr[-400:]}"]
    problems = []
    summary = result.summary
    if summary["packets"] != expected["packets"]:
        problems.append(f"{capture.name}: {summary['packets']} packets, the file holds {expected['packets']}")
    if expected.get("file_truncated") and not summary["source_errors"]:
        problems.append(f"{capture.name}: truncated file without a source error in the summary")
    if not summary["accounting"]["balanced"] or summary["pending"]:
        problems.append(f"{capture.name}: accounting {summary['accounting']}")
    return problems


@pytest.mark.timeout(300)
@pytest.mark.slow
def test_every_corpus_capture_replays_without_a_crash(corpus_dir, tmp_path):
    """Malformed and truncated captures included: an exit code, a summary and counters, no traceback.

    Each capture is its own ``probe run`` (a process with its own Core); a few run side by
    side, as most of a run is starting processes rather than dissecting.
    """
    captures = corpus_captures()
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) + 1) as pool:
        found = pool.map(lambda c: replay_problems(c, tmp_path / c.stem), captures)
        problems = [p for ps in found for p in ps]
    assert not problems, "\n".join(problems)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(60)
def test_a_probe_killed_with_sigkill_leaves_no_embedded_core_or_worker_behind(tmp_path):
    """SIGKILL gives the probe no chance to stop its children: they notice and stop on their own."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "probe", "run", "--sample", "--pace", "0.05", "--no-progress", "--data-dir", str(tmp_path)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(children := child_pids(b"", proc.pid)) < 2:  # the embedded Core and the dissection process
            assert proc.poll() is None and time.monotonic() < deadline, "the probe did not start its children"
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 15
        while alive := [pid for pid in children if _alive(pid)]:
            assert time.monotonic() < deadline, f"children {alive} outlived the killed probe"
            time.sleep(0.1)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

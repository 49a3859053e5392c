"""`python -m probe fidelity`: the real pipeline's events agree with tshark on every truth field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from probe.fidelity.conn import truth_conversations
from probe.fidelity.kerberos import truth_exchanges
from tests.conftest import REPO, shared_pcaps

pytestmark = [pytest.mark.shared, pytest.mark.slow]

#: every kind the truth files speak of, and at least this many records of each in ../shared/pcaps
TRUTH_KINDS = {
    "conn": 60, "dns": 20, "http": 10, "ssl": 5, "kerberos": 5, "smb_cmd": 200, "smb_mapping": 5,
    "smb_files": 5, "ntlm": 3, "dce_rpc_bind": 5, "dce_rpc": 10,
}


def fidelity(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probe", "fidelity", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=280)


@pytest.mark.timeout(300)
def test_every_truth_kind_agrees_completely(pcaps_dir: Path) -> None:
    proc = fidelity(str(pcaps_dir), "--json", "--jobs", "2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    outcome = json.loads(proc.stdout)
    assert outcome["failures"] == []
    assert [c["capture"] for c in outcome["captures"]] == [p.name for p in shared_pcaps()]
    assert all(c["error"] is None and c["events"] > 0 for c in outcome["captures"])
    totals = {row["kind"]: row for row in outcome["totals"] if row["source"] == "truth"}
    assert set(totals) == set(TRUTH_KINDS)
    for kind, least in TRUTH_KINDS.items():
        row = totals[kind]
        assert row["expected"] >= least, row
        assert row["matched"] == row["expected"], row["misses"]
    # expected counts come from the truth files themselves, not from what the probe found
    truths = [json.loads(p.with_suffix(".truth.json").read_text()) for p in shared_pcaps()]
    assert totals["conn"]["expected"] == sum(len(truth_conversations(t)) for t in truths)
    assert totals["dns"]["expected"] == sum(len(t.get("dns", [])) for t in truths)
    assert totals["kerberos"]["expected"] == sum(len(truth_exchanges(t.get("kerberos", []))) for t in truths)
    assert totals["smb_cmd"]["expected"] == sum(len(t.get("smb", [])) for t in truths)


@pytest.mark.timeout(120)
def test_a_truth_difference_fails_the_run_and_is_named(pcaps_dir: Path, tmp_path: Path) -> None:
    """The tool reads the truth it is given: a changed answer is a miss and a non-zero exit."""
    (tmp_path / "dns.pcap").symlink_to(pcaps_dir / "dns.pcap")
    truth = json.loads((pcaps_dir / "dns.truth.json").read_text())
    answered = next(r for r in truth["dns"] if r["rcode"] == "NOERROR" and r["answers"])
    answered["answers"][0]["ttl"] += 1
    (tmp_path / "dns.truth.json").write_text(json.dumps(truth))
    proc = fidelity(str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"id={answered['id']} {answered['qname']}" in proc.stdout
    assert "answers[0].ttl: truth=" in proc.stdout
    assert "FAIL: truth dns:" in proc.stdout


def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = fidelity(str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no capture with a NAME.truth.json")

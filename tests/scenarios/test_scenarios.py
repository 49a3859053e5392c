"""Every failure scenario, run for real in quick mode: each expectation must hold, nothing may be left behind.

A scenario starts a real Core and a real probe, creates namespaces, veth pairs, mounts,
processes and files, injects its fault and checks the documented behaviour
(scenarios/NAME.py, docs/failure-modes.md). This test runs each one as
``python -m probe scenario NAME --quick`` does, then checks that it passed and that
its namespaces, links, mounts, processes and work directory are gone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from scenarios.framework import SCENARIOS, run_scenario
from scenarios.netlab import namespaces_with_prefix

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="scenarios need root (namespaces, veth pairs, mounts)")]


def leftovers() -> dict[str, list[str]]:
    """Namespaces, links, mounts, processes and work directories a scenario could leave behind."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    with open("/proc/mounts") as fh:
        mounts = [line.split()[1] for line in fh if "probe-scenario-" in line]
    procs = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if b"probe-scenario-" in fh.read():
                        procs.append(pid)
            except OSError:
                continue
    work = [d for d in os.listdir("/tmp") if d.startswith("probe-scenario-")]
    return {
        "namespaces": namespaces_with_prefix(),
        "links": [line.split(":")[1].strip() for line in links.splitlines() if ": psc" in line],
        "mounts": mounts,
        "processes": procs,
        "work": work,
    }


@pytest.mark.slow
@pytest.mark.netns
@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_passes_in_quick_mode_and_leaves_nothing_behind(name, tmp_path, capsys):
    before = leftovers()
    report = run_scenario(name, quick=True, out_dir=tmp_path)
    printed = capsys.readouterr().out
    failed = [f"{e['name']}: {e['detail']}" for e in report["expectations"] if not e["passed"]]
    assert report["passed"], f"{name}: error {report['error']}; failed: {failed}\n{printed[-3000:]}"
    assert len(report["expectations"]) >= 8
    # the report and the chart are written, and the chart is a well-formed SVG with the timeline
    saved = json.loads((tmp_path / f"{name}.json").read_text())
    assert saved["passed"] and saved["timeline"] and saved["marks"]
    svg = ET.parse(tmp_path / f"{name}.svg").getroot()
    assert svg.tag.endswith("svg") and len(list(svg.iter("{http://www.w3.org/2000/svg}polyline"))) >= 3
    assert f"PASS  scenario {name}" in printed
    assert not [c for c in report["cleanup"] if c.startswith("FAILED")], report["cleanup"]
    after = leftovers()
    for kind, found in after.items():
        assert sorted(set(found) - set(before[kind])) == [], f"{name} left {kind} behind: {found}"

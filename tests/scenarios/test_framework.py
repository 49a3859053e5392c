"""The scenario framework's own parts: the fault hook, the report, the chart, the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import tomllib

from actors.faults import SignFault
from protocols.events.base import EncodedEvent
from protocols.events.envelope import EnvelopeHeader
from protocols.signing import sign_batch
from scenarios.chart import timeline_svg
from scenarios.framework import Rig, print_report, toml_text
from scenarios.processes import Metrics

import nacl.signing

REPO = Path(__file__).resolve().parents[2]


def events(n: int) -> list[EncodedEvent]:
    return [EncodedEvent(1_700_000_000.0 + i, "dns", b"\x80") for i in range(n)]


def test_sign_fault_fails_one_event_in_n_through_the_real_signing_code(tmp_path):
    switch = tmp_path / "fail"
    fault = SignFault(str(switch))
    key = nacl.signing.SigningKey.generate()
    header = EnvelopeHeader("p", "b")
    assert fault.apply(events(10)) == events(10)  # no file: no fault
    switch.write_text("4")
    signed = sign_batch(key, header, fault.apply(events(10)), 1)
    assert len(signed.failures) == 2 and "TypeError" in signed.failures[0][1]  # events 4 and 8 of the count
    assert [seq for seq, _ in signed.records] == list(range(1, 9))  # the next event takes the number: no gap
    signed = sign_batch(key, header, fault.apply(events(6)), 9)
    assert len(signed.failures) == 2  # counted across batches: events 12 and 16
    switch.unlink()
    assert fault.apply(events(10)) == events(10) and fault.injected == 4


def test_a_bad_switch_file_means_no_fault(tmp_path):
    switch = tmp_path / "fail"
    switch.write_text("often")
    assert SignFault(str(switch)).apply(events(5)) == events(5)


def test_toml_text_is_read_back_by_tomllib():
    config = {"probe": {"id": "x", "data_dir": "/tmp/a b"}, "buffer": {"memory_events": 5, "ratio": 0.5, "on": True}, "d": {"nets": ["10.0.0.0/8"]}}
    assert tomllib.loads(toml_text(config)) == config


def test_metrics_parses_the_prometheus_text():
    text = (
        "# TYPE probe_events_dropped counter\n"
        'probe_events_dropped_total{reason="buffer_full"} 5.0\n'
        'probe_events_dropped_total{reason="signature"} 2.0\n'
        "# TYPE probe_uplink_state gauge\n"
        'probe_uplink_state{state="connected"} 1.0\n'
        'probe_uplink_state{state="halted"} 0.0\n'
    )
    m = Metrics(text)
    assert m.total("probe_events_dropped_total") == 7.0
    assert m.by("probe_events_dropped_total", "reason") == {"buffer_full": 5.0, "signature": 2.0}
    assert m.active("probe_uplink_state", "state") == ["connected"]
    assert m.get("probe_events_dropped_total", reason="signature") == 2.0


def test_a_failed_expectation_fails_the_report_and_the_chart_shows_the_run(tmp_path, capsys):
    rig = Rig("unit", quick=True, out_dir=tmp_path)
    try:
        rig.samples = [
            {"t": 0.0, "state": "connected", "buffer_disk": 0.1, "rate_created": 10, "pending": 5, "alerts": []},
            {"t": 1.0, "state": "halted", "buffer_disk": 0.5, "rate_created": 20, "pending": 50, "alerts": ["identity"]},
            {"t": 2.0, "state": "down"},
            {"t": 3.0, "state": "connected", "buffer_disk": 0.2, "rate_created": 5, "pending": 1, "alerts": []},
        ]
        rig.marks = [{"t": 0.5, "label": "fault", "kind": "fault"}, {"t": 2.5, "label": "fixed", "kind": "restore"}]
        rig.expect("holds", True, "1 = 1")
        rig.expect("breaks", False, "1 != 2", got=2)
    finally:
        rig.cleanup()
    report = rig.report(type("M", (), {"TITLE": "unit", "CLAIM": "c"}), None)
    assert not report["passed"]
    paths = rig.write(report)
    print_report(report, paths)
    out = capsys.readouterr().out
    assert out.startswith("FAIL  scenario unit") and "  FAIL  breaks: 1 != 2" in out and "  pass  holds" in out
    root = ET.parse(paths[1]).getroot()
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "identity" in texts and any("fault" in (t or "") for t in texts)
    assert not os.path.exists(rig.work)  # the work directory is removed, its logs kept beside the report
    assert (tmp_path / "unit-logs").is_dir()


def test_the_command_refuses_an_unknown_scenario():
    done = subprocess.run([sys.executable, "-m", "probe", "scenario", "no_such_case"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown scenario 'no_such_case'" in done.stderr


def test_the_command_lists_every_scenario():
    done = subprocess.run([sys.executable, "-m", "probe", "scenario", "--list"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert [line.split()[0] for line in done.stdout.splitlines()] == __import__("scenarios.framework").framework.SCENARIOS


def test_svg_of_an_empty_timeline_is_still_a_document():
    ET.fromstring(timeline_svg("empty", [], [], 0.0))

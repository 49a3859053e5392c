"""An alert notice queued when the run ends still reaches the Core (a run ends only once it is handed on)."""

from __future__ import annotations

import time

import pytest

from actors.alerts import Alert
from probe.app import ProbeApp
from probe.commands.run import sample_capture
from tests.ops.rig import CoreProcess, enrolled_key, probe_config


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_notice_queued_as_the_replay_ends_is_delivered_before_the_run_completes(tmp_path):
    core = CoreProcess(tmp_path / "core")
    core.start()
    app = None
    try:
        data = tmp_path / "data"
        enrolled_key(data, core)
        # alerts are evaluated (and their notices handed to the signer) only every 3 s:
        # the short replay is through the pipeline long before the next round
        app = ProbeApp(probe_config(data, sample_capture(), core.url, alerts__evaluate_interval=3.0))
        app.start()
        cleared = Alert("signature_failures", "signature_failures", None, "cleared", 0.0, 10.0, "cleared: signature failures", time.time())
        app.alerts.record(cleared)  # as the alerts actor does at a transition, before it can send the notice
        outcome = app.wait()
        summary = app.summary(outcome)
    finally:
        if app is not None:
            app.stop()
        core.stop()
    notices = [(n["note"], n["state"]) for n in core.events("notice")]
    assert ("Probe::Signature_Failures", "cleared") in notices
    assert outcome == "complete" and summary["accounting"]["balanced"] and summary["pending"] == 0

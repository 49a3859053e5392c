"""signature_failure: signing fails for some events; each is dropped and counted, the rest flow on.

The probe replays DNS traffic in real time into a real Core. The scenario switches on
the signer's fault hook (``[faults] sign_fail_file``: one event in N is handed to the
real signing code with a body that is not bytes, so signing it fails as any malformed
event's would), then switches it off again. During the fault the probe must drop
exactly the events it could not sign (reason ``signature``), log and count them, raise
the ``signature_failures`` alert, and go on delivering every other event without a gap
at the Core; after it, the alert clears.
"""

from __future__ import annotations

import functools

from scenarios.framework import PROBE_ID, Rig, main_for

TITLE = "signing fails for some events"
CLAIM = (
    "Signature failure (docs/failure-modes.md): an event that cannot be signed is dropped, logged and counted "
    "(signature_failures_total, dropped reason signature); the next event takes its sequence number, so the Core "
    "sees no gap; delivery goes on; the signature_failures alert fires above 10/min and clears when they stop."
)

EVERY = 20  # one event in EVERY fails while the fault is on


def run(rig: Rig) -> None:
    quick = rig.quick
    rate = 600 if quick else 1000
    warm, fault, window = (1.0, 2.0, 1.5) if quick else (5.0, 15.0, 20.0)
    args, transactions = rig.dns_replay(warm + fault + window + 30.0, rate, "sig")
    switch = rig.work / "sign-fail"
    key = rig.probe_key()
    core = rig.start_core(enroll_key=key)
    config = rig.write_config(f"ws://{core.address}", {
        "faults": {"sign_fail_file": str(switch)},
        "alerts": {"evaluate_interval": 0.25, "signature_failures_window": window},
        "dissect": {"udp_idle_timeout": 2.0},
    })
    rig.defer(f"remove {switch}", lambda: switch.unlink(missing_ok=True))
    probe = rig.make_probe(config, args)
    rig.start_sampling()
    probe.start()
    rig.mark("probe started: DNS replay in real time")

    core_stored = functools.partial(core.stored, PROBE_ID)
    metric = probe.metric

    def alert_on() -> bool:
        m = probe.metrics()
        return m is not None and m.get("probe_alerts_active", alert="signature_failures") >= 1

    rig.wait_for("events reach the Core", lambda: core_stored() > 0, 30, kind="step")
    rig.sleep(warm)
    stored_at_fault = core_stored()
    tmp = switch.with_suffix(".tmp")
    tmp.write_text(str(EVERY))
    tmp.replace(switch)
    t_fault = rig.mark(f"fault on: the signer fails one event in {EVERY}", "fault")
    first = rig.wait_for("first signature failure counted", lambda: (metric("probe_signature_failures_total") or 0) > 0, 10, since=t_fault)
    detect = rig.wait_for("alert signature_failures raised", alert_on, 15, since=t_fault)
    rig.sleep(max(0.0, fault - (rig.now() - t_fault)))
    stored_before_restore = core_stored()
    switch.unlink()
    t_restore = rig.mark("fault off", "restore")
    rig.sleep(1.0)
    failures_after_restore = metric("probe_signature_failures_total")
    recover = rig.wait_for("alert signature_failures cleared", lambda: not alert_on(), window + 15, since=t_restore, kind="recovered")
    signer_restarts = metric("probe_supervisor_restarts_total", child="signer", strategy="restart")
    failures_final = metric("probe_signature_failures_total")
    summary = rig.stop_probe()
    rig.stop_sampling()

    during = [s for s in rig.samples if t_fault <= s["t"] <= t_restore]
    rig.expect("signing failures are counted while the fault is on", first is not None and (failures_after_restore or 0) > 0,
               f"first after {first} s; {failures_after_restore:.0f} failures in {t_restore - t_fault:.1f} s" if failures_after_restore else "none counted",
               failures=failures_after_restore)
    rig.expect("no failure once the fault is off", failures_final is not None and failures_final == failures_after_restore,
               f"{failures_after_restore} one second after, {failures_final} at the end")
    rig.expect_time("time to detect: fault on to alert signature_failures raised", detect, 3.0)
    rig.expect_time("time to recover: fault off to the alert cleared (its window is %g s)" % window, recover, window + 5.0)
    rig.expect("delivery goes on during the fault", stored_before_restore > stored_at_fault,
               f"the Core stored {stored_before_restore - stored_at_fault} events during the fault",
               stored_during_fault=stored_before_restore - stored_at_fault)
    rig.expect("the uplink stays connected throughout the fault",
               bool(during) and all(s.get("state") == "connected" for s in during),
               f"states seen: {sorted({s.get('state') for s in during})}")
    rig.expect("the signer is not restarted (a per-event error, not a failure)", signer_restarts == 0, f"signer restarts {signer_restarts}")
    logged = probe.log_events("signature_failure")
    rig.expect("each failure is logged with its reason (repeats rate-limited)", bool(logged) and "TypeError" in logged[0].get("reason", ""),
               f"{len(logged)} log lines, first reason: {logged[0].get('reason') if logged else None}")
    account = rig.core_account(core)
    dropped = summary["accounting"]["dropped"] if summary else {}
    rig.expect("dropped with reason signature = signature failures counted", dropped.get("signature") == failures_final,
               f"dropped {dropped}, signature_failures_total {failures_final}")
    rig.check_transactions(core, "sig", lost=int(dropped.get("signature", 0)))
    rig.expect("nothing forged or damaged reached the Core", account is not None and not account["rejected"],
               f"rejected {account['rejected'] if account else None}")
    notes = [(e.get("note"), e.get("state")) for e in core.export("notice")]
    rig.expect("the alert reached the Core as notices, raised then cleared",
               ("Probe::Signature_Failures", "raised") in notes and ("Probe::Signature_Failures", "cleared") in notes,
               f"notices: {notes}")
    rig.check_accounting(summary, account)
    rig.summary_figures(summary, time_to_detect=detect, time_to_recover=recover, first_failure_after=first)


if __name__ == "__main__":
    raise SystemExit(main_for("signature_failure"))

"""core_overload: the Core commits slower than the probe produces and signals backpressure.

The probe replays DNS traffic in real time into a real Core. The operator of the Core
limits its commit rate at runtime (``core control --rate-limit``); its ingest queue
grows past the high watermark and it sends ``backpressure on`` with the rate it can
take. The probe must slow its sending to that rate (a slow Core is not a dead one: no
ack timeout, no reconnection), keep capturing and keep the surplus in its spool, count
the time in backpressure and raise the backpressure alert when it lasts. When the limit
is lifted the Core sends ``backpressure off``, the probe drains its spool and the alert
clears; nothing is lost. The full run also pauses the Core outright (``--pause``:
it commits nothing and suggests rate 0) and resumes it.
"""

from __future__ import annotations

import functools
from scenarios.framework import PROBE_ID, Rig, main_for

TITLE = "the Core rate-limited, signalling backpressure"
CLAIM = (
    "Backpressure (docs/protocol.md, flow control): the probe holds its send rate to the Core's suggested rate, "
    "keeps capturing and buffering, never treats the slow Core as dead (no reconnects), counts the time and raises "
    "the backpressure alert; when the Core recovers the spool drains and nothing is lost."
)


def run(rig: Rig) -> None:
    quick = rig.quick
    rate = 1200 if quick else 1500
    limit = 300 if quick else 400
    warm, limited_for, alert_after = (1.5, 4.0, 1.5) if quick else (5.0, 30.0, 10.0)
    paused_for = 0.0 if quick else 10.0
    args, _ = rig.dns_replay(warm + limited_for + paused_for + 60.0, rate, "load")
    key = rig.probe_key()
    core = rig.start_core(enroll_key=key, extra=["--high-watermark", "2000", "--low-watermark", "500"])
    config = rig.write_config(f"ws://{core.address}", {
        "alerts": {"backpressure_seconds": alert_after},
        "uplink": {"batch_events": 100},  # frames small enough that the rate over a few seconds is measurable
        "dissect": {"udp_idle_timeout": 2.0},
    })
    probe = rig.make_probe(config, args)
    def core_sample() -> dict:
        live = core.live_stats()
        return {"core_queued": live.get("queued_events"), "core_backpressure": (live.get("backpressure") or {}).get("on")}

    rig.extra_sample = core_sample
    rig.start_sampling()
    probe.start()
    rig.mark(f"probe started: DNS replay at {rate}/s in real time")

    metric = probe.metric
    stored = functools.partial(core.stored, PROBE_ID)

    rig.wait_for("events reach the Core", lambda: stored() > 0, 30, kind="step")
    rig.sleep(warm)
    failures0 = metric("probe_uplink_connection_failures_total") or 0.0
    core.control("--rate-limit", str(limit))
    t_fault = rig.mark(f"core control --rate-limit {limit}", "fault")
    detect = rig.wait_for("the probe is under backpressure", lambda: metric("probe_uplink_backpressure") == 1.0, 15, since=t_fault)
    t_on = rig.now()
    stored_on, packets_on, pending_on = stored(), metric("probe_packets_captured_total"), metric("probe_events_pending")
    alert = rig.wait_for("alert backpressure raised", lambda: metric("probe_alerts_active", alert="backpressure") == 1.0,
                         alert_after + limited_for, since=t_on)
    rig.sleep(max(0.0, limited_for - (rig.now() - t_fault)))
    span = rig.now() - t_on
    stored_off, packets_off, pending_off = stored(), metric("probe_packets_captured_total"), metric("probe_events_pending")
    send_rate = (stored_off - stored_on) / span if span > 0 else None
    seconds_bp = metric("probe_uplink_backpressure_seconds_total")
    if paused_for:
        core.control("--pause")
        rig.mark("core control --pause (the Core commits nothing)", "fault")
        rig.sleep(1.0)
        paused_stored = stored()
        rig.sleep(paused_for)
        rig.expect("nothing is committed while the Core is paused, and the probe does not reconnect",
                   stored() == paused_stored and (metric("probe_uplink_connection_failures_total") or 0.0) == failures0,
                   f"Core stored {paused_stored} -> {stored()} over {paused_for:g} s; connection failures "
                   f"{(metric('probe_uplink_connection_failures_total') or 0.0) - failures0:.0f}")
        core.control("--resume")
        rig.mark("core control --resume", "restore")
    core.control("--clear")
    t_restore = rig.mark("core control --clear (no limit)", "restore")
    released = rig.wait_for("backpressure off", lambda: metric("probe_uplink_backpressure") == 0.0, 30, since=t_restore)
    drained = rig.wait_for("the spool is drained", lambda: (metric("probe_events_pending") or 1e9) < rate, 60, since=t_restore, kind="recovered")
    cleared = rig.wait_for("alert backpressure cleared", lambda: metric("probe_alerts_active", alert="backpressure") == 0.0, 30,
                           since=t_restore, kind="recovered")
    failures = (metric("probe_uplink_connection_failures_total") or 0.0) - failures0
    summary = rig.stop_probe()
    rig.stop_sampling()

    rig.expect_time("time to detect: rate limit on to backpressure at the probe", detect, 5.0)
    rig.expect(f"the probe sends no faster than the Core's limit ({limit}/s) while held back",
               send_rate is not None and send_rate <= limit * 1.3,
               f"{send_rate:.0f} events/s reached the Core over {span:.1f} s (traffic {rate * 1.1:.0f} events/s)" if send_rate is not None else "not measured",
               send_rate=round(send_rate or 0, 1), limit=limit)
    rig.expect("capture goes on and the surplus waits in the spool",
               None not in (packets_on, packets_off, pending_on, pending_off) and packets_off > packets_on and pending_off > pending_on,
               f"packets {packets_on} -> {packets_off}, pending {pending_on} -> {pending_off}")
    rig.expect("the slow Core is not treated as dead: no reconnection", failures == 0, f"{failures:.0f} connection failures")
    rig.expect("the time under backpressure is counted", bool(seconds_bp), f"uplink_backpressure_seconds_total {seconds_bp}")
    rig.expect("the backpressure alert fires when it lasts", alert is not None, f"raised {alert} s after backpressure began (threshold {alert_after:g} s)")
    rig.expect_time("time to recover: limit lifted to the spool drained", drained, 30.0)
    rig.expect("backpressure ends and the alert clears", released is not None and cleared is not None, f"off after {released} s, cleared after {cleared} s")
    account = rig.core_account(core)
    live = core.live_stats()
    bp = (live.get("backpressure") or {})
    rig.expect("the Core counts its backpressure", bool(bp.get("episodes")) and bool(bp.get("seconds")),
               f"Core: {bp.get('episodes')} episodes, {bp.get('seconds')} s")
    rig.check_transactions(core, "load")
    rig.expect("nothing was dropped", summary is not None and not summary["accounting"]["dropped"],
               f"dropped {summary['accounting']['dropped'] if summary else None}")
    rig.check_accounting(summary, account)
    rig.summary_figures(summary, time_to_detect=detect, time_to_recover=drained, send_rate_under_limit=round(send_rate or 0, 1),
                        backpressure_seconds=seconds_bp)


if __name__ == "__main__":
    raise SystemExit(main_for("core_overload"))

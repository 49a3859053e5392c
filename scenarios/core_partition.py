"""core_partition: the network between the probe and the Core is cut, then restored.

The Core runs in a network namespace of its own, reached over a veth pair (made with
pyroute2), and serves wss:// with its certificate; the probe authenticates with its
own (mutual TLS, as over any real network). The probe replays DNS traffic in real
time. The scenario cuts the link (both ends down, with pyroute2) for longer than the
probe's reconnection backoff ceiling, then brings it back. While cut, the probe must
keep capturing and buffering (fail-open locally), notice the loss within its ack
timeout, retry with exponential backoff, raise the connection_failures alert; once
restored, it reconnects within one backoff period, drains the spool oldest first and
loses nothing: every event reaches the Core exactly once.
"""

from __future__ import annotations

import functools
import os
import subprocess

from scenarios.framework import PROBE_ID, Rig, ScenarioError, main_for
from scenarios.netlab import VethLink
from scenarios.processes import REPO, probe_command

TITLE = "the Core's network link cut, then restored"
CLAIM = (
    "Core unavailable (docs/architecture.md, docs/operations.md): the uplink notices within its ack timeout, "
    "reconnects with exponential backoff (capped), raises connection_failures; capture and buffering go on; "
    "after the link is back the spool drains oldest first and every event reaches the Core exactly once."
)


def pki(*args: str) -> None:
    done = subprocess.run(probe_command("pki", *args), cwd=REPO, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ScenarioError(f"pki {args[0]} failed: {done.stderr.strip()}")


def run(rig: Rig) -> None:
    quick = rig.quick
    rate = 500 if quick else 1000
    warm, cut_for = (1.5, 4.0) if quick else (5.0, 30.0)
    ack_timeout, backoff_max = 2.0, 2.0
    window = 5.0 if quick else 20.0
    args, _ = rig.dns_replay(warm + cut_for + window + 40.0, rate, "part")
    link = VethLink(rig)
    rig.figures["link"] = {"namespace": link.namespace, "veth": [link.outer, link.inner], "core": link.inner_address}
    ca, probe_dir, core_dir = str(rig.work / "ca"), str(rig.work / "probe-id"), str(rig.work / "core-id")
    pki("init-ca", "--out", ca)
    pki("issue", "--ca", ca, "--probe-id", PROBE_ID, "--out", probe_dir)
    pki("issue-core", "--ca", ca, "--name", "core", "--host", link.inner_address, "--out", core_dir)
    core = rig.start_core(listen=f"{link.inner_address}:8765", netns=link.namespace, extra=[
        "--tls-cert", os.path.join(core_dir, "core.pem"), "--tls-key", os.path.join(core_dir, "core.key"),
        "--client-ca", os.path.join(ca, "ca.pem")])
    config = rig.write_config(f"wss://{core.address}", {
        "identity": {"key": os.path.join(probe_dir, f"{PROBE_ID}.key"), "cert": os.path.join(probe_dir, f"{PROBE_ID}.pem"),
                     "ca": os.path.join(ca, "ca.pem")},
        "uplink": {"ack_timeout": ack_timeout, "backoff_initial": 0.1, "backoff_max": backoff_max, "connect_timeout": 1.0},
        "alerts": {"connection_failures_window": window, "connection_failures_per_min": 24.0},
        "dissect": {"udp_idle_timeout": 2.0},
    })
    probe = rig.make_probe(config, args)
    rig.start_sampling()
    probe.start()
    rig.mark(f"probe started: wss://{core.address} over the veth pair")

    metric = probe.metric
    stored = functools.partial(core.stored, PROBE_ID)

    rig.wait_for("events reach the Core over the link", lambda: stored() > 0, 30, kind="step")
    rig.sleep(warm)
    failures0 = metric("probe_uplink_connection_failures_total") or 0.0
    link.set_up(False)
    t_cut = rig.mark(f"link cut (pyroute2: {link.outer} and {link.inner} down)", "fault")
    detect = rig.wait_for("the probe notices the Core is gone",
                          lambda: (metric("probe_uplink_connection_failures_total") or 0.0) > failures0, cut_for - 1.0, since=t_cut)
    alert = rig.wait_for("alert connection_failures raised", lambda: metric("probe_alerts_active", alert="connection_failures") == 1.0,
                         max(0.1, cut_for - 1.0 - (rig.now() - t_cut)), since=t_cut)
    during = {"packets": metric("probe_packets_captured_total"), "stored": stored()}
    rig.sleep(max(0.0, cut_for - 0.3 - (rig.now() - t_cut)))
    during.update({
        "pending": metric("probe_events_pending"), "packets_later": metric("probe_packets_captured_total"),
        "failures": (metric("probe_uplink_connection_failures_total") or 0.0) - failures0,
        "backoff": metric("probe_uplink_backoff_seconds"), "health": probe.health_check(), "stored_later": stored(),
    })
    link.set_up(True)
    t_restore = rig.mark("link restored (pyroute2: both ends up)", "restore")
    reconnect = rig.wait_for("connected again", lambda: metric("probe_uplink_state", state="connected") == 1.0, backoff_max + 15, since=t_restore)
    drained = rig.wait_for("the backlog is drained", lambda: (metric("probe_events_pending") or 1e9) < rate, 60, since=t_restore, kind="recovered")
    cleared = rig.wait_for("alert connection_failures cleared", lambda: metric("probe_alerts_active", alert="connection_failures") == 0.0,
                           30, since=t_restore, kind="recovered")
    summary = rig.stop_probe()
    rig.stop_sampling()

    cut_samples = [s for s in rig.samples if t_cut + ack_timeout + 1 <= s["t"] <= t_restore]
    rig.expect_time("time to detect the cut (ack timeout %g s)" % ack_timeout, detect, ack_timeout + 3.0)
    rig.expect("the connection_failures alert fires during the cut", alert is not None, f"raised {alert} s after the cut")
    rig.expect("the uplink is not connected while the link is cut",
               bool(cut_samples) and all(s.get("state") in ("disconnected", "connecting") for s in cut_samples),
               f"states seen: {sorted({s.get('state') for s in cut_samples})}")
    rig.expect("it retries with backoff, capped at backoff_max", during["failures"] >= 2 and during["backoff"] is not None and during["backoff"] <= backoff_max * 1.2,
               f"{during['failures']:.0f} failed attempts in {cut_for:g} s; current delay {during['backoff']} s (max {backoff_max:g} s)")
    rig.expect("capture and buffering go on while cut (fail-open locally)",
               during["packets_later"] is not None and during["packets"] is not None and during["packets_later"] > during["packets"] and (during["pending"] or 0) > rate,
               f"packets {during['packets']} -> {during['packets_later']}; pending {during['pending']}")
    rig.expect("nothing reaches the Core while cut", during["stored_later"] == during["stored"], f"Core stored {during['stored']} -> {during['stored_later']}")
    rig.expect("probe health stays healthy (running, degraded by the alert)", during["health"][0] == 0, during["health"][1])
    rig.expect_time("time to reconnect after the restore (backoff max %g s)" % backoff_max, reconnect, backoff_max + 4.0)
    rig.expect_time("time to recover: restore to the backlog drained", drained, 30.0)
    rig.expect("the alert clears after the restore", cleared is not None, f"cleared {cleared} s after the restore")
    account = rig.core_account(core)
    rig.check_transactions(core, "part")
    rig.figures["core_duplicates_received"] = account["duplicates"] if account else None
    rig.check_accounting(summary, account)
    rig.expect("nothing was dropped", summary is not None and not summary["accounting"]["dropped"],
               f"dropped {summary['accounting']['dropped'] if summary else None}")
    rig.summary_figures(summary, time_to_detect=detect, time_to_recover=drained, time_to_reconnect=reconnect,
                        failed_attempts=during["failures"])

if __name__ == "__main__":
    raise SystemExit(main_for("core_partition"))

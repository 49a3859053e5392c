"""disk_full: the probe's data directory is a small tmpfs and the spool fills it up.

The probe's data directory (spool, identity, health file) is a tmpfs of a few
megabytes that also holds some other file, as a shared volume would. The probe replays
DNS traffic in real time; the Core pauses (it commits nothing), so the backlog grows in
the spool until the file system is full and LMDB's writes fail with ENOSPC. The probe
must notice (the spool refuses; the resources monitor reports ``disk_full``), keep
capturing, put new events in the memory tier, shed under the documented strategy
(counted ``disk_full`` and reported to the Core), raise the disk alert, and keep
running. Then the Core resumes while the disk is still full: delivery goes on from
the memory tier (the spool's own events wait: on a file system with no room left LMDB
cannot even delete, it copies pages on write). Last, the operator follows the runbook
and frees space on the volume (removes the other file): the spool deletes what the
Core holds, takes events again, the backlog drains, the disk alert clears and ``probe
health`` answers again.
"""

from __future__ import annotations

import functools
import os

from scenarios.framework import PROBE_ID, Rig, main_for
from scenarios.netlab import TmpfsMount

TITLE = "the spool's file system fills up"
CLAIM = (
    "Resource exhaustion, disk (docs/failure-modes.md, Disk full): a full disk under the spool (ENOSPC) sends new "
    "events to the memory tier, is reported as disk_full and shed as documented (counted, reported to the Core), "
    "raises the disk alert; capture goes on, and delivery from the memory tier while the Core is up; once space is "
    "freed the spool is used again, the backlog drains and the alert clears."
)


def run(rig: Rig) -> None:
    quick = rig.quick
    size_mb = 6 if quick else 16
    rate = 1000 if quick else 1500
    warm = 1.0 if quick else 5.0
    args, _ = rig.dns_replay(warm + 60.0, rate, "disk")
    data = rig.work / "probe"
    disk = TmpfsMount(rig, data, size_mb)
    ballast = data / "old-captures.bin"  # someone else's files on the same volume
    with open(ballast, "wb") as fh:
        fh.write(b"\0" * ((size_mb << 20) // 3))
    key = rig.probe_key()
    core = rig.start_core(enroll_key=key)
    config = rig.write_config(f"ws://{core.address}", {
        "resources": {"min_free_disk_mb": 0, "check_interval": 0.25},
        "alerts": {"drops_window": 2.0},
        "dissect": {"udp_idle_timeout": 2.0},
    })
    probe = rig.make_probe(config, args)
    def disk_sample() -> dict[str, float]:
        used, total = disk.usage()
        try:
            spool_file = os.path.getsize(data / "spool" / "data.mdb")
        except OSError:
            spool_file = 0
        return {"disk_used": round(used / total, 3), "spool_file_mb": round(spool_file / 2**20, 2)}

    rig.extra_sample = disk_sample
    rig.start_sampling()
    probe.start()
    rig.mark(f"probe started: data directory on a {size_mb} MB tmpfs, a third of it taken by another file")

    metric = probe.metric
    stored = functools.partial(core.stored, PROBE_ID)

    rig.wait_for("events reach the Core", lambda: stored() > 0, 30, kind="step")
    rig.sleep(warm)
    memory0 = metric("probe_events_buffered_total", tier="memory") or 0.0
    core.control("--pause")
    t_pause = rig.mark("core control --pause: the backlog grows in the spool", "fault")
    full = rig.wait_for("the file system is full", lambda: disk.usage()[0] >= disk.usage()[1] - (256 << 10), 60, since=t_pause, kind="fault")
    t_full = rig.now()
    detect = rig.wait_for("the spool refuses: new events go to the memory tier",
                          lambda: (metric("probe_events_buffered_total", tier="memory") or 0.0) > memory0, 30, since=t_full)
    reported = rig.wait_for("the spool's failure is logged with the OS error", lambda: bool(probe.log_events("disk_failed")), 15, since=t_full)
    alert = rig.wait_for("alert resource:disk raised", lambda: metric("probe_alerts_active", alert="resource:disk") == 1.0, 15, since=t_full)
    rig.sleep(2.0)
    m = probe.metrics()
    probe_sheds = m.by("probe_resource_sheds_total", "reason") if m is not None else None
    during = {"packets": metric("probe_packets_captured_total"), "running": probe.running, "health": probe.health_check()}
    rig.sleep(1.0)
    during["packets_later"] = metric("probe_packets_captured_total")
    core.control("--resume")
    t_resume = rig.mark("core control --resume: the Core is back, the disk still full", "restore")
    stored_at_resume = stored()
    flowing = rig.wait_for("the Core stores events again (from the memory tier)", lambda: stored() > stored_at_resume + rate,
                           30, since=t_resume, kind="recovered")
    rig.sleep(2.0)
    still_full = disk.usage()[0] >= disk.usage()[1] - (256 << 10)
    alert_held = metric("probe_alerts_active", alert="resource:disk") == 1.0
    disk_buffered = metric("probe_events_buffered_total", tier="disk") or 0.0
    ballast.unlink()
    t_fix = rig.mark("runbook: free space on the volume (the other file removed)", "restore")
    spool_again = rig.wait_for("the spool takes events again", lambda: (metric("probe_events_buffered_total", tier="disk") or 0.0) > disk_buffered,
                               30, since=t_fix, kind="recovered")
    drained = rig.wait_for("the backlog is delivered", lambda: (metric("probe_events_pending") or 1e9) < rate, 60, since=t_fix, kind="recovered")
    cleared = rig.wait_for("alert resource:disk cleared", lambda: metric("probe_alerts_active", alert="resource:disk") == 0.0, 30,
                           since=t_fix, kind="recovered")
    healthy = rig.wait_for("probe health exits 0 again", lambda: probe.health_check()[0] == 0, 30, since=t_fix, kind="recovered")
    summary = rig.stop_probe()
    rig.stop_sampling()

    rig.expect("the spool fills the file system (a real ENOSPC, not a quota)", full is not None,
               f"full {full} s after the Core paused; tmpfs {size_mb} MB, spool quota 1024 MB")
    rig.expect_time("time to detect: disk full to events going to the memory tier", detect, 5.0)
    failed = probe.log_events("disk_failed")
    rig.expect("the spool's refusal is logged with its reason", reported is not None, failed[0]["message"] if failed else "no disk_failed line")
    sheds = {k: v for k, v in (probe_sheds or {}).items() if v}
    rig.figures["sheds"] = sheds
    rig.expect("the full disk is reported as disk_full and shed as the resource strategy says", "disk_full" in sheds,
               f"sheds by reason: {sheds or 0}")
    rig.expect("the disk alert fires", alert is not None, f"resource:disk raised {alert} s after the disk filled")
    rig.expect("capture goes on and the probe keeps running while the disk is full",
               during["running"] and None not in (during["packets"], during["packets_later"]) and during["packets_later"] > during["packets"],
               f"packets {during['packets']} -> {during['packets_later']}; probe health: {during['health'][1]}")
    rig.expect_time("with the disk still full, delivery goes on from the memory tier once the Core is back", flowing, 15.0)
    rig.expect("the disk alert stays raised while the file system is full", not still_full or alert_held,
               f"file system {'full' if still_full else 'no longer full'} 2 s later; alert {'raised' if alert_held else 'not raised'}")
    rig.expect_time("time to recover: space freed to the spool used again", spool_again, 15.0)
    rig.expect_time("time to recover: space freed to the backlog delivered", drained, 45.0)
    rig.expect("runbook: once space is freed the disk alert clears", cleared is not None, f"after {cleared} s")
    rig.expect("runbook: once space is freed probe health exits 0 (it can write its health file again)", healthy is not None,
               f"after {healthy} s")
    account = rig.core_account(core)
    dropped = summary["accounting"]["dropped"] if summary else {}
    rig.expect("drops, if any, are counted by reason disk_full (or buffer_full)", set(dropped) <= {"disk_full", "buffer_full"},
               f"dropped {dropped or 0}")
    rig.check_transactions(core, "disk", lost=sum(dropped.values()))
    rig.check_accounting(summary, account)
    rig.summary_figures(summary, time_to_detect=detect, time_to_recover=drained, disk_full_after=full, spool_again_after=spool_again,
                        delivery_from_memory_after=flowing, alert_cleared_after_free=cleared)


if __name__ == "__main__":
    raise SystemExit(main_for("disk_full"))

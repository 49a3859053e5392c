"""key_failure: the signing key file is corrupted while the probe runs.

The probe replays DNS traffic in real time into a real Core. The scenario overwrites
part of the key file in place (as a bad disk block or a stray write would). The probe
notices at its next batch (one ``stat`` per batch), halts transmission and raises the
identity alert, while capture, dissection, signing with the last validated key, and
buffering go on. A reload with the key still corrupt is refused. Then the documented
manual step: restore the key from its backup (``install -m 0600`` then ``mv``) and
reload with SIGHUP; transmission resumes and the backlog reaches the Core. The full run
also makes the key file world-readable (``chmod 644``), which halts the same way, and
fixes it with ``chmod 600`` and a reload.
"""

from __future__ import annotations

import os
import shutil

from scenarios.framework import Rig, main_for
from scenarios.identity_steps import IdentityWatch, notices

TITLE = "the signing key file corrupted while running"
CLAIM = (
    "Identity failure, key (docs/identity.md): a key file gone corrupt or exposed halts transmission at the next "
    "batch (not one more event frame leaves) while capture and buffering go on; the identity alert is raised; "
    "a reload with a bad key is refused; restoring the key and reloading (SIGHUP) resumes and delivers the backlog."
)


def corrupt_in_place(path: str) -> None:
    """Overwrite 24 bytes in the middle of the file, keeping its inode and mode."""
    size = os.path.getsize(path)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\x00garbage-from-bad-disk\x00\x00", size // 2)
        os.fsync(fd)
    finally:
        os.close(fd)


def restore(backup: str, path: str) -> None:
    """``install -m 0600 BACKUP PATH.new && mv PATH.new PATH`` (the runbook's atomic restore)."""
    tmp = path + ".new"
    shutil.copyfile(backup, tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def run(rig: Rig) -> None:
    quick = rig.quick
    rate = 500 if quick else 800
    warm, halted_for = (1.0, 1.5) if quick else (5.0, 10.0)
    phases = 1 if quick else 2
    args, _ = rig.dns_replay(warm + phases * (halted_for + 10.0) + 30.0, rate, "key")
    key = rig.probe_key()
    backup = str(rig.work / "probe.key.backup")
    shutil.copyfile(key, backup)
    os.chmod(backup, 0o600)
    core = rig.start_core(enroll_key=key)
    config = rig.write_config(f"ws://{core.address}", {"dissect": {"udp_idle_timeout": 2.0}})
    probe = rig.make_probe(config, args)
    watch = IdentityWatch(rig, probe, core)
    rig.start_sampling()
    probe.start()
    rig.mark("probe started: DNS replay in real time")
    rig.wait_for("events reach the Core", lambda: watch.stored() > 0, 30, kind="step")
    rig.sleep(warm)
    detects, recovers = [], []

    # --- corruption -------------------------------------------------------------------
    t = rig.mark("key file corrupted in place", "fault")
    corrupt_in_place(key)
    detect = watch.wait_halt(t, 10)
    detects.append(detect)
    rig.expect_time("time to detect a corrupt key (next batch)", detect, 2.0)
    watch.hold_halted(halted_for, "key_corrupt", "corrupt key")
    watch.refused_reload("reload with the key still corrupt", "key_corrupt")
    created = watch.created() or 0.0
    waiting = watch.metric("probe_events_pending") or 0.0
    restore(backup, key)
    rig.mark("runbook: key restored from backup (install -m 0600, mv)", "restore")
    t = watch.reload("reload the identity")
    recover = watch.wait_resumed(t, 15)
    recovers.append(recover)
    rig.expect_time("time to recover: reload to transmission resumed", recover, 3.0)
    backlog = watch.wait_backlog(t, 60, created)
    rig.expect("the backlog held during the halt is delivered after the reload", backlog is not None,
               f"{waiting:.0f} events were waiting; all delivered {backlog} s after the reload", backlog=waiting, seconds=backlog)
    rig.wait_for("identity alert cleared", lambda: watch.metric("probe_alerts_active", alert="identity") == 0.0, 10, since=t, kind="recovered")

    # --- exposure (full run) ------------------------------------------------------------
    if phases > 1:
        rig.sleep(2.0)
        t = rig.mark("key file made world-readable (chmod 644)", "fault")
        os.chmod(key, 0o644)
        detect = watch.wait_halt(t, 10)
        detects.append(detect)
        rig.expect_time("time to detect an exposed key (next batch)", detect, 2.0)
        watch.hold_halted(halted_for, "key_permissions", "exposed key")
        os.chmod(key, 0o600)
        rig.mark("runbook: chmod 600 the key", "restore")
        t = watch.reload("reload the identity")
        recover = watch.wait_resumed(t, 15)
        recovers.append(recover)
        rig.expect_time("time to recover from the exposed key: reload to transmission resumed", recover, 3.0)

    summary = rig.stop_probe()
    rig.stop_sampling()
    account = rig.core_account(core)
    rig.check_transactions(core, "key")
    notes = notices(core)
    rig.expect("the identity alert reached the Core as notices, raised and cleared",
               ("Probe::Identity_Halt", "raised") in notes and ("Probe::Identity_Halt", "cleared") in notes, f"notices: {notes}")
    rig.expect("nothing forged reached the Core", account is not None and not account["rejected"], f"rejected {account['rejected'] if account else None}")
    rig.check_accounting(summary, account)
    rig.expect("nothing was dropped", summary is not None and not summary["accounting"]["dropped"],
               f"dropped {summary['accounting']['dropped'] if summary else None}")
    rig.summary_figures(summary, time_to_detect=max((d for d in detects if d is not None), default=None),
                        time_to_recover=max((r for r in recovers if r is not None), default=None))


if __name__ == "__main__":
    raise SystemExit(main_for("key_failure"))

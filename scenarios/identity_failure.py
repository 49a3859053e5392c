"""identity_failure: the certificate expires, then one from the wrong CA; then the runbook.

The probe holds a certificate of the Core's CA (``pki init-ca``, ``pki issue``) and
replays DNS traffic in real time into a real Core that checks certificates
(``core serve --client-ca``). Its certificate was issued back-dated, so it runs out
while the probe runs: the Core ends the session at the next event frame
(``cert_expired``) and the probe halts transmission, capture and buffering going on.
The operator then installs a certificate from the wrong CA: the reload is refused by
the probe's own check (``unknown_ca``) and changes nothing. Installed together with
that CA's certificate it passes the probe's check, so the probe resumes and the Core
refuses it (``unknown_ca``): halted again. Last, the documented manual step:
``pki verify`` names the problem, ``pki issue --key`` renews the certificate for the
same key, ``pki verify`` says OK, and the console's ``reload-identity`` resumes
transmission; the backlog signed while the certificate was expired reaches the Core.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from scenarios.framework import PROBE_ID, Rig, ScenarioError, main_for
from scenarios.identity_steps import IdentityWatch, notices
from scenarios.processes import REPO, probe_command

TITLE = "an expired certificate, then one from the wrong CA; the manual fix"
CLAIM = (
    "Identity failure, certificate (docs/identity.md): an expired certificate or one of another CA halts "
    "transmission (detected by the Core or by the probe's own check) while capture and buffering go on; a reload "
    "with bad files is refused and changes nothing; renewing with pki issue --key and reloading resumes and "
    "delivers everything signed meanwhile."
)


def pki(*args: str) -> subprocess.CompletedProcess:
    """``python -m probe pki ARGS`` as the operator runs it."""
    return subprocess.run(probe_command("pki", *args), cwd=REPO, capture_output=True, text=True, timeout=60)


def install(src: str, dest: str, mode: int = 0o644) -> None:
    """``install -m MODE SRC DEST.new && mv DEST.new DEST`` (atomic, as the runbook does it)."""
    tmp = dest + ".new"
    shutil.copyfile(src, tmp)
    os.chmod(tmp, mode)
    os.replace(tmp, dest)


def run(rig: Rig) -> None:
    from probe.pki import issue_probe

    quick = rig.quick
    rate = 500 if quick else 800
    valid_for, halted_for = (3.0, 1.5) if quick else (10.0, 10.0)
    args, _ = rig.dns_replay(valid_for + 3 * halted_for + 40.0, rate, "cert")
    work = rig.work
    ca, rogue, etc = str(work / "ca"), str(work / "rogue-ca"), work / "etc"
    etc.mkdir()
    for directory, name in ((ca, "core-ca"), (rogue, "rogue-ca")):
        done = pki("init-ca", "--out", directory, "--name", name)
        if done.returncode != 0:
            raise ScenarioError(f"pki init-ca failed: {done.stderr.strip()}")
    # a certificate issued as if a day ago for one day: it runs out valid_for seconds from now
    issued = issue_probe(ca, PROBE_ID, 1, str(work / "issued"), now=time.time() - 86400 + valid_for + 2.0)
    key = issued.key_path
    cert, ca_installed = str(etc / "probe.pem"), str(etc / "ca.pem")
    install(issued.cert_path, cert)
    install(os.path.join(ca, "ca.pem"), ca_installed)
    expires_at = issued.info.not_after
    core = rig.start_core(extra=["--client-ca", os.path.join(ca, "ca.pem")])
    config = rig.write_config(f"ws://{core.address}", {
        "identity": {"key": key, "cert": cert, "ca": ca_installed},
        "dissect": {"udp_idle_timeout": 2.0},
    })
    probe = rig.make_probe(config, args)
    watch = IdentityWatch(rig, probe, core)
    rig.start_sampling()
    probe.start()
    rig.mark("probe started with a certificate that runs out in a few seconds")
    rig.wait_for("events reach the Core", lambda: watch.stored() > 0, 30, kind="step")

    # --- 1. the certificate expires -----------------------------------------------------
    t_expiry = rig.now() + (expires_at - time.time())
    rig.sleep(max(0.0, expires_at - time.time()))
    rig.mark("the certificate expires", "fault")
    detect = watch.wait_halt(t_expiry, 15)
    rig.expect_time("time to detect the expiry (the Core ends the session at the next frame)", detect, 3.0)
    refused = core.counted("refused:session:cert_expired", "refused:auth:cert_expired")
    rig.expect("the Core refused the expired certificate with its reason", refused.get("refused:session:cert_expired", 0) + refused.get("refused:auth:cert_expired", 0) >= 1,
               ", ".join(f"{k} {v}" for k, v in refused.items() if k.startswith("refused")) or "no refusal counted")
    watch.hold_halted(halted_for, "cert_expired", "expired certificate")

    # --- 2. a certificate of another CA, alone: the probe's own check refuses the reload ---
    done = pki("issue", "--ca", rogue, "--probe-id", PROBE_ID, "--key", key, "--out", str(work / "rogue"), "--days", "30")
    if done.returncode != 0:
        raise ScenarioError(f"pki issue (rogue) failed: {done.stderr.strip()}")
    install(str(work / "rogue" / f"{PROBE_ID}.pem"), cert)
    rig.mark("a certificate from the wrong CA installed", "fault")
    watch.refused_reload("reload with a certificate of the wrong CA", "unknown_ca")

    # --- 3. ...with that CA's certificate too: the probe resumes, the Core refuses it -------
    install(os.path.join(rogue, "ca.pem"), ca_installed)
    rig.mark("the wrong CA's certificate installed as identity.ca too", "fault")
    halts = watch.metric("probe_identity_halts_total") or 0.0
    t = watch.reload("reload the wrong CA's files", kind="step")
    again = rig.wait_for("halted again: the Core refuses the wrong CA",
                         lambda: (watch.metric("probe_identity_halts_total") or 0.0) > halts and watch.halted(), 15, since=t)
    counters = core.counted("refused:auth:unknown_ca", "refused:tls:unknown_ca")
    rig.expect("the Core refuses the other CA's certificate (unknown_ca) and the probe halts again",
               again is not None and counters.get("refused:auth:unknown_ca", 0) + counters.get("refused:tls:unknown_ca", 0) >= 1,
               f"halted again {again} s after the reload; Core refusals: "
               + ", ".join(f"{k} {v}" for k, v in counters.items() if k.startswith("refused")), seconds=again)
    watch.hold_halted(halted_for, "unknown_ca", "wrong CA")

    # --- 4. the runbook: verify, renew with the same key, verify, reload ---------------------
    real_ca = os.path.join(ca, "ca.pem")
    check = pki("verify", "--ca", real_ca, "--cert", issued.cert_path, "--probe-id", PROBE_ID, "--key", key)
    rig.expect("runbook: pki verify names the problem of the old certificate", check.returncode == 1 and "expired" in check.stdout + check.stderr,
               (check.stdout + check.stderr).strip()[:160])
    done = pki("issue", "--ca", ca, "--probe-id", PROBE_ID, "--key", key, "--out", str(work / "renewed"), "--days", "365", "--force")
    if done.returncode != 0:
        raise ScenarioError(f"pki issue (renewal) failed: {done.stderr.strip()}")
    renewed = str(work / "renewed" / f"{PROBE_ID}.pem")
    check = pki("verify", "--ca", real_ca, "--cert", renewed, "--probe-id", PROBE_ID, "--key", key)
    rig.expect("runbook: pki verify says the renewed certificate is OK", check.returncode == 0, (check.stdout + check.stderr).strip()[:160])
    install(renewed, cert)
    install(real_ca, ca_installed)
    rig.mark("runbook: renewed certificate (pki issue --key) and the right CA installed", "restore")
    created = watch.created() or 0.0
    waiting = watch.metric("probe_events_pending") or 0.0
    t = rig.mark("console: reload-identity", "restore")
    code, line = probe.console("reload-identity")
    rig.expect("the console's reload-identity accepts the renewed identity", code == 0 and "reloaded" in line, line.splitlines()[0] if line else f"exit {code}")
    recover = watch.wait_resumed(t, 20)
    rig.expect_time("time to recover: reload to transmission resumed", recover, 5.0)
    backlog = watch.wait_backlog(t, 90, created)
    rig.expect("the backlog signed while halted is delivered (the Core accepts it under the renewed certificate)", backlog is not None,
               f"{waiting:.0f} events were waiting; all delivered {backlog} s after the reload", backlog=waiting, seconds=backlog)
    rig.wait_for("identity alert cleared", lambda: watch.metric("probe_alerts_active", alert="identity") == 0.0, 10, since=t, kind="recovered")

    summary = rig.stop_probe()
    rig.stop_sampling()
    account = rig.core_account(core)
    rig.check_transactions(core, "cert")
    notes = notices(core)
    rig.expect("the identity alert reached the Core as notices, raised and cleared",
               ("Probe::Identity_Halt", "raised") in notes and ("Probe::Identity_Halt", "cleared") in notes, f"notices: {notes}")
    rig.check_accounting(summary, account)
    rig.expect("nothing was dropped", summary is not None and not summary["accounting"]["dropped"],
               f"dropped {summary['accounting']['dropped'] if summary else None}")
    rig.summary_figures(summary, time_to_detect=detect, time_to_recover=recover, halted_again_after=again)


if __name__ == "__main__":
    raise SystemExit(main_for("identity_failure"))

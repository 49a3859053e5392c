"""probe_crash: kill -9 the probe (and its dissection process) several times; nothing is lost or doubled.

The probe replays a capture of DNS transactions into a real Core. While it delivers,
the scenario kills the delivery process with SIGKILL at different points and starts it
again, as a service manager would (``Restart=on-failure``), and kills the dissection
process, which the probe's own supervisor restarts. At the end every transaction of
the capture is stored at the Core exactly once, and the probe's account matches the
Core's.
"""

from __future__ import annotations

import functools
import random
import signal

from scenarios.framework import PROBE_ID, Rig, main_for
from scenarios.traffic import query_name, write_dns_pcap

TITLE = "kill -9 and restart, several times"
CLAIM = (
    "Durability (design promise 3): after a kill -9 at any instant and a restart, every event the spool had "
    "committed reaches the Core, none twice; a dead dissection process is restarted by the supervisor and "
    "the replay resumes without creating an event twice."
)


def run(rig: Rig) -> None:
    transactions = 20_000 if rig.quick else 60_000
    per_flow = 10
    delivery_kills = 2 if rig.quick else 4
    worker_kills = 1 if rig.quick else 2
    rng = random.Random(9)
    pcap = write_dns_pcap(rig.work / "dns.pcap", transactions, tag="crash", per_flow=per_flow)
    expected = transactions + transactions // per_flow  # dns + conn events
    key = rig.probe_key()
    core = rig.start_core(enroll_key=key)
    config = rig.write_config(f"ws://{core.address}", {"dissect": {"udp_idle_timeout": 5.0}})
    probe = rig.make_probe(config, ["--pcap", str(pcap)])
    rig.start_sampling()
    probe.start()
    rig.mark("probe started")

    stored = functools.partial(core.stored, PROBE_ID)

    detect: list[float] = []
    recover: list[float] = []
    restart_ready: list[float] = []
    health_lines: list[str] = []
    kills_done = 0
    # the kills are spread over the delivery: kill k when the Core holds about k/(n+1) of it
    for k in range(1, delivery_kills + 1):
        target = int(expected * k / (delivery_kills + 1) * rng.uniform(0.8, 1.0))
        if rig.wait_for(f"Core holds {target} events", lambda: stored() >= target or not probe.running, 120, kind="step") is None:
            break
        if not probe.running:
            break
        if k <= worker_kills:
            _kill_dissection(rig, probe, k)
        before = stored()
        t_kill = rig.mark(f"kill -9 the probe (#{k}) with {before} events at the Core", "fault")
        probe.kill9()
        kills_done += 1
        seconds = rig.wait_for("probe health reports the probe gone", lambda: probe.health_check()[0] == 1, 10, since=t_kill)
        detect.append(seconds if seconds is not None else float("inf"))
        health_lines.append(probe.health_check()[1])
        t_restart = rig.mark(f"restart the probe (#{k})", "restore")
        probe.start()
        restart_ready.append(round(rig.now() - t_restart, 3))
        at_restart = stored()
        seconds = rig.wait_for("the Core stores events again", lambda: stored() > at_restart or not probe.running, 60, since=t_kill, kind="recovered")
        recover.append(seconds if seconds is not None else float("inf"))
    code = probe.wait(timeout=300)
    rig.mark(f"the replay ended (exit code {code})", "step")
    rig.stop_sampling()
    summary = probe.summary

    rig.expect("the probe was killed and restarted as planned", kills_done == delivery_kills,
               f"{kills_done} of {delivery_kills} kill -9, {probe.starts} starts", kills=kills_done, starts=probe.starts)
    rig.expect("the last run completed on its own (exit 0, outcome complete)",
               code == 0 and summary is not None and summary["outcome"] == "complete",
               f"exit {code}, outcome {summary['outcome'] if summary else None}")
    rig.expect("probe health noticed every killed probe",
               len(detect) == kills_done and all(d != float("inf") for d in detect),
               "; ".join(health_lines[:1]) + f" ({len(detect)} times, at most {max(detect, default=0):.2f} s after the kill)",
               seconds=detect)
    if detect:
        rig.expect_time("time to detect a dead probe (probe health)", max(detect), 2.0)
    if recover:
        rig.expect_time("time to recover: kill to the Core storing again (restart included)", max(recover), 20.0 if rig.quick else 30.0)

    events = core.export()
    dns = [e for e in events if e["kind"] == "dns"]
    conns = [e for e in events if e["kind"] == "conn"]
    names = {e["query"] for e in dns}
    wanted = {query_name(i, "crash") for i in range(transactions)}
    rig.expect("every DNS transaction is stored at the Core exactly once",
               len(dns) == transactions and names == wanted,
               f"{len(dns)} dns events stored, {len(names)} distinct, {transactions} in the capture, missing {len(wanted - names)}",
               stored=len(dns), distinct=len(names), expected=transactions)
    rig.expect("every flow's conn event is stored exactly once",
               len(conns) == transactions // per_flow and len({e['uid'] for e in conns}) == len(conns),
               f"{len(conns)} conn events, {transactions // per_flow} flows")
    accounts = [a for a in core.stats() if a["probe_id"] == PROBE_ID]
    account = accounts[0] if accounts else None
    if account is not None:
        rig.expect("the Core saw every restart as a new boot", len(account["boots"]) == probe.starts,
                   f"{len(account['boots'])} boots at the Core, {probe.starts} starts", boots=len(account["boots"]))
        rig.figures["core_duplicates_received"] = account["duplicates"]
    rig.check_accounting(summary, account)
    if summary:
        rig.expect("nothing was dropped", summary["accounting"]["dropped_total"] == 0, f"dropped {summary['accounting']['dropped']}")
    rig.figures.update({
        "created": summary["accounting"]["created"] if summary else None,
        "delivered": summary["accounting"]["delivered"] if summary else None,
        "dropped": summary["accounting"]["dropped"] if summary else None,
        "pending": summary["accounting"]["pending"] if summary else None,
        "time_to_detect": max(detect, default=None),
        "time_to_recover": max(recover, default=None),
        "restart_to_ready": restart_ready,
    })


def _kill_dissection(rig: Rig, probe, k: int) -> None:
    """SIGKILL the dissection process; the probe's supervisor must start a new one."""
    pids = probe.dissection_pids()
    metrics = probe.metrics()
    if not pids or metrics is None:
        rig.expect(f"a dissection process to kill (#{k})", False, "the probe had no dissection process running")
        return
    starts = metrics.get("probe_worker_starts_total", worker="0")
    t = rig.mark(f"kill -9 the dissection process {pids[0]} (#{k})", "fault")
    import os

    os.kill(pids[0], signal.SIGKILL)

    def replaced() -> bool:
        m = probe.metrics()
        return m is not None and m.get("probe_worker_starts_total", worker="0") > starts and bool(probe.dissection_pids())

    seconds = rig.wait_for("the supervisor started a new dissection process", replaced, 15, since=t, kind="recovered")
    m = probe.metrics()
    restarts = m.get("probe_supervisor_restarts_total", child="worker-0", strategy="restart") if m else None
    rig.expect(f"the supervisor restarts a killed dissection process (#{k})", seconds is not None and probe.running,
               f"new process after {seconds} s; supervisor restarts of worker-0: {restarts}", seconds=seconds, restarts=restarts)
    rig.figures.setdefault("dissection_restart_seconds", []).append(seconds)


if __name__ == "__main__":
    raise SystemExit(main_for("probe_crash"))

"""memory_exhaustion: a flood while the Core does not answer, under a tight memory budget.

The probe replays DNS traffic in real time, with a flood in the middle (tens of
thousands of transactions at once), under a memory budget of 100 MB for the delivery
process and its dissection process together. The spool holds only 1 MB and the Core
stops answering (SIGSTOP) before the flood, so the backlog can only grow in memory;
the memory tier is configured large enough to hold the whole flood, so only the
resources monitor stands between the flood and the budget. It caps the memory tier to
the room the budget leaves and sheds when memory passes 85 %: the oldest events are
dropped and counted (``memory_budget``, ``buffer_full``), reported to the Core, the
alerts fire, and resident memory (sampled from outside every 50 ms) stays under the
budget. When the Core answers again the backlog drains, the memory tier's cap grows
back and the alerts clear.
"""

from __future__ import annotations

import functools
import signal
import threading

from scenarios.framework import PROBE_ID, Rig, main_for
from scenarios.traffic import write_dns_pcap

TITLE = "a tight memory budget and a flood"
CLAIM = (
    "Resource exhaustion, memory (docs/operations.md, Resources): resident memory stays under the budget under a "
    "flood; what does not fit is dropped oldest first and counted by reason (memory_budget, buffer_full) and "
    "reported to the Core; the probe keeps running; the drops and resource alerts fire and clear; when the "
    "pressure ends the buffers grow back."
)

BUDGET_MB = 100
MEMORY_EVENTS = 2_000_000


def process_group_memory(probe) -> int:
    """Anonymous resident bytes of the delivery process and its dissection processes (what the budget counts)."""
    from actors.resources import process_memory

    if not probe.running:
        return 0
    total = 0
    for pid in [probe.pid, *probe.dissection_pids()]:
        try:
            total += process_memory(pid)[0]
        except (OSError, ValueError):
            continue
    return total


def run(rig: Rig) -> None:
    quick = rig.quick
    lead, flood, tail = (2.0, 45_000, 120.0) if quick else (5.0, 120_000, 300.0)
    rate = 300
    per_flow = 100
    phases = [(int(lead * rate), rate), (flood, 1e6), (int(tail * rate), rate)]
    pcap = write_dns_pcap(rig.work / "flood.pcap", 0, tag="flood", per_flow=per_flow, phases=phases)
    rig.figures["traffic"] = {"lead_seconds": lead, "flood_transactions": flood, "tail_seconds": tail, "rate": rate}
    key = rig.probe_key()
    core = rig.start_core(enroll_key=key)
    config = rig.write_config(f"ws://{core.address}", {
        "buffer": {"disk_quota_mb": 1, "memory_events": MEMORY_EVENTS, "memory_bytes": 2_000_000_000},
        "resources": {"memory_mb": BUDGET_MB, "check_interval": 0.2},
        "alerts": {"drops_window": 2.0},
        "uplink": {"ack_timeout": 120.0},
        "dissect": {"udp_idle_timeout": 1.0},
    })
    probe = rig.make_probe(config, ["--pcap", str(pcap), "--pace", "realtime"])

    peak = {"bytes": 0, "now": 0}
    done = threading.Event()

    def watch_memory() -> None:
        while not done.wait(0.05):
            used = process_group_memory(probe)
            peak["now"] = used
            peak["bytes"] = max(peak["bytes"], used)

    watcher = threading.Thread(target=watch_memory, name="memory-watch", daemon=True)
    rig.defer("stop the memory watch", lambda: (done.set(), watcher.join(5)))
    rig.extra_sample = lambda: {"memory_mb": round(peak["now"] / 2**20, 1)}
    rig.start_sampling()
    probe.start()
    watcher.start()
    rig.mark(f"probe started: budget {BUDGET_MB} MB, spool 1 MB, memory tier up to {MEMORY_EVENTS} events")

    metric = probe.metric

    def total(name: str) -> float:
        m = probe.metrics()
        return m.total(name) if m is not None else 0.0

    stored = functools.partial(core.stored, PROBE_ID)

    rig.wait_for("events reach the Core", lambda: stored() > 0, 30, kind="step")
    cap_before = metric("probe_buffer_limit_events", tier="memory")
    core.signal(signal.SIGSTOP)
    rig.defer("let the Core run again", lambda: core.running and core.signal(signal.SIGCONT))
    rig.mark("the Core stops answering (SIGSTOP)", "fault")
    lead_packets = 2 * phases[0][0]
    flood_start = rig.wait_for("the flood reaches the probe", lambda: (metric("probe_packets_captured_total") or 0) > lead_packets + 2000, 30, kind="fault")
    t_flood = rig.now() if flood_start is None else rig.marks[-1]["t"]
    detect = rig.wait_for("the first events shed or refused for memory", lambda: total("probe_events_dropped_total") > 0, 60, since=t_flood)
    flood_packets = 2 * (phases[0][0] + phases[1][0])
    rig.wait_for("the flood is dissected", lambda: (metric("probe_packets_captured_total") or 0) >= flood_packets, 120, kind="step")
    rig.sleep(1.0)
    at_resume = {
        "dropped": probe.metrics().by("probe_events_dropped_total", "reason") if probe.metrics() else {},
        "sheds": total("probe_resource_sheds_total"),
        "limit": metric("probe_buffer_limit_events", tier="memory"),
        "alerts": sorted(a for a, v in (probe.metrics().by("probe_alerts_raised_total", "alert").items() if probe.metrics() else []) if v),
        "restarts": {c: metric("probe_supervisor_restarts_total", child=c, strategy="restart") for c in ("buffer", "signer", "uplink")},
        "running": probe.running,
    }
    core.signal(signal.SIGCONT)
    t_resume = rig.mark("the Core answers again (SIGCONT)", "restore")

    def recovered() -> bool:
        m = probe.metrics()
        if m is None:
            return False
        active = set(m.active("probe_alerts_active", "alert"))
        return m.get("probe_events_pending") < 2 * rate and not active & {"drops", "resource:memory", "buffer_utilization:memory"}

    recover = rig.wait_for("backlog drained, memory tier cap restored, alerts cleared", lambda: recovered() or not probe.running, 90,
                           since=t_resume, kind="recovered")
    recover = recover if probe.running else None
    dropped_after_recovery = total("probe_events_dropped_total")
    rig.sleep(3.0 if quick else 10.0)
    dropped_later = total("probe_events_dropped_total")
    cap_after = metric("probe_buffer_limit_events", tier="memory")
    memory_after = peak["now"]
    summary = rig.stop_probe()
    done.set()
    rig.stop_sampling()

    rig.expect(f"resident memory stays under the budget ({BUDGET_MB} MB)", 0 < peak["bytes"] < BUDGET_MB << 20,
               f"peak {peak['bytes'] / 2**20:.1f} MB of anonymous memory (delivery + dissection), sampled every 50 ms",
               peak_mb=round(peak["bytes"] / 2**20, 1), budget_mb=BUDGET_MB)
    dropped = {k: v for k, v in at_resume["dropped"].items() if v}
    rig.expect("what does not fit is dropped and counted by reason (memory_budget, buffer_full)",
               bool(dropped) and set(dropped) <= {"memory_budget", "buffer_full"}, f"dropped {dropped}", dropped=dropped)
    rig.expect_time("time to detect: flood reaching the probe to the first drop", detect, 15.0)
    rig.expect("the memory tier's cap was lowered to fit the budget",
               at_resume["limit"] is not None and at_resume["limit"] < MEMORY_EVENTS, f"cap {at_resume['limit']} events (configured {MEMORY_EVENTS})")
    rig.expect("the probe keeps running through the flood, no child restarted",
               at_resume["running"] and not any(at_resume["restarts"].values()), f"running: {at_resume['running']}; restarts {at_resume['restarts']}; sheds {at_resume['sheds']}")
    rig.expect("the drops alert fired", "drops" in at_resume["alerts"], f"alerts raised: {at_resume['alerts']}")
    rig.expect_time("time to recover: Core back to backlog drained, cap restored, alerts cleared", recover, 45.0)
    rig.expect("after the flood, traffic at the normal rate is delivered without drops",
               recover is not None and dropped_later == dropped_after_recovery,
               f"dropped {dropped_after_recovery:.0f} when recovered, {dropped_later:.0f} {3.0 if quick else 10.0:g} s later; memory tier cap "
               f"{cap_before} before the flood, {at_resume['limit']} at its height, {cap_after} after, with {memory_after / 2**20:.1f} MB resident "
               "(CPython keeps freed memory for reuse)", cap_before=cap_before, cap_after=cap_after)
    account = rig.core_account(core)
    flooded = phases[0][0] + phases[1][0]
    seen = rig.check_transactions(core, "flood", per_flow=per_flow, lost=int(summary["accounting"]["dropped_total"]) if summary else 0)
    if summary is not None:
        kinds = summary["events_by_kind"]
        rig.expect("every transaction of the flood became an event (a replay is lossless at the source; drops come after)",
                   kinds.get("dns", 0) >= flooded, f"dns events created {kinds.get('dns')}, transactions up to the flood's end {flooded}; "
                   f"{seen} of them stored at the Core")
    rig.check_accounting(summary, account)
    rig.summary_figures(summary, time_to_detect=detect, time_to_recover=recover, peak_memory_mb=round(peak["bytes"] / 2**20, 1))

if __name__ == "__main__":
    raise SystemExit(main_for("memory_exhaustion"))

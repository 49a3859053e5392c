"""buffer_exhaustion: a Core outage longer than the probe's buffers can hold.

The probe replays DNS traffic in real time with a small spool (1 MB quota) and a small
memory tier. The Core process is stopped (SIGTERM: it is gone, connections are
refused) for longer than the two tiers can hold, then started again on the same
address. While it is down the probe keeps capturing, fills the spool, then the memory
tier, then drops the **oldest** events not yet sent, counting each (``buffer_full``)
and keeping the ranges as drop reports; its alerts fire. When the Core is back, the
probe reconnects, reports the dropped ranges (so the Core can explain every gap), then
delivers what it kept, oldest first.
"""

from __future__ import annotations

import functools
from scenarios.framework import PROBE_ID, Rig, main_for
from scenarios.traffic import query_name

TITLE = "an outage longer than the buffers"
CLAIM = (
    "Buffer exhaustion (docs/protocol.md, two-tier buffer): with spool and memory tier full the oldest events not in "
    "flight are dropped, counted (buffer_full) and reported to the Core; capture goes on; the buffer alerts and the "
    "drops alert fire; after the outage the Core can explain every missing sequence number and receives the rest."
)

MEMORY_EVENTS = 2000


def run(rig: Rig) -> None:
    quick = rig.quick
    rate = 1000
    warm, outage = (1.5, 7.0) if quick else (5.0, 30.0)
    args, _ = rig.dns_replay(warm + outage + 60.0, rate, "outage")
    key = rig.probe_key()
    core = rig.start_core(enroll_key=key)
    config = rig.write_config(f"ws://{core.address}", {
        "buffer": {"disk_quota_mb": 1, "memory_events": MEMORY_EVENTS},
        "alerts": {"drops_window": 2.0, "connection_failures_window": 5.0, "connection_failures_per_min": 24.0},
        "dissect": {"udp_idle_timeout": 2.0},
    })
    probe = rig.make_probe(config, args)
    rig.start_sampling()
    probe.start()
    rig.mark(f"probe started: spool 1 MB, memory tier {MEMORY_EVENTS} events, DNS at {rate}/s")

    metric = probe.metric

    def alerts() -> set[str]:
        m = probe.metrics()
        return set(m.active("probe_alerts_active", "alert")) if m is not None else set()

    stored = functools.partial(core.stored, PROBE_ID)

    rig.wait_for("events reach the Core", lambda: stored() > 0, 30, kind="step")
    rig.sleep(warm)
    last_before = max((int(e["query"].split(".", 1)[0][1:]) for e in core.export("dns")), default=-1)
    core.listen = core.address  # it comes back where the probe looks for it
    core.stop()
    t_down = rig.mark("the Core is stopped (outage)", "fault")
    disk_full = rig.wait_for("the spool is full", lambda: (metric("probe_buffer_utilization", tier="disk") or 0) >= 0.75, outage, since=t_down)
    detect = rig.wait_for("the first events dropped (buffer_full)", lambda: (metric("probe_events_dropped_total", reason="buffer_full") or 0) > 0,
                          max(0.5, outage - (rig.now() - t_down)), since=t_down)
    seen_alerts: set[str] = set()
    while rig.now() - t_down < outage:
        seen_alerts |= alerts()
        rig.sleep(0.25)
    during = {"packets": metric("probe_packets_captured_total"), "memory": metric("probe_buffer_events", tier="memory"),
              "dropped": metric("probe_events_dropped_total", reason="buffer_full"), "health": probe.health_check()}
    core.start()
    t_up = rig.mark("the Core is started again", "restore")
    reconnect = rig.wait_for("connected again", lambda: metric("probe_uplink_state", state="connected") == 1.0, 15, since=t_up)
    drained = rig.wait_for("the backlog is delivered", lambda: (metric("probe_events_pending") or 1e9) < rate, 60, since=t_up, kind="recovered")
    cleared = rig.wait_for("the alerts clear", lambda: not alerts() & {"drops", "buffer_utilization:disk", "buffer_utilization:memory", "connection_failures"},
                           30, since=t_up, kind="recovered")
    summary = rig.stop_probe()
    rig.stop_sampling()

    rig.expect_time("time to detect: outage to the first drop", detect, outage)
    rig.expect("the spool fills before anything is dropped", disk_full is not None and (detect is None or disk_full <= detect),
               f"spool full after {disk_full} s, first drop after {detect} s")
    rig.expect("the memory tier stays within its bound", during["memory"] is not None and during["memory"] <= MEMORY_EVENTS,
               f"{during['memory']} events in memory (bound {MEMORY_EVENTS})")
    rig.expect("capture goes on during the outage", bool(during["packets"]), f"packets {during['packets']}")
    wanted = {"buffer_utilization:disk", "buffer_utilization:memory", "drops", "connection_failures"}
    rig.expect("the buffer, drops and connection alerts fire", wanted <= seen_alerts, f"seen: {sorted(seen_alerts)}")
    rig.expect("probe health stays healthy (running, degraded)", during["health"][0] == 0, during["health"][1])
    rig.expect_time("time to reconnect after the Core is back", reconnect, 5.0)
    rig.expect_time("time to recover: Core back to the backlog delivered", drained, 30.0)
    rig.expect("the alerts clear", cleared is not None, f"after {cleared} s")
    account = rig.core_account(core)
    dropped = summary["accounting"]["dropped"] if summary else {}
    rig.expect("only buffer_full drops", set(dropped) == {"buffer_full"}, f"dropped {dropped}")
    # the oldest go first: what the Core misses of the outage is one block, older than what it kept after it.
    # Events in flight are never dropped, so some older ones may be kept before the block; and once the Core is
    # back, capture goes on into a full buffer while the backlog drains, so the oldest not yet sent (newer than
    # those just sent) may go too: small blocks after the first, no more than what was dropped after the restart.
    names = {e["query"] for e in core.export("dns")}
    highest = max((int(n.split(".", 1)[0][1:]) for n in names if ".outage." in n), default=-1)
    blocks: list[list[int]] = []
    for i in range(last_before + 1, highest + 1):
        if query_name(i, "outage") in names:
            continue
        if blocks and blocks[-1][1] == i - 1:
            blocks[-1][1] = i
        else:
            blocks.append([i, i])
    missing = sum(b - a + 1 for a, b in blocks)
    first = blocks[0][1] - blocks[0][0] + 1 if blocks else 0
    kept_after = highest - blocks[0][1] - (missing - first) if blocks else 0
    dropped_after = int(dropped.get("buffer_full", 0) - (during["dropped"] or 0))
    rig.expect("the oldest events are the ones dropped: one block during the outage, the newer ones kept",
               bool(blocks) and kept_after > 0 and missing - first <= dropped_after,
               f"{missing} transactions missing: t{blocks[0][0] if blocks else '-'}..t{blocks[0][1] if blocks else '-'} "
               f"holding {first}, then {len(blocks) - 1} more block(s) holding {missing - first} (events dropped after the "
               f"Core was back: {dropped_after}); {kept_after} newer ones kept after the first block",
               missing=missing, first_block=first, blocks=blocks[:5], dropped_after_restart=dropped_after)
    rig.check_transactions(core, "outage", lost=int(dropped.get("buffer_full", 0)))
    rig.check_accounting(summary, account)
    rig.summary_figures(summary, time_to_detect=detect, time_to_recover=drained, time_to_reconnect=reconnect,
                        dropped_during_outage=during["dropped"])


if __name__ == "__main__":
    raise SystemExit(main_for("buffer_exhaustion"))

"""Durable end-to-end delivery rate: event created -> signed -> committed to the spool -> sent ->
verified and committed by the Core -> acknowledged -> deleted from the spool.

    python3 benchmarks/delivery_e2e.py [--events 200000] [--batch 1000]

Prints events/s end to end (created -> the Core's ack of the last one), the latency of
events created at a steady rate, and the CPU each process spent per event. The goal is
at least 10,000 signed events/s with the reference Core on the same 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time

from delivery_common import Pipeline, conn_pool, cpu_seconds

GOAL = 10_000


def run(events: int, batch: int, root: str) -> dict[str, float]:
    pipe = Pipeline(root)
    pool = conn_pool()
    try:
        assert pipe.wait_delivered(10)
        core_cpu0 = cpu_seconds(pipe.core.proc.pid)
        self_cpu0 = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        start = time.perf_counter()
        fed = 0
        while fed < events:
            n = min(batch, events - fed)
            offset = fed % len(pool)
            chunk = (pool[offset:] + pool)[:n]
            pipe.feed("bench", fed, chunk)
            fed += n
        fed_at = time.perf_counter() - start
        if not pipe.wait_delivered(600):
            raise SystemExit("the Core did not acknowledge everything within 600 s")
        elapsed = time.perf_counter() - start
        core_cpu = cpu_seconds(pipe.core.proc.pid) - core_cpu0
        self_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - self_cpu0
        acc = pipe.buffer.accounts()
        assert acc.balanced and acc.pending == 0, acc
        time.sleep(1.2)  # the Core's next stats snapshot
        with open(os.path.join(pipe.core.data_dir, "stats.json")) as fh:
            counters = json.load(fh)["counters"]
        return {
            "events": events,
            "seconds": elapsed,
            "rate": events / elapsed,
            "created_rate": events / fed_at,
            "probe_cpu_us": self_cpu / events * 1e6,
            "core_cpu_us": core_cpu / events * 1e6,
            "delivered": acc.delivered,
            "commits": counters.get("commits", 0),
            "frames": counters.get("event_frames", 0),
        }
    finally:
        pipe.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per batch handed to the signer")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="dlv-bench-e2e-")
    try:
        r = run(args.events, args.batch, os.path.join(root, "run"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"events                 {r['events']} (conn events, batches of {args.batch})")
    print(f"end to end             {r['rate']:,.0f} events/s  (created -> Core's ack, {r['seconds']:.2f} s)")
    print(f"goal                   {GOAL:,} events/s: ratio {r['rate'] / GOAL:.2f}")
    print(f"CPU per event          delivery process {r['probe_cpu_us']:.0f} us, Core {r['core_cpu_us']:.0f} us")
    print(f"Core commits           {r['commits']:,.0f} for {r['frames']:,.0f} frames ({r['events'] / max(1, r['commits']):,.0f} events per LMDB commit)")
    print(f"load average           {os.getloadavg()[0]:.2f} (other work on this machine slows the figures)")


if __name__ == "__main__":
    main()

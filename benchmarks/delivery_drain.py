"""Drain rate of a backlog after an outage while live traffic continues.

    python3 benchmarks/delivery_drain.py [--backlog 1000000] [--live-rate 2000]

1. With the Core down, ``--backlog`` events are created, signed and committed to the
   spool (the outage).
2. The Core starts; the uplink reconnects and drains the spool oldest first while a
   live feed keeps creating ``--live-rate`` events/s.
3. Reported: the drain rate (backlog events acknowledged per second from reconnection
   until the last backlog event is acknowledged), the rate the live feed actually got
   into the buffer during the drain (does draining starve capture?), and how long the
   live events waited behind the backlog.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time

from delivery_common import Pipeline, conn_pool, cpu_seconds, free_port


class LiveFeed(threading.Thread):
    """Creates events at ``rate`` per second in batches of 100 until stopped."""

    def __init__(self, pipe: Pipeline, pool: list, first_ordinal: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.pipe, self.pool, self.ordinal, self.rate = pipe, pool, first_ordinal, rate
        self.fed = 0
        self.halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.halt.is_set():
            due = start + self.fed / self.rate
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
                continue
            offset = (self.ordinal + self.fed) % len(self.pool)
            self.pipe.feed("live", self.fed, (self.pool[offset:] + self.pool)[:100])
            self.fed += 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--live-rate", type=float, default=2000.0, help="events/s created during the drain")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="dlv-bench-drain-")
    port = free_port()
    pipe = Pipeline(
        os.path.join(root, "run"), core_listen=f"127.0.0.1:{port}", start_core=False, uplink={"backoff_max": 0.5}
    )
    pool = conn_pool()
    try:
        t0 = time.perf_counter()
        fed = 0
        while fed < args.backlog:
            n = min(1000, args.backlog - fed)
            offset = fed % len(pool)
            pipe.feed("backlog", fed, (pool[offset:] + pool)[:n])
            fed += n
        while not pipe.settled():
            time.sleep(0.01)
        built = time.perf_counter() - t0
        spool_mb = pipe.spool.file_bytes() / 1e6
        print(f"backlog                {args.backlog:,} events in the spool ({spool_mb:,.0f} MB on disk), built in {built:.1f} s ({args.backlog / built:,.0f} events/s signed and committed, Core down)")

        pipe.core.start()
        live = LiveFeed(pipe, pool, 0, args.live_rate)
        live.start()
        while pipe.metrics.gauge("uplink_state", state="connected") != 1.0:
            time.sleep(0.005)
        connected = time.perf_counter()
        core_cpu0 = cpu_seconds(pipe.core.proc.pid)
        marks = []
        next_mark = connected + 10
        while pipe.metrics.total("events_delivered_total") < args.backlog:
            time.sleep(0.01)
            if time.perf_counter() >= next_mark:
                marks.append((time.perf_counter() - connected, pipe.metrics.total("events_delivered_total")))
                next_mark += 10
        drained = time.perf_counter() - connected
        live_during = live.fed
        core_cpu = cpu_seconds(pipe.core.proc.pid) - core_cpu0
        live.halt.set()
        live.join()
        if not pipe.wait_delivered(300):
            raise SystemExit("the live events were not delivered within 300 s of the drain")
        tail = time.perf_counter() - connected - drained
        acc = pipe.buffer.accounts()
        assert acc.balanced and acc.pending == 0 and acc.dropped == {}, acc
        print(f"drain                  {args.backlog / drained:,.0f} events/s ({args.backlog:,} backlog events acknowledged {drained:.1f} s after reconnecting)")
        for at, done in marks:
            print(f"  after {at:5.0f} s        {done:>12,.0f} delivered")
        print(f"live feed              offered {args.live_rate:,.0f} events/s, got {live_during / drained:,.0f} events/s into the buffer during the drain ({live_during:,} events)")
        print(f"live delivered         {tail:.1f} s after the backlog (they queue behind it in sequence order)")
        print(f"Core CPU per event     {core_cpu / (args.backlog + live_during) * 1e6:.0f} us during the drain")
        print(f"accounting             created {acc.created:,} = delivered {acc.delivered:,} + dropped 0 + pending 0")
        print(f"load average           {os.getloadavg()[0]:.2f}")
    finally:
        pipe.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""An overloaded Core: the probe slows to the Core's rate, waits it out on disk, loses nothing.

The real Core process is rate-limited at runtime through its control file (no restart);
the probe side is the real signer, buffer and uplink actors fed at a steady rate.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from probe.core.overload import CONTROL_FILE, write_control
from tests.integration.delivery_rig import DeliveryRig, conn_events, core_stats, rss_anon

FEED_RATE = 3000  # events/s offered by "capture"
LIMIT = 600  # events/s the Core is limited to


class Feeder(threading.Thread):
    """Feeds conn events at FEED_RATE in 100-event batches until stopped."""

    def __init__(self, rig: DeliveryRig) -> None:
        super().__init__(daemon=True)
        self.rig = rig
        self.fed = 0
        self.halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.halt.is_set():
            due = start + self.fed / FEED_RATE
            if time.monotonic() < due:
                time.sleep(due - time.monotonic())
                continue
            self.rig.feed("load", self.fed, conn_events(100, self.fed))
            self.fed += 100


def sent_rate(rig: DeliveryRig, seconds: float) -> float:
    before = rig.metrics.total("events_sent_total")
    time.sleep(seconds)
    return (rig.metrics.total("events_sent_total") - before) / seconds


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_rate_limited_core_slows_the_probe_to_its_rate_and_nothing_is_lost(tmp_path):
    memory_bytes = 4 << 20
    with DeliveryRig(
        str(tmp_path),
        quota=256 << 20,
        memory_events=2000,
        memory_bytes=memory_bytes,
        core_args=("--credit", "5000", "--high-watermark", "3000", "--low-watermark", "1000"),
    ) as rig:
        control = os.path.join(rig.core.data_dir, CONTROL_FILE)
        feeder = Feeder(rig)
        feeder.start()
        try:
            time.sleep(1.0)
            unlimited = sent_rate(rig, 2.0)
            rss_before = rss_anon()
            write_control(control, {"rate_limit": LIMIT})  # the Core re-reads it within a quarter second
            time.sleep(3.0)  # the queue fills past the high watermark, backpressure comes on
            bp_samples, memory_samples = [], []
            limited = 0.0
            for _ in range(4):
                limited = sent_rate(rig, 1.5)
                bp_samples.append(rig.metrics.total("uplink_backpressure_seconds_total"))
                memory_samples.append((len(rig.buffer.memory), rig.buffer.memory.bytes_used))
            rss_growth = rss_anon() - rss_before
            backlog = rig.buffer.pending
            core_live = core_stats(rig.core.data_dir)
        finally:
            feeder.halt.set()
            feeder.join()
        write_control(control, {"rate_limit": None})
        assert rig.wait_delivered(timeout=60), "the backlog drains once the Core is back to full speed"
        accounts = rig.buffer.accounts()
        account = rig.core_account()
        time.sleep(1.5)
        core_after = core_stats(rig.core.data_dir)

    print(
        f"send rate {unlimited:.0f}/s -> {limited:.0f}/s under a {LIMIT}/s limit; backpressure {bp_samples} s; "
        f"memory tier {memory_samples}; heap +{rss_growth >> 10} KiB for a backlog of {backlog} events"
    )
    # unhindered, the probe sends what capture makes (as far as this machine keeps up)
    assert unlimited >= 2 * LIMIT
    assert limited == pytest.approx(LIMIT, rel=0.3), f"limited to {LIMIT}/s, the probe sends {limited:.0f}/s"
    assert core_live["backpressure"]["on"] and core_live["overload"]["rate_limit"] == LIMIT
    assert core_live["commit_rate"] == pytest.approx(LIMIT, rel=0.3)
    assert all(b > a for a, b in zip(bp_samples, bp_samples[1:])), f"time in backpressure grows: {bp_samples}"
    assert bp_samples[-1] >= 3.0
    assert all(n <= 2000 and size <= memory_bytes for n, size in memory_samples), memory_samples
    backlog_bytes = backlog * 500
    assert backlog_bytes > 2 * memory_bytes, "the backlog outgrew the memory tier: it waited on disk"
    assert rss_growth < backlog_bytes / 2, f"heap grew {rss_growth >> 20} MiB for a {backlog_bytes >> 20} MiB backlog"
    # nothing lost while the disk quota held
    assert accounts.dropped == {} and accounts.pending == 0 and accounts.balanced
    assert accounts.created == accounts.delivered == feeder.fed == account.stored
    assert account.gaps == 0 and account.duplicates == 0
    assert not core_after["backpressure"]["on"] and core_after["backpressure"]["seconds"] >= 3.0

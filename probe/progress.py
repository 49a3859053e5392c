"""Progress of a run on standard error: a bar on a terminal, a plain line every few seconds otherwise.

The dissection processes report their counters about once a second (bytes read and the
file's size for a replay, packets and drops for a live capture); this module turns them
into one line: packets, share of the file, rate and time left, or for a live capture
the rate and every kind of drop so far.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, TextIO

#: seconds between redraws of the bar / between plain lines
BAR_PERIOD = 0.5
LINE_PERIOD = 5.0
BAR_WIDTH = 24


def _count(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    return f"{n:.0f}"


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe(counters: dict[str, int], rate: float, elapsed: float, *, bar: bool, live: bool = False) -> str:
    """One progress line from the run's counters and the current packet rate."""
    packets = counters.get("packets", 0)
    size = counters.get("capture_file_size", 0)
    parts = []
    if not live and not size:
        return "starting"
    if not live:
        done = min(1.0, counters.get("capture_bytes_done", counters.get("capture_bytes_read", 0)) / size)
        if bar:
            filled = int(done * BAR_WIDTH)
            parts.append("[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]")
        parts.append(f"{done * 100:5.1f}%")
        parts.append(f"{_count(packets)} packets")
        parts.append(f"{_count(rate)} packets/s")
        if 0 < done < 1 and elapsed > 0:
            parts.append(f"ETA {_duration(elapsed * (1 - done) / done)}")
        elif done >= 1:
            parts.append("all read; finishing")
    else:
        parts.append(f"{_count(packets)} packets")
        parts.append(f"{_count(rate)} packets/s")
        parts.append(f"{_count(counters.get('flows', 0))} flows")
        drops = counters.get("kernel_drops", 0)
        source = sum(v for k, v in counters.items() if k.startswith("capture_dropped:"))
        parts.append(f"drops: kernel {_count(drops)}, at source {_count(source)}")
        parts.append(f"up {_duration(elapsed)}")
    return "  ".join(parts)


class ProgressReporter:
    """Redraws the progress line in a thread until stopped; clears the bar at the end."""

    def __init__(
        self,
        counters: Callable[[], dict[str, int]],
        stream: TextIO,
        *,
        live: bool = False,
        bar: bool | None = None,
        period: float | None = None,
    ) -> None:
        self.counters = counters
        self.live = live
        self.stream = stream
        self.bar = stream.isatty() if bar is None else bar
        self.period = period or (BAR_PERIOD if self.bar else LINE_PERIOD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._started = 0.0
        self._drawn = False

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if self.bar and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _run(self) -> None:
        last_packets = 0
        last_at = self._started
        rate = 0.0
        while not self._stop.wait(self.period):
            now = time.monotonic()
            counters = self.counters()
            packets = counters.get("packets", 0)
            if now > last_at:
                current = max(0, packets - last_packets) / (now - last_at)
                rate = current if rate == 0 else 0.5 * rate + 0.5 * current
            last_packets, last_at = packets, now
            line = describe(counters, rate, now - self._started, bar=self.bar, live=self.live)
            if self.bar:
                self.stream.write("\r\x1b[K" + line)
                self._drawn = True
            else:
                self.stream.write("progress: " + line + "\n")
            self.stream.flush()

"""The file capture actor's pacing: frames reach the dissector at capture time / speed factor."""

from __future__ import annotations

import time

import pykka
import pytest

from actors.base import SupervisedActor, handles
from actors.capture import FileCaptureActor, pace_factor
from actors.credit import Window
from actors.messages import FrameBatch
from actors.supervisor import Directory
from tests.probe.test_worker_process import udp_frame, write_pcap


class Arrivals(SupervisedActor):
    """Stands where the dissector stands: notes when each frame arrives, gives credit back."""

    name = "dissector"

    def __init__(self, window: Window) -> None:
        super().__init__(None)
        self.window = window
        self.times: list[tuple[float, float]] = []  # (capture ts, arrival)
        self.final = False

    @handles(FrameBatch)
    def on_frames(self, batch: FrameBatch) -> None:
        now = time.monotonic()
        self.times += [(f[0], now) for f in batch.frames]
        self.final = self.final or batch.final
        self.window.release()

    @handles(str)
    def on_question(self, _: str) -> tuple[list, bool]:
        return list(self.times), self.final


def replay(path, pace: str) -> list[tuple[float, float]]:
    window = Window(4)
    directory = Directory()
    arrivals = Arrivals.start(window)
    directory.publish("dissector", arrivals)
    capture = FileCaptureActor.start(None, path=str(path), directory=directory, downstream=window, batch_packets=64, on_error=print, pace=pace)
    try:
        deadline = time.monotonic() + 20
        while not arrivals.ask("?")[1]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return arrivals.ask("?")[0]
    finally:
        capture.stop()
        arrivals.stop()
        pykka.ActorRegistry.stop_all()


@pytest.mark.parametrize("pace,factor", [("realtime", 1.0), ("4", 4.0), ("fast", None)])
def test_frames_arrive_at_capture_time_over_the_factor(tmp_path, pace, factor):
    path = tmp_path / "two_seconds.pcap"
    write_pcap(path, [(1_700_000_000.0 + i * 0.2, udp_frame(40000 + i)) for i in range(11)])  # 2 s of capture
    times = replay(path, pace)
    assert len(times) == 11
    first_ts, first_at = times[0]
    lags = [(at - first_at) - (ts - first_ts) / factor for ts, at in times] if factor else []
    if factor is None:
        assert times[-1][1] - first_at < 0.3  # as fast as it can
    else:
        assert all(-0.01 <= lag < 0.3 for lag in lags), lags  # never early, never much late


def test_pace_values():
    assert pace_factor("fast") is None and pace_factor("realtime") == 1.0 and pace_factor("2.5") == 2.5
    with pytest.raises(ValueError):
        pace_factor("0")

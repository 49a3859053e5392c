"""The ring capture actor on a real veth: drops at the source when the dissector lags, and
survives its interface vanishing and coming back, under a real supervisor."""

from __future__ import annotations

import os
import time

import pykka
import pytest

from actors.base import SupervisedActor, handles
from actors.capture import StopCapture
from actors.credit import Window
from actors.messages import FrameBatch, Tick
from actors.ring_capture import RingCaptureActor, RingSettings
from actors.supervisor import ChildSpec, Directory, Supervisor, SupervisorSettings
from probe.interfaces import LinkWatcher
from tests.integration.netlab import NetLab

pytestmark = [pytest.mark.netns]

if os.geteuid() != 0:  # pragma: no cover
    pytest.skip("live capture tests need root", allow_module_level=True)


class Recorder(SupervisedActor):
    """Stands where the dissector stands: keeps the batches and gives the credit back."""

    name = "dissector"

    def __init__(self, window: Window) -> None:
        super().__init__(None)
        self.window = window
        self.frames: list = []
        self.final = False

    @handles(FrameBatch)
    def on_frames(self, batch: FrameBatch) -> None:
        self.frames += batch.frames
        self.final = self.final or batch.final
        self.window.release()

    @handles(Tick)
    def on_tick(self, tick: Tick) -> None:
        pass

    @handles(str)
    def on_question(self, question: str) -> tuple[int, bool]:
        return len(self.frames), self.final


def until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def rig():
    with NetLab() as lab:
        watcher = LinkWatcher(lab.capture)
        window = Window(2)
        directory = Directory()
        recorder = Recorder.start(window)
        directory.publish("dissector", recorder)
        counters: dict[str, int] = {}
        settings = RingSettings(interface=lab.capture, block_size=1 << 16, block_count=16, block_timeout_ms=10, batch_packets=32)

        def start(sup):
            return RingCaptureActor.start(sup, settings=settings, link=watcher, directory=directory, downstream=window, counters=counters)

        supervisor = Supervisor.start([ChildSpec("capture", start)], directory, SupervisorSettings(backoff_initial=0.05))
        try:
            until(lambda: counters.get("capture_open") == 1)
            yield lab, window, directory, recorder, counters
        finally:
            supervisor.stop(block=True, timeout=10)
            recorder.stop(block=True, timeout=10)
            watcher.close()
    pykka.ActorRegistry.stop_all(block=True, timeout=5)


def _drain_and_stop(window, directory, recorder, counters) -> int:
    window.release()
    window.release()  # the dissector catches up: what the capture and the ring held goes through
    directory.tell("capture", StopCapture())
    until(lambda: recorder.ask("?")[1])
    until(lambda: counters.get("capture_open") == 0)
    return recorder.ask("?")[0]


def test_a_burst_while_the_dissector_lags_waits_in_the_ring_and_is_not_lost(rig):
    lab, window, directory, recorder, counters = rig
    assert window.acquire(0) and window.acquire(0)  # the dissector is busy: no credit at all
    sent = lab.send_udp(20, 15, rate=20000)  # 300 packets: well inside half the ring
    time.sleep(0.5)
    assert recorder.ask("?")[0] == 0
    got = _drain_and_stop(window, directory, recorder, counters)
    assert got == sent == 300
    assert "capture_dropped:window" not in counters and counters["kernel_drops"] == 0


def test_a_long_lag_drops_whole_blocks_at_the_source_never_in_the_kernel(rig):
    lab, window, directory, recorder, counters = rig
    assert window.acquire(0) and window.acquire(0)
    sent = lab.send_udp(50, 100, rate=25000)  # 5000 packets: more than half the ring holds
    until(lambda: counters.get("capture_dropped:window", 0) > 0)
    got = _drain_and_stop(window, directory, recorder, counters)
    assert got + counters["capture_dropped:window"] == sent == 5000
    assert got > 32 * 2  # besides the batch waiting for credit, the ring's backlog came through
    assert counters["kernel_drops"] == 0 and counters["kernel_packets"] == sent


def test_the_interface_vanishing_is_a_transient_failure_and_its_return_a_restart(rig):
    lab, window, directory, recorder, counters = rig
    lab.send_udp(2, 5)
    until(lambda: recorder.ask("?")[0] == 10)
    lab.remove_link()
    until(lambda: counters.get("capture_failures:interface_vanished") == 1)
    time.sleep(0.5)
    assert counters.get("capture_open") == 0 and counters.get("capture_starts") == 2  # replacement waits
    lab.recreate_link()
    until(lambda: counters.get("capture_open") == 1)
    lab.send_udp(3, 5, first_sport=41000)
    until(lambda: recorder.ask("?")[0] == 25)
    assert counters["capture_restarts"] == 1 and sum(v for k, v in counters.items() if k.startswith("capture_failures:")) == 1

"""The supervisor with real failing pykka actors: each strategy, restart intensity, escalation."""

from __future__ import annotations

import threading
import time

import pykka
import pytest

from actors.base import SupervisedActor, handles
from actors.metrics import Metrics
from actors.supervisor import ChildSpec, Directory, FailureReport, Supervisor, SupervisorHooks, SupervisorSettings, Strategy, strategy_for
from protocols.errors import IdentityError, ResourceError, TransientError


class Work:
    def __init__(self, n: int) -> None:
        self.n = n


class Boom:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Worker(SupervisedActor):
    name = "worker"
    DATA_MESSAGES = (Work,)
    starts = 0

    def __init__(self, supervisor, done: list, gate: threading.Event | None = None) -> None:
        super().__init__(supervisor)
        self.done = done
        self.gate = gate

    def start_child(self) -> None:
        type(self).starts += 1

    @handles(Work)
    def on_work(self, work: Work) -> None:
        self.done.append(work.n)

    @handles(Boom)
    def on_boom(self, boom: Boom) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        raise boom.error


@pytest.fixture
def tree():
    done: list[int] = []
    events: dict[str, list] = {"halt": [], "shed": [], "fatal": []}
    directory = Directory()
    gate = threading.Event()
    Worker.starts = 0
    sup = Supervisor.start(
        [ChildSpec("worker", lambda s: Worker.start(s, done, gate))],
        directory,
        SupervisorSettings(max_restarts=3, restart_window=60, backoff_initial=0.01, backoff_max=0.05, max_tree_restarts=1),
        SupervisorHooks(halt=events["halt"].append, shed=events["shed"].append, fatal=events["fatal"].append),
    )
    yield sup, directory, done, events, gate
    sup.stop()
    pykka.ActorRegistry.stop_all()


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_strategy_table():
    assert strategy_for(TransientError("x")) is Strategy.RESTART
    assert strategy_for(IdentityError("x")) is Strategy.HALT
    assert strategy_for(ResourceError("x")) is Strategy.SHED
    assert strategy_for(MemoryError()) is Strategy.SHED
    assert strategy_for(KeyError("bug")) is Strategy.RESTART


def test_transient_failure_restarts_and_keeps_queued_work(tree):
    sup, directory, done, events, gate = tree
    directory.tell("worker", Boom(TransientError("link down")))
    for n in range(5):
        directory.tell("worker", Work(n))  # queued behind the failing message
    gate.set()
    assert wait_for(lambda: done == [0, 1, 2, 3, 4])
    assert Worker.starts == 2
    assert sup.ask("stats")["restarts"] == {"worker:restart": 1}


def test_identity_failure_halts_and_resource_failure_sheds(tree):
    sup, directory, done, events, gate = tree
    gate.set()
    directory.tell("worker", Boom(IdentityError("cert expired")))
    assert wait_for(lambda: events["halt"] and Worker.starts == 2)
    directory.tell("worker", Boom(ResourceError("map full", reason="map_full")))
    assert wait_for(lambda: events["shed"] == ["map_full"] and Worker.starts == 3)
    directory.tell("worker", Work(7))
    assert wait_for(lambda: done == [7])


def test_restart_storm_escalates_then_gives_up(tree):
    sup, directory, done, events, gate = tree
    gate.set()
    for _ in range(20):
        directory.tell("worker", Boom(TransientError("flapping")), wait=5)
        time.sleep(0.08)
        if events["fatal"]:
            break
    assert wait_for(lambda: events["fatal"])
    stats = sup.ask("stats")
    assert stats["state"] == "failed"
    assert stats["restarts"].get("tree:restart") == 1


def test_resource_exhaustion_in_any_form_sheds():
    import errno

    import lmdb

    assert strategy_for(OSError(errno.ENOSPC, "No space left on device")) is Strategy.SHED
    assert strategy_for(lmdb.MapFullError("mdb_put: MDB_MAP_FULL")) is Strategy.SHED
    assert strategy_for(OSError(errno.ECONNREFUSED, "refused")) is Strategy.RESTART


class Started:
    """Start times of the Worker instances."""

    times: list[float] = []


class TimedWorker(Worker):
    def start_child(self) -> None:
        Started.times.append(time.monotonic())


def test_restart_backoff_doubles_per_child():
    Started.times = []
    directory = Directory()
    metrics = Metrics()
    sup = Supervisor.start(
        [ChildSpec("worker", lambda s: TimedWorker.start(s, []))],
        directory,
        SupervisorSettings(max_restarts=5, restart_window=60, backoff_initial=0.2, backoff_max=5, max_tree_restarts=1),
        metrics=metrics,
    )
    try:
        for expected in (2, 3, 4):
            directory.tell("worker", Boom(TransientError("flapping", reason="flap")))
            assert wait_for(lambda: len(Started.times) == expected)
        gaps = [b - a for a, b in zip(Started.times, Started.times[1:])]
        # each restart waits longer: 0.2 s, 0.4 s, 0.8 s (plus the time to notice the failure)
        assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8
        assert max(gaps) < 5
        assert metrics.counter("supervisor_restarts_total", child="worker", strategy="restart") == 3
        assert metrics.counter("supervisor_failures_total", child="worker", strategy="restart", reason="flap") == 3
    finally:
        sup.stop()
        pykka.ActorRegistry.stop_all()


def test_a_reported_resource_error_sheds_without_a_restart(tree):
    sup, directory, done, events, gate = tree
    gate.set()
    for _ in range(10):  # reports never count towards the restart intensity
        sup.tell(FailureReport("worker", ResourceError("memory over budget", reason="memory_budget")))
    assert wait_for(lambda: len(events["shed"]) == 10)
    assert events["shed"] == ["memory_budget"] * 10
    stats = sup.ask("stats")
    assert Worker.starts == 1 and stats["state"] == "running" and stats["tree_restarts"] == 0
    directory.tell("worker", Work(3))
    assert wait_for(lambda: done == [3])


def test_the_fatal_message_names_the_child_and_its_last_failure(tree):
    sup, directory, done, events, gate = tree
    gate.set()
    for _ in range(20):
        directory.tell("worker", Boom(TransientError("link down", reason="link_down")), wait=5)
        time.sleep(0.08)
        if events["fatal"]:
            break
    assert wait_for(lambda: events["fatal"])
    message = events["fatal"][0]
    assert "child worker failed more than 3 times in 60 s" in message
    assert "last failure: link_down: link down" in message


def test_repeated_identity_halts_never_escalate(tree):
    """Halt means halt until an operator acts: refusals after each reload must not exit the probe."""
    sup, directory, done, events, gate = tree
    gate.set()
    for _ in range(8):  # more than max_restarts=3 within the window
        directory.tell("worker", Boom(IdentityError("refused again")), wait=5)
        time.sleep(0.05)
    assert wait_for(lambda: len(events["halt"]) == 8)
    directory.tell("worker", Work(1), wait=5)
    assert wait_for(lambda: done == [1])
    assert not events["fatal"]
    assert sup.ask("stats")["state"] == "running"

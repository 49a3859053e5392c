"""The console server under its real supervisor, with a small backend of its own: a command
that raises gets an error answer, a bug in the console thread restarts the console only."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pykka
import pytest

from actors.console import Command, ConsoleActor, ConsoleSettings, EventTap, Param
from actors.metrics import Metrics
from actors.supervisor import ChildSpec, Directory, Supervisor, SupervisorSettings
from probe.console_client import ConsoleClient, ConsoleError, ConsoleUnavailable
from tests.console.running_probe import wait_for


class Backend:
    """Two commands, one of them broken; ``tick`` raises once when asked to (a bug in the loop)."""

    def __init__(self) -> None:
        self.explode = threading.Event()

    def commands(self) -> dict[str, Command]:
        return {
            "echo": Command("echo", "answer x", lambda args: {"x": args["x"]}, (Param("x", "int", 0, "a number"),)),
            "broken": Command("broken", "always fails", self._broken),
        }

    def greeting(self) -> dict[str, Any]:
        return {"probe_id": "test-probe"}

    def tick(self) -> None:
        if self.explode.is_set():
            self.explode.clear()
            raise RuntimeError("a bug in the console's housekeeping")

    def _broken(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ratio": 1 / 0}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Backend, str, pykka.ActorRef, Metrics]]:
    backend, metrics = Backend(), Metrics()
    path = str(tmp_path / "console.sock")
    settings = ConsoleSettings(path=path)
    spec = ChildSpec("console", lambda sup: ConsoleActor.start(sup, settings=settings, backend=backend, tap=EventTap(), metrics=metrics))
    supervisor = Supervisor.start([spec], Directory(), SupervisorSettings(backoff_initial=0.01))
    try:
        wait_for(lambda: Path(path).exists())
        yield backend, path, supervisor, metrics
    finally:
        supervisor.stop()


def test_a_command_that_raises_gets_an_error_and_the_connection_goes_on(served: tuple) -> None:
    _, path, _, metrics = served
    with ConsoleClient(path, timeout=10) as client:
        with pytest.raises(ConsoleError) as err:
            client.call("broken")
        assert err.value.code == "failed" and err.value.message == "broken failed: ZeroDivisionError: division by zero"
        assert client.call("echo", x=5) == {"x": 5}
    assert metrics.counter("console_command_failures_total", command="broken") == 1


def test_a_bug_in_the_console_thread_restarts_the_console_and_nothing_else(served: tuple) -> None:
    backend, path, supervisor, _ = served
    client = ConsoleClient(path, timeout=10)
    backend.explode.set()
    with pytest.raises(ConsoleUnavailable):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # answered until the thread fails, then closed
            client.call("echo", x=1)
            time.sleep(0.05)
    client.close()

    def connect() -> ConsoleClient | None:
        try:
            return ConsoleClient(path, timeout=10)
        except ConsoleUnavailable:
            return None

    with wait_for(connect) as again:
        assert again.greeting["probe_id"] == "test-probe" and again.call("echo", x=2) == {"x": 2}
    stats = supervisor.ask("stats")
    assert stats["restarts"] == {"console:restart": 1} and stats["state"] == "running"

"""A data message whose handler fails is handed to the replacement actor, not lost."""

from __future__ import annotations

import pykka

from actors.base import SupervisedActor, handles
from actors.supervisor import ChildSpec, Directory, Supervisor, SupervisorHooks
from protocols.errors import IdentityError
from tests.integration.identity_rig import wait_for


class Batch:
    def __init__(self, n: int) -> None:
        self.n = n


class FailsOnce(SupervisedActor):
    name = "worker"
    DATA_MESSAGES = (Batch,)
    failed = False

    def __init__(self, supervisor, done: list) -> None:
        super().__init__(supervisor)
        self.done = done

    @handles(Batch)
    def on_batch(self, batch: Batch) -> None:
        if not FailsOnce.failed:
            FailsOnce.failed = True
            raise IdentityError("key went bad", reason="key_corrupt")
        self.done.append(batch.n)


def test_the_batch_being_handled_when_the_actor_failed_reaches_its_replacement():
    done: list[int] = []
    halts: list[str] = []
    directory = Directory()
    FailsOnce.failed = False
    sup = Supervisor.start([ChildSpec("worker", lambda s: FailsOnce.start(s, done))], directory, hooks=SupervisorHooks(halt=halts.append))
    try:
        directory.tell("worker", Batch(1))
        directory.tell("worker", Batch(2))
        assert wait_for(lambda: done == [1, 2], timeout=5)
        assert len(halts) == 1
    finally:
        sup.stop()
        pykka.ActorRegistry.stop_all()

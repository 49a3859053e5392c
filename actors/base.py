"""The base of every supervised actor: typed message dispatch and failure hand-off.

pykka has no supervision of its own: an exception in a ``tell``ed message stops the
actor and calls ``on_failure``. Here ``on_failure`` (and a failing ``on_start``) tells
the supervisor, handing over the data messages the actor had not finished, so that its
replacement can take them and nothing on the data path is lost in a restart.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, ClassVar

import pykka

from actors.messages import ChildFailed, Tick

log = logging.getLogger("probe.actors")


def handles(message_type: type) -> Callable[[Callable], Callable]:
    """Mark a method as the handler of ``message_type``."""

    def mark(method: Callable) -> Callable:
        method._handles = message_type
        return method

    return mark


class SupervisedActor(pykka.ThreadingActor):
    """A pykka actor whose failures go to its supervisor with its unfinished data messages."""

    #: name under which the supervisor knows this child
    name: ClassVar[str] = "actor"
    #: message classes that must survive a restart (re-delivered to the replacement)
    DATA_MESSAGES: ClassVar[tuple[type, ...]] = ()
    _HANDLERS: ClassVar[dict[type, Callable]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[type, Callable] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                message_type = getattr(attr, "_handles", None)
                if message_type is not None:
                    handlers[message_type] = attr
        cls._HANDLERS = handlers

    def __init__(self, supervisor: pykka.ActorRef | None = None) -> None:
        super().__init__()
        self.supervisor = supervisor
        self._current: Any = None

    # --- hooks for subclasses -----------------------------------------------------------

    def start_child(self) -> None:
        """Set up (open files, sockets); an exception here is reported like any failure."""

    def stop_child(self) -> None:
        """Release what start_child took; called on a normal stop."""

    def start_ticking(self, interval: float, stopped: threading.Event) -> None:
        """Send this actor a ``Tick`` every ``interval`` s until ``stopped`` is set or it dies."""

        def loop() -> None:
            while not stopped.wait(interval):
                try:
                    self.actor_ref.tell(Tick(time.monotonic()))
                except pykka.ActorDeadError:
                    return

        threading.Thread(target=loop, name=f"{self.name}-tick", daemon=True).start()

    # --- pykka plumbing -----------------------------------------------------------------

    def on_start(self) -> None:
        try:
            self.start_child()
        except Exception as exc:
            self._report(exc)
            raise

    def on_stop(self) -> None:
        self.stop_child()

    def on_receive(self, message: Any) -> Any:
        handler = self._HANDLERS.get(type(message))
        if handler is None:
            log.warning("%s ignores unexpected message %s", self.name, type(message).__name__)
            return None
        self._current = message
        result = handler(self, message)
        # kept on failure: on_failure runs after this returns, and hands the message on
        self._current = None
        return result

    def on_failure(self, exception_type: Any, exception_value: BaseException | None, traceback: Any) -> None:
        try:
            self.stop_child()
        except Exception as exc:  # the child is dying anyway: report, never mask the first failure
            log.warning("%s failed while cleaning up after a failure: %s", self.name, exc)
        if exception_value is not None:
            self._report(exception_value)

    def _report(self, error: BaseException) -> None:
        pending = []
        if isinstance(self._current, self.DATA_MESSAGES):
            pending.append(self._current)
        while True:
            try:
                envelope = self.actor_inbox.get_nowait()  # type: ignore[attr-defined]
            except queue.Empty:
                break
            if isinstance(envelope.message, self.DATA_MESSAGES):
                pending.append(envelope.message)
            elif envelope.reply_to is not None:
                envelope.reply_to.set_exception(
                    exc_info=(pykka.ActorDeadError, pykka.ActorDeadError(f"{self.name} failed"), None)
                )
        if self.supervisor is not None:
            try:
                self.supervisor.tell(ChildFailed(self.name, error, tuple(pending)))
            except pykka.ActorDeadError:
                log.error("%s failed after its supervisor stopped: %s", self.name, error)

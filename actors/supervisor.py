"""The supervisor: starts children in order, stops them in reverse, applies strategies.

Each failure is mapped by its error class onto one strategy (restart, halt, shed), as
the failure table of the design says. A child that dies is restarted after a per-child
exponential backoff (``backoff_initial`` doubling to ``backoff_max``; a halt restarts at
once, the replacement comes up halted). Restarts are bounded as in Erlang/OTP: more than
``max_restarts`` of one child within ``restart_window`` seconds escalates to a restart
of the whole tree; more than ``max_tree_restarts`` of those within the window is fatal
(the ``fatal`` hook gets a one-line message and the probe exits non-zero).

A child may also *report* an error it survived (:class:`FailureReport`): the resources
monitor reports memory over budget or a full LMDB map as a ResourceError, so the one
strategy table decides what happens (shed), without a restart and without counting
towards the restart intensity.

What survives a restart lives outside the actors and is handed to each new instance by
its ChildSpec: the spool, memory tier and accounting (TieredBuffer), the sequence space
and per-source replay positions (Sequencer), the transmission gate, metrics and alert
state; the data messages a dying child had not handled are re-delivered to its
replacement. See docs/operations.md for the list per child.
"""

from __future__ import annotations

import collections
import enum
import errno
import logging
import threading
import time
from typing import Any, Callable

import attrs
import lmdb
import pykka

from actors.messages import ChildFailed, RestartChild
from actors.metrics import Metrics
from protocols.errors import IdentityError, ResourceError, TransientError

log = logging.getLogger("probe.supervisor")


class Strategy(enum.Enum):
    RESTART = "restart"
    HALT = "halt"
    SHED = "shed"


def _is_resource_exhaustion(error: BaseException) -> bool:
    """Out of memory, disk or LMDB map, however the library reports it."""
    if isinstance(error, (ResourceError, MemoryError, lmdb.MapFullError)):
        return True
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.ENOMEM):
        return True
    return isinstance(error, lmdb.Error) and "No space left" in str(error)


def strategy_for(error: BaseException) -> Strategy:
    """The strategy for ``error``: one error class, one strategy (bugs restart)."""
    if isinstance(error, IdentityError):
        return Strategy.HALT
    if _is_resource_exhaustion(error):
        return Strategy.SHED
    return Strategy.RESTART


def error_reason(error: BaseException) -> str:
    """Short machine name of the cause (a metric label)."""
    if isinstance(error, (TransientError, IdentityError, ResourceError)):
        return error.reason
    if isinstance(error, lmdb.MapFullError):
        return "map_full"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC or isinstance(error, lmdb.Error) and "No space left" in str(error):
        return "disk_full"
    if isinstance(error, MemoryError):
        return "memory"
    return type(error).__name__


@attrs.frozen(slots=True)
class FailureReport:
    """Child ``name`` survived ``error`` but its strategy must be applied (no restart)."""

    name: str
    error: BaseException


@attrs.frozen
class ChildSpec:
    """How to start one child: ``start(supervisor_ref)`` returns the running actor's ref."""

    name: str
    start: Callable[[pykka.ActorRef], pykka.ActorRef]


@attrs.frozen
class SupervisorSettings:
    max_restarts: int = 5
    restart_window: float = 60.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    max_tree_restarts: int = 1


@attrs.frozen
class SupervisorHooks:
    """What the strategies do outside the tree: halt transmission, shed load, give up."""

    halt: Callable[[str], None] = lambda reason: None
    shed: Callable[[str], None] = lambda reason: None
    fatal: Callable[[str], None] = lambda message: None


class Directory:
    """Current actor ref of each child by name; waits across a child's restart."""

    def __init__(self) -> None:
        self._refs: dict[str, pykka.ActorRef] = {}
        self._changed = threading.Condition()

    def publish(self, name: str, ref: pykka.ActorRef) -> None:
        with self._changed:
            self._refs[name] = ref
            self._changed.notify_all()

    def get(self, name: str) -> pykka.ActorRef | None:
        return self._refs.get(name)

    def tell(self, name: str, message: Any, wait: float = 30.0) -> bool:
        """Deliver ``message`` to child ``name``, waiting up to ``wait`` s for a restart."""
        deadline = time.monotonic() + wait
        with self._changed:
            while True:
                ref = self._refs.get(name)
                if ref is not None:
                    try:
                        ref.tell(message)
                        return True
                    except pykka.ActorDeadError:
                        pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.05))


class Supervisor(pykka.ThreadingActor):
    """One supervisor over an ordered list of children."""

    def __init__(
        self,
        specs: list[ChildSpec],
        directory: Directory,
        settings: SupervisorSettings = SupervisorSettings(),
        hooks: SupervisorHooks = SupervisorHooks(),
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        super().__init__()
        self.specs = {spec.name: spec for spec in specs}
        self.order = [spec.name for spec in specs]
        self.directory = directory
        self.settings = settings
        self.hooks = hooks
        self.clock = clock
        self.metrics = metrics or Metrics()
        self._restart_times: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)
        self._tree_restart_times: collections.deque[float] = collections.deque()
        self._generation: dict[str, int] = collections.Counter()
        self._pending: dict[str, list[Any]] = collections.defaultdict(list)
        self._timers: list[threading.Timer] = []
        #: failures by (child, strategy), whether the child died or reported them
        self.restarts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.tree_restarts = 0
        self.failures: list[dict[str, Any]] = []
        self.state = "starting"

    # --- lifecycle ----------------------------------------------------------------------

    def on_start(self) -> None:
        for name in self.order:
            try:
                self._start(name)
            except Exception as exc:  # a child that cannot be built at all: the tree cannot run
                message = f"child {name} could not start: {type(exc).__name__}: {exc}"
                log.error(message, extra={"component": "supervisor", "event": "fatal"})
                self._stop_children()
                self.state = "failed"
                self.hooks.fatal(message)
                return
        self.state = "running"

    def on_stop(self) -> None:
        self.state = "stopping"
        for timer in self._timers:
            timer.cancel()
        self._stop_children()
        self.state = "stopped"

    def _start(self, name: str) -> None:
        ref = self.specs[name].start(self.actor_ref)
        for message in self._pending.pop(name, []):
            ref.tell(message)
        self.directory.publish(name, ref)

    def _stop_children(self) -> None:
        for name in reversed(self.order):
            ref = self.directory.get(name)
            if ref is not None and ref.is_alive():
                try:
                    ref.stop(block=True, timeout=30)
                except pykka.Timeout:
                    log.error("child %s did not stop within 30 s", name)

    # --- failures -----------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ChildFailed):
            return self._on_child_failed(message)
        if isinstance(message, FailureReport):
            return self._on_report(message)
        if isinstance(message, RestartChild):
            if self._generation[message.name] == message.generation and self.state == "running":
                self._restart(message.name)
            return None
        if message == "stats":
            return self.stats()
        return None

    def _record(self, name: str, error: BaseException, survived: bool) -> tuple[Strategy, str]:
        strategy = strategy_for(error)
        reason = error_reason(error)
        self.failures.append(
            {"child": name, "strategy": strategy.value, "reason": reason, "message": str(error), "survived": survived, "at": time.time()}
        )
        del self.failures[:-100]
        self.restarts[(name, strategy.value)] += 1
        self.metrics.inc("supervisor_failures_total", child=name, strategy=strategy.value, reason=reason)
        log.warning(
            "child %s %s (%s: %s); strategy %s",
            name,
            "reported" if survived else "failed",
            reason,
            error,
            strategy.value,
            extra={"component": "supervisor", "event": "child_failed", "child": name, "reason": reason, "strategy": strategy.value},
        )
        if strategy is Strategy.HALT:
            self.hooks.halt(f"{name}: {error}")
        elif strategy is Strategy.SHED:
            self.hooks.shed(reason)
        return strategy, reason

    def _on_report(self, report: FailureReport) -> None:
        """A living child's error: apply its strategy; only a restart strategy restarts it."""
        if self.state != "running":
            return
        strategy, _ = self._record(report.name, report.error, survived=True)
        if strategy is Strategy.RESTART:
            self._count_and_schedule(report.name, strategy)

    def _on_child_failed(self, failure: ChildFailed) -> None:
        if self.state != "running":
            return
        self._pending[failure.name].extend(failure.pending)
        strategy, _ = self._record(failure.name, failure.error, survived=False)
        self._count_and_schedule(failure.name, strategy, failure.error)

    def _count_and_schedule(self, name: str, strategy: Strategy, error: BaseException | None = None) -> None:
        if strategy is Strategy.HALT:
            # a halt is a state the operator ends, not a crash loop: the child comes back at
            # once, halted, and repeated identity refusals never escalate to an exit
            self.metrics.inc("supervisor_restarts_total", child=name, strategy=strategy.value)
            self._schedule_restart(name, 0.0)
            return
        now = self.clock()
        times = self._restart_times[name]
        times.append(now)
        while times and now - times[0] > self.settings.restart_window:
            times.popleft()
        if len(times) > self.settings.max_restarts:
            self._escalate(name, now, error)
            return
        delay = min(self.settings.backoff_max, self.settings.backoff_initial * (2 ** (len(times) - 1)))
        self.metrics.inc("supervisor_restarts_total", child=name, strategy=strategy.value)
        self._schedule_restart(name, delay)

    def _schedule_restart(self, name: str, delay: float) -> None:
        self._generation[name] += 1
        message = RestartChild(name, self._generation[name])
        if delay <= 0:
            self.actor_ref.tell(message)
            return
        timer = threading.Timer(delay, self._tell_self, args=(message,))
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _tell_self(self, message: Any) -> None:
        try:
            self.actor_ref.tell(message)
        except pykka.ActorDeadError:
            pass

    def _restart(self, name: str) -> None:
        old = self.directory.get(name)
        if old is not None and old.is_alive():
            old.stop(block=True, timeout=30)
        try:
            self._start(name)
        except Exception as exc:  # a child that cannot even start counts as failing again
            self._on_child_failed(ChildFailed(name, exc))

    def _escalate(self, name: str, now: float, error: BaseException | None) -> None:
        tree = self._tree_restart_times
        tree.append(now)
        while tree and now - tree[0] > self.settings.restart_window:
            tree.popleft()
        last = f"; last failure: {error_reason(error)}: {error}" if error is not None else ""
        if len(tree) > self.settings.max_tree_restarts:
            message = (
                f"child {name} failed more than {self.settings.max_restarts} times in "
                f"{self.settings.restart_window:g} s and the tree was already restarted "
                f"{len(tree) - 1} times in that window: giving up{last}"
            )
            log.error(message, extra={"component": "supervisor", "event": "fatal", "child": name})
            self.state = "failed"
            self.hooks.fatal(message)
            return
        log.error(
            "child %s exceeded its restart intensity (%d in %g s); restarting the tree%s",
            name,
            self.settings.max_restarts,
            self.settings.restart_window,
            last,
            extra={"component": "supervisor", "event": "tree_restart", "child": name},
        )
        self.restarts[("tree", "restart")] += 1
        self.tree_restarts += 1
        self.metrics.inc("supervisor_tree_restarts_total")
        for generation_name in self.order:
            self._generation[generation_name] += 1
        self._stop_children()
        for times in self._restart_times.values():
            times.clear()
        for child in self.order:
            try:
                self._start(child)
            except Exception as exc:
                self._on_child_failed(ChildFailed(child, exc))
                return

    def stats(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "restarts": {f"{child}:{strategy}": n for (child, strategy), n in self.restarts.items()},
            "tree_restarts": self.tree_restarts,
            "children": {name: bool(self.directory.get(name) and self.directory.get(name).is_alive()) for name in self.order},
            "failures": list(self.failures[-10:]),
        }

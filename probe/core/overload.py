"""The Core's overload knobs (rate limit, slow disk, pause) and the control file that steers them.

Scenarios overload the reference Core on purpose: a rate limit in events per second, a
slow disk (milliseconds added to every commit) and a pause (nothing is committed). They
start from ``core serve`` flags and can be switched at runtime, without a restart, by
writing ``DATA/control.json`` (``python -m probe core control``); the Core re-reads the
file when its modification time changes and on SIGHUP.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs

CONTROL_FILE = "control.json"
_KEYS = ("rate_limit", "slow_disk_ms", "paused")


class ControlError(ValueError):
    """A control file the Core cannot use (the previous settings stay)."""


@attrs.frozen(slots=True)
class Overload:
    """How the Core is told to misbehave: ``rate_limit`` events/s (None: none), ms per commit, paused."""

    rate_limit: float | None = None
    slow_disk_ms: float = 0.0
    paused: bool = False

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def updated(self, changes: dict[str, Any]) -> "Overload":
        """A copy with ``changes`` applied, each value checked; raise :class:`ControlError`."""
        unknown = set(changes) - set(_KEYS)
        if unknown:
            raise ControlError(f"unknown control keys {sorted(unknown)} (known: {', '.join(_KEYS)})")
        rate = changes.get("rate_limit", self.rate_limit)
        slow = changes.get("slow_disk_ms", self.slow_disk_ms)
        paused = changes.get("paused", self.paused)
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0):
            raise ControlError("rate_limit must be a positive number of events per second or null")
        if isinstance(slow, bool) or not isinstance(slow, (int, float)) or slow < 0:
            raise ControlError("slow_disk_ms must be a number of milliseconds >= 0")
        if not isinstance(paused, bool):
            raise ControlError("paused must be true or false")
        return Overload(None if rate is None else float(rate), float(slow), paused)


def read_control(path: str) -> dict[str, Any]:
    """The settings in control file ``path`` ({} when it does not exist)."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ControlError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError(f"{path} must hold a JSON object")
    return data


def write_control(path: str, changes: dict[str, Any], replace: bool = False) -> dict[str, Any]:
    """Merge ``changes`` into control file ``path`` (atomically); return what it now holds."""
    current = {} if replace else read_control(path)
    current.update(changes)
    Overload().updated(current)  # refuse to write something the Core would refuse
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(current, fh, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
    return current

"""The probe's error hierarchy: each class maps one-to-one onto a supervisor strategy.

It lives in the lowest layer so that protocols/, storage/ and actors/ can all raise it.

    TransientError  -> restart the failing actor (with backoff)
    IdentityError   -> halt transmission; capture and buffering go on
    ResourceError   -> shed load: drop from the memory tier, shrink, evict
    EventError      -> drop that one event, count it, go on (never reaches the supervisor)
"""

from __future__ import annotations


class ProbeError(Exception):
    """Base of every error the probe raises on purpose."""

    #: short machine name of the cause, used as a metric label and in logs
    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class TransientError(ProbeError):
    """Something outside may recover by itself (Core down, link down): restart."""

    reason = "transient"


class IdentityError(ProbeError):
    """The probe cannot prove who it is (key, certificate, Core refusal): halt transmission."""

    reason = "identity"


class ResourceError(ProbeError):
    """Memory, disk, map or inbox over budget: shed load and keep running."""

    reason = "resource"


class EventError(ProbeError):
    """One event cannot be encoded or signed: drop it, count it, continue."""

    reason = "event"

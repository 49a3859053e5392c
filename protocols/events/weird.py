"""``weird``: an anomaly in traffic or in the probe's own input, as Zeek's weird.log."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("weird")
@attrs.frozen(slots=True)
class Weird:
    """One anomaly; ``name`` uses Zeek's weird names where Zeek has one."""

    ts: float
    name: str
    uid: str | None = None
    id: ConnId | None = None
    addl: str | None = None
    notice: bool = False
    peer: str | None = None
    source: str | None = None

"""``notice``: something the probe itself wants an operator to see (alerts), as Zeek's notice.log."""

from __future__ import annotations

import attrs

from protocols.events.base import event_kind


@event_kind("notice")
@attrs.frozen(slots=True)
class Notice:
    """An alert raised or cleared by the probe; ``note`` is e.g. ``Probe::Buffer_High``."""

    ts: float
    note: str
    msg: str
    sub: str | None = None
    state: str | None = None
    value: float | None = None
    threshold: float | None = None
    peer_descr: str | None = None

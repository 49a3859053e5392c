"""Messages between actors: frozen, slotted attrs classes that carry batches, never one packet."""

from __future__ import annotations

from typing import Any

import attrs

from protocols.events.base import EncodedEvent


# --- data path -----------------------------------------------------------------------


@attrs.frozen(slots=True)
class FrameBatch:
    """Captured frames (ts, linktype, data, wirelen) for the dissector; ``final`` ends the source."""

    frames: list[tuple[float, int, bytes, int]]
    final: bool = False


@attrs.frozen(slots=True)
class EventBatch:
    """Encoded events from one source; ``first_ordinal`` numbers them within that source."""

    source: str
    first_ordinal: int
    events: list[EncodedEvent]


@attrs.frozen(slots=True)
class SignedEvents:
    """Sequenced, signed records for the buffer, with the replay progress they complete."""

    records: list[tuple[int, bytes]]
    progress: tuple[str, int] | None
    kinds: dict[str, int]


@attrs.frozen(slots=True)
class EventsDropped:
    """Events created but dropped before they were stored (``reason``: signature, ...)."""

    reason: str
    count: int


@attrs.frozen(slots=True)
class Stored:
    """The buffer holds events up to ``last_seq``: the uplink may send them."""

    last_seq: int


@attrs.frozen(slots=True)
class SequenceReused:
    """The Core holds numbers up to ``through`` from before this probe's spool was wiped or
    restored: the buffer's events numbered that low were never stored (dropped, not delivered)."""

    through: int


@attrs.frozen(slots=True)
class Acked:
    """The Core holds (or has accounted for) everything up to ``seq``.

    ``refused`` lists (seq, reason) of events in that range the Core refused for good:
    the buffer counts them dropped with that reason instead of delivered.
    """

    seq: int
    refused: tuple[tuple[int, str], ...] = ()


# --- control -------------------------------------------------------------------------


@attrs.frozen(slots=True)
class ChildFailed:
    """A supervised actor died; ``pending`` are data messages it had not handled yet."""

    name: str
    error: BaseException
    pending: tuple[Any, ...] = ()


@attrs.frozen(slots=True)
class RestartChild:
    """Timer message: bring child ``name`` back now."""

    name: str
    generation: int


@attrs.frozen(slots=True)
class Halt:
    """Stop transmitting (identity failure); capture and buffering go on."""

    reason: str


@attrs.frozen(slots=True)
class ResumeTransmission:
    """The operator reloaded a good identity: transmit again."""


@attrs.frozen(slots=True)
class Shed:
    """Resource pressure: drop from the memory tier, shrink, evict (``reason`` says which)."""

    reason: str


@attrs.frozen(slots=True)
class Tick:
    """Periodic timer message for housekeeping (timeouts, stats)."""

    now: float

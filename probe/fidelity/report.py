"""One row of a fidelity report, and how a difference between two values is judged and written."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.define
class KindReport:
    """Expected, found and matched records of one kind for one capture, with each miss."""

    capture: str
    kind: str
    source: str  # "truth" (tshark) or the corpus tool: "zeek", "suricata", "arkime"
    expected: int = 0
    found: int = 0
    matched: int = 0
    misses: list[str] = attrs.field(factory=list)

    @property
    def agreement(self) -> float:
        return 1.0 if self.expected == 0 else self.matched / self.expected

    def miss(self, text: str) -> None:
        self.misses.append(text)

    def outcome(self, label: str, misses: list[str]) -> None:
        """Count one compared record: matched when ``misses`` is empty, else one miss line."""
        if misses:
            self.miss(f"{label}: " + "; ".join(misses))
        else:
            self.matched += 1


class Differences(list):
    """``field: <source>=X probe=Y`` lines, one for each field where the two sides differ."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def differ(self, field: str, theirs: Any, ours: Any) -> None:
        """Record a difference when ``theirs != ours`` (exact comparison)."""
        if theirs != ours:
            self.append(f"{field}: {self.source}={theirs!r} probe={ours!r}")


def same(a: Any, b: Any, tolerance: float = 0.0) -> bool:
    """Equality with a float tolerance, treating numeric strings as numbers (Zeek/JSON values)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        try:
            return abs(float(a) - float(b)) <= tolerance
        except (TypeError, ValueError):
            return False
    return str(a) == str(b)

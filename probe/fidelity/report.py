"""One row of a fidelity report: how well one kind of event matched one capture."""

from __future__ import annotations

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

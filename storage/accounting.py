"""Event accounting: created = delivered + dropped (by reason) + pending, exactly."""

from __future__ import annotations

import attrs


@attrs.frozen(slots=True)
class Accounts:
    """A snapshot of where every event created so far has gone."""

    created: int
    delivered: int
    dropped: dict[str, int]
    pending: int

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def balanced(self) -> bool:
        """True when every created event is delivered, dropped with a reason, or pending."""
        return self.created == self.delivered + self.dropped_total + self.pending

    def minus(self, earlier: "Accounts") -> "Accounts":
        """What happened since ``earlier`` (pending stays absolute)."""
        reasons = set(self.dropped) | set(earlier.dropped)
        return Accounts(
            self.created - earlier.created,
            self.delivered - earlier.delivered,
            {r: self.dropped.get(r, 0) - earlier.dropped.get(r, 0) for r in sorted(reasons) if self.dropped.get(r, 0) - earlier.dropped.get(r, 0)},
            self.pending,
        )

    def as_dict(self) -> dict:
        return {
            "created": self.created,
            "delivered": self.delivered,
            "dropped": dict(self.dropped),
            "dropped_total": self.dropped_total,
            "pending": self.pending,
            "balanced": self.balanced,
        }

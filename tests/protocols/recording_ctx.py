"""A FlowContext that records what a parser reports, for driving parsers on bytes in tests."""

from __future__ import annotations

from typing import Any

from protocols.events import ConnId, as_json_object


class RecordingContext:
    """Implements the engine's FlowContext by keeping emitted events, weirds and verdicts."""

    def __init__(self, proto: str = "udp", orig: tuple[str, int] = ("10.0.0.2", 40000),
                 resp: tuple[str, int] = ("10.0.0.1", 53), uid: str = "CtestUid00000000x") -> None:
        self.uid = uid
        self.id = ConnId(orig[0], orig[1], resp[0], resp[1])
        self.proto = proto
        self.events: list[Any] = []
        self.weirds: list[tuple[str, str | None]] = []
        self.confirmed: list[str] = []
        self.violations: list[str] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def weird(self, name: str, ts: float, addl: str | None = None) -> None:
        self.weirds.append((name, addl))

    def confirm(self, service: str) -> None:
        self.confirmed.append(service)

    def violation(self, reason: str, ts: float) -> None:
        self.violations.append(reason)

    def weird_names(self) -> list[str]:
        return [name for name, _ in self.weirds]

    def exported(self) -> list[dict]:
        """The events as the flat dicts the Core exports."""
        return [as_json_object(e) for e in self.events]

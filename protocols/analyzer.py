"""The contract between the flow engine and the application-protocol parsers.

A parser is a sans-I/O object bound to one flow. The engine hands it, per direction,
the in-order byte stream of a TCP connection (or each UDP datagram) and tells it about
gaps and the end of the flow; the parser reports through its :class:`FlowContext`:
events it produced, weirds it saw, the service it confirmed, or that it gives up.

Parsers never read clocks or sockets: every call carries the packet time ``ts``.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, Protocol

from protocols.events.base import ConnId


class FlowContext(Protocol):
    """What a parser knows about, and can tell, the flow it is bound to."""

    uid: str
    id: ConnId
    proto: str  # "tcp" or "udp"

    def emit(self, event: Any) -> None:
        """Hand a finished event (an instance of a registered kind) to the engine."""

    def weird(self, name: str, ts: float, addl: str | None = None) -> None:
        """Report an anomaly under Zeek's weird name; the engine counts and rate-limits it."""

    def confirm(self, service: str) -> None:
        """The parser is sure this flow speaks ``service``; it appears in conn's ``service``."""

    def violation(self, reason: str, ts: float) -> None:
        """The bytes are not this protocol after all (or are beyond repair): stop feeding me."""


class Analyzer(abc.ABC):
    """One application parser instance for one flow."""

    #: the service name this parser confirms (``dns``, ``http``, ``ssl``, ``smb``, ...)
    service: str = ""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx

    @abc.abstractmethod
    def data(self, is_orig: bool, data: bytes, ts: float) -> None:
        """In-order bytes from one direction (TCP), or one whole datagram payload (UDP)."""

    def gap(self, is_orig: bool, length: int, ts: float) -> None:
        """``length`` bytes of this direction will never arrive (capture loss, budget)."""

    def end(self, ts: float) -> None:
        """The flow is over (FIN/RST, idle timeout, end of capture): flush what is pending."""


#: service name -> parser class; filled by :func:`register`
ANALYZERS: dict[str, type[Analyzer]] = {}


def register(service: str) -> Callable[[type[Analyzer]], type[Analyzer]]:
    """Class decorator: make a parser available to detection under ``service``."""

    def decorate(cls: type[Analyzer]) -> type[Analyzer]:
        if service in ANALYZERS:
            raise ValueError(f"analyzer {service!r} registered twice")
        cls.service = service
        ANALYZERS[service] = cls
        return cls

    return decorate

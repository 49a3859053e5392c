"""Events the Core refused as damaged: kept in the buffer for one re-send, then dropped.

A record whose signature does not verify at the Core (or that does not decode there)
is most likely a copy damaged on the way: the spool still holds the good one. The
uplink holds such a sequence number back from the buffer's acknowledgement, sends the
spool's copy once more in a frame of its own, and reads the Core's answer to that frame
(the Core answers every events and drops frame with exactly one ack, in order). Refused
again, it is dropped with the reason ``rejected_<code>``; any other refusal is final at
once. Pure bookkeeping: the uplink actor does the sending.
"""

from __future__ import annotations

from typing import Iterable

from protocols.wire import ErrorCode

#: refusals that a clean copy may cure
RETRY_CODES = frozenset({ErrorCode.BAD_SIGNATURE, ErrorCode.BAD_EVENT})


def drop_reason(code: str) -> str:
    return f"rejected_{code}"


class RejectedResends:
    """Per uplink: which refused sequences wait for their one re-send, and which are final."""

    def __init__(self) -> None:
        #: seq -> number of the ack that answers its re-send on this connection (0: not sent yet)
        self._held: dict[int, int] = {}
        #: seqs already re-sent once: refused again, they are dropped
        self._tried: set[int] = set()
        #: seq -> drop reason, waiting for the buffer's acknowledgement to pass them
        self._final: dict[int, str] = {}

    def __bool__(self) -> bool:
        return bool(self._held or self._final)

    @property
    def held(self) -> list[int]:
        return sorted(self._held)

    def on_ack(self, number: int, rejected: Iterable[tuple[int, str]]) -> list[int]:
        """Ack ``number`` of this connection arrived; return the sequences to re-send now."""
        rejected = list(rejected)
        answered = [seq for seq, sent_at in self._held.items() if sent_at and sent_at == number]
        for seq in answered:
            del self._held[seq]
            self._tried.discard(seq)
            if rejected:  # a re-send travels alone: any refusal in its ack is its own
                self._final[seq] = drop_reason(rejected[0][1])
        if answered:
            return []
        to_send = []
        for seq, code in rejected:
            if seq <= 0:
                continue  # the Core could not tell which event it was: nothing to re-send
            if code in RETRY_CODES and seq not in self._tried and seq not in self._held:
                self._held[seq] = 0
                to_send.append(seq)
            elif seq not in self._held:
                self._tried.discard(seq)
                self._final[seq] = drop_reason(code)
        return to_send

    def sent(self, seq: int, answer: int) -> None:
        """The copy of ``seq`` left in a frame that ack number ``answer`` will answer."""
        if seq in self._held:
            self._held[seq] = answer
            self._tried.add(seq)

    def missing(self, seq: int) -> None:
        """The buffer no longer holds ``seq``: nothing to re-send, the refusal stands."""
        if self._held.pop(seq, None) is not None:
            self._tried.discard(seq)
            self._final[seq] = drop_reason(ErrorCode.BAD_SIGNATURE)

    def ack_point(self, core_acked: int) -> int:
        """How far the buffer may delete: below the oldest sequence still held for a re-send."""
        return min(core_acked, min(self._held) - 1) if self._held else core_acked

    def take_final(self, upto: int) -> tuple[tuple[int, str], ...]:
        """Final refusals at or below ``upto`` (the buffer counts them dropped, not delivered)."""
        done = tuple(sorted((seq, reason) for seq, reason in self._final.items() if seq <= upto))
        for seq, _ in done:
            del self._final[seq]
        return done

    def reconnected(self) -> list[int]:
        """A new connection: every held sequence goes again (its answer, if any, was lost)."""
        for seq in self._held:
            self._held[seq] = 0
        return sorted(self._held)

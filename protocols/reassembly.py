"""TCP stream reassembly for one direction of a connection, in Zeek's model.

Sequence numbers here are relative (the first data byte after the SYN is 1), 64-bit
clean (the flow layer unwraps them). In-order bytes go straight to the consumer;
segments above a hole are held until the hole fills or until the peer acknowledges
past it, at which point the hole is a *content gap* (Zeek's ``content_gap``: counted in
conn's ``missed_bytes``, ``G``/``g`` in its history) and the held data after it is
delivered. Retransmissions and overlaps: the first copy wins; a later copy that differs
from data still held is Zeek's ``rexmit_inconsistency``.

Memory is bounded under any input: the bytes a direction holds (out of order, plus
delivered-but-unacknowledged data retained only to detect inconsistent retransmissions,
trimmed by acks and dropped first) stay within a per-direction budget, and all flows'
within a shared one (:class:`ReassemblyBudget`); when a budget is exhausted the oldest
hole is given up as a gap (``reassembly_budget`` weird) and the held data behind it is
delivered.

When nobody consumes the stream (no parser), only byte *ranges* are tracked: gaps and
missed bytes stay exact while no payload is copied.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import Protocol

#: ranges held above a hole when no data is kept; beyond it the oldest hole is given up
MAX_RANGES = 256


class ReassemblyOwner(Protocol):
    """What a reassembler reports to: the flow it belongs to (see ``protocols.flows``)."""

    def stream_data(self, reassembler: "StreamReassembler", data: bytes, ts: float) -> None:
        """In-order bytes of this direction."""

    def stream_gap(self, reassembler: "StreamReassembler", seq: int, length: int, ts: float, forced: bool) -> None:
        """``length`` bytes at ``seq`` will never be delivered (acked hole, or budget)."""

    def stream_inconsistency(self, reassembler: "StreamReassembler", seq: int, length: int, ts: float) -> None:
        """A retransmitted copy of ``length`` bytes at ``seq`` differs from the first one."""


class ReassemblyBudget:
    """Byte budgets for data held by reassemblers: per direction and over all flows."""

    __slots__ = ("per_direction", "total", "used")

    def __init__(self, per_direction: int, total: int) -> None:
        self.per_direction = per_direction
        self.total = total
        self.used = 0


class StreamReassembler:
    """One direction of one TCP connection (Zeek's TCP_Reassembler, minus the analyzer tree)."""

    __slots__ = (
        "owner",
        "endpoint",
        "budget",
        "keep",
        "plain",
        "next_seq",
        "trim_seq",
        "held",
        "held_bytes",
        "retained",
        "retained_bytes",
    )

    def __init__(self, owner: ReassemblyOwner, endpoint: object, budget: ReassemblyBudget, keep: bool) -> None:
        self.owner = owner
        self.endpoint = endpoint  # the flow layer's endpoint object (knows is_orig)
        self.budget = budget
        self.keep = keep  # whether payload is wanted (a parser, or detection, consumes it)
        self.plain = not keep  # nothing kept and nothing held: in-order bytes just advance next_seq
        self.next_seq = 1  # Zeek's last_reassem_seq: everything below was delivered or given up
        self.trim_seq = 1  # highest acknowledgement processed
        self.held: list[list] = []  # sorted [seq, end, data|None] blocks above next_seq
        self.held_bytes = 0
        self.retained: deque | None = None  # delivered, not yet acked [seq, data] (made when needed)
        self.retained_bytes = 0

    # -- input -------------------------------------------------------------------------

    def data_sent(self, seq: int, length: int, data: bytes | None, ts: float) -> None:
        """A segment of ``length`` bytes at relative ``seq`` (``data`` is None when not kept)."""
        if seq == self.next_seq and not self.held:
            # the common case: in order, nothing pending
            self.next_seq = seq + length
            if self.keep:
                self.owner.stream_data(self, data, ts)
                self._retain(seq, data)
            return
        end = seq + length
        trim = self.trim_seq
        if end <= trim:
            return  # old data, already acknowledged
        if seq < trim:
            if data is not None:
                data = data[trim - seq :]
            seq = trim
        nxt = self.next_seq
        if seq < nxt:
            # overlaps what was delivered already: compare, then keep only the new part
            if self.keep and data is not None:
                self._compare_retained(seq, end if end < nxt else nxt, data, ts)
            if end <= nxt:
                return
            if data is not None:
                data = data[nxt - seq :]
            seq = nxt
        self._insert(seq, end, data if self.keep else None, ts)
        if self.held and self.held[0][0] <= self.next_seq:
            self._deliver_held(ts)
        self._enforce_budget(ts)
        self.plain = not self.keep and not self.held

    def ack_received(self, seq: int, ts: float, partial: bool) -> None:
        """The peer acknowledged everything below relative ``seq`` (FIN octet excluded).

        An ack beyond what was delivered reveals a hole that will not be filled: the held
        data up to ``seq`` is delivered with the holes reported as gaps. ``partial`` is
        Zeek's rule for connections seen without their SYN: an ack of just the first byte
        or two is not a gap.
        """
        if seq <= self.trim_seq:
            return
        if seq > self.next_seq and not (seq <= 2 and partial):
            self._undelivered(seq, ts)
            self.plain = not self.keep and not self.held
        self.trim_seq = seq
        retained = self.retained
        if retained is None:
            return
        while retained:
            first = retained[0]
            first_end = first[0] + len(first[1])
            if first_end <= seq:
                retained.popleft()
                self._release_retained(len(first[1]))
            else:
                if first[0] < seq:
                    cut = seq - first[0]
                    self._release_retained(cut)
                    first[1] = first[1][cut:]
                    first[0] = seq
                break
        if not retained:
            self.retained = None  # an idle flow should not keep an empty deque

    def flush(self, ts: float) -> None:
        """End of the connection: hand over held data behind its holes (gaps reported, forced)."""
        while self.held:
            start = self.held[0][0]
            if start > self.next_seq:
                self.owner.stream_gap(self, self.next_seq, start - self.next_seq, ts, True)
                self.next_seq = start
            self._deliver_held(ts)
        self._drop_retained()
        self.plain = not self.keep

    def release(self) -> None:
        """Give back every byte this reassembler holds (the flow is gone)."""
        for block in self.held:
            if block[2] is not None:
                self.budget.used -= len(block[2])
        self.held = []
        self.held_bytes = 0
        self._drop_retained()
        self.plain = not self.keep

    def stop_keeping(self) -> None:
        """Nobody wants the payload any more: drop held data, keep tracking ranges."""
        if not self.keep:
            return
        self.keep = False
        for block in self.held:
            if block[2] is not None:
                self.budget.used -= len(block[2])
                block[2] = None
        self._drop_retained()
        self.plain = not self.held

    # -- state -------------------------------------------------------------------------

    def has_undelivered(self) -> bool:
        """Whether data above a hole is waiting (Zeek's HasUndeliveredData)."""
        return bool(self.held)

    def pending_bytes(self) -> int:
        """Bytes held above holes."""
        return self.held_bytes

    # -- internals ---------------------------------------------------------------------

    def _retain(self, seq: int, data: bytes) -> None:
        budget = self.budget
        size = len(data)
        if not size:
            return
        room = budget.per_direction - self.held_bytes
        if self.retained_bytes + size > room or budget.used + size > budget.total:
            # no room to remember delivered data: forget it (inconsistency checks on it
            # are lost, delivery is not affected); held data always has precedence
            self._drop_retained()
            if size > room or budget.used + size > budget.total:
                return
        if self.retained is None:
            self.retained = deque()
        self.retained.append([seq, data])
        self.retained_bytes += size
        budget.used += size

    def _release_retained(self, size: int) -> None:
        self.retained_bytes -= size
        self.budget.used -= size

    def _drop_retained(self) -> None:
        if self.retained_bytes:
            self.budget.used -= self.retained_bytes
        self.retained = None
        self.retained_bytes = 0

    def _compare_retained(self, seq: int, end: int, data: bytes, ts: float) -> None:
        """Compare ``data`` (at ``seq``) over ``[seq, end)`` with delivered copies still retained."""
        for block_seq, block_data in self.retained or ():
            block_end = block_seq + len(block_data)
            if block_end <= seq:
                continue
            if block_seq >= end:
                break
            lo = seq if seq > block_seq else block_seq
            hi = end if end < block_end else block_end
            if data[lo - seq : hi - seq] != block_data[lo - block_seq : hi - block_seq]:
                self.owner.stream_inconsistency(self, lo, hi - lo, ts)  # one per block, as Zeek

    def _insert(self, seq: int, end: int, data: bytes | None, ts: float) -> None:
        """Add [seq, end) above next_seq to the held blocks; existing bytes win overlaps."""
        held = self.held
        if not held or held[-1][1] <= seq:
            self._add_block(len(held), seq, end, data)
            return
        index = bisect_right(held, seq, key=_block_start)
        if index and held[index - 1][1] > seq:
            index -= 1
        cursor = seq
        while cursor < end:
            if index < len(held):
                block = held[index]
                b_seq, b_end = block[0], block[1]
            else:
                b_seq = b_end = end
            if b_seq >= end or index >= len(held):
                # no more existing blocks inside: the rest is new
                self._add_block(index, cursor, end, None if data is None else data[cursor - seq :])
                return
            if cursor < b_seq:
                piece = None if data is None else data[cursor - seq : b_seq - seq]
                index += self._add_block(index, cursor, b_seq, piece)
                cursor = b_seq
                continue
            # overlap with an existing block: the first copy wins, a different one is weird
            hi = end if end < b_end else b_end
            if data is not None and block[2] is not None:
                old = block[2][cursor - b_seq : hi - b_seq]
                new = data[cursor - seq : hi - seq]
                if old != new:
                    self.owner.stream_inconsistency(self, cursor, hi - cursor, ts)
            cursor = hi
            index += 1

    def _add_block(self, index: int, seq: int, end: int, data: bytes | None) -> int:
        """Insert a block at ``index``; 1 if a block was inserted, 0 if merged into the previous."""
        held = self.held
        size = end - seq
        self.held_bytes += size
        if data is None and index and held[index - 1][2] is None and held[index - 1][1] == seq:
            held[index - 1][1] = end  # ranges only: merge with the block before
            return 0
        held.insert(index, [seq, end, data])
        if data is not None:
            self.budget.used += size
        return 1

    def _deliver_held(self, ts: float) -> None:
        """Deliver the held blocks that are now contiguous with next_seq."""
        held = self.held
        budget = self.budget
        while held and held[0][0] <= self.next_seq:
            seq, end, data = held.pop(0)
            size = end - seq
            self.held_bytes -= size
            if data is not None:
                budget.used -= size
            if end <= self.next_seq:
                continue
            if data is not None:
                data = data[self.next_seq - seq :]
                seq = self.next_seq
            self.next_seq = end
            if self.keep and data is not None:
                self.owner.stream_data(self, data, ts)
                self._retain(seq, data)

    def _undelivered(self, up_to: int, ts: float) -> None:
        """Everything below ``up_to`` is acknowledged: deliver held data, report holes as gaps."""
        held = self.held
        while held and held[0][0] < up_to:
            start = held[0][0]
            if start > self.next_seq:
                self.owner.stream_gap(self, self.next_seq, start - self.next_seq, ts, False)
                self.next_seq = start
            self._deliver_held(ts)
        if up_to > self.next_seq:
            self.owner.stream_gap(self, self.next_seq, up_to - self.next_seq, ts, False)
            self.next_seq = up_to

    def _enforce_budget(self, ts: float) -> None:
        """Keep held + retained bytes within the budgets (and ranges within MAX_RANGES).

        Retained data goes first (it only serves inconsistency checks); then the oldest
        hole is given up: reported as a forced gap, the held data behind it delivered.
        """
        budget = self.budget
        held = self.held
        while held and (
            self.held_bytes + self.retained_bytes > budget.per_direction
            or (self.keep and budget.used > budget.total)
            or len(held) > MAX_RANGES
        ):
            if self.retained_bytes:
                self._drop_retained()
                continue
            start = held[0][0]
            self.owner.stream_gap(self, self.next_seq, start - self.next_seq, ts, True)
            self.next_seq = start
            self._deliver_held(ts)


def _block_start(block: list) -> int:
    return block[0]

"""One direction of TCP reassembly: in-order delivery, holes, acks revealing gaps, overlaps
(first copy wins, differing copies reported), budgets, and memory returned."""

from __future__ import annotations

import random

from protocols.reassembly import MAX_RANGES, ReassemblyBudget, StreamReassembler


class Recorder:
    """The owner side: what the reassembler delivered and reported, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def stream_data(self, reassembler, data: bytes, ts: float) -> None:
        self.calls.append(("data", data))

    def stream_gap(self, reassembler, seq: int, length: int, ts: float, forced: bool) -> None:
        self.calls.append(("gap", seq, length, forced))

    def stream_inconsistency(self, reassembler, seq: int, length: int, ts: float) -> None:
        self.calls.append(("inconsistent", seq, length))

    def stream(self) -> bytes:
        return b"".join(call[1] for call in self.calls if call[0] == "data")


def make(keep: bool = True, per_direction: int = 1 << 20, total: int = 64 << 20):
    owner = Recorder()
    budget = ReassemblyBudget(per_direction, total)
    return StreamReassembler(owner, None, budget, keep), owner, budget


def test_in_order_bytes_are_delivered_at_once() -> None:
    r, owner, _ = make()
    r.data_sent(1, 3, b"abc", 0.0)
    r.data_sent(4, 2, b"de", 0.0)
    assert owner.calls == [("data", b"abc"), ("data", b"de")]
    assert r.next_seq == 6


def test_out_of_order_segments_wait_for_the_hole() -> None:
    r, owner, budget = make()
    r.data_sent(4, 3, b"def", 0.0)
    r.data_sent(7, 2, b"gh", 0.0)
    assert owner.calls == [] and r.pending_bytes() == 5 and r.has_undelivered()
    r.data_sent(1, 3, b"abc", 0.0)
    assert owner.stream() == b"abcdefgh"
    assert r.pending_bytes() == 0 and not r.has_undelivered()


def test_an_ack_past_a_hole_is_a_gap_then_the_rest_is_delivered() -> None:
    r, owner, _ = make()
    r.data_sent(1, 3, b"abc", 0.0)
    r.data_sent(8, 3, b"hij", 0.0)
    r.ack_received(11, 0.0, partial=False)
    assert owner.calls == [("data", b"abc"), ("gap", 4, 4, False), ("data", b"hij")]
    r.data_sent(4, 4, b"defg", 0.0)  # too late: already given up
    assert owner.stream() == b"abchij"


def test_an_ack_beyond_everything_seen_is_a_gap_to_the_ack() -> None:
    r, owner, _ = make(keep=False)
    r.data_sent(1, 100, None, 0.0)
    r.ack_received(301, 0.0, partial=False)
    assert owner.calls == [("gap", 101, 200, False)]
    assert r.next_seq == 301


def test_partial_connections_ignore_an_ack_of_the_first_byte_or_two() -> None:
    r, owner, _ = make()
    r.ack_received(2, 0.0, partial=True)
    assert owner.calls == []
    r.ack_received(3, 0.0, partial=True)
    assert owner.calls == [("gap", 1, 2, False)]


def test_overlap_first_copy_wins_and_a_different_copy_is_reported() -> None:
    r, owner, _ = make()
    r.data_sent(5, 4, b"EFGH", 0.0)
    r.data_sent(3, 6, b"CDxxGH", 0.0)  # overlaps the held block with different bytes
    assert ("inconsistent", 5, 4) in owner.calls  # the overlapping span, as Zeek compares it
    r.data_sent(1, 2, b"AB", 0.0)
    assert owner.stream() == b"ABCDEFGH"


def test_identical_retransmissions_are_silent_and_not_delivered_twice() -> None:
    r, owner, _ = make()
    r.data_sent(1, 4, b"abcd", 0.0)
    r.data_sent(1, 4, b"abcd", 0.0)
    r.data_sent(3, 4, b"cdef", 0.0)
    assert owner.stream() == b"abcdef"
    assert not [c for c in owner.calls if c[0] == "inconsistent"]


def test_a_retransmission_differing_from_delivered_unacked_data_is_reported() -> None:
    r, owner, _ = make()
    r.data_sent(1, 4, b"abcd", 0.0)
    r.data_sent(1, 4, b"abXd", 0.0)
    assert ("inconsistent", 1, 4) in owner.calls
    r.ack_received(5, 0.0, partial=False)
    owner.calls.clear()
    r.data_sent(1, 4, b"zzzz", 0.0)  # acknowledged data is forgotten: nothing to compare
    assert owner.calls == []


def test_ranges_only_mode_keeps_no_bytes_but_gaps_stay_exact() -> None:
    r, owner, budget = make(keep=False)
    r.data_sent(1, 10, None, 0.0)
    r.data_sent(21, 10, None, 0.0)
    r.data_sent(31, 5, None, 0.0)
    assert budget.used == 0 and len(r.held) == 1  # adjacent ranges merged
    r.data_sent(11, 10, None, 0.0)
    assert r.next_seq == 36 and owner.calls == []


def test_per_direction_budget_gives_up_the_oldest_hole() -> None:
    r, owner, budget = make(per_direction=100)
    r.data_sent(1, 10, b"a" * 10, 0.0)
    r.data_sent(50, 60, b"b" * 60, 0.0)
    r.data_sent(200, 60, b"c" * 60, 0.0)  # 120 held > 100
    forced = [c for c in owner.calls if c[0] == "gap"]
    assert forced == [("gap", 11, 39, True)]
    assert r.pending_bytes() <= 100 and budget.used <= 100


def test_shared_budget_is_respected_across_flows() -> None:
    budget = ReassemblyBudget(1 << 20, 1000)
    owners = [Recorder() for _ in range(5)]
    streams = [StreamReassembler(o, None, budget, True) for o in owners]
    for s in streams:
        s.data_sent(100, 400, b"x" * 400, 0.0)  # each holds 400 above a hole
        assert budget.used <= 1000
    assert any(call[0] == "gap" and call[3] for o in owners for call in o.calls)


def test_range_count_is_bounded_without_data() -> None:
    r, owner, _ = make(keep=False)
    for i in range(MAX_RANGES + 50):
        r.data_sent(10 + i * 3, 1, None, 0.0)  # one byte every three: never adjacent
    assert len(r.held) <= MAX_RANGES
    assert any(call[0] == "gap" and call[3] for call in owner.calls)


def test_flush_delivers_held_data_behind_its_holes() -> None:
    r, owner, _ = make()
    r.data_sent(5, 2, b"ef", 0.0)
    r.flush(1.0)
    assert owner.calls == [("gap", 1, 4, True), ("data", b"ef")]


def test_stop_keeping_drops_data_but_keeps_tracking() -> None:
    r, owner, budget = make()
    r.data_sent(1, 2, b"ab", 0.0)
    r.data_sent(10, 5, b"xxxxx", 0.0)
    r.stop_keeping()
    assert budget.used == 0 and r.plain is False
    r.data_sent(3, 7, None, 0.0)
    assert r.next_seq == 15 and r.plain is True
    assert owner.stream() == b"ab"


def test_release_returns_every_byte_to_the_budget() -> None:
    r, _, budget = make()
    r.data_sent(1, 100, b"a" * 100, 0.0)  # retained until acked
    r.data_sent(300, 100, b"b" * 100, 0.0)  # held
    assert budget.used == 200
    r.release()
    assert budget.used == 0


def test_random_segmentation_reordering_and_duplication_rebuilds_the_stream() -> None:
    rng = random.Random(11)
    for _ in range(200):
        stream = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 400)))
        cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randrange(0, 12))))
        bounds = [0] + cuts + [len(stream)]
        segments = [(a, stream[a:b]) for a, b in zip(bounds, bounds[1:])]
        segments += rng.sample(segments, min(len(segments), rng.randrange(0, 4)))  # duplicates
        segments += [(a, stream[a : a + n]) for a, n in
                     ((rng.randrange(len(stream)), rng.randrange(1, 20)) for _ in range(rng.randrange(0, 3)))]
        rng.shuffle(segments)
        r, owner, budget = make()
        for offset, piece in segments:
            r.data_sent(1 + offset, len(piece), piece, 0.0)
        assert owner.stream() == stream
        assert not [c for c in owner.calls if c[0] in ("gap", "inconsistent")]
        r.ack_received(1 + len(stream), 0.0, partial=False)
        assert budget.used == 0
        r.release()
        assert budget.used == 0

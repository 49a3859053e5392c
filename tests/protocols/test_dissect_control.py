"""The engine's operator controls: top open flows by bytes, and flushing idle flows."""

from __future__ import annotations

from protocols.dissect import Dissector
from tests.console.traffic import TCP_FLOWS, TCP_PORT, frames


def _fed(n: int) -> Dissector:
    engine = Dissector()
    engine.feed(frames(n))
    return engine


def test_top_flows_are_the_open_flows_with_most_bytes_largest_first() -> None:
    engine = _fed(2000)
    top = engine.top_flows(3)
    assert [f["orig_p"] for f in top] == [port for port, _ in TCP_FLOWS[:3]]
    assert [f["bytes"] for f in top] == sorted((f["bytes"] for f in top), reverse=True)
    first = top[0]
    assert (first["orig_h"], first["resp_h"], first["resp_p"], first["proto"]) == ("10.0.0.1", "10.0.0.2", TCP_PORT, "tcp")
    rounds = first["orig_pkts"] - 2  # SYN and the handshake's ACK carry no payload
    assert first["orig_ip_bytes"] == 2 * 40 + rounds * (40 + TCP_FLOWS[0][1])
    assert first["uid"].startswith("C") and len(first["uid"]) == 18


def test_top_flows_uid_is_the_uid_of_the_flows_conn_event() -> None:
    engine = _fed(500)
    uids = {f["orig_p"]: f["uid"] for f in engine.top_flows(len(TCP_FLOWS))}
    conns = [e for e in engine.finish() if e.__class__.__name__ == "Conn" and e.id.resp_p == TCP_PORT]
    assert {c.id.orig_p: c.uid for c in conns} == uids


def test_top_flows_on_an_empty_engine() -> None:
    assert Dissector().top_flows(10) == []


def test_flush_idle_zero_ends_every_open_flow_and_the_engine_goes_on() -> None:
    engine = _fed(700)
    assert engine.active_flows >= len(TCP_FLOWS)
    events = engine.flush_idle(0.0)
    conns = [e for e in events if e.__class__.__name__ == "Conn"]
    assert engine.active_flows == 0
    assert {c.id.orig_p for c in conns if c.id.resp_p == TCP_PORT} == {p for p, _ in TCP_FLOWS}
    later = frames(700, start=1_700_000_100.0)
    engine.feed(later)
    assert engine.active_flows > 0


def test_flush_idle_keeps_flows_active_within_the_idle_time() -> None:
    engine = _fed(700)  # packets 10 ms apart: every TCP flow saw a packet in the last 0.1 s
    open_before = engine.active_flows
    events = engine.flush_idle(1.0)
    ended = [e for e in events if e.__class__.__name__ == "Conn"]
    assert all(c.id.resp_p != TCP_PORT for c in ended)
    assert engine.active_flows == open_before - len(ended)
    assert {f["orig_p"] for f in engine.top_flows(10) if f["resp_p"] == TCP_PORT} == {p for p, _ in TCP_FLOWS}


def test_flush_before_any_packet_does_nothing() -> None:
    engine = Dissector()
    assert engine.flush_idle(0.0) == [] and engine.clock is None


def test_flush_with_a_later_clock_expires_by_that_clock() -> None:
    engine = _fed(700)
    last = engine.clock
    assert last is not None
    engine.flush_idle(10_000.0, now=last + 400.0)  # beyond every idle timeout
    assert engine.active_flows == 0 and engine.clock == last + 400.0

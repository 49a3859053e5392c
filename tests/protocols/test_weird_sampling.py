"""Weird events are sampled as Zeek samples them, and capped per name and second; all are counted."""

from __future__ import annotations

from protocols.dissect import DissectSettings, Dissector
from protocols.events.weird import Weird
from tests.protocols.packets import ethernet, frame, ipv4, udp


def weirds(frames, **settings) -> tuple[list[Weird], dict]:
    dissector = Dissector(DissectSettings(**settings))
    events = dissector.feed(frames) + dissector.finish()
    return [e for e in events if isinstance(e, Weird)], dissector.counters


def truncated_ethernet(ts: float):
    return frame(b"\x01", ts)


def udp_length_mismatch(ts: float, sport: int = 5000):
    """A datagram whose UDP length field is 4 bytes short: weird UDP_datagram_length_mismatch."""
    return frame(ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp("10.0.0.1", "10.0.0.2", sport, 9999, b"x" * 20,
                                                                 length=24))), ts)


def test_outside_connections_the_first_weirds_then_one_in_rate() -> None:
    frames = [truncated_ethernet(100.0 + i / 10) for i in range(50)]
    events, counters = weirds(frames, weird_sampling_threshold=10, weird_sampling_rate=5)
    # 10 below the threshold, then the 15th, 20th, ... 50th
    assert len(events) == 10 + 8
    assert counters["weird:truncated_ethernet_frame"] == 50


def test_the_sampling_restarts_after_its_duration() -> None:
    frames = [truncated_ethernet(100.0 + i) for i in range(6)] + [truncated_ethernet(200.0 + i) for i in range(6)]
    events, _ = weirds(frames, weird_sampling_threshold=3, weird_sampling_rate=0, weird_sampling_duration=50.0)
    assert [e.ts for e in events] == [100.0, 101.0, 102.0, 200.0, 201.0, 202.0]


def test_sampling_is_per_connection() -> None:
    one_flow = [udp_length_mismatch(10.0 + i) for i in range(5)]
    many_flows = [udp_length_mismatch(20.0 + i, sport=6000 + i) for i in range(5)]
    events, counters = weirds(one_flow + many_flows, weird_sampling_threshold=2, weird_sampling_rate=0)
    per_uid: dict[str, int] = {}
    for event in events:
        assert event.name == "UDP_datagram_length_mismatch" and event.uid is not None
        per_uid[event.uid] = per_uid.get(event.uid, 0) + 1
    assert sorted(per_uid.values()) == [1, 1, 1, 1, 1, 2]  # the first flow reached its threshold of 2
    assert counters["weird:UDP_datagram_length_mismatch"] == 10


def test_a_flood_of_one_name_does_not_hide_another() -> None:
    flood = [truncated_ethernet(300.0 + i / 1000) for i in range(200)]
    other = [udp_length_mismatch(300.5)]
    events, counters = weirds(flood + other, weirds_per_second=5)
    names = [e.name for e in events]
    assert names.count("truncated_ethernet_frame") == 5
    assert names.count("UDP_datagram_length_mismatch") == 1
    assert counters["weird:truncated_ethernet_frame"] == 200

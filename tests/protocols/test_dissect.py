"""The engine's side of the parser contract: detection on any port, in-order delivery with
gaps, confirm/violation/emit/weird through the FlowContext, and the one catch-all boundary
that keeps a failing parser from taking the engine down."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from protocols import analyzer as analyzer_module
from protocols.analyzer import Analyzer
from protocols.dissect import DissectSettings, Dissector
from protocols.events.conn import Conn
from protocols.events.weird import Weird
from tests.protocols.packets import ACK, PSH, Conversation, ethernet, frame, ipv4, udp

REQUEST = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"


@attrs.frozen(slots=True)
class Seen:
    """What the recording parser emits: stands in for a parser's event."""

    ts: float
    what: str


class RecordingParser(Analyzer):
    """Records every call; reacts to markers in the bytes to exercise the FlowContext."""

    instances: list["RecordingParser"] = []

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self.calls: list[tuple] = []
        RecordingParser.instances.append(self)

    def data(self, is_orig: bool, data: bytes, ts: float) -> None:
        self.calls.append(("data", is_orig, data))
        if b"CONFIRM" in data:
            self.ctx.confirm("http")
        if b"EMIT" in data:
            self.ctx.emit(Seen(ts, "emitted"))
            self.ctx.weird("HTTP_weird_test", ts, "addl")
        if b"VIOLATE" in data:
            self.ctx.violation("not http", ts)
        if b"CRASH" in data:
            raise KeyError("parser bug")

    def gap(self, is_orig: bool, length: int, ts: float) -> None:
        self.calls.append(("gap", is_orig, length))

    def end(self, ts: float) -> None:
        self.calls.append(("end",))


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[RecordingParser]:
    RecordingParser.instances = []
    monkeypatch.setitem(analyzer_module.ANALYZERS, "http", RecordingParser)
    monkeypatch.setitem(analyzer_module.ANALYZERS, "dns", RecordingParser)
    return RecordingParser


def run(frames, **settings) -> tuple[list[Any], Dissector]:
    dissector = Dissector(DissectSettings(**settings))
    return dissector.feed(frames) + dissector.finish(), dissector


def test_parser_chosen_by_content_on_any_port_gets_in_order_bytes(recording) -> None:
    c = Conversation(bport=31337).handshake()
    first = c.nxt[True]
    c.a(PSH | ACK, REQUEST[10:], seq=first + 10)  # out of order: held
    c.a(PSH | ACK, REQUEST[:10], seq=first)  # fills the hole
    c.nxt[True] = first + len(REQUEST)
    c.b(PSH | ACK, b"HTTP/1.1 200 OK\r\n\r\n")
    c.close()
    events, dissector = run(c.frames)
    (parser,) = recording.instances
    orig = b"".join(call[2] for call in parser.calls if call[0] == "data" and call[1])
    assert orig == REQUEST
    assert parser.calls[-1] == ("end",)
    assert parser.ctx.proto == "tcp" and parser.ctx.id.resp_p == 31337
    (conn,) = [e for e in events if isinstance(e, Conn)]
    assert parser.ctx.uid == conn.uid
    assert dissector.counters["detect:http"] == 1
    assert conn.service is None  # detection alone never names the service: only confirm()


def test_confirm_emit_and_weird_go_through_the_context(recording) -> None:
    c = Conversation().handshake()
    c.a(PSH | ACK, b"GET /CONFIRM/EMIT HTTP/1.1\r\n\r\n")
    c.close()
    events, dissector = run(c.frames)
    (conn,) = [e for e in events if isinstance(e, Conn)]
    assert conn.service == "http"
    assert [e.what for e in events if isinstance(e, Seen)] == ["emitted"]
    weird = [e for e in events if isinstance(e, Weird) and e.name == "HTTP_weird_test"]
    assert weird and weird[0].uid == conn.uid and weird[0].addl == "addl"


def test_violation_stops_feeding_the_parser(recording) -> None:
    c = Conversation().handshake()
    c.a(PSH | ACK, b"GET /VIOLATE HTTP/1.1\r\n\r\n")
    c.a(PSH | ACK, b"more bytes")
    c.close()
    events, dissector = run(c.frames)
    (parser,) = recording.instances
    assert [call[0] for call in parser.calls] == ["data"]  # no data, no end after the violation
    assert dissector.counters["violation:http"] == 1


def test_a_failing_parser_is_contained_counted_and_not_fed_again(recording) -> None:
    bad = Conversation(aport=40000).handshake()
    bad.a(PSH | ACK, b"GET /CRASH HTTP/1.1\r\n\r\n")
    bad.a(PSH | ACK, b"GET /more HTTP/1.1\r\n\r\n")
    bad.close()
    good = Conversation(aport=40001, start=2000.0).handshake()
    good.a(PSH | ACK, b"GET /CONFIRM HTTP/1.1\r\n\r\n")
    good.close()
    events, dissector = run(bad.frames + good.frames)
    crashed, healthy = recording.instances
    assert [call[0] for call in crashed.calls] == ["data"]
    assert dissector.counters["weird:analyzer_error"] == 1
    assert dissector.counters["violation:http"] == 1
    error = next(e for e in events if isinstance(e, Weird) and e.name == "analyzer_error")
    assert "KeyError" in error.addl
    conns = {c.id.orig_p: c for c in events if isinstance(c, Conn)}
    assert conns[40000].conn_state == "SF" and conns[40001].service == "http"
    assert healthy.calls[-1] == ("end",)


def test_gaps_reach_the_parser(recording) -> None:
    c = Conversation().handshake()
    c.a(PSH | ACK, REQUEST)
    c.a(PSH | ACK, b"x" * 50, keep=False)  # never seen by the sensor
    c.a(PSH | ACK, b"y" * 20)
    c.b(ACK)
    c.close()
    run(c.frames)
    (parser,) = recording.instances
    assert ("gap", True, 50) in parser.calls
    assert parser.calls.index(("gap", True, 50)) < parser.calls.index(("data", True, b"y" * 20))


def test_udp_datagrams_one_by_one_and_detection_on_either_direction(recording) -> None:
    query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
    reply = b"\x12\x34\x81\x80" + query[4:]
    a, b = "10.0.0.1", "10.0.0.2"
    frames = [
        frame(ethernet(ipv4(a, b, 17, udp(a, b, 40000, 5300, b"not dns at all"))), 1.0),
        frame(ethernet(ipv4(b, a, 17, udp(b, a, 5300, 40000, reply))), 1.1),
        frame(ethernet(ipv4(a, b, 17, udp(a, b, 40000, 5300, query))), 1.2),
    ]
    events, dissector = run(frames)
    (parser,) = recording.instances
    assert parser.calls[:2] == [("data", False, reply), ("data", True, query)]
    assert dissector.counters["detect:dns"] == 1


def test_no_parser_for_unrecognised_bytes_and_no_buffering(recording) -> None:
    c = Conversation().handshake()
    c.a(PSH | ACK, b"\x00\x01binary" * 40)
    c.b(PSH | ACK, b"\x7fELF" * 40)
    c.close()
    events, dissector = run(c.frames)
    assert recording.instances == []
    assert not [k for k in dissector.counters if k.startswith("detect:")]


def test_evict_oldest_ends_the_least_recently_active_flows_first():
    """Shedding memory ends whole flows, oldest activity first, each logged as a conn."""
    from tests.protocols.packets import ethernet, frame, ipv4, udp

    dissector = Dissector(DissectSettings())
    dissector.feed([
        frame(ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp("10.0.0.1", "10.0.0.2", 1000 + i, 9999, b"x"))), 100.0 + i)
        for i in range(10)
    ])
    assert dissector.active_flows == 10
    events = dissector.evict_oldest(3)
    assert [e.id.orig_p for e in events if e.KIND == "conn"] == [1000, 1001, 1002]
    assert dissector.active_flows == 7
    assert dissector.counters["flows_shed"] == 3

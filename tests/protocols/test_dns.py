"""DNS parser on bytes: Zeek's dns.log fields and pairing, compression, truncation, TCP framing."""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest

from protocols.dns import DnsAnalyzer, _is_multicast
from protocols.dns_wire import parse_message, read_name
from tests.protocols.recording_ctx import RecordingContext

RD = 0x0100
RESPONSE = 0x8000 | 0x0400 | RD | 0x0080  # QR, AA, RD, RA


def name(text: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in text.split(".") if label) + b"\x00"


def header(tid: int, flags: int, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", tid, flags, qd, an, ns, ar)


def question(qname: str, qtype: int = 1, qclass: int = 1) -> bytes:
    return name(qname) + struct.pack("!HH", qtype, qclass)


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes, rclass: int = 1) -> bytes:
    return owner + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def query(tid: int, qname: str = "www.Example.com", qtype: int = 1) -> bytes:
    return header(tid, RD) + question(qname, qtype)


def response(tid: int, qname: str = "www.Example.com", qtype: int = 1, answers: list[bytes] = (),
             rcode: int = 0, ar: int = 0) -> bytes:
    return header(tid, RESPONSE | rcode, an=len(answers), ar=ar) + question(qname, qtype) + b"".join(answers)


A_ANSWER = rr(b"\xc0\x0c", 1, 300, bytes([192, 0, 2, 7]))


def udp_flow(*messages: tuple[bool, bytes, float]) -> RecordingContext:
    ctx = RecordingContext()
    analyzer = DnsAnalyzer(ctx)
    for is_orig, payload, ts in messages:
        analyzer.data(is_orig, payload, ts)
    analyzer.end(99.0)
    return ctx


def test_query_and_response_make_one_zeek_dns_record():
    ctx = udp_flow((True, query(0x1234), 10.0), (False, response(0x1234, answers=[A_ANSWER]), 10.25))
    [event] = ctx.exported()
    assert event["kind"] == "dns" and event["ts"] == 10.0
    assert event["trans_id"] == 0x1234 and event["proto"] == "udp"
    assert event["query"] == "www.example.com"  # lower-cased as Zeek does
    assert (event["qtype"], event["qtype_name"], event["qclass_name"]) == (1, "A", "C_INTERNET")
    assert (event["rcode"], event["rcode_name"]) == (0, "NOERROR")
    assert event["rtt"] == pytest.approx(0.25)
    assert event["answers"] == ["192.0.2.7"] and event["TTLs"] == [300.0]
    assert (event["AA"], event["RD"], event["RA"], event["TC"]) == (True, True, True, False)
    assert event["opcode_name"] == "query" and event["rejected"] is False
    assert ctx.confirmed == ["dns"] and not ctx.weirds


def test_answer_summaries_use_zeek_forms_and_keep_presentation_data():
    owner = b"\xc0\x0c"
    answers = [
        rr(owner, 16, 60, b"\x0ev=spf1 mx -all"),
        rr(owner, 15, 60, b"\x00\x0a" + name("mail.example.com")),
        rr(owner, 33, 60, struct.pack("!HHH", 0, 100, 88) + name("kdc.example.com")),
        rr(owner, 28, 60, bytes.fromhex("fd000203001000000000000000000001")),
        rr(owner, 99, 60, b"\x00"),  # UNSPEC... type 99 is SPF: one empty string
        rr(owner, 4242, 60, b"\x01\x02"),
    ]
    ctx = udp_flow((True, query(7, qtype=255), 1.0), (False, response(7, qtype=255, answers=answers), 1.5))
    [event] = ctx.exported()
    assert event["answers"] == [
        "TXT 14 v=spf1 mx -all", "mail.example.com", "kdc.example.com", "fd00:203:10::1", "SPF 0 ",
        "<unknown type=4242>",
    ]
    assert event["answer_types"] == ["TXT", "MX", "SRV", "AAAA", "SPF", "query-4242"]
    assert event["answer_data"][1:3] == ["10 mail.example.com", "0 100 88 kdc.example.com"]
    assert ("DNS_RR_unknown_type", "4242") in ctx.weirds


def test_records_zeek_logs_no_answer_for_leave_aa_ra_and_rtt_unset():
    opt = rr(b"\x00", 41, 0, b"")  # OPT in the answer section: Zeek has no summary for it
    ctx = udp_flow((True, query(9), 1.0), (False, response(9, answers=[opt]), 2.0))
    [event] = ctx.exported()
    assert event["answers"] is None and event["rtt"] is None
    assert event["AA"] is False and event["RA"] is False
    assert event["answer_types"] == ["OPT"]


def test_refused_without_records_is_rejected():
    ctx = udp_flow((True, query(5), 1.0), (False, response(5, rcode=5), 1.1))
    [event] = ctx.exported()
    assert event["rcode_name"] == "REFUSED" and event["rejected"] is True


def test_duplicate_response_is_a_second_record_without_query_fields():
    ctx = udp_flow(
        (True, query(21140), 1.0),
        (False, response(21140, answers=[A_ANSWER]), 1.1),
        (False, response(21140, answers=[A_ANSWER]), 1.2),
    )
    first, second = ctx.exported()
    assert first["saw_query"] and first["saw_reply"] and first["qtype"] == 1
    assert second["saw_query"] is False and second["saw_reply"] is True
    assert second["qtype"] is None and second["qclass"] is None and second["rtt"] is None
    assert second["query"] == "www.example.com"  # from the first answer's owner name
    assert second["answers"] == ["192.0.2.7"]


def test_retransmitted_query_pairs_first_and_logs_second_unanswered():
    ctx = udp_flow(
        (True, query(40849), 1.0),
        (True, query(40849), 5.0),
        (False, response(40849, answers=[A_ANSWER]), 6.0),
    )
    answered, unanswered = ctx.exported()
    assert answered["rtt"] == pytest.approx(5.0)
    assert unanswered["ts"] == 5.0 and unanswered["rcode"] is None and unanswered["saw_reply"] is False


def test_interleaved_queries_match_by_transaction_id():
    ctx = udp_flow(
        (True, query(1, "a.example"), 1.0),
        (True, query(2, "b.example", 28), 1.1),
        (False, response(2, "b.example", 28), 1.2),
        (False, response(1, "a.example", answers=[A_ANSWER]), 1.3),
    )
    by_id = {e["trans_id"]: e for e in ctx.exported()}
    assert by_id[1]["query"] == "a.example" and by_id[1]["answers"] == ["192.0.2.7"]
    assert by_id[2]["query"] == "b.example" and by_id[2]["qtype_name"] == "AAAA"


def test_compression_pointer_loops_are_refused_not_followed():
    prefix = header(3, RESPONSE, an=1) + question("x.example")
    here = len(prefix)  # where the answer's owner name starts
    for owner in (struct.pack("!H", 0xC000 | here), struct.pack("!H", 0xC000 | (here + 40))):
        parsed = parse_message(prefix + rr(owner, 1, 60, b"\x01\x02\x03\x04"))
        assert ("DNS_label_forward_compress_offset", None) in parsed.weirds
        assert parsed.answers[0].name == ""  # nothing was followed
    # rdata pointing at itself: the CNAME target is refused, the record kept
    rdata_at = here + 2 + 10
    looped = parse_message(prefix + rr(b"\xc0\x0c", 5, 60, struct.pack("!H", 0xC000 | rdata_at)))
    assert ("DNS_label_forward_compress_offset", None) in looped.weirds
    assert looped.answers[0].name == "x.example"


def test_backward_pointer_chains_resolve():
    # "a" + pointer to "b" + pointer to "example": a.b.example
    buf = b"\x00" * 12 + name("example") + b"\x01b\xc0\x0c" + b"\x01a\xc0\x15"
    raw, after = read_name(buf, 12 + 9 + 4, len(buf), [])
    assert raw == b"a.b.example" and after == len(buf)


def test_over_long_label_and_name_limits_are_weirds():
    long_label = header(1, RD) + bytes([64]) + b"x" * 64 + b"\x00" + struct.pack("!HH", 1, 1)
    assert ("DNS_label_too_long", None) in parse_message(long_label).weirds
    many = ".".join(["abcdefghij"] * 30)
    too_long = header(1, RD) + question(many)
    weirds = parse_message(too_long).weirds
    assert ("DNS_NAME_too_long", None) in weirds


def test_truncation_at_every_offset_never_raises():
    full = response(77, answers=[A_ANSWER, rr(b"\xc0\x0c", 16, 1, b"\x03abc"),
                                 rr(b"\xc0\x0c", 46, 1, struct.pack("!HBBIIIH", 5, 8, 2, 1, 2, 3, 4) + name("example"))])
    for cut in range(len(full)):
        ctx = RecordingContext()
        analyzer = DnsAnalyzer(ctx)
        analyzer.data(True, query(77), 1.0)
        analyzer.data(False, full[:cut], 2.0)
        analyzer.end(3.0)
        if cut < 12:
            assert "DNS_truncated_len_lt_hdr_len" in ctx.weird_names()
        elif cut < len(full) - 1:
            assert ctx.weirds, f"no weird for a message cut at {cut}"


def test_random_bytes_never_raise():
    rng = random.Random(1234)
    for _ in range(3000):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        parse_message(blob)
        ctx = RecordingContext(proto="tcp")
        analyzer = DnsAnalyzer(ctx)
        analyzer.data(True, blob, 1.0)
        analyzer.gap(True, rng.randrange(1, 50), 1.5)
        analyzer.data(True, blob[::-1], 2.0)
        analyzer.end(3.0)


def test_too_many_questions_is_not_dns():
    ctx = udp_flow((True, header(1, RD, qd=400) + b"\x00" * 40, 1.0))
    assert ctx.violations == ["DNS_Conn_count_too_large"] and not ctx.events


def framed(msg: bytes) -> bytes:
    return struct.pack("!H", len(msg)) + msg


def tcp_analyzer() -> tuple[RecordingContext, DnsAnalyzer]:
    ctx = RecordingContext(proto="tcp")
    return ctx, DnsAnalyzer(ctx)


def test_tcp_messages_split_across_segments_and_shared_in_one():
    ctx, analyzer = tcp_analyzer()
    stream = framed(query(1)) + framed(query(2, "b.example"))
    for i in range(len(stream)):  # one byte at a time
        analyzer.data(True, stream[i : i + 1], 1.0)
    analyzer.data(False, framed(response(1, answers=[A_ANSWER])) + framed(response(2, "b.example")), 2.0)
    analyzer.end(3.0)
    events = ctx.exported()
    assert [(e["trans_id"], e["query"], e["proto"]) for e in events] == [(1, "www.example.com", "tcp"), (2, "b.example", "tcp")]
    assert all(e["saw_query"] and e["saw_reply"] for e in events)


def test_tcp_gap_inside_a_message_drops_only_that_message():
    ctx, analyzer = tcp_analyzer()
    second = framed(query(2, "b.example"))
    analyzer.data(True, framed(query(1))[:10], 1.0)
    analyzer.gap(True, 5, 1.1)
    analyzer.data(True, framed(query(1))[15:] + second, 1.2)
    analyzer.end(2.0)
    assert [e.trans_id for e in ctx.events] == [2]
    assert "DNS_tcp_gap" in ctx.weird_names()


def test_tcp_gap_at_a_boundary_resumes_when_the_next_message_is_dns():
    ctx, analyzer = tcp_analyzer()
    analyzer.data(True, framed(query(1)), 1.0)
    analyzer.gap(True, len(framed(query(2))), 1.1)
    analyzer.data(True, framed(query(3)), 1.2)
    analyzer.end(2.0)
    assert sorted(e.trans_id for e in ctx.events) == [1, 3]


def test_tcp_gap_that_loses_the_framing_stops_the_direction():
    ctx, analyzer = tcp_analyzer()
    analyzer.data(True, framed(query(1)), 1.0)
    analyzer.gap(True, 7, 1.1)
    analyzer.data(True, b"\x00\x20" + b"\xff" * 32 + framed(query(3)), 1.2)
    analyzer.end(2.0)
    assert [e.trans_id for e in ctx.events] == [1]
    assert "DNS_tcp_framing_lost" in ctx.weird_names()


def test_multicast_messages_are_logged_one_by_one():
    ctx = RecordingContext(resp=("224.0.0.251", 5353))
    analyzer = DnsAnalyzer(ctx)
    analyzer.data(True, query(0, "printer.local"), 1.0)
    assert len(ctx.events) == 1  # logged at once: no reply is paired with multicast


@pytest.mark.parametrize("address,multicast", [
    ("224.0.0.251", True), ("239.255.255.250", True), ("223.255.255.255", False), ("240.0.0.1", False),
    ("10.0.0.1", False), ("ff02::fb", True), ("FF05::1:3", True), ("fe80::1", False), ("::ffff:224.0.0.1", False),
])
def test_multicast_destinations_are_recognised_from_the_address_text(address, multicast):
    assert _is_multicast(address) is multicast
    assert ipaddress.ip_address(address).is_multicast is multicast

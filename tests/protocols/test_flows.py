"""Flow semantics as Zeek's conn.log has them: originator, history, conn_state, byte counts,
timeouts, eviction, uids, VLANs, ICMP and other protocols. Frames are built from bytes."""

from __future__ import annotations

import re

import pytest

from protocols.dissect import DissectSettings, Dissector
from protocols.events.conn import Conn
from protocols.events.weird import Weird
from protocols.flows import LIKELY_SERVER_PORTS, icmp_ports
from tests.protocols.packets import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    Conversation,
    ethernet,
    frame,
    icmp,
    ipv4,
    ipv6,
    tcp,
    udp,
)

DATA = b"x" * 100  # nothing a protocol detector recognises


def run(frames, settings: DissectSettings = DissectSettings(), **kw) -> tuple[list[Conn], list, Dissector]:
    dissector = Dissector(settings, **kw)
    events = dissector.feed(frames) + dissector.finish()
    return [e for e in events if isinstance(e, Conn)], events, dissector


def one_conn(frames, **settings) -> Conn:
    conns, _, _ = run(frames, DissectSettings(**settings))
    assert len(conns) == 1, conns
    return conns[0]


# -- TCP conn_state and history ----------------------------------------------------------


def test_normal_connection_is_sf_with_zeek_history_and_sequence_byte_counts() -> None:
    c = Conversation().handshake()
    c.a(PSH | ACK, DATA)
    c.b(ACK)
    c.b(PSH | ACK, b"y" * 300)
    c.a(ACK)
    c.close()
    conn = one_conn(c.frames)
    assert conn.conn_state == "SF"
    assert conn.history == "ShADadFf"
    assert (conn.orig_bytes, conn.resp_bytes) == (100, 300)
    assert (conn.orig_pkts, conn.resp_pkts) == (6, 4)
    assert conn.orig_ip_bytes == 6 * 40 + 100
    assert conn.proto == "tcp" and conn.ip_proto == 6 and conn.missed_bytes == 0
    assert (conn.id.orig_h, conn.id.orig_p, conn.id.resp_h, conn.id.resp_p) == ("10.0.0.1", 40000, "10.0.0.2", 8080)
    # the duration stops at the last FIN: the final ACK comes after both sides closed
    assert conn.duration == pytest.approx(c.frames[-2][0] - c.frames[0][0])
    assert conn.orig_l2_addr == "02:00:00:00:00:01" and conn.resp_l2_addr == "02:00:00:00:00:02"


@pytest.mark.parametrize(
    "script,state,history",
    [
        (lambda c: c.a(SYN), "S0", "S"),
        (lambda c: (c.a(SYN), c.b(RST | ACK)), "REJ", "Sr"),
        (lambda c: c.handshake(), "S1", "ShA"),
        (lambda c: (c.handshake(), c.a(FIN | ACK)), "S2", "ShAF"),
        (lambda c: (c.handshake(), c.b(FIN | ACK)), "S3", "ShAf"),
        (lambda c: (c.handshake(), c.a(RST | ACK)), "RSTO", "ShAR"),
        (lambda c: (c.handshake(), c.b(RST | ACK)), "RSTR", "ShAr"),
        (lambda c: (c.a(SYN), c.a(RST)), "RSTOS0", "SR"),
        (lambda c: (c.a(SYN), c.a(FIN)), "SH", "SF"),
        (lambda c: (c.b(SYN | ACK, ack=1001), c.b(RST, seq=5001)), "RSTRH", "^hr"),
        (lambda c: (c.b(SYN | ACK, ack=1001), c.b(FIN | ACK, seq=5001)), "SHR", "^hf"),
        (lambda c: (c.a(ACK, DATA), c.b(ACK, DATA)), "OTH", "Dd"),
    ],
)
def test_conn_states(script, state: str, history: str) -> None:
    # port 80 is a likely server port: a first SYN-ACK from it is flipped at once (^)
    c = Conversation(bport=80)
    script(c)
    conn = one_conn(c.frames)
    assert (conn.conn_state, conn.history) == (state, history)


def test_syn_ack_before_syn_flips_the_roles_in_the_handshake() -> None:
    # Zeek's connection_flipped test: SYN-ACK first (ports give no hint), then the SYN
    c = Conversation(aport=59856, bport=5555)
    c.b(SYN | ACK, ack=1001)
    c.a(SYN)
    c.a(ACK)
    c.a(PSH | ACK, DATA)
    c.b(ACK)
    c.b(PSH | ACK, DATA)
    c.close()
    conn = one_conn(c.frames)
    assert conn.history == "Hs^ADadFf"
    assert (conn.id.orig_h, conn.id.orig_p) == ("10.0.0.1", 59856)
    assert conn.conn_state == "SF"
    # counted by their real sender, after the flip too
    assert (conn.orig_pkts, conn.resp_pkts) == (5, 4)


def test_midstream_traffic_from_a_server_port_is_flipped_by_the_port_heuristic() -> None:
    c = Conversation(bport=443)
    c.b(PSH | ACK, DATA)
    c.a(ACK)
    conn = one_conn(c.frames)
    assert conn.history == "^dA"
    assert (conn.id.orig_p, conn.id.resp_p) == (40000, 443)
    assert LIKELY_SERVER_PORTS >= {53, 80, 88, 135, 139, 443, 445}


def test_repeated_syn_letters_follow_the_relative_sequence_number() -> None:
    c = Conversation()
    c.a(SYN, seq=1000)
    c.a(SYN, seq=1000)  # a retransmission: same sequence number, no new letter
    c.a(SYN, seq=3000)  # a jump re-bases the endpoint (Zeek): relative 0 again, no new letter
    conns, events, _ = run(c.frames)
    assert conns[0].history == "S"
    assert [e.name for e in events if isinstance(e, Weird)] == ["SYN_seq_jump"]
    c = Conversation().handshake()
    c.b(RST, seq=5001)
    c.b(RST, seq=5001)  # same relative number: one r
    c.b(RST, seq=5200)  # another one: a second r
    assert one_conn(c.frames).history == "ShArr"


def test_multi_flag_and_inconsistent_packets() -> None:
    c = Conversation()
    c.a(SYN | FIN)
    c.a(SYN | FIN)
    assert one_conn(c.frames).history == "Q"
    c = Conversation().handshake()
    c.a(FIN | RST | ACK)
    assert one_conn(c.frames).history.endswith("I")


def test_retransmissions_and_zero_windows_are_logarithmic() -> None:
    c = Conversation().handshake()
    first = c.nxt[True]
    c.a(PSH | ACK, DATA)
    for _ in range(10):
        c.a(PSH | ACK, DATA, seq=first)
    for _ in range(9):
        c.b(ACK, window=0)
    conn = one_conn(c.frames)
    assert conn.history == "ShADTTaw"  # T at the 1st and 10th retransmission; w once (9 < 10)
    assert conn.orig_bytes == 100  # from sequence numbers: retransmissions do not count twice
    assert conn.orig_payload_bytes == 1100  # every packet's payload, as tshark counts


def test_content_gap_is_acked_hole_counted_in_missed_bytes() -> None:
    c = Conversation().handshake()
    c.a(PSH | ACK, b"a" * 100)
    c.a(PSH | ACK, b"b" * 100, keep=False)  # lost on the way to the sensor
    c.a(PSH | ACK, b"c" * 100)
    c.b(ACK)  # acknowledges all 300 bytes
    c.close()
    conn = one_conn(c.frames)
    assert conn.missed_bytes == 100
    assert conn.history == "ShADaGFf"
    assert conn.orig_bytes == 300


def test_gaps_are_not_counted_for_partial_connections() -> None:
    c = Conversation()
    c.a(ACK, b"a" * 100)
    c.a(ACK, b"b" * 100, keep=False)
    c.a(ACK, b"c" * 100)
    c.b(ACK)
    conn = one_conn(c.frames)
    assert conn.missed_bytes == 0 and "G" not in conn.history  # report_gaps_for_partial=F


def test_bad_checksums_drop_the_packet_and_mark_c() -> None:
    c = Conversation().handshake()
    good = c.a(PSH | ACK, DATA)
    data = bytearray(good[2])
    data[-1] ^= 0xFF  # corrupt the payload: the TCP checksum no longer matches
    bad = (good[0], good[1], bytes(data), good[3])
    frames = c.frames[:-1] + [bad]
    conn = one_conn(frames, verify_transport_checksums=True)
    assert conn.history == "ShAC"
    assert conn.orig_pkts == 2
    conns, _, dissector = run(frames, DissectSettings(verify_transport_checksums=True))
    assert dissector.counters["weird:bad_TCP_checksum"] == 1
    assert dissector.counters["skip:bad_TCP_checksum"] == 1
    assert one_conn(frames).history == "ShAD"  # not verified by default


def test_udp_bad_checksums_match_zeek_corrupt_dns() -> None:
    query = udp("10.0.0.1", "10.0.0.2", 34357, 53, b"q" * 30, good_checksum=False)
    answer = udp("10.0.0.2", "10.0.0.1", 53, 34357, b"a" * 60, good_checksum=False)
    frames = [frame(ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, query)), 1.0),
              frame(ethernet(ipv4("10.0.0.2", "10.0.0.1", 17, answer)), 1.1)]
    conn = one_conn(frames, verify_transport_checksums=True)
    assert (conn.orig_pkts, conn.resp_pkts, conn.history, conn.conn_state) == (0, 0, "Cc", "OTH")


# -- close, timeouts, eviction -----------------------------------------------------------


def test_closed_flow_ends_after_the_close_delay() -> None:
    c = Conversation().handshake().close()
    dissector = Dissector(DissectSettings(tcp_close_delay=5.0))
    assert not [e for e in dissector.feed(c.frames) if isinstance(e, Conn)]
    last = c.frames[-1][0]
    assert not [e for e in dissector.advance(last + 1.0) if isinstance(e, Conn)]
    assert len([e for e in dissector.advance(last + 6.0) if isinstance(e, Conn)]) == 1
    assert dissector.active_flows == 0


def test_unanswered_syn_ends_after_the_attempt_timeout_and_a_later_syn_is_a_new_flow() -> None:
    c = Conversation()
    c.a(SYN)
    c.ts += 7.0
    c.a(SYN, seq=1000)
    conns, _, _ = run(c.frames, DissectSettings(tcp_attempt_timeout=5.0))
    assert [x.history for x in conns] == ["S", "S"]


@pytest.mark.parametrize("proto", ["udp", "icmp", "other"])
def test_idle_flows_end_after_their_timeout(proto: str) -> None:
    def packet(ts: float, reply: bool = False):
        src, dst = ("10.0.0.2", "10.0.0.1") if reply else ("10.0.0.1", "10.0.0.2")
        if proto == "udp":
            body, number = udp(src, dst, 6000 if reply else 5000, 5000 if reply else 6000, b"z"), 17
        elif proto == "icmp":
            body, number = icmp(14 if reply else 13, 0, b"\0" * 12), 1  # timestamp request/reply
        else:
            body, number = b"\0" * 8, 47
        return frame(ethernet(ipv4(src, dst, number, body)), ts)

    settings = DissectSettings(udp_idle_timeout=30, icmp_idle_timeout=30, other_idle_timeout=30)
    dissector = Dissector(settings)
    dissector.feed([packet(100.0), packet(110.0, reply=True)])
    assert not [e for e in dissector.advance(139.0) if isinstance(e, Conn)]
    ended = [e for e in dissector.advance(141.0) if isinstance(e, Conn)]
    assert len(ended) == 1 and (ended[0].orig_pkts, ended[0].resp_pkts) == (1, 1)
    # a packet long after the timeout starts a new flow even without advance()
    conns, _, _ = run([packet(100.0), packet(200.0)], settings)
    assert len(conns) == 2


def test_a_full_table_evicts_the_least_recently_active_flows() -> None:
    frames = [frame(ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, udp("10.0.0.1", "10.0.0.2", 1000 + i, 53, b"q"))),
                    100.0 + i) for i in range(10)]
    conns, _, dissector = run(frames, DissectSettings(max_flows=4))
    assert len(conns) == 10
    assert dissector.counters["flows_evicted"] == 6
    assert dissector.counters["flows"] == 10


def test_uids_are_deterministic_salted_and_zeek_shaped() -> None:
    c = Conversation().handshake().close()
    first = one_conn(c.frames).uid
    assert first == one_conn(c.frames).uid
    assert first != one_conn(c.frames, uid_salt="sensor-2").uid
    assert re.fullmatch(r"C[0-9A-Za-z]{17}", first)
    other = Conversation(aport=40001).handshake().close()
    assert one_conn(other.frames).uid != first


def test_weirds_carry_the_uid_and_are_rate_limited_but_all_counted() -> None:
    c = Conversation()
    c.b(SYN | ACK, ack=1001)  # unsolicited SYN-ACK (port 8080 is not flipped)
    conns, events, dissector = run(c.frames)
    weird = [e for e in events if isinstance(e, Weird)]
    assert weird and weird[0].uid == conns[0].uid and weird[0].name == "unsolicited_SYN_response"
    frames = [frame(b"\x01", 100.0 + i / 1000) for i in range(50)]  # truncated Ethernet
    _, events, dissector = run(frames, DissectSettings(weirds_per_second=5))
    assert len([e for e in events if isinstance(e, Weird)]) == 5
    assert dissector.counters["weird:truncated_ethernet_frame"] == 50
    assert dissector.counters["skip:truncated_ethernet_frame"] == 50


def test_local_nets() -> None:
    c = Conversation(a="10.1.2.3", b="8.8.8.8").handshake()
    conn = one_conn(c.frames, local_nets=("10.0.0.0/8", "fd00::/8"))
    assert (conn.local_orig, conn.local_resp) == (True, False)
    assert one_conn(c.frames).local_orig is None


# -- UDP, ICMP, VLANs, other protocols ---------------------------------------------------


def _udp_frame(ts: float, src: str, dst: str, sport: int, dport: int, payload: bytes = b"u" * 20):
    return frame(ethernet(ipv4(src, dst, 17, udp(src, dst, sport, dport, payload))), ts)


def test_udp_states_and_sizes() -> None:
    a, b = "10.0.0.1", "10.0.0.2"
    conn = one_conn([_udp_frame(1.0, a, b, 5000, 6000), _udp_frame(1.5, b, a, 6000, 5000, b"v" * 7)])
    assert (conn.conn_state, conn.history, conn.orig_bytes, conn.resp_bytes) == ("SF", "Dd", 20, 7)
    conn = one_conn([_udp_frame(1.0, a, b, 5000, 6000)])
    assert (conn.conn_state, conn.history, conn.orig_bytes, conn.duration) == ("S0", "D", None, None)
    # a reply seen alone, from a likely server port: flipped, so the responder only spoke
    conn = one_conn([_udp_frame(1.0, b, a, 53, 5000)])
    assert (conn.conn_state, conn.history, conn.id.orig_p, conn.id.resp_p) == ("SHR", "^d", 5000, 53)


def test_icmp_echo_is_one_flow_with_type_and_counterpart_ports() -> None:
    a, b = "10.0.0.1", "10.0.0.2"
    frames = [frame(ethernet(ipv4(a, b, 1, icmp(8, 0, b"p" * 56))), 1.0),
              frame(ethernet(ipv4(b, a, 1, icmp(0, 0, b"p" * 56))), 1.1),
              frame(ethernet(ipv4(b, a, 1, icmp(3, 3, b"\0" * 28))), 1.2)]
    conns, _, _ = run(frames)
    echo, unreachable = sorted(conns, key=lambda x: x.ts)
    assert (echo.proto, echo.id.orig_p, echo.id.resp_p, echo.orig_pkts, echo.resp_pkts) == ("icmp", 8, 0, 1, 1)
    assert (echo.orig_bytes, echo.resp_bytes, echo.conn_state, echo.history) == (56, 56, "OTH", None)
    assert (unreachable.id.orig_h, unreachable.id.orig_p, unreachable.id.resp_p) == (b, 3, 3)
    assert icmp_ports(58, 128, 0) == (128, 129) and icmp_ports(58, 1, 4) == (1, 4)


def test_icmpv6_echo() -> None:
    a, b = "2001:db8::1", "2001:db8::2"
    frames = [frame(ethernet(ipv6(a, b, 58, icmp(128, 0, b"p" * 8, a, b)), 0x86DD), 1.0),
              frame(ethernet(ipv6(b, a, 58, icmp(129, 0, b"p" * 8, b, a)), 0x86DD), 1.1)]
    conn = one_conn(frames, verify_transport_checksums=True)
    assert (conn.proto, conn.ip_proto, conn.id.orig_p, conn.id.resp_p, conn.resp_pkts) == ("icmp", 58, 128, 129, 1)


def test_vlans_separate_flows_and_are_logged() -> None:
    a, b = "10.0.0.1", "10.0.0.2"
    segment = tcp(a, b, 40000, 8080, 1, 0, SYN)
    frames = [frame(ethernet(ipv4(a, b, 6, segment), vlans=((0x88A8, 1), (0x8100, 10))), 1.0),
              frame(ethernet(ipv4(a, b, 6, segment), vlans=((0x8100, 6),)), 1.0),
              frame(ethernet(ipv4(a, b, 6, segment)), 1.0)]
    conns, _, _ = run(frames)
    assert sorted(((c.vlan, c.inner_vlan, c.vlans) for c in conns), key=repr) == sorted(
        [(1, 10, (1, 10)), (6, None, (6,)), (None, None, None)], key=repr
    )


def test_other_ip_protocols_make_port_less_flows() -> None:
    a, b = "10.0.0.1", "10.0.0.2"
    frames = [frame(ethernet(ipv4(a, b, 47, b"\0" * 8)), 1.0), frame(ethernet(ipv4(b, a, 47, b"\0" * 8)), 2.0)]
    conn = one_conn(frames)
    assert (conn.proto, conn.ip_proto, conn.orig_pkts, conn.resp_pkts, conn.conn_state) == (
        "unknown_transport", 47, 1, 1, "OTH",
    )


def test_every_packet_is_in_a_conn_or_a_skip_counter() -> None:
    c = Conversation().handshake()
    c.a(PSH | ACK, DATA)
    frames = c.frames + [frame(b"\x00" * 5, 2000.0), frame(ethernet(b"\0" * 28, 0x0806), 2000.1),
                         frame(ethernet(ipv4("10.0.0.1", "10.0.0.2", 17, b"\0" * 30, flags_frag=0x2000)), 2000.2)]
    conns, _, dissector = run(frames)
    counted = sum(x.orig_pkts + x.resp_pkts for x in conns)
    skipped = sum(v for k, v in dissector.counters.items() if k.startswith("skip:"))
    assert counted + skipped == dissector.counters["packets"] == len(frames)

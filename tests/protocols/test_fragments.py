"""FragmentReassembler: order, overlaps, Zeek's weirds, timeouts and the memory bound."""

from __future__ import annotations

import json
import struct

import pytest

from protocols.fragments import DATAGRAM_COST, PIECE_COST, FragmentReassembler
from protocols.capfile import CaptureReader

SRC, DST = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SRC6, DST6 = bytes(15) + b"\x01", bytes(15) + b"\x02"
UDP = 17
DATAGRAM = bytes(range(256)) * 8  # 2048 bytes of payload after the IP header


def frag4(r: FragmentReassembler, ts: float, offset: int, data: bytes, more: bool, *,
          ident: int = 7, proto: int = UDP, df: bool = False, padding: bytes = b"",
          captured: int | None = None):
    """Hand ``r`` an IPv4 fragment carrying ``data`` at byte ``offset`` (a multiple of 8)."""
    field = offset // 8 | (0x2000 if more else 0) | (0x4000 if df else 0)
    payload = (data + padding)[:captured]
    return r.ipv4(ts, SRC, DST, ident, proto, field, 20, 20 + len(data), payload)


def frag6(r: FragmentReassembler, ts: float, offset: int, data: bytes, more: bool, *,
          ident: int = 0x1234, nxt: int = UDP):
    return r.ipv6(ts, SRC6, DST6, ident, nxt, offset | int(more), 48, 48 + len(data), data)


def test_in_order():
    r = FragmentReassembler()
    assert frag4(r, 1.0, 0, DATAGRAM[:1000], True) is None
    assert frag4(r, 1.1, 1000, DATAGRAM[1000:2000], True) is None
    assert r.pending == 1 and r.held_bytes == DATAGRAM_COST + 2 * PIECE_COST + 2000
    assert frag4(r, 1.2, 2000, DATAGRAM[2000:], False) == (UDP, DATAGRAM)
    assert r.weirds == [] and r.pending == 0 and r.held_bytes == 0
    assert r.counters["fragments"] == 3 and r.counters["reassembled"] == 1


def test_out_of_order():
    r = FragmentReassembler()
    assert frag4(r, 1.0, 2000, DATAGRAM[2000:], False) is None
    assert frag4(r, 1.0, 0, DATAGRAM[:1000], True) is None
    assert frag4(r, 1.0, 1000, DATAGRAM[1000:2000], True) == (UDP, DATAGRAM)
    assert r.weirds == []


def test_identical_overlap_is_fragment_overlap():
    r = FragmentReassembler()
    frag4(r, 1.0, 0, DATAGRAM[:1000], True)
    assert frag4(r, 1.0, 504, DATAGRAM[504:1504], True) is None
    assert r.weirds == ["fragment_overlap"]
    assert frag4(r, 1.0, 1504, DATAGRAM[1504:], False) == (UDP, DATAGRAM)


def test_differing_overlap_is_inconsistency_and_the_first_copy_wins():
    r = FragmentReassembler()
    frag4(r, 1.0, 0, DATAGRAM[:1000], True)
    forged = b"X" * 1000
    frag4(r, 1.0, 504, forged, True)
    assert r.weirds == ["fragment_inconsistency"]
    proto, payload = frag4(r, 1.0, 1504, DATAGRAM[1504:], False)
    assert payload == DATAGRAM[:1000] + b"X" * 504 + DATAGRAM[1504:]


def test_fragment_overlapping_two_pieces_reports_each():
    r = FragmentReassembler()
    frag4(r, 1.0, 0, DATAGRAM[:400], True)
    frag4(r, 1.0, 800, DATAGRAM[800:1200], True)
    frag4(r, 1.0, 200, b"Y" * 800, True)  # over the end of one, the hole, the start of the other
    assert r.weirds == ["fragment_inconsistency", "fragment_inconsistency"]
    _, payload = frag4(r, 1.0, 1200, DATAGRAM[1200:], False)
    assert payload == DATAGRAM[:400] + b"Y" * 400 + DATAGRAM[800:]


def test_excessively_small_large_df_and_size_inconsistency():
    r = FragmentReassembler()
    frag4(r, 1.0, 0, b"a" * 16, True, df=True)
    assert r.weirds == ["fragment_with_DF", "excessively_small_fragment"]
    frag4(r, 1.0, 64000, b"b" * 8, True)
    assert r.weirds == ["excessively_small_fragment", "excessively_large_fragment"]
    frag4(r, 1.0, 64, b"c" * 8, False)   # the last fragment says 72 bytes: data beyond it is
    assert r.weirds == []                 # only flagged once the first 72 bytes are all there
    frag4(r, 1.0, 96, b"d" * 8, False)   # another last fragment disagrees
    assert r.weirds == ["fragment_size_inconsistency"]
    frag4(r, 1.0, 200, b"e" * 64, True)  # a middle fragment reaches past the end now known
    assert r.weirds == ["fragment_size_inconsistency"]


def test_complete_prefix_with_data_beyond_the_end_delivers_the_prefix():
    r = FragmentReassembler()
    frag4(r, 1.0, 200, b"z" * 8, True)            # beyond where the datagram turns out to end
    frag4(r, 1.0, 80, b"y" * 80, False)           # last fragment: 160 bytes
    assert frag4(r, 1.0, 0, b"x" * 80, True) == (UDP, b"x" * 80 + b"y" * 80)
    assert r.weirds == ["fragment_size_inconsistency"]


def test_link_padding_is_cut_and_snaplen_cut_fragments_are_not_reassembled():
    r = FragmentReassembler()
    frag4(r, 1.0, 0, DATAGRAM[:1000], True, padding=b"\x00" * 6)
    assert frag4(r, 1.0, 1000, DATAGRAM[1000:], False, captured=500) is None
    assert r.weirds == ["incompletely_captured_fragment"]
    assert r.counters["not_reassembled"] == 1
    assert frag4(r, 1.0, 1000, DATAGRAM[1000:], False) == (UDP, DATAGRAM)


def test_total_length_under_header_length_is_protocol_inconsistency():
    r = FragmentReassembler()
    assert r.ipv4(1.0, SRC, DST, 1, UDP, 0x2000, 20, 12, b"") is None
    assert r.weirds == ["fragment_protocol_inconsistency"] and r.pending == 0


def test_datagrams_are_keyed_by_addresses_ident_and_protocol():
    r = FragmentReassembler()
    frag4(r, 1.0, 0, DATAGRAM[:1000], True)
    frag4(r, 1.0, 0, b"t" * 1000, True, proto=6)
    frag4(r, 1.0, 0, b"i" * 1000, True, ident=8)
    assert r.pending == 3 and r.weirds == []
    assert frag4(r, 1.0, 1000, DATAGRAM[1000:], False) == (UDP, DATAGRAM)


def test_timeout_expires_incomplete_datagrams():
    r = FragmentReassembler(timeout=30.0)
    frag4(r, 100.0, 0, DATAGRAM[:1000], True)
    assert r.expire(129.9) == 0 and r.pending == 1
    # The rest arrives too late: the old first half is gone, so nothing completes.
    assert frag4(r, 130.0, 1000, DATAGRAM[1000:], False) is None
    assert r.counters["expired"] == 1 and r.pending == 1
    assert r.held_bytes == DATAGRAM_COST + PIECE_COST + len(DATAGRAM) - 1000
    assert r.expire(160.0) == 1 and r.pending == 0 and r.held_bytes == 0


def test_memory_bound_evicts_oldest_first():
    budget = 3 * (DATAGRAM_COST + PIECE_COST + 1000)
    r = FragmentReassembler(max_bytes=budget)
    for ident in range(10):
        frag4(r, 1.0 + ident, 0, DATAGRAM[:1000], True, ident=ident)
        assert r.held_bytes <= budget
    assert r.pending == 3 and r.counters["evicted"] == 7
    # The three newest survive and can still complete; the oldest cannot.
    assert frag4(r, 20.0, 1000, DATAGRAM[1000:2000], False, ident=9) == (UDP, DATAGRAM[:2000])
    assert frag4(r, 20.0, 1000, DATAGRAM[1000:2000], False, ident=0) is None


def test_datagram_larger_than_the_whole_budget_is_dropped():
    r = FragmentReassembler(max_bytes=1500)
    frag4(r, 1.0, 0, DATAGRAM[:296], True, ident=1)
    frag4(r, 1.0, 0, DATAGRAM[:296], True, ident=2)
    assert r.held_bytes == 2 * (DATAGRAM_COST + PIECE_COST + 296)
    assert frag4(r, 1.0, 296, DATAGRAM[296:1196], True, ident=2) is None  # 1580 bytes alone
    assert r.counters["dropped"] == 1 and r.counters["evicted"] == 0
    assert r.held_bytes == DATAGRAM_COST + PIECE_COST + 296
    assert r.pending == 1  # the other datagram was not evicted for a hopeless one


def test_tiny_fragment_flood_stays_within_budget():
    r = FragmentReassembler(max_bytes=64 * 1024)
    for i in range(20000):
        frag4(r, 1.0, (i % 4000) * 16, b"f" * 8, True, ident=i // 4000)
        assert r.held_bytes <= 64 * 1024
    assert r.counters["evicted"] + r.counters["dropped"] > 0


def test_ipv6_reassembly_uses_the_offset0_next_header():
    r = FragmentReassembler()
    assert frag6(r, 1.0, 1024, DATAGRAM[1024:], False, nxt=60) is None
    assert frag6(r, 1.0, 0, DATAGRAM[:1024], True, nxt=UDP) == (UDP, DATAGRAM)
    assert r.weirds == ["fragment_protocol_inconsistency"]  # next headers disagreed


def test_ipv6_atomic_fragment_passes_straight_through():
    r = FragmentReassembler()
    assert frag6(r, 1.0, 0, b"segment", False, nxt=6) == (6, b"segment")
    assert frag6(r, 1.0, 0, b"another", False, nxt=6) == (6, b"another")  # same ident: no state
    assert r.pending == 0 and r.counters["atomic"] == 2 and r.counters["fragments"] == 0


# -- the corpus traces Zeek's tests run on ---------------------------------------------------

def read_capture(path):
    reader = CaptureReader()
    frames = reader.feed(path.read_bytes()) + reader.close()
    assert reader.error is None
    return frames


def zeek_flow_weirds(path) -> list[str]:
    expected = json.loads(path.with_name(path.stem + ".expected.json").read_text())["expected"]
    lines = expected[0]["outputs"]["output"]["lines"]
    return [line.split(", ")[1] for line in lines if line.startswith("flow weird")]


def feed_ipv4(r: FragmentReassembler, frames) -> tuple[list, list[str]]:
    done, weirds = [], []
    for ts, _lt, data, _wl in frames:
        vihl, _tos, total, ident, field, _ttl, proto, _sum, src, dst = struct.unpack_from(
            "!BBHHHBBH4s4s", data, 14)
        hl = (vihl & 15) * 4
        result = r.ipv4(ts, src, dst, ident, proto, field, hl, total, data[14 + hl:])
        weirds += r.weirds
        if result:
            done.append(result)
    return done, weirds


@pytest.mark.shared
@pytest.mark.parametrize("name", ["zeek-ipv4-frag-inconsistent", "zeek-ipv4-frag-overlap"])
def test_zeek_ipv4_fragment_traces_raise_zeeks_weirds(name, corpus_dir):
    path = corpus_dir / f"{name}.pcap"
    r = FragmentReassembler()
    done, weirds = feed_ipv4(r, read_capture(path))
    assert weirds == zeek_flow_weirds(path)
    if name.endswith("inconsistent"):
        # First copy wins: the datagram keeps the first fragment's UDP header.
        [(proto, payload)] = done
        assert proto == UDP and len(payload) == 304 and payload[4:6] == b"\x00\x12"
    else:
        assert done == [] and r.pending == 1


@pytest.mark.shared
def test_zeek_ipv6_fragmented_dns_reassembles_the_3238_byte_response(corpus_dir):
    path = corpus_dir / "zeek-ipv6-fragmented-dns.pcap"
    r = FragmentReassembler()
    done = []
    for ts, _lt, data, _wl in read_capture(path):
        plen, nxt = struct.unpack_from("!HB", data, 18)
        if nxt != 44:
            continue
        fnxt, _res, field, ident = struct.unpack_from("!BBHI", data, 54)
        result = r.ipv6(ts, data[22:38], data[38:54], ident, fnxt, field, 48, 40 + plen, data[62:])
        assert r.weirds == []
        if result:
            done.append(result)
    [(proto, payload)] = done
    sport, dport, ulen = struct.unpack_from("!HHH", payload)
    assert (proto, sport, dport, ulen, len(payload)) == (UDP, 53, 51851, 3238, 3238)
    assert r.pending == 1  # the lone tail of ident 1 never completes (Zeek prints no UDP for it)
    zeek_lines = json.loads(path.with_name(path.stem + ".expected.json").read_text())
    assert any("ulen=3238" in line for line in zeek_lines["expected"][0]["outputs"]["output"]["lines"])


@pytest.mark.shared
def test_zeek_ipv6_atomic_fragments_pass_through(corpus_dir):
    path = corpus_dir / "zeek-ipv6-http-atomic-frag.pcap"
    lines = json.loads(path.with_name(path.stem + ".expected.json").read_text())[
        "expected"][0]["outputs"]["output"]["lines"]
    zeek_ports = {int(line.split("orig_p=")[1].split("/")[0]) for line in lines}
    r = FragmentReassembler()
    ports = set()
    for ts, _lt, data, _wl in read_capture(path):
        plen, nxt = struct.unpack_from("!HB", data, 18)
        if nxt != 44:
            continue
        fnxt, _res, field, ident = struct.unpack_from("!BBHI", data, 54)
        proto, segment = r.ipv6(ts, data[22:38], data[38:54], ident, fnxt, field, 48, 40 + plen, data[62:])
        assert proto == 6 and len(segment) == plen - 8
        ports.add(struct.unpack_from("!H", segment)[0])
    assert r.counters["atomic"] == 5 and r.pending == 0
    assert ports and ports <= zeek_ports

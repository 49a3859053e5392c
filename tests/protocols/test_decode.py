"""Decoding frames of every link type, VLAN stacks, IPv4 options, IPv6 extension headers,
malformed and truncated packets (never an exception), checksums and fragments."""

from __future__ import annotations

import struct

import pytest

from protocols import decode as d
from protocols import linktypes
from protocols.decode import decode, decode_reassembled, flow_key, reverse_key, transport_checksum_ok
from tests.protocols.packets import (
    ACK,
    PSH,
    SYN,
    addr,
    ah_header,
    ethernet,
    ext_header,
    fragment_header,
    icmp,
    ipv4,
    ipv6,
    linux_sll,
    linux_sll2,
    nflog,
    null_loopback,
    tcp,
    udp,
)

A4, B4 = "192.0.2.1", "198.51.100.7"
A6, B6 = "2001:db8::1", "2001:db8::2"
PAYLOAD = b"GET / HTTP/1.1\r\n\r\n"


def _tcp4(payload: bytes = PAYLOAD, **kw) -> bytes:
    return ipv4(A4, B4, 6, tcp(A4, B4, 40000, 80, 1000, 2000, PSH | ACK, payload), **kw)


def _tcp6(extensions: bytes = b"", first: int = 6) -> bytes:
    return ipv6(A6, B6, first, tcp(A6, B6, 40000, 443, 7, 9, ACK, b"hello"), extensions=extensions)


def _ok(result) -> tuple:
    assert not isinstance(result, str), result
    return result


# -- link types ------------------------------------------------------------------------


LINK_FRAMES = {
    "ethernet": (linktypes.ETHERNET, lambda p, et: ethernet(p, et)),
    "sll": (linktypes.LINUX_SLL, lambda p, et: linux_sll(p, et)),
    "sll2": (linktypes.LINUX_SLL2, lambda p, et: linux_sll2(p, et)),
    "raw101": (linktypes.RAW, lambda p, et: p),
    "raw12": (linktypes.RAW_BSD, lambda p, et: p),
    "raw14": (linktypes.RAW_BSD14, lambda p, et: p),
    "null-le": (linktypes.NULL, lambda p, et: null_loopback(p, 2 if et == 0x0800 else 30, "<")),
    "null-be": (linktypes.NULL, lambda p, et: null_loopback(p, 2 if et == 0x0800 else 24, ">")),
    "loop": (linktypes.LOOP, lambda p, et: null_loopback(p, 2 if et == 0x0800 else 24, ">")),
    "nflog": (linktypes.NFLOG, lambda p, et: nflog(p, 2 if et == 0x0800 else 10)),
}


@pytest.mark.parametrize("name", sorted(LINK_FRAMES))
@pytest.mark.parametrize("version", [4, 6])
def test_every_link_type_reaches_tcp(name: str, version: int) -> None:
    linktype, build = LINK_FRAMES[name]
    packet = _tcp4() if version == 4 else _tcp6()
    data = build(packet, 0x0800 if version == 4 else 0x86DD)
    r = _ok(decode(linktype, data, len(data)))
    assert r[d.PROTO] == 6
    assert r[d.SRC] == addr(A4 if version == 4 else A6)
    assert r[d.DPORT] == (80 if version == 4 else 443)
    payload = r[d.DATA][r[d.PAY_OFF] : r[d.PAY_OFF] + r[d.PAY_LEN]]
    assert payload == (PAYLOAD if version == 4 else b"hello")
    assert r[d.IP_LEN] == len(packet)


@pytest.mark.parametrize("linktype,data", [(linktypes.IPV4, _tcp4()), (linktypes.IPV6, _tcp6())])
def test_raw_ipv4_and_ipv6_link_types(linktype: int, data: bytes) -> None:
    assert _ok(decode(linktype, data, len(data)))[d.PROTO] == 6


def test_non_ip_and_unknown_link_types_are_skips() -> None:
    arp = ethernet(b"\0" * 28, 0x0806)
    assert decode(1, arp, len(arp)) == "skip:non_ip"
    llc = ethernet(b"\x42\x42\x03" + b"\0" * 40, 0x0030)
    assert decode(1, llc, len(llc)) == "skip:non_ip"
    assert decode(147, _tcp4(), 80) == "skip:unsupported_linktype"
    family = null_loopback(_tcp4(), 7)
    assert decode(0, family, len(family)) == "skip:non_ip"
    bare = nflog(b"", 2)[:4]
    assert decode(linktypes.NFLOG, bare, len(bare)) == "skip:nflog_without_payload"


@pytest.mark.parametrize(
    "tags",
    [
        ((0x8100, 6),),
        ((0x8100, 1), (0x8100, 10)),
        ((0x88A8, 1), (0x8100, 10), (0x8100, 100)),
        ((0x9100, 7), (0x88A8, 8), (0x9200, 9), (0x8100, 4095)),
        ((0x8100, 0),),  # priority tag: VLAN id 0
    ],
)
def test_vlan_stacks_of_any_depth_keep_their_ids(tags) -> None:
    data = ethernet(_tcp4(), 0x0800, vlans=tags)
    r = _ok(decode(1, data, len(data)))
    assert r[d.VLANS] == tuple(vid for _, vid in tags)
    assert r[d.KEY] == (r[d.SRC] + r[d.DST] + struct.pack(">HH", 40000, 80), r[d.VLANS])


def test_vlan_tag_priority_bits_are_not_part_of_the_id() -> None:
    data = ethernet(_tcp4(), 0x0800, vlans=((0x8100, 0xB000 | 200),))
    assert _ok(decode(1, data, len(data)))[d.VLANS] == (200,)


def test_vlan_inside_linux_cooked_capture() -> None:
    inner = struct.pack(">HH", 42, 0x0800) + _tcp4()
    data = linux_sll(inner, 0x8100)
    assert _ok(decode(linktypes.LINUX_SLL, data, len(data)))[d.VLANS] == (42,)


def test_truncated_vlan_tag() -> None:
    data = ethernet(b"", 0x8100)[:14] + b"\x00"
    assert decode(1, data, len(data)) == "weird:truncated_VLAN_header"


# -- IPv4 ----------------------------------------------------------------------------------


def test_ipv4_with_options() -> None:
    packet = ipv4(A4, B4, 6, tcp(A4, B4, 1, 2, 3, 4, ACK, b"xy"), options=b"\x94\x04\x00\x00")  # router alert
    data = ethernet(packet)
    r = _ok(decode(1, data, len(data)))
    assert r[d.L4_OFF] == 14 + 24
    assert r[d.DATA][r[d.PAY_OFF] : r[d.PAY_OFF] + r[d.PAY_LEN]] == b"xy"


def test_ethernet_padding_is_not_payload() -> None:
    packet = ipv4(A4, B4, 6, tcp(A4, B4, 1, 2, 3, 4, ACK))
    data = ethernet(packet) + b"\0" * 6  # padded to the 60-byte minimum
    r = _ok(decode(1, data, len(data)))
    assert r[d.PAY_LEN] == 0
    assert r[d.CAP_END] == 14 + len(packet)
    assert r[d.IP_LEN] == 40


@pytest.mark.parametrize(
    "packet,reason",
    [
        (ipv4(A4, B4, 6, tcp(A4, B4, 1, 2, 3, 4, ACK), good_checksum=False), "weird:bad_IP_checksum"),
        (ipv4(A4, B4, 6, b"\0" * 20, ihl=4), "weird:IPv4_min_header_size"),
        (ipv4(A4, B4, 6, b"\0" * 20, ihl=0), "weird:IPv4_min_header_size"),
        (ipv4(A4, B4, 6, b"\0" * 20, total=500), "weird:truncated_IP_len"),
        (ipv4(A4, B4, 6, b"\0" * 40, ihl=15, total=48), "weird:invalid_IP_header_size"),
        (ipv4(A4, B4, 6, b"\0" * 10), "weird:truncated_header"),
        (ipv4(A4, B4, 17, b"\0" * 6), "weird:truncated_header"),
        (ipv4(A4, B4, 1, b"\0" * 4), "weird:truncated_header"),
        (b"\x50" + b"\0" * 30, "weird:unknown_ip_version"),
        (b"\x45\0\0", "weird:truncated_IP"),
    ],
)
def test_malformed_ipv4_is_a_zeek_weird(packet: bytes, reason: str) -> None:
    data = ethernet(packet)
    assert decode(1, data, len(data)) == reason


def test_bad_ip_checksum_is_accepted_when_not_verified() -> None:
    data = ethernet(ipv4(A4, B4, 6, tcp(A4, B4, 1, 2, 3, 4, ACK), good_checksum=False))
    assert _ok(decode(1, data, len(data), check_ip=False))[d.PROTO] == 6


def test_zero_total_length_uses_the_capture_and_notes_it() -> None:
    segment = tcp(A4, B4, 1, 2, 3, 4, ACK, b"abc")
    data = ethernet(ipv4(A4, B4, 6, segment, total=0))
    r = _ok(decode(1, data, len(data)))
    assert r[d.NOTE] == "ip_hdr_len_zero"
    assert r[d.PAY_LEN] == 3


def test_snaplen_cut_packet_decodes_with_short_capture() -> None:
    data = ethernet(_tcp4(b"x" * 500))
    cut = data[:80]
    r = _ok(decode(1, cut, len(data)))
    assert r[d.PAY_LEN] == 500
    assert r[d.CAP_END] == 80


def test_tcp_data_offset_sanity() -> None:
    segment = bytearray(tcp(A4, B4, 1, 2, 3, 4, ACK, b"abcd"))
    segment[12] = 4 << 4
    data = ethernet(ipv4(A4, B4, 6, bytes(segment)))
    assert decode(1, data, len(data)) == "weird:bad_TCP_header_len"
    segment[12] = 15 << 4
    data = ethernet(ipv4(A4, B4, 6, bytes(segment)))
    assert decode(1, data, len(data)) == "weird:truncated_header"


def test_tcp_options_are_skipped() -> None:
    segment = tcp(A4, B4, 1, 2, 3, 4, SYN, options=b"\x02\x04\x05\xb4\x01\x03\x03\x07\x04\x02")
    data = ethernet(ipv4(A4, B4, 6, segment))
    r = _ok(decode(1, data, len(data)))
    assert r[d.PAY_OFF] - r[d.L4_OFF] == 32
    assert r[d.FLAGS] == SYN


def test_udp_and_icmp_fields() -> None:
    data = ethernet(ipv4(A4, B4, 17, udp(A4, B4, 5353, 53, b"q" * 10)))
    r = _ok(decode(1, data, len(data)))
    assert (r[d.PROTO], r[d.SPORT], r[d.DPORT], r[d.PAY_LEN], r[d.FLAGS]) == (17, 5353, 53, 10, 18)
    data = ethernet(ipv4(A4, B4, 1, icmp(8, 0, b"p" * 56)))
    r = _ok(decode(1, data, len(data)))
    assert (r[d.PROTO], r[d.SPORT], r[d.DPORT], r[d.PAY_LEN]) == (1, 8, 0, 56)
    assert r[d.KEY] is None


def test_other_ip_protocols_decode_without_ports() -> None:
    data = ethernet(ipv4(A4, B4, 47, b"\0" * 24))  # GRE
    r = _ok(decode(1, data, len(data)))
    assert (r[d.PROTO], r[d.SPORT], r[d.DPORT], r[d.PAY_LEN]) == (47, 0, 0, 24)


# -- IPv6 --------------------------------------------------------------------------------


def test_ipv6_extension_headers_are_walked() -> None:
    # hop-by-hop -> routing -> destination options -> AH -> TCP
    chain = ext_header(43) + ext_header(60) + ext_header(51) + ah_header(6)
    packet = _tcp6(chain, first=0)
    data = ethernet(packet, 0x86DD)
    r = _ok(decode(1, data, len(data)))
    assert r[d.PROTO] == 6
    assert r[d.L4_OFF] == 14 + 40 + len(chain)
    assert r[d.L4_LEN] == len(packet) - 40 - len(chain)
    assert r[d.DATA][r[d.PAY_OFF] : r[d.PAY_OFF] + r[d.PAY_LEN]] == b"hello"


def test_ipv6_atomic_fragment_is_an_ordinary_packet() -> None:
    packet = _tcp6(fragment_header(6, 0, False, 77), first=44)
    data = ethernet(packet, 0x86DD)
    assert _ok(decode(1, data, len(data)))[d.PROTO] == 6


def test_ipv6_esp_and_no_next_header_stop() -> None:
    data = ethernet(ipv6(A6, B6, 50, b"\0" * 32), 0x86DD)
    assert decode(1, data, len(data)) == "skip:ipv6_esp"
    data = ethernet(ipv6(A6, B6, 0, b"", extensions=ext_header(59)), 0x86DD)
    assert decode(1, data, len(data)) == "weird:ipv6_no_next"


def test_ipv6_truncated_extension_header() -> None:
    packet = ipv6(A6, B6, 0, b"", extensions=b"\x06\x05" + b"\0" * 6)  # claims 48 bytes
    data = ethernet(packet, 0x86DD)
    assert decode(1, data, len(data)) == "weird:truncated_IPv6_ext_header"


def test_ipv6_payload_length_beyond_the_wire() -> None:
    packet = ipv6(A6, B6, 6, tcp(A6, B6, 1, 2, 3, 4, ACK), payload_length=400)
    data = ethernet(packet, 0x86DD)
    assert decode(1, data, len(data)) == "weird:truncated_IP_len"


def test_icmpv6_decodes_type_and_code() -> None:
    data = ethernet(ipv6(A6, B6, 58, icmp(128, 0, b"z" * 8, A6, B6)), 0x86DD)
    r = _ok(decode(1, data, len(data)))
    assert (r[d.PROTO], r[d.SPORT], r[d.DPORT]) == (58, 128, 0)


# -- fragments ---------------------------------------------------------------------------


def test_ipv4_fragment_becomes_a_fragment_tuple() -> None:
    body = udp(A4, B4, 1000, 53, b"a" * 40)
    first = ipv4(A4, B4, 17, body[:24], ident=99, flags_frag=0x2000)
    data = ethernet(first)
    r = _ok(decode(1, data, len(data)))
    assert r[0] == d.FRAGMENT
    _, version, src, dst, ident, proto, field, header_len, total, payload, vlans = r
    assert (version, src, dst, ident, proto, field, header_len, total, payload) == (
        4, addr(A4), addr(B4), 99, 17, 0x2000, 20, 44, body[:24],
    )
    whole = _ok(decode_reassembled(4, 17, src, dst, body, 20, None))
    assert (whole[d.PROTO], whole[d.SPORT], whole[d.DPORT], whole[d.PAY_LEN], whole[d.IP_LEN]) == (
        17, 1000, 53, 40, 20 + len(body),
    )


def test_ipv6_fragment_and_reassembled_datagram() -> None:
    body = udp(A6, B6, 1000, 53, b"b" * 40)
    packet = ipv6(A6, B6, 44, body[:16], extensions=fragment_header(17, 0, True, 5))
    data = ethernet(packet, 0x86DD)
    r = _ok(decode(1, data, len(data)))
    assert r[0] == d.FRAGMENT and r[1] == 6 and r[4] == 5 and r[5] == 17 and r[7] == 48
    whole = _ok(decode_reassembled(6, 17, addr(A6), addr(B6), body, 48, None))
    assert (whole[d.PROTO], whole[d.PAY_LEN], whole[d.IP_LEN]) == (17, 40, 40 + len(body))


def test_reassembled_ipv6_datagram_may_start_with_extension_headers() -> None:
    body = ext_header(6) + tcp(A6, B6, 1, 2, 3, 4, ACK, b"qq")
    whole = _ok(decode_reassembled(6, 60, addr(A6), addr(B6), body, 48, None))
    assert whole[d.PROTO] == 6 and whole[d.PAY_LEN] == 2


# -- truncation at every offset ----------------------------------------------------------


def _samples() -> list[tuple[int, bytes]]:
    samples = [(linktype, build(p, et)) for linktype, build in LINK_FRAMES.values()
               for p, et in ((_tcp4(), 0x0800), (_tcp6(), 0x86DD))]
    samples += [
        (1, ethernet(_tcp4(), vlans=((0x88A8, 3), (0x8100, 4)))),
        (1, ethernet(ipv4(A4, B4, 17, udp(A4, B4, 1, 53, b"x" * 20)))),
        (1, ethernet(ipv4(A4, B4, 1, icmp(3, 3, b"\0" * 28)))),
        (1, ethernet(ipv4(A4, B4, 17, b"\0" * 30, flags_frag=0x2000))),
        (1, ethernet(_tcp6(ext_header(43) + ext_header(60) + ah_header(6), first=0), 0x86DD)),
        (1, ethernet(ipv6(A6, B6, 44, b"\0" * 40, extensions=fragment_header(17, 8, True, 1)), 0x86DD)),
        (linktypes.LINUX_SLL2, linux_sll2(struct.pack(">HH", 5, 0x86DD) + _tcp6(), 0x8100)),
    ]
    return samples


def test_truncation_at_every_offset_never_raises() -> None:
    for linktype, data in _samples():
        for cut in range(len(data) + 1):
            for wirelen in (len(data), cut):
                result = decode(linktype, data[:cut], wirelen)
                assert isinstance(result, (str, tuple))
                if isinstance(result, str):
                    assert result.startswith(("weird:", "skip:")), result


def test_random_bytes_never_raise() -> None:
    import random

    rng = random.Random(7)
    for _ in range(3000):
        linktype = rng.choice(list(linktypes.DECODERS) + [1, 1, 1])
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 90)))
        if linktype == 1 and len(data) > 14 and rng.random() < 0.7:
            data = data[:12] + rng.choice([b"\x08\x00\x45", b"\x86\xdd\x60", b"\x81\x00\x00"]) + data[15:]
        result = decode(linktype, data, len(data) + rng.randrange(0, 3))
        assert isinstance(result, (str, tuple))


# -- keys and checksums ------------------------------------------------------------------


def test_flow_keys_are_the_header_bytes_and_reverse() -> None:
    data = ethernet(_tcp4())
    r = _ok(decode(1, data, len(data)))
    key = flow_key(r[d.SRC], r[d.DST], r[d.SPORT], r[d.DPORT], None)
    assert key == r[d.KEY] == data[26:38]
    back = reverse_key(key, 4)
    assert back == addr(B4) + addr(A4) + struct.pack(">HH", 80, 40000)
    assert reverse_key(back, 4) == key
    tagged = flow_key(r[d.SRC], r[d.DST], 1, 2, (5,))
    assert reverse_key(tagged, 4)[1] == (5,)


@pytest.mark.parametrize("version", [4, 6])
def test_transport_checksums(version: int) -> None:
    src, dst = (A4, B4) if version == 4 else (A6, B6)
    build = ipv4 if version == 4 else ipv6
    cases = [
        (6, tcp(src, dst, 1, 2, 3, 4, ACK, b"odd"), tcp(src, dst, 1, 2, 3, 4, ACK, b"odd", good_checksum=False)),
        (17, udp(src, dst, 1, 2, b"even"), udp(src, dst, 1, 2, b"even", good_checksum=False)),
    ]
    if version == 4:
        cases.append((1, icmp(8, 0, b"ping"), icmp(8, 0, b"ping")[:2] + b"\0\0" + icmp(8, 0, b"ping")[4:]))
    else:
        good = icmp(128, 0, b"ping", src, dst)
        cases.append((58, good, good[:2] + b"\x12\x34" + good[4:]))
    for proto, good, bad in cases:
        for segment, expected in ((good, True), (bad, False)):
            data = ethernet(build(src, dst, proto, segment), 0x0800 if version == 4 else 0x86DD)
            r = _ok(decode(1, data, len(data)))
            assert transport_checksum_ok(proto, r[d.SRC], r[d.DST], data, r[d.L4_OFF], r[d.L4_LEN]) is expected

"""CaptureReader: every pcap/pcapng variant it claims, any chunking, and bad files never raising."""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest

from protocols.capfile import MAX_CAPLEN, CaptureReader
from tests.conftest import corpus_captures, shared_pcaps


def read_all(data: bytes, chunk: int | None = None) -> tuple[list, CaptureReader]:
    """Feed ``data`` whole or in ``chunk``-byte pieces, then close."""
    reader = CaptureReader()
    frames = []
    if chunk is None:
        frames += reader.feed(data)
    else:
        for i in range(0, len(data), chunk):
            frames += reader.feed(data[i:i + chunk])
    frames += reader.close()
    return frames, reader


# -- hand-written files ----------------------------------------------------------------------

# Little-endian microsecond pcap, Ethernet, snaplen 65535, two records.
PCAP_LE_US = bytes.fromhex(
    "d4c3b2a1 0200 0400 00000000 00000000 ffff0000 01000000"  # file header
    "00105e5f 40e20100 04000000 3c000000 deadbeef"            # 1600000000.123456, 4 of 60 bytes
    "01105e5f 00000000 02000000 02000000 cafe"                # 1600000001.0, 2 of 2 bytes
)

# The same two records big-endian with nanosecond stamps.
PCAP_BE_NS = bytes.fromhex(
    "a1b23c4d 0002 0004 00000000 00000000 0000ffff 00000001"
    "5f5e1000 075bcd15 00000004 0000003c deadbeef"            # .123456789
    "5f5e1001 00000000 00000002 00000002 cafe"
)

# Modified (Kuznetzov) pcap: 24-byte record headers (ifindex, protocol, pkt_type, pad).
PCAP_KUZNETZOV = bytes.fromhex(
    "34cdb2a1 0200 0400 00000000 00000000 ffff0000 01000000"
    "00105e5f 40e20100 04000000 3c000000 02000000 0008 00 00 deadbeef"
)


def test_pcap_little_endian_microseconds():
    frames, reader = read_all(PCAP_LE_US)
    assert reader.error is None and reader.format == "pcap"
    assert frames == [(1600000000.123456, 1, b"\xde\xad\xbe\xef", 60), (1600000001.0, 1, b"\xca\xfe", 2)]
    assert reader.linktypes == {1}
    assert reader.counters["packets"] == 2
    assert reader.counters["bytes"] == 62
    assert reader.counters["captured_bytes"] == 6


def test_pcap_big_endian_nanoseconds():
    frames, reader = read_all(PCAP_BE_NS)
    assert reader.error is None
    assert [(f[1], f[2], f[3]) for f in frames] == [(1, b"\xde\xad\xbe\xef", 60), (1, b"\xca\xfe", 2)]
    assert frames[0][0] == pytest.approx(1600000000.123456789, abs=1e-7)
    assert frames[1][0] == 1600000001.0


def test_pcap_modified_kuznetzov_format():
    frames, reader = read_all(PCAP_KUZNETZOV)
    assert reader.error is None
    assert frames == [(1600000000.123456, 1, b"\xde\xad\xbe\xef", 60)]


def test_pcap_linktype_field_ignores_fcs_flag_bits():
    data = bytearray(PCAP_LE_US)
    data[20:24] = struct.pack("<I", 0x14000000 | 101)  # FCS-present flags over LINKTYPE_RAW
    frames, reader = read_all(bytes(data))
    assert reader.linktypes == {101} and frames[0][1] == 101


def test_record_longer_than_snaplen_is_kept_and_counted():
    data = bytearray(PCAP_LE_US)
    data[16:20] = struct.pack("<I", 2)  # header says snaplen 2; the first record holds 4
    frames, reader = read_all(bytes(data))
    assert reader.error is None and len(frames) == 2
    assert reader.counters["caplen_over_snaplen"] == 1


def test_absurd_caplen_fails_at_once_without_waiting_for_the_bytes():
    reader = CaptureReader()
    header = PCAP_LE_US[:24] + struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 60)
    assert reader.feed(header) == []
    assert reader.error is not None and "corrupt pcap record at byte 24" in reader.error
    assert reader.counters["caplen_too_large"] == 1
    assert reader.feed(b"\x00" * 100) == []  # nothing after a fatal error
    assert reader.close() == []


def test_caplen_limit_is_256_kib():
    ok = PCAP_LE_US[:24] + struct.pack("<IIII", 0, 0, MAX_CAPLEN, MAX_CAPLEN) + bytes(MAX_CAPLEN)
    frames, reader = read_all(ok)
    assert reader.error is None and len(frames[0][2]) == MAX_CAPLEN
    too_big = PCAP_LE_US[:24] + struct.pack("<IIII", 0, 0, MAX_CAPLEN + 1, MAX_CAPLEN + 1)
    frames, reader = read_all(too_big)
    assert frames == [] and reader.counters["caplen_too_large"] == 1


def test_bad_magic_is_a_clear_error():
    frames, reader = read_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert frames == [] and reader.format is None
    assert reader.error == "not a pcap or pcapng file: magic 0x47455420 at byte 0"
    assert reader.counters["bad_magic"] == 1


def test_empty_and_header_only_files():
    frames, reader = read_all(b"")
    assert frames == [] and reader.error == "empty capture file: no file header"
    frames, reader = read_all(PCAP_LE_US[:24])
    assert frames == [] and reader.error is None  # a valid capture of no packets
    frames, reader = read_all(PCAP_LE_US[:10])
    assert "less than a file header" in reader.error
    assert reader.counters["truncated_header"] == 1


def test_truncated_record_error_names_the_offset():
    frames, reader = read_all(PCAP_LE_US[:-1])
    assert len(frames) == 1
    assert reader.error == "truncated pcap file: record at byte 44 has 17 of 18 bytes"
    assert reader.counters["truncated_record"] == 1


# -- pcapng ----------------------------------------------------------------------------------

def block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    blen = len(body) + 12
    return struct.pack(order + "II", btype, blen) + body + struct.pack(order + "I", blen)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order: str, linktype: int, snaplen: int = 0, opts: bytes = b"") -> bytes:
    if opts:
        opts += option(order, 0, b"")
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def epb(order: str, ifid: int, ticks: int, data: bytes, wirelen: int | None = None) -> bytes:
    wirelen = len(data) if wirelen is None else wirelen
    head = struct.pack(order + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(data), wirelen)
    return block(order, 6, head + data)


def spb(order: str, data: bytes, wirelen: int | None = None) -> bytes:
    return block(order, 3, struct.pack(order + "I", len(data) if wirelen is None else wirelen) + data)


def opb(order: str, ifid: int, ticks: int, data: bytes) -> bytes:
    head = struct.pack(order + "HHIIII", ifid, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
    return block(order, 2, head + data)


def multi_interface_section(order: str) -> bytes:
    """Ethernet in ns, raw IP in 2^-20 s with a 1000 s offset, then every skippable block."""
    return (
        shb(order)
        + idb(order, 1, 65535, option(order, 9, b"\x09"))                      # if_tsresol 10^-9
        + idb(order, 101, 4, option(order, 9, b"\x94")                         # 2^-20
              + option(order, 14, struct.pack(order + "q", 1000)))             # if_tsoffset
        + epb(order, 0, 1_600_000_000_123_456_789, b"\x01\x02\x03")
        + epb(order, 1, 3 << 20 | 1 << 19, b"\x45\x00\x00\x14", 20)            # 3.5 s + 1000
        + spb(order, b"\xaa\xbb\xcc\xdd\xee", 5)                               # interface 0
        + opb(order, 1, 1 << 20, b"\x45")
        + block(order, 4, b"\x00\x00\x00\x00")                                 # name resolution
        + block(order, 5, struct.pack(order + "III", 0, 0, 0))                 # statistics
        + block(order, 0x0A, struct.pack(order + "II", 0x544C534B, 0))         # decryption secrets
        + block(order, 0x00000BAD, struct.pack(order + "I", 32473))            # custom
        + block(order, 0x00001234, b"")                                        # unknown
    )


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_with_their_own_linktype_resolution_and_offset(order):
    frames, reader = read_all(multi_interface_section(order))
    assert reader.error is None and reader.format == "pcapng"
    assert [(f[1], f[2], f[3]) for f in frames] == [
        (1, b"\x01\x02\x03", 3),
        (101, b"\x45\x00\x00\x14", 20),
        (1, b"\xaa\xbb\xcc\xdd\xee", 5),
        (101, b"\x45", 1),
    ]
    assert frames[0][0] == pytest.approx(1600000000.123456789, abs=1e-6)
    assert frames[1][0] == 1003.5
    assert frames[2][0] == frames[1][0]  # a simple packet block has no stamp: the last one seen
    assert frames[3][0] == 1001.0
    assert reader.linktypes == {1, 101}
    counters = reader.counters
    assert (counters["sections"], counters["interfaces"], counters["packets"]) == (1, 2, 4)
    assert "caplen_over_snaplen" not in counters and "bad_interface" not in counters
    for reason in ("skipped_nrb", "skipped_isb", "skipped_dsb", "skipped_custom", "unknown_block"):
        assert counters[reason] == 1


def test_pcapng_default_resolution_is_microseconds_and_snaplen_is_per_interface():
    data = shb("<") + idb("<", 1, 2) + epb("<", 0, 1_600_000_000_250_000, b"abc") + spb("<", b"wxyz", 9)
    frames, reader = read_all(data)
    assert frames[0][:3] == (1600000000.25, 1, b"abc")
    assert frames[1][2:] == (b"wx", 9)  # an SPB carries at most the interface's snaplen
    assert reader.counters["caplen_over_snaplen"] == 1  # the EPB held 3 bytes with snaplen 2


def test_pcapng_sections_switch_byte_order_and_reset_interfaces():
    data = (shb(">") + idb(">", 1) + epb(">", 0, 5_000_000, b"be")
            + shb("<") + idb("<", 113) + epb("<", 0, 7_000_000, b"le"))
    frames, reader = read_all(data)
    assert reader.error is None
    assert frames == [(5.0, 1, b"be", 2), (7.0, 113, b"le", 2)]
    assert reader.counters["sections"] == 2


def test_pcapng_packet_for_undescribed_interface_is_skipped_and_counted():
    data = shb("<") + idb("<", 1) + epb("<", 3, 0, b"x") + epb("<", 0, 0, b"y")
    frames, reader = read_all(data)
    assert [f[2] for f in frames] == [b"y"] and reader.counters["bad_interface"] == 1


def test_pcapng_trailer_mismatch_is_corrupt():
    good = shb("<") + idb("<", 1) + epb("<", 0, 0, b"abcd")
    bad = bytearray(good + epb("<", 0, 0, b"efgh"))
    bad[-4:] = struct.pack("<I", 999)
    frames, reader = read_all(bytes(bad))
    assert [f[2] for f in frames] == [b"abcd"]
    assert reader.error.startswith(f"corrupt pcapng block at byte {len(good)}: type 0x00000006")
    assert reader.counters["corrupt_block"] == 1


@pytest.mark.parametrize("blen", [8, 30, 0x7FFFFFFC])
def test_pcapng_impossible_block_length_is_corrupt_at_once(blen):
    data = shb("<") + idb("<", 1) + struct.pack("<II", 6, blen) + b"\x00" * 16
    reader = CaptureReader()
    assert reader.feed(data) == []
    assert reader.error is not None and "impossible length" in reader.error


def test_pcapng_packet_overrunning_its_block_is_corrupt():
    body = struct.pack("<IIIII", 0, 0, 0, 100, 100) + b"abcd"
    frames, reader = read_all(shb("<") + idb("<", 1) + block("<", 6, body))
    assert frames == [] and "overruns its block" in reader.error


def test_pcapng_truncated_block():
    data = shb("<") + idb("<", 1) + epb("<", 0, 0, b"abcd")
    frames, reader = read_all(data[:-3])
    assert frames == [] and reader.counters["truncated_block"] == 1
    assert reader.error == f"truncated pcapng file: block at byte {len(data) - 36} has 33 of 36 bytes"


# -- any chunking, any truncation, any corruption ----------------------------------------------

SMALL_FILES = {
    "pcap-le-us": PCAP_LE_US,
    "pcap-be-ns": PCAP_BE_NS,
    "pcap-kuznetzov": PCAP_KUZNETZOV,
    "pcapng-le": multi_interface_section("<"),
    "pcapng-be-then-le": multi_interface_section(">") + multi_interface_section("<"),
}


def record_boundaries(data: bytes) -> set[int]:
    """Offsets at which a prefix of ``data`` is a complete, valid capture file."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        cuts, off, order = set(), 0, "<"
        while off < len(data):
            if data[off:off + 4] == b"\x0a\x0d\x0d\x0a":
                order = "<" if data[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            off += struct.unpack_from(order + "I", data, off + 4)[0]
            cuts.add(off)
        return cuts
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x34\xcd\xb2\xa1") else ">"
    hlen = 24 if data[:4] in (b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34") else 16
    cuts, off = {24}, 24
    while off < len(data):
        off += hlen + struct.unpack_from(order + "I", data, off + 8)[0]
        cuts.add(off)
    return cuts


@pytest.mark.parametrize("name", sorted(SMALL_FILES))
def test_any_chunking_gives_the_same_result(name):
    data = SMALL_FILES[name]
    whole, reader = read_all(data)
    assert reader.error is None and whole
    for size in (1, 2, 3, 7, 16, 17, 64):
        frames, chunked = read_all(data, size)
        assert frames == whole and chunked.counters == reader.counters and chunked.error is None


@pytest.mark.parametrize("name", sorted(SMALL_FILES))
def test_truncated_at_every_offset_never_raises(name):
    data = SMALL_FILES[name]
    whole, _ = read_all(data)
    boundaries = record_boundaries(data)
    for cut in range(len(data)):
        frames, reader = read_all(data[:cut], 5)
        assert frames == whole[:len(frames)]
        if cut in boundaries:
            assert reader.error is None
        else:
            assert reader.error is not None and ("truncated" in reader.error or "empty" in reader.error)


@pytest.mark.parametrize("name", sorted(SMALL_FILES))
def test_random_corruption_never_raises(name):
    rng = random.Random(name)
    data = SMALL_FILES[name]
    for _ in range(300):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(len(bad))
            bad[pos] = rng.choice((0, 0xFF, rng.randrange(256), bad[pos] ^ (1 << rng.randrange(8))))
        bad = bytes(bad[:rng.randint(len(bad) // 2, len(bad))])
        whole, reader = read_all(bad)
        frames, chunked = read_all(bad, rng.randint(1, 40))
        assert (frames, chunked.error, chunked.counters) == (whole, reader.error, reader.counters)
        assert "parse_error" not in reader.counters  # the bug guard never had to catch anything
        for ts, linktype, payload, wirelen in whole:
            assert isinstance(ts, float) and isinstance(payload, bytes) and linktype >= 0


def test_random_garbage_never_raises():
    rng = random.Random(7)
    for prefix in (b"", b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a"):
        for _ in range(200):
            data = prefix + rng.randbytes(rng.randint(0, 300))
            whole, reader = read_all(data)
            frames, chunked = read_all(data, rng.randint(1, 50))
            assert (frames, chunked.error, chunked.counters) == (whole, reader.error, reader.counters)
            assert "parse_error" not in reader.counters


# -- real captures ---------------------------------------------------------------------------

LINKTYPES = {"NULL": 0, "EN10MB": 1, "RAW": 101, "LINUX_SLL": 113, "NFLOG": 239, "LINUX_SLL2": 276}


def read_file(path: Path, chunk: int = 1 << 16) -> tuple[list, CaptureReader]:
    return read_all(path.read_bytes(), chunk)


@pytest.mark.shared
@pytest.mark.parametrize("path", shared_pcaps(), ids=lambda p: p.name)
def test_shared_pcaps_match_tshark(path, pcaps_dir):
    summary = json.loads(path.with_suffix(".truth.json").read_text())["summary"]
    frames, reader = read_file(path)
    assert reader.error is None
    assert len(frames) == summary["packets"]
    assert reader.counters["bytes"] == summary["bytes"]
    assert frames[0][0] == pytest.approx(summary["first_ts"], abs=1e-6)
    assert frames[-1][0] == pytest.approx(summary["last_ts"], abs=1e-6)


@pytest.mark.shared
@pytest.mark.parametrize("path", corpus_captures(), ids=lambda p: p.name)
def test_corpus_captures_match_their_manifest(path, corpus_dir):
    capture = json.loads(path.with_name(path.stem + ".expected.json").read_text())["capture"]
    frames, reader = read_file(path, 4099)
    assert reader.format == capture["fmt"]
    assert len(frames) == capture["packets"]
    assert reader.linktypes == {LINKTYPES[name] for name in capture["linktypes"]}
    assert sum(1 for f in frames if len(f[2]) < f[3]) == capture["caplen_lt_origlen"]
    if capture["file_truncated"]:
        assert reader.error is not None and "truncated" in reader.error
    else:
        assert reader.error is None


@pytest.mark.shared
@pytest.mark.parametrize("name", ["zeek-krb-tcp-tso.pcapng", "zeek-http-get.pcap"])
def test_real_file_cut_mid_record_reports_truncation(name, corpus_dir):
    data = (corpus_dir / name).read_bytes()
    whole, _ = read_all(data)
    frames, reader = read_all(data[:len(data) * 2 // 3], 1000)
    assert 0 < len(frames) < len(whole) and frames == whole[:len(frames)]
    assert reader.error is not None and reader.error.startswith("truncated")

"""TPACKET_V3 ring layout on bytes: blocks, packet headers, VLAN and cooked frames, bad offsets."""

from __future__ import annotations

import struct

import pytest

from protocols import linktypes, tpacket
from protocols.tpacket import BlockReader, RingGeometry, build_block, link_mode

ETH = link_mode(tpacket.ARPHRD_ETHER)
FRAME = bytes.fromhex("020000000001" "020000000002" "0800") + b"\x45" + b"\0" * 33


def read(block: bytes, mode=ETH, size: int = 1 << 16) -> tuple[list, BlockReader]:
    reader = BlockReader(mode, size, {})
    out: list = []
    reader.read(block, 0, out)
    return out, reader


def test_every_packet_of_a_block_comes_out_with_time_and_lengths():
    block = build_block([(1700000000.25, FRAME, len(FRAME)), (1700000001.5, FRAME[:20], 1514)])
    frames, reader = read(block)
    assert [(round(ts, 6), lt, data, wire) for ts, lt, data, wire in frames] == [
        (1700000000.25, linktypes.ETHERNET, FRAME, len(FRAME)),
        (1700000001.5, linktypes.ETHERNET, FRAME[:20], 1514),
    ]
    assert reader.counters == {"ring_packets": 2, "ring_blocks": 1, "ring_truncated": 1}


def test_nanosecond_timestamps_are_kept():
    frames, _ = read(build_block([(1700000000.000000123, FRAME, len(FRAME))]))
    assert frames[0][0] == pytest.approx(1700000000.000000123, abs=1e-6)


def test_block_ownership_flips_between_user_and_kernel():
    ring = bytearray(build_block([(1.0, FRAME, len(FRAME))]))
    assert tpacket.block_ready(ring, 0)
    tpacket.release_block(ring, 0)
    assert not tpacket.block_ready(ring, 0)
    assert not tpacket.block_ready(build_block([], block_status=tpacket.TP_STATUS_KERNEL), 0)


def test_blocks_at_an_offset_in_a_larger_ring():
    first = build_block([(1.0, FRAME, len(FRAME))], seq=1).ljust(4096, b"\0")
    second = build_block([(2.0, FRAME, len(FRAME))] * 3, seq=2).ljust(4096, b"\0")
    ring = memoryview(bytearray(first + second))
    reader = BlockReader(ETH, 4096, {})
    out: list = []
    assert reader.read(ring, 0, out) == 1 and reader.read(ring, 4096, out) == 3
    assert all(type(f[2]) is bytes for f in out)
    assert "tpacket:block_seq_gap" not in reader.counters


def test_a_block_sequence_gap_is_counted():
    reader = BlockReader(ETH, 1 << 16, {})
    out: list = []
    reader.read(build_block([(1.0, FRAME, 50)], seq=7), 0, out)
    reader.read(build_block([(1.0, FRAME, 50)], seq=9), 0, out)
    assert reader.counters["tpacket:block_seq_gap"] == 1


def test_a_vlan_tag_the_kernel_took_off_is_put_back():
    status = tpacket.TP_STATUS_USER | tpacket.TP_STATUS_VLAN_VALID | tpacket.TP_STATUS_VLAN_TPID_VALID
    frames, _ = read(build_block([(1.0, FRAME, len(FRAME))], status=status, vlan_tci=0x2064, vlan_tpid=0x88A8))
    data, wire = frames[0][2], frames[0][3]
    assert data[:12] == FRAME[:12] and data[12:16] == bytes.fromhex("88a82064") and data[16:] == FRAME[12:]
    assert wire == len(FRAME) + 4
    # without TPID information the tag is 802.1Q
    status = tpacket.TP_STATUS_USER | tpacket.TP_STATUS_VLAN_VALID
    frames, _ = read(build_block([(1.0, FRAME, len(FRAME))], status=status, vlan_tci=5))
    assert frames[0][2][12:16] == bytes.fromhex("81000005")


def test_cooked_mode_builds_a_linux_sll_header():
    mode = link_mode(0x0300)  # ARPHRD_TUNNEL, not Ethernet-like: cooked
    assert mode.cooked and mode.linktype == linktypes.LINUX_SLL and mode.filter_linktype == linktypes.RAW
    ip = b"\x45" + b"\0" * 19
    frames, _ = read(build_block([(1.0, ip, 20)], sll=(0x0800, 0x0300, 0, b"\xaa\xbb")), mode)
    data = frames[0][2]
    assert data[:16] == struct.pack(">HHH8sH", 0, 0x0300, 2, b"\xaa\xbb", 0x0800)
    assert data[16:] == ip and frames[0][3] == 36


def test_loopback_keeps_only_the_incoming_copy():
    mode = link_mode(tpacket.ARPHRD_LOOPBACK)
    outgoing = build_block([(1.0, FRAME, len(FRAME))], sll=(0x0800, 772, tpacket.PACKET_OUTGOING, b""))
    incoming = build_block([(1.0, FRAME, len(FRAME))], sll=(0x0800, 772, 0, b""))
    assert read(outgoing, mode)[0] == [] and read(outgoing, mode)[1].counters["ring_outgoing_skipped"] == 1
    assert len(read(incoming, mode)[0]) == 1
    assert link_mode(tpacket.ARPHRD_NONE).linktype == linktypes.RAW


@pytest.mark.parametrize("field,value", [("offset_to_first_pkt", 1 << 20), ("blk_len", 1 << 20)])
def test_a_block_descriptor_out_of_bounds_is_counted_not_followed(field, value):
    block = bytearray(build_block([(1.0, FRAME, len(FRAME))]))
    struct.pack_into("<I", block, {"offset_to_first_pkt": 16, "blk_len": 20}[field], value)
    frames, reader = read(bytes(block), size=4096)
    assert frames == [] and reader.counters["tpacket:bad_block"] == 1


def test_a_packet_running_past_its_block_ends_the_block():
    block = bytearray(build_block([(1.0, FRAME, len(FRAME)), (2.0, FRAME, len(FRAME))]))
    first_packet = tpacket.BLOCK_DESC_SIZE
    nxt = struct.unpack_from("<I", block, first_packet)[0]
    struct.pack_into("<I", block, first_packet + nxt + 12, 60000)  # second packet's snaplen
    frames, reader = read(bytes(block))
    assert len(frames) == 1 and reader.counters["tpacket:bad_packet"] == 1


def test_every_truncation_of_a_block_is_survived():
    block = build_block([(1.0, FRAME, len(FRAME))] * 3)
    for cut in range(len(block)):
        reader = BlockReader(ETH, 1 << 16, {})
        out: list = []
        reader.read(block[:cut], 0, out)  # never raises: counts instead
        assert len(out) <= 3


def test_ring_geometry_request_and_checks():
    geometry = RingGeometry(1 << 20, 8, 50)
    assert struct.unpack("<7I", geometry.request()) == (1 << 20, 8, 2048, 8 * 512, 50, 0, 0)
    assert geometry.size == 8 << 20 and geometry.problem(4096) is None
    assert "page size" in RingGeometry(6000, 8, 50).problem(4096)
    assert "block count" in RingGeometry(1 << 20, 0, 50).problem(4096)
    assert "timeout" in RingGeometry(1 << 20, 4, 0).problem(4096)


def test_socket_option_values():
    assert struct.unpack("<I", tpacket.fanout_argument(0x1234)) == (0x1234 | (0x8000 << 16),)
    with pytest.raises(ValueError):
        tpacket.fanout_argument(1 << 16)
    assert tpacket.promisc_request(7) == struct.pack("<iHH8s", 7, 1, 0, b"")
    assert tpacket.parse_stats(struct.pack("<III", 10, 3, 1)) == (10, 3, 1)

"""Linux AF_PACKET TPACKET_V3 receive ring: the layout of blocks and packet headers.

Sans-I/O: the capture actor owns the socket and the memory map; this module only reads
and writes the ring's bytes (any buffer: mmap, bytearray, memoryview) and builds the
option values the socket calls take. One block holds many packets; reading a block and
handing it back to the kernel costs no system call (see ``packet_mmap.rst`` in Linux).

    block:  tpacket_block_desc  version, offset_to_priv, block_status, num_pkts,
                                offset_to_first_pkt, blk_len, seq_num, ts_first, ts_last
    packet: tpacket3_hdr        tp_next_offset, tp_sec, tp_nsec, tp_snaplen, tp_len,
                                tp_status, tp_mac, tp_net, tp_rxhash, tp_vlan_tci,
                                tp_vlan_tpid; then sockaddr_ll at TPACKET_ALIGN(48)
"""

from __future__ import annotations

import struct
from typing import Any

import attrs

from protocols import linktypes

# --- constants from <linux/if_packet.h>, <linux/if_ether.h>, <linux/if_arp.h> -----------

SOL_PACKET = 263
ETH_P_ALL = 0x0003
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_FANOUT = 18
TPACKET_V3 = 2

PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000

SO_ATTACH_FILTER = 26  # SOL_SOCKET

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1 << 0
TP_STATUS_COPY = 1 << 1
TP_STATUS_LOSING = 1 << 2
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_BLK_TMO = 1 << 5
TP_STATUS_VLAN_TPID_VALID = 1 << 6

PACKET_OUTGOING = 4  # sll_pkttype of a frame the host sent

ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NONE = 0xFFFE

TPACKET_ALIGNMENT = 16
TPACKET3_HDR_SIZE = 48
#: where the sockaddr_ll sits after each packet header
SLL_OFFSET = (TPACKET3_HDR_SIZE + TPACKET_ALIGNMENT - 1) & ~(TPACKET_ALIGNMENT - 1)
BLOCK_DESC_SIZE = 48

_BLOCK = struct.Struct("<IIIIIIQIIII")  # version .. ts_last (48 bytes)
_BLOCK_STATUS = struct.Struct("<I")
_BLOCK_STATUS_AT = 8
_PACKET = struct.Struct("<IIIIIIHHIIH")  # tp_next_offset .. tp_vlan_tpid
_SLL = struct.Struct("<H2siHBB8s")  # family, protocol (network order), ifindex, hatype, pkttype, halen, addr
_REQ3 = struct.Struct("<IIIIIII")
_STATS3 = struct.Struct("<III")
_U32 = struct.Struct("<I")
_MREQ = struct.Struct("<iHH8s")
_VLAN = struct.Struct(">HH")
_COOKED = struct.Struct(">HHH8s")


@attrs.frozen(slots=True)
class LinkMode:
    """How to open an interface: raw frames (``cooked`` False) or cooked, and the link type.

    ``filter_linktype`` is the link type a BPF filter must be compiled for: the kernel runs
    it on what the socket receives (the network header in cooked mode).
    """

    cooked: bool
    linktype: int
    filter_linktype: int
    drop_outgoing: bool


def link_mode(arphrd: int) -> LinkMode:
    """The capture mode for an interface of hardware type ``arphrd`` (as libpcap chooses)."""
    if arphrd == ARPHRD_ETHER:
        return LinkMode(False, linktypes.ETHERNET, linktypes.ETHERNET, False)
    if arphrd == ARPHRD_LOOPBACK:
        # loopback frames pass the socket twice (out and in): keep the incoming copy only
        return LinkMode(False, linktypes.ETHERNET, linktypes.ETHERNET, True)
    if arphrd == ARPHRD_NONE:
        return LinkMode(False, linktypes.RAW, linktypes.RAW, False)
    return LinkMode(True, linktypes.LINUX_SLL, linktypes.RAW, False)


# --- ring geometry and socket option values -----------------------------------------


@attrs.frozen(slots=True)
class RingGeometry:
    """Block size and count and the block retire timeout of one receive ring."""

    block_size: int
    block_count: int
    timeout_ms: int
    frame_size: int = 2048

    @property
    def size(self) -> int:
        return self.block_size * self.block_count

    def problem(self, page_size: int) -> str | None:
        """Why the kernel would refuse this geometry, or None."""
        if self.block_size <= 0 or self.block_size % page_size:
            return f"ring block size {self.block_size} is not a positive multiple of the page size {page_size}"
        if self.block_size % self.frame_size:
            return f"ring block size {self.block_size} is not a multiple of {self.frame_size}"
        if self.block_count <= 0:
            return "ring block count must be positive"
        if self.timeout_ms <= 0:
            return "ring block timeout must be positive"
        return None

    def request(self) -> bytes:
        """``struct tpacket_req3`` for PACKET_RX_RING."""
        frames = self.block_size // self.frame_size * self.block_count
        return _REQ3.pack(self.block_size, self.block_count, self.frame_size, frames, self.timeout_ms, 0, 0)


def fanout_argument(group: int, mode: int = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) -> bytes:
    """The PACKET_FANOUT option value: a 16-bit group id and the mode in the high half.

    Bytes, not an int: with the defrag flag the value does not fit a signed int.
    """
    if not 0 <= group <= 0xFFFF:
        raise ValueError(f"fanout group {group} is not a 16-bit id")
    return _U32.pack(group | (mode << 16))


def promisc_request(ifindex: int) -> bytes:
    """``struct packet_mreq`` asking for promiscuous mode on ``ifindex`` (PACKET_ADD_MEMBERSHIP)."""
    return _MREQ.pack(ifindex, PACKET_MR_PROMISC, 0, b"")


def parse_stats(data: bytes) -> tuple[int, int, int]:
    """``struct tpacket_stats_v3``: packets (including drops), drops, freeze count."""
    return _STATS3.unpack_from(data, 0)


STATS_SIZE = _STATS3.size


# --- blocks --------------------------------------------------------------------------


def block_ready(ring: Any, offset: int) -> bool:
    """The block at ``offset`` belongs to user space (the kernel retired it)."""
    return bool(_BLOCK_STATUS.unpack_from(ring, offset + _BLOCK_STATUS_AT)[0] & TP_STATUS_USER)


def block_packet_count(ring: Any, offset: int) -> int:
    """How many packets the block at ``offset`` holds (to drop it whole, unparsed)."""
    return _BLOCK_STATUS.unpack_from(ring, offset + _BLOCK_STATUS_AT + 4)[0]


def release_block(ring: Any, offset: int) -> None:
    """Hand the block at ``offset`` back to the kernel."""
    _BLOCK_STATUS.pack_into(ring, offset + _BLOCK_STATUS_AT, TP_STATUS_KERNEL)


@attrs.define(slots=True)
class BlockReader:
    """Turns retired blocks into frames ``(ts, linktype, data, wirelen)`` for the dissector.

    ``counters`` counts what the reader saw: packets, truncated packets (snaplen below the
    wire length), outgoing loopback copies skipped, and malformed headers (which end the
    block: the rest of it cannot be trusted).
    """

    mode: LinkMode
    block_size: int
    counters: dict[str, int] = attrs.field(factory=dict)
    last_seq: int = -1

    def read(self, ring: Any, offset: int, out: list) -> int:
        """Append the frames of the block at ``offset`` to ``out``; return how many."""
        try:
            (_, _, _, num, first, length, seq, *_) = _BLOCK.unpack_from(ring, offset)
        except struct.error:
            self._count("tpacket:bad_block")
            return 0
        if self.last_seq >= 0 and seq != self.last_seq + 1:
            self._count("tpacket:block_seq_gap")
        self.last_seq = seq
        if length > self.block_size or first > length:
            self._count("tpacket:bad_block")
            return 0
        end = offset + length
        pos = offset + first
        mode = self.mode
        linktype = mode.linktype
        check_sll = mode.cooked or mode.drop_outgoing
        unpack = _PACKET.unpack_from
        append = out.append
        before = len(out)
        truncated = skipped = 0
        for _ in range(num):
            try:
                (nxt, sec, nsec, snaplen, wirelen, status, mac, _net, _hash, tci, tpid) = unpack(ring, pos)
            except struct.error:
                self._count("tpacket:bad_packet")
                break
            start = pos + mac
            if start + snaplen > end:
                self._count("tpacket:bad_packet")
                break
            data = ring[start : start + snaplen]
            if type(data) is not bytes:
                data = bytes(data)
            if check_sll:
                (_, proto, _, hatype, pkttype, halen, addr) = _SLL.unpack_from(ring, pos + SLL_OFFSET)
                if mode.drop_outgoing and pkttype == PACKET_OUTGOING:
                    skipped += 1
                    pos = pos + nxt if nxt else end
                    continue
                if mode.cooked:
                    header = _COOKED.pack(pkttype, hatype, min(halen, 8), addr) + proto
                    data = header + data
                    snaplen += 16
                    wirelen += 16
            if status & TP_STATUS_VLAN_VALID and linktype == linktypes.ETHERNET and snaplen >= 12:
                data = data[:12] + _VLAN.pack(tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100, tci) + data[12:]
                wirelen += 4
                snaplen += 4
            if snaplen < wirelen:
                truncated += 1
            append((sec + nsec * 1e-9, linktype, data, wirelen))
            if not nxt:
                break
            pos += nxt
        got = len(out) - before
        c = self.counters
        c["ring_packets"] = c.get("ring_packets", 0) + got
        c["ring_blocks"] = c.get("ring_blocks", 0) + 1
        if truncated:
            self._count("ring_truncated", truncated)
        if skipped:
            self._count("ring_outgoing_skipped", skipped)
        return got

    def _count(self, key: str, amount: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + amount


# --- building blocks (for tests and benchmarks that need a ring without a kernel) ------


def build_packet_header(
    next_offset: int,
    ts: float,
    snaplen: int,
    wirelen: int,
    *,
    mac: int = 82,
    status: int = TP_STATUS_USER,
    vlan_tci: int = 0,
    vlan_tpid: int = 0,
    sll: tuple[int, int, int, bytes] = (0x0800, ARPHRD_ETHER, 0, b""),
) -> bytes:
    """A ``tpacket3_hdr`` plus its sockaddr_ll (protocol, hatype, pkttype, address), padded to ``mac``."""
    sec = int(ts)
    nsec = round((ts - sec) * 1e9)
    header = _PACKET.pack(next_offset, sec, nsec, snaplen, wirelen, status, mac, mac, 0, vlan_tci, vlan_tpid)
    header = header.ljust(SLL_OFFSET, b"\0")
    proto, hatype, pkttype, addr = sll
    header += _SLL.pack(17, proto.to_bytes(2, "big"), 0, hatype, pkttype, len(addr), addr.ljust(8, b"\0"))
    return header.ljust(mac, b"\0")


def build_block(packets: list[tuple[float, bytes, int]], *, seq: int = 1, block_status: int = TP_STATUS_USER, **header: Any) -> bytes:
    """A retired block holding ``packets`` (ts, captured bytes, wire length), as the kernel lays it out."""
    first = BLOCK_DESC_SIZE
    parts = []
    for i, (ts, data, wirelen) in enumerate(packets):
        mac = 82
        size = (mac + len(data) + TPACKET_ALIGNMENT - 1) & ~(TPACKET_ALIGNMENT - 1)
        nxt = size if i < len(packets) - 1 else 0
        parts.append((build_packet_header(nxt, ts, len(data), wirelen, mac=mac, **header) + data).ljust(size, b"\0"))
    body = b"".join(parts)
    ts_first = int(packets[0][0]) if packets else 0
    ts_last = int(packets[-1][0]) if packets else 0
    desc = _BLOCK.pack(1, 0, block_status, len(packets), first, first + len(body), seq, ts_first, 0, ts_last, 0)
    return desc + body

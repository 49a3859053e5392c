"""Building packets as bytes for the decode/flow/engine tests (struct, no packet library)."""

from __future__ import annotations

import socket
import struct

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def addr(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack(">BBH", 0, proto, length)
    return src + dst + struct.pack(">IxxxB", length, proto)


def tcp(
    src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"",
    window: int = 65535, options: bytes = b"", good_checksum: bool = True,
) -> bytes:
    """A TCP segment with its checksum computed for ``src``/``dst``."""
    options += b"\0" * (-len(options) % 4)
    offset = (20 + len(options)) // 4
    header = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, offset << 4, flags, window, 0, 0) + options
    segment = header + payload
    value = checksum(_pseudo(addr(src), addr(dst), 6, len(segment)) + segment)
    if not good_checksum:
        value ^= 0x5A5A
    return segment[:16] + struct.pack(">H", value) + segment[18:]


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"", length: int | None = None,
        good_checksum: bool = True) -> bytes:
    """A UDP datagram with its checksum computed (``length`` overrides the length field)."""
    size = 8 + len(payload) if length is None else length
    datagram = struct.pack(">HHHH", sport, dport, size, 0) + payload
    value = checksum(_pseudo(addr(src), addr(dst), 17, len(datagram)) + datagram) or 0xFFFF
    if not good_checksum:
        value ^= 0x5A5A
    return datagram[:6] + struct.pack(">H", value) + datagram[8:]


def icmp(icmp_type: int, code: int, payload: bytes = b"", src: str | None = None, dst: str | None = None) -> bytes:
    """An ICMP message; with ``src``/``dst`` (IPv6) an ICMPv6 one with the pseudo-header sum."""
    message = struct.pack(">BBHI", icmp_type, code, 0, 0x12340001) + payload
    if src is not None and ":" in src:
        value = checksum(_pseudo(addr(src), addr(dst), 58, len(message)) + message)
    else:
        value = checksum(message)
    return message[:2] + struct.pack(">H", value) + message[4:]


def ipv4(
    src: str, dst: str, proto: int, payload: bytes, ident: int = 1, flags_frag: int = 0x4000, ttl: int = 64,
    options: bytes = b"", total: int | None = None, ihl: int | None = None, good_checksum: bool = True,
) -> bytes:
    """An IPv4 packet; ``total``/``ihl`` override the header fields (for malformed cases)."""
    hlen = 20 + len(options)
    header = struct.pack(
        ">BBHHHBBH4s4s", 0x40 | ((hlen // 4) if ihl is None else ihl), 0,
        hlen + len(payload) if total is None else total, ident, flags_frag, ttl, proto, 0, addr(src), addr(dst),
    ) + options
    value = checksum(header)
    if not good_checksum:
        value ^= 0x5A5A
    return header[:10] + struct.pack(">H", value) + header[12:] + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes, extensions: bytes = b"",
         payload_length: int | None = None) -> bytes:
    """An IPv6 packet; ``extensions`` are already-built extension headers before ``payload``."""
    body = extensions + payload
    return struct.pack(
        ">IHBB16s16s", 0x60000000, len(body) if payload_length is None else payload_length, next_header, 64,
        addr(src), addr(dst),
    ) + body


def ext_header(next_header: int, body: bytes = b"\0" * 6) -> bytes:
    """A hop-by-hop / routing / destination-options header (length in 8-byte units)."""
    body += b"\0" * (-(len(body) + 2) % 8)
    return struct.pack(">BB", next_header, (len(body) + 2) // 8 - 1) + body


def ah_header(next_header: int, icv: bytes = b"\0" * 12) -> bytes:
    """An authentication header (length in 4-byte units minus 2)."""
    body = struct.pack(">HII", 0, 0x100, 1) + icv
    return struct.pack(">BB", next_header, (len(body) + 2) // 4 - 2) + body


def fragment_header(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    return struct.pack(">BBHI", next_header, 0, (offset << 3) | int(more), ident)


def ethernet(payload: bytes, ethertype: int = 0x0800, vlans: tuple[tuple[int, int], ...] = (),
             dst: bytes = MAC_B, src: bytes = MAC_A) -> bytes:
    """An Ethernet frame; ``vlans`` are (TPID, VLAN id) tags, outermost first."""
    tags = b"".join(struct.pack(">HH", tpid, vid) for tpid, vid in vlans)
    return dst + src + tags + struct.pack(">H", ethertype) + payload


def linux_sll(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return struct.pack(">HHH8sH", 0, 1, 6, MAC_A + b"\0\0", ethertype) + payload


def linux_sll2(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return struct.pack(">HHIHBB8s", ethertype, 0, 3, 1, 0, 6, MAC_A + b"\0\0") + payload


def null_loopback(payload: bytes, family: int = 2, order: str = "<") -> bytes:
    return struct.pack(order + "I", family) + payload


def nflog(payload: bytes, family: int = 2) -> bytes:
    """NFLOG: header, a prefix TLV, then the payload TLV (host order, padded to 4)."""
    prefix = b"probe\0"
    tlvs = struct.pack("<HH", 4 + len(prefix), 10) + prefix + b"\0" * (-len(prefix) % 4)
    tlvs += struct.pack("<HH", 4 + len(payload), 9) + payload + b"\0" * (-len(payload) % 4)
    return struct.pack(">BBH", family, 0, 0) + tlvs


def frame(payload: bytes, ts: float, linktype: int = 1, wirelen: int | None = None) -> tuple[float, int, bytes, int]:
    """A Frame as the engine takes it."""
    return ts, linktype, payload, len(payload) if wirelen is None else wirelen


class Conversation:
    """A TCP conversation between A (client) and B (server) as Ethernet frames, with seq/ack kept.

    ``a(flags, payload)`` / ``b(flags, payload)`` add a segment from that side; sequence
    numbers advance as TCP would; ``ts`` advances by ``step`` per segment.
    """

    def __init__(self, a: str = "10.0.0.1", b: str = "10.0.0.2", aport: int = 40000, bport: int = 8080,
                 a_isn: int = 1000, b_isn: int = 5000, start: float = 1000.0, step: float = 0.01) -> None:
        self.addr = {True: a, False: b}
        self.port = {True: aport, False: bport}
        self.nxt = {True: a_isn, False: b_isn}
        self.ts = start
        self.step = step
        self.frames: list[tuple[float, int, bytes, int]] = []

    def _add(self, from_a: bool, flags: int, payload: bytes, seq: int | None, ack: int | None,
             window: int, keep: bool) -> tuple[float, int, bytes, int]:
        src, dst = self.addr[from_a], self.addr[not from_a]
        seq_value = self.nxt[from_a] if seq is None else seq
        ack_value = (self.nxt[not from_a] if ack is None else ack) if flags & ACK else 0
        segment = tcp(src, dst, self.port[from_a], self.port[not from_a], seq_value & 0xFFFFFFFF,
                      ack_value & 0xFFFFFFFF, flags, payload, window)
        if seq is None:
            self.nxt[from_a] = seq_value + len(payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        built = frame(ethernet(ipv4(src, dst, 6, segment)), self.ts)
        self.ts += self.step
        if keep:
            self.frames.append(built)
        return built

    def a(self, flags: int, payload: bytes = b"", seq: int | None = None, ack: int | None = None,
          window: int = 65535, keep: bool = True) -> tuple[float, int, bytes, int]:
        return self._add(True, flags, payload, seq, ack, window, keep)

    def b(self, flags: int, payload: bytes = b"", seq: int | None = None, ack: int | None = None,
          window: int = 65535, keep: bool = True) -> tuple[float, int, bytes, int]:
        return self._add(False, flags, payload, seq, ack, window, keep)

    def handshake(self) -> "Conversation":
        self.a(SYN)
        self.b(SYN | ACK)
        self.a(ACK)
        return self

    def close(self) -> "Conversation":
        self.a(FIN | ACK)
        self.b(FIN | ACK)
        self.a(ACK)
        return self

"""A synthetic capture for console tests: many short DNS exchanges and a few long TCP flows.

Packet time advances ``step`` seconds a packet, so UDP flows expire while the replay runs
and the probe keeps creating ``dns`` and ``conn`` events; the TCP flows stay open the
whole time with known, distinct byte counts (the largest first), so ``flows`` has a
known top N.
"""

from __future__ import annotations

import struct

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
_MAC_A = bytes.fromhex("020000000001")
_MAC_B = bytes.fromhex("020000000002")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0, src, dst)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + payload


def _frame(src: bytes, dst: bytes, proto: int, l4: bytes, forward: bool) -> bytes:
    macs = _MAC_B + _MAC_A if forward else _MAC_A + _MAC_B
    return macs + b"\x08\x00" + _ipv4(src, dst, proto, l4)


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def _tcp(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 0x50, flags, 65535, 0, 0) + payload


def _dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def _dns_query(txid: int, name: str) -> bytes:
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + _dns_name(name) + struct.pack("!HH", 1, 1)


def _dns_answer(txid: int, name: str, address: bytes) -> bytes:
    question = _dns_name(name) + struct.pack("!HH", 1, 1)
    answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + address
    return struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + question + answer


#: the long TCP flows: (client port, bytes of payload per data packet); flow i carries more than flow i+1
TCP_FLOWS = [(40001, 90), (40002, 70), (40003, 50), (40004, 30), (40005, 10)]
CLIENT = bytes([10, 0, 0, 1])
SERVER = bytes([10, 0, 0, 2])
RESOLVER = bytes([10, 0, 0, 53])
TCP_PORT = 9000


def frames(packets: int, step: float = 0.01, start: float = 1_700_000_000.0) -> list[tuple[float, int, bytes, int]]:
    """About ``packets`` Ethernet frames (ts, linktype, data, wirelen): per round, one DNS
    query/answer and one data packet per TCP flow, after the TCP handshakes."""
    out: list[tuple[float, int, bytes, int]] = []
    seqs = {port: 1000 for port, _ in TCP_FLOWS}

    def add(frame: bytes) -> None:
        out.append((start + len(out) * step, 1, frame, len(frame)))

    for port, _ in TCP_FLOWS:  # handshakes
        add(_frame(CLIENT, SERVER, 6, _tcp(port, TCP_PORT, 999, 0, 0x02), True))
        add(_frame(SERVER, CLIENT, 6, _tcp(TCP_PORT, port, 4999, 1000, 0x12), False))
        add(_frame(CLIENT, SERVER, 6, _tcp(port, TCP_PORT, 1000, 5000, 0x10), True))
    round_no = 0
    per_round = 2 + len(TCP_FLOWS)
    while len(out) + per_round <= packets:
        round_no += 1
        txid = round_no & 0xFFFF
        sport = 1024 + round_no % 60000
        name = f"host{round_no}.example.com"
        add(_frame(CLIENT, RESOLVER, 17, _udp(sport, 53, _dns_query(txid, name)), True))
        add(_frame(RESOLVER, CLIENT, 17, _udp(53, sport, _dns_answer(txid, name, bytes([10, 1, round_no >> 8 & 255, round_no & 255]))), False))
        for port, size in TCP_FLOWS:
            add(_frame(CLIENT, SERVER, 6, _tcp(port, TCP_PORT, seqs[port], 5000, 0x18, bytes([0x5A]) * size), True))
            seqs[port] += size
    return out


def write_capture(path: str, packets: int, step: float = 0.01, start: float = 1_700_000_000.0) -> None:
    """Write :func:`frames` as a classic pcap file."""
    with open(path, "wb") as fh:
        fh.write(_PCAP_HEADER)
        chunk = []
        for ts, _, data, _ in frames(packets, step, start):
            sec, usec = divmod(round(ts * 1_000_000), 1_000_000)
            chunk.append(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)
            if len(chunk) >= 10_000:
                fh.write(b"".join(chunk))
                chunk = []
        fh.write(b"".join(chunk))

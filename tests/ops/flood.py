"""Flood captures for the operations tests: many short DNS flows written as a real pcap file."""

from __future__ import annotations

import struct
from pathlib import Path

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
_ETH = bytes.fromhex("020000000001" "020000000002" "0800")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _dns_query(txid: int, name: str) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def write_flood_pcap(path: Path, queries: int, *, per_flow: int = 1, start: float = 1_700_000_000.0, spacing: float = 0.0005) -> Path:
    """``queries`` DNS queries, ``per_flow`` of them on each client address and port.

    Each query yields a ``dns`` event and each flow a ``conn`` event once it times out:
    a flood of events for the delivery process from a small, fast to dissect file.
    """
    out = bytearray(_PCAP_HEADER)
    for q in range(queries):
        i = q // per_flow
        ts = start + q * spacing
        src = struct.pack("!BBBB", 10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)
        dst = bytes((10, 255, 0, 53))
        sport = 1024 + i % 60000
        payload = _dns_query(q & 0xFFFF, f"host{q}.flood.example")
        udp_len = 8 + len(payload)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, q & 0xFFFF, 0, 64, 17, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        udp = struct.pack("!HHHH", sport, 53, udp_len, 0) + payload  # checksum 0: none (RFC 768)
        frame = _ETH + ip + udp
        sec = int(ts)
        out += struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))
    return path

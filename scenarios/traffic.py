"""Traffic for the scenarios: DNS transactions with unique names, as frames or a pcap file.

Transaction ``i`` is a query from client 10.x.y.z to the resolver 10.255.0.53 for
``t<i>.<tag>.scenario.example`` and its answer (an A record). The probe turns each into
one ``dns`` event, and each client flow (``per_flow`` transactions on one address and
port) into one ``conn`` event when it ends, so the events a run must produce are known
exactly, and each stored ``dns`` event names the transaction it came from.
"""

from __future__ import annotations

import struct
from pathlib import Path

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
CLIENT_MAC = bytes.fromhex("020000000002")
RESOLVER_MAC = bytes.fromhex("020000000001")
RESOLVER = bytes((10, 255, 0, 53))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _ipv4_udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, ident: int) -> bytes:
    udp_len = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ident & 0xFFFF, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + struct.pack("!HHHH", sport, dport, udp_len, 0) + payload  # UDP checksum 0: none (RFC 768)


def _qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def client_of(flow: int) -> tuple[bytes, int]:
    """Address and port of client flow ``flow``."""
    return bytes((10, (flow >> 16) & 0x7F, (flow >> 8) & 0xFF, flow & 0xFF or 1)), 1024 + flow % 60000


def query_name(i: int, tag: str) -> str:
    return f"t{i}.{tag}.scenario.example"


def dns_transaction(i: int, tag: str, per_flow: int = 1) -> tuple[bytes, bytes]:
    """(query frame, answer frame) of transaction ``i`` as Ethernet bytes."""
    src, sport = client_of(i // per_flow)
    txid = i & 0xFFFF
    question = _qname(query_name(i, tag)) + struct.pack("!HH", 1, 1)
    query = struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + question
    answer_rr = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes((192, 0, 2, i % 250 + 1))
    answer = struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + question + answer_rr
    q = RESOLVER_MAC + CLIENT_MAC + b"\x08\x00" + _ipv4_udp(src, RESOLVER, sport, 53, query, 2 * i)
    a = CLIENT_MAC + RESOLVER_MAC + b"\x08\x00" + _ipv4_udp(RESOLVER, src, 53, sport, answer, 2 * i + 1)
    return q, a


def write_dns_pcap(path: Path, transactions: int, *, tag: str = "replay", per_flow: int = 1, rate: float = 1000.0,
                   start: float = 1_700_000_000.0, phases: list[tuple[int, float]] | None = None) -> Path:
    """DNS transactions as a pcap file: ``transactions`` at ``rate`` per second of capture time,
    or, with ``phases``, each ``(count, rate)`` in turn (a flood is a phase with a huge rate)."""
    out = bytearray(PCAP_HEADER)
    i = 0
    ts = start
    for count, phase_rate in phases or [(transactions, rate)]:
        gap = 1.0 / phase_rate
        for _ in range(count):
            for n, frame in enumerate(dns_transaction(i, tag, per_flow)):
                t = ts + n * gap / 4
                sec = int(t)
                out += struct.pack("<IIII", sec, int((t - sec) * 1e6), len(frame), len(frame)) + frame
            ts += gap
            i += 1
    path.write_bytes(bytes(out))
    return path

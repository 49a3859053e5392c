"""Content detection on the first bytes of a direction, on any port."""

from __future__ import annotations

import random
import struct

import pytest

from protocols.detect import MAX_HEAD, NEED_MORE, detect, is_smb1

TLS_CLIENT_HELLO = bytes.fromhex("160301" "00c8" "01" "0000c4" "0303") + b"\x11" * 32
TLS_SERVER_HELLO = bytes.fromhex("160303" "0059" "02" "000055" "0303") + b"\x22" * 32
SSLV2_CLIENT_HELLO = bytes.fromhex("802e" "01" "0301" "0015" "0000" "0010") + b"\0" * 37
SMB2_NEGOTIATE = b"\x00\x00\x00\x66" + b"\xfeSMB" + struct.pack("<HH", 64, 0) + b"\0" * 56
SMB3_TRANSFORM = b"\x00\x00\x01\x00" + b"\xfdSMB" + b"\0" * 48
SMB1_NEGOTIATE = b"\x00\x00\x00\x2f" + b"\xffSMB" + b"\x72" + b"\0" * 38
DCERPC_BIND = bytes([5, 0, 11, 3, 0x10, 0, 0, 0]) + struct.pack("<HHI", 72, 0, 1) + b"\0" * 56
DCERPC_BIG_ENDIAN_REQUEST = bytes([5, 0, 0, 3, 0x00, 0, 0, 0]) + struct.pack(">HHI", 24, 0, 2) + b"\0" * 8


def _asn1(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    return bytes([tag, 0x82]) + struct.pack(">H", len(body)) + body


KRB_AS_REQ = _asn1(0x6A, _asn1(0x30, b"\xa1\x03\x02\x01\x05" + b"\0" * 150))
KRB_ERROR = _asn1(0x7E, _asn1(0x30, b"\xa0\x03\x02\x01\x05"))


def _dns_query(name: bytes = b"\x07example\x03com\x00", qclass: int = 1, opcode: int = 0) -> bytes:
    return struct.pack(">HHHHHH", 0x1234, opcode << 11 | 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, qclass)


@pytest.mark.parametrize(
    "is_tcp,data,service",
    [
        (True, TLS_CLIENT_HELLO, "ssl"),
        (True, TLS_SERVER_HELLO, "ssl"),
        (True, SSLV2_CLIENT_HELLO, "ssl"),
        (True, SMB2_NEGOTIATE, "smb"),
        (True, SMB3_TRANSFORM, "smb"),
        (True, SMB1_NEGOTIATE, "smb"),
        (True, DCERPC_BIND, "dce_rpc"),
        (True, DCERPC_BIG_ENDIAN_REQUEST, "dce_rpc"),
        (True, struct.pack(">I", len(KRB_AS_REQ)) + KRB_AS_REQ, "krb_tcp"),
        (False, KRB_AS_REQ, "krb"),
        (False, KRB_ERROR, "krb"),
        (True, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", "http"),
        (True, b"POST http://proxy.example/ HTTP/1.0\r\n", "http"),
        (True, b"CONNECT example.com:443 HTTP/1.1\r\n", "http"),
        (True, b"OPTIONS * HTTP/1.1\r\n", "http"),
        (True, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "http"),
        (False, _dns_query(), "dns"),
        (True, struct.pack(">H", len(_dns_query())) + _dns_query(), "dns"),
    ],
)
def test_each_protocol_is_detected_on_any_port(is_tcp: bool, data: bytes, service: str) -> None:
    assert detect(is_tcp, data, 40000, 41000) == service
    assert detect(is_tcp, data, 40000, 41000) in ("ssl", "smb", "dce_rpc", "krb", "krb_tcp", "http", "dns")


@pytest.mark.parametrize("sport,dport", [(49153, 445), (445, 49153), (49153, 139), (49153, 135), (49153, 80)])
def test_content_wins_over_the_port(sport: int, dport: int) -> None:
    """Raw DCE/RPC on SMB's ports is DCE/RPC, SMB on the endpoint mapper's port is SMB."""
    assert detect(True, DCERPC_BIND, sport, dport) == "dce_rpc"
    assert detect(True, SMB2_NEGOTIATE, sport, dport) == "smb"
    assert detect(True, TLS_CLIENT_HELLO, sport, dport) == "ssl"


@pytest.mark.parametrize(
    "data",
    [TLS_CLIENT_HELLO, SMB2_NEGOTIATE, DCERPC_BIND, struct.pack(">I", len(KRB_AS_REQ)) + KRB_AS_REQ,
     b"PROPFIND /dav HTTP/1.1\r\n"],
)
def test_every_short_prefix_asks_for_more_or_decides(data: bytes) -> None:
    final = detect(True, data)
    assert final not in (None, NEED_MORE)
    for cut in range(1, 6):
        assert detect(True, data[:cut]) in (NEED_MORE, final)


def test_smb1_is_flagged() -> None:
    assert is_smb1(SMB1_NEGOTIATE)
    assert not is_smb1(SMB2_NEGOTIATE)


def test_netbios_session_request_only_counts_on_139() -> None:
    request = b"\x81\x00\x00\x44" + b"\x20" + b"C" * 32 + b"\x00" + b"\x20" + b"D" * 32 + b"\x00"
    assert detect(True, request, 50000, 139) == "smb"
    assert detect(True, request, 50000, 4000) is None


def test_dns_plausibility_is_relaxed_on_dns_ports_only() -> None:
    update = struct.pack(">HHHHHH", 1, 0x8180, 0, 1, 0, 0) + b"\xc0\x0c" + b"\0" * 14  # no question
    assert detect(False, update, 53, 40000) == "dns"
    assert detect(False, update, 6000, 40000) is None
    odd_class = _dns_query(qclass=0x00FE + 7)
    assert detect(False, odd_class, 5353, 5353) == "dns"
    assert detect(False, odd_class, 6000, 6001) is None


def test_mdns_unicast_response_bit_is_a_dns_class() -> None:
    assert detect(False, _dns_query(qclass=0x8001), 5353, 5353) == "dns"


@pytest.mark.parametrize(
    "is_tcp,data",
    [
        (True, b"SSH-2.0-OpenSSH_9.6\r\n"),
        (True, b"220 mail.example ESMTP\r\n"),
        (True, b"\x16\x03\x01\x00\x05\x0b"),  # TLS record, but a Certificate first
        (True, b"GETX / HTTP/1.1\r\n"),
        (True, b"\x00\x00\x00\x20" + b"\xaaSMB" + b"\0" * 28),
        (True, bytes([5, 1, 11, 3, 0x10, 0, 0, 0, 72, 0])),  # DCE/RPC minor version 1: not v5.0
        (False, b"\x6a\x05\x02\x01\x05\x00\x00"),  # a Kerberos tag without a SEQUENCE
        (False, struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"),
        (False, b""),
    ],
)
def test_lookalikes_are_not_detected(is_tcp: bool, data: bytes) -> None:
    assert detect(is_tcp, data, 40000, 41000) in (None, NEED_MORE)
    if data:
        assert detect(is_tcp, data + b"\0" * MAX_HEAD, 40000, 41000) is None


def test_random_bytes_never_raise_and_seldom_match() -> None:
    rng = random.Random(3)
    matches = 0
    for _ in range(5000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
        for is_tcp in (True, False):
            verdict = detect(is_tcp, data, rng.randrange(65536), rng.randrange(65536))
            assert verdict in (None, NEED_MORE, "ssl", "smb", "dce_rpc", "krb", "krb_tcp", "http", "dns")
            matches += verdict not in (None, NEED_MORE)
    assert matches < 50

"""TLS handshake parser: hellos, fingerprints, reassembly, Zeek's establishment rules, bad input."""

from __future__ import annotations

import contextlib
import random
import struct

import pytest

from protocols.events.base import as_json_object
from protocols.tls import TlsAnalyzer
from protocols.tls_fingerprint import ja3_string, ja3s_string, ja4, ja4_parts, md5_hex
from protocols.tls_hello import parse_client_hello, parse_server_hello
from protocols.tls_names import cipher_name, curve_name, version_name
from tests.protocols.tls_builders import (
    HRR_RANDOM,
    Context,
    alpn_ext,
    certificate_msg,
    client_hello,
    ecdhe_server_key_exchange,
    ext,
    handshake,
    make_certificate,
    record,
    server_hello,
    sni_ext,
    u8,
    u16,
    u16s,
    vec8,
    vec16,
)

# A real TLS 1.3 ClientHello (openssl s_client -alpn h2 to api.acme.lan), from
# ../shared/pcaps/tls.pcap stream 3; tshark computes JA3 9dffdb8b608a430b774a2ff7d36c1a0c.
REAL_CLIENT_HELLO = bytes.fromhex(
    "16030100fa010000f603036419d392d5d85b4963218a7d22f8daf0fae317c021f9e78bf9a37f1a09ee90282073fb2b28"
    "150094aca2dd979ba82f725e308f64e773833c762c9e3cf4d72f91a2000813021303130100ff010000a500000011000f"
    "00000c6170692e61636d652e6c616e000b000403000102000a00160014001d0017001e00190018010001010102010301"
    "04002300000010000500030268320016000000170000000d001e001c040305030603080708080809080a080b08040805"
    "0806040105010601002b0003020304002d00020101003300260024001d0020808ea6bd97ac9f7a2758b60e12fa10d2da"
    "7bce8de85748fd00c949f177e96642"
)

GREASE_A, GREASE_B = 0x0A0A, 0xDADA


def run(client: list[bytes], server: list[bytes], order: str | None = None) -> Context:
    """Feed client and server chunks alternately (or in ``order``: 'c'/'s' letters), then end."""
    ctx = Context()
    parser = TlsAnalyzer(ctx)
    c, s = list(client), list(server)
    sequence = order or "cs" * max(len(c), len(s))
    ts = 1000.0
    for who in sequence:
        source = c if who == "c" else s
        if source:
            ts += 0.001
            parser.data(who == "c", source.pop(0), ts)
    parser.end(ts + 1)
    return ctx


def only_event(ctx: Context) -> dict:
    assert len(ctx.events) == 1, ctx.events
    return as_json_object(ctx.events[0])


# -- fingerprints: published vectors --------------------------------------------------------------


def test_ja3_matches_salesforce_readme_vector_and_ignores_grease():
    """JA3's README example: 769,47-53-5-10-...,0-10-11,23-24-25,0 -> ada70206e40642a3e4461f35503241d5."""
    extensions = (
        ext(GREASE_A)
        + sni_ext("example.com")
        + ext(10, vec16(u16s([GREASE_B, 23, 24, 25])))
        + ext(11, vec8(b"\x00"))
    )
    ciphers = [GREASE_A, 47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4]
    hello = parse_client_hello(client_hello(ciphers, extensions, version=0x0301)[4:])
    assert ja3_string(hello) == "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
    assert md5_hex(ja3_string(hello)) == "ada70206e40642a3e4461f35503241d5"


def test_ja3_of_hello_without_extensions_matches_readme_vector():
    hello = parse_client_hello(client_hello([4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99], version=0x0301, with_extensions=False)[4:])
    assert md5_hex(ja3_string(hello)) == "de350869b8c85de67a350c8d186f11e6"


def chrome_like_hello() -> bytes:
    """Chrome's 15 ciphers and 16 extensions in wire order, with GREASE, as FoxIO's JA4 example."""
    ciphers = [GREASE_A, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]
    sigalgs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    extensions = (
        ext(GREASE_B)
        + ext(0x0023)
        + ext(0x0017)
        + ext(0x000D, vec16(u16s(sigalgs)))
        + sni_ext("www.example.com")
        + ext(0x0005, b"\x01\x00\x00\x00\x00")
        + ext(0x002D, vec8(b"\x01"))
        + ext(0x0033, vec16(u16(0x001D) + vec16(bytes(32))))
        + ext(0x4469, b"\x00\x03\x02h2")
        + ext(0x000A, vec16(u16s([GREASE_A, 0x001D, 0x0017, 0x0018])))
        + ext(0x0012)
        + ext(0x002B, vec8(u16s([GREASE_A, 0x0304, 0x0303])))
        + ext(0x000B, vec8(b"\x00"))
        + ext(0xFF01, b"\x00")
        + ext(0x001B, b"\x02\x00\x02")
        + alpn_ext(b"h2", b"http/1.1")
        + ext(0x0015, bytes(8))
        + ext(GREASE_A, b"\x00")
    )
    return client_hello(ciphers, extensions)


def test_ja4_matches_foxio_and_suricata_vector():
    """FoxIO's documented Chrome fingerprint (also Suricata's ja4-tls-quic expectation)."""
    hello = parse_client_hello(chrome_like_hello()[4:])
    fingerprint, raw = ja4_parts(hello)
    assert fingerprint == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert raw == (
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"
        "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_"
        "0403,0804,0401,0503,0805,0501,0806,0601"
    )


def test_ja4_without_sni_alpn_or_supported_versions():
    hello = parse_client_hello(client_hello([0x002F], ext(0x0017), version=0x0301)[4:])
    assert ja4(hello).startswith("t10i010100_")
    assert ja4(hello, "q")[0] == "q"


def test_ja4_alpn_that_is_not_alphanumeric_uses_hex():
    hello = parse_client_hello(client_hello([0x1301], alpn_ext(b"\xab\xcd"))[4:])
    assert ja4(hello)[8:10] == "ad"


def test_real_client_hello_fields_and_ja3():
    hello = parse_client_hello(REAL_CLIENT_HELLO[9:])
    assert hello.server_names == ("api.acme.lan",)
    assert hello.alpn == ("h2",)
    assert hello.supported_versions == (0x0304,)
    assert hello.ciphers == (0x1302, 0x1303, 0x1301, 0x00FF)
    assert md5_hex(ja3_string(hello)) == "9dffdb8b608a430b774a2ff7d36c1a0c"
    assert not hello.ech


def test_ja3s_of_server_hello():
    sh = parse_server_hello(server_hello(0x1302, ext(43, u16(0x0304)) + ext(51, u16(0x001D) + vec16(bytes(32))))[4:])
    assert ja3s_string(sh) == "771,4866,43-51"
    assert md5_hex(ja3s_string(sh)) == "15af977ce25de452b96affa2addb1036"


# -- names -----------------------------------------------------------------------------------------


def test_names_are_zeeks():
    assert version_name(0x0303) == "TLSv12"
    assert version_name(0x0304) == "TLSv13"
    assert version_name(0x7F1C) == "TLSv13-draft28"
    assert version_name(0x7F12) == "TLSv13-draft18"
    assert version_name(0x1234) == "unknown-4660"
    assert cipher_name(0x1302) == "TLS_AES_256_GCM_SHA384"
    assert cipher_name(0x0034) == "TLS_DH_ANON_WITH_AES_128_CBC_SHA"
    assert cipher_name(0xCC13) == "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256_OLD"
    assert cipher_name(0x0A0A) == "grease_0x0A0A"
    assert cipher_name(0xABCD) == "unknown-43981"
    assert curve_name(29) == "x25519"
    assert curve_name(4588) == "X25519MLKEM768"


# -- whole handshakes ------------------------------------------------------------------------------


def tls12_flight(sni: str = "www.example.com", cert_names=("www.example.com",)):
    """Client and server records of a full TLS 1.2 ECDHE handshake with one certificate."""
    cert = make_certificate("www.example.com", cert_names)
    ch = client_hello([0xC02F, 0x00FF], sni_ext(sni) + alpn_ext(b"h2", b"http/1.1") + ext(0x0023))
    server = [
        record(22, server_hello(0xC02F, ext(0xFF01, b"\x00") + alpn_ext(b"http/1.1")))
        + record(22, certificate_msg(cert) + ecdhe_server_key_exchange(23) + handshake(14, b"")),
        record(22, handshake(4, bytes(10))) + record(20, b"\x01") + record(22, bytes(40)),
        record(23, bytes(100)),
    ]
    client = [
        record(22, ch, version=0x0301),
        record(22, handshake(16, vec8(bytes(65)))) + record(20, b"\x01") + record(22, bytes(40)),
        record(23, bytes(100)),
    ]
    return client, server, cert


def test_tls12_handshake_reads_like_zeeks_ssl_log():
    client, server, cert = tls12_flight()
    event = only_event(run(client, server))
    assert event["version"] == "TLSv12"
    assert event["cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert event["curve"] == "secp256r1"
    assert event["server_name"] == "www.example.com"
    assert event["next_protocol"] == "http/1.1"
    assert event["established"] is True
    assert event["resumed"] is False
    assert event["ssl_history"] == "CsxknGIti"
    assert len(event["cert_chain_fps"]) == 1 and len(event["cert_chain_fps"][0]) == 64
    assert event["client_cert_chain_fps"] == []
    assert event["subject"] == "O=Probe Tests,CN=www.example.com"
    assert event["sni_matches_cert"] is True
    assert event["client_alpn"] == ["h2", "http/1.1"]
    assert event["client_ciphers"] == ["0xc02f", "0x00ff"]
    assert event["ts"] == pytest.approx(1000.001)


def test_sni_not_in_certificate_is_reported():
    client, server, _ = tls12_flight(sni="other.example.org", cert_names=("*.example.com",))
    assert only_event(run(client, server))["sni_matches_cert"] is False
    client, server, _ = tls12_flight(sni="a.example.com", cert_names=("*.example.com",))
    assert only_event(run(client, server))["sni_matches_cert"] is True


def test_parsing_stops_after_establishment():
    client, server, _ = tls12_flight()
    client.append(b"\xff" * 50)  # not TLS any more: never looked at
    ctx = run(client, server)
    assert len(ctx.events) == 1 and not ctx.violations


def test_records_split_at_every_byte_give_the_same_event():
    client, server, _ = tls12_flight()
    expected = only_event(run(client, server))
    whole = client[0]
    for cut in range(1, len(whole)):
        pieces = [whole[:cut], whole[cut:]] + client[1:]
        event = only_event(run(pieces, server, order="cc" + "sc" * 4))
        assert event["ja3"] == expected["ja3"] and event["server_name"] == "www.example.com", cut
        assert event["established"] is True


def test_one_byte_segments():
    client, server, _ = tls12_flight()
    ctx = Context()
    parser = TlsAnalyzer(ctx)
    for c_chunk, s_chunk in zip(client, server):
        for i in range(len(c_chunk)):
            parser.data(True, c_chunk[i : i + 1], 1.0)
        for i in range(len(s_chunk)):
            parser.data(False, s_chunk[i : i + 1], 1.0)
    assert as_json_object(ctx.events[0])["ssl_history"] == "CsxknGIti"


def test_handshake_message_split_over_records_and_several_messages_in_one_record():
    cert = make_certificate("big.example.com", ("big.example.com",))
    flight = server_hello(0xC02F) + certificate_msg(cert, cert, cert) + ecdhe_server_key_exchange(29) + handshake(14, b"")
    pieces = [flight[i : i + 100] for i in range(0, len(flight), 100)]
    server = [b"".join(record(22, p) for p in pieces)]
    client = [record(22, client_hello([0xC02F], sni_ext("big.example.com")))]
    event = only_event(run(client, server))
    assert event["ssl_history"] == "Csxkn"
    assert event["curve"] == "x25519"
    assert len(event["cert_chain_fps"]) == 3
    assert event["established"] is False


def test_tls13_established_at_first_encrypted_records_of_both_sides():
    ch = client_hello([0x1301, 0x1302], sni_ext("h.example") + ext(43, vec8(u16s([GREASE_A, 0x0304, 0x0303]))), session_id=bytes(range(32)))
    sh = server_hello(0x1301, ext(43, u16(0x0304)) + ext(51, u16(29) + vec16(bytes(32))), session_id=bytes(range(32)))
    server = [record(22, sh) + record(20, b"\x01") + record(23, bytes(300))]
    client = [record(22, ch, version=0x0301), record(20, b"\x01") + record(23, bytes(53))]
    event = only_event(run(client, server, order="csc"))
    assert event["version"] == "TLSv13"
    assert event["cipher"] == "TLS_AES_128_GCM_SHA256"
    assert event["curve"] == "x25519"
    assert event["ssl_history"] == "CsiI"
    assert event["established"] is True
    assert event["resumed"] is False  # an echoed session id is not resumption in TLS 1.3
    assert event["client_versions"] == ["TLSv13", "TLSv12"]
    assert event["cert_chain_fps"] is None


def test_tls13_resumption_by_psk():
    ch = client_hello([0x1301], ext(43, vec8(u16(0x0304))) + ext(41, bytes(20)))
    sh = server_hello(0x1301, ext(43, u16(0x0304)) + ext(41, u16(0)))
    event = only_event(run([record(22, ch), record(23, bytes(40))], [record(22, sh) + record(23, bytes(40))], order="csc"))
    assert event["resumed"] is True and event["established"] is True


def test_tls12_resumption_by_session_id():
    sid = bytes(range(1, 33))
    ch = client_hello([0xC02F], session_id=sid)
    sh = server_hello(0xC02F, session_id=sid)
    server = [record(22, sh) + record(20, b"\x01") + record(22, bytes(40))]
    client = [record(22, ch), record(20, b"\x01") + record(22, bytes(40))]
    event = only_event(run(client, server, order="csc"))
    assert event["resumed"] is True
    assert event["ssl_history"] == "CsiI"
    assert event["established"] is True


def test_hello_retry_request():
    ch1 = client_hello([0x1302], ext(43, vec8(u16(0x0304))))
    hrr = server_hello(0x1302, ext(43, u16(0x0304)) + ext(51, u16(23)), random=HRR_RANDOM)
    ch2 = client_hello([0x1302], ext(43, vec8(u16(0x0304))))
    sh = server_hello(0x1302, ext(43, u16(0x0304)) + ext(51, u16(23) + vec16(bytes(65))))
    client = [record(22, ch1), record(20, b"\x01") + record(22, ch2), record(23, bytes(60))]
    server = [record(22, hrr) + record(20, b"\x01"), record(22, sh) + record(23, bytes(500))]
    event = only_event(run(client, server, order="cscsc"))
    assert event["ssl_history"] == "CjiICs"
    assert event["established"] is True
    assert event["curve"] == "secp256r1"
    assert event["ja3s_full"] == "771,4866,43-51"


def test_draft_version_named_as_zeek_names_it():
    sh = server_hello(0x1302, ext(43, u16(0x7F1C)))
    event = only_event(run([record(22, client_hello([0x1302]))], [record(22, sh)]))
    assert event["version"] == "TLSv13-draft28"


def test_alert_is_last_alert():
    ch = client_hello([0xC02F])
    event = only_event(run([record(22, ch)], [record(21, b"\x02\x28")]))
    assert event["last_alert"] == "handshake_failure"
    assert event["ssl_history"] == "Cl"
    assert event["established"] is False


def test_ech_is_flagged_and_outer_sni_kept():
    ch = client_hello([0x1301], sni_ext("public.example") + ext(0xFE0D, bytes(40)))
    event = only_event(run([record(22, ch)], []))
    assert event["ech"] is True and event["server_name"] == "public.example"


def test_sslv2_compatible_client_hello():
    specs = bytes.fromhex("00002f" "000035" "010080")
    body = u8(1) + u16(0x0301) + u16(len(specs)) + u16(0) + u16(16) + specs + bytes(16)
    hello = bytes((0x80 | (len(body) >> 8), len(body) & 0xFF)) + body
    server = [record(22, server_hello(0x002F, version=0x0301))]
    event = only_event(run([hello], server))
    assert event["ssl_history"] == "Cs"
    assert event["client_version"] == "TLSv10"
    assert event["version"] == "TLSv10"
    assert event["ja3"] is None  # JA3 is defined for TLS ClientHellos only
    assert event["client_ciphers"] == ["0x00002f", "0x000035", "0x010080"]


def test_gap_stops_parsing_and_reports_at_end():
    ctx = Context()
    parser = TlsAnalyzer(ctx)
    parser.data(True, record(22, client_hello([0x1301], sni_ext("gap.example"))), 1.0)
    parser.gap(False, 1000, 1.1)
    parser.data(False, record(22, server_hello(0x1301)), 1.2)
    assert ctx.events == []
    parser.end(2.0)
    event = only_event(ctx)
    assert event["server_name"] == "gap.example" and event["version"] is None


def test_not_tls_is_a_violation_without_event():
    ctx = Context()
    TlsAnalyzer(ctx).data(True, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1.0)
    assert ctx.violations and ctx.events == []


def test_malformed_client_hello_is_a_violation_that_reports_what_was_seen():
    bad = handshake(1, u16(0x0303) + bytes(32) + vec8(b"") + u16(7) + b"\x13\x01")
    ctx = run([record(22, bad)], [])
    assert ctx.violations


# -- bad input never raises -----------------------------------------------------------------------


def test_truncation_at_every_offset_never_raises():
    client, server, _ = tls12_flight()
    stream_c, stream_s = b"".join(client), b"".join(server)
    for cut in range(0, len(stream_c) + 1, 3):
        ctx = Context()
        parser = TlsAnalyzer(ctx)
        parser.data(True, stream_c[:cut], 1.0)
        parser.data(False, stream_s[: cut * 2], 1.1)
        parser.end(2.0)
        assert len(ctx.events) <= 1


def test_truncated_hello_bodies_raise_only_the_errors_the_parser_catches():
    body = REAL_CLIENT_HELLO[9:]
    for cut in range(len(body)):
        with contextlib.suppress(ValueError, IndexError, struct.error):
            parse_client_hello(body[:cut])
        with contextlib.suppress(ValueError, IndexError, struct.error):
            parse_server_hello(body[:cut])


def test_random_corruption_never_raises():
    client, server, _ = tls12_flight()
    rng = random.Random(7)
    base_c, base_s = bytearray(b"".join(client)), bytearray(b"".join(server))
    for _ in range(300):
        c, s = bytearray(base_c), bytearray(base_s)
        for buf in (c, s):
            for _ in range(rng.randint(1, 6)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
        ctx = Context()
        parser = TlsAnalyzer(ctx)
        parser.data(True, bytes(c), 1.0)
        parser.data(False, bytes(s), 1.1)
        parser.end(2.0)
        assert len(ctx.events) <= 1


def test_sslv2_server_hello_and_client_master_key_establish():
    specs = bytes.fromhex("010080")
    body = u8(1) + u16(0x0002) + u16(3) + u16(0) + u16(16) + specs + bytes(16)
    client_hello_v2 = bytes((0x80 | (len(body) >> 8), len(body) & 0xFF)) + body
    cert = make_certificate("old.example.com")
    sh_body = u8(4) + u8(0) + u8(1) + u16(0x0002) + u16(len(cert)) + u16(3) + u16(16) + cert + specs + bytes(16)
    server_hello_v2 = bytes((0x80 | (len(sh_body) >> 8), len(sh_body) & 0xFF)) + sh_body
    cmk_body = u8(2) + specs + u16(0) + u16(8) + u16(0) + bytes(8)
    master_key = bytes((0x80, len(cmk_body))) + cmk_body
    event = only_event(run([client_hello_v2, master_key], [server_hello_v2], order="csc"))
    assert event["version"] == "SSLv2"
    assert event["cipher"] == "SSLv20_CK_RC4_128_WITH_MD5"
    assert event["ssl_history"] == "Cs"
    assert event["established"] is True
    assert len(event["cert_chain_fps"]) == 1

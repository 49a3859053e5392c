"""Kerberos parser: message decoding, Zeek's pairing, TCP framing, SPNEGO AP-REQ, bad input."""

from __future__ import annotations

import calendar
import contextlib
import random

import pytest

from protocols import der
from protocols.events.base import as_json_object
from protocols.kerberos import (
    GssKerberos,
    KerberosAnalyzer,
    ap_exchange_event,
    parse_ap_reply,
    parse_ap_req,
)
from protocols.kerberos_messages import KdcRequest, KrbError, decode_message
from tests.protocols.krb_builders import (
    ap_rep,
    ap_req,
    as_req,
    gss,
    kdc_rep,
    krb_error,
    tcp_framed,
    tgs_req,
)
from tests.protocols.tls_builders import Context

# A real MIT kinit AS-REQ and the KDC's NEEDED_PREAUTH answer (../shared/pcaps/kerberos.pcap).
REAL_AS_REQ = bytes.fromhex(
    "6a81ad3081aaa103020105a20302010aa31a3018300aa10402020096a2020400300aa10402020095a2020400a4818130"
    "7fa00703050000000010a1123010a003020101a10930071b05616c696365a20a1b0841434d452e4c414ea31d301ba003"
    "020102a11430121b066b72627467741b0841434d452e4c414ea511180f32303236313133303136353930355aa7060204"
    "6115e360a81a301802011202011102011402011302011002011702011902011a"
)
REAL_PREAUTH_ERROR = bytes.fromhex(
    "7e81da3081d7a003020105a10302011ea411180f32303236313132393136353930355aa50502030eb512a603020119a7"
    "0a1b0841434d452e4c414ea8123010a003020101a10930071b05616c696365a90a1b0841434d452e4c414eaa1d301ba0"
    "03020102a11430121b066b72627467741b0841434d452e4c414eab101b0e4e45454445445f50524541555448ac4f044d"
    "304b300aa10402020088a20204003023a103020113a21c041a30183016a003020112a10f1b0d41434d452e4c414e616c"
    "6963653009a103020102a2020400300da10402020085a20504034d4954"
)


def udp_exchange(*messages: tuple[bool, bytes]) -> Context:
    ctx = Context("udp")
    parser = KerberosAnalyzer(ctx)
    ts = 100.0
    for is_orig, message in messages:
        ts += 0.01
        parser.data(is_orig, message, ts)
    parser.end(ts + 1)
    return ctx


def events(ctx: Context) -> list[dict]:
    return [as_json_object(e) for e in ctx.events]


# -- decoding -------------------------------------------------------------------------------------


def test_real_as_req_decodes():
    msg = decode_message(REAL_AS_REQ)
    assert isinstance(msg, KdcRequest)
    assert msg.client == "alice" and msg.realm == "ACME.LAN" and msg.service == "krbtgt/ACME.LAN"
    assert msg.etypes == (18, 17, 20, 19, 16, 23, 25, 26)
    assert msg.padata_types == (150, 149)
    assert msg.till == calendar.timegm((2026, 11, 30, 16, 59, 5))  # "20261130165905Z"
    assert msg.forwardable is False and msg.renewable is False


def test_real_preauth_error_decodes():
    msg = decode_message(REAL_PREAUTH_ERROR)
    assert isinstance(msg, KrbError)
    assert (msg.error_code, msg.error_text, msg.client, msg.service) == (25, "NEEDED_PREAUTH", "alice", "krbtgt/ACME.LAN")


def test_kerberos_time_and_options():
    msg = decode_message(as_req("bob", "EX.ORG", from_="20150120000000Z", till="20150120010203Z"))
    assert msg.from_ == 1421712000.0
    assert msg.till == 1421712000.0 + 3723
    assert msg.forwardable is True and msg.renewable is True


# -- pairing as Zeek pairs ------------------------------------------------------------------------


def test_as_exchange_is_one_event_with_zeeks_fields():
    ctx = udp_exchange((True, as_req("alice", "EX.ORG", pa=((2, b"x"),))), (False, kdc_rep(11, "EX.ORG", "alice", ("krbtgt", "EX.ORG"), 18)))
    (event,) = events(ctx)
    assert event["request_type"] == "AS"
    assert event["client"] == "alice/EX.ORG"
    assert event["service"] == "krbtgt/EX.ORG"
    assert event["success"] is True
    assert event["cipher"] == "aes256-cts-hmac-sha1-96"
    assert event["till"] == 2136422885.0
    assert event["forwardable"] is True and event["renewable"] is True
    assert event["req_ciphers"] == ["aes256-cts-hmac-sha1-96", "aes128-cts-hmac-sha1-96", "rc4-hmac"]
    assert event["req_padata"] == [2]
    assert event["ts"] == pytest.approx(100.01)
    assert ctx.confirmed == ["krb"]


def test_needed_preauth_error_is_dropped_as_zeek_drops_it():
    assert events(udp_exchange((True, REAL_AS_REQ), (False, REAL_PREAUTH_ERROR))) == []


def test_error_without_text_gets_zeeks_error_name():
    ctx = udp_exchange((True, as_req("adm", "T.LOCAL")), (False, krb_error(25, "T.LOCAL", ("krbtgt", "T.LOCAL"))))
    (event,) = events(ctx)
    assert event["success"] is False
    assert event["error_code"] == 25
    assert event["error_msg"] == "KDC_ERR_PREAUTH_REQUIRED"


def test_error_with_text_keeps_the_text():
    ctx = udp_exchange((True, as_req("eve", "T.LOCAL")), (False, krb_error(6, "T.LOCAL", ("krbtgt", "T.LOCAL"), "CLIENT_NOT_FOUND", cname="eve")))
    (event,) = events(ctx)
    assert event["error_msg"] == "CLIENT_NOT_FOUND" and event["client"] == "eve/T.LOCAL"


def test_tgs_exchange_takes_client_from_reply_and_ignores_padata_ap_req():
    ctx = udp_exchange(
        (True, tgs_req("EX.ORG", ("cifs", "fs1.ex.org"))),
        (False, kdc_rep(13, "EX.ORG", "alice", ("cifs", "fs1.ex.org"), 23)),
    )
    (event,) = events(ctx)
    assert event["request_type"] == "TGS"
    assert event["client"] == "alice/EX.ORG"
    assert event["service"] == "cifs/fs1.ex.org"
    assert event["cipher"] == "rc4-hmac"
    assert event["req_padata"] == [1]


def test_request_without_reply_is_reported_at_the_end():
    (event,) = events(udp_exchange((True, as_req("lonely", "EX.ORG"))))
    assert event["request_type"] == "AS" and event["success"] is None


def test_reply_without_request_is_still_reported():
    (event,) = events(udp_exchange((False, kdc_rep(13, "EX.ORG", "svc$", ("HTTP", "w.ex.org"), 23))))
    assert event["request_type"] is None and event["client"] == "svc$/EX.ORG" and event["success"] is True


def test_a_second_exchange_on_the_same_flow_is_its_own_event():
    ctx = udp_exchange(
        (True, as_req("a", "EX.ORG")),
        (False, kdc_rep(11, "EX.ORG", "a", ("krbtgt", "EX.ORG"), 18)),
        (True, as_req("b", "EX.ORG")),
        (False, kdc_rep(11, "EX.ORG", "b", ("krbtgt", "EX.ORG"), 18)),
    )
    assert [e["client"] for e in events(ctx)] == ["a/EX.ORG", "b/EX.ORG"]


# -- TCP framing ----------------------------------------------------------------------------------


def tcp_run(client: bytes, server: bytes, cut: int | None = None) -> Context:
    ctx = Context("tcp")
    parser = KerberosAnalyzer(ctx)
    if cut is None:
        parser.data(True, client, 1.0)
    else:
        parser.data(True, client[:cut], 1.0)
        parser.data(True, client[cut:], 1.1)
    parser.data(False, server, 1.2)
    parser.end(2.0)
    return ctx


def test_tcp_messages_split_at_every_offset():
    request = tcp_framed(as_req("split", "EX.ORG", etypes=tuple(range(1, 30))))
    reply = tcp_framed(kdc_rep(11, "EX.ORG", "split", ("krbtgt", "EX.ORG"), 17))
    for cut in range(1, len(request)):
        ctx = tcp_run(request, reply, cut)
        (event,) = events(ctx)
        assert event["client"] == "split/EX.ORG" and event["success"] is True, cut
    assert ctx.confirmed == ["krb_tcp"]


def test_tcp_two_messages_in_one_segment():
    both = tcp_framed(as_req("a", "EX.ORG")) + tcp_framed(as_req("a", "EX.ORG", etypes=(23,)))
    (event,) = events(tcp_run(both, tcp_framed(kdc_rep(11, "EX.ORG", "a", ("krbtgt", "EX.ORG"), 23))))
    assert event["req_ciphers"] == ["rc4-hmac"]  # the later request's fields, as Zeek overwrites


def test_tcp_gap_stops_but_keeps_the_pending_request():
    ctx = Context("tcp")
    parser = KerberosAnalyzer(ctx)
    parser.data(True, tcp_framed(as_req("g", "EX.ORG")), 1.0)
    parser.gap(False, 500, 1.1)
    parser.data(False, tcp_framed(kdc_rep(11, "EX.ORG", "g", ("krbtgt", "EX.ORG"), 18)), 1.2)
    parser.end(2.0)
    (event,) = events(ctx)
    assert event["client"] == "g/EX.ORG" and event["success"] is None


def test_oversized_tcp_record_is_a_violation():
    ctx = Context("tcp")
    KerberosAnalyzer(ctx).data(True, b"\x7f\xff\xff\xff" + bytes(20), 1.0)
    assert ctx.violations


def test_not_kerberos_is_a_violation():
    ctx = udp_exchange((True, b"\x00\x01 this is not DER"))
    assert ctx.violations and ctx.events == []


# -- Kerberos in SPNEGO / GSS-API -----------------------------------------------------------------


def test_parse_ap_req_wrapped_and_bare():
    message = ap_req("SRT-AD.LOCAL", ("cifs", "DC1"), 18)
    for token in (message, gss(0x0100, message)):
        request = parse_ap_req(token)
        assert request is not None
        assert (request.realm, request.service, request.cipher, request.mutual_required) == ("SRT-AD.LOCAL", "cifs/DC1", 18, True)


def test_parse_ap_req_refuses_other_tokens():
    assert parse_ap_req(b"NTLMSSP\x00\x01\x00\x00\x00") is None
    assert parse_ap_req(gss(0x0200, ap_rep())) is None
    assert parse_ap_req(gss(0x0100, ap_req("R", ("s",), 18), oid=bytes.fromhex("06062b0601050502"))) is None
    assert parse_ap_req(b"") is None


def test_ap_exchange_event_as_zeek_logs_it():
    request = parse_ap_req(gss(0x0100, ap_req("SRT-AD.LOCAL", ("cifs", "DC1"), 18)))
    reply = parse_ap_reply(gss(0x0200, ap_rep()))
    event = as_json_object(ap_exchange_event("Cuid", Context().id, 5.0, request, reply))
    assert event["request_type"] == "AP"
    assert event["client"] == "/SRT-AD.LOCAL"
    assert event["service"] == "cifs/DC1"
    assert event["cipher"] == "aes256-cts-hmac-sha1-96"
    assert event["success"] is True
    assert event["forwardable"] is None


def test_ap_reply_error_marks_failure():
    request = parse_ap_req(ap_req("R.ORG", ("HTTP", "w"), 23))
    reply = parse_ap_reply(gss(0x0300, krb_error(37, "R.ORG", ("HTTP", "w"))))
    event = as_json_object(ap_exchange_event("C", Context().id, 1.0, request, reply))
    assert event["success"] is False and event["error_msg"] == "KRB_AP_ERR_SKEW"
    unanswered = as_json_object(ap_exchange_event("C", Context().id, 1.0, request))
    assert unanswered["success"] is None


# -- bad input never raises -----------------------------------------------------------------------


def test_truncation_at_every_offset_never_raises():
    for message in (REAL_AS_REQ, REAL_PREAUTH_ERROR, kdc_rep(13, "EX.ORG", "a", ("cifs", "x"), 23), gss(0x0100, ap_req("R", ("s", "h"), 18))):
        for cut in range(len(message)):
            ctx = udp_exchange((True, message[:cut]))
            assert len(ctx.events) <= 1
            tcp = Context("tcp")
            parser = KerberosAnalyzer(tcp)
            parser.data(True, tcp_framed(message)[: cut + 4], 1.0)
            parser.end(2.0)
            assert parse_ap_req(message[:cut]) is None or cut == len(message)
            assert parse_ap_reply(message[:cut]) is None or cut == len(message)


def test_decoder_raises_only_what_the_parser_catches():
    rng = random.Random(3)
    base = bytearray(REAL_AS_REQ)
    for _ in range(2000):
        buf = bytearray(base)
        for _ in range(rng.randint(1, 5)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        with contextlib.suppress(ValueError, IndexError):
            decode_message(bytes(buf))


def test_der_reader_rejects_overruns():
    with pytest.raises(ValueError):
        der.tlv(b"\x30\x05\x02\x01", 0, 4)
    with pytest.raises(ValueError):
        der.tlv(b"\x30\x85\x00\x00\x00\x00\x01", 0, 7)


def test_gss_kerberos_pairs_ap_exchanges_of_a_carrier_flow():
    ctx = Context()
    tracker = GssKerberos(ctx)
    assert tracker.token(ap_req("SRT-AD.LOCAL", ("cifs", "DC1"), 18), True, 10.0)  # bare, as SPNEGO unwrapping gives
    assert ctx.events == []
    assert tracker.token(gss(0x0200, ap_rep()), False, 10.5)
    (event,) = events(ctx)
    assert (event["request_type"], event["client"], event["success"], event["ts"]) == ("AP", "/SRT-AD.LOCAL", True, 10.0)
    assert not tracker.token(b"NTLMSSP\x00", True, 11.0)
    tracker.token(gss(0x0100, ap_req("X.ORG", ("HTTP", "w"), 23)), True, 12.0)
    tracker.end(13.0)
    assert [e["cipher"] for e in events(ctx)] == ["aes256-cts-hmac-sha1-96", "rc4-hmac"]
    assert events(ctx)[1]["success"] is None


def test_gss_kerberos_error_answer_and_answer_without_request():
    ctx = Context()
    tracker = GssKerberos(ctx)
    tracker.token(ap_req("R.ORG", ("cifs", "f"), 18), True, 1.0)
    tracker.token(krb_error(41, "R.ORG", ("cifs", "f")), False, 1.1)
    tracker.token(ap_rep(), False, 2.0)
    tracker.end(3.0)
    first, second = events(ctx)
    assert first["success"] is False and first["error_msg"] == "KRB_AP_ERR_MODIFIED"
    assert second["request_type"] is None and second["success"] is True

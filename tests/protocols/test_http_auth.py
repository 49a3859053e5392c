"""NTLM and Kerberos carried in HTTP headers become ``ntlm`` and ``kerberos`` events."""

from __future__ import annotations

import base64

import protocols.http_auth  # noqa: F401  (registers the NTLM/Negotiate/Kerberos token parser)
from protocols.http import HttpAnalyzer
from tests.protocols import krb_builders as krb
from tests.protocols.recording_ctx import RecordingContext
from tests.protocols.smb_wire import KRB5_OID, ntlm_auth, ntlm_challenge, ntlm_negotiate, spnego_init, spnego_resp


def b64(token: bytes) -> bytes:
    return base64.b64encode(token)


def request(header: bytes) -> bytes:
    return b"GET /secret HTTP/1.1\r\nHost: intranet\r\n" + header + b"\r\n\r\n"


def response(status: bytes, header: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status + b"\r\n" + (header + b"\r\n" if header else b"") + b"Content-Length: 0\r\n\r\n"


def run(*messages: tuple[bool, bytes]) -> RecordingContext:
    ctx = RecordingContext(proto="tcp", resp=("10.0.0.1", 80))
    analyzer = HttpAnalyzer(ctx)
    for i, (is_orig, data) in enumerate(messages):
        analyzer.data(is_orig, data, 1.0 + i / 10)
    analyzer.end(5.0)
    return ctx


def of(ctx: RecordingContext, kind: str) -> list[dict]:
    return [e for e in ctx.exported() if e["kind"] == kind]


def ntlm_handshake(final_status: bytes, scheme: bytes = b"NTLM", wrap=lambda t: t) -> RecordingContext:
    return run(
        (True, request(b"Authorization: " + scheme + b" " + b64(wrap(ntlm_negotiate())))),
        (False, response(b"401 Unauthorized", b"WWW-Authenticate: " + scheme + b" " + b64(wrap(ntlm_challenge()))))
        , (True, request(b"Authorization: " + scheme + b" " + b64(wrap(ntlm_auth("alice", "ACME", "DESKTOP-1"))))),
        (False, response(final_status)),
    )


def test_ntlm_over_http_is_one_exchange_with_the_server_verdict() -> None:
    ctx = ntlm_handshake(b"200 OK")
    [event] = of(ctx, "ntlm")
    assert (event["username"], event["domainname"], event["hostname"]) == ("alice", "ACME", "DESKTOP-1")
    assert (event["server_nb_computer_name"], event["server_dns_computer_name"]) == ("FILESRV01", "filesrv01.acme.local")
    assert (event["success"], event["status"], event["transport"]) == (True, "HTTP 200", "http")
    assert event["ts"] == 1.0  # the NEGOTIATE, as Zeek stamps an exchange
    assert len(of(ctx, "http")) == 2


def test_refused_credentials_are_a_failed_exchange() -> None:
    [event] = of(ntlm_handshake(b"401 Unauthorized"), "ntlm")
    assert (event["username"], event["success"], event["status"]) == ("alice", False, "HTTP 401")


def test_negotiate_wrapping_ntlmssp_in_spnego() -> None:
    ctx = run(
        (True, request(b"Authorization: Negotiate " + b64(spnego_init(ntlm_negotiate())))),
        (False, response(b"401 Unauthorized", b"WWW-Authenticate: Negotiate " + b64(spnego_resp(ntlm_challenge(), 1)))),
        (True, request(b"Authorization: Negotiate " + b64(spnego_resp(ntlm_auth("bob", "CORP", "PC7"), 1)))),
        (False, response(b"200 OK", b"WWW-Authenticate: Negotiate " + b64(spnego_resp(None, 0)))),
    )
    [event] = of(ctx, "ntlm")
    assert (event["username"], event["domainname"], event["success"]) == ("bob", "CORP", True)


def test_negotiate_kerberos_ap_exchange() -> None:
    ap_req = krb.gss(0x0100, krb.ap_req("ACME.LOCAL", ("HTTP", "intranet.acme.local"), 18))
    ap_rep = krb.gss(0x0200, krb.ap_rep())
    ctx = run(
        (True, request(b"Authorization: Negotiate " + b64(spnego_init(ap_req, KRB5_OID)))),
        (False, response(b"200 OK", b"WWW-Authenticate: Negotiate " + b64(spnego_resp(ap_rep, 0)))),
    )
    [event] = of(ctx, "kerberos")
    assert (event["request_type"], event["service"], event["success"]) == ("AP", "HTTP/intranet.acme.local", True)
    assert event["cipher"] == "aes256-cts-hmac-sha1-96" and event["ts"] == 1.0
    assert of(ctx, "ntlm") == []


def test_an_unanswered_ap_req_and_a_pending_ntlm_exchange_are_reported_at_the_end() -> None:
    ap_req = krb.gss(0x0100, krb.ap_req("ACME.LOCAL", ("HTTP", "web"), 23))
    ctx = run((True, request(b"Authorization: Kerberos " + b64(ap_req))))
    [event] = of(ctx, "kerberos")
    assert event["success"] is None and event["cipher"] == "rc4-hmac"
    ctx = run((True, request(b"Authorization: NTLM " + b64(ntlm_negotiate()))))
    [event] = of(ctx, "ntlm")
    assert event["success"] is None and event["username"] is None


def test_garbage_tokens_are_counted_not_raised() -> None:
    ctx = run(
        (True, request(b"Authorization: NTLM !!!notbase64")),
        (True, request(b"Authorization: NTLM " + b64(b"NTLMSSP\x00\x07\x00\x00\x00"))),
        (True, request(b"Authorization: Negotiate " + b64(b"\x60\x80\xff"))),
    )
    assert {"ntlm_unknown_message_type", "spnego_malformed"} <= set(ctx.weird_names())
    assert len(of(ctx, "http")) == 3

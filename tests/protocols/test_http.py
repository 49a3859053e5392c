"""HTTP/1.x parser on bytes: Zeek's http.log fields, pipelining, bodies, interim replies, gaps."""

from __future__ import annotations

import base64
import gzip
import random

from protocols import http as http_module
from protocols.http import MAX_HEADER_BYTES, HttpAnalyzer, register_auth_parser, unescape_uri
from tests.protocols.recording_ctx import RecordingContext

GET = b"GET /index.html HTTP/1.1\r\nHost: www.example.com:8080\r\nUser-Agent: curl/7.88.1\r\nReferer: http://r/\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 22\r\n\r\n<html><body>hi!</body>"


def flow(*steps) -> RecordingContext:
    """Run (is_orig, bytes) / ("gap", is_orig, n) steps through one analyzer, then end it."""
    ctx = RecordingContext(proto="tcp", resp=("10.0.0.1", 80))
    analyzer = HttpAnalyzer(ctx)
    ts = 1.0
    for step in steps:
        ts += 0.01
        if step[0] == "gap":
            analyzer.gap(step[1], step[2], ts)
        else:
            analyzer.data(step[0], step[1], ts)
    analyzer.end(ts + 1)
    return ctx


def test_get_and_response_make_one_zeek_http_record():
    ctx = flow((True, GET), (False, OK))
    [event] = ctx.exported()
    assert event["kind"] == "http" and event["trans_depth"] == 1
    assert (event["method"], event["uri"], event["host"]) == ("GET", "/index.html", "www.example.com:8080")
    assert event["user_agent"] == "curl/7.88.1" and event["referrer"] == "http://r/"
    assert (event["status_code"], event["status_msg"], event["version"]) == (200, "OK", "1.1")
    assert event["request_body_len"] == 0 and event["response_body_len"] == 22
    assert event["response_content_length"] == 22 and event["response_content_type"] == "text/html"
    assert event["resp_mime_types"] == ["text/html"] and event["tags"] == []
    assert ctx.confirmed == ["http"] and not ctx.weirds


def test_pipelined_requests_pair_in_order():
    requests = b"".join(f"GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n".encode() for i in range(3))
    bodies = [b"a" * 5, b"b" * 7, b"c" * 9]
    responses = b"".join(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies)
    ctx = flow((True, requests), (False, responses))
    events = ctx.exported()
    assert [(e["trans_depth"], e["uri"], e["response_body_len"]) for e in events] == [(1, "/0", 5), (2, "/1", 7), (3, "/2", 9)]


def test_chunked_body_split_at_every_byte():
    body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1a\r\n" + b"z" * 26 + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    ctx = RecordingContext(proto="tcp")
    analyzer = HttpAnalyzer(ctx)
    analyzer.data(True, GET, 1.0)
    for i in range(len(body)):
        analyzer.data(False, body[i : i + 1], 2.0)
    [event] = ctx.exported()  # logged when the last chunk and trailers are in, before end()
    assert event["response_body_len"] == 31 and event["response_transfer_encoding"] == "chunked"
    analyzer.data(True, GET, 3.0)
    analyzer.data(False, OK, 3.5)
    assert len(ctx.events) == 2 and ctx.events[1].trans_depth == 2


def test_continue_is_interim_and_final_status_is_logged():
    request = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    ctx = flow(
        (True, request),
        (False, b"HTTP/1.1 100 Continue\r\n\r\n"),
        (True, b"data"),
        (False, b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
    )
    [event] = ctx.exported()
    assert (event["info_code"], event["info_msg"]) == (100, "Continue")
    assert (event["status_code"], event["status_msg"]) == (201, "Created")
    assert event["interim_statuses"] == [100] and event["request_body_len"] == 4
    assert event["request_content_length"] == 4 and event["response_body_len"] == 2


def test_head_204_and_304_have_no_body():
    ctx = flow(
        (True, b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\n\r\n"),
        (False, b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"
                b"HTTP/1.1 204 No Content\r\n\r\n"),
    )
    events = ctx.exported()
    assert [(e["uri"], e["status_code"], e["response_body_len"]) for e in events] == [
        ("/a", 200, 0), ("/b", 304, 0), ("/c", 204, 0)
    ]
    assert events[0]["response_content_length"] == 999


def test_body_until_close_is_counted_at_the_end():
    ctx = flow((True, GET), (False, b"HTTP/1.0 200 OK\r\n\r\nsome text that runs"), (False, b" to the close"))
    [event] = ctx.exported()
    assert event["response_body_len"] == len(b"some text that runs to the close")
    assert event["version"] == "1.0" and event["resp_mime_types"] == ["text/plain"]


def test_gzip_body_length_is_decoded_length():
    plain = b"body { color: red; }\n" * 100
    packed = gzip.compress(plain)
    response = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed) + packed
    ctx = flow((True, GET), (False, response[:100]), (False, response[100:]))
    [event] = ctx.exported()
    assert event["response_body_len"] == len(plain) and event["response_content_length"] == len(packed)
    assert event["resp_mime_types"] == ["text/plain"]


def test_corrupt_gzip_is_a_weird_and_stops_counting():
    response = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n\r\n" + b"not gzip!!"
    ctx = flow((True, GET), (False, response))
    assert "inflate_failed" in ctx.weird_names()
    assert ctx.events[0].response_body_len == 0


def test_gap_inside_a_body_is_counted_and_parsing_goes_on():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 70\r\n\r\n"
    ctx = flow(
        (True, GET + GET),
        (False, head + b"x" * 20), ("gap", False, 30), (False, b"y" * 20 + OK),
    )
    events = ctx.exported()
    assert [e["response_body_len"] for e in events] == [70, 22]
    assert "HTTP_content_gap" in ctx.weird_names()


def test_gap_in_headers_resynchronises_at_the_next_request_line():
    ctx = flow(
        (True, b"GET /lost HTTP/1.1\r\nHo"), ("gap", True, 40), (True, b"ding: x\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n"),
        (False, OK + OK),
    )
    assert "HTTP_resynchronized" in ctx.weird_names()
    assert [e.uri for e in ctx.events if e.uri] == ["/next"]


def test_endless_header_line_is_a_weird_and_memory_stays_bounded():
    ctx = RecordingContext(proto="tcp")
    analyzer = HttpAnalyzer(ctx)
    analyzer.data(True, b"GET / HTTP/1.1\r\nX-Long: ", 1.0)
    for _ in range(40):
        analyzer.data(True, b"a" * 4096, 1.0)
    assert "HTTP_header_too_long" in ctx.weird_names()
    assert len(analyzer._sides[True].buf) <= MAX_HEADER_BYTES
    analyzer.data(True, b"\r\n\r\nGET /after HTTP/1.1\r\nHost: h\r\n\r\n", 2.0)
    analyzer.end(3.0)
    assert [e.uri for e in ctx.events] == ["/after"]


def test_request_without_response_is_logged_at_the_end():
    ctx = flow((True, GET))
    [event] = ctx.exported()
    assert event["status_code"] is None and event["method"] == "GET"


def test_response_without_request_gets_its_own_record():
    ctx = flow((False, OK))
    [event] = ctx.exported()
    assert event["method"] is None and event["status_code"] == 200 and event["trans_depth"] == 1


def test_not_http_is_a_violation():
    ctx = flow((True, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"))
    assert ctx.violations == ["bad_HTTP_request"] and not ctx.events


def test_upgrade_stops_parsing():
    ctx = flow(
        (True, b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"),
        (False, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
        (True, b"\x81\x85garbage that is not HTTP\r\n\r\n"),
    )
    [event] = ctx.exported()
    assert event["status_code"] == 101 and not ctx.weirds and not ctx.violations


def test_basic_auth_username_and_proxy_headers():
    creds = base64.b64encode(b"alice:secret")
    request = b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic " + creds + b"\r\nX-Forwarded-For: 1.2.3.4\r\nVia: 1.1 proxy\r\n\r\n"
    [event] = flow((True, request), (False, OK)).exported()
    assert event["username"] == "alice"
    assert event["proxied"] == ["VIA -> 1.1 proxy", "X-FORWARDED-FOR -> 1.2.3.4"]


def test_ntlm_and_negotiate_tokens_reach_one_registered_parser_per_flow(monkeypatch):
    seen = []

    class Recorder:
        def __init__(self, ctx):
            self.ctx = ctx
            seen.append("new")

        def token(self, is_orig, token, ts):
            seen.append((is_orig, token[:8]))

        def response(self, status_code, ts):
            seen.append(status_code)

        def end(self, ts):
            seen.append("end")

    monkeypatch.setattr(http_module, "AUTH_PARSERS", {})
    register_auth_parser("ntlm", Recorder)
    register_auth_parser("negotiate", Recorder)
    negotiate = base64.b64encode(b"NTLMSSP\x00\x01\x00\x00\x00rest")
    challenge = base64.b64encode(b"NTLMSSP\x00\x02\x00\x00\x00rest")
    spnego = base64.b64encode(b"\x60\x28\x06\x06\x2b\x06\x01\x05\x05\x02")
    flow(
        (True, b"GET / HTTP/1.1\r\nAuthorization: NTLM " + negotiate + b"\r\n\r\n"),
        (False, b"HTTP/1.1 100 Continue\r\n\r\n"),
        (False, b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM " + challenge + b"\r\nContent-Length: 0\r\n\r\n"),
        (True, b"GET / HTTP/1.1\r\nAuthorization: Negotiate " + spnego + b"\r\n\r\n"),
        (False, OK),
    )
    # one parser for the flow: tokens in order, each final response after its own token, then the end
    assert seen == ["new", (True, b"NTLMSSP\x00"), (False, b"NTLMSSP\x00"), 401,
                    (True, b"\x60\x28\x06\x06\x2b\x06\x01\x05"), 200, "end"]


def test_unescape_uri_follows_zeek():
    assert unescape_uri(b"/a%20b%2Fc") == ("/a b/c", False)
    assert unescape_uri(b"/100%") == ("/100%", True)
    assert unescape_uri(b"/%e9t%e9") == ("/\\xe9t\\xe9", False)


def test_truncated_and_random_streams_never_raise():
    stream = GET + b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    reply = OK + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    for cut in range(0, len(stream), 3):
        flow((True, stream[:cut]), (False, reply[: cut % len(reply)]))
    rng = random.Random(99)
    for _ in range(500):
        blob = bytes(rng.choice(b"GET /HTP1.\r\n:0123456789abcdefx ") for _ in range(rng.randrange(0, 200)))
        flow((True, GET + blob), ("gap", True, rng.randrange(1, 30)), (True, blob), (False, blob))


def test_http09_request_and_statusless_response():
    ctx = flow((True, b"GET /bad.html\r\n"), (False, b"<html><head><title>Bad!</title></head></html>\n"))
    [event] = ctx.exported()
    assert (event["method"], event["uri"], event["request_version"]) == ("GET", "/bad.html", "0.9")
    assert event["status_code"] is None and event["version"] == "0.9"
    assert event["response_body_len"] == 46 and event["resp_mime_types"] == ["text/html"]
    assert not ctx.violations

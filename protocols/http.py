"""HTTP/1.x: request/response framing per direction, Zeek's transaction pairing, ``http`` events.

Each direction is a small state machine over the in-order byte stream: a header block
(start line and headers, bounded in size), then a body framed by Content-Length, by
chunked transfer coding, or by the end of the connection (responses only); responses to
HEAD and 1xx/204/304 responses have none. Keep-alive and pipelining follow from parsing
message after message. Pairing is Zeek's (``base/protocols/http/main.zeek``): request
*n* goes with the *n*-th final response, 1xx responses are interim and stay on the same
transaction, and transactions still open when the flow ends are logged then.

Gaps: bytes lost inside a body of known length are counted into the body and parsing
goes on; any other gap ends the message in progress and the direction resynchronises at
the next request line (client) or status line (server). Both are weirds.

Authorization/WWW-Authenticate headers with NTLM, Negotiate or Kerberos tokens are
decoded and handed to :meth:`HttpAnalyzer._auth_token`, which dispatches them to the
parsers registered with :func:`register_auth_parser` (:mod:`protocols.http_auth` registers
the NTLM and SPNEGO/Kerberos one); each final response gives them the server's verdict,
and the end of the flow ends them.
"""

from __future__ import annotations

import binascii
import re
import zlib
from collections import deque
from typing import Callable, Protocol

from protocols.analyzer import Analyzer, FlowContext, register
from protocols.events.http import Http
from protocols.mime_sniff import SNIFF_BYTES, sniff
from protocols.zeek_text import printable

#: a header block (start line + headers) longer than this is not HTTP we can follow
MAX_HEADER_BYTES = 65536
#: a chunk-size or trailer line longer than this is malformed
MAX_LINE_BYTES = 4096
#: Zeek's max_pending_requests: past this many unanswered requests, flush them
MAX_PENDING_REQUESTS = 100
#: stop decoding a compressed body once this many decoded bytes were counted
MAX_DECODED_BODY = 64 * 1024 * 1024

# direction states
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _RESYNC, _DEAD = range(9)

_KNOWN_METHODS = frozenset(
    {"GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "CONNECT", "PROPFIND",
     "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "POLL", "REPORT", "SUBSCRIBE",
     "BMOVE", "SEARCH"}
)
_PROXY_HEADERS = frozenset(
    {"FORWARDED", "X-FORWARDED-FOR", "X-FORWARDED-FROM", "CLIENT-IP", "VIA",
     "XROXY-CONNECTION", "PROXY-CONNECTION"}
)
_AUTH_SCHEMES = {b"ntlm": "ntlm", b"negotiate": "negotiate", b"kerberos": "kerberos"}

_REQUEST_LINE = re.compile(rb"([A-Za-z]+)[ \t]+([^ \t]*)(?:[ \t]+HTTP/(\d+\.\d+))?[ \t]*\Z")
_STATUS_LINE = re.compile(rb"HTTP/(\d+\.\d+)[ \t]+(\d{3})(?:[ \t]+(.*))?\Z", re.DOTALL)
_RESYNC_REQUEST = re.compile(rb"^[A-Za-z]{3,20} [^ \r\n]+ HTTP/\d\.\d\r?$", re.MULTILINE)
_RESYNC_STATUS = re.compile(rb"^HTTP/\d\.\d \d{3}", re.MULTILINE)
_HEX = frozenset(b"0123456789abcdefABCDEF")


class AuthTokenParser(Protocol):
    """What an authentication parser (NTLM, SPNEGO/Kerberos) offers the HTTP parser."""

    def token(self, is_orig: bool, token: bytes, ts: float) -> None:
        """One decoded token from an Authorization (client) or WWW-Authenticate header."""

    def response(self, status_code: int, ts: float) -> None:
        """A final (non-1xx) response ended, after its own tokens: the server's verdict."""

    def end(self, ts: float) -> None:
        """The flow is over: report what is still pending."""


#: token kind ("ntlm", "negotiate", "kerberos") -> factory of a per-flow parser; a factory
#: registered for several kinds gets one instance per flow for all of them
AUTH_PARSERS: dict[str, Callable[[FlowContext], AuthTokenParser]] = {}


def register_auth_parser(kind: str, factory: Callable[[FlowContext], AuthTokenParser]) -> None:
    """Make HTTP hand tokens of ``kind`` to a parser made per flow by ``factory``."""
    AUTH_PARSERS[kind] = factory


def unescape_uri(raw: bytes) -> tuple[str, bool]:
    """Zeek's ``unescape_URI``: decode %XX escapes; (text, whether a bare % was seen)."""
    if b"%" not in raw:
        return printable(raw), False
    out = bytearray()
    bare = False
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c == 0x25 and i + 2 < n and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
            continue
        if c == 0x25:
            bare = True
        out.append(c)
        i += 1
    return printable(bytes(out)), bare


class _Txn:
    """One request/response pair being assembled (Zeek's ``HTTP::Info``)."""

    __slots__ = (
        "ts", "trans_depth", "method", "host", "uri", "referrer", "version", "user_agent",
        "origin", "request_body_len", "response_body_len", "status_code", "status_msg",
        "info_code", "info_msg", "username", "proxied", "orig_mime_types",
        "resp_mime_types", "request_version", "request_content_length",
        "request_transfer_encoding", "response_content_length",
        "response_transfer_encoding", "response_content_type", "interim_statuses",
    )

    def __init__(self, ts: float, trans_depth: int) -> None:
        self.ts = ts
        self.trans_depth = trans_depth
        self.method = self.host = self.uri = self.referrer = self.version = None
        self.user_agent = self.origin = self.status_msg = self.info_msg = None
        self.username = self.request_version = None
        self.request_body_len = 0
        self.response_body_len = 0
        self.status_code: int | None = None
        self.info_code: int | None = None
        self.proxied: set[str] | None = None
        self.orig_mime_types: list[str] | None = None
        self.resp_mime_types: list[str] | None = None
        self.request_content_length: int | None = None
        self.request_transfer_encoding: str | None = None
        self.response_content_length: int | None = None
        self.response_transfer_encoding: str | None = None
        self.response_content_type: str | None = None
        self.interim_statuses: list[int] = []


class _Side:
    """Parsing state of one direction."""

    __slots__ = (
        "is_orig", "state", "buf", "remaining", "body_len", "head", "inflater",
        "decoded", "decode_failed", "seen_message", "status",
    )

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.state = _HEAD
        self.buf = b""  # unconsumed bytes of a header block or a line
        self.remaining = 0  # body or chunk bytes still expected
        self.body_len = 0
        self.head = b""  # start of the (decoded) body, for sniffing its type
        self.inflater = None  # zlib decompressor for gzip/deflate content coding
        self.decoded = 0  # decoded bytes of the current body
        self.decode_failed = False  # decoding stopped: the rest of the body is not counted
        self.seen_message = False
        self.status = 0  # the response's status code (responses only)


@register("http")
class HttpAnalyzer(Analyzer):
    """HTTP/1.x for one TCP flow."""

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self._sides = {True: _Side(True), False: _Side(False)}
        self._pending: dict[int, _Txn] = {}
        self._current_request = 0
        self._current_response = 0
        self._trans_depth = 0
        self._methods: deque[str] = deque()  # methods of requests still unanswered
        self._http09: deque[bool] = deque()  # whether each of them was an HTTP/0.9 request
        self._confirmed = False
        self._auth_parsers: dict[Callable[[FlowContext], AuthTokenParser], AuthTokenParser] = {}

    # -- bytes in --------------------------------------------------------------------

    def data(self, is_orig: bool, data: bytes, ts: float) -> None:
        """In-order bytes of one direction: parse as many messages as they hold."""
        side = self._sides[is_orig]
        if side.state == _DEAD:
            return
        if side.buf:
            data = side.buf + data
            side.buf = b""
        pos = 0
        end = len(data)
        while pos < end:
            state = side.state
            if state == _BODY or state == _CHUNK_DATA:
                take = min(side.remaining, end - pos)
                self._body(side, data, pos, pos + take, ts)
                pos += take
                side.remaining -= take
                if side.remaining == 0:
                    if state == _BODY:
                        self._message_done(side, ts)
                    else:
                        side.state = _CHUNK_END
            elif state == _HEAD:
                pos = self._head(side, data, pos, end, ts)
            elif state == _UNTIL_CLOSE:
                self._body(side, data, pos, end, ts)
                pos = end
            elif state == _RESYNC:
                pos = self._resync(side, data, pos, end, ts)
            elif state == _DEAD:
                return
            else:
                pos = self._chunk_line(side, data, pos, end, ts)

    def gap(self, is_orig: bool, length: int, ts: float) -> None:
        """Lost bytes: absorbed inside a body of known length, else resynchronise."""
        side = self._sides[is_orig]
        state = side.state
        if state == _DEAD:
            return
        self.ctx.weird("HTTP_content_gap", ts, str(length))
        if state in (_BODY, _CHUNK_DATA) and length <= side.remaining:
            side.body_len += length
            side.remaining -= length
            side.inflater = None  # the coded stream is broken: count raw bytes from here
            if side.remaining == 0:
                if state == _BODY:
                    self._message_done(side, ts)
                else:
                    side.state = _CHUNK_END
            return
        if state == _UNTIL_CLOSE:
            side.body_len += length
            side.inflater = None
            return
        if state in (_BODY, _CHUNK_DATA, _CHUNK_SIZE, _CHUNK_END, _TRAILER):
            self._message_done(side, ts)
        side.buf = b""
        side.state = _RESYNC

    def end(self, ts: float) -> None:
        """End of the flow: finish messages in progress, then log every open transaction."""
        for side in self._sides.values():
            if side.state in (_BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE):
                self._message_done(side, ts)
            side.state = _DEAD
        for key in sorted(self._pending):
            if key != 0:
                self._emit(self._pending[key])
        self._pending.clear()
        for parser in self._auth_parsers.values():
            parser.end(ts)

    # -- header blocks -------------------------------------------------------------------

    def _head(self, side: _Side, data: bytes, pos: int, end: int, ts: float) -> int:
        """Parse a start line and headers if the whole block is here; return the new pos."""
        while pos < end and data[pos] in b"\r\n":
            pos += 1
        if pos == end:
            return end
        first_nl = data.find(b"\n", pos)
        if side.is_orig:
            if first_nl >= 0 and b" HTTP/" not in data[pos:first_nl]:
                # HTTP/0.9: a request line alone, no headers
                self._request(side, data[pos:first_nl].rstrip(b"\r"), [], ts)
                return first_nl + 1
        elif self._http09 and self._http09[0] and not data.startswith(b"HTTP/", pos):
            # the answer to an HTTP/0.9 request: no status line, body until the close
            self._http09_response(side, ts)
            return pos
        a = data.find(b"\n\r\n", pos)
        b = data.find(b"\n\n", pos)
        if a < 0 and b < 0:
            if end - pos > MAX_HEADER_BYTES:
                self.ctx.weird("HTTP_header_too_long", ts)
                side.state = _RESYNC
                return end
            side.buf = data[pos:]
            return end
        if a < 0 or (0 <= b < a):
            block, after = data[pos:b], b + 2
        else:
            block, after = data[pos:a], a + 3
        if len(block) > MAX_HEADER_BYTES:
            self.ctx.weird("HTTP_header_too_long", ts)
            side.state = _RESYNC
            return after
        lines = block.split(b"\n")
        start = lines[0].rstrip(b"\r")
        headers = self._headers(lines)
        if side.is_orig:
            self._request(side, start, headers, ts)
        else:
            self._response(side, start, headers, ts)
        return after

    @staticmethod
    def _headers(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
        """(upper-cased name, value) pairs; folded continuation lines join their header."""
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t"):
                if headers:
                    name, value = headers[-1]
                    headers[-1] = (name, value + b" " + line.strip())
                continue
            name, colon, value = line.partition(b":")
            if colon:
                headers.append((name.strip().upper(), value.strip()))
        return headers

    def _bad_start(self, side: _Side, weird: str, line: bytes, ts: float) -> None:
        addl = printable(line[:80])
        if not side.seen_message and not self._confirmed:
            self.ctx.violation(weird, ts)
            side.state = _DEAD
            return
        self.ctx.weird(weird, ts, addl)
        side.state = _RESYNC

    def _request(self, side: _Side, start: bytes, headers: list, ts: float) -> None:
        match = _REQUEST_LINE.match(start)
        if match is None:
            self._bad_start(side, "bad_HTTP_request", start, ts)
            return
        self._confirm()
        side.seen_message = True
        method = match.group(1).decode("ascii")
        version = match.group(3)
        txn = self._http_request(method, version is None, ts)
        txn.uri, bare = unescape_uri(match.group(2))
        if bare:
            self.ctx.weird("unescaped_%_in_URI", ts)
        txn.request_version = version.decode("ascii") if version is not None else "0.9"
        if method not in _KNOWN_METHODS:
            self.ctx.weird("unknown_HTTP_method", ts, method)
        length = None
        chunked = False
        for name, value in headers:
            if name == b"HOST":
                txn.host = printable(value)
            elif name == b"USER-AGENT":
                txn.user_agent = printable(value)
            elif name == b"REFERER":
                txn.referrer = printable(value)
            elif name == b"ORIGIN":
                txn.origin = printable(value)
            elif name == b"CONTENT-LENGTH":
                length = self._content_length(value, ts)
                txn.request_content_length = length
            elif name == b"TRANSFER-ENCODING":
                txn.request_transfer_encoding = printable(value)
                chunked = b"chunked" in value.lower()
            elif name == b"CONTENT-ENCODING":
                self._coding(side, value)
            elif name == b"AUTHORIZATION" or name == b"PROXY-AUTHORIZATION":
                self._authorization(txn, value, ts)
            else:
                text_name = name.decode("latin-1")
                if text_name in _PROXY_HEADERS:
                    if txn.proxied is None:
                        txn.proxied = set()
                    txn.proxied.add(f"{text_name} -> {printable(value)}")
        self._start_body(side, chunked, length, until_close=False, ts=ts)

    def _response(self, side: _Side, start: bytes, headers: list, ts: float) -> None:
        match = _STATUS_LINE.match(start)
        if match is None:
            self._bad_start(side, "bad_HTTP_reply", start, ts)
            return
        self._confirm()
        side.seen_message = True
        code = int(match.group(2))
        txn = self._http_reply(match.group(1).decode("ascii"), code, printable(match.group(3) or b""), ts)
        side.status = code
        interim = 100 <= code <= 199
        method = None
        if not interim and self._methods:
            method = self._methods.popleft()
            self._http09.popleft()
        length = None
        chunked = False
        for name, value in headers:
            if name == b"CONTENT-LENGTH":
                length = self._content_length(value, ts)
                if not interim:
                    txn.response_content_length = length
            elif name == b"TRANSFER-ENCODING":
                if not interim:
                    txn.response_transfer_encoding = printable(value)
                chunked = b"chunked" in value.lower()
            elif name == b"CONTENT-TYPE":
                if not interim:
                    txn.response_content_type = printable(value)
            elif name == b"CONTENT-ENCODING":
                self._coding(side, value)
            elif name == b"WWW-AUTHENTICATE" or name == b"PROXY-AUTHENTICATE":
                self._auth_header(False, value, ts)
        if not interim:
            for parser in self._auth_parsers.values():
                parser.response(code, ts)
        if code == 101 or (method == "CONNECT" and 200 <= code <= 299):
            # protocol upgrade or tunnel: what follows is not HTTP (a 101, being 1xx,
            # stays pending as in Zeek and is logged when the flow ends)
            self._message_done(side, ts)
            for other in self._sides.values():
                other.state = _DEAD
                other.buf = b""
            return
        if interim or code == 204 or code == 304 or method == "HEAD":
            side.inflater = None
            self._message_done(side, ts)
            return
        self._start_body(side, chunked, length, until_close=True, ts=ts)

    def _http09_response(self, side: _Side, ts: float) -> None:
        self._confirm()
        side.seen_message = True
        self._methods.popleft()
        self._http09.popleft()
        self._current_response += 1
        txn = self._txn(False, ts)
        txn.version = "0.9"
        side.state = _UNTIL_CLOSE

    def _start_body(self, side: _Side, chunked: bool, length: int | None, until_close: bool, ts: float) -> None:
        if chunked:
            side.state = _CHUNK_SIZE
        elif length:
            side.state = _BODY
            side.remaining = length
        elif length is None and until_close:
            side.state = _UNTIL_CLOSE
        else:
            side.inflater = None
            self._message_done(side, ts)

    def _content_length(self, value: bytes, ts: float) -> int | None:
        value = value.strip()
        if value.isdigit():
            return int(value)
        self.ctx.weird("HTTP_bad_Content_Length", ts, printable(value[:40]))
        return None

    @staticmethod
    def _coding(side: _Side, value: bytes) -> None:
        coding = value.strip().lower()
        if coding in (b"gzip", b"x-gzip"):
            side.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == b"deflate":
            side.inflater = zlib.decompressobj(zlib.MAX_WBITS)

    # -- bodies ----------------------------------------------------------------------------

    def _body(self, side: _Side, data: bytes, start: int, stop: int, ts: float) -> None:
        """Count body bytes (decoded when content-coded) and keep the start for sniffing."""
        if stop <= start or side.decode_failed:
            return
        inflater = side.inflater
        if inflater is None:
            side.body_len += stop - start
            if len(side.head) < SNIFF_BYTES:
                side.head += data[start : min(stop, start + SNIFF_BYTES - len(side.head))]
            return
        chunk = data[start:stop]
        try:
            while chunk:
                out = inflater.decompress(chunk, 65536)
                side.body_len += len(out)
                side.decoded += len(out)
                if len(side.head) < SNIFF_BYTES:
                    side.head += out[: SNIFF_BYTES - len(side.head)]
                if side.decoded > MAX_DECODED_BODY:
                    self.ctx.weird("HTTP_decoded_body_limit", ts)
                    side.decode_failed = True
                    return
                chunk = inflater.unconsumed_tail
                if inflater.eof:
                    return
        except zlib.error:
            # Zeek's ZIP analyzer stops delivering the body at a decoding error
            self.ctx.weird("inflate_failed", ts)
            side.decode_failed = True

    def _chunk_line(self, side: _Side, data: bytes, pos: int, end: int, ts: float) -> int:
        """A chunk-size line, the CRLF after a chunk's data, or a trailer line."""
        nl = data.find(b"\n", pos)
        if nl < 0:
            if end - pos > MAX_LINE_BYTES:
                self.ctx.weird("HTTP_chunk_line_too_long", ts)
                self._message_done(side, ts)
                side.state = _RESYNC
                return end
            side.buf = data[pos:]
            return end
        line = data[pos:nl].strip()
        state = side.state
        if state == _TRAILER:
            if not line:
                self._message_done(side, ts)
            return nl + 1
        if state == _CHUNK_END:
            side.state = _CHUNK_SIZE
            if not line:
                return nl + 1
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or any(c not in _HEX for c in size_text) or len(size_text) > 16:
            self.ctx.weird("HTTP_bad_chunk_size", ts, printable(line[:40]))
            self._message_done(side, ts)
            side.state = _RESYNC
            return nl + 1
        size = int(size_text, 16)
        if size == 0:
            side.state = _TRAILER
        else:
            side.state = _CHUNK_DATA
            side.remaining = size
        return nl + 1

    def _resync(self, side: _Side, data: bytes, pos: int, end: int, ts: float) -> int:
        """Skip to the next request line (client) or status line (server)."""
        pattern = _RESYNC_REQUEST if side.is_orig else _RESYNC_STATUS
        match = pattern.match(data, pos) or pattern.search(data, pos)
        if match is not None:
            self.ctx.weird("HTTP_resynchronized", ts)
            side.state = _HEAD
            return match.start()
        last_nl = data.rfind(b"\n", pos)
        tail = pos if last_nl < 0 else last_nl + 1
        if end - tail <= MAX_LINE_BYTES:
            side.buf = data[tail:]
        return end

    # -- Zeek's transaction bookkeeping ---------------------------------------------------

    def _confirm(self) -> None:
        if not self._confirmed:
            self._confirmed = True
            self.ctx.confirm("http")

    def _txn(self, is_orig: bool, ts: float) -> _Txn:
        """Zeek's ``set_state``: the transaction the current request/response belongs to."""
        key = self._current_request if is_orig else self._current_response
        txn = self._pending.get(key)
        if txn is None:
            self._trans_depth += 1
            txn = self._pending[key] = _Txn(ts, self._trans_depth)
        return txn

    def _http_request(self, method: str, http09: bool, ts: float) -> _Txn:
        if self._current_request < self._current_response:
            self.ctx.weird("HTTP_response_before_request", ts)
            self._current_request = self._current_response
        if len(self._pending) > MAX_PENDING_REQUESTS:
            self.ctx.weird("HTTP_excessive_pipelining", ts)
            if self._current_response == 0:
                self._current_response = 1
            while self._current_response < self._current_request:
                stale = self._pending.pop(self._current_response, None)
                if stale is not None:
                    self._emit(stale)
                self._current_response += 1
        self._current_request += 1
        self._methods.append(method)
        self._http09.append(http09)
        if len(self._methods) > MAX_PENDING_REQUESTS:
            self._methods.popleft()
            self._http09.popleft()
        txn = self._txn(True, ts)
        txn.method = method
        return txn

    def _http_reply(self, version: str, code: int, reason: str, ts: float) -> _Txn:
        current = self._pending.get(self._current_response)
        if current is None or (current.status_code is not None and not 100 <= current.status_code <= 199):
            self._current_response += 1
        txn = self._txn(False, ts)
        txn.status_code = code
        txn.status_msg = reason
        txn.version = version
        if 100 <= code <= 199:
            txn.info_code = code
            txn.info_msg = reason
            txn.interim_statuses.append(code)
        return txn

    def _message_done(self, side: _Side, ts: float) -> None:
        """Zeek's ``http_message_done``: record the body, log a finished final response."""
        txn = self._txn(side.is_orig, ts)
        mime = sniff(side.head) if side.body_len and side.head else None
        if side.is_orig:
            txn.request_body_len = side.body_len
            if mime is not None:
                txn.orig_mime_types = (txn.orig_mime_types or []) + [mime]
        else:
            txn.response_body_len = side.body_len
            if mime is not None:
                txn.resp_mime_types = (txn.resp_mime_types or []) + [mime]
        side.state = _HEAD
        side.body_len = 0
        side.remaining = 0
        side.head = b""
        side.inflater = None
        side.decoded = 0
        side.decode_failed = False
        if not side.is_orig and not (txn.status_code is not None and 100 <= txn.status_code <= 199):
            self._pending.pop(self._current_response, None)
            self._emit(txn)

    # -- authentication --------------------------------------------------------------------

    def _authorization(self, txn: _Txn, value: bytes, ts: float) -> None:
        scheme, _, credentials = value.partition(b" ")
        if scheme.lower() == b"basic":
            try:
                userpass = binascii.a2b_base64(credentials.strip())
            except binascii.Error:
                userpass = b""
            user, colon, _password = userpass.partition(b":")
            txn.username = printable(user) if colon else f"<problem-decoding> ({printable(value)})"
            return
        self._auth_header(True, value, ts)

    def _auth_header(self, is_orig: bool, value: bytes, ts: float) -> None:
        scheme, _, token = value.strip().partition(b" ")
        kind = _AUTH_SCHEMES.get(scheme.lower())
        token = token.strip()
        if kind is None or not token:
            return
        try:
            decoded = binascii.a2b_base64(token)
        except binascii.Error:
            self.ctx.weird("HTTP_bad_auth_token", ts, kind)
            return
        self._auth_token(is_orig, kind, decoded, ts)

    def _auth_token(self, is_orig: bool, scheme: str, token: bytes, ts: float) -> None:
        """Hand a decoded NTLM/Negotiate/Kerberos token to the parser registered for it.

        A Negotiate token that is bare NTLMSSP (not wrapped in SPNEGO) goes to "ntlm".
        """
        factory = AUTH_PARSERS.get("ntlm" if token.startswith(b"NTLMSSP\x00") else scheme)
        if factory is None:
            return
        parser = self._auth_parsers.get(factory)
        if parser is None:
            parser = self._auth_parsers[factory] = factory(self.ctx)
        parser.token(is_orig, token, ts)

    # -- events ------------------------------------------------------------------------------

    def _emit(self, txn: _Txn) -> None:
        ctx = self.ctx
        ctx.emit(
            Http(
                ts=txn.ts,
                uid=ctx.uid,
                id=ctx.id,
                trans_depth=txn.trans_depth,
                method=txn.method,
                host=txn.host,
                uri=txn.uri,
                referrer=txn.referrer,
                version=txn.version,
                user_agent=txn.user_agent,
                origin=txn.origin,
                request_body_len=txn.request_body_len,
                response_body_len=txn.response_body_len,
                status_code=txn.status_code,
                status_msg=txn.status_msg,
                info_code=txn.info_code,
                info_msg=txn.info_msg,
                tags=(),
                username=txn.username,
                proxied=None if txn.proxied is None else tuple(sorted(txn.proxied)),
                orig_mime_types=None if txn.orig_mime_types is None else tuple(txn.orig_mime_types),
                resp_mime_types=None if txn.resp_mime_types is None else tuple(txn.resp_mime_types),
                request_version=txn.request_version,
                request_content_length=txn.request_content_length,
                request_transfer_encoding=txn.request_transfer_encoding,
                response_content_length=txn.response_content_length,
                response_transfer_encoding=txn.response_transfer_encoding,
                response_content_type=txn.response_content_type,
                interim_statuses=tuple(txn.interim_statuses),
            )
        )

"""TLS/SSL handshake parser: records over TCP, handshake messages over records, one ``ssl`` event.

It follows Zeek's SSL analyzer and base/protocols/ssl scripts so that its events read like
ssl.log:

* Each side turns "encrypted" at its ChangeCipherSpec (TLS 1.0-1.2), or, once TLS 1.3 (or
  an unknown version) is negotiated, at its first application_data record; TLS 1.3's
  compatibility CCS changes nothing.
* ``established`` is set by the first encrypted record seen while both sides are
  encrypted; the event is emitted then and parsing stops (Zeek's
  ``disable_analyzer_after_detection``), so the rest of the connection costs one check.
* A connection that never gets there is reported when it ends, after a gap (parsing
  stops: records cannot be re-synchronised) or when the bytes stop being TLS.

Records may be split over TCP segments and handshake messages over records (and several
messages may share a record); both are reassembled per direction, within bounds.
"""

from __future__ import annotations

import struct

from protocols.analyzer import Analyzer, register
from protocols.events.ssl import Ssl
from protocols.tls_certs import CertSummary, fingerprint, hostname_matches, parse_certificate_list, summarize
from protocols.tls_fingerprint import ja3_string, ja3s_string, ja4, md5_hex
from protocols.tls_hello import (
    TlsClientHello,
    TlsServerHello,
    negotiated_version,
    parse_client_hello,
    parse_server_hello,
    parse_sslv2_client_hello,
)
from protocols.tls_names import (
    GREASE,
    HISTORY_LETTERS,
    PRE_TLS13,
    SSLv2,
    alert_name,
    cipher_name,
    curve_name,
    is_tls13,
    version_name,
)

#: record-layer versions Zeek accepts once the stream is known to be TLS
_RECORD_VERSIONS = frozenset((0x0300, 0x0301, 0x0302, 0x0303))
#: largest TLSCiphertext fragment (2^14 + 2048) plus its header
MAX_RECORD = 16384 + 2048
#: largest handshake message reassembled (certificate chains are the big ones)
MAX_HANDSHAKE = 1 << 21
#: Zeek's max_ssl_history_length
MAX_HISTORY = 100
#: Zeek's SSL::max_alerts_per_record
MAX_ALERTS_PER_RECORD = 10

_CCS, _ALERT, _HANDSHAKE, _APPLICATION_DATA, _HEARTBEAT = 20, 21, 22, 23, 24
_MALFORMED = (ValueError, IndexError, struct.error)


@register("ssl")
class TlsAnalyzer(Analyzer):
    """One TCP connection's TLS handshake, turned into one :class:`Ssl` event."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._records: list[bytes] = [b"", b""]  # partial record, by is_orig
        self._messages: list[bytes | bytearray] = [b"", b""]  # partial handshake message
        self._encrypted = [False, False]  # by is_orig
        self._record_version = 0  # the record layer's version once known; SSLv2 = 2
        self._negotiated = 0  # the server's chosen version; 0 until a ServerHello
        self._client_is_orig = True
        self._stopped = False
        self._started = False
        self._ts = 0.0
        # what ssl.log reports
        self._version: int | None = None
        self._cipher: int | None = None
        self._curve: int | None = None
        self._server_name: str | None = None
        self._resumed = False
        self._last_alert: str | None = None
        self._next_protocol: str | None = None
        self._history: list[str] = []
        self._server_certs: list[str] | None = None
        self._client_certs: list[str] | None = None
        self._server_leaf: CertSummary | None = None
        self._client_leaf: CertSummary | None = None
        # Zeek's resumption bookkeeping
        self._session_id: bytes | None = None
        self._ticket_without_session = False
        self._key_exchange_seen = False
        self._psk_offered = False
        self._hrr_pending = False
        self._client_hello: TlsClientHello | None = None
        self._server_hello: TlsServerHello | None = None

    # -- the Analyzer contract -------------------------------------------------------------

    def data(self, is_orig: bool, data: bytes, ts: float) -> None:
        """Parse whole records out of this direction's bytes; keep a partial one for later."""
        if self._stopped:
            return
        side = 1 if is_orig else 0
        pending = self._records[side]
        buf = pending + data if pending else data
        off = 0
        end = len(buf)
        while end - off >= 5:
            head = buf[off]
            if self._record_version == SSLv2 or (head & 0x80 and self._record_version == 0):
                used = self._sslv2_record(is_orig, buf, off, ts)
                if used == 0:
                    break
                off += used
            else:
                length = (buf[off + 3] << 8) | buf[off + 4]
                if not self._record_header_ok(head, (buf[off + 1] << 8) | buf[off + 2], length, ts):
                    return
                if end - off - 5 < length:
                    break
                self._record(is_orig, head, buf[off + 5 : off + 5 + length], ts)
                off += 5 + length
            if self._stopped:
                self._records[side] = b""
                return
        self._records[side] = buf[off:] if off < end else b""

    def gap(self, is_orig: bool, length: int, ts: float) -> None:
        """Records cannot be re-synchronised after lost bytes: stop, report at the end (as Zeek)."""
        self._stopped = True
        self._records = [b"", b""]
        self._messages = [b"", b""]

    def end(self, ts: float) -> None:
        """Report a handshake that never got established (Zeek's finalize hook)."""
        self._finish(established=False)

    # -- record layer ----------------------------------------------------------------------

    def _record_header_ok(self, content_type: int, version: int, length: int, ts: float) -> bool:
        if version not in _RECORD_VERSIONS:
            self._violation(f"invalid record version 0x{version:04x}", ts)
            return False
        if self._record_version == 0:
            if not 20 <= content_type <= 30:
                self._violation(f"invalid record type {content_type}", ts)
                return False
            self._record_version = version
        if length > MAX_RECORD:
            self._violation(f"record of {length} bytes exceeds the TLS limit", ts)
            return False
        return True

    def _record(self, is_orig: bool, content_type: int, fragment: bytes, ts: float) -> None:
        side = 1 if is_orig else 0
        encrypted = self._encrypted
        if not encrypted[side] and content_type == _APPLICATION_DATA and self._negotiated not in PRE_TLS13:
            encrypted[side] = True  # TLS 1.3: the first application_data starts encryption
        if encrypted[side]:
            if encrypted[1 - side]:
                self._finish(established=True)
            return
        if content_type == _HANDSHAKE:
            self._handshake(is_orig, fragment, ts)
        elif content_type == _CCS:
            self._change_cipher_spec(is_orig, ts)
        elif content_type == _ALERT:
            self._alerts(is_orig, fragment, ts)
        elif content_type == _HEARTBEAT:
            self._start(ts)
            self._add_history(is_orig == self._client_is_orig, "b", ts)
        elif content_type == _APPLICATION_DATA:
            if self._version is not None:
                self.ctx.weird("ssl_early_application_data", ts)
        else:
            self._violation(f"unknown SSL record type ({content_type})", ts)

    def _sslv2_record(self, is_orig: bool, buf: bytes, off: int, ts: float) -> int:
        """Handle one SSLv2-format record at ``off``; return its size, 0 if incomplete."""
        head = buf[off]
        if head & 0x80:
            size = 2 + (((head & 0x7F) << 8) | buf[off + 1])
        else:
            size = 3 + (((head & 0x3F) << 8) | buf[off + 1])
        if len(buf) - off < size:
            return 0
        record = buf[off : off + size]
        kind = -1  # too short to be any SSLv2 message we read
        if size > 5:
            kind = record[2] if head & 0x80 else record[3]
        if self._record_version == SSLv2:
            if is_orig == self._client_is_orig and kind == 2:  # client-master-key
                self._encrypted = [True, True]
                self._finish(established=True)
            return size
        if is_orig and kind == 1 and head & 0x80:
            version = (record[3] << 8) | record[4]
            if version != SSLv2 and version not in _RECORD_VERSIONS:
                self._violation(f"invalid version in SSLv2 ClientHello: 0x{version:04x}", ts)
                return size
            try:
                hello = parse_sslv2_client_hello(record)
            except _MALFORMED:
                self._violation("malformed SSLv2 ClientHello", ts)
                return size
            self._start(ts)
            self._client_hello_seen(hello, ts)
            self._add_history(True, "c", ts)
            return size
        if not is_orig and kind == 4 and head & 0x80 and record[4] < 2:
            self._record_version = SSLv2
            self._sslv2_server_hello(record, ts)
            return size
        self._violation("invalid SSLv2 record header", ts)
        return size

    def _sslv2_server_hello(self, record: bytes, ts: float) -> None:
        try:
            version, cert_len, cipher_len, _conn_id_len = struct.unpack_from("!HHHH", record, 5)
            if version != SSLv2 or 13 + cert_len + cipher_len > len(record):
                raise ValueError("bad SSLv2 ServerHello")
        except _MALFORMED:
            self._violation("malformed SSLv2 ServerHello", ts)
            return
        self._start(ts)
        self.ctx.confirm(self.service)
        self._version = self._negotiated = SSLv2
        ciphers = record[13 + cert_len : 13 + cert_len + cipher_len]
        if len(ciphers) >= 3:
            self._cipher = (ciphers[0] << 16) | (ciphers[1] << 8) | ciphers[2]
        if cert_len:
            self._certificates(False, (record[13 : 13 + cert_len],))
        self._add_history(False, "s", ts)

    # -- handshake layer -------------------------------------------------------------------

    def _handshake(self, is_orig: bool, fragment: bytes, ts: float) -> None:
        side = 1 if is_orig else 0
        pending = self._messages[side]
        if pending:
            pending.extend(fragment)
            buf = pending
        else:
            buf = fragment
        off = 0
        end = len(buf)
        while end - off >= 4:
            length = (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]
            if length > MAX_HANDSHAKE:
                self._violation(f"handshake message of {length} bytes exceeds the limit", ts)
                return
            if end - off - 4 < length:
                break
            body = buf[off + 4 : off + 4 + length]
            self._message(is_orig, buf[off], bytes(body) if pending else body, ts)
            off += 4 + length
            if self._stopped:
                return
        self._messages[side] = bytearray(buf[off:]) if off < end else b""

    def _message(self, is_orig: bool, msg_type: int, body: bytes, ts: float) -> None:
        if msg_type == 1 and self._client_hello is None and not is_orig and not self._history:
            self._client_is_orig = False  # the responder speaks first: Zeek's flipped connection
            self._history.append("^")
        is_client = is_orig == self._client_is_orig
        self._start(ts)
        letter = HISTORY_LETTERS.get(msg_type, "z")
        try:
            if msg_type == 1 and is_client:
                self._client_hello_seen(parse_client_hello(body), ts)
            elif msg_type == 2 and not is_client:
                self._server_hello_seen(parse_server_hello(body), ts)
                if self._hrr_pending:
                    letter = "j"
                    self._hrr_pending = False
            elif msg_type == 11 and not is_tls13(self._negotiated):
                self._certificates(is_client, parse_certificate_list(body))
            elif msg_type == 12 and not is_client:
                self._server_key_exchange(body)
            elif msg_type == 16 and is_client:
                self._key_exchange_seen = True
        except _MALFORMED:
            self._violation(f"malformed handshake message {msg_type}", ts)
            return
        self._add_history(is_client, letter, ts)

    def _client_hello_seen(self, hello: TlsClientHello, ts: float) -> None:
        if self._client_hello is None:
            self._client_hello = hello
            self.ctx.confirm(self.service)
        if hello.server_names:
            self._server_name = hello.server_names[0]
            if len(hello.server_names) > 1:
                self.ctx.weird("SSL_many_server_names", ts, ",".join(hello.server_names))
        if hello.ticket:
            self._ticket_without_session = True
        if hello.psk:
            self._psk_offered = True
        sid = hello.session_id
        if sid and sid != bytes(32):
            self._session_id = sid
            self._ticket_without_session = False

    def _server_hello_seen(self, hello: TlsServerHello, ts: float) -> None:
        self.ctx.confirm(self.service)
        self._server_hello = hello
        if hello.selected_version is not None:
            self._version = hello.selected_version
        if hello.key_share_group is not None:
            self._curve = hello.key_share_group
        if hello.alpn:
            self._next_protocol = hello.alpn[0]
        if hello.psk and self._psk_offered:
            self._resumed = True
        if self._version is None:
            self._version = hello.version
        self._cipher = hello.cipher
        self._negotiated = negotiated_version(hello)
        self._hrr_pending = hello.retry
        version = self._version
        if (
            self._session_id is not None
            and hello.session_id == self._session_id
            and not is_tls13(version)
        ):
            self._resumed = True

    def _certificates(self, is_client: bool, certs: tuple[bytes, ...]) -> None:
        if not certs:
            return
        # Zeek starts both chains at the first certificate seen from either side
        server_chain = self._server_certs if self._server_certs is not None else []
        client_chain = self._client_certs if self._client_certs is not None else []
        self._server_certs, self._client_certs = server_chain, client_chain
        chain = client_chain if is_client else server_chain
        if not chain:
            leaf = summarize(certs[0])
            if is_client:
                self._client_leaf = leaf
            else:
                self._server_leaf = leaf
        chain.extend([fingerprint(der) for der in certs])

    def _server_key_exchange(self, body: bytes) -> None:
        if self._cipher is None:
            return
        name = cipher_name(self._cipher)
        if "_ECDHE_" not in name and "_ECDH_" not in name:
            return
        off = 0
        if "_ECDHE_PSK_" in name:
            off = 2 + ((body[0] << 8) | body[1])  # psk_identity_hint
        if body[off] == 3:  # named_curve
            self._curve = (body[off + 1] << 8) | body[off + 2]

    def _change_cipher_spec(self, is_orig: bool, ts: float) -> None:
        is_client = is_orig == self._client_is_orig
        self._start(ts)
        self._add_history(is_client, "i", ts)
        if is_client and self._ticket_without_session and not self._key_exchange_seen:
            self._resumed = True
        if not is_tls13(self._negotiated):
            self._encrypted[1 if is_orig else 0] = True

    def _alerts(self, is_orig: bool, fragment: bytes, ts: float) -> None:
        is_client = is_orig == self._client_is_orig
        limit = 2 if is_tls13(self._negotiated) else 2 * MAX_ALERTS_PER_RECORD
        if len(fragment) > limit:
            self.ctx.weird("SSL_excessive_alerts_in_record", ts, str(len(fragment) // 2))
        self._start(ts)
        for off in range(0, min(len(fragment), limit) - 1, 2):
            self._add_history(is_client, "l", ts)
            self._last_alert = alert_name(fragment[off + 1])

    # -- bookkeeping -----------------------------------------------------------------------

    def _start(self, ts: float) -> None:
        if not self._started:
            self._started = True
            self._ts = ts

    def _add_history(self, is_client: bool, letter: str, ts: float) -> None:
        history = self._history
        if len(history) >= MAX_HISTORY:
            return
        history.append(letter.upper() if is_client else letter)
        if len(history) == MAX_HISTORY:
            self.ctx.weird("SSL_max_ssl_history_length_reached", ts, str(MAX_HISTORY))

    def _violation(self, reason: str, ts: float) -> None:
        """The bytes are not (or no longer) TLS: report what was seen, then give up."""
        self._finish(established=False)
        self.ctx.violation(reason, ts)

    def _finish(self, established: bool) -> None:
        """Emit the event once (at establishment or at the end) and stop parsing."""
        self._stopped = True
        self._records = [b"", b""]
        self._messages = [b"", b""]
        if not self._started:
            return
        self._started = False
        self.ctx.emit(self._event(established))

    def _event(self, established: bool) -> Ssl:
        hello = self._client_hello
        server = self._server_hello
        server_leaf = self._server_leaf
        sni_matches = None
        if server_leaf is not None and self._server_name is not None:
            sni_matches = hostname_matches(server_leaf, self._server_name)
        fields: dict = {}
        if hello is not None:
            fields["client_version"] = version_name(hello.version)
            fields["client_versions"] = tuple(
                [version_name(v) for v in hello.supported_versions if v not in GREASE]
            )
            width = 6 if hello.sslv2 else 4  # SSLv2 cipher specs are 3 bytes
            fields["client_ciphers"] = tuple([f"0x{c:0{width}x}" for c in hello.ciphers])
            fields["client_alpn"] = hello.alpn
            fields["ech"] = hello.ech
            if not hello.sslv2:
                fields["ja3_full"] = full = ja3_string(hello)
                fields["ja3"] = md5_hex(full)
                fields["ja4"] = ja4(hello)
        if server is not None:
            fields["ja3s_full"] = full = ja3s_string(server)
            fields["ja3s"] = md5_hex(full)
        client_leaf = self._client_leaf
        return Ssl(
            ts=self._ts,
            uid=self.ctx.uid,
            id=self.ctx.id,
            version=version_name(self._version) if self._version is not None else None,
            cipher=cipher_name(self._cipher) if self._cipher is not None else None,
            curve=curve_name(self._curve) if self._curve is not None else None,
            server_name=self._server_name,
            resumed=self._resumed,
            last_alert=self._last_alert,
            next_protocol=self._next_protocol,
            established=established,
            ssl_history="".join(self._history),
            cert_chain_fps=tuple(self._server_certs) if self._server_certs is not None else None,
            client_cert_chain_fps=tuple(self._client_certs) if self._client_certs is not None else None,
            subject=server_leaf.subject if server_leaf is not None else None,
            issuer=server_leaf.issuer if server_leaf is not None else None,
            client_subject=client_leaf.subject if client_leaf is not None else None,
            client_issuer=client_leaf.issuer if client_leaf is not None else None,
            sni_matches_cert=sni_matches,
            **fields,
        )

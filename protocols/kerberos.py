"""Kerberos parser (UDP datagrams, TCP with 4-byte length prefixes) and one ``kerberos`` event per exchange.

Requests and replies are paired as Zeek's base/protocols/krb pairs them: the request
opens a record, the reply (AS-REP/TGS-REP/AP-REP) or KRB-ERROR completes it and it is
emitted then; a request without reply is emitted when the flow ends. A KRB-ERROR whose
e-text Zeek ignores (``NEEDED_PREAUTH``: the normal first round of pre-authentication)
drops the record, as Zeek does. One deliberate difference: Zeek logs only the first
exchange of a connection; here, a request after a completed exchange opens a new record,
so a client that reuses its source port is not hidden.

Messages are decoded by :mod:`protocols.kerberos_messages` on a small DER reader of our
own (impacket's pyasn1 structures are ~100x slower and raise many exception types).

For the SMB/DCE-RPC/HTTP parsers, :class:`GssKerberos` (one per flow) turns the Kerberos
tokens they find in SPNEGO/GSS-API into the ``kerberos`` events Zeek writes for them
(``request_type`` "AP"); :func:`parse_ap_req`, :func:`parse_ap_reply` and
:func:`ap_exchange_event` are its stateless parts.
"""

from __future__ import annotations

from protocols import der
from protocols.analyzer import Analyzer, register
from protocols.events.base import ConnId
from protocols.events.kerberos import Kerberos
from protocols.kerberos_messages import (
    AP_REP,
    AP_REQ,
    AS_REQ,
    ERROR_NAMES,
    KRB_ERROR,
    ApReply,
    ApRequest,
    KdcReply,
    KdcRequest,
    KrbError,
    cipher_name,
    decode_message,
    error_name,
)

#: Zeek's KRB::ignored_errors: e-texts of errors that are a normal step, not a failure
IGNORED_ERRORS = frozenset(("NEEDED_PREAUTH", "Need to use PA-ENC-TIMESTAMP/PA-PK-AS-REQ"))
#: largest Kerberos message reassembled over TCP (tickets with big PACs reach tens of KiB)
MAX_TCP_MESSAGE = 1 << 20
_MALFORMED = (ValueError, IndexError)

#: DER of the Kerberos V5 GSS-API mechanism OIDs (RFC 4121; Microsoft's legacy one)
_KRB5_OIDS = (
    bytes.fromhex("06092a864886f712010202"),  # 1.2.840.113554.1.2.2
    bytes.fromhex("06092a864882f712010202"),  # 1.2.840.48018.1.2.2
)


class _Exchange:
    """The kerberos.log record being filled by one request and its reply."""

    __slots__ = (
        "ts", "request_type", "client", "service", "success", "error_code", "error_msg",
        "from_", "till", "cipher", "forwardable", "renewable", "client_cert_subject",
        "server_cert_subject", "req_ciphers", "req_padata",
    )  # fmt: skip

    def __init__(self, ts: float) -> None:
        self.ts = ts
        self.request_type: str | None = None
        self.client: str | None = None
        self.service: str | None = None
        self.success: bool | None = None
        self.error_code: int | None = None
        self.error_msg: str | None = None
        self.from_: float | None = None
        self.till: float | None = None
        self.cipher: str | None = None
        self.forwardable: bool | None = None
        self.renewable: bool | None = None
        self.client_cert_subject: str | None = None
        self.server_cert_subject: str | None = None
        self.req_ciphers: tuple[str, ...] = ()
        self.req_padata: tuple[int, ...] = ()

    def request(self, msg: KdcRequest) -> None:
        """Zeek's krb_as_request / krb_tgs_request handlers."""
        if msg.msg_type == AS_REQ:
            self.request_type = "AS"
            self.client = f"{msg.client or ''}/{msg.realm or ''}"
        else:
            self.request_type = "TGS"
        if msg.service is not None:
            self.service = msg.service
        if msg.from_ is not None:
            self.from_ = msg.from_
        if msg.till is not None:
            self.till = msg.till
        if msg.forwardable is not None:
            self.forwardable = msg.forwardable
            self.renewable = msg.renewable
        self.req_ciphers = tuple([cipher_name(e) for e in msg.etypes])
        self.req_padata = msg.padata_types
        if msg.cert_subject is not None:
            self.client_cert_subject = msg.cert_subject

    def reply(self, msg: KdcReply) -> None:
        """Zeek's krb_as_response / krb_tgs_response handlers."""
        if self.client is None and (msg.client is not None or msg.client_realm is not None):
            self.client = f"{msg.client or ''}/{msg.client_realm or ''}"
        self.service = msg.service
        self.cipher = cipher_name(msg.cipher) if msg.cipher is not None else None
        self.success = True
        if msg.cert_subject is not None:
            self.server_cert_subject = msg.cert_subject

    def error(self, msg: KrbError) -> None:
        """Zeek's krb_error handler (the ignored e-texts are the caller's business)."""
        if self.client is None and (msg.client is not None or msg.client_realm is not None):
            self.client = f"{msg.client + '/' if msg.client else ''}{msg.client_realm or ''}"
        if msg.service is not None:
            self.service = msg.service
        self.success = False
        self.error_code = msg.error_code
        if msg.error_text is not None:
            self.error_msg = msg.error_text
        elif msg.error_code in ERROR_NAMES:
            self.error_msg = error_name(msg.error_code)

    def ap_request(self, msg: ApRequest) -> None:
        """Zeek's krb_ap_request handler (outside a KDC request's padata)."""
        self.request_type = "AP"
        if msg.service is not None:
            self.service = msg.service
        if msg.cipher is not None:
            self.cipher = cipher_name(msg.cipher)
        if msg.realm is not None:
            self.client = f"/{msg.realm}"

    def event(self, uid: str, conn_id: ConnId) -> Kerberos:
        return Kerberos(
            ts=self.ts, uid=uid, id=conn_id, request_type=self.request_type, client=self.client,
            service=self.service, success=self.success, error_code=self.error_code,
            error_msg=self.error_msg, from_=self.from_, till=self.till, cipher=self.cipher,
            forwardable=self.forwardable, renewable=self.renewable,
            client_cert_subject=self.client_cert_subject,
            server_cert_subject=self.server_cert_subject, req_ciphers=self.req_ciphers,
            req_padata=self.req_padata,
        )  # fmt: skip


@register("krb")
class KerberosAnalyzer(Analyzer):
    """Kerberos on one flow: each UDP datagram, or each length-prefixed TCP record, is a message."""

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._tcp = ctx.proto == "tcp"
        self._buffers: list[bytes] = [b"", b""]
        self._exchange: _Exchange | None = None
        self._confirmed = False
        self._stopped = False

    def data(self, is_orig: bool, data: bytes, ts: float) -> None:
        """One datagram (UDP), or more of this direction's record stream (TCP)."""
        if self._stopped:
            return
        if not self._tcp:
            self._message(data, ts)
            return
        side = 1 if is_orig else 0
        pending = self._buffers[side]
        buf = pending + data if pending else data
        off = 0
        end = len(buf)
        while end - off >= 4:
            length = int.from_bytes(buf[off : off + 4], "big") & 0x7FFFFFFF
            if length > MAX_TCP_MESSAGE:
                self._give_up(f"Kerberos TCP record of {length} bytes", ts)
                return
            if end - off - 4 < length:
                break
            self._message(buf[off + 4 : off + 4 + length], ts)
            off += 4 + length
            if self._stopped:
                return
        self._buffers[side] = buf[off:] if off < end else b""

    def gap(self, is_orig: bool, length: int, ts: float) -> None:
        """TCP record boundaries are lost with the bytes: stop; what is pending is kept."""
        if self._tcp:
            self._stopped = True
            self._buffers = [b"", b""]

    def end(self, ts: float) -> None:
        """A request still waiting for its reply is reported now (Zeek's finalize hook)."""
        self._flush()

    def _message(self, raw: bytes, ts: float) -> None:
        try:
            msg = decode_message(raw)
        except _MALFORMED:
            if self._confirmed:
                self.ctx.weird("KRB_malformed_message", ts)
            else:
                self._give_up("not a Kerberos message", ts)
            return
        if msg is None:
            return
        if not self._confirmed:
            self._confirmed = True
            self.ctx.confirm("krb_tcp" if self._tcp else "krb")
        if isinstance(msg, KdcRequest):
            self._open(ts).request(msg)
        elif isinstance(msg, KdcReply):
            self._open(ts).reply(msg)
            self._flush()
        elif isinstance(msg, KrbError):
            if msg.error_text is not None and msg.error_text in IGNORED_ERRORS:
                self._exchange = None
                return
            self._open(ts).error(msg)
            self._flush()
        elif isinstance(msg, ApRequest):
            self._open(ts).ap_request(msg)
        else:  # AP-REP
            self._open(ts).success = True
            self._flush()

    def _open(self, ts: float) -> _Exchange:
        if self._exchange is None:
            self._exchange = _Exchange(ts)
        return self._exchange

    def _flush(self) -> None:
        exchange = self._exchange
        if exchange is not None:
            self._exchange = None
            self.ctx.emit(exchange.event(self.ctx.uid, self.ctx.id))

    def _give_up(self, reason: str, ts: float) -> None:
        self._flush()
        self._stopped = True
        self._buffers = [b"", b""]
        self.ctx.violation(reason, ts)


@register("krb_tcp")
class KerberosTcpAnalyzer(KerberosAnalyzer):
    """The same parser under Zeek's TCP service name, for detection that names it so."""


# -- Kerberos inside SPNEGO / GSS-API (SMB session setup, HTTP Negotiate) ---------------------


def _unwrap_gss(token: bytes) -> tuple[int | None, bytes]:
    """(TOK_ID, inner message) of a GSS-API InitialContextToken for Kerberos; (None, token) if bare."""
    if not token or token[0] != 0x60:
        return None, token
    _tag, start, stop = der.tlv(token, 0, len(token))
    for oid in _KRB5_OIDS:
        if token[start : start + len(oid)] == oid:
            body = start + len(oid)
            if stop - body < 2:
                raise ValueError("GSS-API token without TOK_ID")
            return (token[body] << 8) | token[body + 1], token[body + 2 : stop]
    raise ValueError("GSS-API token of another mechanism")


def parse_ap_req(token: bytes) -> ApRequest | None:
    """Decode a Kerberos AP-REQ, bare or GSS-API wrapped (TOK_ID 01 00); None if it is not one.

    Never raises on bad input: a malformed or foreign token gives None.
    """
    try:
        tok_id, inner = _unwrap_gss(token)
        if tok_id not in (None, 0x0100):
            return None
        msg = decode_message(inner)
    except _MALFORMED:
        return None
    return msg if isinstance(msg, ApRequest) else None


def parse_ap_reply(token: bytes) -> ApReply | None:
    """Decode the answer to an AP-REQ: an AP-REP (TOK_ID 02 00) or KRB-ERROR (03 00); None otherwise."""
    try:
        tok_id, inner = _unwrap_gss(token)
        if tok_id not in (None, 0x0200, 0x0300):
            return None
        msg = decode_message(inner)
    except _MALFORMED:
        return None
    if isinstance(msg, ApReply):
        return msg
    if isinstance(msg, KrbError):
        return ApReply(error=msg)
    return None


def ap_exchange_event(
    uid: str, conn_id: ConnId, ts: float, request: ApRequest, reply: ApReply | None = None
) -> Kerberos:
    """The ``kerberos`` event Zeek logs for an AP exchange seen inside another protocol.

    ``ts`` is the AP-REQ's time; ``reply`` None means no answer was seen (success unset).
    """
    exchange = _Exchange(ts)
    exchange.ap_request(request)
    if reply is not None:
        if reply.error is None:
            exchange.success = True
        elif reply.error.error_text not in IGNORED_ERRORS:
            exchange.error(reply.error)
    return exchange.event(uid, conn_id)


class GssKerberos:
    """Kerberos AP exchanges inside one flow of another protocol (SMB, DCE/RPC, HTTP Negotiate).

    The carrier's parser keeps one per flow, hands it every Kerberos token it unwraps from
    SPNEGO/GSS-API (bare message or GSS-wrapped, either direction) and calls :meth:`end`
    when the flow ends. As Zeek: an AP-REQ opens a ``kerberos`` record (``request_type``
    "AP"), the AP-REP (success) or KRB-ERROR (failure) completes and emits it, and an
    unanswered AP-REQ is emitted at the end. A second AP-REQ before any answer replaces
    the first, as Zeek's single per-connection record does.
    """

    __slots__ = ("ctx", "_request", "_ts")

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self._request: ApRequest | None = None
        self._ts = 0.0

    def token(self, token: bytes, is_orig: bool, ts: float) -> bool:
        """Take one Kerberos token; False if it is not an AP-REQ/AP-REP/KRB-ERROR we could read."""
        request = parse_ap_req(token)
        if request is not None:
            self._request = request
            self._ts = ts
            return True
        reply = parse_ap_reply(token)
        if reply is None:
            return False
        request, self._request = self._request, None
        if reply.error is not None and reply.error.error_text in IGNORED_ERRORS:
            return True  # Zeek drops the record
        if request is not None:
            self.ctx.emit(ap_exchange_event(self.ctx.uid, self.ctx.id, self._ts, request, reply))
            return True
        exchange = _Exchange(ts)  # an answer whose AP-REQ was not seen: Zeek still logs it
        if reply.error is None:
            exchange.success = True
        else:
            exchange.error(reply.error)
        self.ctx.emit(exchange.event(self.ctx.uid, self.ctx.id))
        return True

    def end(self, ts: float) -> None:
        """The flow is over: report an AP-REQ that got no answer."""
        if self._request is not None:
            self.ctx.emit(ap_exchange_event(self.ctx.uid, self.ctx.id, self._ts, self._request))
            self._request = None


__all__ = [
    "AP_REP",
    "AP_REQ",
    "IGNORED_ERRORS",
    "KRB_ERROR",
    "ApReply",
    "ApRequest",
    "GssKerberos",
    "KerberosAnalyzer",
    "KerberosTcpAnalyzer",
    "ap_exchange_event",
    "parse_ap_reply",
    "parse_ap_req",
]

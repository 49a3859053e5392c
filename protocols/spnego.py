"""GSSAPI/SPNEGO security blobs: find the NTLMSSP or Kerberos token inside, and the verdict.

SMB session setup, DCE/RPC auth verifiers and HTTP ``Negotiate`` carry either a bare
NTLMSSP token or a GSSAPI token (SPNEGO negTokenInit/negTokenResp, RFC 4178) wrapping one.
:func:`unwrap` reads just enough DER to get the inner mechanism token and the negState;
:func:`handle_blob` sends NTLMSSP to an :class:`~protocols.ntlm.NtlmTracker` and Kerberos
to the flow's :class:`~protocols.kerberos.GssKerberos` through :func:`hand_to_kerberos`.
"""

from __future__ import annotations

from typing import Any

import attrs

from protocols.kerberos import GssKerberos
from protocols.ntlm import SIGNATURE as NTLM_SIGNATURE
from protocols.ntlm import NtlmTracker

OID_SPNEGO = bytes.fromhex("2b0601050502")  # 1.3.6.1.5.5.2
OID_KRB5 = bytes.fromhex("2a864886f712010202")  # 1.2.840.113554.1.2.2
OID_KRB5_MS = bytes.fromhex("2a864882f712010202")  # 1.2.840.48018.1.2.2
OID_NTLMSSP = bytes.fromhex("2b0601040182370202 0a".replace(" ", ""))  # 1.3.6.1.4.1.311.2.2.10

#: SPNEGO negState values (RFC 4178)
ACCEPT_COMPLETED, ACCEPT_INCOMPLETE, REJECT, REQUEST_MIC = 0, 1, 2, 3


class DerError(ValueError):
    """DER that runs past its buffer or uses an unsupported length form."""


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the DER element at ``pos``; raise DerError."""
    if pos + 2 > end:
        raise DerError("DER header past end")
    tag = buf[pos]
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise DerError("bad DER length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise DerError("DER value past end")
    return tag, pos, pos + length


@attrs.frozen(slots=True)
class SecurityToken:
    """What a security blob holds: the mechanism, its inner token, and SPNEGO's negState."""

    mech: str  # "ntlmssp", "krb5", "none" (SPNEGO without a token) or "unknown"
    token: bytes = b""
    neg_state: int | None = None
    mech_types: tuple[bytes, ...] = ()


def _krb5_inner(buf: bytes, start: int, end: int) -> bytes:
    """The Kerberos message inside a GSS krb5 InitialContextToken (OID + 2-byte TOK_ID)."""
    tag, vstart, vend = _tlv(buf, start, end)
    if tag != 0x06:
        raise DerError("krb5 token without its OID")
    # skip the OID and the two TOK_ID bytes (01 00 AP-REQ, 02 00 AP-REP, 03 00 KRB-ERROR)
    return bytes(buf[vend + 2 : end])


def _classify(token: bytes) -> SecurityToken:
    """A mechToken/responseToken: bare NTLMSSP, a GSS krb5 token, or a bare Kerberos message."""
    if token[:8] == NTLM_SIGNATURE:
        return SecurityToken("ntlmssp", token)
    if token[:1] == b"\x60":
        tag, start, end = _tlv(token, 0, len(token))
        otag, ostart, oend = _tlv(token, start, end)
        if otag == 0x06 and token[ostart:oend] in (OID_KRB5, OID_KRB5_MS):
            return SecurityToken("krb5", _krb5_inner(token, start, end))
        return SecurityToken("unknown", token)
    if token[:1] in (b"\x6e", b"\x6f", b"\x7e"):  # AP-REQ, AP-REP, KRB-ERROR
        return SecurityToken("krb5", token)
    return SecurityToken("unknown", token)


def _neg_token(buf: bytes, start: int, end: int) -> SecurityToken:
    """negTokenInit ([0]) or negTokenResp ([1]) starting at ``start``."""
    tag, vstart, vend = _tlv(buf, start, end)
    if tag not in (0xA0, 0xA1):
        return SecurityToken("unknown")
    stag, sstart, send = _tlv(buf, vstart, vend)
    if stag != 0x30:
        raise DerError("NegotiationToken is not a SEQUENCE")
    neg_state = None
    inner = None
    mech_types: list[bytes] = []
    pos = sstart
    while pos < send:
        ftag, fstart, fend = _tlv(buf, pos, send)
        pos = fend
        if tag == 0xA0 and ftag == 0xA0:  # mechTypes
            ltag, lstart, lend = _tlv(buf, fstart, fend)
            p = lstart
            while p < lend:
                otag, ostart, oend = _tlv(buf, p, lend)
                mech_types.append(bytes(buf[ostart:oend]))
                p = oend
        elif tag == 0xA1 and ftag == 0xA0:  # negState ENUMERATED
            etag, estart, eend = _tlv(buf, fstart, fend)
            if etag == 0x0A and eend > estart:
                neg_state = buf[eend - 1]
        elif ftag == 0xA2:  # mechToken / responseToken
            otag, ostart, oend = _tlv(buf, fstart, fend)
            if otag == 0x04:
                inner = bytes(buf[ostart:oend])
    if inner:
        found = _classify(inner)
        return SecurityToken(found.mech, found.token, neg_state, tuple(mech_types))
    return SecurityToken("none", b"", neg_state, tuple(mech_types))


def unwrap(blob: bytes) -> SecurityToken:
    """Classify a security blob; raise DerError when its DER is broken."""
    if not blob:
        return SecurityToken("none")
    if blob[:8] == NTLM_SIGNATURE:
        return SecurityToken("ntlmssp", bytes(blob))
    first = blob[0]
    if first == 0x60:
        tag, start, end = _tlv(blob, 0, len(blob))
        otag, ostart, oend = _tlv(blob, start, end)
        if otag != 0x06:
            raise DerError("GSSAPI token without a mechanism OID")
        oid = blob[ostart:oend]
        if oid == OID_SPNEGO:
            return _neg_token(blob, oend, end)
        if oid in (OID_KRB5, OID_KRB5_MS):
            return SecurityToken("krb5", bytes(blob[oend + 2 : end]))
        return SecurityToken("unknown", bytes(blob))
    if first in (0xA0, 0xA1):
        return _neg_token(blob, 0, len(blob))
    return _classify(bytes(blob))


def hand_to_kerberos(kerberos: GssKerberos | None, token: bytes, is_orig: bool, ts: float) -> bool:
    """THE call site for Kerberos found inside SPNEGO/GSSAPI (SMB, DCE/RPC, HTTP Negotiate).

    ``token`` is the Kerberos message (AP-REQ 0x6e, AP-REP 0x6f or KRB-ERROR 0x7e), bare
    or GSS-wrapped. It goes to the carrier flow's :class:`protocols.kerberos.GssKerberos`,
    which pairs AP-REQ with its answer and emits Zeek's ``kerberos`` record; False when
    the carrier has no tracker or the token is not one the tracker reads (the caller
    counts it).
    """
    if kerberos is None:
        return False
    return kerberos.token(token, is_orig, ts)


def handle_blob(ctx: Any, ntlm: NtlmTracker, blob: bytes, is_orig: bool, ts: float,
                session_id: int | None = None, kerberos: GssKerberos | None = None) -> SecurityToken | None:
    """Route one security blob: NTLMSSP to ``ntlm``, Kerberos to :func:`hand_to_kerberos`.

    Returns what was found (None if the blob was malformed: counted as a weird). A SPNEGO
    negState of reject ends the NTLM exchange as failed; accept-completed as successful
    only when the carrier has no verdict of its own (the caller decides: see ``verdict``).
    """
    try:
        found = unwrap(blob)
    except DerError:
        ctx.weird("spnego_malformed", ts)
        return None
    if found.mech == "ntlmssp":
        ntlm.token(found.token, ts, session_id)
    elif found.mech == "krb5" and found.token:
        if not hand_to_kerberos(kerberos, found.token, is_orig, ts):
            ctx.weird("kerberos_in_gssapi_not_analyzed", ts)
    return found

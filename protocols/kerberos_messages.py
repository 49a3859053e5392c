"""Kerberos V5 messages (RFC 4120) decoded from DER into frozen values, with Zeek's names.

Only the fields kerberos.log and the fidelity checks use are decoded: principals, realms,
times, options, requested and ticket encryption types, pre-authentication types, error
codes and texts. :func:`decode_message` raises ``ValueError``/``IndexError`` on malformed
input (see :mod:`protocols.der`) and returns None for message types it does not model.
"""

from __future__ import annotations

import attrs

from protocols import der
from protocols.tls_certs import summarize

AS_REQ, AS_REP, TGS_REQ, TGS_REP, AP_REQ, AP_REP, KRB_ERROR = 10, 11, 12, 13, 14, 15, 30
PA_TGS_REQ = 1
PA_PK_AS_REQ = 16
PA_PK_AS_REP = 17

#: Zeek's KRB::error_msg (base/protocols/krb/consts.zeek)
ERROR_NAMES: dict[int, str] = {
    0: "KDC_ERR_NONE", 1: "KDC_ERR_NAME_EXP", 2: "KDC_ERR_SERVICE_EXP", 3: "KDC_ERR_BAD_PVNO",
    4: "KDC_ERR_C_OLD_MAST_KVNO", 5: "KDC_ERR_S_OLD_MAST_KVNO", 6: "KDC_ERR_C_PRINCIPAL_UNKNOWN",
    7: "KDC_ERR_S_PRINCIPAL_UNKNOWN", 8: "KDC_ERR_PRINCIPAL_NOT_UNIQUE", 9: "KDC_ERR_NULL_KEY",
    10: "KDC_ERR_CANNOT_POSTDATE", 11: "KDC_ERR_NEVER_VALID", 12: "KDC_ERR_POLICY",
    13: "KDC_ERR_BADOPTION", 14: "KDC_ERR_ETYPE_NOSUPP", 15: "KDC_ERR_SUMTYPE_NOSUPP",
    16: "KDC_ERR_PADATA_TYPE_NOSUPP", 17: "KDC_ERR_TRTYPE_NOSUPP", 18: "KDC_ERR_CLIENT_REVOKED",
    19: "KDC_ERR_SERVICE_REVOKED", 20: "KDC_ERR_TGT_REVOKED", 21: "KDC_ERR_CLIENT_NOTYET",
    22: "KDC_ERR_SERVICE_NOTYET", 23: "KDC_ERR_KEY_EXPIRED", 24: "KDC_ERR_PREAUTH_FAILED",
    25: "KDC_ERR_PREAUTH_REQUIRED", 26: "KDC_ERR_SERVER_NOMATCH", 27: "KDC_ERR_MUST_USE_USER2USER",
    28: "KDC_ERR_PATH_NOT_ACCEPTED", 29: "KDC_ERR_SVC_UNAVAILABLE", 31: "KRB_AP_ERR_BAD_INTEGRITY",
    32: "KRB_AP_ERR_TKT_EXPIRED", 33: "KRB_AP_ERR_TKT_NYV", 34: "KRB_AP_ERR_REPEAT",
    35: "KRB_AP_ERR_NOT_US", 36: "KRB_AP_ERR_BADMATCH", 37: "KRB_AP_ERR_SKEW",
    38: "KRB_AP_ERR_BADADDR", 39: "KRB_AP_ERR_BADVERSION", 40: "KRB_AP_ERR_MSG_TYPE",
    41: "KRB_AP_ERR_MODIFIED", 42: "KRB_AP_ERR_BADORDER", 44: "KRB_AP_ERR_BADKEYVER",
    45: "KRB_AP_ERR_NOKEY", 46: "KRB_AP_ERR_MUT_FAIL", 47: "KRB_AP_ERR_BADDIRECTION",
    48: "KRB_AP_ERR_METHOD", 49: "KRB_AP_ERR_BADSEQ", 50: "KRB_AP_ERR_INAPP_CKSUM",
    51: "KRB_AP_PATH_NOT_ACCEPTED", 52: "KRB_ERR_RESPONSE_TOO_BIG", 60: "KRB_ERR_GENERIC",
    61: "KRB_ERR_FIELD_TOOLONG", 62: "KDC_ERROR_CLIENT_NOT_TRUSTED",
    63: "KDC_ERROR_KDC_NOT_TRUSTED", 64: "KDC_ERROR_INVALID_SIG", 65: "KDC_ERR_KEY_TOO_WEAK",
    66: "KDC_ERR_CERTIFICATE_MISMATCH", 67: "KRB_AP_ERR_NO_TGT", 68: "KDC_ERR_WRONG_REALM",
    69: "KRB_AP_ERR_USER_TO_USER_REQUIRED", 70: "KDC_ERR_CANT_VERIFY_CERTIFICATE",
    71: "KDC_ERR_INVALID_CERTIFICATE", 72: "KDC_ERR_REVOKED_CERTIFICATE",
    73: "KDC_ERR_REVOCATION_STATUS_UNKNOWN", 74: "KDC_ERR_REVOCATION_STATUS_UNAVAILABLE",
    75: "KDC_ERR_CLIENT_NAME_MISMATCH", 76: "KDC_ERR_KDC_NAME_MISMATCH",
}  # fmt: skip

#: Zeek's KRB::cipher_name
CIPHER_NAMES: dict[int, str] = {
    1: "des-cbc-crc", 2: "des-cbc-md4", 3: "des-cbc-md5", 5: "des3-cbc-md5", 7: "des3-cbc-sha1",
    9: "dsaWithSHA1-CmsOID", 10: "md5WithRSAEncryption-CmsOID", 11: "sha1WithRSAEncryption-CmsOID",
    12: "rc2CBC-EnvOID", 13: "rsaEncryption-EnvOID", 14: "rsaES-OAEP-ENV-OID",
    15: "des-ede3-cbc-Env-OID", 16: "des3-cbc-sha1-kd", 17: "aes128-cts-hmac-sha1-96",
    18: "aes256-cts-hmac-sha1-96", 23: "rc4-hmac", 24: "rc4-hmac-exp", 25: "camellia128-cts-cmac",
    26: "camellia256-cts-cmac", 65: "subkey-keymaterial",
}  # fmt: skip


def error_name(code: int) -> str:
    """Zeek's name of a Kerberos error code (``KDC_ERR_PREAUTH_REQUIRED``)."""
    return ERROR_NAMES.get(code) or f"unknown-{code}"


def cipher_name(etype: int) -> str:
    """Zeek's name of a Kerberos encryption type (``aes256-cts-hmac-sha1-96``)."""
    return CIPHER_NAMES.get(etype) or f"unknown-{etype}"


@attrs.frozen(slots=True)
class ApRequest:
    """An AP-REQ: the service ticket's realm, service principal and encryption type."""

    realm: str | None
    service: str | None
    cipher: int | None
    mutual_required: bool = False


@attrs.frozen(slots=True)
class ApReply:
    """The answer to an AP-REQ: an AP-REP (success) or a KRB-ERROR (``error`` set)."""

    error: KrbError | None = None


@attrs.frozen(slots=True)
class KdcRequest:
    """AS-REQ or TGS-REQ."""

    msg_type: int
    realm: str | None
    client: str | None  # cname (AS-REQ only, in practice)
    service: str | None
    from_: float | None
    till: float | None
    forwardable: bool | None
    renewable: bool | None
    etypes: tuple[int, ...]
    padata_types: tuple[int, ...]
    cert_subject: str | None = None  # PKINIT: the client's certificate


@attrs.frozen(slots=True)
class KdcReply:
    """AS-REP or TGS-REP: the client it is for and the ticket it carries."""

    msg_type: int
    client_realm: str | None
    client: str | None
    ticket_realm: str | None
    service: str | None
    cipher: int | None  # the ticket's encryption type
    padata_types: tuple[int, ...]
    cert_subject: str | None = None  # PKINIT: the KDC's certificate


@attrs.frozen(slots=True)
class KrbError:
    """KRB-ERROR."""

    error_code: int
    client_realm: str | None
    client: str | None
    realm: str | None
    service: str | None
    error_text: str | None


KerberosMessage = KdcRequest | KdcReply | KrbError | ApRequest | ApReply


def _principal(buf: bytes, start: int, end: int) -> str:
    """A PrincipalName as Zeek writes it: the name strings joined by '/'."""
    cstart, cstop = der.expect(buf, start, end, der.SEQUENCE)
    fields = der.context_fields(buf, cstart, cstop)
    if 1 not in fields:
        raise ValueError("PrincipalName without name-string")
    nstart, nstop = fields[1]
    sstart, sstop = der.expect(buf, nstart, nstop, der.SEQUENCE)
    return "/".join([der.text(buf, s, e) for _t, s, e in _elements(buf, sstart, sstop)])


def _elements(buf: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """Each element of a SEQUENCE OF as (tag, element start, element end)."""
    items = []
    off = start
    while off < end:
        _tag, _cstart, cstop = der.tlv(buf, off, end)
        items.append((buf[off], off, cstop))
        off = cstop
    return items


def _opt(fields: dict[int, tuple[int, int]], n: int, buf: bytes, read):
    where = fields.get(n)
    return read(buf, where[0], where[1]) if where is not None else None


def _padata(buf: bytes, fields: dict[int, tuple[int, int]], n: int) -> tuple[tuple[int, int, int], ...]:
    """(padata-type, value start, value end) of each PA-DATA in field ``n``."""
    where = fields.get(n)
    if where is None:
        return ()
    sstart, sstop = der.expect(buf, where[0], where[1], der.SEQUENCE)
    items = []
    for _tag, start, stop in _elements(buf, sstart, sstop):
        pstart, pstop = der.expect(buf, start, stop, der.SEQUENCE)
        pfields = der.context_fields(buf, pstart, pstop)
        ptype = _opt(pfields, 1, buf, der.integer)
        if ptype is None:
            raise ValueError("PA-DATA without padata-type")
        value = pfields.get(2)
        if value is not None:
            vstart, vstop = der.expect(buf, value[0], value[1], der.OCTET_STRING)
        else:
            vstart = vstop = pstop
        items.append((ptype, vstart, vstop))
    return tuple(items)


def _signed_data_subject(buf: bytes, start: int, end: int) -> str | None:
    """Subject of the first certificate in a CMS ContentInfo(SignedData)."""
    cstart, cstop = der.expect(buf, start, end, der.SEQUENCE)
    _tag, _s, oid_end = der.tlv(buf, cstart, cstop)  # contentType
    wstart, wstop = der.expect(buf, oid_end, cstop, 0xA0)
    sstart, sstop = der.expect(buf, wstart, wstop, der.SEQUENCE)
    for tag, start_, stop_ in _elements(buf, sstart, sstop):
        if tag == 0xA0:  # certificates [0] IMPLICIT SET OF Certificate
            _t, cert_start, cert_stop = der.tlv(buf, start_, stop_)
            certs = _elements(buf, cert_start, cert_stop)
            if certs:
                summary = summarize(bytes(buf[certs[0][1] : certs[0][2]]))
                return summary.subject if summary is not None else None
    return None


def _pkinit_subject(buf: bytes, padata: tuple[tuple[int, int, int], ...], ptype: int) -> str | None:
    """The certificate subject in a PA-PK-AS-REQ (client) or PA-PK-AS-REP (KDC), RFC 4556."""
    for found, vstart, vstop in padata:
        if found != ptype or vstart == vstop:
            continue
        tag, start, stop = der.tlv(buf, vstart, vstop)
        if ptype == PA_PK_AS_REP:
            if tag != 0xA0:  # encKeyPack: no certificate in clear
                return None
            tag, start, stop = der.tlv(buf, start, stop)
            if tag == der.SEQUENCE:  # DHRepInfo, explicitly tagged (RFC 4556's module)
                tag, start, stop = der.tlv(buf, start, stop)  # dhSignedData
        elif tag == der.SEQUENCE:
            tag, start, stop = der.tlv(buf, start, stop)  # signedAuthPack
        if tag != 0x80:
            return None
        return _signed_data_subject(buf, start, stop)
    return None


def _encrypted_etype(buf: bytes, start: int, end: int) -> int | None:
    estart, estop = der.expect(buf, start, end, der.SEQUENCE)
    return _opt(der.context_fields(buf, estart, estop), 0, buf, der.integer)


def _ticket(buf: bytes, start: int, end: int) -> tuple[str | None, str | None, int | None]:
    """(realm, service, encryption type) of a Ticket ([APPLICATION 1])."""
    tstart, tstop = der.expect(buf, start, end, 0x61)
    sstart, sstop = der.expect(buf, tstart, tstop, der.SEQUENCE)
    fields = der.context_fields(buf, sstart, sstop)
    realm = _opt(fields, 1, buf, der.text)
    service = _opt(fields, 2, buf, _principal)
    cipher = _opt(fields, 3, buf, _encrypted_etype)
    return realm, service, cipher


def _kdc_request(msg_type: int, buf: bytes, start: int, end: int) -> KdcRequest:
    fields = der.context_fields(buf, start, end)
    padata = _padata(buf, fields, 3)
    if 4 not in fields:
        raise ValueError("KDC-REQ without req-body")
    bstart, bstop = der.expect(buf, fields[4][0], fields[4][1], der.SEQUENCE)
    body = der.context_fields(buf, bstart, bstop)
    options = _opt(body, 0, buf, der.bit_string)
    forwardable = renewable = None
    if options is not None:
        forwardable = bool(len(options) > 0 and options[0] & 0x40)
        renewable = bool(len(options) > 1 and options[1] & 0x80)
    etypes: tuple[int, ...] = ()
    where = body.get(8)
    if where is not None:
        estart, estop = der.expect(buf, where[0], where[1], der.SEQUENCE)
        etypes = tuple([der.integer(buf, s, e) for _t, s, e in _elements(buf, estart, estop)])
    return KdcRequest(
        msg_type=msg_type,
        realm=_opt(body, 2, buf, der.text),
        client=_opt(body, 1, buf, _principal),
        service=_opt(body, 3, buf, _principal),
        from_=_opt(body, 4, buf, der.generalized_time),
        till=_opt(body, 5, buf, der.generalized_time),
        forwardable=forwardable,
        renewable=renewable,
        etypes=etypes,
        padata_types=tuple([ptype for ptype, _s, _e in padata]),
        cert_subject=_pkinit_subject(buf, padata, PA_PK_AS_REQ),
    )


def _kdc_reply(msg_type: int, buf: bytes, start: int, end: int) -> KdcReply:
    fields = der.context_fields(buf, start, end)
    padata = _padata(buf, fields, 2)
    realm = service = cipher = None
    if 5 in fields:
        realm, service, cipher = _ticket(buf, fields[5][0], fields[5][1])
    return KdcReply(
        msg_type=msg_type,
        client_realm=_opt(fields, 3, buf, der.text),
        client=_opt(fields, 4, buf, _principal),
        ticket_realm=realm,
        service=service,
        cipher=cipher,
        padata_types=tuple([ptype for ptype, _s, _e in padata]),
        cert_subject=_pkinit_subject(buf, padata, PA_PK_AS_REP),
    )


def _krb_error(buf: bytes, start: int, end: int) -> KrbError:
    fields = der.context_fields(buf, start, end)
    code = _opt(fields, 6, buf, der.integer)
    if code is None:
        raise ValueError("KRB-ERROR without error-code")
    return KrbError(
        error_code=code,
        client_realm=_opt(fields, 7, buf, der.text),
        client=_opt(fields, 8, buf, _principal),
        realm=_opt(fields, 9, buf, der.text),
        service=_opt(fields, 10, buf, _principal),
        error_text=_opt(fields, 11, buf, der.text),
    )


def _ap_request(buf: bytes, start: int, end: int) -> ApRequest:
    fields = der.context_fields(buf, start, end)
    options = _opt(fields, 2, buf, der.bit_string) or b""
    realm = service = cipher = None
    if 3 in fields:
        realm, service, cipher = _ticket(buf, fields[3][0], fields[3][1])
    return ApRequest(realm, service, cipher, mutual_required=bool(options and options[0] & 0x20))


def decode_message(buf: bytes, start: int = 0, end: int | None = None) -> KerberosMessage | None:
    """Decode the Kerberos message at ``start``; None for types not modelled (KRB-SAFE, ...)."""
    stop = len(buf) if end is None else end
    tag, astart, astop = der.tlv(buf, start, stop)
    if tag & 0xE0 != 0x60:
        raise ValueError("not an APPLICATION-tagged Kerberos message")
    msg_type = tag & 0x1F
    if msg_type not in (AS_REQ, AS_REP, TGS_REQ, TGS_REP, AP_REQ, AP_REP, KRB_ERROR):
        return None
    sstart, sstop = der.expect(buf, astart, astop, der.SEQUENCE)
    if msg_type in (AS_REQ, TGS_REQ):
        return _kdc_request(msg_type, buf, sstart, sstop)
    if msg_type in (AS_REP, TGS_REP):
        return _kdc_reply(msg_type, buf, sstart, sstop)
    if msg_type == KRB_ERROR:
        return _krb_error(buf, sstart, sstop)
    if msg_type == AP_REQ:
        return _ap_request(buf, sstart, sstop)
    return ApReply()

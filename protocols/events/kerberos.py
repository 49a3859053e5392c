"""``kerberos``: one Kerberos exchange (request and its reply), as a line of Zeek's kerberos.log."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("kerberos")
@attrs.frozen(slots=True)
class Kerberos:
    """An AS, TGS or AP exchange; fields, pairing and spellings are those of Zeek's kerberos.log.

    ``client`` is "name/REALM" (AP exchanges: "/REALM", the name is encrypted), ``service``
    the ticket's service principal, ``cipher`` the ticket's encryption type by Zeek's names
    (``aes256-cts-hmac-sha1-96``, ``rc4-hmac``), ``error_msg`` the KDC's e-text or else
    Zeek's error name (``KDC_ERR_PREAUTH_REQUIRED``); ``from``/``till`` are the requested
    validity (POSIX seconds). ``error_code`` is Zeek's unlogged Info field.

    Extras beyond kerberos.log: ``req_ciphers`` (the encryption types the client asked
    for, by Zeek's names: an RC4 downgrade shows here) and ``req_padata`` (the request's
    pre-authentication types: an AS-REQ without 2 = PA-ENC-TIMESTAMP can be roasted).
    """

    ts: float
    uid: str
    id: ConnId
    request_type: str | None = None
    client: str | None = None
    service: str | None = None
    success: bool | None = None
    error_code: int | None = None
    error_msg: str | None = None
    from_: float | None = attrs.field(default=None, metadata={"zeek": "from"})
    till: float | None = None
    cipher: str | None = None
    forwardable: bool | None = None
    renewable: bool | None = None
    client_cert_subject: str | None = None
    server_cert_subject: str | None = None
    req_ciphers: tuple[str, ...] = ()
    req_padata: tuple[int, ...] = ()

"""DER builders for Kerberos test messages (RFC 4120 layouts, written out by hand)."""

from __future__ import annotations

import struct


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        head = bytes((n,))
    elif n < 0x100:
        head = bytes((0x81, n))
    else:
        head = bytes((0x82,)) + struct.pack("!H", n)
    return bytes((tag,)) + head + content


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def ctx(n: int, item: bytes) -> bytes:
    return tlv(0xA0 | n, item)


def app(n: int, item: bytes) -> bytes:
    return tlv(0x60 | n, item)


def integer(value: int) -> bytes:
    length = max(1, (value.bit_length() + 8) // 8)
    return tlv(0x02, value.to_bytes(length, "big", signed=True))


def gstr(text: str) -> bytes:
    return tlv(0x1B, text.encode())


def octets(data: bytes) -> bytes:
    return tlv(0x04, data)


def gtime(text: str) -> bytes:
    return tlv(0x18, text.encode())


def principal(name_type: int, *names: str) -> bytes:
    return seq(ctx(0, integer(name_type)), ctx(1, seq(*(gstr(n) for n in names))))


def encrypted(etype: int, kvno: int | None = 2) -> bytes:
    items = [ctx(0, integer(etype))]
    if kvno is not None:
        items.append(ctx(1, integer(kvno)))
    items.append(ctx(2, octets(bytes(48))))
    return seq(*items)


def ticket(realm: str, sname: tuple[str, ...], etype: int) -> bytes:
    return app(1, seq(ctx(0, integer(5)), ctx(1, gstr(realm)), ctx(2, principal(2, *sname)), ctx(3, encrypted(etype))))


def padata(*entries: tuple[int, bytes]) -> bytes:
    return seq(*(seq(ctx(1, integer(t)), ctx(2, octets(v))) for t, v in entries))


FORWARDABLE_RENEWABLE = bytes.fromhex("0040800000")  # unused-bits byte, then bits 1 and 8


def kdc_req(
    msg_type: int,
    realm: str,
    sname: tuple[str, ...],
    cname: tuple[str, ...] | None = None,
    etypes: tuple[int, ...] = (18, 17, 23),
    pa: tuple[tuple[int, bytes], ...] = (),
    options: bytes = FORWARDABLE_RENEWABLE,
    till: str = "20370913024805Z",
    from_: str | None = None,
) -> bytes:
    body = [ctx(0, tlv(0x03, options))]
    if cname is not None:
        body.append(ctx(1, principal(1, *cname)))
    body += [ctx(2, gstr(realm)), ctx(3, principal(2, *sname))]
    if from_ is not None:
        body.append(ctx(4, gtime(from_)))
    body += [ctx(5, gtime(till)), ctx(7, integer(12345)), ctx(8, seq(*(integer(e) for e in etypes)))]
    items = [ctx(1, integer(5)), ctx(2, integer(msg_type))]
    if pa:
        items.append(ctx(3, padata(*pa)))
    items.append(ctx(4, seq(*body)))
    return app(msg_type, seq(*items))


def as_req(cname: str, realm: str, **kw) -> bytes:
    return kdc_req(10, realm, ("krbtgt", realm), cname=(cname,), **kw)


def tgs_req(realm: str, sname: tuple[str, ...], **kw) -> bytes:
    authenticator_holder = ap_req(realm, ("krbtgt", realm), 18)
    return kdc_req(12, realm, sname, pa=((1, authenticator_holder),), **kw)


def kdc_rep(msg_type: int, crealm: str, cname: str, sname: tuple[str, ...], etype: int, pa=()) -> bytes:
    items = [ctx(0, integer(5)), ctx(1, integer(msg_type))]
    if pa:
        items.append(ctx(2, padata(*pa)))
    items += [
        ctx(3, gstr(crealm)),
        ctx(4, principal(1, cname)),
        ctx(5, ticket(crealm, sname, etype)),
        ctx(6, encrypted(18)),
    ]
    return app(msg_type, seq(*items))


def krb_error(code: int, realm: str, sname: tuple[str, ...], e_text: str | None = None, cname: str | None = None) -> bytes:
    items = [ctx(0, integer(5)), ctx(1, integer(30)), ctx(4, gtime("20250101000000Z")), ctx(5, integer(0)), ctx(6, integer(code))]
    if cname is not None:
        items += [ctx(7, gstr(realm)), ctx(8, principal(1, cname))]
    items += [ctx(9, gstr(realm)), ctx(10, principal(2, *sname))]
    if e_text is not None:
        items.append(ctx(11, gstr(e_text)))
    return app(30, seq(*items))


def ap_req(realm: str, sname: tuple[str, ...], etype: int, mutual: bool = True) -> bytes:
    options = bytes.fromhex("0020000000" if mutual else "0000000000")
    return app(
        14,
        seq(
            ctx(0, integer(5)),
            ctx(1, integer(14)),
            ctx(2, tlv(0x03, options)),
            ctx(3, ticket(realm, sname, etype)),
            ctx(4, encrypted(etype, None)),
        ),
    )


def ap_rep() -> bytes:
    return app(15, seq(ctx(0, integer(5)), ctx(1, integer(15)), ctx(2, encrypted(18, None))))


KRB5_OID = bytes.fromhex("06092a864886f712010202")


def gss(tok_id: int, message: bytes, oid: bytes = KRB5_OID) -> bytes:
    """A GSS-API InitialContextToken: [APPLICATION 0] { OID, TOK_ID, Kerberos message }."""
    return tlv(0x60, oid + struct.pack("!H", tok_id) + message)


def tcp_framed(message: bytes) -> bytes:
    return struct.pack("!I", len(message)) + message

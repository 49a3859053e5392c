"""Protocol detection by content: which parser should see a flow, on any port.

:func:`detect` looks at the first payload bytes of one direction of a flow (the start of
the TCP stream, or one UDP datagram) and answers with a service name (Zeek's names, the
ones parsers register under), :data:`NEED_MORE` when the bytes so far are a prefix of a
signature, or None. Ports are only a hint: they decide nothing alone, they only relax
the DNS plausibility check and admit a NetBIOS session request on 139.

Signatures (all checks are on fixed offsets, no copies):

* ``ssl``: a TLS handshake record (content type 22, version 3.x, length, ClientHello or
  ServerHello) or an SSLv2-framed ClientHello.
* ``smb``: a NetBIOS session message carrying ``\\xfeSMB`` (SMB2/3), ``\\xfdSMB``
  (SMB3 transform, encrypted), ``\\xfcSMB`` (compressed) or ``\\xffSMB`` (SMB1, reported
  by :func:`is_smb1` so the engine can count it); a NetBIOS session request on 139.
* ``dce_rpc``: a connection-oriented DCE/RPC v5.0 PDU header with a known packet type,
  a sane data representation and fragment length.
* ``krb`` (UDP) / ``krb_tcp`` (TCP, 4-byte record marker): a Kerberos message, i.e. an
  ASN.1 application tag 10-15 or 30 around a SEQUENCE.
* ``http``: an HTTP/1.x request line (known method, space, target) or a status line.
* ``dns``: a DNS header with a plausible opcode, counts and a well-formed first question
  name (UDP; TCP after the 2-byte length prefix).
"""

from __future__ import annotations

from typing import Final

#: returned when the bytes so far match the start of a signature but are too short
NEED_MORE: Final = "?"

#: how many leading bytes of a direction :func:`detect` needs at most to decide
MAX_HEAD = 256

SERVICES: Final = ("ssl", "smb", "dce_rpc", "krb", "krb_tcp", "http", "dns")

_DNS_PORTS = frozenset((53, 137, 5353, 5355))
_NETBIOS_SSN_PORT = 139

_HTTP_METHODS = (
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE", b"PATCH",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"SEARCH",
    b"REPORT", b"MKACTIVITY", b"CHECKOUT", b"MERGE", b"SUBSCRIBE", b"UNSUBSCRIBE", b"NOTIFY",
    b"RPC_IN_DATA", b"RPC_OUT_DATA", b"BCOPY", b"BDELETE", b"BMOVE", b"BPROPFIND", b"POLL",
)
_LONGEST_METHOD = max(len(m) for m in _HTTP_METHODS)

# Kerberos message types as ASN.1 [APPLICATION n] constructed tags (0x60 | n)
_KRB_TAGS = frozenset((0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x7E))  # AS/TGS req/rep, AP req/rep, error

# SMB protocol ids after the 4-byte NetBIOS session header
_SMB2 = b"\xfeSMB"
_SMB3_TRANSFORM = b"\xfdSMB"
_SMB_COMPRESSED = b"\xfcSMB"
_SMB1 = b"\xffSMB"
_SMB_IDS = (_SMB2, _SMB3_TRANSFORM, _SMB_COMPRESSED, _SMB1)

_DCERPC_MAX_PTYPE = 20


def detect(is_tcp: bool, data: bytes, sport: int = 0, dport: int = 0) -> str | None:
    """Service name for a flow whose direction starts with ``data``; NEED_MORE; or None."""
    if not data:
        return NEED_MORE
    need_more = False
    for check in _TCP_CHECKS if is_tcp else _UDP_CHECKS:
        verdict = check(data, sport, dport)
        if verdict is None:
            need_more = True
        elif verdict:
            return verdict
    return NEED_MORE if need_more and len(data) < MAX_HEAD else None


def is_smb1(data: bytes) -> bool:
    """Whether a NetBIOS-framed stream start carries SMB1 (``\\xffSMB``)."""
    return len(data) >= 8 and data[0] == 0 and data[4:8] == _SMB1


# Each check returns a service name, "" (no) or None (need more bytes).


def _tls(data: bytes, sport: int, dport: int) -> str | None:
    first = data[0]
    if first == 0x16:
        if len(data) < 6:
            return None if _prefix_ok(data, (0x16, 0x03)) and (len(data) < 3 or data[2] <= 4) else ""
        if data[1] == 3 and data[2] <= 4 and ((data[3] << 8) | data[4]) >= 4 and data[5] in (1, 2):
            return "ssl"
        return ""
    if first & 0x80:
        # SSLv2 record header (2 bytes, high bit set) + CLIENT-HELLO (1) + version 2 or 3.x
        if len(data) < 5:
            return None
        if data[2] == 1 and data[3] in (0, 3) and (((first & 0x7F) << 8) | data[1]) >= 9:
            return "ssl"
    return ""


def _smb(data: bytes, sport: int, dport: int) -> str | None:
    first = data[0]
    if first == 0x81 and (sport == _NETBIOS_SSN_PORT or dport == _NETBIOS_SSN_PORT):
        return "smb"  # NetBIOS session request: SMB follows on this port
    if first != 0:
        return ""
    if len(data) < 8:
        if len(data) <= 4:
            return None
        head = data[4:]
        return None if any(smb_id.startswith(head) for smb_id in _SMB_IDS) else ""
    if data[4:8] in _SMB_IDS:
        return "smb"
    return ""


def _dce_rpc(data: bytes, sport: int, dport: int) -> str | None:
    if data[0] != 5:
        return ""
    if len(data) < 10:
        if len(data) >= 2 and data[1] != 0:
            return ""
        if len(data) >= 3 and data[2] > _DCERPC_MAX_PTYPE:
            return ""
        return None
    if data[1] != 0 or data[2] > _DCERPC_MAX_PTYPE:
        return ""
    drep = data[4]
    if drep not in (0x10, 0x00) or data[5] > 3:
        return ""  # integer representation big/little endian; character ASCII/EBCDIC; float 0-3
    frag_len = data[8] | (data[9] << 8) if drep == 0x10 else (data[8] << 8) | data[9]
    if frag_len < 16:
        return ""
    return "dce_rpc"


def _krb_message(data: bytes, off: int) -> bool | None:
    """Whether ``data[off:]`` starts a Kerberos message (tag, DER length, SEQUENCE)."""
    end = len(data)
    if off >= end:
        return None
    if data[off] not in _KRB_TAGS:
        return False
    if off + 1 >= end:
        return None
    length_byte = data[off + 1]
    if length_byte < 0x80:
        inner = off + 2
    elif 0x81 <= length_byte <= 0x84:
        inner = off + 2 + (length_byte & 0x7F)
    else:
        return False
    if inner >= end:
        return None
    return data[inner] == 0x30


def _krb_tcp(data: bytes, sport: int, dport: int) -> str | None:
    if data[0] & 0x80:
        return ""  # the reserved high bit of the record marker
    if len(data) >= 4:
        record = int.from_bytes(data[0:4], "big")
        if record < 16 or record > 0x00FFFFFF:
            return ""
    verdict = _krb_message(data, 4)
    if verdict is None:
        return None
    return "krb_tcp" if verdict else ""


def _krb_udp(data: bytes, sport: int, dport: int) -> str | None:
    verdict = _krb_message(data, 0)
    if verdict is None:
        return ""  # a datagram is whole: too short is not Kerberos
    return "krb" if verdict else ""


def _http(data: bytes, sport: int, dport: int) -> str | None:
    if data[0] == 0x48:  # "H": a status line, or HEAD
        if data.startswith(b"HTTP/1.") and len(data) >= 9:
            return "http"
        if b"HTTP/1.".startswith(data[:7]) and len(data) < 9:
            return None
    space = data.find(b" ", 0, _LONGEST_METHOD + 1)
    if space < 0:
        if len(data) <= _LONGEST_METHOD and any(m.startswith(data) for m in _HTTP_METHODS):
            return None
        return ""
    if data[:space] not in _HTTP_METHODS:
        return ""
    if len(data) <= space + 1:
        return None
    target = data[space + 1]
    if target == 0x2F or target == 0x2A or 0x41 <= (target & 0xDF) <= 0x5A:
        return "http"  # "/path", "*", "http://..." or "host:port" (CONNECT)
    return ""


def _dns_message(data: bytes, off: int, relaxed: bool) -> bool:
    """Whether a whole DNS message starting at ``off`` looks like DNS (header + first question)."""
    end = len(data)
    if end - off < 12:
        return False
    flags = (data[off + 2] << 8) | data[off + 3]
    opcode = (flags >> 11) & 0xF
    if opcode not in (0, 1, 2, 4, 5):
        return False
    qdcount = (data[off + 4] << 8) | data[off + 5]
    ancount = (data[off + 6] << 8) | data[off + 7]
    nscount = (data[off + 8] << 8) | data[off + 9]
    arcount = (data[off + 10] << 8) | data[off + 11]
    if qdcount > 16 or ancount > 512 or nscount > 512 or arcount > 512:
        return False
    if qdcount == 0:
        # an update or a response without question echo: only believable on a DNS port
        return relaxed and (ancount + nscount + arcount) > 0
    pos = off + 12
    name_len = 0
    while True:
        if pos >= end:
            return False
        label = data[pos]
        if label == 0:
            pos += 1
            break
        if label & 0xC0:
            return False  # no compression pointer can precede the first name
        name_len += label + 1
        if name_len > 255:
            return False
        pos += label + 1
    if pos + 4 > end:
        return False
    qclass = ((data[pos + 2] << 8) | data[pos + 3]) & 0x7FFF  # mDNS unicast-response bit
    return qclass in (1, 3, 4, 254, 255) or relaxed


def _dns_udp(data: bytes, sport: int, dport: int) -> str | None:
    relaxed = sport in _DNS_PORTS or dport in _DNS_PORTS
    return "dns" if _dns_message(data, 0, relaxed) else ""


def _dns_tcp(data: bytes, sport: int, dport: int) -> str | None:
    if len(data) < 2:
        return None
    length = (data[0] << 8) | data[1]
    if length < 12:
        return ""
    if len(data) < 2 + min(length, 64):
        return None
    relaxed = sport in _DNS_PORTS or dport in _DNS_PORTS
    return "dns" if _dns_message(data[: 2 + length], 2, relaxed) else ""


def _prefix_ok(data: bytes, expected: tuple[int, ...]) -> bool:
    return all(data[i] == value for i, value in enumerate(expected[: len(data)]))


_TCP_CHECKS = (_tls, _smb, _dce_rpc, _krb_tcp, _http, _dns_tcp)
_UDP_CHECKS = (_krb_udp, _dns_udp)

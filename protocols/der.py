"""A minimal DER reader: type-length-value walking over a bytes buffer, nothing more.

Kerberos messages are small, their tags single-byte, their structure fixed by RFC 4120, so
a few index computations replace a general ASN.1 library (impacket's pyasn1 structures
cost ~100x more per message and raise a zoo of exception types on bad input). Every
function raises ``ValueError`` (or ``IndexError``) on malformed input and nothing else.
"""

from __future__ import annotations

import calendar

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
OID = 0x06
GENERAL_STRING = 0x1B
GENERALIZED_TIME = 0x18


def tlv(buf: bytes, off: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the element at ``off``, which must end by ``end``."""
    if off + 2 > end:
        raise ValueError("DER element header truncated")
    tag = buf[off]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte DER tags are not used by Kerberos")
    length = buf[off + 1]
    off += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or off + count > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[off : off + count], "big")
        off += count
    if off + length > end:
        raise ValueError("DER element overruns its container")
    return tag, off, off + length


def expect(buf: bytes, off: int, end: int, tag: int) -> tuple[int, int]:
    """Content range of the element at ``off``, which must carry ``tag``."""
    found, start, stop = tlv(buf, off, end)
    if found != tag:
        raise ValueError(f"DER tag 0x{found:02x} where 0x{tag:02x} was expected")
    return start, stop


def context_fields(buf: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """The ``[n]`` explicitly tagged fields of a SEQUENCE's content: n -> inner element range."""
    fields: dict[int, tuple[int, int]] = {}
    off = start
    while off < end:
        tag, cstart, cstop = tlv(buf, off, end)
        if tag & 0xE0 == 0xA0:
            fields[tag & 0x1F] = (cstart, cstop)
        off = cstop
    return fields


def integer(buf: bytes, start: int, end: int) -> int:
    """The INTEGER element at ``start``."""
    cstart, cstop = expect(buf, start, end, INTEGER)
    if cstart == cstop or cstop - cstart > 9:
        raise ValueError("bad DER INTEGER length")
    return int.from_bytes(buf[cstart:cstop], "big", signed=True)


def text(buf: bytes, start: int, end: int) -> str:
    """A GeneralString (or any string type) at ``start``, as text (non-UTF-8 kept as \\xHH)."""
    tag, cstart, cstop = tlv(buf, start, end)
    if tag not in (GENERAL_STRING, 0x0C, 0x13, 0x16, 0x1A):
        raise ValueError(f"DER tag 0x{tag:02x} is not a string")
    return bytes(buf[cstart:cstop]).decode("utf-8", "backslashreplace")


def generalized_time(buf: bytes, start: int, end: int) -> float:
    """A KerberosTime ("YYYYMMDDHHMMSSZ") as POSIX seconds."""
    cstart, cstop = expect(buf, start, end, GENERALIZED_TIME)
    raw = bytes(buf[cstart:cstop])
    if len(raw) < 15 or raw[14:15] != b"Z":
        raise ValueError("KerberosTime is not YYYYMMDDHHMMSSZ")
    fields = (int(raw[0:4]), int(raw[4:6]), int(raw[6:8]), int(raw[8:10]), int(raw[10:12]), int(raw[12:14]))
    return float(calendar.timegm(fields))


def bit_string(buf: bytes, start: int, end: int) -> bytes:
    """The bytes of a BIT STRING (the unused-bits count dropped)."""
    cstart, cstop = expect(buf, start, end, BIT_STRING)
    if cstart == cstop:
        raise ValueError("empty BIT STRING")
    return bytes(buf[cstart + 1 : cstop])

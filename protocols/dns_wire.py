"""DNS message decoding: header, questions and answer-section records, as Zeek reads them.

One call to :func:`parse_message` per message; it never raises. Malformed input stops the
decoding where it went wrong and is reported in ``DnsMessage.weirds`` under Zeek's weird
names (``DNS_truncated_ans_too_short``, ``DNS_label_forward_compress_offset``, ...).

Names follow Zeek's ``ExtractName``: compression pointers must point strictly backwards
(so a chain of pointers always ends: each jump lands before the previous pointer and the
readable region shrinks to end at it), a name holds at most 512 bytes, labels at most 63
(NetBIOS excepted), and names are lower-cased. Only the answer section is decoded (Zeek
skips authority and additional records by default); the other sections are counted.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

from protocols.zeek_text import printable as text

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_U16 = struct.Struct("!H")
_U16x3 = struct.Struct("!HHH")

#: RR types Zeek decodes into their own events without a dns.log answer
_NO_REPLY_TYPES = frozenset({13, 32, 41, 64, 65, 249, 250, 257})
#: RR types Zeek knows (anything else is ``<unknown type=N>`` plus a weird)
_KNOWN_TYPES = frozenset(
    {1, 2, 5, 6, 11, 12, 13, 15, 16, 28, 29, 32, 33, 35, 38, 41, 43, 44, 46, 47, 48, 50,
     51, 64, 65, 99, 249, 250, 257, 65534}
)
_NAME_TYPES = frozenset({2, 5, 12})


class DnsQuestion(NamedTuple):
    """One question: lower-cased name, type and class."""

    name: str
    qtype: int
    qclass: int


class DnsRecord(NamedTuple):
    """One answer-section record.

    ``reply`` is Zeek's dns.log summary (None for types Zeek logs no answer for, "" for
    WKS); ``data`` is the presentation form used for comparisons (None when there is none).
    """

    name: str
    rtype: int
    rclass: int
    ttl: int
    reply: str | None
    data: str | None


class DnsMessage(NamedTuple):
    """A decoded DNS message: header fields, what could be decoded, and what went wrong.

    A NamedTuple rather than a frozen attrs class: it is built once per packet, and a
    16-field frozen attrs instance costs several microseconds more to construct.
    """

    trans_id: int
    qr: bool
    opcode: int
    aa: bool
    tc: bool
    rd: bool
    ra: bool
    z: int
    rcode: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int
    questions: tuple[DnsQuestion, ...]
    answers: tuple[DnsRecord, ...]
    weirds: tuple[tuple[str, str | None], ...]


class _Stop(Exception):
    """Decoding cannot go on; carries Zeek's weird name."""

    def __init__(self, weird: str, addl: str | None = None) -> None:
        super().__init__(weird)
        self.weird = weird
        self.addl = addl


def read_name(
    buf: bytes, pos: int, end: int, weirds: list, netbios: bool = False, seen: dict | None = None
) -> tuple[bytes, int]:
    """Decode the (possibly compressed) name at ``pos``; return (raw name, position after it).

    Problems are appended to ``weirds``; the name read so far is returned, as Zeek does.
    ``seen`` (offset -> name) lets one message reuse names decoded cleanly before: a
    pointer always targets an earlier offset, whose name ended before the pointer, so
    the cached decoding is the one the pointer would give.
    """
    start = pos
    n_weirds = len(weirds)
    parts: list[bytes] = []
    total = 0
    after = -1
    limit = end
    while pos < limit:
        length = buf[pos]
        pos += 1
        if pos >= limit or length == 0:
            break
        if length >= 0xC0:
            target = ((length & 0x3F) << 8) | buf[pos]
            pos += 1
            pointer_at = pos - 2
            if after < 0:
                after = pos
            if target >= pointer_at:
                weirds.append(("DNS_label_forward_compress_offset", None))
                break
            if seen is not None:
                known = seen.get(target)
                if known is not None:
                    if known:
                        parts.append(known)
                        total += len(known) + 1
                    break
            limit = pointer_at
            pos = target
            continue
        if length > limit - pos:
            weirds.append(("DNS_label_len_gt_pkt", None))
            pos = limit
            break
        if length > 63 and not netbios:
            weirds.append(("DNS_label_too_long", None))
            break
        if length >= 512 - total:
            weirds.append(("DNS_label_len_gt_name_len", None))
            break
        parts.append(buf[pos : pos + length])
        total += length + 1
        pos += length
    if after < 0:
        after = pos
    if total >= 255:
        weirds.append(("DNS_NAME_too_long", None))
    raw = b".".join(parts).lower()
    if seen is not None and len(weirds) == n_weirds:
        seen[start] = raw
    return raw, after


def _name_text(buf: bytes, pos: int, end: int, weirds: list, netbios: bool) -> tuple[str, int]:
    raw, pos = read_name(buf, pos, end, weirds, netbios)
    return text(raw), pos


def _char_strings(buf: bytes, pos: int, end: int) -> list[bytes]:
    """The <character-string>s filling ``buf[pos:end]`` (TXT, SPF); a short one ends the list."""
    out = []
    while pos < end:
        length = buf[pos]
        pos += 1
        if pos + length > end:
            raise _Stop("DNS_TXT_char_str_past_rdlen")
        out.append(buf[pos : pos + length])
        pos += length
    return out


def _rdata(
    buf: bytes, rtype: int, name: str, pos: int, rdlen: int, weirds: list, netbios: bool
) -> tuple[str | None, str | None]:
    """Zeek's dns.log summary and the presentation form of one record's RDATA."""
    end = pos + rdlen
    if rtype == 1:
        if rdlen != 4:
            raise _Stop("DNS_RR_bad_length")
        addr = f"{buf[pos]}.{buf[pos + 1]}.{buf[pos + 2]}.{buf[pos + 3]}"
        return addr, addr
    if rtype == 28 or rtype == 38:
        if rdlen != 16:
            raise _Stop("DNS_RR_bad_length")
        addr = ipaddress.IPv6Address(buf[pos:end]).compressed
        return addr, addr
    if rtype in _NAME_TYPES:
        target, after = _name_text(buf, pos, end, weirds, netbios)
        if after != end:
            weirds.append(("DNS_RR_length_mismatch", None))
        return target, target
    if rtype == 15:
        if rdlen < 3:
            raise _Stop("DNS_RR_bad_length")
        pref = _U16.unpack_from(buf, pos)[0]
        host, after = _name_text(buf, pos + 2, end, weirds, netbios)
        if after != end:
            weirds.append(("DNS_RR_length_mismatch", None))
        return host, f"{pref} {host}"
    if rtype == 16 or rtype == 99:
        label = "TXT" if rtype == 16 else "SPF"
        reply = " ".join(f"{label} {len(s)} {text(s)}" for s in _char_strings(buf, pos, end))
        return reply, reply
    if rtype == 33:
        if netbios:
            return None, None
        if rdlen < 7:
            raise _Stop("DNS_RR_bad_length")
        prio, weight, port = _U16x3.unpack_from(buf, pos)
        target, after = _name_text(buf, pos + 6, end, weirds, netbios)
        if after != end:
            weirds.append(("DNS_RR_length_mismatch", None))
        return target, f"{prio} {weight} {port} {target}"
    if rtype == 6:
        mname, p = _name_text(buf, pos, end, weirds, netbios)
        rname, p = _name_text(buf, p, end, weirds, netbios)
        if end - p < 20:
            raise _Stop("DNS_RR_bad_length")
        serial = struct.unpack_from("!I", buf, p)[0]
        if p + 20 != end:
            weirds.append(("DNS_RR_length_mismatch", None))
        return mname, f"{mname} {rname} {serial}"
    if rtype == 11:
        return "", None
    if rtype in _NO_REPLY_TYPES:
        return None, None
    return _rdata_rare(buf, rtype, name, pos, end, weirds, netbios), None


def _rdata_rare(
    buf: bytes, rtype: int, name: str, pos: int, end: int, weirds: list, netbios: bool
) -> str:
    """Zeek's summaries of DNSSEC and other infrequent record types."""
    rdlen = end - pos
    if rtype == 46:  # RRSIG
        if rdlen < 18:
            raise _Stop("DNS_RR_bad_length")
        covered = _U16.unpack_from(buf, pos)[0]
        signer, _ = _name_text(buf, pos + 18, end, weirds, netbios)
        return f"RRSIG {covered} {signer or '<Root>'}"
    if rtype == 48:  # DNSKEY
        if rdlen < 4:
            raise _Stop("DNS_RR_bad_length")
        return f"DNSKEY {buf[pos + 3]}"
    if rtype == 43:  # DS
        if rdlen < 4:
            raise _Stop("DNS_RR_bad_length")
        return f"DS {buf[pos + 2]} {buf[pos + 3]}"
    if rtype == 47:  # NSEC
        nxt, _ = _name_text(buf, pos, end, weirds, netbios)
        return f"NSEC {name} {nxt}"
    if rtype == 50:
        return "NSEC3"
    if rtype == 51:
        return "NSEC3PARAM"
    if rtype == 65534:
        return "BIND9 signing signal"
    if rtype == 44:  # SSHFP
        if rdlen < 2:
            raise _Stop("DNS_RR_bad_length")
        return f"SSHFP: {buf[pos + 2 : end].hex()}"
    if rtype == 29:  # LOC
        if rdlen < 4:
            raise _Stop("DNS_RR_bad_length")
        return f"LOC:  {buf[pos + 1]} {buf[pos + 2]} {buf[pos + 3]}"
    if rtype == 35:  # NAPTR
        if rdlen < 4:
            raise _Stop("DNS_RR_bad_length")
        order, pref = struct.unpack_from("!HH", buf, pos)
        p = pos + 4
        fields = []
        for _ in range(3):
            if p >= end or p + 1 + buf[p] > end:
                raise _Stop("DNS_NAPTR_RR_too_short")
            fields.append(text(buf[p + 1 : p + 1 + buf[p]]))
            p += 1 + buf[p]
        replacement, _ = _name_text(buf, p, end, weirds, netbios)
        tail = " ".join(s for s in (fields[2], replacement) if s)
        return f"NAPTR {order} {pref} {fields[0]} {fields[1]} {tail}"
    weirds.append(("DNS_RR_unknown_type", str(rtype)))
    return f"<unknown type={rtype}>"


#: more questions than this and Zeek takes the message for non-DNS traffic on port 53
MAX_QUESTIONS = 25


def parse_message(buf: bytes, netbios: bool = False) -> DnsMessage | None:
    """Decode one DNS message; None if it is shorter than a header. Never raises."""
    if len(buf) < 12:
        return None
    trans_id, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(buf, 0)
    weirds: list[tuple[str, str | None]] = []
    questions: list[DnsQuestion] = []
    answers: list[DnsRecord] = []
    end = len(buf)
    pos = 12
    seen: dict[int, bytes] = {}
    try:
        if qdcount > MAX_QUESTIONS:
            raise _Stop("DNS_Conn_count_too_large")
        for _ in range(qdcount):
            raw, pos = read_name(buf, pos, end, weirds, netbios, seen)
            if end - pos < 4:
                raise _Stop("DNS_truncated_quest_too_short")
            qtype, qclass = struct.unpack_from("!HH", buf, pos)
            pos += 4
            questions.append(DnsQuestion(text(raw), qtype, qclass))
        for _ in range(ancount):
            raw, pos = read_name(buf, pos, end, weirds, netbios, seen)
            if end - pos < 10:
                raise _Stop("DNS_truncated_ans_too_short")
            rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(buf, pos)
            pos += 10
            if rdlen > end - pos:
                raise _Stop("DNS_truncated_RR_rdlength_lt_len")
            name = text(raw)
            if rtype in _KNOWN_TYPES:
                reply, data = _rdata(buf, rtype, name, pos, rdlen, weirds, netbios)
            else:
                weirds.append(("DNS_RR_unknown_type", str(rtype)))
                reply, data = f"<unknown type={rtype}>", None
            answers.append(DnsRecord(name, rtype, rclass, ttl, reply, data))
            pos += rdlen
    except _Stop as stop:
        weirds.append((stop.weird, stop.addl))
    except (IndexError, struct.error, ValueError):
        weirds.append(("DNS_truncated_RR", None))
    return DnsMessage(
        trans_id,
        bool(flags & 0x8000),
        (flags >> 11) & 0xF,
        bool(flags & 0x0400),
        bool(flags & 0x0200),
        bool(flags & 0x0100),
        bool(flags & 0x0080),
        (flags >> 4) & 0x7,
        flags & 0xF,
        qdcount,
        ancount,
        nscount,
        arcount,
        tuple(questions),
        tuple(answers),
        tuple(weirds),
    )

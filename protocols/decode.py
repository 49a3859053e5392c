"""Packet decoding, link layer to transport header, as one flat tuple per packet.

:func:`decode` turns a captured frame into a :data:`Decoded` tuple (see the field list
below) or into a string: the counter key saying why the packet is skipped. Malformed
headers use Zeek's weird names (``weird:truncated_IP``, ``weird:bad_IP_checksum``,
``weird:truncated_header``, ...) so counts line up with weird.log; packets we simply do
not analyse are ``skip:<reason>`` (``skip:non_ip``, ``skip:ipv6_esp``, ...).

An IP fragment decodes to a :data:`Fragment` tuple (first field :data:`FRAGMENT`) for
the engine's :class:`protocols.fragments.FragmentReassembler`; the datagram it completes
goes through :func:`decode_reassembled`, then on like any packet.

The checks follow Zeek's IP analyzer in the same order: the IP total length must fit in
the *wire* length (``truncated_IP_len``), a snaplen cut is fine (the flow engine then
sees a partial payload), the IPv4 header checksum is verified, IHL and data offset must
be sane. IPv6 extension headers (hop-by-hop, routing, destination options, fragment,
AH) are walked; ESP and "no next header" stop decoding. An atomic IPv6 fragment (offset
0, no more fragments) is an ordinary packet, as in Zeek.

Speed matters more than elegance here: no objects per packet, ``struct.unpack_from`` on
the frame bytes, Ethernet/IPv4/TCP on the shortest path. Addresses stay ``bytes`` (the
flow table hashes them); text forms are made once per flow when its conn is logged.
"""

from __future__ import annotations

import struct
from typing import Union

from protocols import linktypes

#: Field positions of a :data:`Decoded` tuple.
PROTO = 0  # IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, anything else)
SRC = 1  # source address, 4 or 16 bytes
DST = 2  # destination address
SPORT = 3  # TCP/UDP source port; ICMP type; 0 for other protocols
DPORT = 4  # TCP/UDP destination port; ICMP code; 0 for other protocols
IP_LEN = 5  # IP total length per the header (header + payload): conn's *_ip_bytes
L4_OFF = 6  # offset of the transport header in DATA
L4_LEN = 7  # transport length per the IP header (transport header + payload)
PAY_OFF = 8  # offset of the transport payload in DATA
PAY_LEN = 9  # payload length per the headers (may exceed what was captured)
CAP_END = 10  # end of the captured bytes of this packet in DATA (link padding trimmed)
FLAGS = 11  # TCP flags; UDP length field; 0 otherwise
SEQ = 12  # TCP sequence number; UDP checksum field; 0 otherwise
ACK = 13  # TCP acknowledgement number
WIN = 14  # TCP window (unscaled)
VLANS = 15  # VLAN id stack (outermost first) or None
DATA = 16  # the bytes the offsets refer to (the frame, or a reassembled datagram)
NOTE = 17  # a non-fatal weird name met while decoding (``ip_hdr_len_zero``) or None
KEY = 18  # TCP/UDP: the directional flow key (see :func:`flow_key`); None otherwise

Decoded = tuple  # the 19 fields above; a plain tuple because it is built per packet

#: first field of a Fragment tuple:
#: (FRAGMENT, version, src, dst, ident, proto, frag_field, header_len, total_len, payload, vlans)
#: ``proto`` is the IPv4 protocol / the IPv6 fragment header's next header, ``frag_field``
#: the IPv4 flags+offset word / the IPv6 offset+M word, ``header_len`` the bytes before the
#: fragment data (IPv6: through the fragment header), ``payload`` the captured bytes after it
FRAGMENT = -1
Fragment = tuple
DecodeResult = Union[Decoded, str]

TCP = 6
UDP = 17
ICMP = 1
ICMP6 = 58

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK_FLAG = 0x10
URG = 0x20

_TCP_HEADER = struct.Struct(">HHIIBBH").unpack_from  # ports, seq, ack, offset, flags, window
_UDP_HEADER = struct.Struct(">HHHH").unpack_from  # ports, length, checksum

_ETH_IPV4 = linktypes.ETH_IPV4
_ETH_IPV6 = linktypes.ETH_IPV6
_VLAN_TPIDS = linktypes.VLAN_TPIDS
_LINK_DECODERS = linktypes.DECODERS
_ETHERNET = linktypes.ETHERNET

# IPv6 extension headers we walk through: hop-by-hop, routing, destination options,
# fragment, authentication header
_V6_HOPOPTS = 0
_V6_ROUTING = 43
_V6_FRAGMENT = 44
_V6_ESP = 50
_V6_AH = 51
_V6_NONE = 59
_V6_DSTOPTS = 60
_V6_EXTENSIONS = frozenset((_V6_HOPOPTS, _V6_ROUTING, _V6_FRAGMENT, _V6_AH, _V6_DSTOPTS))


def decode(linktype: int, data: bytes, wirelen: int, check_ip: bool = True) -> DecodeResult:
    """Decode one frame; ``wirelen`` is its length on the wire (>= the captured length).

    ``check_ip`` verifies the IPv4 header checksum (Zeek does unless run with ``-C``).
    """
    if linktype == _ETHERNET:
        end = len(data)
        if end < 14:
            return "weird:truncated_ethernet_frame"
        ethertype = (data[12] << 8) | data[13]
        if ethertype == _ETH_IPV4 and end >= 54 and data[14] == 0x45 and data[23] == TCP:
            # the shortest path: Ethernet, IPv4 without options, TCP; anything unusual
            # (bad lengths, fragments, checksum) falls through to the general decoder
            total = (data[16] << 8) | data[17]
            if (
                40 <= total <= wirelen - 14
                and not ((data[20] << 8) | data[21]) & 0x3FFF
                and not (check_ip and int.from_bytes(data[14:34], "big") % 0xFFFF)
            ):
                ip_end = 14 + total
                cap_end = ip_end if ip_end < end else end
                sport, dport, seq, ack, doff, flags, win = _TCP_HEADER(data, 34)
                doff = (doff >> 4) << 2
                l4_len = total - 20
                if 20 <= doff <= l4_len and 34 + doff <= cap_end:
                    return (TCP, data[26:30], data[30:34], sport, dport, total, 34, l4_len, 34 + doff,
                            l4_len - doff, cap_end, flags, seq, ack, win, None, data, None, data[26:38])
        if ethertype == _ETH_IPV4 or ethertype == _ETH_IPV6:
            return decode_ip(data, 14, wirelen - 14, None, check_ip)
        if ethertype in _VLAN_TPIDS:
            stacked = linktypes.vlan_stack(data, 14, ethertype)
            if stacked.__class__ is str:
                return stacked
            ethertype, off, vlans = stacked
            if ethertype == _ETH_IPV4 or ethertype == _ETH_IPV6:
                return decode_ip(data, off, wirelen - off, vlans, check_ip)
        return "skip:non_ip"
    link_decoder = _LINK_DECODERS.get(linktype)
    if link_decoder is None:
        return "skip:unsupported_linktype"
    link = link_decoder(data)
    if link.__class__ is str:
        return link
    ethertype, off, vlans = link
    if ethertype == _ETH_IPV4 or ethertype == _ETH_IPV6:
        return decode_ip(data, off, wirelen - off, vlans, check_ip)
    return "skip:non_ip"


def decode_ip(
    data: bytes, off: int, wire_remaining: int, vlans: tuple[int, ...] | None, check_ip: bool = True
) -> DecodeResult:
    """Decode the IP packet starting at ``off``; ``wire_remaining`` = wire bytes from ``off``."""
    end = len(data)
    cap = end - off
    if cap < 20:
        return "weird:truncated_IP"
    version = data[off] >> 4
    if wire_remaining < cap:
        wire_remaining = cap  # a writer that recorded wirelen < caplen: trust the bytes
    if version == 4:
        ihl = (data[off] & 0x0F) << 2
        total = (data[off + 2] << 8) | data[off + 3]
        note = None
        if total == 0:
            # TCP segmentation offload zeroes the length field; fall back to the capture
            note = "ip_hdr_len_zero"
            total = cap
        if wire_remaining < total:
            return "weird:truncated_IP_len"
        if ihl > total:
            return "weird:invalid_IP_header_size"
        if ihl > cap:
            return "weird:internally_truncated_header"
        if ihl < 20:
            return "weird:IPv4_min_header_size"
        if check_ip and int.from_bytes(data[off : off + ihl], "big") % 0xFFFF:
            return "weird:bad_IP_checksum"
        ip_end = off + total
        frag_field = (data[off + 6] << 8) | data[off + 7]
        if frag_field & 0x3FFF:
            return (FRAGMENT, 4, data[off + 12 : off + 16], data[off + 16 : off + 20],
                    (data[off + 4] << 8) | data[off + 5], data[off + 9], frag_field, ihl, total,
                    data[off + ihl : ip_end if ip_end < end else end], vlans)
        return _transport(
            data[off + 9],
            data[off + 12 : off + 16],
            data[off + 16 : off + 20],
            data,
            off + ihl,
            total - ihl,
            total,
            ip_end if ip_end < end else end,
            vlans,
            note,
        )
    if version == 6:
        if cap < 40:
            return "weird:truncated_IP"
        total = 40 + ((data[off + 4] << 8) | data[off + 5])
        if wire_remaining < total:
            return "weird:truncated_IP_len"
        ip_end = off + total
        cap_end = ip_end if ip_end < end else end
        chain = _ipv6_extensions(data, off, off + 40, cap_end, data[off + 6], total, vlans)
        if chain.__class__ is not tuple or chain[0] == FRAGMENT:
            return chain  # why the packet is skipped, or a fragment
        nxt, pos = chain
        return _transport(
            nxt, data[off + 8 : off + 24], data[off + 24 : off + 40], data, pos, total - (pos - off), total, cap_end,
            vlans, None,
        )
    return "weird:unknown_ip_version"


def _ipv6_extensions(
    data: bytes, off: int, pos: int, cap_end: int, nxt: int, total: int, vlans: tuple[int, ...] | None
) -> tuple | str:
    """Walk IPv6 extension headers from ``pos``: (next header, offset of it), a Fragment, or a skip."""
    while nxt in _V6_EXTENSIONS:
        if pos + 8 > cap_end:
            return "weird:truncated_IPv6_ext_header"
        if nxt == _V6_FRAGMENT:
            field = (data[pos + 2] << 8) | data[pos + 3]
            if field & 0xFFF9 and off >= 0:
                return (FRAGMENT, 6, data[off + 8 : off + 24], data[off + 24 : off + 40],
                        int.from_bytes(data[pos + 4 : pos + 8], "big"), data[pos], field, pos + 8 - off, total,
                        data[pos + 8 : cap_end], vlans)
            length = 8  # an atomic fragment (or one inside a reassembled datagram): go on
        elif nxt == _V6_AH:
            length = (data[pos + 1] + 2) << 2
        else:
            length = (data[pos + 1] + 1) << 3
        if pos + length > cap_end:
            return "weird:truncated_IPv6_ext_header"
        nxt = data[pos]
        pos += length
    if nxt == _V6_ESP:
        return "skip:ipv6_esp"
    if nxt == _V6_NONE:
        return "weird:ipv6_no_next"
    return nxt, pos


def decode_reassembled(
    version: int, proto: int, src: bytes, dst: bytes, payload: bytes, header_len: int,
    vlans: tuple[int, ...] | None,
) -> DecodeResult:
    """Decode a datagram rebuilt from fragments: ``payload`` follows the unfragmentable part.

    ``ip_len`` is the whole datagram's IP length (for IPv6 without the fragment header,
    which the reassembled datagram no longer has).
    """
    size = len(payload)
    if version == 4:
        return _transport(proto, src, dst, payload, 0, size, header_len + size, size, vlans, None)
    chain = _ipv6_extensions(payload, -1, 0, size, proto, 0, vlans)
    if chain.__class__ is not tuple:
        return chain
    nxt, pos = chain
    return _transport(nxt, src, dst, payload, pos, size - pos, header_len - 8 + size, size, vlans, None)


def _transport(
    proto: int, src: bytes, dst: bytes, data: bytes, l4: int, l4_len: int, ip_len: int, cap_end: int,
    vlans: tuple[int, ...] | None, note: str | None,
) -> DecodeResult:
    """Check and unpack the transport header (Zeek's CheckHeaderTrunc, then TCP's own checks)."""
    cap = cap_end - l4
    if proto == TCP:
        if l4_len < 20:
            return "weird:truncated_header"
        if cap < 20:
            return "weird:internally_truncated_header"
        sport, dport, seq, ack, doff, flags, win = _TCP_HEADER(data, l4)
        doff = (doff >> 4) << 2
        if doff < 20:
            return "weird:bad_TCP_header_len"
        if doff > l4_len or doff > cap:
            return "weird:truncated_header"
        key = src + dst + data[l4 : l4 + 4]
        return (TCP, src, dst, sport, dport, ip_len, l4, l4_len, l4 + doff, l4_len - doff, cap_end, flags, seq, ack,
                win, vlans, data, note, key if vlans is None else (key, vlans))
    if proto == UDP:
        if l4_len < 8:
            return "weird:truncated_header"
        if cap < 8:
            return "weird:internally_truncated_header"
        sport, dport, ulen, checksum = _UDP_HEADER(data, l4)
        key = src + dst + data[l4 : l4 + 4]
        return (UDP, src, dst, sport, dport, ip_len, l4, l4_len, l4 + 8, l4_len - 8, cap_end, ulen, checksum, 0, 0,
                vlans, data, note, key if vlans is None else (key, vlans))
    if proto == ICMP or proto == ICMP6:
        if l4_len < 8:
            return "weird:truncated_header"
        if cap < 8:
            return "weird:internally_truncated_header"
        return (proto, src, dst, data[l4], data[l4 + 1], ip_len, l4, l4_len, l4 + 8, l4_len - 8, cap_end, 0, 0, 0, 0,
                vlans, data, note, None)
    return (proto, src, dst, 0, 0, ip_len, l4, l4_len, l4, l4_len, cap_end, 0, 0, 0, 0, vlans, data, note, None)


def flow_key(src: bytes, dst: bytes, sport: int, dport: int, vlans: tuple[int, ...] | None) -> bytes | tuple:
    """The directional TCP/UDP flow key: addresses and ports as on the wire, plus VLANs.

    ``src + dst + sport + dport`` is exactly the header bytes of an option-less IPv4
    packet from offset 12 (and the same for IPv6 from offset 8 when TCP/UDP follows
    directly), so the engine can slice it out of the frame; with VLAN tags the key is
    ``(bytes, vlans)``, a different type, so tagged and untagged flows never collide.
    """
    raw = src + dst + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
    return raw if vlans is None else (raw, vlans)


def reverse_key(key: bytes | tuple, address_length: int) -> bytes | tuple:
    """The key of the other direction of the flow with ``key``."""
    if key.__class__ is tuple:
        return reverse_key(key[0], address_length), key[1]
    a = address_length
    return key[a : 2 * a] + key[:a] + key[2 * a + 2 : 2 * a + 4] + key[2 * a : 2 * a + 2]


def transport_checksum_ok(proto: int, src: bytes, dst: bytes, data: bytes, l4_off: int, l4_len: int) -> bool:
    """Whether the TCP/UDP/ICMP/ICMPv6 checksum over ``data[l4_off:l4_off+l4_len]`` is right.

    The one's-complement sum of 16-bit words is congruent to the big-endian integer value
    modulo 0xFFFF (2**16 == 1 mod 0xFFFF), so one ``int.from_bytes`` and one ``%`` do it.
    ICMP over IPv4 has no pseudo-header; the others add addresses, protocol and length.
    """
    total = int.from_bytes(data[l4_off : l4_off + l4_len], "big")
    if l4_len & 1:
        total <<= 8  # pad the odd byte on the right
    if proto != ICMP:
        total += int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto + l4_len
    return total % 0xFFFF == 0

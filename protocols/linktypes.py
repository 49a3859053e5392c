"""Link-layer headers: where the IP packet starts in a frame of a given DLT link type.

Each link type maps to a function ``(data) -> (ethertype, offset, vlans) | reason`` where
``ethertype`` is 0x0800 (IPv4) or 0x86DD (IPv6) for IP, another value for non-IP frames,
``offset`` is where the network header starts and ``vlans`` is the 802.1Q/802.1ad tag
stack (outermost first) or None. A string result is a counter key explaining the skip:
``weird:<name>`` for malformed headers, ``skip:<reason>`` for frames we do not analyse.

Ethernet, the common case, is decoded inline by :mod:`protocols.decode` for speed; the
function here is the same logic for tests and for the rare VLAN-tagged path.
"""

from __future__ import annotations

from typing import Callable, Union

# DLT / LINKTYPE values (https://www.tcpdump.org/linktypes.html)
NULL = 0  # BSD loopback: 4-byte address family in the capturing host's byte order
ETHERNET = 1
RAW_BSD = 12  # raw IP on some BSDs (DLT_RAW)
RAW_BSD14 = 14  # raw IP on OpenBSD (DLT_RAW)
RAW = 101  # LINKTYPE_RAW: raw IPv4 or IPv6
LOOP = 108  # OpenBSD loopback: 4-byte address family in network byte order
LINUX_SLL = 113
NFLOG = 239
IPV4 = 228
IPV6 = 229
LINUX_SLL2 = 276

NAMES = {
    NULL: "NULL",
    ETHERNET: "EN10MB",
    RAW_BSD: "RAW",
    RAW_BSD14: "RAW",
    RAW: "RAW",
    LOOP: "LOOP",
    LINUX_SLL: "LINUX_SLL",
    NFLOG: "NFLOG",
    IPV4: "IPV4",
    IPV6: "IPV6",
    LINUX_SLL2: "LINUX_SLL2",
}

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
#: 802.1Q, 802.1ad (QinQ S-tag) and the two pre-standard QinQ ethertypes
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))

# address families seen in NULL/LOOP headers: AF_INET is 2 everywhere, AF_INET6 differs
_AF_INET = 2
_AF_INET6 = frozenset((10, 23, 24, 28, 30))  # Linux, Windows/others, NetBSD/OpenBSD, FreeBSD, macOS

# NFLOG: AF_INET / AF_INET6 in the 1-byte family field, TLV type of the packet payload
_NFULA_PAYLOAD = 9

LinkResult = Union[tuple[int, int, "tuple[int, ...] | None"], str]


def ethertype_of_ip_version(data: bytes, off: int) -> int:
    """The ethertype implied by the IP version nibble at ``off`` (raw-IP link types)."""
    if off >= len(data):
        return -1
    version = data[off] >> 4
    if version == 4:
        return ETH_IPV4
    if version == 6:
        return ETH_IPV6
    return -1


def vlan_stack(data: bytes, off: int, ethertype: int) -> tuple[int, int, tuple[int, ...]] | str:
    """Walk 802.1Q/802.1ad tags from ``off`` (just after a tag TPID): (ethertype, offset, ids)."""
    ids: list[int] = []
    end = len(data)
    while ethertype in VLAN_TPIDS:
        if off + 4 > end:
            return "weird:truncated_VLAN_header"
        ids.append(((data[off] << 8) | data[off + 1]) & 0x0FFF)
        ethertype = (data[off + 2] << 8) | data[off + 3]
        off += 4
    return ethertype, off, tuple(ids)


def ethernet(data: bytes) -> LinkResult:
    """DLT 1: destination, source, ethertype, then any number of VLAN tags."""
    if len(data) < 14:
        return "weird:truncated_ethernet_frame"
    ethertype = (data[12] << 8) | data[13]
    if ethertype in VLAN_TPIDS:
        return vlan_stack(data, 14, ethertype)
    if ethertype < 0x0600:
        return "skip:non_ip"  # 802.3 length field: LLC frames (STP, CDP, ...)
    return ethertype, 14, None


def raw_ip(data: bytes) -> LinkResult:
    """DLT 101/12/14: the frame is an IP packet; the version nibble says which."""
    if not data:
        return "weird:truncated_IP"
    ethertype = ethertype_of_ip_version(data, 0)
    if ethertype < 0:
        return "weird:unknown_ip_version"
    return ethertype, 0, None


def raw_ipv4(data: bytes) -> LinkResult:
    """DLT 228: raw IPv4."""
    return ETH_IPV4, 0, None


def raw_ipv6(data: bytes) -> LinkResult:
    """DLT 229: raw IPv6."""
    return ETH_IPV6, 0, None


def _family_to_ethertype(family: int) -> int:
    if family == _AF_INET:
        return ETH_IPV4
    if family in _AF_INET6:
        return ETH_IPV6
    return -1


def null_loopback(data: bytes) -> LinkResult:
    """DLT 0: 4-byte address family in the capturing host's byte order (either order works)."""
    if len(data) < 4:
        return "weird:truncated_null_header"
    family = int.from_bytes(data[0:4], "little")
    if family > 0xFFFF:
        family = int.from_bytes(data[0:4], "big")
    ethertype = _family_to_ethertype(family)
    if ethertype < 0:
        return "skip:non_ip"
    return ethertype, 4, None


def loop(data: bytes) -> LinkResult:
    """DLT 108: 4-byte address family in network byte order."""
    if len(data) < 4:
        return "weird:truncated_null_header"
    ethertype = _family_to_ethertype(int.from_bytes(data[0:4], "big"))
    if ethertype < 0:
        return "skip:non_ip"
    return ethertype, 4, None


def _after_protocol(data: bytes, off: int, ethertype: int) -> LinkResult:
    if ethertype in VLAN_TPIDS:
        return vlan_stack(data, off, ethertype)
    return ethertype, off, None


def linux_sll(data: bytes) -> LinkResult:
    """DLT 113: 16-byte cooked header; the protocol (ethertype) is its last two bytes."""
    if len(data) < 16:
        return "weird:truncated_Linux_SLL_header"
    return _after_protocol(data, 16, (data[14] << 8) | data[15])


def linux_sll2(data: bytes) -> LinkResult:
    """DLT 276: 20-byte cooked header v2; the protocol (ethertype) is its first two bytes."""
    if len(data) < 20:
        return "weird:truncated_Linux_SLL2_header"
    return _after_protocol(data, 20, (data[0] << 8) | data[1])


def nflog(data: bytes) -> LinkResult:
    """DLT 239: 4-byte header (family, version, resource id) then TLVs; IP is the payload TLV.

    TLV length and type are in host byte order (little-endian on every capture we know);
    the length includes the 4-byte TLV header and TLVs are padded to 4 bytes.
    """
    end = len(data)
    if end < 4:
        return "weird:truncated_nflog_header"
    family = data[0]
    off = 4
    while off + 4 <= end:
        length = data[off] | (data[off + 1] << 8)
        tlv_type = data[off + 2] | (data[off + 3] << 8)
        if length < 4:
            return "weird:bad_nflog_tlv_length"
        if tlv_type == _NFULA_PAYLOAD:
            # a snaplen-truncated payload TLV is still decoded: the IP layer checks lengths
            ethertype = _family_to_ethertype(family)
            if ethertype < 0:
                ethertype = ethertype_of_ip_version(data, off + 4)
            if ethertype < 0:
                return "skip:non_ip"
            return ethertype, off + 4, None
        off += (length + 3) & ~3
    return "skip:nflog_without_payload"


#: link type -> header decoder
DECODERS: dict[int, Callable[[bytes], LinkResult]] = {
    ETHERNET: ethernet,
    NULL: null_loopback,
    LOOP: loop,
    RAW: raw_ip,
    RAW_BSD: raw_ip,
    RAW_BSD14: raw_ip,
    IPV4: raw_ipv4,
    IPV6: raw_ipv6,
    LINUX_SLL: linux_sll,
    LINUX_SLL2: linux_sll2,
    NFLOG: nflog,
}


def link_header(linktype: int, data: bytes) -> LinkResult:
    """(ethertype, network-header offset, vlans) of a frame, or a counter key for a skip."""
    decoder = DECODERS.get(linktype)
    if decoder is None:
        return "skip:unsupported_linktype"
    return decoder(data)

"""Flows with Zeek's conn.log semantics: endpoints, counters, history, TCP state, conn_state.

A :class:`Flow` is one bidirectional connection (TCP, UDP), ICMP exchange or other IP
"connection", keyed by the flow table in :mod:`protocols.dissect`. This module holds the
per-packet logic that Zeek spreads over its TCP session adapter, TCP endpoints, UDP and
ICMP analyzers and the ConnSize analyzer, and turns a finished flow into a ``conn`` event.

What follows Zeek (v6/7 sources, conn/main.zeek) exactly:

* the originator: the sender of the first packet, except (a) a first packet that is not a
  pure SYN (TCP) or any first UDP packet, sent *from* a likely server port to a port
  that is not one: Zeek's port heuristic flips it (history starts with ``^``); and (b) a
  SYN seen after the SYN-ACK of the same handshake: the roles flip there (``...^``);
* TCP endpoint states, sequence tracking (relative, wrap-aware), ``orig_bytes`` and
  ``resp_bytes`` from sequence numbers, conn_state (S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0
  RSTRH SH SHR OTH), history letters and their rules: ``a d i q`` once per direction,
  ``s h f r`` again when their sequence number changes, ``c g t w`` logarithmically
  (at 1, 10, 100, ... occurrences), upper case for the originator;
* content gaps are found when the peer acknowledges data never seen; they count in
  ``missed_bytes`` and ``G``/``g`` only while both sides are established (or cleanly
  closing), like Zeek with ``report_gaps_for_partial=F``;
* ``duration``, ``orig_bytes``, ``resp_bytes`` are left unset when the duration is 0;
  the duration stops at the last packet before both sides closed;
* ICMP: id.orig_p is the type, id.resp_p the counterpart type (echo 8 <-> 0, 128 <-> 129,
  ...) or, for one-way messages, the code; ``orig_bytes`` count ICMP payload after the
  8-byte header; UDP ``orig_bytes`` come from the UDP length field.

Deliberate differences: a packet is counted in the direction of its actual sender even
when it is the one that flips the roles; VLAN ids are part of the flow key (as with
Zeek's ``vlan_fivetuple`` conn key); extra conn fields (layer-2 frame bytes, transport
payload bytes per direction) are filled for cross-checking with other tools.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any

from protocols.events.base import ConnId
from protocols.events.conn import Conn
from protocols.reassembly import ReassemblyBudget, StreamReassembler

# TCP endpoint states, in Zeek's order
INACTIVE = 0
SYN_SENT = 1
SYN_ACK_SENT = 2
PARTIAL = 3
ESTABLISHED = 4
CLOSED = 5
RESET = 6

FIN = 0x01
SYN = 0x02
RST = 0x04
ACK = 0x10
URG = 0x20

# history "seen" bits (Zeek's HIST_*); the responder's are these shifted left by 16
_H_SYN = 0x1
_H_FIN = 0x2
_H_RST = 0x4
_H_FIN_RST = 0x8
_H_DATA = 0x10
_H_ACK = 0x20
_H_MULTI = 0x40

_M32 = 0xFFFFFFFF
_HALF = 0x80000000
_TOO_LARGE_SEQ_DELTA = 1048576

TCP = 6
UDP = 17
ICMP = 1
ICMP6 = 58

#: ports that Zeek's default scripts register as likely servers (``likely_server_ports``)
LIKELY_SERVER_PORTS = frozenset((
    21, 22, 23, 25, 53, 67, 69, 80, 81, 88, 102, 110, 111, 123, 135, 137, 139, 143, 161, 162,
    389, 443, 445, 465, 502, 514, 563, 585, 587, 614, 631, 636, 750, 989, 990, 992, 993, 995,
    1080, 1194, 1434, 1812, 1813, 2049, 2811, 3128, 3268, 3306, 3389, 4789, 5060, 5222, 5223,
    5269, 5353, 5355, 5900, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000,
))

# ICMP request/reply pairs: a type with a counterpart is a two-way exchange
_ICMP4_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17, 10: 9, 9: 10}
_ICMP6_COUNTERPART = {
    128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130,
    139: 140, 140: 139, 144: 145, 145: 144, 146: 147, 147: 146,
}

_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")

_PROTO_NAMES = {TCP: "tcp", UDP: "udp", ICMP: "icmp", ICMP6: "icmp"}


def icmp_ports(proto: int, icmp_type: int, code: int) -> tuple[int, int]:
    """Zeek's (orig_p, resp_p) for an ICMP message: (type, counterpart type or code)."""
    counterpart = (_ICMP4_COUNTERPART if proto == ICMP else _ICMP6_COUNTERPART).get(icmp_type)
    return icmp_type, code if counterpart is None else counterpart


class FlowSink:
    """What a flow reports to (the engine): data for parsers, weirds, timers."""

    tcp_close_delay: float = 5.0
    tcp_attempt_timeout: float = 5.0

    def stream_data(self, flow: "Flow", is_orig: bool, data: bytes, ts: float) -> None:
        """In-order TCP payload of one direction."""

    def stream_gap(self, flow: "Flow", is_orig: bool, length: int, ts: float) -> None:
        """``length`` bytes of one direction will never be delivered."""

    def flow_weird(self, flow: "Flow", name: str, ts: float, addl: str | None = None) -> None:
        """An anomaly on this flow (Zeek weird name)."""

    def schedule(self, flow: "Flow") -> None:
        """``flow.deadline`` was set: re-examine the flow then."""


class TcpEndpoint(StreamReassembler):
    """One side of a TCP connection (Zeek's TCP_Endpoint): state, sequence space, history.

    It is also the reassembler of the bytes this side sends (one object, fewer lookups
    per packet).
    """

    __slots__ = (
        "is_orig", "peer", "state", "prev_state", "start_seq", "last_seq", "seq_wraps", "ack_seq", "ack_wraps",
        "fin_cnt", "rst_cnt", "fin_seq", "did_close", "did_eof", "hist_last_syn", "hist_last_fin",
        "hist_last_rst", "rxmt_cnt", "rxmt_thresh", "win0_cnt", "win0_thresh", "chk_cnt", "chk_thresh",
        "gap_cnt", "gap_thresh", "seq_limit",
    )

    def __init__(self, is_orig: bool, owner: "Flow", budget: ReassemblyBudget, keep: bool) -> None:
        StreamReassembler.__init__(self, owner, self, budget, keep)
        self.is_orig = is_orig
        self.peer: TcpEndpoint = self
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.start_seq = 0
        self.last_seq = 0
        self.seq_wraps = 0
        self.ack_seq = 0
        self.ack_wraps = 0
        self.fin_cnt = 0
        self.rst_cnt = 0
        self.fin_seq = 0
        self.did_close = False
        self.did_eof = False
        self.hist_last_syn = 0
        self.hist_last_fin = 0
        self.hist_last_rst = 0
        self.rxmt_cnt = 0
        self.rxmt_thresh = 1
        self.win0_cnt = 0
        self.win0_thresh = 1
        self.chk_cnt = 0
        self.chk_thresh = 1
        self.gap_cnt = 0
        self.gap_thresh = 1
        self.seq_limit = 0  # exclusive bound of sequence numbers the fast path handles

    def set_state(self, new_state: int) -> None:
        if new_state != self.state:
            self.prev_state = self.state
            self.state = new_state

    def no_data_acked(self) -> bool:
        ack = (self.ack_wraps << 32) | self.ack_seq
        return ack == self.start_seq or ack == self.start_seq + 1

    def size(self) -> int:
        """Payload bytes from sequence numbers (Zeek's TCP_Endpoint::Size)."""
        if (
            self.prev_state == SYN_SENT
            and self.state == RESET
            and self.peer.state == INACTIVE
            and not self.no_data_acked()
        ):
            return 0
        last = (self.seq_wraps << 32) | self.last_seq
        ack = (self.ack_wraps << 32) | self.ack_seq
        size = (last if last > ack else ack) - self.start_seq
        if size < 0:
            return 0
        if size:
            size -= 1  # the SYN octet
        if self.fin_cnt and size:
            size -= 1  # the FIN octet
        return size

    def relative_last(self) -> int:
        return ((self.seq_wraps << 32) | self.last_seq) - self.start_seq


class Flow:
    """One connection in the flow table; fields are named after the conn.log columns."""

    __slots__ = (
        "proto", "okey", "rkey", "orig_h", "resp_h", "orig_p", "resp_p", "vlans", "orig_l2", "resp_l2",
        "start_ts", "last_ts", "deadline", "orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes",
        "orig_l2_bytes", "resp_l2_bytes", "orig_payload", "resp_payload", "orig_size", "resp_size",
        "orig_chk_cnt", "orig_chk_thresh", "resp_chk_cnt", "resp_chk_thresh", "history", "hist_seen",
        "orig", "resp", "is_partial", "first_seen", "close_deferred", "deferred_gen_event", "did_weird",
        "missed_bytes", "services", "sink", "app", "app_state", "ctx", "uid", "finished", "fast", "weirds",
    )

    def __init__(
        self,
        proto: int,
        okey: Any,
        rkey: Any,
        orig_h: bytes,
        orig_p: int,
        resp_h: bytes,
        resp_p: int,
        vlans: tuple[int, ...] | None,
        ts: float,
        sink: FlowSink,
    ) -> None:
        self.proto = proto
        self.okey = okey  # flow-table key of the originator's packets
        self.rkey = rkey  # flow-table key of the responder's packets
        self.orig_h = orig_h
        self.resp_h = resp_h
        self.orig_p = orig_p
        self.resp_p = resp_p
        self.vlans = vlans
        self.orig_l2: bytes | None = None
        self.resp_l2: bytes | None = None
        self.start_ts = ts
        self.last_ts = ts
        self.deadline = float("inf")  # next time the flow must be re-examined (close, attempt)
        self.orig_pkts = 0
        self.resp_pkts = 0
        self.orig_ip_bytes = 0
        self.resp_ip_bytes = 0
        self.orig_l2_bytes = 0
        self.resp_l2_bytes = 0
        self.orig_payload = 0
        self.resp_payload = 0
        self.orig_size = -1  # UDP/ICMP payload bytes (Zeek's request_len); -1 = nothing yet
        self.resp_size = -1
        self.orig_chk_cnt = 0
        self.orig_chk_thresh = 1
        self.resp_chk_cnt = 0
        self.resp_chk_thresh = 1
        self.history = ""
        self.hist_seen = 0
        self.orig: TcpEndpoint | None = None
        self.resp: TcpEndpoint | None = None
        self.is_partial = False
        self.first_seen = 0  # bit 1: a packet from the originator, bit 2: from the responder
        self.close_deferred = False
        self.deferred_gen_event = False
        self.did_weird = False
        self.weirds: dict[str, int] | None = None  # weird name -> times raised (the engine's sampling)
        self.missed_bytes = 0
        self.services: list[str] = []
        self.sink = sink
        self.app: Any = None  # the parser bound to this flow
        self.app_state = 0  # engine's detection/parser state (see protocols.dissect)
        self.ctx: Any = None
        self.uid: str | None = None
        self.finished = False
        self.fast = False  # TCP: the next ACK/data segment may take tcp_packet's fast path

    # -- TCP setup ---------------------------------------------------------------------

    def init_tcp(self, budget: ReassemblyBudget, keep: bool) -> None:
        """Create the two endpoints and their reassemblers."""
        orig = TcpEndpoint(True, self, budget, keep)
        resp = TcpEndpoint(False, self, budget, keep)
        orig.peer = resp
        resp.peer = orig
        self.orig = orig
        self.resp = resp

    # -- history -----------------------------------------------------------------------

    def check_history(self, mask: int, code: str) -> bool:
        """Add ``code`` the first time ``mask`` is seen; True if it was seen before (Zeek)."""
        if self.hist_seen & mask:
            return True
        self.hist_seen |= mask
        self.history += code
        return False

    def scaled_history(self, code: str, count: int, threshold: int) -> tuple[int, int]:
        """Zeek's ScaledHistoryEntry: add ``code`` at the 1st, 10th, 100th, ... occurrence."""
        count += 1
        if count == threshold:
            self.history += code
            threshold *= 10
        return count, threshold

    def flip(self) -> None:
        """Swap originator and responder (Zeek's FlipRoles): everything per direction swaps."""
        self.okey, self.rkey = self.rkey, self.okey
        self.orig_h, self.resp_h = self.resp_h, self.orig_h
        self.orig_p, self.resp_p = self.resp_p, self.orig_p
        self.orig_l2, self.resp_l2 = self.resp_l2, self.orig_l2
        self.orig_pkts, self.resp_pkts = self.resp_pkts, self.orig_pkts
        self.orig_ip_bytes, self.resp_ip_bytes = self.resp_ip_bytes, self.orig_ip_bytes
        self.orig_l2_bytes, self.resp_l2_bytes = self.resp_l2_bytes, self.orig_l2_bytes
        self.orig_payload, self.resp_payload = self.resp_payload, self.orig_payload
        self.orig_size, self.resp_size = self.resp_size, self.orig_size
        self.orig_chk_cnt, self.resp_chk_cnt = self.resp_chk_cnt, self.orig_chk_cnt
        self.orig_chk_thresh, self.resp_chk_thresh = self.resp_chk_thresh, self.orig_chk_thresh
        if self.orig is not None:
            self.orig, self.resp = self.resp, self.orig
            self.orig.is_orig = True
            self.resp.is_orig = False
        self.first_seen = ((self.first_seen & 1) << 1) | ((self.first_seen & 2) >> 1)
        self.is_partial = False
        self.history += "^"

    # -- reassembler callbacks ---------------------------------------------------------

    def stream_data(self, reassembler: StreamReassembler, data: bytes, ts: float) -> None:
        self.sink.stream_data(self, reassembler.endpoint.is_orig, data, ts)

    def stream_gap(self, reassembler: StreamReassembler, seq: int, length: int, ts: float, forced: bool) -> None:
        endpoint = reassembler.endpoint
        if forced:
            # a hole given up for memory: analysis missed it, whatever the TCP state
            self.missed_bytes += length
            self.weird("reassembly_budget", ts, str(length))
        elif _is_clean(endpoint) and _is_clean(endpoint.peer):
            endpoint.gap_cnt, endpoint.gap_thresh = self.scaled_history(
                "G" if endpoint.is_orig else "g", endpoint.gap_cnt, endpoint.gap_thresh
            )
            self.missed_bytes += length
        self.sink.stream_gap(self, endpoint.is_orig, length, ts)

    def stream_inconsistency(self, reassembler: StreamReassembler, seq: int, length: int, ts: float) -> None:
        if length > 1 or reassembler.endpoint.peer.state != INACTIVE:
            self.weird("rexmit_inconsistency", ts, f"{length} bytes at relative seq {seq}")

    def weird(self, name: str, ts: float, addl: str | None = None) -> None:
        self.did_weird = True
        self.sink.flow_weird(self, name, ts, addl)

    # -- conn --------------------------------------------------------------------------

    def conn_state(self) -> str:
        """Zeek's conn_state for this flow (conn/main.zeek)."""
        if self.proto == TCP:
            return _tcp_conn_state(self)
        if self.proto == UDP:
            if self.orig_size >= 0:
                return "SF" if self.resp_size >= 0 else "S0"
            return "SHR" if self.resp_size >= 0 else "OTH"
        return "OTH"

    def conn_id(self) -> ConnId:
        return ConnId(_address(self.orig_h), self.orig_p, _address(self.resp_h), self.resp_p)


def _is_clean(endpoint: TcpEndpoint) -> bool:
    return endpoint.state == ESTABLISHED or (endpoint.state == CLOSED and endpoint.prev_state == ESTABLISHED)


def _address(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _tcp_conn_state(flow: Flow) -> str:
    orig = flow.orig
    resp = flow.resp
    os_ = orig.state
    rs = resp.state
    o_inactive = os_ == INACTIVE or os_ == PARTIAL
    r_inactive = rs == INACTIVE or rs == PARTIAL
    if rs == RESET:
        if os_ == SYN_SENT or os_ == SYN_ACK_SENT or (os_ == RESET and orig.size() == 0 and resp.size() == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if os_ == RESET:
        if r_inactive:
            return "RSTOS0" if _RSTOS0.fullmatch(flow.history) else "OTH"
        return "RSTO"
    if rs == CLOSED and os_ == CLOSED:
        return "SF"
    if os_ == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os_ == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"


def conn_event(flow: Flow, uid: str, local_nets: tuple = ()) -> Conn:
    """The ``conn`` event of a finished flow."""
    duration = flow.last_ts - flow.start_ts
    if flow.proto == TCP:
        orig_bytes = flow.orig.size()
        resp_bytes = flow.resp.size()
    else:
        orig_bytes = flow.orig_size if flow.orig_size > 0 else 0
        resp_bytes = flow.resp_size if flow.resp_size > 0 else 0
    if duration <= 0:
        duration_value = orig_value = resp_value = None
    else:
        duration_value, orig_value, resp_value = duration, orig_bytes, resp_bytes
    local_orig = local_resp = None
    if local_nets:
        local_orig = _is_local(flow.orig_h, local_nets)
        local_resp = _is_local(flow.resp_h, local_nets)
    vlans = flow.vlans
    return Conn(
        ts=flow.start_ts,
        uid=uid,
        id=flow.conn_id(),
        proto=_PROTO_NAMES.get(flow.proto, "unknown_transport"),
        service=",".join(flow.services) if flow.services else None,
        duration=duration_value,
        orig_bytes=orig_value,
        resp_bytes=resp_value,
        conn_state=flow.conn_state(),
        local_orig=local_orig,
        local_resp=local_resp,
        missed_bytes=flow.missed_bytes,
        history=flow.history or None,
        orig_pkts=flow.orig_pkts,
        orig_ip_bytes=flow.orig_ip_bytes,
        resp_pkts=flow.resp_pkts,
        resp_ip_bytes=flow.resp_ip_bytes,
        tunnel_parents=None,
        ip_proto=flow.proto,
        vlan=vlans[0] if vlans else None,
        inner_vlan=vlans[1] if vlans and len(vlans) > 1 else None,
        vlans=vlans,
        orig_l2_addr=flow.orig_l2.hex(":") if flow.orig_l2 else None,
        resp_l2_addr=flow.resp_l2.hex(":") if flow.resp_l2 else None,
        orig_l2_bytes=flow.orig_l2_bytes,
        resp_l2_bytes=flow.resp_l2_bytes,
        orig_payload_bytes=flow.orig_payload,
        resp_payload_bytes=flow.resp_payload,
    )


def _is_local(raw: bytes, local_nets: tuple) -> bool:
    value = int.from_bytes(raw, "big")
    version = 4 if len(raw) == 4 else 6
    for net_version, network, mask in local_nets:
        if net_version == version and value & mask == network:
            return True
    return False


def compile_local_nets(cidrs: tuple[str, ...] | list[str]) -> tuple:
    """(version, network int, mask int) per CIDR, for :func:`conn_event`."""
    out = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        out.append((net.version, int(net.network_address), int(net.netmask)))
    return tuple(out)


# -- per-packet logic ----------------------------------------------------------------------


def udp_packet(flow: Flow, is_orig: bool, ulen: int, ts: float) -> None:
    """A UDP datagram with a good checksum (Zeek's UDP analyzer: history D/d, sizes)."""
    payload = ulen - 8 if ulen >= 8 else 0
    if is_orig:
        if not flow.hist_seen & _H_DATA:
            flow.hist_seen |= _H_DATA
            flow.history += "D"
        flow.orig_size = payload if flow.orig_size < 0 else flow.orig_size + payload
    else:
        if not flow.hist_seen & (_H_DATA << 16):
            flow.hist_seen |= _H_DATA << 16
            flow.history += "d"
        flow.resp_size = payload if flow.resp_size < 0 else flow.resp_size + payload
    flow.last_ts = ts


def icmp_packet(flow: Flow, is_orig: bool, payload: int, ts: float) -> None:
    """An ICMP message: sizes count the payload after the 8-byte header (Zeek)."""
    if payload < 0:
        payload = 0
    if is_orig:
        flow.orig_size = payload if flow.orig_size < 0 else flow.orig_size + payload
    else:
        flow.resp_size = payload if flow.resp_size < 0 else flow.resp_size + payload
    flow.last_ts = ts


def bad_checksum(flow: Flow, is_orig: bool, ts: float) -> None:
    """A packet failed its transport checksum: ``C``/``c`` (logarithmic); it is not analysed."""
    if flow.proto == TCP:
        endpoint = flow.orig if is_orig else flow.resp
        endpoint.chk_cnt, endpoint.chk_thresh = flow.scaled_history(
            "C" if is_orig else "c", endpoint.chk_cnt, endpoint.chk_thresh
        )
    elif is_orig:
        flow.orig_chk_cnt, flow.orig_chk_thresh = flow.scaled_history("C", flow.orig_chk_cnt, flow.orig_chk_thresh)
    else:
        flow.resp_chk_cnt, flow.resp_chk_thresh = flow.scaled_history("c", flow.resp_chk_cnt, flow.resp_chk_thresh)


def _relative(start: int, cur: int, last: int, wraps: int) -> int:
    """Zeek's get_relative_seq: ``cur`` relative to ``start``, wrap-aware; < 0 = underflow."""
    delta = ((cur - last + _HALF) & _M32) - _HALF
    if delta < 0:
        if wraps and cur > last:
            wraps -= 1
    elif delta > 0 and cur < last:
        wraps += 1
    if wraps == 0:
        return ((cur - start + _HALF) & _M32) - _HALF
    return ((wraps << 32) | cur) - start


def tcp_packet(
    flow: Flow,
    is_orig: bool,
    flags: int,
    base_seq: int,
    ack_seq: int,
    window: int,
    length: int,
    data: bytes,
    pay_off: int,
    caplen: int,
    ts: float,
) -> None:
    """One TCP segment with a good checksum (Zeek's TCPSessionAdapter::Process).

    This is the whole logic, for any segment. Afterwards ``flow.fast`` says whether the
    next segments may take the engine's fast path instead (see :func:`_update_fast`).
    """
    if is_orig:
        _tcp_packet_full(flow, True, flow.orig, flow.resp, flags, base_seq, ack_seq, window, length, data, pay_off,
                         caplen, ts)
    else:
        _tcp_packet_full(flow, False, flow.resp, flow.orig, flags, base_seq, ack_seq, window, length, data, pay_off,
                         caplen, ts)
    _update_fast(flow)


def history_data_or_ack(flow: Flow, is_orig: bool, length: int) -> None:
    """``D``/``d`` for a segment with payload, else ``A``/``a`` for a pure ACK (once each)."""
    if length:
        mask = _H_DATA if is_orig else _H_DATA << 16
    else:
        mask = _H_ACK if is_orig else _H_ACK << 16
    if not flow.hist_seen & mask:
        flow.hist_seen |= mask
        if length:
            flow.history += "D" if is_orig else "d"
        else:
            flow.history += "A" if is_orig else "a"


#: hist_seen bits of D/d/A/a: once all are set, history_data_or_ack has nothing to do
HIST_DATA_ACK_ALL = (_H_DATA | _H_ACK) | ((_H_DATA | _H_ACK) << 16)


def zero_window(flow: Flow, ep: TcpEndpoint) -> None:
    """A zero-window advertisement: ``W``/``w`` logarithmically."""
    ep.win0_cnt, ep.win0_thresh = flow.scaled_history("W" if ep.is_orig else "w", ep.win0_cnt, ep.win0_thresh)


def retransmission(flow: Flow, ep: TcpEndpoint) -> None:
    """Payload that does not advance the sequence space: ``T``/``t`` logarithmically."""
    ep.rxmt_cnt, ep.rxmt_thresh = flow.scaled_history("T" if ep.is_orig else "t", ep.rxmt_cnt, ep.rxmt_thresh)


def _update_fast(flow: Flow) -> None:
    """Set ``flow.fast``: whether the engine may take its fast path for the next segments.

    The fast path (in ``protocols.dissect``) handles an ACK segment without SYN/FIN/RST
    whose sequence number is in [start, seq_limit) and whose ack is in the peer's
    [start, seq_limit), on a flow where both sides are established, both were seen, no
    FIN was sent, nothing wrapped or closed. Under those conditions the full logic only
    sets history D/A/W/T, ``last_ts``, the ack and last sequence numbers and feeds the
    reassemblers, which is what the fast path does; a test runs every capture both ways.
    """
    orig = flow.orig
    resp = flow.resp
    flow.fast = (
        orig.state == ESTABLISHED
        and resp.state == ESTABLISHED
        and flow.first_seen == 3
        and not (
            orig.seq_wraps or resp.seq_wraps or orig.ack_wraps or resp.ack_wraps or orig.fin_cnt or resp.fin_cnt
            or orig.did_close or resp.did_close
        )
        and _near_start(orig)
        and _near_start(resp)
    )


def _near_start(ep: TcpEndpoint) -> bool:
    """Set ``ep.seq_limit``; True if its last and acked numbers are in [start, limit)."""
    start = ep.start_seq
    limit = start + _HALF
    if limit > _M32:
        limit = _M32  # keep seq + length below 2**32: no wrap to think about
    ep.seq_limit = limit
    return start <= ep.last_seq < limit and start <= ep.ack_seq < limit


def _tcp_packet_full(
    flow: Flow,
    is_orig: bool,
    ep: TcpEndpoint,
    peer: TcpEndpoint,
    flags: int,
    base_seq: int,
    ack_seq: int,
    window: int,
    length: int,
    data: bytes,
    pay_off: int,
    caplen: int,
    ts: float,
) -> None:
    """The whole of Zeek's per-segment TCP logic, for any segment."""
    if is_orig:
        if not flow.first_seen & 1:
            flow.is_partial = not (flags & SYN) or bool(flags & ACK)
    elif not flow.first_seen & 2 and not flow.is_partial:
        flow.is_partial = not (flags & SYN)
    syn = flags & SYN
    fin = flags & FIN
    rst = flags & RST
    ackf = flags & ACK

    seg_len = length
    if syn:
        seg_len += 1
    if fin:
        seg_len += 1
    if rst:
        seg_len -= length
    seq_end = (base_seq + seg_len) & _M32

    # init_endpoint
    state = ep.state
    if state == INACTIVE:
        if syn:
            ep.ack_seq = ep.start_seq = base_seq
            ep.last_seq = seq_end
        else:
            ep.ack_seq = ep.start_seq = (base_seq - 1) & _M32
            ep.last_seq = base_seq
    elif state == SYN_SENT or state == SYN_ACK_SENT:
        if syn and base_seq != ep.start_seq:
            flow.weird("SYN_seq_jump", ts)
            ep.start_seq = ep.ack_seq = base_seq
            ep.last_seq = seq_end
    elif state == ESTABLISHED or state == PARTIAL:
        if syn:
            if ep.size() > 0:
                flow.weird("SYN_inside_connection", ts)
            if base_seq != ep.start_seq:
                flow.weird("SYN_seq_jump", ts)
            ep.start_seq = ep.ack_seq = base_seq
            ep.last_seq = seq_end
    elif state == RESET:
        if syn and ep.prev_state == INACTIVE:
            ep.start_seq = ep.ack_seq = base_seq
            ep.last_seq = seq_end

    rel_seq = _relative(ep.start_seq, base_seq, ep.last_seq, ep.seq_wraps)
    underflow = rel_seq < 0
    if underflow and not rst:
        flow.weird("TCP_seq_underflow_or_misorder", ts)

    # update_history
    shift = 0 if ep.is_orig else 16
    if syn:
        if fin or rst:
            if fin and rst:
                _ep_check(flow, ep, _H_FIN_RST << shift, "I")
            else:
                _ep_check(flow, ep, _H_MULTI << shift, "Q")
        else:
            code = "H" if ackf else "S"
            if _ep_check(flow, ep, _H_SYN << shift, code) and rel_seq != ep.hist_last_syn:
                flow.history += code if ep.is_orig else code.lower()
            ep.hist_last_syn = rel_seq
    elif fin and rst:
        _ep_check(flow, ep, _H_FIN_RST << shift, "I")
    elif fin:
        if _ep_check(flow, ep, _H_FIN << shift, "F") and rel_seq + length != ep.hist_last_fin:
            flow.history += "F" if ep.is_orig else "f"
        ep.hist_last_fin = rel_seq + length
    elif rst:
        if _ep_check(flow, ep, _H_RST << shift, "R") and rel_seq != ep.hist_last_rst:
            flow.history += "R" if ep.is_orig else "r"
        ep.hist_last_rst = rel_seq
    elif length or ackf:
        history_data_or_ack(flow, ep.is_orig, length)

    # update_window: only the zero-window history matters here
    if window == 0 and not rst and peer.state != CLOSED and ep.state != RESET:
        zero_window(flow, ep)

    if not (flow.orig.did_close and flow.resp.did_close):
        flow.last_ts = ts

    if syn:
        if rst:
            flow.weird("TCP_christmas", ts)
        if flags & URG:
            flow.weird("baroque_SYN", ts)
        if length > 0:
            flow.weird("SYN_with_data", ts)
    if fin:
        ep.fin_cnt += 1
        ep.fin_seq = rel_seq + seg_len
    if rst:
        ep.rst_cnt += 1

    rel_ack = 0
    if ackf:
        if peer.state == INACTIVE:
            rel_ack = 1
            if not (syn or fin or rst) and ep.state in (SYN_SENT, SYN_ACK_SENT, ESTABLISHED):
                if not flow.did_weird:
                    flow.weird("possible_split_routing", ts)
            peer.start_seq = peer.ack_seq = peer.last_seq = (ack_seq - 1) & _M32
        else:
            rel_ack = _relative(peer.start_seq, ack_seq, peer.ack_seq, peer.ack_wraps)
            if rel_ack < 0:
                rel_ack = 0
                flow.weird("TCP_ack_underflow_or_misorder", ts)
            elif not rst:
                delta_ack = ((ack_seq - peer.ack_seq + _HALF) & _M32) - _HALF
                if ack_seq == 0 and delta_ack > _TOO_LARGE_SEQ_DELTA:
                    pass  # more likely a broken ack than a connection landing on 0
                elif delta_ack > 0:
                    if ack_seq < peer.ack_seq:
                        peer.ack_wraps += 1
                    peer.ack_seq = ack_seq

    # update_last_seq
    delta_last = ((seq_end - ep.last_seq + _HALF) & _M32) - _HALF
    if (syn or rst) and (delta_last > _TOO_LARGE_SEQ_DELTA or delta_last < -_TOO_LARGE_SEQ_DELTA):
        pass
    elif fin and ep.last_seq == (ep.start_seq + 1) & _M32:
        if seq_end < ep.last_seq:
            ep.seq_wraps += 1
        ep.last_seq = seq_end
    elif ep.state == RESET:
        pass
    elif delta_last > 0:
        if seq_end < ep.last_seq:
            ep.seq_wraps += 1
        ep.last_seq = seq_end
    elif length > 0:
        retransmission(flow, ep)

    do_close, gen_event = _update_state_machine(
        flow, ep, peer, base_seq, ack_seq, length, delta_last, is_orig, flags, ts
    )

    if ackf:
        # the ack may reveal a content gap in the peer's stream
        ack_rel = rel_ack
        if peer.fin_cnt and ack_rel >= peer.fin_seq:
            ack_rel = peer.fin_seq - 1
        peer.ack_received(ack_rel, ts, flow.is_partial)
        _check_eof(flow, peer)

    flow.first_seen |= 1 if is_orig else 2

    if length > 0 and not rst and not underflow:
        if caplen >= length:
            ep.data_sent(
                rel_seq + 1 if syn else rel_seq,
                length,
                data[pay_off : pay_off + length] if ep.keep else None,
                ts,
            )
        else:
            flow.weird("truncated_tcp_payload", ts)

    _check_eof(flow, ep)
    if do_close:
        _connection_closed(flow, ep, peer, gen_event, ts)


def _ep_check(flow: Flow, ep: TcpEndpoint, mask: int, code: str) -> bool:
    if flow.hist_seen & mask:
        return True
    flow.hist_seen |= mask
    flow.history += code if ep.is_orig else code.lower()
    return False


def _seq_between(seq: int, low: int, high: int) -> bool:
    return ((seq - low + _HALF) & _M32) - _HALF >= 0 and ((seq - high + _HALF) & _M32) - _HALF <= 0


def _update_state_machine(
    flow: Flow, ep: TcpEndpoint, peer: TcpEndpoint, base_seq: int, ack_seq: int, length: int, delta_last: int,
    is_orig: bool, flags: int, ts: float,
) -> tuple[bool, bool]:
    """Zeek's UpdateStateMachine: (do_close, gen_event)."""
    state = ep.state
    syn = flags & SYN
    fin = flags & FIN
    rst = flags & RST
    ackf = flags & ACK
    do_close = gen_event = False
    if state == INACTIVE:
        if syn:
            if is_orig:
                if ackf:
                    flow.weird("connection_originator_SYN_ack", ts)
                    ep.set_state(SYN_ACK_SENT)
                else:
                    ep.set_state(SYN_SENT)
                deadline = ts + flow.sink.tcp_attempt_timeout
                if deadline < flow.deadline:
                    flow.deadline = deadline
                    flow.sink.schedule(flow)
            else:
                if ackf:
                    if peer.state != INACTIVE and peer.state != PARTIAL and not _seq_between(
                        ack_seq, peer.start_seq, peer.last_seq
                    ):
                        flow.weird("bad_SYN_ack", ts)
                elif peer.state == SYN_ACK_SENT and base_seq == ep.start_seq:
                    # the SYN-ACK was seen before its SYN: the roles were the other way round
                    flow.flip()
                    peer.set_state(ESTABLISHED)
                    flow.first_seen |= 1
                else:
                    flow.weird("simultaneous_open", ts)
                if peer.state == SYN_SENT:
                    peer.set_state(ESTABLISHED)
                elif peer.state == INACTIVE:
                    flow.weird("unsolicited_SYN_response", ts)
                ep.set_state(ESTABLISHED)
        if fin:
            ep.set_state(CLOSED)
            do_close = gen_event = True
            if peer.state != PARTIAL and not syn:
                flow.weird("spontaneous_FIN", ts)
        if rst:
            ep.set_state(RESET)
            if is_orig:
                is_reject = peer.state == ESTABLISHED
            else:
                is_reject = peer.state == SYN_SENT or peer.state == SYN_ACK_SENT
            do_close = True
            gen_event = not is_reject
            if not is_reject and peer.state == INACTIVE:
                flow.weird("spontaneous_RST", ts)
        if ep.state == INACTIVE:
            if not is_orig and length == 0 and flow.orig.state == SYN_SENT:
                pass  # an ack of the SYN before the SYN-ACK: not a partial connection
            elif ackf and peer.state == ESTABLISHED:
                ep.set_state(ESTABLISHED)
                flow.is_partial = False
                flow.first_seen |= 1 if is_orig else 2
            else:
                ep.set_state(PARTIAL)
    elif state == SYN_SENT or state == SYN_ACK_SENT:
        if syn:
            if is_orig:
                if ackf and not fin and not rst and state != SYN_ACK_SENT:
                    flow.weird("repeated_SYN_with_ack", ts)
            elif not ackf and state != SYN_SENT:
                flow.weird("repeated_SYN_reply_wo_ack", ts)
        if fin:
            if peer.state == INACTIVE or peer.state == SYN_SENT:
                flow.weird("inappropriate_FIN", ts)
            ep.set_state(CLOSED)
            do_close = gen_event = True
        if rst:
            ep.set_state(RESET)
            do_close = True
        elif length > 0:
            flow.weird("data_before_established", ts)
    elif state == ESTABLISHED or state == PARTIAL:
        if syn and state == PARTIAL and peer.state == INACTIVE and not ackf:
            flow.weird("SYN_after_partial", ts)
            ep.set_state(SYN_SENT)
        if fin and not rst:
            ep.set_state(CLOSED)
            if peer.state == RESET and peer.prev_state == CLOSED:
                peer.set_state(CLOSED)  # FIN then RST from the peer: a normal termination
            do_close = gen_event = True
        if rst:
            ep.set_state(RESET)
            do_close = True
    elif state == CLOSED:
        if syn:
            flow.weird("SYN_after_close", ts)
        if fin and delta_last > 0:
            flow.weird("FIN_advanced_last_seq", ts)
        if rst and ep.peer.state != CLOSED:
            ep.set_state(RESET)
            if not ep.did_close:
                do_close = True
            _schedule(flow, ts + flow.sink.tcp_close_delay)
    else:  # RESET
        if syn:
            flow.weird("SYN_after_reset", ts)
        if fin:
            flow.weird("FIN_after_reset", ts)
        if length > 0 and not rst:
            flow.weird("data_after_reset", ts)
    return do_close, gen_event


def _schedule(flow: Flow, deadline: float) -> None:
    if deadline < flow.deadline:
        flow.deadline = deadline
        flow.sink.schedule(flow)


def _data_pending(ep: TcpEndpoint) -> bool:
    """Zeek's DataPending: stream data below the last sequence number not yet delivered."""
    delivered = ep.next_seq
    last = ep.relative_last()
    if last < delivered:
        return False
    if delivered != last - 1 and delivered != last:
        return True
    return ep.state != RESET and ep.peer.has_undelivered()


def _check_eof(flow: Flow, ep: TcpEndpoint) -> None:
    if ep.did_eof or not (ep.fin_cnt or ep.state == CLOSED or ep.state == RESET):
        return
    if _data_pending(ep):
        return
    ep.did_eof = True
    if flow.close_deferred:
        flow.close_deferred = False
        _connection_closed(flow, ep, ep.peer, flow.deferred_gen_event, flow.last_ts)


def _connection_closed(flow: Flow, ep: TcpEndpoint, peer: TcpEndpoint, gen_event: bool, ts: float) -> None:
    """Zeek's ConnectionClosed: a side is done; when both are, the flow ends after the close delay."""
    if _data_pending(ep):
        flow.close_deferred = True
        if not flow.deferred_gen_event:
            flow.deferred_gen_event = gen_event
        return
    flow.close_deferred = False
    if ep.did_close:
        return
    ep.did_close = True
    if ep.state == RESET or peer.did_close or peer.state == INACTIVE:
        _schedule(flow, flow.last_ts + flow.sink.tcp_close_delay)


def attempt_expired(flow: Flow) -> bool:
    """Zeek's attempt timer: a SYN (or SYN-ACK) never answered."""
    return (flow.orig.state == SYN_SENT or flow.orig.state == SYN_ACK_SENT) and flow.resp.state == INACTIVE


def close_complete(flow: Flow) -> bool:
    """Whether the flow's TCP close (or reset) is complete, so the close delay applies."""
    orig = flow.orig
    resp = flow.resp
    return (orig.did_close and resp.did_close) or orig.state == RESET or resp.state == RESET or (
        (orig.did_close or resp.did_close) and (orig.state == INACTIVE or resp.state == INACTIVE)
    )

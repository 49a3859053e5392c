"""The flow engine: captured frames in, events out (``conn``, ``weird`` and parser events).

:class:`Dissector` decodes each frame (:mod:`protocols.decode`), finds or creates its
flow, runs Zeek's per-packet connection logic (:mod:`protocols.flows`), reassembles TCP
(:mod:`protocols.reassembly`) and hands application bytes to the parser that
:mod:`protocols.detect` chose by content. Finished flows become ``conn`` events; flows
end on TCP close/reset (after ``tcp_close_delay``), on an unanswered SYN (after
``tcp_attempt_timeout``), after their protocol's idle timeout, when evicted because the
table is full (the least recently active flow goes, counted as ``flows_evicted``), or at
:meth:`Dissector.finish`.

Time is packet time only: timers (close delay, attempt timeout, idle timeouts, kept in
two heaps) run as packet timestamps pass them, before the packet that passes them is
looked up, so a packet never joins a flow that is over and results do not depend on how
frames are batched; :meth:`Dissector.advance` runs them for a live capture gone quiet.

Counters (``Dissector.counters``): ``packets``; ``flows`` (created); ``flows_evicted``;
``weird:<name>`` for every anomaly (all are counted; which become ``weird`` events is
decided as Zeek samples weirds: per connection and name, per address pair and name for
fragments, per name outside flows, the first ``weird_sampling_threshold`` and then one in
``weird_sampling_rate`` (outside connections the counts restart every
``weird_sampling_duration`` seconds); on top of that at most ``weirds_per_second``
events of one name a second, so that a flood of one anomaly cannot hide the others); ``skip:<reason>`` for every packet that reaches no
flow, exactly once per packet (``skip:non_ip``, ``skip:ipv6_esp``, ``skip:ip_fragment``
for a fragment that did not complete a datagram, ``skip:<weird name>`` for a malformed
packet, ``skip:bad_TCP_checksum``, ...), so ``packets`` = the packets counted in conn
events + the ``skip:`` counters once every flow has ended; ``fragments:<name>`` from IP fragment
reassembly (fragments, reassembled, expired, evicted, dropped, not_reassembled);
``detect:<service>`` per flow detected;
``violation:<service>`` when a parser gives up.

The parser boundary: a parser is third-party code from the engine's point of view. Every
call into it (construction, ``data``, ``gap``, ``end``) is guarded by the engine's one and
only catch-all ``except Exception``: the error is counted as ``weird:analyzer_error``
(with a weird event naming the exception), treated as a violation, and the parser is not
fed again. Everything else in the engine catches only what it expects.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import socket
import struct
from typing import Any, Iterable

import attrs

import protocols.parsers  # noqa: F401  (importing it registers every parser)
from protocols.analyzer import ANALYZERS
from protocols.decode import FRAGMENT, decode, decode_reassembled, reverse_key, transport_checksum_ok
from protocols.detect import MAX_HEAD, NEED_MORE, detect, is_smb1
from protocols.events.weird import Weird
from protocols.flows import (
    ICMP,
    ICMP6,
    LIKELY_SERVER_PORTS,
    TCP,
    UDP,
    HIST_DATA_ACK_ALL,
    Flow,
    FlowSink,
    attempt_expired,
    bad_checksum,
    close_complete,
    compile_local_nets,
    conn_event,
    history_data_or_ack,
    icmp_packet,
    icmp_ports,
    retransmission,
    tcp_packet,
    udp_packet,
    zero_window,
)
from protocols.fragments import FragmentReassembler
from protocols.linktypes import ETHERNET
from protocols.reassembly import ReassemblyBudget

Frame = tuple[float, int, bytes, int]  # (ts seconds, linktype, data, wire length)

# flow.app_state
APP_PENDING = 0  # detection has not decided yet
APP_ACTIVE = 1  # a parser is attached
APP_NONE = 2  # no parser for this flow
APP_STOPPED = 3  # the parser gave up or failed

_TCP_HEADER = struct.Struct(">HHIIBBH").unpack_from
_UID_TAIL = struct.Struct(">Hd")
_SYN = 0x02
_ACK = 0x10
_INF = float("inf")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

#: detected service -> names a parser may be registered under, in order of preference
PARSER_NAMES = {
    "ssl": ("ssl", "tls"),
    "smb": ("smb", "smb2"),
    "dce_rpc": ("dce_rpc", "dcerpc"),
    "krb": ("krb", "kerberos", "krb_tcp"),
    "krb_tcp": ("krb_tcp", "krb", "kerberos"),
    "http": ("http",),
    "dns": ("dns",),
}


@attrs.frozen(slots=True)
class DissectSettings:
    """Flow engine limits and timeouts (mirrors the ``[dissect]`` configuration section).

    Beyond the configuration: ``tcp_attempt_timeout`` (Zeek's tcp_attempt_delay: an
    unanswered SYN ends its flow after it), ``fragment_timeout`` and ``fragment_bytes``
    (IP fragments held for reassembly: how long, how many bytes), ``flip_by_server_port``
    (Zeek's likely_server_ports heuristic for flows first seen mid-way; Zeek's bare mode
    ``-b`` has no such ports, hence this switch), ``verify_ip_checksum`` (IPv4 header checksum,
    Zeek's ``bad_IP_checksum``) and ``verify_transport_checksums`` (TCP/UDP/ICMP; off by
    default: it costs ~4 us per full-size packet in CPython, more than the rest of decode
    and flow tracking together, and on a capture host with checksum offload it would drop
    real traffic; turn it on for Zeek parity, which drops such packets with history C/c).
    """

    max_flows: int = 100_000
    tcp_idle_timeout: float = 300.0
    udp_idle_timeout: float = 60.0
    icmp_idle_timeout: float = 60.0
    other_idle_timeout: float = 60.0
    tcp_close_delay: float = 5.0
    reassembly_flow_bytes: int = 1 << 20
    reassembly_total_bytes: int = 64 << 20
    local_nets: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    weirds_per_second: int = 100
    weird_sampling_threshold: int = 1000
    weird_sampling_rate: int = 1000
    weird_sampling_duration: float = 600.0
    uid_salt: str = ""
    tcp_attempt_timeout: float = 5.0
    verify_ip_checksum: bool = True
    verify_transport_checksums: bool = False
    fragment_timeout: float = 30.0
    fragment_bytes: int = 4 << 20
    flip_by_server_port: bool = True


class _Detection:
    """Detection state of a flow whose parser is not chosen yet."""

    __slots__ = ("head", "status", "pending", "dropped")

    def __init__(self) -> None:
        self.head = [b"", b""]  # first bytes of orig, resp
        self.status = [0, 0]  # 0 nothing yet, 1 need more, 2 no match
        self.pending: list[tuple[bool, bytes, float]] = []
        self.dropped = [0, 0]  # bytes not kept for a direction that matched nothing


class _FlowContext:
    """The engine side of :class:`protocols.analyzer.FlowContext` for one flow."""

    __slots__ = ("uid", "id", "proto", "detected", "_engine", "_flow")

    def __init__(self, engine: "Dissector", flow: Flow, uid: str, detected: str) -> None:
        self.uid = uid
        self.detected = detected  # the service detection chose the parser for
        self.id = flow.conn_id()
        self.proto = "tcp" if flow.proto == TCP else "udp"
        self._engine = engine
        self._flow = flow

    def emit(self, event: Any) -> None:
        self._engine._events.append(event)

    def weird(self, name: str, ts: float, addl: str | None = None) -> None:
        self._engine.flow_weird(self._flow, name, ts, addl)

    def confirm(self, service: str) -> None:
        services = self._flow.services
        if service not in services:
            services.append(service)

    def violation(self, reason: str, ts: float) -> None:
        self._engine._stop_parser(self._flow, reason, ts)


class Dissector(FlowSink):
    """Frames in, events out; see the module docstring for what ends a flow and the counters."""

    def __init__(self, settings: DissectSettings = DissectSettings(), *, fast_path: bool = True) -> None:
        """``fast_path=False`` decodes every frame with decode() and sends every TCP segment
        through the full logic (tests compare the two ways on every capture)."""
        self.settings = settings
        self._fast_path = fast_path
        self.counters: dict[str, int] = {"packets": 0, "flows": 0, "conversations": 0, "flows_evicted": 0}
        #: open ICMP flows per address pair, to count conversations as tshark does
        self._icmp_pairs: dict[tuple, int] = {}
        self.tcp_close_delay = settings.tcp_close_delay
        self.tcp_attempt_timeout = settings.tcp_attempt_timeout
        # directional key -> flow; each flow is in its table under both directions' keys
        self._tcp: dict[Any, Flow] = {}
        self._udp: dict[Any, Flow] = {}
        self._icmp: dict[Any, Flow] = {}
        self._other: dict[Any, Flow] = {}
        self._live: dict[Flow, None] = {}  # every open flow once, in creation order
        self._timeouts = {
            TCP: settings.tcp_idle_timeout,
            UDP: settings.udp_idle_timeout,
            ICMP: settings.icmp_idle_timeout,
            ICMP6: settings.icmp_idle_timeout,
        }
        self._other_timeout = settings.other_idle_timeout
        # idle expiry: every flow sits in this heap under a due time that may be stale; when
        # it comes up, a flow that was active since is put back under its new due time
        self._idle: list[tuple[float, int, Flow]] = []
        self._heap: list[tuple[float, int, Flow]] = []
        self._heap_seq = 0
        self._events: list[Any] = []
        self._budget = ReassemblyBudget(settings.reassembly_flow_bytes, settings.reassembly_total_bytes)
        self._local_nets = compile_local_nets(settings.local_nets)
        self._salt = settings.uid_salt.encode()
        self._weird_second = -1
        self._weirds_this_second: dict[str, int] = {}
        # Zeek's weird sampling outside connections: per name, and per address pair and name
        self._net_weirds: dict[Any, int] = {}
        self._sampling_until = -_INF
        self._next_sweep = -_INF
        self._now = -_INF
        self._parsers = bool(ANALYZERS)
        self._fragments = FragmentReassembler(settings.fragment_timeout, settings.fragment_bytes)

    # -- public API ----------------------------------------------------------------------

    def feed(self, frames: Iterable[Frame]) -> list[Any]:
        """Process frames; return the events finished so far (conn, weird, parser events)."""
        tcp_table = self._tcp
        udp_table = self._udp
        check_ip = self.settings.verify_ip_checksum
        verify = self.settings.verify_transport_checksums
        next_sweep = self._next_sweep
        fast_path = self._fast_path
        from_bytes = int.from_bytes
        tcp_header = _TCP_HEADER
        hist_all = HIST_DATA_ACK_ALL
        packets = 0
        ts = self._now
        for ts, linktype, data, wirelen in frames:
            packets += 1
            if ts >= next_sweep:
                # a timer is due (close, attempt, idle, or the whole-second tick): flows
                # over at ``ts`` end before this packet is looked up, so a packet never
                # joins a flow that should have ended, however the frames are batched
                self._now = ts
                self._expire(ts)
                next_sweep = self._next_sweep
            # Ethernet + IPv4 (no options) or IPv6 (no extension header) + TCP, inline: the
            # same checks and results as decode() (tests/protocols/test_decode.py holds
            # them equal); anything else, or anything odd, goes through decode().
            proto = -1
            if linktype == 1 and fast_path:
                end = len(data)
                if end >= 54 and data[12:15] == b"\x08\x00\x45" and data[23] == 6:
                    ip_len = (data[16] << 8) | data[17]
                    if (
                        40 <= ip_len <= wirelen - 14
                        and not (data[20] & 0x3F or data[21])
                        and not (check_ip and from_bytes(data[14:34], "big") % 0xFFFF)
                    ):
                        cap_end = 14 + ip_len
                        if cap_end > end:
                            cap_end = end
                        sport, dport, seq, ack, pay_off, flags, win = tcp_header(data, 34)
                        pay_off = (pay_off >> 4) << 2
                        l4_len = ip_len - 20
                        if 20 <= pay_off <= l4_len and 34 + pay_off <= cap_end:
                            proto = 6
                            key = data[26:38]
                            src = None
                            l4_off = 34
                            pay_len = l4_len - pay_off
                            pay_off += 34
                elif end >= 74 and data[12:14] == b"\x86\xdd" and data[20] == 6 and data[14] >> 4 == 6:
                    l4_len = (data[18] << 8) | data[19]
                    ip_len = 40 + l4_len
                    if l4_len >= 20 and ip_len <= wirelen - 14:
                        cap_end = 14 + ip_len
                        if cap_end > end:
                            cap_end = end
                        sport, dport, seq, ack, pay_off, flags, win = tcp_header(data, 54)
                        pay_off = (pay_off >> 4) << 2
                        if 20 <= pay_off <= l4_len and 54 + pay_off <= cap_end:
                            proto = 6
                            key = data[22:58]
                            src = None
                            l4_off = 54
                            pay_len = l4_len - pay_off
                            pay_off += 54
            if proto < 0:
                result = decode(linktype, data, wirelen, check_ip)
                if result.__class__ is str:
                    self._skip(result, ts)
                    continue
                if result[0] == FRAGMENT:
                    result = self._fragment(result, ts)
                    if result is None:
                        self._count("skip:ip_fragment")  # held for reassembly, or given up
                        continue
                    if result.__class__ is str:
                        self._skip(result, ts)
                        continue
                (proto, src, dst, sport, dport, ip_len, l4_off, l4_len, pay_off, pay_len, cap_end, flags, seq, ack,
                 win, vlans, data, note, key) = result
                if note is not None:
                    self._net_weird(note, ts)

            if proto == TCP:
                flow = tcp_table.get(key)
                if flow is None:
                    if src is None:
                        alen = 4 if l4_off == 34 else 16
                        src = key[:alen]
                        dst = key[alen : 2 * alen]
                        vlans = None
                    flow = self._new_flow(TCP, tcp_table, key, src, sport, dst, dport, vlans, ts, linktype, data,
                                          flags)
                    next_sweep = self._next_sweep
                is_orig = key == flow.okey
                if verify and cap_end - l4_off >= l4_len and not transport_checksum_ok(
                    TCP, flow.orig_h if is_orig else flow.resp_h, flow.resp_h if is_orig else flow.orig_h, data,
                    l4_off, l4_len,
                ):
                    bad_checksum(flow, is_orig, ts)
                    self.flow_weird(flow, "bad_TCP_checksum", ts)
                    self._count("skip:bad_TCP_checksum")
                    continue
                if is_orig:
                    flow.orig_pkts += 1
                    flow.orig_ip_bytes += ip_len
                    flow.orig_l2_bytes += wirelen
                    flow.orig_payload += pay_len
                    ep = flow.orig
                    peer = flow.resp
                else:
                    flow.resp_pkts += 1
                    flow.resp_ip_bytes += ip_len
                    flow.resp_l2_bytes += wirelen
                    flow.resp_payload += pay_len
                    ep = flow.resp
                    peer = flow.orig
                if flags & 0x17 == 0x10 and flow.fast and fast_path:
                    # The fast path: an ACK/data segment of an established flow, near the
                    # start of both sequence spaces. Under these conditions (kept in
                    # flow.fast by protocols.flows._update_fast) Zeek's logic reduces to
                    # the updates below; everything else goes through flows.tcp_packet.
                    seq_end = seq + pay_len
                    peer_start = peer.start_seq
                    if ep.start_seq <= seq and seq_end < ep.seq_limit and peer_start <= ack < peer.seq_limit:
                        if flow.hist_seen & hist_all != hist_all:
                            history_data_or_ack(flow, is_orig, pay_len)
                        if win == 0:
                            zero_window(flow, ep)
                        flow.last_ts = ts
                        if ack > peer.ack_seq:
                            peer.ack_seq = ack
                        if seq_end > ep.last_seq:
                            ep.last_seq = seq_end
                        elif pay_len:
                            retransmission(flow, ep)
                        seq_end = ack - peer_start  # the relative ack
                        if seq_end > peer.trim_seq:
                            if seq_end <= peer.next_seq and peer.plain:
                                peer.trim_seq = seq_end  # nothing to trim, no hole revealed
                            else:
                                peer.ack_received(seq_end, ts, flow.is_partial)
                        if pay_len:
                            if cap_end - pay_off >= pay_len:
                                seq_end = seq - ep.start_seq  # the relative sequence number
                                if seq_end == ep.next_seq and ep.plain:
                                    ep.next_seq = seq_end + pay_len
                                else:
                                    ep.data_sent(
                                        seq_end, pay_len, data[pay_off : pay_off + pay_len] if ep.keep else None, ts
                                    )
                            else:
                                flow.weird("truncated_tcp_payload", ts)
                        continue
                tcp_packet(flow, is_orig, flags, seq, ack, win, pay_len, data, pay_off, cap_end - pay_off, ts)
                next_sweep = self._next_sweep  # the full logic may have set a close/attempt timer

            elif proto == UDP:
                flow = udp_table.get(key)
                if flow is None:
                    flow = self._new_flow(UDP, udp_table, key, src, sport, dst, dport, vlans, ts, linktype, data, 0)
                    next_sweep = self._next_sweep
                is_orig = key == flow.okey
                if (
                    verify
                    and (seq or len(src) == 16)
                    and cap_end - l4_off >= l4_len
                    and not transport_checksum_ok(UDP, src, dst, data, l4_off, l4_len)
                ):
                    bad_checksum(flow, is_orig, ts)
                    self.flow_weird(flow, "bad_UDP_checksum", ts)
                    self._count("skip:bad_UDP_checksum")
                    continue
                if flags != l4_len:
                    self.flow_weird(flow, "UDP_datagram_length_mismatch", ts, f"{flags} != {l4_len}")
                if is_orig:
                    flow.orig_pkts += 1
                    flow.orig_ip_bytes += ip_len
                    flow.orig_l2_bytes += wirelen
                    flow.orig_payload += pay_len
                else:
                    flow.resp_pkts += 1
                    flow.resp_ip_bytes += ip_len
                    flow.resp_l2_bytes += wirelen
                    flow.resp_payload += pay_len
                udp_packet(flow, is_orig, flags, ts)
                if flow.app_state <= APP_ACTIVE and cap_end - pay_off >= pay_len:
                    self._datagram(flow, is_orig, data[pay_off : pay_off + pay_len], ts)

            elif proto == ICMP or proto == ICMP6:
                self._icmp_packet(proto, src, dst, sport, dport, vlans, ip_len, l4_off, l4_len, pay_len, cap_end,
                                  wirelen, ts, linktype, data, verify)
                next_sweep = self._next_sweep
            else:
                self._other_packet(proto, src, dst, vlans, ip_len, wirelen, ts, linktype, data)
                next_sweep = self._next_sweep

        if ts > self._now:
            self._now = ts
        self.counters["packets"] += packets
        return self._take_events()

    def _fragment(self, fragment: tuple, ts: float) -> tuple | str | None:
        """Hand an IP fragment to reassembly; the decoded datagram once it is whole."""
        _, version, src, dst, ident, proto, field, header_len, total, payload, vlans = fragment
        fragments = self._fragments
        if version == 4:
            done = fragments.ipv4(ts, src, dst, ident, proto, field, header_len, total, payload)
        else:
            done = fragments.ipv6(ts, src, dst, ident, proto, field, header_len, total, payload)
        for name in fragments.weirds:
            key = "weird:" + name
            self.counters[key] = self.counters.get(key, 0) + 1
            if self._weird_allowed(ts, name, self._outside_counts(ts), (src, dst, name)):
                self._events.append(Weird(ts=ts, name=name, addl=f"{_address(src)} -> {_address(dst)}"))
        if done is None:
            return None
        return decode_reassembled(version, done[0], src, dst, done[1], header_len, vlans)

    def advance(self, now: float) -> list[Any]:
        """Expire flows idle (or due) at packet time ``now``; return the events that produced."""
        if now > self._now:
            self._now = now
        self._expire(now)
        return self._take_events()

    def finish(self) -> list[Any]:
        """End of input: end every open flow, oldest first; return all remaining events."""
        for flow in sorted(self._live, key=_flow_start):
            if not flow.finished:
                self._finish(flow, self._now if self._now > flow.last_ts else flow.last_ts)
        self._fragments.expire(math.inf)
        return self._take_events()

    def evict_oldest(self, count: int) -> list[Any]:
        """Shed memory: end the ``count`` least recently active flows now (counted); return their events."""
        for flow in heapq.nsmallest(max(0, count), self._live, key=_flow_last):
            self.counters["flows_evicted"] += 1
            self.counters["flows_shed"] = self.counters.get("flows_shed", 0) + 1
            self._finish(flow, self._now if self._now > flow.last_ts else flow.last_ts)
        return self._take_events()

    @property
    def active_flows(self) -> int:
        """Flows currently in the table."""
        return len(self._live)

    @property
    def clock(self) -> float | None:
        """Packet time of the latest frame or advance (None before the first)."""
        return None if self._now == -_INF else self._now

    def top_flows(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` open flows that carried the most IP bytes, largest first (operator's view)."""
        flows = heapq.nlargest(n, self._live, key=_flow_bytes)
        return [self._flow_summary(flow) for flow in flows]

    def flush_idle(self, idle: float, now: float | None = None) -> list[Any]:
        """End every open flow silent for ``idle`` seconds at ``now`` (default: the engine clock).

        An operator's flush: flows due by their timeouts end as usual, and every other flow
        idle that long ends now too (``idle=0`` ends every open flow; later packets of such
        a flow start a new one). Returns the events that produced.
        """
        if now is not None and now > self._now:
            self._now = now
        now = self._now
        if now == -_INF:
            return []
        self._expire(now)
        flows = [f for f in self._live if now - f.last_ts >= idle]
        flows.sort(key=_flow_start)
        for flow in flows:
            self._finish(flow, now)
        return self._take_events()

    def _flow_summary(self, flow: Flow) -> dict[str, Any]:
        conn_id = flow.conn_id()
        return {
            "uid": self._uid(flow),
            "proto": "tcp" if flow.proto == TCP else "udp" if flow.proto == UDP else "icmp" if flow.proto in (ICMP, ICMP6) else str(flow.proto),
            "orig_h": conn_id.orig_h,
            "orig_p": conn_id.orig_p,
            "resp_h": conn_id.resp_h,
            "resp_p": conn_id.resp_p,
            "service": ",".join(flow.services) or None,
            "orig_ip_bytes": flow.orig_ip_bytes,
            "resp_ip_bytes": flow.resp_ip_bytes,
            "bytes": flow.orig_ip_bytes + flow.resp_ip_bytes,
            "orig_pkts": flow.orig_pkts,
            "resp_pkts": flow.resp_pkts,
            "start_ts": flow.start_ts,
            "last_ts": flow.last_ts,
            "duration": flow.last_ts - flow.start_ts,
            "history": flow.history or None,
        }

    # -- FlowSink (called from protocols.flows / reassembly) -----------------------------

    def stream_data(self, flow: Flow, is_orig: bool, data: bytes, ts: float) -> None:
        state = flow.app_state
        if state == APP_ACTIVE:
            try:
                flow.app.data(is_orig, data, ts)
            except Exception as exc:  # the parser boundary (see the module docstring)
                self._parser_failed(flow, exc, ts)
        elif state == APP_PENDING:
            self._detect_stream(flow, is_orig, data, ts)

    def stream_gap(self, flow: Flow, is_orig: bool, length: int, ts: float) -> None:
        state = flow.app_state
        if state == APP_ACTIVE:
            try:
                flow.app.gap(is_orig, length, ts)
            except Exception as exc:  # the parser boundary (see the module docstring)
                self._parser_failed(flow, exc, ts)
        elif state == APP_PENDING:
            detection = flow.app
            if detection is None:
                detection = flow.app = _Detection()
            side = 0 if is_orig else 1
            self._no_match(flow, detection, side, length)

    def flow_weird(self, flow: Flow, name: str, ts: float, addl: str | None = None) -> None:
        key = "weird:" + name
        counters = self.counters
        counters[key] = counters.get(key, 0) + 1
        counts = flow.weirds
        if counts is None:
            counts = flow.weirds = {}
        if self._weird_allowed(ts, name, counts, name):
            self._events.append(Weird(ts=ts, name=name, uid=self._uid(flow), id=flow.conn_id(), addl=addl))

    def schedule(self, flow: Flow) -> None:
        self._heap_seq += 1
        heapq.heappush(self._heap, (flow.deadline, self._heap_seq, flow))
        if flow.deadline < self._next_sweep:
            self._next_sweep = flow.deadline

    # -- flow table --------------------------------------------------------------------

    def _new_flow(
        self, proto: int, table: dict, key: Any, src: bytes, sport: int, dst: bytes, dport: int,
        vlans: tuple[int, ...] | None, ts: float, linktype: int, data: bytes, flags: int,
    ) -> Flow:
        """A flow for a packet no flow has; ``key`` is the packet's direction."""
        if len(self._live) >= self.settings.max_flows:
            self._evict(ts)
        if not self.settings.flip_by_server_port:
            flip = False
        elif proto == TCP:
            flip = (not (flags & _SYN) or bool(flags & _ACK)) and sport in LIKELY_SERVER_PORTS and (
                dport not in LIKELY_SERVER_PORTS or (not (flags & _SYN) and sport < dport)
            )
        elif proto == UDP:
            flip = sport in LIKELY_SERVER_PORTS and dport not in LIKELY_SERVER_PORTS
        else:
            flip = False
        if proto == TCP or proto == UDP:
            rkey = reverse_key(key, len(src))
        elif proto == ICMP or proto == ICMP6:
            rkey = (dst, src, dport, sport, vlans, proto)
        else:
            rkey = (dst, src, vlans, proto)
        flow = Flow(proto, key, rkey, src, sport, dst, dport, vlans, ts, self)
        if linktype == ETHERNET:
            flow.orig_l2 = data[6:12]
            flow.resp_l2 = data[0:6]
        if proto == TCP:
            flow.init_tcp(self._budget, self._parsers)
        if (proto == TCP or proto == UDP) and self._parsers:
            flow.app_state = APP_PENDING
        else:
            flow.app_state = APP_NONE
        if flip:
            flow.flip()
        table[key] = flow
        table[rkey] = flow
        self._live[flow] = None
        self._heap_seq += 1
        due = ts + self._timeout_for(proto)
        heapq.heappush(self._idle, (due, self._heap_seq, flow))
        if due < self._next_sweep:
            self._next_sweep = due
        self.counters["flows"] += 1
        if proto == ICMP or proto == ICMP6:
            # tshark's conversations fold Zeek's per-type ICMP flows into one per address pair
            pair = (min(src, dst), max(src, dst), vlans)
            active = self._icmp_pairs.get(pair, 0)
            if not active:
                self.counters["conversations"] += 1
            self._icmp_pairs[pair] = active + 1
        else:
            self.counters["conversations"] += 1
        return flow

    def _icmp_packet(
        self, proto: int, src: bytes, dst: bytes, icmp_type: int, code: int, vlans: tuple[int, ...] | None,
        ip_len: int, l4_off: int, l4_len: int, pay_len: int, cap_end: int, wirelen: int, ts: float, linktype: int,
        data: bytes, verify: bool,
    ) -> None:
        """An ICMP/ICMPv6 message: Zeek's ICMP "connection" keyed by (type, counterpart or code)."""
        sport, dport = icmp_ports(proto, icmp_type, code)
        key = (src, dst, sport, dport, vlans, proto)
        table = self._icmp
        timeout = self._timeouts[proto]
        flow = table.get(key)
        if flow is None:
            flow = self._new_flow(proto, table, key, src, sport, dst, dport, vlans, ts, linktype, data, 0)
        is_orig = key == flow.okey
        if verify and cap_end - l4_off >= l4_len and not transport_checksum_ok(proto, src, dst, data, l4_off, l4_len):
            self.flow_weird(flow, "bad_ICMP_checksum", ts)
            self._count("skip:bad_ICMP_checksum")
            return
        if is_orig:
            flow.orig_pkts += 1
            flow.orig_ip_bytes += ip_len
            flow.orig_l2_bytes += wirelen
        else:
            flow.resp_pkts += 1
            flow.resp_ip_bytes += ip_len
            flow.resp_l2_bytes += wirelen
        icmp_packet(flow, is_orig, pay_len, ts)

    def _other_packet(
        self, proto: int, src: bytes, dst: bytes, vlans: tuple[int, ...] | None, ip_len: int, wirelen: int,
        ts: float, linktype: int, data: bytes,
    ) -> None:
        """A packet of another IP protocol (GRE, ESP, SCTP, ...): a port-less flow."""
        key = (src, dst, vlans, proto)
        table = self._other
        flow = table.get(key)
        if flow is None:
            flow = self._new_flow(proto, table, key, src, 0, dst, 0, vlans, ts, linktype, data, 0)
        if key == flow.okey:
            flow.orig_pkts += 1
            flow.orig_ip_bytes += ip_len
            flow.orig_l2_bytes += wirelen
        else:
            flow.resp_pkts += 1
            flow.resp_ip_bytes += ip_len
            flow.resp_l2_bytes += wirelen
        flow.last_ts = ts

    def _table_for(self, proto: int) -> dict:
        if proto == TCP:
            return self._tcp
        if proto == UDP:
            return self._udp
        if proto == ICMP or proto == ICMP6:
            return self._icmp
        return self._other

    def _timeout_for(self, proto: int) -> float:
        return self._timeouts.get(proto, self._other_timeout)

    def _deadline_reached(self, flow: Flow, now: float) -> bool:
        """The flow's deadline passed: end it if its TCP attempt or close is over."""
        if flow.proto == TCP:
            if attempt_expired(flow):
                self._finish(flow, now)
                return True
            if close_complete(flow):
                due = flow.last_ts + self.tcp_close_delay
                if now >= due:
                    self._finish(flow, now)
                    return True
                flow.deadline = due
                self.schedule(flow)
                return False
        flow.deadline = _INF
        return False

    def _expire(self, now: float) -> None:
        """End the flows whose deadline (close, attempt) or idle timeout has passed at ``now``."""
        if self._fragments.pending:
            self._fragments.expire(now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, flow = heapq.heappop(heap)
            if flow.finished or flow.deadline != deadline:
                continue  # stale entry
            self._deadline_reached(flow, now)
        idle = self._idle
        while idle and idle[0][0] <= now:
            _, _, flow = heapq.heappop(idle)
            if flow.finished:
                continue
            due = flow.last_ts + self._timeout_for(flow.proto)
            if due <= now:
                self._finish(flow, now)
            else:
                self._heap_seq += 1
                heapq.heappush(idle, (due, self._heap_seq, flow))
        # next check: the next whole second (fragment expiry) or the earliest timer
        nxt = math.floor(now) + 1.0
        if heap and heap[0][0] < nxt:
            nxt = heap[0][0]
        if idle and idle[0][0] < nxt:
            nxt = idle[0][0]
        self._next_sweep = nxt

    def _evict(self, now: float) -> None:
        """The table is full: end the least recently active flows (1/64 of the table at once)."""
        count = max(1, self.settings.max_flows // 64)
        for flow in heapq.nsmallest(count, self._live, key=_flow_last):
            self.counters["flows_evicted"] += 1
            self._finish(flow, now)

    def _finish(self, flow: Flow, now: float) -> None:
        """The flow is over: flush its streams, end its parser, log its conn."""
        if flow.finished:
            return
        flow.finished = True
        table = self._table_for(flow.proto)
        table.pop(flow.okey, None)
        table.pop(flow.rkey, None)
        self._live.pop(flow, None)
        if flow.proto == ICMP or flow.proto == ICMP6:
            pair = (min(flow.orig_h, flow.resp_h), max(flow.orig_h, flow.resp_h), flow.vlans)
            left = self._icmp_pairs.pop(pair, 1) - 1
            if left:
                self._icmp_pairs[pair] = left
        if flow.proto == TCP:
            for endpoint in (flow.orig, flow.resp):
                if flow.app_state == APP_ACTIVE:
                    endpoint.flush(now)
                endpoint.release()
        if flow.app_state == APP_ACTIVE:
            try:
                flow.app.end(now)
            except Exception as exc:  # the parser boundary (see the module docstring)
                self._parser_failed(flow, exc, now)
        flow.app = None
        flow.ctx = None
        self._events.append(conn_event(flow, self._uid(flow), self._local_nets))

    # -- parsers -----------------------------------------------------------------------

    def _datagram(self, flow: Flow, is_orig: bool, payload: bytes, ts: float) -> None:
        """One UDP payload: to the parser, or to detection."""
        if flow.app_state == APP_ACTIVE:
            try:
                flow.app.data(is_orig, payload, ts)
            except Exception as exc:  # the parser boundary (see the module docstring)
                self._parser_failed(flow, exc, ts)
            return
        detection = flow.app
        if detection is None:
            detection = flow.app = _Detection()
        side = 0 if is_orig else 1
        if detection.status[side] == 2:
            return
        verdict = detect(False, payload, flow.orig_p, flow.resp_p)
        if verdict and verdict is not NEED_MORE:
            detection.pending.append((is_orig, payload, ts))
            self._attach(flow, verdict, ts)
        else:
            self._no_match(flow, detection, side, 0)

    def _detect_stream(self, flow: Flow, is_orig: bool, data: bytes, ts: float) -> None:
        """TCP bytes of a flow whose parser is not chosen yet."""
        detection = flow.app
        if detection is None:
            detection = flow.app = _Detection()
        side = 0 if is_orig else 1
        if detection.status[side] == 2:
            detection.dropped[side] += len(data)
            return
        detection.pending.append((is_orig, data, ts))
        head = detection.head[side]
        if len(head) < MAX_HEAD:
            head = detection.head[side] = head + data[: MAX_HEAD - len(head)]
        verdict = detect(True, head, flow.orig_p, flow.resp_p)
        if verdict is NEED_MORE:
            detection.status[side] = 1
        elif verdict:
            if verdict == "smb" and is_smb1(head):
                self._count("detect:smb1")
            self._attach(flow, verdict, ts)
        else:
            self._no_match(flow, detection, side, 0)

    def _no_match(self, flow: Flow, detection: _Detection, side: int, gap: int) -> None:
        """One direction matched nothing (or lost bytes before detection could decide)."""
        detection.status[side] = 2
        is_orig = side == 0
        kept = []
        for item in detection.pending:
            if item[0] == is_orig:
                detection.dropped[side] += len(item[1])
            else:
                kept.append(item)
        detection.pending = kept
        detection.dropped[side] += gap
        detection.head[side] = b""
        if detection.status[1 - side] == 2:
            self._give_up(flow)

    def _give_up(self, flow: Flow) -> None:
        """No parser will see this flow: stop keeping its payload."""
        flow.app_state = APP_NONE
        flow.app = None
        if flow.proto == TCP:
            flow.orig.stop_keeping()
            flow.resp.stop_keeping()

    def _attach(self, flow: Flow, service: str, ts: float) -> None:
        """Bind the parser registered for ``service`` and replay the bytes detection kept."""
        self._count("detect:" + service)
        detection: _Detection = flow.app
        parser_class = None
        for name in PARSER_NAMES.get(service, (service,)):
            parser_class = ANALYZERS.get(name)
            if parser_class is not None:
                break
        if parser_class is None:
            self._give_up(flow)
            return
        uid = self._uid(flow)
        ctx = _FlowContext(self, flow, uid, service)
        flow.ctx = ctx
        flow.app_state = APP_ACTIVE
        try:
            flow.app = parser_class(ctx)
            for side in (0, 1):
                if detection.dropped[side]:
                    flow.app.gap(side == 0, detection.dropped[side], ts)
            for is_orig, data, data_ts in detection.pending:
                if flow.app_state != APP_ACTIVE:
                    break
                flow.app.data(is_orig, data, data_ts)
        except Exception as exc:  # the parser boundary (see the module docstring)
            self._parser_failed(flow, exc, ts)

    def _stop_parser(self, flow: Flow, reason: str, ts: float) -> None:
        """The parser declared a violation: count it and stop feeding it."""
        if flow.app_state != APP_ACTIVE:
            return
        self._count("violation:" + flow.ctx.detected)
        flow.app_state = APP_STOPPED
        flow.app = None
        if flow.proto == TCP:
            flow.orig.stop_keeping()
            flow.resp.stop_keeping()

    def _parser_failed(self, flow: Flow, exc: Exception, ts: float) -> None:
        """A parser raised: weird ``analyzer_error`` and a violation; it is not fed again."""
        self.flow_weird(flow, "analyzer_error", ts, f"{type(exc).__name__}: {exc}"[:200])
        if flow.app_state == APP_ACTIVE:
            self._stop_parser(flow, "exception", ts)
        else:
            flow.app_state = APP_STOPPED
            flow.app = None

    # -- counters, weirds, uids --------------------------------------------------------

    def _count(self, key: str) -> None:
        counters = self.counters
        counters[key] = counters.get(key, 0) + 1

    def _skip(self, reason: str, ts: float) -> None:
        """A packet that reaches no flow: ``skip:<reason>``, plus the weird if it is one."""
        counters = self.counters
        if reason.startswith("weird:"):
            self._net_weird(reason[6:], ts)
            reason = "skip:" + reason[6:]
        counters[reason] = counters.get(reason, 0) + 1

    def _net_weird(self, name: str, ts: float) -> None:
        """An anomaly outside any flow (a weird without uid)."""
        key = "weird:" + name
        counters = self.counters
        counters[key] = counters.get(key, 0) + 1
        if self._weird_allowed(ts, name, self._outside_counts(ts), name):
            self._events.append(Weird(ts=ts, name=name))

    def _outside_counts(self, ts: float) -> dict[Any, int]:
        """Sampling counts of the weirds outside connections, restarted every sampling period."""
        if ts >= self._sampling_until or len(self._net_weirds) > 65536:
            self._net_weirds = {}
            self._sampling_until = ts + self.settings.weird_sampling_duration
        return self._net_weirds

    def _weird_allowed(self, ts: float, name: str, counts: dict[Any, int], key: Any) -> bool:
        """Whether this weird becomes an event: Zeek's sampling, then the per-second cap per name."""
        seen = counts[key] = counts.get(key, 0) + 1
        settings = self.settings
        beyond = seen - settings.weird_sampling_threshold
        if beyond > 0 and (settings.weird_sampling_rate <= 0 or beyond % settings.weird_sampling_rate):
            return False
        second = int(ts)
        this_second = self._weirds_this_second
        if second != self._weird_second:
            self._weird_second = second
            this_second.clear()
        emitted = this_second[name] = this_second.get(name, 0) + 1
        return emitted <= settings.weirds_per_second

    def _uid(self, flow: Flow) -> str:
        """Deterministic Zeek-shaped uid: 'C' + 17 base62 digits of a hash of key, start, salt.

        The key is taken in a direction-independent way, so a flip does not change it.
        """
        uid = flow.uid
        if uid is None:
            okey, rkey = flow.okey, flow.rkey
            key = okey if okey.__class__ is bytes else repr(okey).encode()
            other = rkey if rkey.__class__ is bytes else repr(rkey).encode()
            material = (key if key < other else other) + _UID_TAIL.pack(flow.proto, flow.start_ts) + self._salt
            value = int.from_bytes(hashlib.blake2b(material, digest_size=13).digest(), "big")
            chars = ["C"]
            for _ in range(17):
                value, digit = divmod(value, 62)
                chars.append(_BASE62[digit])
            uid = flow.uid = "".join(chars)
        return uid

    def _take_events(self) -> list[Any]:
        counters = self.counters
        for name, value in self._fragments.counters.items():
            if value:
                counters["fragments:" + name] = value
        events = self._events
        self._events = []
        return events


def _flow_start(flow: Flow) -> float:
    return flow.start_ts


def _flow_bytes(flow: Flow) -> int:
    return flow.orig_ip_bytes + flow.resp_ip_bytes


def _flow_last(flow: Flow) -> float:
    return flow.last_ts


def _address(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)

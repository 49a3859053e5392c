"""The flow engine: captured frames in, events out (``conn``, ``weird`` and parser events).

:class:`Dissector` decodes each frame (:mod:`protocols.decode`), finds or creates its
flow, runs Zeek's per-packet connection logic (:mod:`protocols.flows`), reassembles TCP
(:mod:`protocols.reassembly`) and hands application bytes to the parser that
:mod:`protocols.detect` chose by content. Finished flows become ``conn`` events; flows
end on TCP close/reset (after ``tcp_close_delay``), on an unanswered SYN (after
``tcp_attempt_timeout``), after their protocol's idle timeout, when evicted because the
table is full (the least recently active flow goes, counted as ``flows_evicted``), or at
:meth:`Dissector.finish`.

Time is packet time only: idle flows are expired as packet timestamps advance (checked
at every whole second, so results do not depend on how frames are batched) and by
:meth:`Dissector.advance` for a live capture that has gone quiet.

Counters (``Dissector.counters``): ``packets``; ``flows`` (created); ``flows_evicted``;
``weird:<name>`` for every anomaly (only ``weirds_per_second`` of them become ``weird``
events each second, all are counted); ``skip:<reason>`` for packets not analysed
(``skip:non_ip``, ``skip:ip_fragment``, ...); ``detect:<service>`` per flow detected;
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
from collections import OrderedDict
from typing import Any, Iterable

import attrs

import protocols.parsers  # noqa: F401  (importing it registers every parser)
from protocols.analyzer import ANALYZERS
from protocols.decode import decode, transport_checksum_ok
from protocols.detect import MAX_HEAD, NEED_MORE, detect, is_smb1
from protocols.events.weird import Weird
from protocols.flows import (
    ICMP,
    ICMP6,
    LIKELY_SERVER_PORTS,
    TCP,
    UDP,
    Flow,
    FlowSink,
    attempt_expired,
    bad_checksum,
    close_complete,
    compile_local_nets,
    conn_event,
    icmp_packet,
    icmp_ports,
    tcp_packet,
    udp_packet,
)
from protocols.linktypes import ETHERNET
from protocols.reassembly import ReassemblyBudget

Frame = tuple[float, int, bytes, int]  # (ts seconds, linktype, data, wire length)

# flow.app_state
APP_PENDING = 0  # detection has not decided yet
APP_ACTIVE = 1  # a parser is attached
APP_NONE = 2  # no parser for this flow
APP_STOPPED = 3  # the parser gave up or failed

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
    unanswered SYN ends its flow after it), ``verify_ip_checksum`` (IPv4 header checksum,
    Zeek's ``bad_IP_checksum``) and ``verify_transport_checksums`` (TCP/UDP/ICMP; off by
    default: it costs ~4 us per full-size packet in CPython, more than the rest of decode
    and flow tracking together, and on a capture host with checksum offload it would drop
    real traffic; turn it on for Zeek parity, which drops such packets with history C/c).
    """

    max_flows: int = 200_000
    tcp_idle_timeout: float = 300.0
    udp_idle_timeout: float = 60.0
    icmp_idle_timeout: float = 60.0
    other_idle_timeout: float = 60.0
    tcp_close_delay: float = 5.0
    reassembly_flow_bytes: int = 1 << 20
    reassembly_total_bytes: int = 64 << 20
    local_nets: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    weirds_per_second: int = 100
    uid_salt: str = ""
    tcp_attempt_timeout: float = 5.0
    verify_ip_checksum: bool = True
    verify_transport_checksums: bool = False


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

    __slots__ = ("uid", "id", "proto", "_engine", "_flow")

    def __init__(self, engine: "Dissector", flow: Flow, uid: str) -> None:
        self.uid = uid
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

    def __init__(self, settings: DissectSettings = DissectSettings()) -> None:
        self.settings = settings
        self.counters: dict[str, int] = {"packets": 0, "flows": 0, "flows_evicted": 0}
        self.tcp_close_delay = settings.tcp_close_delay
        self.tcp_attempt_timeout = settings.tcp_attempt_timeout
        self._tables: dict[int, OrderedDict] = {TCP: OrderedDict(), UDP: OrderedDict(), ICMP: OrderedDict(), 0: OrderedDict()}
        self._timeouts = {
            TCP: settings.tcp_idle_timeout,
            UDP: settings.udp_idle_timeout,
            ICMP: settings.icmp_idle_timeout,
            0: settings.other_idle_timeout,
        }
        self._nflows = 0
        self._heap: list[tuple[float, int, Flow]] = []
        self._heap_seq = 0
        self._events: list[Any] = []
        self._budget = ReassemblyBudget(settings.reassembly_flow_bytes, settings.reassembly_total_bytes)
        self._local_nets = compile_local_nets(settings.local_nets)
        self._salt = settings.uid_salt.encode()
        self._weird_second = -1
        self._weirds_this_second = 0
        self._next_sweep = -_INF
        self._now = -_INF
        self._parsers = bool(ANALYZERS)

    # -- public API ----------------------------------------------------------------------

    def feed(self, frames: Iterable[Frame]) -> list[Any]:
        """Process frames; return the events finished so far (conn, weird, parser events)."""
        counters = self.counters
        tcp_table = self._tables[TCP]
        udp_table = self._tables[UDP]
        icmp_table = self._tables[ICMP]
        tcp_timeout = self._timeouts[TCP]
        udp_timeout = self._timeouts[UDP]
        icmp_timeout = self._timeouts[ICMP]
        check_ip = self.settings.verify_ip_checksum
        verify = self.settings.verify_transport_checksums
        next_sweep = self._next_sweep
        packets = 0
        ts = self._now
        for ts, linktype, data, wirelen in frames:
            packets += 1
            if ts >= next_sweep:
                self._expire(ts)
                next_sweep = math.floor(ts) + 1.0
            result = decode(linktype, data, wirelen, check_ip)
            if result.__class__ is str:
                self._skip(result, ts)
                continue
            (proto, src, dst, sport, dport, ip_len, l4_off, l4_len, pay_off, pay_len, cap_end, flags, seq, ack, win,
             vlans, data, note) = result
            if note is not None:
                self._net_weird(note, ts)

            if proto == TCP:
                if src < dst or (src == dst and sport <= dport):
                    key = (src, sport, dst, dport, vlans)
                    lo_is_src = True
                else:
                    key = (dst, dport, src, sport, vlans)
                    lo_is_src = False
                flow = tcp_table.get(key)
                if flow is not None and (ts >= flow.deadline or ts - flow.last_ts >= tcp_timeout):
                    flow = self._recheck(flow, ts, tcp_timeout)
                if flow is None:
                    flow = self._new_flow(TCP, tcp_table, key, lo_is_src, src, sport, dst, dport, vlans, ts,
                                          linktype, data, flags)
                else:
                    tcp_table.move_to_end(key)
                is_orig = lo_is_src == flow.lo_is_orig
                if verify and cap_end - l4_off >= l4_len and not transport_checksum_ok(
                    TCP, src, dst, data, l4_off, l4_len
                ):
                    bad_checksum(flow, is_orig, ts)
                    self.flow_weird(flow, "bad_TCP_checksum", ts)
                    continue
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
                tcp_packet(flow, is_orig, flags, seq, ack, win, pay_len, data, pay_off, cap_end - pay_off, ts)

            elif proto == UDP:
                if src < dst or (src == dst and sport <= dport):
                    key = (src, sport, dst, dport, vlans)
                    lo_is_src = True
                else:
                    key = (dst, dport, src, sport, vlans)
                    lo_is_src = False
                flow = udp_table.get(key)
                if flow is not None and ts - flow.last_ts >= udp_timeout:
                    flow = self._recheck(flow, ts, udp_timeout)
                if flow is None:
                    flow = self._new_flow(UDP, udp_table, key, lo_is_src, src, sport, dst, dport, vlans, ts,
                                          linktype, data, 0)
                else:
                    udp_table.move_to_end(key)
                is_orig = lo_is_src == flow.lo_is_orig
                if (
                    verify
                    and (seq or len(src) == 16)
                    and cap_end - l4_off >= l4_len
                    and not transport_checksum_ok(UDP, src, dst, data, l4_off, l4_len)
                ):
                    bad_checksum(flow, is_orig, ts)
                    self.flow_weird(flow, "bad_UDP_checksum", ts)
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
                sport, dport = icmp_ports(proto, sport, dport)
                if src < dst or (src == dst and sport <= dport):
                    key = (src, sport, dst, dport, vlans, proto)
                    lo_is_src = True
                else:
                    key = (dst, dport, src, sport, vlans, proto)
                    lo_is_src = False
                flow = icmp_table.get(key)
                if flow is not None and ts - flow.last_ts >= icmp_timeout:
                    flow = self._recheck(flow, ts, icmp_timeout)
                if flow is None:
                    flow = self._new_flow(proto, icmp_table, key, lo_is_src, src, sport, dst, dport, vlans, ts,
                                          linktype, data, 0)
                else:
                    icmp_table.move_to_end(key)
                is_orig = lo_is_src == flow.lo_is_orig
                if verify and cap_end - l4_off >= l4_len and not transport_checksum_ok(
                    proto, src, dst, data, l4_off, l4_len
                ):
                    self.flow_weird(flow, "bad_ICMP_checksum", ts)
                    continue
                if is_orig:
                    flow.orig_pkts += 1
                    flow.orig_ip_bytes += ip_len
                    flow.orig_l2_bytes += wirelen
                else:
                    flow.resp_pkts += 1
                    flow.resp_ip_bytes += ip_len
                    flow.resp_l2_bytes += wirelen
                icmp_packet(flow, is_orig, pay_len, ts)

            else:
                self._other_packet(proto, src, dst, vlans, ip_len, wirelen, ts, linktype, data)

        self._next_sweep = next_sweep
        self._now = ts
        counters["packets"] += packets
        return self._take_events()

    def advance(self, now: float) -> list[Any]:
        """Expire flows idle (or due) at packet time ``now``; return the events that produced."""
        if now > self._now:
            self._now = now
        self._expire(now)
        return self._take_events()

    def finish(self) -> list[Any]:
        """End of input: end every open flow, oldest first; return all remaining events."""
        flows = [flow for table in self._tables.values() for flow in table.values()]
        flows.sort(key=_flow_start)
        for flow in flows:
            if not flow.finished:
                self._finish(flow, self._now if self._now > flow.last_ts else flow.last_ts)
        return self._take_events()

    @property
    def active_flows(self) -> int:
        """Flows currently in the table."""
        return self._nflows

    @property
    def clock(self) -> float | None:
        """Packet time of the latest frame or advance (None before the first)."""
        return None if self._now == -_INF else self._now

    def top_flows(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` open flows that carried the most IP bytes, largest first (operator's view)."""
        flows = heapq.nlargest(n, (f for table in self._tables.values() for f in table.values()), key=_flow_bytes)
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
        flows = [f for table in self._tables.values() for f in table.values() if now - f.last_ts >= idle]
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
        if self._weird_allowed(ts):
            self._events.append(Weird(ts=ts, name=name, uid=self._uid(flow), id=flow.conn_id(), addl=addl))

    def schedule(self, flow: Flow) -> None:
        self._heap_seq += 1
        heapq.heappush(self._heap, (flow.deadline, self._heap_seq, flow))

    # -- flow table --------------------------------------------------------------------

    def _new_flow(
        self, proto: int, table: OrderedDict, key: tuple, lo_is_src: bool, src: bytes, sport: int, dst: bytes,
        dport: int, vlans: tuple[int, ...] | None, ts: float, linktype: int, data: bytes, flags: int,
    ) -> Flow:
        if self._nflows >= self.settings.max_flows:
            self._evict_oldest(ts)
        if proto == TCP:
            flip = (not (flags & _SYN) or bool(flags & _ACK)) and sport in LIKELY_SERVER_PORTS and (
                dport not in LIKELY_SERVER_PORTS or (not (flags & _SYN) and sport < dport)
            )
        elif proto == UDP:
            flip = sport in LIKELY_SERVER_PORTS and dport not in LIKELY_SERVER_PORTS
        else:
            flip = False
        flow = Flow(proto, key, lo_is_src, src, sport, dst, dport, vlans, ts, self)
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
        self._nflows += 1
        self.counters["flows"] += 1
        return flow

    def _other_packet(
        self, proto: int, src: bytes, dst: bytes, vlans: tuple[int, ...] | None, ip_len: int, wirelen: int,
        ts: float, linktype: int, data: bytes,
    ) -> None:
        """A packet of another IP protocol (GRE, ESP, SCTP, ...): a port-less flow."""
        table = self._tables[0]
        if src <= dst:
            key = (src, dst, vlans, proto)
            lo_is_src = True
        else:
            key = (dst, src, vlans, proto)
            lo_is_src = False
        flow = table.get(key)
        if flow is not None and ts - flow.last_ts >= self._timeouts[0]:
            flow = self._recheck(flow, ts, self._timeouts[0])
        if flow is None:
            flow = self._new_flow(proto, table, key, lo_is_src, src, 0, dst, 0, vlans, ts, linktype, data, 0)
        else:
            table.move_to_end(key)
        if lo_is_src == flow.lo_is_orig:
            flow.orig_pkts += 1
            flow.orig_ip_bytes += ip_len
            flow.orig_l2_bytes += wirelen
        else:
            flow.resp_pkts += 1
            flow.resp_ip_bytes += ip_len
            flow.resp_l2_bytes += wirelen
        flow.last_ts = ts

    def _table_for(self, proto: int) -> OrderedDict:
        if proto == TCP or proto == UDP or proto == ICMP:
            return self._tables[proto]
        return self._tables[ICMP if proto == ICMP6 else 0]

    def _recheck(self, flow: Flow, now: float, timeout: float) -> Flow | None:
        """A packet for a flow that may be over: end it if so (None), else keep it."""
        if now >= flow.deadline and self._deadline_reached(flow, now):
            return None
        if now - flow.last_ts >= timeout:
            self._finish(flow, now)
            return None
        return flow

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
        """End the flows whose deadline or idle timeout has passed at ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, flow = heapq.heappop(heap)
            if flow.finished or flow.deadline != deadline:
                continue  # stale entry
            self._deadline_reached(flow, now)
        for proto, table in self._tables.items():
            timeout = self._timeouts[proto]
            while table:
                flow = next(iter(table.values()))
                if now - flow.last_ts < timeout:
                    break
                self._finish(flow, now)

    def _evict_oldest(self, now: float) -> None:
        """The table is full: end the least recently active flow."""
        oldest = None
        for table in self._tables.values():
            if table:
                flow = next(iter(table.values()))
                if oldest is None or flow.last_ts < oldest.last_ts:
                    oldest = flow
        if oldest is not None:
            self.counters["flows_evicted"] += 1
            self._finish(oldest, now)

    def _finish(self, flow: Flow, now: float) -> None:
        """The flow is over: flush its streams, end its parser, log its conn."""
        if flow.finished:
            return
        flow.finished = True
        if self._table_for(flow.proto).pop(flow.key, None) is not None:
            self._nflows -= 1
        if flow.proto == TCP:
            for endpoint in (flow.orig, flow.resp):
                if flow.app_state == APP_ACTIVE:
                    endpoint.reasm.flush(now)
                endpoint.reasm.release()
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
            flow.orig.reasm.stop_keeping()
            flow.resp.reasm.stop_keeping()

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
        ctx = _FlowContext(self, flow, uid)
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
        service = getattr(flow.app, "service", "") or "unknown"
        self._count("violation:" + service)
        flow.app_state = APP_STOPPED
        flow.app = None
        if flow.proto == TCP:
            flow.orig.reasm.stop_keeping()
            flow.resp.reasm.stop_keeping()

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
        counters = self.counters
        counters[reason] = counters.get(reason, 0) + 1
        if reason.startswith("weird:") and self._weird_allowed(ts):
            self._events.append(Weird(ts=ts, name=reason[6:]))

    def _net_weird(self, name: str, ts: float) -> None:
        self._skip("weird:" + name, ts)

    def _weird_allowed(self, ts: float) -> bool:
        second = int(ts)
        if second != self._weird_second:
            self._weird_second = second
            self._weirds_this_second = 0
        self._weirds_this_second += 1
        return self._weirds_this_second <= self.settings.weirds_per_second

    def _uid(self, flow: Flow) -> str:
        """Deterministic Zeek-shaped uid: 'C' + 17 base62 digits of a hash of key, start, salt."""
        uid = flow.uid
        if uid is None:
            digest = hashlib.blake2b(
                repr((flow.key, flow.proto, flow.start_ts)).encode() + self._salt, digest_size=13
            ).digest()
            value = int.from_bytes(digest, "big")
            chars = []
            for _ in range(17):
                value, digit = divmod(value, 62)
                chars.append(_BASE62[digit])
            uid = flow.uid = "C" + "".join(chars)
        return uid

    def _take_events(self) -> list[Any]:
        events = self._events
        self._events = []
        return events


def _flow_start(flow: Flow) -> float:
    return flow.start_ts


def _flow_bytes(flow: Flow) -> int:
    return flow.orig_ip_bytes + flow.resp_ip_bytes

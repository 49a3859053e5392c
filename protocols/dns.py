"""DNS over UDP and TCP: frames messages, pairs queries with responses, emits ``dns`` events.

Pairing is Zeek's (``base/protocols/dns/main.zeek``): one pending query kept aside, more
pending queries and early replies queued per transaction id, a transaction logged once
both its query and its reply were seen, and whatever is still unmatched logged when the
flow ends (an unanswered query; a duplicate response, which has no qtype/qclass/rtt).
Queues are bounded as in Zeek (50 ids, 50 messages an id): past that they are flushed.

Over TCP each message has a 2-byte length prefix; messages may be split across segments
or several may share one. A gap inside a message drops that message; a gap that hides a
length prefix is followed by a check of the next message: if it does not decode cleanly
the framing is lost and parsing of that direction ends (gaps and losses are weirds).
"""

from __future__ import annotations

from collections import deque

from protocols.analyzer import Analyzer, FlowContext, register
from protocols.dns_consts import opcode_name, qclass_name, qtype_name, rcode_name
from protocols.dns_wire import MAX_QUESTIONS, DnsMessage, parse_message
from protocols.events.dns import Dns

#: opcodes whose messages Zeek tracks: query, notify, dynamic update
_TRACKED_OPCODES = frozenset({0, 4, 5})
MAX_PENDING_MSGS = 50
MAX_PENDING_QUERY_IDS = 50


class _Txn:
    """A query/response pair being assembled (Zeek's ``DNS::Info``)."""

    __slots__ = (
        "ts", "trans_id", "rtt", "query", "qclass", "qtype", "rcode", "AA", "TC", "RD",
        "RA", "Z", "answers", "ttls", "rejected", "opcode", "total_answers",
        "answer_names", "answer_types", "answer_ttls", "answer_data", "n_authority",
        "n_additional", "saw_query", "saw_reply",
    )

    def __init__(self, ts: float, trans_id: int) -> None:
        self.ts = ts
        self.trans_id = trans_id
        self.rtt: float | None = None
        self.query: str | None = None
        self.qclass: int | None = None
        self.qtype: int | None = None
        self.rcode: int | None = None
        self.AA = self.TC = self.RD = self.RA = False
        self.Z = 0
        self.answers: list[str] | None = None
        self.ttls: list[float] | None = None
        self.rejected = False
        self.opcode: int | None = None
        self.total_answers: int | None = None
        self.answer_names: tuple = ()
        self.answer_types: tuple = ()
        self.answer_ttls: tuple = ()
        self.answer_data: tuple = ()
        self.n_authority: int | None = None
        self.n_additional: int | None = None
        self.saw_query = False
        self.saw_reply = False


def _is_multicast(addr: str) -> bool:
    """224.0.0.0/4 or ff00::/8, from the text form events carry (cheaper than ipaddress per flow)."""
    if ":" in addr:
        return addr[:2].lower() == "ff"
    first, _, _ = addr.partition(".")
    return first.isdigit() and 224 <= int(first) <= 239


def _netbios_name(query: str) -> str:
    """Zeek's ``decode_netbios_name``: the first label's half-byte encoding, if it is one."""
    label = query.split(".", 1)[0].upper()
    if len(label) < 32 or any(not "A" <= c <= "P" for c in label[:32]):
        return query
    raw = bytes(((ord(label[i]) - 65) << 4) | (ord(label[i + 1]) - 65) for i in range(0, 32, 2))
    name = raw[:15].rstrip(b" \x00")
    return name.decode("latin-1") if name else query


def _plausible(message: bytes, netbios: bool) -> bool:
    """Whether bytes taken as a message after a gap decode as DNS without a complaint."""
    msg = parse_message(message, netbios)
    return msg is not None and not msg.weirds and len(msg.questions) == msg.qdcount


@register("dns")
class DnsAnalyzer(Analyzer):
    """DNS for one UDP or TCP flow."""

    def __init__(self, ctx: FlowContext) -> None:
        super().__init__(ctx)
        self._tcp = ctx.proto == "tcp"
        self._netbios = ctx.id.resp_p == 137
        self._multicast = _is_multicast(ctx.id.resp_h)
        self._confirmed = False
        self._pending_query: _Txn | None = None
        self._pending_queries: dict[int, deque[_Txn]] = {}
        self._pending_replies: dict[int, deque[_Txn]] = {}
        # TCP framing per direction: bytes of an unfinished message (prefix included),
        # bytes still to skip after a gap, whether the framing was lost, and whether
        # the next message must be checked because a gap ended where no message did
        self._partial = {True: b"", False: b""}
        self._skip = {True: 0, False: 0}
        self._lost = {True: False, False: False}
        self._verify = {True: False, False: False}

    # -- framing -----------------------------------------------------------------

    def data(self, is_orig: bool, data: bytes, ts: float) -> None:
        """One UDP datagram, or in-order TCP bytes of one direction."""
        if not self._tcp:
            self._message(data, ts)
            return
        if self._lost[is_orig]:
            return
        skip = self._skip[is_orig]
        if skip:
            if len(data) <= skip:
                self._skip[is_orig] = skip - len(data)
                return
            data = data[skip:]
            self._skip[is_orig] = 0
        partial = self._partial[is_orig]
        if partial:
            data = partial + data
        pos = 0
        end = len(data)
        while end - pos >= 2:
            size = (data[pos] << 8) | data[pos + 1]
            if end - pos - 2 < size:
                break
            message = data[pos + 2 : pos + 2 + size]
            if self._verify[is_orig]:
                if not _plausible(message, self._netbios):
                    self._lose_framing(is_orig, ts)
                    return
                self._verify[is_orig] = False
            self._message(message, ts)
            pos += 2 + size
        self._partial[is_orig] = data[pos:] if pos < end else b""

    def gap(self, is_orig: bool, length: int, ts: float) -> None:
        """Lost bytes: drop the message they fall in; check the framing where they end.

        The first message after a gap that did not end inside a known message must look
        like DNS (a clean header and records), else the framing is taken as lost.
        """
        if not self._tcp or self._lost[is_orig]:
            return
        self.ctx.weird("DNS_tcp_gap", ts, str(length))
        if self._skip[is_orig]:
            self._skip[is_orig] += length
            return
        partial = self._partial[is_orig]
        self._partial[is_orig] = b""
        if len(partial) >= 2:
            missing = 2 + ((partial[0] << 8) | partial[1]) - len(partial)
            if length <= missing:
                self._skip[is_orig] = missing - length
                return
        self._verify[is_orig] = True

    def _lose_framing(self, is_orig: bool, ts: float) -> None:
        self._partial[is_orig] = b""
        self._lost[is_orig] = True
        self.ctx.weird("DNS_tcp_framing_lost", ts)

    def end(self, ts: float) -> None:
        """Parse a partial TCP message as Zeek does, then log every unmatched message."""
        for is_orig in (True, False):
            partial = self._partial[is_orig]
            if len(partial) > 2:
                self._partial[is_orig] = b""
                self._message(partial[2:], ts)
        pending = self._pending_query
        if pending is not None:
            self._pending_query = None
            self._emit(pending)
        for queues in (self._pending_queries, self._pending_replies):
            for queue in queues.values():
                for txn in queue:
                    self._emit(txn)
            queues.clear()

    # -- one message ---------------------------------------------------------------

    def _message(self, buf: bytes, ts: float) -> None:
        msg = parse_message(buf, self._netbios)
        ctx = self.ctx
        if msg is None:
            ctx.weird("DNS_truncated_len_lt_hdr_len", ts)
            return
        for name, addl in msg.weirds:
            ctx.weird(name, ts, addl)
        if msg.qdcount > MAX_QUESTIONS:
            if not self._confirmed:
                ctx.violation("DNS_Conn_count_too_large", ts)
            return
        if not self._confirmed and not msg.weirds and len(msg.questions) == msg.qdcount:
            self._confirmed = True
            ctx.confirm("dns")
        if msg.opcode not in _TRACKED_OPCODES:
            return
        txn = self._session(msg, ts)
        if msg.qr:
            self._reply(txn, msg, ts)
            txn.saw_reply = True
        else:
            self._request(txn, msg)
            txn.saw_query = True
        if txn.saw_query and txn.saw_reply:
            self._emit(txn)

    def _session(self, msg: DnsMessage, ts: float) -> _Txn:
        """Zeek's ``set_session``: find or create the transaction this message belongs to."""
        tid = msg.trans_id
        if self._multicast:
            txn = _Txn(ts, tid)
            txn.saw_query = txn.saw_reply = True
        elif not msg.qr:
            queue = self._pending_replies.get(tid)
            if queue:
                txn = self._pop(self._pending_replies, tid)
            else:
                txn = _Txn(ts, tid)
                if self._pending_query is None:
                    self._pending_query = txn
                else:
                    self._enqueue(self._pending_queries, tid, txn)
        else:
            pending = self._pending_query
            if pending is not None and pending.trans_id == tid:
                txn = pending
                self._pending_query = None
                queues = self._pending_queries
                if queues:
                    if queues.get(tid):
                        self._pending_query = self._pop(queues, tid)
                    else:
                        for other, queue in queues.items():
                            if queue:
                                self._pending_query = self._pop(queues, other)
                                break
            elif self._pending_queries.get(tid):
                txn = self._pop(self._pending_queries, tid)
            else:
                txn = _Txn(ts, tid)
                self._enqueue(self._pending_replies, tid, txn)
        if msg.qr:
            txn.rcode = msg.rcode
            if txn.total_answers is None:
                txn.total_answers = msg.ancount
            if msg.rcode != 0 and msg.qdcount == 0:
                txn.rejected = True
        txn.opcode = msg.opcode
        return txn

    def _enqueue(self, queues: dict[int, deque[_Txn]], tid: int, txn: _Txn) -> None:
        queue = queues.get(tid)
        if queue is None:
            if len(queues) > MAX_PENDING_QUERY_IDS:
                for old in queues.values():
                    for stale in old:
                        self._emit(stale)
                queues.clear()
            queue = queues[tid] = deque()
        elif len(queue) > MAX_PENDING_MSGS:
            for stale in queue:
                self._emit(stale)
            queue.clear()
        queue.append(txn)

    @staticmethod
    def _pop(queues: dict[int, deque[_Txn]], tid: int) -> _Txn:
        queue = queues[tid]
        txn = queue.popleft()
        if not queue:
            del queues[tid]
        return txn

    def _request(self, txn: _Txn, msg: DnsMessage) -> None:
        """Zeek's ``dns_request``: the query's flags and question (the last one wins)."""
        for question in msg.questions:
            txn.RD = msg.rd
            txn.TC = msg.tc
            txn.qclass = question.qclass
            txn.qtype = question.qtype
            txn.Z = msg.z
            txn.query = _netbios_name(question.name) if self._netbios else question.name

    def _reply(self, txn: _Txn, msg: DnsMessage, ts: float) -> None:
        """Zeek's answer hooks: summaries, TTLs, AA/RA and rtt from answer-section records."""
        if msg.questions and msg.ancount == 0 and msg.nscount == 0 and msg.arcount == 0:
            txn.rejected = True
        records = msg.answers
        for record in records:
            reply = record.reply
            if reply is None:
                continue
            if txn.query is None:
                txn.query = record.name
            txn.AA = msg.aa
            txn.RA = msg.ra
            if txn.rtt is None and ts != txn.ts:
                txn.rtt = ts - txn.ts
            if reply:
                if txn.answers is None:
                    txn.answers = []
                    txn.ttls = []
                txn.answers.append(reply)
                txn.ttls.append(float(record.ttl))
        if not txn.answer_types:
            txn.answer_names = tuple(r.name for r in records)
            txn.answer_types = tuple(qtype_name(r.rtype) for r in records)
            txn.answer_ttls = tuple(r.ttl for r in records)
            txn.answer_data = tuple(r.data for r in records)
        if txn.n_authority is None:
            txn.n_authority = msg.nscount
            txn.n_additional = msg.arcount

    def _emit(self, txn: _Txn) -> None:
        ctx = self.ctx
        qtype = txn.qtype
        qclass = txn.qclass
        rcode = txn.rcode
        opcode = txn.opcode
        qtype_text = None
        if qtype is not None:
            qtype_text = qtype_name(qtype)
            if self._netbios and qtype_text == "SRV":
                qtype_text = "NBSTAT"
        ctx.emit(
            Dns(
                ts=txn.ts,
                uid=ctx.uid,
                id=ctx.id,
                proto=ctx.proto,
                trans_id=txn.trans_id,
                rtt=txn.rtt,
                query=txn.query,
                qclass=qclass,
                qclass_name=None if qclass is None else qclass_name(qclass),
                qtype=qtype,
                qtype_name=qtype_text,
                rcode=rcode,
                rcode_name=None if rcode is None else rcode_name(rcode),
                AA=txn.AA,
                TC=txn.TC,
                RD=txn.RD,
                RA=txn.RA,
                Z=txn.Z,
                answers=None if txn.answers is None else tuple(txn.answers),
                TTLs=None if txn.ttls is None else tuple(txn.ttls),
                rejected=txn.rejected,
                opcode=opcode,
                opcode_name=None if opcode is None else opcode_name(opcode, self._netbios),
                answer_names=txn.answer_names,
                answer_types=txn.answer_types,
                answer_ttls=txn.answer_ttls,
                answer_data=txn.answer_data,
                n_answers=txn.total_answers,
                n_authority=txn.n_authority,
                n_additional=txn.n_additional,
                saw_query=txn.saw_query,
                saw_reply=txn.saw_reply,
            )
        )

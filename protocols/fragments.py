"""IPv4 and IPv6 fragment reassembly with bounded memory and Zeek's weird names, sans-I/O.

How the decoder uses it (one reassembler per dissector; all calls carry packet time):

    frags = FragmentReassembler(timeout=30.0, max_bytes=4 << 20)

    # IPv4: after unpacking the header, a fragment is any packet with MF set or an offset.
    if frag_field & 0x3FFF:
        done = frags.ipv4(ts, src, dst, ident, proto, frag_field, ihl * 4, total_len,
                          data[ip_off + ihl * 4:])
    # IPv6: on reaching a fragment header (next header 44) at ``fh`` bytes into the IPv6
    # header; ``offset_field`` is its third and fourth bytes, ``ident`` its last four.
        done = frags.ipv6(ts, src, dst, ident, frag_next_header, offset_field, fh + 8,
                          40 + payload_length, data[ip_off + fh + 8:])
    for name in frags.weirds:        # anomalies this fragment raised (a fresh list per call)
        weird(name, ts, src, dst)    # Zeek reports these as flow weirds between src and dst
    if done is None:                 # held for later (or dropped: see weirds and counters)
        continue
    proto, payload = done            # the whole datagram after the unfragmentable headers;
                                     # for IPv6 ``proto`` comes from the offset-0 fragment and
                                     # ``payload`` may start with more extension headers
    ...
    frags.expire(now)                # from the dissector's advance(now); also run on each add

Arguments: ``src``/``dst`` are the raw address bytes (4 or 16), ``ident`` the IP
identification, ``frag_field`` the raw IPv4 flags+offset word, ``offset_field`` the raw
IPv6 offset+M word, ``header_len`` the bytes before the fragment data (IPv4 IHL*4; IPv6 up
to and including the fragment header), ``total_len`` the length the IP header claims
(IPv4 total length; IPv6 40 + payload length), ``payload`` the captured bytes after the
header (longer is fine: link padding is cut off; shorter means the packet was cut by the
snaplen, and it is not reassembled).

IPv6 atomic fragments (offset 0, M clear) come straight back without state. Datagrams are
keyed (src, dst, ident, proto) for IPv4 (RFC 791) and (src, dst, ident) for IPv6, where
RFC 8200 takes the upper protocol from the offset-0 fragment.

Behaviour follows Zeek's FragReassembler: the first copy of a byte wins, an overlap with
the same bytes is ``fragment_overlap`` and with different bytes ``fragment_inconsistency``
(one per stored piece it overlaps); ``excessively_small_fragment`` (a non-last fragment
under 64 bytes on the wire), ``excessively_large_fragment`` (ending past 64000),
``fragment_size_inconsistency`` (last fragments disagreeing, data past the end the last
fragment set, or a complete prefix with more beyond it: the prefix is delivered),
``fragment_protocol_inconsistency`` (header length or IPv6 next header changing, or a
total length under the header length), ``fragment_with_DF`` (IPv4) and
``incompletely_captured_fragment`` (cut by the snaplen: not reassembled; Zeek still reads
the headers of such a first fragment, the decoder may too).

Bounds: an incomplete datagram expires ``timeout`` seconds after its first fragment
(``expired``; 30 s by default as Linux's ipfrag_time, where Zeek's default is never;
``expire(math.inf)`` drops everything at end of input); the bytes held (payload plus a fixed charge per datagram and per stored
piece, so floods of tiny fragments are bounded too) never exceed ``max_bytes``: the oldest
datagrams are evicted first (``evicted``), and a datagram that alone would not fit is
dropped (``dropped``). ``counters``: ``fragments``, ``atomic``, ``reassembled``,
``expired``, ``evicted``, ``dropped``, ``not_reassembled`` (cut by the snaplen or bad
lengths). Weirds are not counted here: the caller counts what it reports.
"""

from __future__ import annotations

from bisect import bisect_right

#: Zeek's MIN_ACCEPTABLE_FRAG_SIZE and MAX_ACCEPTABLE_FRAG_SIZE
MIN_ACCEPTABLE_FRAG_SIZE = 64
MAX_ACCEPTABLE_FRAG_SIZE = 64000
#: bytes charged against max_bytes for each pending datagram and each stored piece
DATAGRAM_COST = 256
PIECE_COST = 64


class _Datagram:
    """What is known so far of one fragmented datagram."""

    __slots__ = ("deadline", "starts", "pieces", "contig", "prefix", "frag_size", "proto",
                 "header_len", "held")

    def __init__(self, deadline: float, proto: int, header_len: int) -> None:
        self.deadline = deadline
        self.starts: list[int] = []                     # piece starts, sorted
        self.pieces: list[tuple[int, int, bytes]] = []  # (start, end, data), disjoint
        self.contig = 0        # end of the gap-free run of pieces from offset 0
        self.prefix = 0        # how many pieces make up that run
        self.frag_size = 0     # datagram length once a last fragment said so; 0 = unknown
        self.proto = proto
        self.header_len = header_len
        self.held = DATAGRAM_COST


class FragmentReassembler:
    """Collects IP fragments by datagram and hands back each datagram once it is whole."""

    def __init__(self, timeout: float = 30.0, max_bytes: int = 4 << 20) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.held_bytes = 0
        #: Zeek weird names raised by the most recent ipv4()/ipv6() call
        self.weirds: list[str] = []
        self.counters: dict[str, int] = dict.fromkeys(
            ("fragments", "atomic", "reassembled", "expired", "evicted", "dropped", "not_reassembled"), 0)
        self._pending: dict[tuple, _Datagram] = {}  # insertion order = age order

    @property
    def pending(self) -> int:
        """Datagrams waiting for more fragments."""
        return len(self._pending)

    def ipv4(self, ts: float, src: bytes, dst: bytes, ident: int, proto: int, frag_field: int,
             header_len: int, total_len: int, payload: bytes) -> tuple[int, bytes] | None:
        """Add an IPv4 fragment; the (protocol, payload) of its datagram once complete."""
        self.weirds = []
        return self._add(ts, (src, dst, ident, proto), proto, (frag_field & 0x1FFF) << 3,
                         frag_field & 0x2000, frag_field & 0x4000, header_len, total_len, payload)

    def ipv6(self, ts: float, src: bytes, dst: bytes, ident: int, next_header: int,
             offset_field: int, header_len: int, total_len: int,
             payload: bytes) -> tuple[int, bytes] | None:
        """Add an IPv6 fragment; the (next header, payload) of its datagram once complete."""
        self.weirds = []
        offset = offset_field & 0xFFF8
        more = offset_field & 1
        if not offset and not more:
            # An atomic fragment (RFC 6946): a whole datagram, whatever its ident.
            size = total_len - header_len
            if size < 0:
                self.weirds.append("fragment_protocol_inconsistency")
                self.counters["not_reassembled"] += 1
                return None
            self.counters["atomic"] += 1
            return next_header, payload[:size]
        return self._add(ts, (src, dst, ident), next_header, offset, more, 0, header_len,
                         total_len, payload)

    def expire(self, now: float) -> int:
        """Drop datagrams whose time ran out at packet time ``now``; return how many."""
        pending = self._pending
        gone = 0
        while pending:
            key = next(iter(pending))
            dg = pending[key]
            if dg.deadline > now:
                break
            del pending[key]
            self.held_bytes -= dg.held
            gone += 1
        self.counters["expired"] += gone
        return gone

    # -- internals ------------------------------------------------------------------------

    def _add(self, ts: float, key: tuple, proto: int, offset: int, more: int, dont_fragment: int,
             header_len: int, total_len: int, payload: bytes) -> tuple[int, bytes] | None:
        """Zeek's FragReassembler::AddFragment, in its order of checks and weirds."""
        counters = self.counters
        counters["fragments"] += 1
        weirds = self.weirds
        if total_len < header_len:
            weirds.append("fragment_protocol_inconsistency")
            counters["not_reassembled"] += 1
            return None
        size = total_len - header_len
        if len(payload) < size:
            weirds.append("incompletely_captured_fragment")
            counters["not_reassembled"] += 1
            return None
        if len(payload) > size:
            payload = payload[:size]
        if self._pending:
            self.expire(ts)

        dg = self._pending.get(key)
        if dg is None:
            dg = _Datagram(ts + self.timeout, proto, header_len)
            if not self._make_room(DATAGRAM_COST, None):
                counters["dropped"] += 1
                return None
            self._pending[key] = dg
            self.held_bytes += DATAGRAM_COST
        elif proto != dg.proto or header_len != dg.header_len:
            weirds.append("fragment_protocol_inconsistency")
        if dont_fragment:
            # Linux path-MTU discovery for UDP can do this, for example.
            weirds.append("fragment_with_DF")
        if not offset:
            dg.proto = proto  # RFC 8200: the offset-0 fragment's next header counts

        upper = offset + size
        if not more:
            if not dg.frag_size:
                dg.frag_size = upper
            elif upper != dg.frag_size:
                weirds.append("fragment_size_inconsistency")
                if upper > dg.frag_size:
                    dg.frag_size = upper
        elif total_len < MIN_ACCEPTABLE_FRAG_SIZE:
            weirds.append("excessively_small_fragment")
        if upper > MAX_ACCEPTABLE_FRAG_SIZE:
            weirds.append("excessively_large_fragment")
        if dg.frag_size and upper > dg.frag_size:
            # A fragment that is not the last one reaches past the end the last one set.
            weirds.append("fragment_size_inconsistency")
            dg.frag_size = upper
        if not size:
            return None

        if not self._store(key, dg, offset, payload):
            return None
        return self._complete(key, dg)

    def _store(self, key: tuple, dg: _Datagram, seq: int, data: bytes) -> bool:
        """Keep the parts of ``data`` no earlier fragment covered; report overlaps."""
        upper = seq + len(data)
        starts = dg.starts
        pieces = dg.pieces
        new: list[tuple[int, int]] = []
        pos = seq
        i = max(bisect_right(starts, seq) - 1, 0)
        while i < len(pieces):
            start, end, old = pieces[i]
            i += 1
            if start >= upper:
                break
            if end <= seq:
                continue
            lo = start if start > seq else seq
            hi = end if end < upper else upper
            if old[lo - start:hi - start] == data[lo - seq:hi - seq]:
                self.weirds.append("fragment_overlap")
            else:
                self.weirds.append("fragment_inconsistency")
            if lo > pos:
                new.append((pos, lo))
            pos = end
        if pos < upper:
            new.append((pos, upper))
        if not new:
            return True
        cost = sum(hi - lo for lo, hi in new) + PIECE_COST * len(new)
        if not self._make_room(cost, key):
            del self._pending[key]
            self.held_bytes -= dg.held
            self.counters["dropped"] += 1
            return False
        for lo, hi in new:
            at = bisect_right(starts, lo)
            starts.insert(at, lo)
            pieces.insert(at, (lo, hi, data[lo - seq:hi - seq]))
        dg.held += cost
        self.held_bytes += cost
        # Pieces never overlap and the run from 0 is fully covered, so new pieces land
        # after it: extending the run only looks forward.
        contig, prefix = dg.contig, dg.prefix
        while prefix < len(pieces) and pieces[prefix][0] == contig:
            contig = pieces[prefix][1]
            prefix += 1
        dg.contig, dg.prefix = contig, prefix
        return True

    def _complete(self, key: tuple, dg: _Datagram) -> tuple[int, bytes] | None:
        """The datagram if its pieces now run gap-free from 0 to its known end."""
        if not dg.frag_size or dg.contig < dg.frag_size:
            return None
        if dg.contig > dg.frag_size or dg.prefix < len(dg.pieces):
            # Whole up to the end the last fragment gave, with more data beyond it (or
            # beyond a hole): deliver the gap-free prefix, as Zeek does.
            self.weirds.append("fragment_size_inconsistency")
        del self._pending[key]
        self.held_bytes -= dg.held
        self.counters["reassembled"] += 1
        return dg.proto, b"".join([piece[2] for piece in dg.pieces[:dg.prefix]])

    def _make_room(self, cost: int, keep: tuple | None) -> bool:
        """Evict the oldest datagrams (never ``keep``) until ``cost`` more bytes fit."""
        if self.held_bytes + cost <= self.max_bytes:
            return True
        pending = self._pending
        keep_dg = pending.get(keep) if keep is not None else None
        if cost + (keep_dg.held if keep_dg is not None else 0) > self.max_bytes:
            return False
        victims = []
        for key, dg in pending.items():
            if self.held_bytes + cost <= self.max_bytes:
                break
            if dg is not keep_dg:
                victims.append(key)
                self.held_bytes -= dg.held
        for key in victims:
            del pending[key]
        self.counters["evicted"] += len(victims)
        return True

"""Streaming capture-file reader for classic pcap and pcapng: bytes in, frames out, sans-I/O.

    reader = CaptureReader()
    for chunk in chunks:                 # any chunking: 1 byte or 1 MiB at a time
        frames = reader.feed(chunk)      # every record completed by this chunk
    frames = reader.close()              # end of stream; a partial record is a truncated file
    reader.error                         # None, or one line saying what is wrong and where

A frame is ``(ts, linktype, data, wirelen)``: epoch seconds (float), the DLT/LINKTYPE number
of its interface, the captured bytes, and the packet's length on the wire.

Formats:

* pcap: both byte orders, microsecond (``a1b2c3d4``) and nanosecond (``a1b23c4d``) stamps,
  and the modified/Kuznetzov format (``a1b2cd34``, 24-byte record headers).
* pcapng: sections in either byte order (one after another in a file), interface
  descriptions with their link type, snaplen, ``if_tsresol`` (powers of 10 or 2) and
  ``if_tsoffset``; enhanced, simple (interface 0, no stamp of its own: it takes the last
  stamp seen) and obsolete packet blocks. Name-resolution, statistics, decryption-secrets,
  custom and unknown blocks are skipped and counted.

Bad input never raises. What cannot be read past (bad magic, a record longer than
256 KiB, a pcapng block whose length is impossible or whose
trailer disagrees, a stream ending inside a record) is fatal: ``error`` gets a one-line
message naming the byte offset, the reason is counted, and the frames before it are kept;
later feeds return nothing. What can be stepped over is counted and skipped.

``counters`` keys: ``packets``, ``bytes`` (wire length sum), ``captured_bytes``; pcapng:
``sections``, ``interfaces``. Fatal reasons: ``empty_file``, ``truncated_header``,
``bad_magic``, ``caplen_too_large`` (pcap record over 256 KiB), ``truncated_record``
(pcap), ``truncated_block`` (pcapng), ``corrupt_block`` (pcapng: impossible length,
trailer mismatch, packet overrunning its block, bad byte-order magic),
``unsupported_version`` (pcapng), ``parse_error`` (a bug guard, never expected).
Counted and kept: ``caplen_over_snaplen`` (a packet longer than the snapshot length the
header declares: real files do this, e.g. Zeek's trunc-hdr trace, and libpcap and
Wireshark read them). Counted and skipped (pcapng): ``skipped_nrb``, ``skipped_isb``,
``skipped_dsb``, ``skipped_custom``, ``unknown_block``, ``bad_interface`` (a packet for an
interface not described), ``bad_option`` (an option running past its block).
Link types are reported in ``linktypes``; which ones can be decoded is the decoder's call.

Speed: one ``Struct.unpack_from`` and one slice per record over a buffer walked by offset;
a record split across chunks waits, unjoined, until enough bytes for it have arrived.
"""

from __future__ import annotations

import struct
from typing import Callable

Frame = tuple[float, int, bytes, int]

#: a pcap record claiming more captured bytes than this is corrupt (libpcap's own ceiling)
MAX_CAPLEN = 262144
#: a pcapng block longer than this is corrupt (Wireshark allows 16 MiB plus framing)
MAX_BLOCK = 16 * 1024 * 1024 + 4096

# pcap magic (as read from the file) -> (byte order, seconds per fraction unit, record header length)
_PCAP_MAGICS: dict[bytes, tuple[str, float, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6, 16),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9, 16),
    b"\x34\xcd\xb2\xa1": ("<", 1e-6, 24),  # modified (Kuznetzov) pcap: +ifindex, protocol, pkt_type
    b"\xa1\xb2\xcd\x34": (">", 1e-6, 24),
}

_SHB_TYPE = b"\x0a\x0d\x0d\x0a"  # the same in both byte orders
_SHB = 0x0A0D0D0A
_IDB, _OPB, _SPB, _NRB, _ISB, _EPB, _DSB = 1, 2, 3, 4, 5, 6, 0x0A
_CUSTOM = (0x00000BAD, 0x40000BAD)
_BOM_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_SKIPPED = {_NRB: "skipped_nrb", _ISB: "skipped_isb", _DSB: "skipped_dsb",
            _CUSTOM[0]: "skipped_custom", _CUSTOM[1]: "skipped_custom"}
_OPT_TSRESOL, _OPT_TSOFFSET = 9, 14
_NO_SNAPLEN = 1 << 62

_Parser = Callable[[bytes, int, list], tuple[int, int]]


class _PcapngSection:
    """The per-section decoders of one byte order, built once per section header."""

    __slots__ = ("u32", "block_head", "epb_head", "epb", "opb", "option", "idb", "i64")

    def __init__(self, order: str) -> None:
        self.u32 = struct.Struct(order + "I").unpack_from
        self.block_head = struct.Struct(order + "II").unpack_from
        self.epb_head = struct.Struct(order + "IIIIIII").unpack_from  # type, len + epb fields
        self.epb = struct.Struct(order + "IIIII").unpack_from  # if, ts hi, ts lo, caplen, len
        self.opb = struct.Struct(order + "HHIIII").unpack_from  # if, drops, ts hi, ts lo, caplen, len
        self.option = struct.Struct(order + "HH").unpack_from
        self.idb = struct.Struct(order + "HHI").unpack_from  # linktype, reserved, snaplen
        self.i64 = struct.Struct(order + "q").unpack_from


class CaptureReader:
    """Incremental pcap/pcapng parser: ``feed`` chunks, get the frames they complete."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.format: str | None = None
        self.linktypes: set[int] = set()
        self.counters: dict[str, int] = {"packets": 0, "bytes": 0, "captured_bytes": 0}
        self._pending: list[bytes] = []   # unparsed bytes, in arrival order
        self._pending_len = 0
        self._need = 4                    # bytes needed at the start of _pending to progress
        self._base = 0                    # file offset of the start of _pending
        self._state: _Parser = self._parse_magic
        self._closed = False
        self._seen_any = False
        # pcap
        self._record: Callable = struct.Struct("<IIII").unpack_from
        self._record_len = 16
        self._scale = 1e-6
        self._linktype = 0
        self._snaplen = MAX_CAPLEN
        # pcapng: per interface (linktype, ticks per second, ts offset, snaplen)
        self._section: _PcapngSection | None = None
        self._interfaces: list[tuple[int, int, int, int]] = []
        self._last_ts = 0.0

    # -- public ---------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> list[Frame]:
        """Parse ``chunk`` (the next bytes of the file); return the frames it completed."""
        if self.error is not None or self._closed or not chunk:
            return []
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        self._seen_any = True
        if self._pending_len + len(chunk) < self._need:
            self._pending.append(chunk)
            self._pending_len += len(chunk)
            return []
        if self._pending:
            self._pending.append(chunk)
            buf = b"".join(self._pending)
        else:
            buf = chunk
        out: list[Frame] = []
        off = self._run(buf, out)
        if self.error is not None:
            self._pending = []
            self._pending_len = 0
        else:
            rest = len(buf) - off
            self._pending = [buf[off:]] if rest else []
            self._pending_len = rest
            self._base += off
        if out:
            self._last_ts = out[-1][0]
        return out

    def close(self) -> list[Frame]:
        """End of stream: anything left unparsed means the file is truncated."""
        if self._closed or self.error is not None:
            self._closed = True
            return []
        self._closed = True
        if not self._seen_any:
            self._fail("empty_file", "empty capture file: no file header")
        elif self.format is None:
            self._fail("truncated_header",
                       f"truncated capture file: {self._pending_len} bytes, less than a file header")
        elif self._pending_len:
            what = "record" if self.format == "pcap" else "block"
            self._fail(f"truncated_{what}",
                       f"truncated {self.format} file: {what} at byte {self._base} has "
                       f"{self._pending_len} of {self._need} bytes")
        self._pending = []
        self._pending_len = 0
        return []

    # -- driver ---------------------------------------------------------------------------

    def _run(self, buf: bytes, out: list[Frame]) -> int:
        """Run the current state over ``buf`` until it needs more bytes or fails."""
        off = 0
        try:
            while self.error is None:
                state = self._state
                off, need = state(buf, off, out)
                if need:
                    self._need = need
                    break
        except (struct.error, IndexError, ValueError, OverflowError) as exc:  # bug guard
            self._fail("parse_error", f"{self.format or 'capture'} parse error at byte "
                                      f"{self._base + off}: {exc}")
        return off

    def _fail(self, reason: str, message: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1
        self.error = message

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    # -- file header ----------------------------------------------------------------------

    def _parse_magic(self, buf: bytes, off: int, out: list[Frame]) -> tuple[int, int]:
        """Recognise the format from the first bytes and read the pcap file header."""
        if len(buf) - off < 4:
            return off, 4
        magic = buf[off:off + 4]
        if magic == _SHB_TYPE:
            self.format = "pcapng"
            self._state = self._parse_pcapng
            return off, 0
        spec = _PCAP_MAGICS.get(magic)
        if spec is None:
            self._fail("bad_magic", f"not a pcap or pcapng file: magic 0x{magic.hex()} at byte 0")
            return off, 0
        if len(buf) - off < 24:
            return off, 24
        order, scale, record_len = spec
        snaplen, network = struct.unpack_from(order + "II", buf, off + 16)
        self.format = "pcap"
        self._record = struct.Struct(order + "IIII").unpack_from
        self._record_len = record_len
        self._scale = scale
        self._linktype = network & 0xFFFF  # upper bits may carry FCS length flags
        self._snaplen = snaplen if 0 < snaplen < MAX_CAPLEN else MAX_CAPLEN
        self.linktypes.add(self._linktype)
        self._state = self._parse_pcap
        return off + 24, 0

    # -- pcap records (the hot loop) ------------------------------------------------------

    def _parse_pcap(self, buf: bytes, off: int, out: list[Frame]) -> tuple[int, int]:
        """Slice every complete record in ``buf`` from ``off``; stop at a partial one."""
        unpack = self._record
        hlen = self._record_len
        scale = self._scale
        linktype = self._linktype
        snaplen = self._snaplen
        append = out.append
        end = len(buf)
        last_header = end - hlen
        first = off
        count = len(out)
        wire = 0
        need = 0
        while off <= last_header:
            sec, frac, caplen, wirelen = unpack(buf, off)
            start = off + hlen
            stop = start + caplen
            if stop > end or caplen > snaplen:
                if caplen > MAX_CAPLEN:
                    self._fail("caplen_too_large", f"corrupt pcap record at byte {self._base + off}: "
                                                   f"{caplen} captured bytes, more than {MAX_CAPLEN}")
                    break
                if stop > end:
                    need = hlen + caplen
                    break
                # Longer than the header's snapshot length: real writers get that header
                # wrong, and libpcap and Wireshark read such records, so keep it.
                self._count("caplen_over_snaplen")
            append((sec + frac * scale, linktype, buf[start:stop], wirelen))
            wire += wirelen
            off = stop
        else:
            need = hlen
        count = len(out) - count
        if count:
            counters = self.counters
            counters["packets"] += count
            counters["bytes"] += wire
            counters["captured_bytes"] += off - first - hlen * count
        return off, need

    # -- pcapng blocks --------------------------------------------------------------------

    def _parse_pcapng(self, buf: bytes, off: int, out: list[Frame]) -> tuple[int, int]:
        """Walk whole blocks from ``off``: packets out, descriptions kept, the rest counted."""
        end = len(buf)
        last_head = end - 28
        append = out.append
        first_count = len(out)
        need = 0
        sec = self._section
        while self.error is None:
            if sec is not None and off <= last_head:
                # Fast path: a run of complete, well-formed enhanced packet blocks.
                head = sec.epb_head
                trailer = sec.u32
                interfaces = self._interfaces
                known = len(interfaces)
                while off <= last_head:
                    btype, blen, ifid, hi, lo, caplen, wirelen = head(buf, off)
                    nxt = off + blen
                    if (btype != _EPB or nxt > end or caplen > blen - 32 or blen & 3
                            or blen > MAX_BLOCK or ifid >= known or trailer(buf, nxt - 4)[0] != blen):
                        break
                    linktype, units, tsoffset, snaplen = interfaces[ifid]
                    if caplen > snaplen:
                        self._count("caplen_over_snaplen")
                    append((tsoffset + ((hi << 32) | lo) / units, linktype,
                            buf[off + 28:off + 28 + caplen], wirelen))
                    off = nxt
            # Anything else, including every malformed or partial block, goes the long way.
            off, need = self._parse_block(buf, off, out)
            if need:
                break
            sec = self._section
        count = len(out) - first_count
        if count:
            counters = self.counters
            counters["packets"] += count
            wire = captured = 0
            for frame in out[first_count:]:
                wire += frame[3]
                captured += len(frame[2])
            counters["bytes"] += wire
            counters["captured_bytes"] += captured
        return off, need

    def _parse_block(self, buf: bytes, off: int, out: list[Frame]) -> tuple[int, int]:
        """Check and handle the one block at ``off``; return (next offset, bytes needed)."""
        if len(buf) - off < 12:
            return off, 12
        sec = self._section
        if sec is None or buf[off:off + 4] == _SHB_TYPE:
            blen = self._section_header_length(buf, off)
            if blen is None:
                return off, 0
            if len(buf) - off < blen:
                return off, blen
            self._start_section(buf, off, blen)
            return off + blen, 0
        btype, blen = sec.block_head(buf, off)
        where = f"corrupt pcapng block at byte {self._base + off}: type 0x{btype:08x}"
        if blen < 12 or blen & 3 or blen > MAX_BLOCK:
            self._fail("corrupt_block", f"{where}, impossible length {blen}")
            return off, 0
        if len(buf) - off < blen:
            return off, blen
        if sec.u32(buf, off + blen - 4)[0] != blen:
            self._fail("corrupt_block", f"{where}, trailing length disagrees with leading length {blen}")
            return off, 0
        interfaces = self._interfaces
        if btype == _EPB or btype == _OPB:
            if blen < 32:
                self._fail("corrupt_block", f"{where}, {blen} bytes is too short for a packet block")
                return off, 0
            if btype == _EPB:
                ifid, hi, lo, caplen, wirelen = sec.epb(buf, off + 8)
            else:
                ifid, _drops, hi, lo, caplen, wirelen = sec.opb(buf, off + 8)
            if caplen > blen - 32:
                self._fail("corrupt_block", f"{where}, packet of {caplen} bytes overruns its block")
                return off, 0
            if ifid >= len(interfaces):
                self._count("bad_interface")
                return off + blen, 0
            linktype, units, tsoffset, snaplen = interfaces[ifid]
            if caplen > snaplen:
                self._count("caplen_over_snaplen")
            out.append((tsoffset + ((hi << 32) | lo) / units, linktype,
                        buf[off + 28:off + 28 + caplen], wirelen))
        elif btype == _SPB:
            if blen < 16:
                self._fail("corrupt_block", f"{where}, {blen} bytes is too short for a packet block")
                return off, 0
            if not interfaces:
                self._count("bad_interface")
                return off + blen, 0
            wirelen = sec.u32(buf, off + 8)[0]
            linktype, _units, _tsoffset, snaplen = interfaces[0]
            caplen = min(wirelen, snaplen, blen - 16)
            ts = out[-1][0] if out else self._last_ts
            out.append((ts, linktype, buf[off + 12:off + 12 + caplen], wirelen))
        elif btype == _IDB:
            if blen < 20:
                self._fail("corrupt_block", f"{where}, {blen} bytes is too short for an interface")
                return off, 0
            interfaces.append(self._interface(sec, buf, off, blen))
            self._count("interfaces")
        else:
            self._count(_SKIPPED.get(btype, "unknown_block"))
        return off + blen, 0

    def _section_header_length(self, buf: bytes, off: int) -> int | None:
        """Length of the section header block at ``off`` (its byte order is inside it)."""
        if buf[off:off + 4] != _SHB_TYPE:
            self._fail("corrupt_block", f"corrupt pcapng file: no section header at byte {self._base + off}")
            return None
        order = _BOM_ORDER.get(buf[off + 8:off + 12])
        if order is None:
            self._fail("corrupt_block", f"corrupt pcapng section header at byte {self._base + off}: "
                                        f"byte-order magic 0x{buf[off + 8:off + 12].hex()}")
            return None
        blen = struct.unpack_from(order + "I", buf, off + 4)[0]
        if blen < 28 or blen & 3 or blen > MAX_BLOCK:
            self._fail("corrupt_block", f"corrupt pcapng section header at byte {self._base + off}: "
                                        f"impossible length {blen}")
            return None
        return blen

    def _start_section(self, buf: bytes, off: int, blen: int) -> None:
        """Begin a section: its byte order, a fresh interface list."""
        order = _BOM_ORDER[buf[off + 8:off + 12]]
        sec = _PcapngSection(order)
        if sec.u32(buf, off + blen - 4)[0] != blen:
            self._fail("corrupt_block", f"corrupt pcapng section header at byte {self._base + off}: "
                                        f"trailing length disagrees with leading length {blen}")
            return
        major = struct.unpack_from(order + "H", buf, off + 12)[0]
        if major != 1:
            self._fail("unsupported_version", f"unsupported pcapng version {major} in section "
                                              f"header at byte {self._base + off}")
            return
        self._section = sec
        self._interfaces = []
        self._count("sections")

    def _interface(self, sec: _PcapngSection, buf: bytes, off: int, blen: int) -> tuple[int, int, int, int]:
        """Read an interface description: link type, snaplen, tsresol, tsoffset."""
        linktype, _reserved, snaplen = sec.idb(buf, off + 8)
        units = 1_000_000
        tsoffset = 0
        pos = off + 16
        stop = off + blen - 4
        while pos + 4 <= stop:
            code, olen = sec.option(buf, pos)
            if code == 0:
                break
            value = pos + 4
            if value + olen > stop:
                self._count("bad_option")
                break
            if code == _OPT_TSRESOL and olen >= 1:
                resol = buf[value]
                units = 2 ** (resol & 0x7F) if resol & 0x80 else 10 ** resol
            elif code == _OPT_TSOFFSET and olen >= 8:
                tsoffset = sec.i64(buf, value)[0]
            pos = value + ((olen + 3) & ~3)
        self.linktypes.add(linktype)
        return linktype, units, tsoffset, snaplen or _NO_SNAPLEN

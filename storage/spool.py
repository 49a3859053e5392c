"""The LMDB disk tier: signed events keyed by sequence number, durable across kill -9.

One write transaction per batch. Everything that must agree with the events (the
accounting counters, the sequence reservation, per-source replay progress and pending
drop reports) is committed in the same transaction, so a crash at any instant leaves a
consistent spool. Sequence numbers are reserved in blocks: a restart skips the rest of
the last block (numbers that may have been handed out but never committed) and reports
that range to the Core as ``unassigned``, so no number is ever used for two events.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Iterator, Mapping

import lmdb
import msgpack

from protocols.errors import ResourceError, TransientError

_SEQ = struct.Struct(">Q")
SEQ_BLOCK = 1 << 16
#: bytes LMDB needs beyond the values themselves, per record (key, node header, page slack)
RECORD_OVERHEAD = 48
#: share of the disk quota the records may fill; the rest is LMDB's own (branch pages,
#: free pages awaiting reuse, copy-on-write): measured under drop/ack churn, the data
#: file stays within 1.15 x the records' counted bytes
RECORD_SHARE = 0.8
#: smallest LMDB map: below it LMDB's own pages (four databases, a batch's copy-on-write)
#: crowd the records out, so a smaller quota bounds the records but the file may reach this
MIN_MAP = 4 << 20
#: free bytes under which an I/O error from a write means the file system is full: LMDB
#: reports a short write (the disk ran out mid-transaction) as EIO, not ENOSPC
SHORT_WRITE_FREE = 1 << 20


def _key(seq: int) -> bytes:
    return _SEQ.pack(seq)


class SpoolFull(ResourceError):
    """The spool is at its disk quota or LMDB's map is full."""

    reason = "spool_full"


class Spool:
    """Durable, ordered store of signed event records with their accounting.

    ``quota_bytes`` bounds the LMDB data file itself (it is the map size, so the file
    can never grow past it; quotas under MIN_MAP get a map of MIN_MAP); records are
    admitted up to ``capacity`` = RECORD_SHARE of it, so that deletes and drops always
    find pages to copy on write.
    """

    def __init__(self, path: str, quota_bytes: int, map_size: int | None = None, record_share: float = RECORD_SHARE) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.quota_bytes = quota_bytes
        self.capacity = int(quota_bytes * record_share)
        #: a full map is the quota reached, unless a smaller map was set on purpose (then it is its own limit)
        self._map_is_quota = map_size is None or map_size >= quota_bytes
        map_size = map_size or max(quota_bytes, MIN_MAP)
        try:
            self.env = lmdb.open(path, map_size=map_size, max_dbs=8, subdir=True, sync=True, metasync=True)
        except lmdb.Error as exc:
            raise TransientError(f"cannot open spool at {path}: {exc}", reason="spool_open") from exc
        self._events = self.env.open_db(b"events")
        self._meta = self.env.open_db(b"meta")
        self._drops = self.env.open_db(b"drops")
        self._sources = self.env.open_db(b"sources")
        with self.env.begin() as txn:
            self._counters: dict[str, int] = {
                k.decode(): msgpack.unpackb(v) for k, v in txn.cursor(db=self._meta) if k.startswith(b"n:")
            }
        self.next_seq = self._start_boot()

    # --- counters -------------------------------------------------------------------

    def counter(self, name: str) -> int:
        return self._counters.get("n:" + name, 0)

    def counters(self) -> dict[str, int]:
        return {k[2:]: v for k, v in self._counters.items()}

    def _bump(self, txn: lmdb.Transaction, deltas: dict[str, int]) -> dict[str, int]:
        updated = {}
        for name, delta in deltas.items():
            if delta:
                key = "n:" + name
                value = self._counters.get(key, 0) + delta
                txn.put(key.encode(), msgpack.packb(value), db=self._meta)
                updated[key] = value
        return updated

    # --- sequence space -------------------------------------------------------------

    def _start_boot(self) -> int:
        with self.env.begin(write=True) as txn:
            raw = txn.get(b"reserved", db=self._meta)
            reserved = msgpack.unpackb(raw) if raw else 1
            raw_last = txn.get(b"last_seq", db=self._meta)
            last = msgpack.unpackb(raw_last) if raw_last else 0
            if reserved > last + 1:
                self._put_drop(txn, last + 1, reserved - 1, "unassigned")
            txn.put(b"reserved", msgpack.packb(reserved + SEQ_BLOCK), db=self._meta)
            txn.put(b"last_seq", msgpack.packb(reserved - 1), db=self._meta)
        self._reserved = reserved + SEQ_BLOCK
        self._last_durable = reserved - 1
        return reserved

    def reserve_through(self, seq: int) -> None:
        """Make sure a restart never hands out ``seq`` again (for events kept only in memory).

        A tiny write outside the quota; raises TransientError/SpoolFull if the disk refuses.
        """
        if seq < self._reserved:
            return
        reserved = seq + 1 + SEQ_BLOCK
        try:
            with self.env.begin(write=True) as txn:
                txn.put(b"reserved", msgpack.packb(reserved), db=self._meta)
        except lmdb.MapFullError as exc:
            raise SpoolFull(f"spool map full: {exc}", reason="map_full") from exc
        except lmdb.Error as exc:
            raise self._classify(exc) from exc
        self._reserved = reserved

    @property
    def last_seq(self) -> int:
        """The newest sequence number committed (0 before the first)."""
        return self.next_seq - 1

    # --- writing --------------------------------------------------------------------

    def append(
        self,
        records: list[tuple[int, bytes]],
        progress: tuple[str, int] | list[tuple[str, int]] | None = None,
        created: int | None = None,
    ) -> None:
        """Commit a batch of (seq, record), in increasing seq order, in one transaction.

        ``progress`` is (source id, next ordinal) of a replay (or a list of them),
        committed with the batch. ``created`` counts the events as created here (default:
        all of them; events moved in from the memory tier were counted there).
        Raises :class:`SpoolFull` (nothing written) when the quota or map would overflow.
        """
        if not records and not progress:
            return
        if isinstance(progress, tuple):
            progress = [progress]
        size = sum(len(r) + RECORD_OVERHEAD for _, r in records)
        if records and self.counter("bytes") + size > self.capacity:
            raise SpoolFull(f"spool quota of {self.quota_bytes} bytes reached", reason="disk_quota")
        try:
            with self.env.begin(write=True) as txn:
                cursor = txn.cursor(db=self._events)
                for seq, record in records:
                    if not cursor.put(_key(seq), record, append=True):
                        raise ValueError(f"sequence {seq} is not above the spool's last")
                reserved = self._reserved
                last = self._last_durable
                if records:
                    last = max(last, records[-1][0])
                    txn.put(b"last_seq", msgpack.packb(last), db=self._meta)
                    if last + 1 >= reserved:
                        reserved = last + 1 + SEQ_BLOCK
                        txn.put(b"reserved", msgpack.packb(reserved), db=self._meta)
                for source, ordinal in progress or ():
                    txn.put(source.encode(), msgpack.packb(ordinal), db=self._sources)
                updated = self._bump(txn, {"created": len(records) if created is None else created, "bytes": size, "stored": len(records)})
        except lmdb.MapFullError as exc:
            if self._map_is_quota:  # the file is at its limit (LMDB's own pages took the rest)
                raise SpoolFull(f"spool quota of {self.quota_bytes} bytes reached (the LMDB file is at its limit)", reason="disk_quota") from exc
            raise SpoolFull(f"spool map full: {exc}", reason="map_full") from exc
        except lmdb.Error as exc:
            raise self._classify(exc) from exc
        self._counters.update(updated)
        self._reserved, self._last_durable = reserved, last
        if records:
            self.next_seq = max(self.next_seq, records[-1][0] + 1)

    def _classify(self, exc: lmdb.Error) -> Exception:
        code = getattr(exc, "errno", None) or (exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None)
        if code == errno.ENOSPC or "No space" in str(exc):
            return SpoolFull(f"disk full under the spool: {exc}", reason="disk_full")
        if (code == errno.EIO or "Input/output error" in str(exc)) and self._disk_free() < SHORT_WRITE_FREE:
            # LMDB turns a short pwrite (the file system ran out mid-write) into EIO
            return SpoolFull(f"disk full under the spool: {exc} (a short write, {self._disk_free()} bytes free)", reason="disk_full")
        return TransientError(f"spool write failed: {exc}", reason="spool_io")

    def _disk_free(self) -> int:
        """Bytes the file system under the spool still gives us (a large number if it cannot say)."""
        try:
            st = os.statvfs(self.path)
        except OSError:
            return 1 << 62
        return st.f_bavail * st.f_frsize

    def note_drops(self, reason: str, count: int, seq_range: tuple[int, int] | None = None) -> None:
        """Count ``count`` events dropped for ``reason``; a seq range is also reported to the Core."""
        self.fold({"dropped:" + reason: count}, [(seq_range[0], seq_range[1], reason)] if seq_range else [])

    def fold(self, deltas: dict[str, int], ranges: list[tuple[int, int, str]] = ()) -> None:
        """Add counter ``deltas`` and drop ``ranges`` (first, last, reason) in one transaction.

        Used for events the memory tier accounted for: their drop reports become durable
        here, and at shutdown their counts join the spool's so that the totals survive.
        """
        try:
            with self.env.begin(write=True) as txn:
                last = self._last_durable
                for first, end, reason in ranges:
                    self._put_drop(txn, first, end, reason)
                    last = max(last, end)
                if last != self._last_durable:
                    txn.put(b"last_seq", msgpack.packb(last), db=self._meta)
                updated = self._bump(txn, deltas)
        except lmdb.MapFullError as exc:
            raise SpoolFull(f"spool map full: {exc}", reason="map_full") from exc
        except lmdb.Error as exc:
            raise self._classify(exc) from exc
        self._counters.update(updated)
        self._last_durable = last

    def _put_drop(self, txn: lmdb.Transaction, first: int, last: int, reason: str) -> None:
        txn.put(_key(first), msgpack.packb([last, reason]), db=self._drops)

    def source_progress(self, source: str) -> int:
        """How many events of replay ``source`` are already committed (0 if none)."""
        with self.env.begin() as txn:
            raw = txn.get(source.encode(), db=self._sources)
        return msgpack.unpackb(raw) if raw else 0

    # --- delivery -------------------------------------------------------------------

    def read(self, after: int, max_events: int, max_bytes: int = 8 << 20) -> list[tuple[int, bytes]]:
        """Up to ``max_events`` records with seq > ``after``, oldest first."""
        out: list[tuple[int, bytes]] = []
        size = 0
        with self.env.begin(buffers=False) as txn:
            cursor = txn.cursor(db=self._events)
            if not cursor.set_range(_key(after + 1)):
                return out
            for key, value in cursor:
                out.append((_SEQ.unpack(key)[0], value))
                size += len(value)
                if len(out) >= max_events or size >= max_bytes:
                    break
        return out

    def drop_reports(self, after: int = 0) -> list[tuple[int, int, str]]:
        """Pending drop reports (first, last, reason) whose range ends after ``after``."""
        with self.env.begin() as txn:
            return [
                (_SEQ.unpack(k)[0], *msgpack.unpackb(v))
                for k, v in txn.cursor(db=self._drops)
                if msgpack.unpackb(v)[0] > after
            ]

    def acknowledge(self, upto: int, refused: Mapping[int, str] | None = None) -> int:
        """The Core holds everything up to ``upto``: delete it, count it delivered; return how many.

        Sequences in ``refused`` (seq -> reason) were refused by the Core for good: they
        are deleted too but counted dropped with their reason.
        """
        removed = 0
        size = 0
        dropped: dict[str, int] = {}
        try:
            with self.env.begin(write=True) as txn:
                cursor = txn.cursor(db=self._events)
                cursor.first()
                while cursor.key():
                    seq = _SEQ.unpack(cursor.key())[0]
                    if seq > upto:
                        break
                    size += len(cursor.value()) + RECORD_OVERHEAD
                    if refused and seq in refused:
                        key = "dropped:" + refused[seq]
                        dropped[key] = dropped.get(key, 0) + 1
                    else:
                        removed += 1
                    cursor.delete()
                stale = []
                for k, v in txn.cursor(db=self._drops):
                    if _SEQ.unpack(k)[0] > upto:
                        break
                    if msgpack.unpackb(v)[0] <= upto:
                        stale.append(k)
                for k in stale:
                    txn.delete(k, db=self._drops)
                gone = removed + sum(dropped.values())
                updated = self._bump(txn, {"delivered": removed, "bytes": -size, "stored": -gone, **dropped})
        except lmdb.Error as exc:
            raise self._classify(exc) from exc
        self._counters.update(updated)
        return removed

    def drop_oldest(self, count: int, above: int, reason: str) -> tuple[int, int] | None:
        """Delete the ``count`` oldest records with seq > ``above``; count and report them."""
        first = last = None
        removed = size = 0
        updated: dict[str, int] = {}
        try:
            with self.env.begin(write=True) as txn:
                cursor = txn.cursor(db=self._events)
                cursor.set_range(_key(above + 1))
                while removed < count and cursor.key():
                    seq = _SEQ.unpack(cursor.key())[0]
                    first = seq if first is None else first
                    last = seq
                    size += len(cursor.value()) + RECORD_OVERHEAD
                    removed += 1
                    cursor.delete()
                if removed:
                    self._put_drop(txn, first, last, reason)
                    updated = self._bump(txn, {"dropped:" + reason: removed, "bytes": -size, "stored": -removed})
        except lmdb.Error as exc:
            raise self._classify(exc) from exc
        self._counters.update(updated)
        return (first, last) if removed else None

    # --- state ----------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self.counter("stored")

    @property
    def bytes_used(self) -> int:
        return self.counter("bytes")

    def first_seq(self) -> int:
        """Oldest seq still held (0 if empty)."""
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._events)
            return _SEQ.unpack(cursor.key())[0] if cursor.first() else 0

    def seqs_through(self, upto: int) -> list[int]:
        """Sequence numbers held at or below ``upto``, oldest first."""
        out = []
        with self.env.begin() as txn:
            for key in txn.cursor(db=self._events).iternext(keys=True, values=False):
                seq = _SEQ.unpack(key)[0]
                if seq > upto:
                    break
                out.append(seq)
        return out

    def iter_all(self) -> Iterator[tuple[int, bytes]]:
        with self.env.begin(buffers=False) as txn:
            for key, value in txn.cursor(db=self._events):
                yield _SEQ.unpack(key)[0], value

    def file_bytes(self) -> int:
        """Size of the LMDB data file on disk (what the quota bounds, with LMDB's slack)."""
        try:
            return os.path.getsize(os.path.join(self.path, "data.mdb"))
        except OSError:
            return 0

    def close(self) -> None:
        self.env.close()

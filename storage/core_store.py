"""The Core's received-event store: each (probe, sequence) once, with per-probe accounts.

Events are keyed ``probe_id NUL seq(8 bytes, big-endian)``, so one probe's events sit
together in sequence order. A probe's account (highest contiguous sequence stored or
explained, counts of stored, duplicate, rejected and reported-dropped events, gaps) is
committed in the same transaction as the events it describes: an ack the Core sends is
never ahead of what is on disk.
"""

from __future__ import annotations

import os
import struct
from typing import Iterator

import attrs
import lmdb
import msgpack

_SEQ = struct.Struct(">Q")


def _key(probe_id: str, seq: int) -> bytes:
    return probe_id.encode() + b"\x00" + _SEQ.pack(seq)


@attrs.define
class ProbeAccount:
    """What the Core knows of one probe's stream."""

    probe_id: str
    acked: int = 0  # every seq <= acked is stored or explained
    received: int = 0  # event records received, good or bad, duplicates included
    stored: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = attrs.field(factory=dict)  # by error code
    reported: dict[str, int] = attrs.field(factory=dict)  # sequences explained by drop reports, by reason
    gaps: int = 0  # sequences skipped without explanation
    late: int = 0  # stored below acked (a re-sent copy of a rejected event)
    conflicts: int = 0  # duplicates whose bytes differ from the stored event (a reused sequence)
    bad_frames: dict[str, int] = attrs.field(factory=dict)  # frames refused after hello, by error code
    boots: list[str] = attrs.field(factory=list)
    last_seen: float = 0.0

    def to_bytes(self) -> bytes:
        return msgpack.packb(attrs.asdict(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> "ProbeAccount":
        return cls(**msgpack.unpackb(data))


class CoreStore:
    """LMDB store of verified events and probe accounts."""

    def __init__(self, path: str, map_size: int = 8 << 30) -> None:
        os.makedirs(path, exist_ok=True)
        self.env = lmdb.open(path, map_size=map_size, max_dbs=4, subdir=True, sync=True)
        self._events = self.env.open_db(b"events")
        self._probes = self.env.open_db(b"probes")

    def account(self, probe_id: str) -> ProbeAccount:
        with self.env.begin() as txn:
            raw = txn.get(probe_id.encode(), db=self._probes)
        return ProbeAccount.from_bytes(raw) if raw else ProbeAccount(probe_id)

    def accounts(self) -> list[ProbeAccount]:
        with self.env.begin() as txn:
            return [ProbeAccount.from_bytes(v) for _, v in txn.cursor(db=self._probes)]

    def has(self, probe_id: str, seqs: list[int]) -> set[int]:
        """Which of ``seqs`` are already stored for ``probe_id``."""
        with self.env.begin() as txn:
            return {s for s in seqs if txn.get(_key(probe_id, s), db=self._events) is not None}

    def commit(self, account: ProbeAccount, records: list[tuple[int, bytes]]) -> None:
        """Store ``records`` (seq, signed record) not yet present and the account, atomically."""
        with self.write() as txn:
            for seq, record in records:
                txn.put_event(account.probe_id, seq, record)
            txn.put_account(account)

    def write(self) -> "CoreTxn":
        """One write transaction: events and accounts committed together, or not at all."""
        return CoreTxn(self)

    def count(self, probe_id: str) -> int:
        """How many events of ``probe_id`` are stored."""
        return sum(1 for _ in self.events(probe_id))

    def events(self, probe_id: str | None = None) -> Iterator[tuple[str, int, bytes]]:
        """(probe_id, seq, signed record) in key order: per probe, in sequence order."""
        with self.env.begin(buffers=False) as txn:
            cursor = txn.cursor(db=self._events)
            if probe_id is not None:
                prefix = probe_id.encode() + b"\x00"
                if not cursor.set_range(prefix):
                    return
            for key, value in cursor:
                pid, seq = key[:-9], key[-8:]
                if probe_id is not None and pid != probe_id.encode():
                    return
                yield pid.decode(), _SEQ.unpack(seq)[0], value

    def close(self) -> None:
        self.env.close()


class CoreTxn:
    """A write transaction of the Core's store (use as a context manager)."""

    def __init__(self, store: CoreStore) -> None:
        self._store = store
        self._txn: lmdb.Transaction | None = None

    def __enter__(self) -> "CoreTxn":
        self._txn = self._store.env.begin(write=True)
        return self

    def __exit__(self, exc_type: type | None, *rest: object) -> None:
        txn, self._txn = self._txn, None
        assert txn is not None
        if exc_type is None:
            txn.commit()
        else:
            txn.abort()

    def stored(self, probe_id: str, seq: int) -> bytes | None:
        """The record stored for (probe_id, seq), or None."""
        assert self._txn is not None
        value = self._txn.get(_key(probe_id, seq), db=self._store._events)
        return bytes(value) if value is not None else None

    def put_event(self, probe_id: str, seq: int, record: bytes) -> None:
        assert self._txn is not None
        self._txn.put(_key(probe_id, seq), record, db=self._store._events, overwrite=False)

    def put_account(self, account: ProbeAccount) -> None:
        assert self._txn is not None
        self._txn.put(account.probe_id.encode(), account.to_bytes(), db=self._store._probes)

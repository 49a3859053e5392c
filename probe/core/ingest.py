"""Per-probe ingest: verify each event, keep each (probe, seq) once and in order, account.

Verification is pure (the server runs it on a thread pool as frames arrive); the
accounting over a :class:`ProbeAccount` runs on the store's writer thread, where
:func:`commit_group` applies a run of queued frames and commits them in one LMDB
transaction: under load many frames share one commit.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

import attrs
import msgpack
import nacl.exceptions
import nacl.signing

from protocols.events.envelope import SIGNATURE_SIZE, VERSION, EventRecord, MalformedEvent
from protocols.wire import ErrorCode
from storage.core_store import CoreStore, ProbeAccount


@attrs.frozen(slots=True)
class IngestResult:
    """Records to store (seq, record), rejections (seq, code) and duplicates seen."""

    store: list[tuple[int, bytes]]
    rejected: list[tuple[int, str]]
    duplicates: int


#: first bytes of a msgpack map (fixmap, map16, map32): the envelope's body
_MAP_TYPES = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}
_ENVELOPE_ERRORS = (ValueError, TypeError, msgpack.OutOfData, msgpack.FormatError, msgpack.StackError)


def envelope_header(canonical: bytes) -> EventRecord:
    """The envelope of canonical bytes (body left empty), checking the whole shape; raise MalformedEvent.

    The same checks as :func:`decode_canonical` (a 7-array, version 1, strings, a
    non-negative int seq, a float ts, a map body, nothing after it) without building the
    body: msgpack's C unpacker skips it. Verification threads hold the GIL for that work,
    so it is kept small.
    """
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(canonical)
    try:
        if unpacker.read_array_header() != 7 or unpacker.unpack() != VERSION:
            raise MalformedEvent("not a version-1 envelope")
        probe_id, boot_id, seq, ts, kind = (unpacker.unpack() for _ in range(5))
        if not (isinstance(probe_id, str) and isinstance(boot_id, str) and isinstance(kind, str)):
            raise MalformedEvent("probe_id, boot_id and kind must be strings")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(ts, float):
            raise MalformedEvent("seq must be a non-negative integer and ts a float")
        body_at = unpacker.tell()
        if canonical[body_at] not in _MAP_TYPES:
            raise MalformedEvent("body must be a map")
        unpacker.skip()
        if unpacker.tell() != len(canonical):
            raise MalformedEvent("bytes after the envelope")
    except _ENVELOPE_ERRORS as exc:
        raise MalformedEvent(f"not an envelope: {exc}") from None
    except IndexError:
        raise MalformedEvent("truncated envelope") from None
    return EventRecord(probe_id, boot_id, seq, ts, kind, {})


def verify_records(
    records: Sequence[bytes],
    probe_id: str,
    key: nacl.signing.VerifyKey | Any,
    policy: Callable[[EventRecord], str | None] | None = None,
) -> list[tuple[int, bytes | None, str | None]]:
    """(seq or -1, record if good, error code if bad) for each record; no state touched.

    ``key`` is anything with ``verify(signed)`` (a key ring tries older keys too);
    ``policy`` refuses a well-signed event with a code (a replayed sequence); it sees the
    envelope (probe, boot, seq, ts, kind), not the body.
    """
    out: list[tuple[int, bytes | None, str | None]] = []
    verify = key.verify
    for record in records:
        if len(record) <= SIGNATURE_SIZE:
            out.append((-1, None, ErrorCode.BAD_EVENT))
            continue
        try:
            event = envelope_header(record[SIGNATURE_SIZE:])
        except MalformedEvent:
            out.append((-1, None, ErrorCode.BAD_EVENT))
            continue
        seq = event.seq
        if event.probe_id != probe_id or seq == 0:
            out.append((seq, None, ErrorCode.BAD_EVENT))
            continue
        try:
            verify(record)
        except nacl.exceptions.BadSignatureError:
            out.append((seq, None, ErrorCode.BAD_SIGNATURE))
            continue
        refusal = policy(event) if policy is not None else None
        if refusal is not None:
            out.append((seq, None, refusal))
            continue
        out.append((seq, record, None))
    return out


def apply_events(
    account: ProbeAccount,
    checked: list[tuple[int, bytes | None, str | None]],
    stored: set[int] | Mapping[int, bytes],
) -> IngestResult:
    """Advance ``account`` over a verified batch; ``stored`` = seqs of it already in the store.

    Given as a mapping seq -> stored bytes, a duplicate whose bytes differ also counts as
    a conflict: the probe used one sequence for two events.
    """
    to_store: list[tuple[int, bytes]] = []
    rejected: list[tuple[int, str]] = []
    duplicates = 0
    seen: set[int] = set()
    for seq, record, code in checked:
        account.received += 1
        if code is not None:
            account.rejected[code] = account.rejected.get(code, 0) + 1
            rejected.append((seq, code))
            if seq > account.acked and code != ErrorCode.REPLAYED_SEQUENCE:  # a replay never moves the stream on
                account.gaps += seq - account.acked - 1
                account.acked = seq
            continue
        if seq in stored or seq in seen:
            duplicates += 1
            account.duplicates += 1
            if isinstance(stored, Mapping) and seq in stored and stored[seq] != record:
                account.conflicts += 1
            continue
        seen.add(seq)
        if seq <= account.acked:
            account.late += 1
        else:
            account.gaps += seq - account.acked - 1
            account.acked = seq
        to_store.append((seq, record))
        account.stored += 1
    return IngestResult(to_store, rejected, duplicates)


def apply_drops(account: ProbeAccount, ranges: Sequence[tuple[int, int, str]]) -> None:
    """Explain sequences the probe will never send; they count by reason, not as gaps."""
    for first, last, reason in sorted(ranges):
        if last <= account.acked:
            continue
        start = max(first, account.acked + 1)
        if start > account.acked + 1:
            account.gaps += start - account.acked - 1
        account.reported[reason] = account.reported.get(reason, 0) + (last - start + 1)
        account.acked = last


@attrs.frozen(slots=True)
class GroupResult:
    """What one group commit did: events stored, rejections (seq, code), duplicates, and per
    frame (in order) the acknowledged point after it and its own rejections: one ack each."""

    stored: int
    rejected: list[tuple[int, str]]
    duplicates: int
    acks: list[tuple[int, list[tuple[int, str]]]]


def commit_group(
    store: CoreStore,
    account: ProbeAccount,
    steps: Sequence[tuple[str, object]],
    slow_disk: float = 0.0,
) -> GroupResult:
    """Apply queued frames in order (``("events", checked)`` or ``("drops", ranges)``), commit once.

    Runs on the writer thread. ``account`` is advanced in place; if the commit fails the
    caller must reload it from the store. ``slow_disk`` seconds are added to the commit
    (an overload scenario's slow disk).
    """
    stored = duplicates = 0
    rejected: list[tuple[int, str]] = []
    acks: list[tuple[int, list[tuple[int, str]]]] = []
    with store.write() as txn:
        for kind, payload in steps:
            if kind == "drops":
                apply_drops(account, payload)  # type: ignore[arg-type]
                acks.append((account.acked, []))
                continue
            checked = payload  # type: ignore[assignment]
            low = {}
            for seq, record, code in checked:  # type: ignore[union-attr]
                if code is None and seq <= account.acked:
                    existing = txn.stored(account.probe_id, seq)
                    if existing is not None:
                        low[seq] = existing
            result = apply_events(account, checked, low)  # type: ignore[arg-type]
            for seq, record in result.store:
                txn.put_event(account.probe_id, seq, record)
            stored += len(result.store)
            duplicates += result.duplicates
            rejected.extend(result.rejected)
            acks.append((account.acked, result.rejected))
        account.last_seen = time.time()
        txn.put_account(account)
    if slow_disk > 0:
        time.sleep(slow_disk)
    return GroupResult(stored, rejected, duplicates, acks)

"""Per-probe ingest: verify each event, keep each (probe, seq) once and in order, account.

Pure logic over a :class:`ProbeAccount`; the server runs it in a worker thread (the
signature checks are C calls that release the GIL) and then commits the result.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import attrs
import nacl.exceptions
import nacl.signing

from protocols.events.envelope import SIGNATURE_SIZE, EventRecord, MalformedEvent, decode_canonical
from protocols.wire import ErrorCode
from storage.core_store import ProbeAccount


@attrs.frozen(slots=True)
class IngestResult:
    """Records to store (seq, record), rejections (seq, code) and duplicates seen."""

    store: list[tuple[int, bytes]]
    rejected: list[tuple[int, str]]
    duplicates: int


def verify_records(
    records: Sequence[bytes],
    probe_id: str,
    key: nacl.signing.VerifyKey | Any,
    policy: Callable[[EventRecord], str | None] | None = None,
) -> list[tuple[int, bytes | None, str | None]]:
    """(seq or -1, record if good, error code if bad) for each record; no state touched.

    ``key`` is anything with ``verify(signed)`` (a key ring tries older keys too);
    ``policy`` refuses a well-signed event with a code (a replayed sequence).
    """
    out: list[tuple[int, bytes | None, str | None]] = []
    verify = key.verify
    for record in records:
        if len(record) <= SIGNATURE_SIZE:
            out.append((-1, None, ErrorCode.BAD_EVENT))
            continue
        canonical = record[SIGNATURE_SIZE:]
        try:
            event = decode_canonical(canonical)
        except MalformedEvent:
            out.append((-1, None, ErrorCode.BAD_EVENT))
            continue
        if event.probe_id != probe_id or event.seq == 0:
            out.append((event.seq, None, ErrorCode.BAD_EVENT))
            continue
        try:
            verify(record)
        except nacl.exceptions.BadSignatureError:
            out.append((event.seq, None, ErrorCode.BAD_SIGNATURE))
            continue
        refusal = policy(event) if policy is not None else None
        if refusal is not None:
            out.append((event.seq, None, refusal))
            continue
        out.append((event.seq, record, None))
    return out


def apply_events(
    account: ProbeAccount, checked: list[tuple[int, bytes | None, str | None]], stored: set[int]
) -> IngestResult:
    """Advance ``account`` over a verified batch; ``stored`` = seqs of it already in the store."""
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

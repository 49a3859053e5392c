"""Flow keys: which of the probe's events belongs to which expected record.

Every comparator pairs records with events through the connection 4-tuple (originator
first). Addresses are normalised (IPv6 compressed, as the events carry them), so that a
tool writing ``fd00:0:0::1`` and one writing ``fd00::1`` name the same flow.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Iterable

FlowKey = tuple  # (orig_h, orig_p, resp_h, resp_p)


def address(text: str | None) -> str | None:
    """An address in the form events carry it (IPv6 compressed); other text unchanged."""
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def event_key(event: dict) -> FlowKey:
    """(orig_h, orig_p, resp_h, resp_p) of an exported event."""
    return (event.get("id.orig_h"), event.get("id.orig_p"), event.get("id.resp_h"), event.get("id.resp_p"))


def truth_key(record: dict) -> FlowKey:
    """The same 4-tuple for a tshark truth record (client = originator)."""
    return (record.get("client_ip"), record.get("client_port"), record.get("server_ip"), record.get("server_port"))


def zeek_key(record: dict) -> FlowKey:
    """The 4-tuple of a Zeek log record (verbatim strings) as an event carries it."""
    return (address(record["id.orig_h"]), int(record["id.orig_p"]), address(record["id.resp_h"]), int(record["id.resp_p"]))


def key_text(key: FlowKey) -> str:
    """``orig:port->resp:port`` for miss lines."""
    return f"{key[0]}:{key[1]}->{key[2]}:{key[3]}"


def of_kind(events: Iterable[dict], kind: str) -> list[dict]:
    """The exported events of one kind, in their order."""
    return [e for e in events if e.get("kind") == kind]


def by_key(events: Iterable[dict]) -> dict[FlowKey, list[dict]]:
    """Events grouped by flow key, each group in event order."""
    table: dict[FlowKey, list[dict]] = {}
    for event in events:
        table.setdefault(event_key(event), []).append(event)
    return table


def pair_in_order(expected: list[dict], found: list[dict],
                  key: Callable[[dict], Any], fkey: Callable[[dict], Any]) -> list[tuple[dict, dict | None]]:
    """Pair each expected record with the first unused found record of the same key."""
    pool: dict[Any, list[dict]] = {}
    for f in found:
        pool.setdefault(fkey(f), []).append(f)
    out = []
    for e in expected:
        bucket = pool.get(key(e))
        out.append((e, bucket.pop(0) if bucket else None))
    return out

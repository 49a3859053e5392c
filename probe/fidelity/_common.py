"""Helpers shared by the SMB, NTLM and DCE/RPC comparators: flows, Zeek values, EVE checks."""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

_ZEEK_HEX = re.compile(r"\\x([0-9a-fA-F]{2})")


def flow_of(event: dict) -> tuple:
    """(orig_h, orig_p, resp_h, resp_p) of a flat event."""
    return (event.get("id.orig_h"), event.get("id.orig_p"), event.get("id.resp_h"),
            event.get("id.resp_p"))


def truth_flow(record: dict) -> tuple:
    """The same 4-tuple for a truth record (client = originator)."""
    return (record.get("client_ip"), record.get("client_port"), record.get("server_ip"),
            record.get("server_port"))


def of_kind(events: Iterable[dict], kind: str) -> list[dict]:
    return [e for e in events if e.get("kind") == kind]


def zeek_value(text: str | None) -> Any:
    """A verbatim Zeek ASCII-log value as a Python value ('-' unset, escapes undone)."""
    if text is None or text == "-":
        return None
    if text == "(empty)":
        return ""
    text = text.replace("\\\\", "\x00")
    text = _ZEEK_HEX.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text.replace("\x00", "\\")


def zeek_records(expected: dict, log: str) -> list[list[dict]]:
    """Every record list of Zeek log ``log`` (e.g. ``smb_files.log``) in a corpus file."""
    out = []
    for entry in expected.get("expected", []):
        if entry.get("tool") != "zeek":
            continue
        for name, output in entry.get("outputs", {}).items():
            if name == log or name.startswith(log + "."):
                out.append([{k: zeek_value(v) for k, v in r.items()}
                            for r in output.get("records", [])])
    return out


def zeek_entries(expected: dict) -> list[dict]:
    return [e for e in expected.get("expected", []) if e.get("tool") == "zeek"]


def same(a: Any, b: Any, tolerance: float = 0.0) -> bool:
    """Equality with a float tolerance, treating numeric strings as numbers."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        try:
            return abs(float(a) - float(b)) <= tolerance
        except (TypeError, ValueError):
            return False
    return str(a) == str(b)


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


# -- Suricata EVE checks -------------------------------------------------------------------

_INDEX = re.compile(r"^(.*)\[(\d+)\]$")


def eve_get(record: dict, dotted: str) -> tuple[bool, Any]:
    """(present, value) of a dotted EVE path with ``[i]`` list indices, on a nested dict."""
    node: Any = record
    for part in dotted.split("."):
        m = _INDEX.match(part)
        name, index = (m.group(1), int(m.group(2))) if m else (part, None)
        if not isinstance(node, dict) or name not in node:
            return False, None
        node = node[name]
        if index is not None:
            if not isinstance(node, list) or index >= len(node):
                return False, None
            node = node[index]
    return True, node


def eve_matches(record: dict, match: dict, ignored: frozenset[str]) -> bool:
    for key, want in match.items():
        if key in ignored:
            continue
        if key == "has-key":
            if not eve_get(record, want)[0]:
                return False
            continue
        present, value = eve_get(record, key)
        if not present or not same(value, want):
            return False
    return True


def suricata_checks(expected: dict) -> list[tuple[str, dict]]:
    """(test name, check) for every Suricata EVE check in a corpus file."""
    out = []
    for entry in expected.get("expected", []):
        if entry.get("tool") == "suricata":
            for check in entry.get("checks", []):
                out.append((entry.get("test", "?"), check))
    return out


def put(tree: dict, dotted: str, value: Any) -> None:
    """Set a dotted path in a nested dict (building the EVE shape of our events)."""
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def run_eve_checks(report: Any, expected: dict, records: list[dict], event_types: set[str],
                   ignored: frozenset[str], not_carried: dict[str, str]) -> None:
    """Count our EVE-shaped records against each Suricata check of the wanted event types.

    Keys in ``ignored`` are Suricata-internal (transaction ids, packet counters) and skipped;
    a check using a key in ``not_carried`` cannot be evaluated and is reported as a miss
    with the reason, so that every difference stays visible.
    """
    for test, check in suricata_checks(expected):
        match = check.get("match", {})
        if match.get("event_type") not in event_types:
            continue
        report.expected += 1
        missing = sorted(k for k in match if k in not_carried or match.get("has-key") in not_carried)
        if missing:
            report.miss(f"suricata {test}: check {match} not comparable: "
                        + "; ".join(f"{k}: {not_carried.get(k) or not_carried.get(match.get('has-key'))}"
                                    for k in missing))
            continue
        count = sum(1 for r in records if eve_matches(r, match, ignored))
        want = check.get("count")
        if want is None or count == want:
            report.matched += 1
        else:
            report.miss(f"suricata {test}: {count} records match {match}, expected {want}")

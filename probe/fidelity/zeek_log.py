"""Compare event values with verbatim Zeek ASCII-log strings from corpus baselines.

Zeek writes ``-`` for unset, ``T``/``F`` for booleans, intervals and times with six
decimals, containers comma-separated (``(empty)`` when empty); numbers as integers.
"""

from __future__ import annotations

from typing import Any

#: Zeek-internal identifiers that differ between any two runs (never compared)
INTERNAL_FIELDS = frozenset({"ts", "uid", "fuid", "orig_fuids", "resp_fuids"})


def _scalar(value: Any) -> str:
    if value is None:
        return "-"
    if value is True:
        return "T"
    if value is False:
        return "F"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def zeek_text(value: Any) -> str:
    """``value`` (an exported event's field) written as Zeek's ASCII log would write it."""
    if isinstance(value, (list, tuple)):
        return ",".join(_scalar(v) for v in value) if value else "(empty)"
    return _scalar(value)


def _close(expected: str, ours: str) -> bool:
    """Equal, or both numbers within a microsecond (float time arithmetic rounds)."""
    if expected == ours:
        return True
    try:
        return abs(float(expected) - float(ours)) <= 1.5e-6
    except ValueError:
        return False


def zeek_equal(expected: str, value: Any) -> bool:
    """Whether an event value matches a Zeek log string (containers element by element)."""
    ours = zeek_text(value)
    if expected == ours:
        return True
    if isinstance(value, (list, tuple)) and value:
        exp_items = expected.split(",")
        our_items = [_scalar(v) for v in value]
        return len(exp_items) == len(our_items) and all(map(_close, exp_items, our_items))
    return _close(expected, ours)


def zeek_logs(expected: dict, path: str) -> list[dict]:
    """Every ``zeek_log`` output named ``path`` (e.g. ``dns``) in a corpus expectation."""
    logs = []
    for tool in expected.get("expected", []):
        if tool.get("tool") != "zeek":
            continue
        for output in tool.get("outputs", {}).values():
            if output.get("kind") == "zeek_log" and output.get("path") == path:
                logs.append(output)
    return logs


def _short(text: str, limit: int = 120) -> str:
    """A long value cut for a miss line, with its full length."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def field_misses(record: dict, event: dict, skip: frozenset[str] = frozenset()) -> list[str]:
    """``field: zeek=X probe=Y`` for each logged field of ``record`` that ``event`` differs on."""
    misses = []
    for field, expected in record.items():
        if field in INTERNAL_FIELDS or field in skip:
            continue
        if field not in event:
            if expected != "-":
                misses.append(f"{field}: zeek={_short(expected)!r} probe=<not produced>")
            continue
        if not zeek_equal(expected, event[field]):
            misses.append(f"{field}: zeek={_short(expected)!r} probe={_short(zeek_text(event[field]))!r}")
    return misses

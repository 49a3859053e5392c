"""Evaluate suricata-verify EVE checks (``count`` + ``match`` filters) on EVE-shaped dicts.

A filter key is a dotted path with optional list indexes (``dns.answers[0].srv.port``);
a trailing ``__len`` compares the length of a list or string. The probe's events are
turned into EVE-shaped dicts by each kind's comparator, as Suricata 8 would log them.
"""

from __future__ import annotations

import re
from typing import Any

_MISSING = object()
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

#: the Suricata major version whose EVE layout the comparators produce
EVE_VERSION = 8


def eve_get(obj: Any, path: str) -> Any:
    """The value at ``path`` in ``obj``, or a sentinel when absent."""
    want_len = path.endswith(".__len")
    if want_len:
        path = path[: -len(".__len")]
    for name, index in _STEP.findall(path):
        if name:
            if not isinstance(obj, dict) or name not in obj:
                return _MISSING
            obj = obj[name]
        else:
            i = int(index)
            if not isinstance(obj, list) or i >= len(obj):
                return _MISSING
            obj = obj[i]
    if want_len:
        return len(obj) if isinstance(obj, (list, str)) else _MISSING
    return obj


def matches(eve: dict, match: dict) -> bool:
    """Whether one EVE dict satisfies every key of a check's ``match``."""
    for path, want in match.items():
        if path == "pcap_cnt":
            continue  # packet numbers are Suricata's own bookkeeping
        got = eve_get(eve, path)
        if got is _MISSING or got != want:
            return False
    return True


def applies(requires: dict | None) -> bool:
    """Whether a check's ``requires`` holds for the emulated Suricata version."""
    if not requires:
        return True
    minimum = requires.get("min-version")
    below = requires.get("lt-version")
    if minimum is not None and EVE_VERSION < _major(minimum):
        return False
    if below is not None and EVE_VERSION >= _major(below):
        return False
    return True


def _major(version: Any) -> int:
    return int(str(version).split(".")[0])


def suricata_checks(expected: dict, event_type: str) -> list[tuple[str, dict]]:
    """(test name, check) for each applicable check on ``event_type`` in a corpus expectation."""
    out = []
    for tool in expected.get("expected", []):
        if tool.get("tool") != "suricata" or not applies(tool.get("requires")):
            continue
        for check in tool.get("checks", []):
            if check.get("match", {}).get("event_type") == event_type and applies(check.get("requires")):
                out.append((tool.get("test", "?"), check))
    return out


def describe_closest(eves: list[dict], match: dict) -> str:
    """For a failed check: how many EVE dicts matched each key (to show what differs)."""
    parts = []
    for path, want in match.items():
        if path in ("event_type", "pcap_cnt"):
            continue
        values = sorted({repr(v) for v in (eve_get(e, path) for e in eves) if v is not _MISSING})
        parts.append(f"{path}={want!r} (probe has {', '.join(values[:4]) or 'none'})")
    return "; ".join(parts)

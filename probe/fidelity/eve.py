"""Suricata EVE checks of corpus baselines (``count`` + ``match`` filters) on EVE-shaped records.

Each comparator turns the probe's events into the EVE records Suricata 8 would log for
them; a check holds when as many records match its filter as it says. A filter key is a
dotted path with optional list indexes (``dns.answers[0].srv.port``); a trailing
``__len`` compares the length of a list or string; ``has-key`` asks only for presence.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable

from probe.fidelity.report import KindReport

#: the Suricata major version whose EVE layout the comparators produce
EVE_VERSION = 8
#: keys never compared: ``pcap_cnt`` is Suricata's own packet numbering; ``community_id``
#: hashes the flow with the seed of each test's own suricata.yaml, which baselines do not carry
BOOKKEEPING = frozenset({"pcap_cnt", "community_id"})

_MISSING = object()
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def get(obj: Any, path: str) -> Any:
    """The value at ``path`` in ``obj``, or a sentinel (see :func:`present`) when absent."""
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


def present(found: Any) -> bool:
    return found is not _MISSING


def matches(eve: dict, match: dict, ignored: frozenset[str] = BOOKKEEPING) -> bool:
    """Whether one EVE record satisfies every key of a check's ``match`` (``ignored`` skipped)."""
    for path, want in match.items():
        if path in ignored:
            continue
        if path == "has-key":
            if want not in ignored and get(eve, want) is _MISSING:
                return False
            continue
        got = get(eve, path)
        if got is _MISSING or got != want:
            return False
    return True


def _major(version: Any) -> int:
    return int(str(version).split(".")[0])


def applies(requires: dict | None) -> bool:
    """Whether a ``requires`` block holds for the emulated Suricata version."""
    if not requires:
        return True
    minimum = requires.get("min-version")
    below = requires.get("lt-version")
    if minimum is not None and EVE_VERSION < _major(minimum):
        return False
    if below is not None and EVE_VERSION >= _major(below):
        return False
    return True


def checks(expected: dict, event_types: str | Iterable[str]) -> list[tuple[str, dict]]:
    """(test name, check) for each applicable check on ``event_types`` in a corpus baseline."""
    wanted = {event_types} if isinstance(event_types, str) else set(event_types)
    out = []
    for tool in expected.get("expected", []):
        if tool.get("tool") != "suricata" or not applies(tool.get("requires")):
            continue
        for check in tool.get("checks", []):
            if check.get("match", {}).get("event_type") in wanted and applies(check.get("requires")):
                out.append((tool.get("test", "?"), check))
    return out


def describe_closest(eves: list[dict], match: dict) -> str:
    """For a failed check: the values the probe has at each key (to show what differs)."""
    parts = []
    for path, want in match.items():
        if path == "event_type" or path in BOOKKEEPING:
            continue
        if path == "has-key":
            parts.append(f"has-key {want} (probe has it in {sum(present(get(e, want)) for e in eves)} records)")
            continue
        values = sorted({repr(v) for v in (get(e, path) for e in eves) if v is not _MISSING})
        parts.append(f"{path}={want!r} (probe has {', '.join(values[:4]) or 'none'})")
    return "; ".join(parts)


def evaluate(report: KindReport, expected: dict, event_types: str | Iterable[str], eves: list[dict],
             ignored: frozenset[str] = BOOKKEEPING, not_carried: dict[str, str] | None = None) -> KindReport:
    """Count every applicable check into ``report``: matched when the record count agrees.

    A check with a key listed in ``not_carried`` (what the probe does not compute, with
    the reason) cannot be evaluated: it is a miss naming the reason, so every difference
    stays visible. Keys in ``ignored`` are left out of the filter.
    """
    not_carried = not_carried or {}
    for test, check in checks(expected, event_types):
        match = check.get("match", {})
        report.expected += 1
        blocked = sorted(k for k in (*match, match.get("has-key")) if k in not_carried)
        want = check.get("count")
        if blocked:
            rest = sum(1 for eve in eves if matches(eve, match, ignored | set(blocked)))
            report.miss(f"suricata {test}: check not comparable: "
                        + "; ".join(f"{k}: {not_carried[k]}" for k in blocked)
                        + f" (on its other {len(match) - len(blocked)} keys {rest} records match, expected {want})")
            continue
        got = sum(1 for eve in eves if matches(eve, match, ignored))
        if got == want or (want is None and got > 0):
            report.matched += 1
        else:
            report.miss(f"suricata {test}: {got} records match, expected {want}: "
                        + describe_closest(eves, {k: v for k, v in match.items() if k not in ignored}))
    return report


def suricata_ip(text: str) -> str:
    """An address as Suricata's EVE writes it (IPv6 fully expanded)."""
    ip = ipaddress.ip_address(text)
    return ip.exploded if ip.version == 6 else str(ip)


def put(tree: dict, dotted: str, item: Any) -> None:
    """Set a dotted path in a nested dict (building the EVE shape of an event)."""
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = item

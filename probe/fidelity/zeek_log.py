"""Reading Zeek's logs in corpus baselines, and comparing event values with them.

Zeek ASCII-log values are verbatim strings: ``-`` unset, ``(empty)`` an empty container,
``T``/``F`` booleans, intervals and times with six decimals, containers comma-separated,
a backslash written ``\\\\`` and unprintable bytes (and separators inside values) as
``\\xHH``. Some parsers keep Zeek's escaping in their strings (DNS, HTTP), others carry
the raw text (TLS names): a value equals a log string when it equals it verbatim or once
the escapes are undone.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from probe.fidelity.flow_keys import by_key, key_text, zeek_key
from probe.fidelity.report import KindReport

#: Zeek-internal identifiers that differ between any two runs (never compared)
INTERNAL_FIELDS = frozenset({
    "ts", "uid", "fuid", "orig_fuids", "resp_fuids", "client_cert_fuid", "server_cert_fuid",
    "cert_chain_fuids", "client_cert_chain_fuids",
})

_ESCAPE = re.compile(r"\\\\|\\x([0-9a-fA-F]{2})")


def unescape(text: str) -> str:
    """A Zeek log string back to its value (``\\\\`` -> ``\\``, ``\\xHH`` -> the byte)."""
    return _ESCAPE.sub(lambda m: "\\" if m.group(1) is None else chr(int(m.group(1), 16)), text)


def value(text: str | None) -> Any:
    """A verbatim log value as a Python value: None for ``-``, "" for ``(empty)``, escapes undone."""
    if text is None or text == "-":
        return None
    if text == "(empty)":
        return ""
    return unescape(text)


def _scalar(item: Any) -> str:
    if item is None:
        return "-"
    if item is True:
        return "T"
    if item is False:
        return "F"
    if isinstance(item, float):
        return f"{item:.6f}"
    return str(item)


def text(item: Any) -> str:
    """An exported event value written as Zeek's ASCII log would write it (unescaped)."""
    if isinstance(item, (list, tuple)):
        return ",".join(_scalar(v) for v in item) if item else "(empty)"
    return _scalar(item)


def _close(expected: str, ours: str) -> bool:
    """Equal, equal once unescaped, or both numbers within a microsecond (times round)."""
    if expected == ours or unescape(expected) == ours:
        return True
    try:
        return abs(float(expected) - float(ours)) <= 1.5e-6
    except ValueError:
        return False


def equal(expected: str, item: Any) -> bool:
    """Whether an event value matches a verbatim Zeek log string (containers item by item)."""
    if isinstance(item, (list, tuple)):
        if expected in ("-", "(empty)") or not item:
            return text(item) == expected
        parts = expected.split(",")
        return len(parts) == len(item) and all(map(_close, parts, map(_scalar, item)))
    if item is None or isinstance(item, bool):
        return expected == _scalar(item)
    return _close(expected, _scalar(item))


def zeek_tools(expected: dict) -> list[dict]:
    """The Zeek entries of a corpus baseline."""
    return [e for e in expected.get("expected", []) if e.get("tool") == "zeek"]


def logs(expected: dict, path: str) -> list[dict]:
    """Every parsed log of ``path`` (``dns``, ``smb_files``, ``conn``...) in a baseline.

    A log is found by its path, or for cut logs (``conn.log.cut``) without one by its
    file name.
    """
    found = []
    for tool in zeek_tools(expected):
        for name, output in tool.get("outputs", {}).items():
            if output.get("kind") not in ("zeek_log", "zeek_log_cut"):
                continue
            if output.get("path") == path or (output.get("path") is None and name.split(".")[0] == path):
                found.append(output)
    return found


def records(expected: dict, path: str) -> list[list[dict]]:
    """The records of every log of ``path``, with values as Python values (see :func:`value`)."""
    return [[{k: value(v) for k, v in r.items()} for r in log.get("records", [])] for log in logs(expected, path)]


def text_lines(expected: dict) -> list[str]:
    """Every line Zeek test scripts printed (outputs of kind ``text_lines``)."""
    return [line for tool in zeek_tools(expected) for out in tool.get("outputs", {}).values()
            for line in out.get("lines", [])]


def _short(text_value: str, limit: int = 120) -> str:
    """A long value cut for a miss line, with its full length."""
    return text_value if len(text_value) <= limit else f"{text_value[:limit]}... ({len(text_value)} chars)"


def field_misses(record: dict, event: dict, skip: frozenset[str] = frozenset()) -> list[str]:
    """``field: zeek=X probe=Y`` for each logged field of ``record`` that ``event`` differs on.

    Identifiers (``uid``, ``fuid``...) and the connection tuple (the records were paired
    by it) are not compared.
    """
    misses = []
    for field, expected_text in record.items():
        if field in INTERNAL_FIELDS or field in skip or field.startswith("id."):
            continue
        if field not in event:
            if expected_text != "-":
                misses.append(f"{field}: zeek={_short(expected_text)!r} probe=<not produced>")
            continue
        if not equal(expected_text, event[field]):
            misses.append(f"{field}: zeek={_short(expected_text)!r} probe={_short(text(event[field]))!r}")
    return misses


def compare_by_key(expected: dict, events: list[dict], capture: str, kind: str, path: str,
                   label: Callable[[dict], str] = lambda r: "") -> list[KindReport]:
    """One row per Zeek log of ``path``: each record against the next event of its flow."""
    reports = []
    for log in logs(expected, path):
        report = KindReport(capture=capture, kind=kind, source="zeek", expected=len(log["records"]), found=len(events))
        table = by_key(events)
        for record in log["records"]:
            key = zeek_key(record)
            where = f"{key_text(key)}{label(record)}"
            candidates = table.get(key, [])
            if not candidates:
                report.miss(f"{where}: no {kind} event")
                continue
            report.outcome(where, field_misses(record, candidates.pop(0)))
        reports.append(report)
    return reports

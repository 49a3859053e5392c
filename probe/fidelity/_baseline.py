"""Reading corpus baselines for the ssl and kerberos comparators: Zeek logs, EVE checks, Arkime.

Zeek ASCII-log values are verbatim strings: ``-`` unset, ``(empty)`` an empty container,
``T``/``F`` booleans, times with six decimals, containers comma-separated, backslash
written ``\\\\`` and unprintable bytes (and separators inside values) as ``\\xHH``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

_MISSING = object()
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_ESCAPE = re.compile(r"\\\\|\\x([0-9a-fA-F]{2})")

#: Zeek-internal identifiers that differ between runs (never compared)
INTERNAL_FIELDS = frozenset({"ts", "uid", "fuid", "client_cert_fuid", "server_cert_fuid", "cert_chain_fuids", "client_cert_chain_fuids"})
#: the Suricata major version whose EVE checks apply
EVE_VERSION = 8


# -- Zeek logs ----------------------------------------------------------------------------------


def zeek_unescape(text: str) -> str:
    """A Zeek log string back to its value (``\\\\`` -> ``\\``, ``\\xHH`` -> the byte)."""
    return _ESCAPE.sub(lambda m: "\\" if m.group(1) is None else chr(int(m.group(1), 16)), text)


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
    """An exported event value as Zeek would log it (unescaped)."""
    if isinstance(value, (list, tuple)):
        return ",".join(_scalar(v) for v in value) if value else "(empty)"
    return _scalar(value)


def zeek_equal(expected: str, value: Any) -> bool:
    """Whether an event value equals a verbatim Zeek log string."""
    if isinstance(value, (list, tuple)):
        if expected in ("-", "(empty)"):
            return not value and (expected == "(empty)" or value is None)
        items = [zeek_unescape(item) for item in expected.split(",")]
        return items == [_scalar(v) for v in value]
    if value is None or isinstance(value, bool):
        return expected == _scalar(value)
    if isinstance(value, (int, float)):
        try:
            return abs(float(expected) - float(value)) <= 1.5e-6
        except ValueError:
            return False
    return zeek_unescape(expected) == str(value)


def zeek_logs(expected: dict, path: str) -> list[dict]:
    """Every ``zeek_log`` output of the given log path (``ssl``, ``kerberos``) in a baseline."""
    logs = []
    for tool in expected.get("expected", []):
        if tool.get("tool") != "zeek":
            continue
        for output in tool.get("outputs", {}).values():
            if output.get("kind") == "zeek_log" and output.get("path") == path:
                logs.append(output)
    return logs


def zeek_field_misses(record: dict, event: dict, skip: frozenset[str] = frozenset()) -> list[str]:
    """``field: zeek=X probe=Y`` for each logged field of ``record`` the event differs on."""
    misses = []
    for field, expected in record.items():
        if field in INTERNAL_FIELDS or field in skip or field.startswith("id."):
            continue
        if field not in event:
            if expected != "-":
                misses.append(f"{field}: zeek={expected!r} probe=<not produced>")
            continue
        if not zeek_equal(expected, event[field]):
            misses.append(f"{field}: zeek={expected!r} probe={zeek_text(event[field])!r}")
    return misses


def zeek_key(record: dict) -> tuple:
    """The connection 4-tuple of a Zeek log record, as an event carries it."""
    return (
        str(ipaddress.ip_address(record["id.orig_h"])),
        int(record["id.orig_p"]),
        str(ipaddress.ip_address(record["id.resp_h"])),
        int(record["id.resp_p"]),
    )


def event_key(event: dict) -> tuple:
    """The connection 4-tuple of an exported event (addresses normalised)."""
    return (
        str(ipaddress.ip_address(event["id.orig_h"])),
        event["id.orig_p"],
        str(ipaddress.ip_address(event["id.resp_h"])),
        event["id.resp_p"],
    )


# -- Suricata EVE checks ------------------------------------------------------------------------


def eve_get(obj: Any, path: str) -> Any:
    """The value at a dotted, indexed path (``tls.client_alpns[0]``), or a sentinel."""
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
    return obj


def eve_matches(eve: dict, match: dict) -> bool:
    """Whether one EVE-shaped dict satisfies every key of a check's ``match``."""
    for path, want in match.items():
        if path == "pcap_cnt":
            continue
        got = eve_get(eve, path)
        if got is _MISSING or got != want:
            return False
    return True


def _applies(requires: dict | None) -> bool:
    if not requires:
        return True
    minimum = requires.get("min-version")
    below = requires.get("lt-version")
    if minimum is not None and EVE_VERSION < int(str(minimum).split(".")[0]):
        return False
    if below is not None and EVE_VERSION >= int(str(below).split(".")[0]):
        return False
    return True


def suricata_checks(expected: dict, event_type: str) -> list[tuple[str, dict]]:
    """(test name, check) for each applicable EVE check on ``event_type`` in a baseline."""
    out = []
    for tool in expected.get("expected", []):
        if tool.get("tool") != "suricata" or not _applies(tool.get("requires")):
            continue
        for check in tool.get("checks", []):
            if check.get("match", {}).get("event_type") == event_type and _applies(check.get("requires")):
                out.append((tool.get("test", "?"), check))
    return out


def describe_closest(eves: list[dict], match: dict) -> str:
    """What the probe has for each key of a failed check."""
    parts = []
    for path, want in match.items():
        if path in ("event_type", "pcap_cnt"):
            continue
        values = sorted({repr(v) for v in (eve_get(e, path) for e in eves) if v is not _MISSING})
        parts.append(f"{path}={want!r} (probe has {', '.join(values[:4]) or 'none'})")
    return "; ".join(parts)


def suricata_ip(address: str) -> str:
    """An address as Suricata's EVE writes it (IPv6 fully expanded)."""
    ip = ipaddress.ip_address(address)
    return ip.exploded if ip.version == 6 else str(ip)


# -- Arkime sessions ----------------------------------------------------------------------------


def arkime_sessions(expected: dict) -> list[dict]:
    """Every Arkime session document in a baseline."""
    sessions = []
    for tool in expected.get("expected", []):
        if tool.get("tool") == "arkime":
            sessions.extend(tool.get("sessions", []))
    return sessions


def arkime_key(session: dict) -> tuple:
    """The 4-tuple of an Arkime session (source = the connection's originator)."""
    src, dst = session["source"], session["destination"]
    return (str(ipaddress.ip_address(src["ip"])), src["port"], str(ipaddress.ip_address(dst["ip"])), dst["port"])

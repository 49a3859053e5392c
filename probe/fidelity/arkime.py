"""Arkime session documents of corpus baselines, paired with the probe's events by flow.

An Arkime session names its initiator ``source`` and the other side ``destination``;
its protocol sections (``dns``, ``http``, ``tls``, ``krb5``, ``ntlm``, ``dcerpc``...)
list the values Arkime indexed for the whole session.
"""

from __future__ import annotations

from typing import Callable

from probe.fidelity.flow_keys import FlowKey, address, by_key, key_text
from probe.fidelity.report import KindReport


def sessions(expected: dict, section: str | None = None) -> list[dict]:
    """Every Arkime session in a baseline; only those with ``section`` when given."""
    out = []
    for tool in expected.get("expected", []):
        if tool.get("tool") == "arkime":
            out.extend(s for s in tool.get("sessions", []) if section is None or section in s)
    return out


def key(session: dict) -> FlowKey:
    """The flow key of a session (source = the connection's originator; port 0 without ports)."""
    src, dst = session["source"], session["destination"]
    return (address(src["ip"]), src.get("port", 0), address(dst["ip"]), dst.get("port", 0))


def compare_by_key(sessions_: list[dict], events: list[dict], capture: str, kind: str,
                   misses: Callable[[dict, dict], list[str]]) -> list[KindReport]:
    """One row: each session against the next event of its flow, ``misses`` naming differences."""
    if not sessions_:
        return []
    report = KindReport(capture=capture, kind=kind, source="arkime", expected=len(sessions_), found=len(events))
    table = by_key(events)
    for session in sessions_:
        flow = key(session)
        candidates = table.get(flow, [])
        if not candidates:
            report.miss(f"{key_text(flow)}: no {kind} event")
            continue
        report.outcome(key_text(flow), misses(session, candidates.pop(0)))
    return [report]

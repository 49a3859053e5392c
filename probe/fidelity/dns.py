"""Fidelity of ``dns`` events: against tshark truth and Zeek/Suricata/Arkime baselines.

Transactions are matched by endpoints, transport and transaction id (then query name and
type when an id repeats), and compared field by field; every difference is a miss.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from probe.fidelity import arkime, eve, zeek_log
from probe.fidelity.flow_keys import event_key, key_text, truth_key, zeek_key
from probe.fidelity.report import Differences, KindReport
from protocols.dns_consts import QUERY_TYPES

_TYPE_NUMBERS = {name: number for number, name in QUERY_TYPES.items()}
_ARKIME_CLASSES = {"IN": 1, "CS": 2, "CH": 3, "HS": 4, "NONE": 254, "ANY": 255}


def _dns_events(events: Iterable[dict]) -> list[dict]:
    return [e for e in events if e.get("kind") == "dns"]


def _type_number(name: str | None) -> int | None:
    """A type written as ``A``, ``TYPE65`` (tshark) or ``query-65`` (Zeek) as its number."""
    if name is None:
        return None
    if name in _TYPE_NUMBERS:
        return _TYPE_NUMBERS[name]
    for prefix in ("TYPE", "query-"):
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            return int(name[len(prefix) :])
    return None


def _truth_data(rtype: str, data: Any) -> str | None:
    """tshark's answer data in the probe's presentation form (TXT as Zeek writes it)."""
    if isinstance(data, list):
        label = "SPF" if rtype == "SPF" else "TXT"
        return " ".join(f"{label} {len(s)} {s}" for s in data)
    if data is None:
        return None
    if rtype == "AAAA":
        try:
            return ipaddress.IPv6Address(data).compressed
        except ValueError:
            return str(data)
    return str(data)


def _truth_misses(rec: dict, ev: dict) -> list[str]:
    misses = Differences("truth")
    differ = misses.differ
    differ("transport", rec["transport"], ev.get("proto"))
    differ("qname", rec["qname"].lower(), ev.get("query"))
    differ("qtype", _type_number(rec["qtype"]), ev.get("qtype"))
    differ("opcode", rec["opcode"], ev.get("opcode"))
    if rec.get("rcode") is None:
        differ("answered", False, bool(ev.get("saw_reply")))
        return misses
    differ("answered", True, bool(ev.get("saw_reply")))
    differ("rcode", rec["rcode"].upper(), (ev.get("rcode_name") or "").upper())
    differ("n_authority", rec["n_authority"], ev.get("n_authority"))
    differ("n_additional", rec["n_additional"], ev.get("n_additional"))
    answers = rec.get("answers") or []
    names = ev.get("answer_names") or []
    types = ev.get("answer_types") or []
    ttls = ev.get("answer_ttls") or []
    data = ev.get("answer_data") or []
    differ("answer count", len(answers), len(names))
    for i, (ans, name, rtype, ttl, value) in enumerate(zip(answers, names, types, ttls, data)):
        differ(f"answers[{i}].name", ans["name"].lower(), name)
        differ(f"answers[{i}].type", _type_number(ans["type"]), _type_number(rtype))
        differ(f"answers[{i}].ttl", ans["ttl"], ttl)
        differ(f"answers[{i}].data", _truth_data(ans["type"], ans.get("data")), value)
    return misses


def compare_truth(truth: dict, events: list[dict], capture: str) -> list[KindReport]:
    """One ``dns`` row: each tshark DNS query record against the probe's transactions."""
    report = KindReport(capture=capture, kind="dns", source="truth")
    dns = _dns_events(events)
    report.expected = len(truth.get("dns", []))
    report.found = len(dns)
    unused = list(range(len(dns)))
    for rec in truth.get("dns", []):
        key = truth_key(rec)
        candidates = [
            i for i in unused
            if event_key(dns[i]) == key and dns[i].get("trans_id") == rec["id"]
            and dns[i].get("proto") == rec["transport"]
        ]
        label = f"{rec['transport']} {key_text(key)} id={rec['id']} {rec['qname']} {rec['qtype']}"
        if not candidates:
            report.miss(f"{label}: no dns event")
            continue
        best = min(candidates, key=lambda i: (len(_truth_misses(rec, dns[i])), dns[i]["ts"]))
        unused.remove(best)
        report.outcome(label, _truth_misses(rec, dns[best]))
    for i in unused:
        ev = dns[i]
        if ev.get("saw_query"):
            report.miss(
                f"extra dns event {ev.get('proto')} {ev['id.orig_h']}:{ev['id.orig_p']}->"
                f"{ev['id.resp_h']}:{ev['id.resp_p']} id={ev.get('trans_id')} {ev.get('query')}"
            )
    return [report]


def _compare_zeek(expected: dict, dns: list[dict], capture: str) -> KindReport | None:
    logs = zeek_log.logs(expected, "dns")
    if not logs:
        return None
    report = KindReport(capture=capture, kind="dns", source="zeek", found=len(dns))
    unused = list(range(len(dns)))
    for log in logs:
        for rec in log["records"]:
            report.expected += 1
            key = zeek_key(rec)
            label = f"{key_text(key)} trans_id={rec.get('trans_id')} {rec.get('query')}"
            candidates = [
                i for i in unused
                if event_key(dns[i]) == key and str(dns[i].get("trans_id")) == rec.get("trans_id")
            ]
            if not candidates:
                report.miss(f"{label}: no dns event")
                continue
            best = min(candidates, key=lambda i: (len(zeek_log.field_misses(rec, dns[i])), dns[i]["ts"]))
            unused.remove(best)
            report.outcome(label, zeek_log.field_misses(rec, dns[best]))
    for i in unused:
        ev = dns[i]
        report.miss(f"extra dns event {ev['id.orig_h']}:{ev['id.orig_p']} trans_id={ev.get('trans_id')} {ev.get('query')}")
    return report


def eve_dns(event: dict) -> list[dict]:
    """The Suricata 8 EVE ``dns`` records (request and/or response) one transaction stands for."""
    queries = []
    if event.get("query") is not None:
        queries.append({"rrname": event["query"], "rrtype": event.get("qtype_name")})
    base = {"id": event.get("trans_id"), "opcode": event.get("opcode"), "rd": event.get("RD")}
    out = []
    if event.get("saw_query"):
        out.append({"event_type": "dns", "dns": dict(base, type="request", queries=queries)})
    if event.get("saw_reply"):
        answers = []
        for name, rtype, ttl, data in zip(
            event.get("answer_names") or [], event.get("answer_types") or [],
            event.get("answer_ttls") or [], event.get("answer_data") or [],
        ):
            answer: dict[str, Any] = {"rrname": name, "rrtype": rtype, "ttl": ttl}
            if rtype == "SRV" and data:
                prio, weight, port, target = data.split(" ", 3)
                answer["srv"] = {"priority": int(prio), "weight": int(weight), "port": int(port), "name": target}
            elif data is not None:
                answer["rdata"] = data
            answers.append(answer)
        response = dict(base, type="response", queries=queries, rcode=event.get("rcode_name"),
                        aa=event.get("AA"), ra=event.get("RA"))
        if answers:
            response["answers"] = answers
        out.append({"event_type": "dns", "dns": response})
    return out


def _compare_suricata(expected: dict, dns: list[dict], capture: str) -> KindReport | None:
    if not eve.checks(expected, "dns"):
        return None
    eves = [record for ev in dns for record in eve_dns(ev)]
    report = KindReport(capture=capture, kind="dns", source="suricata", found=len(eves))
    return eve.evaluate(report, expected, "dns", eves)


def _arkime_misses(entry: dict, ev: dict) -> list[str]:
    misses = Differences("arkime")
    differ = misses.differ

    if "queryHost" in entry:
        differ("queryHost", entry["queryHost"].lower(), ev.get("query"))
    if "qt" in entry:
        differ("qt", _type_number(entry["qt"]), ev.get("qtype"))
    if "qc" in entry:
        differ("qc", _ARKIME_CLASSES.get(entry["qc"], entry["qc"]), ev.get("qclass"))
    if "status" in entry:
        differ("status", entry["status"].upper(), (ev.get("rcode_name") or "").upper())
    if entry.get("opcode") == "QUERY":
        differ("opcode", 0, ev.get("opcode"))
    if "headerFlags" in entry:
        ours = sorted(flag for flag in ("AA", "TC", "RD", "RA") if ev.get(flag))
        differ("headerFlags", sorted(entry["headerFlags"]), ours)
    if "ip" in entry:
        ips = sorted(
            d for d, t in zip(ev.get("answer_data") or [], ev.get("answer_types") or [])
            if t in ("A", "AAAA") and d
        )
        differ("ip", sorted(entry["ip"]), ips)
    theirs = entry.get("answers") or []
    names = ev.get("answer_names") or []
    if len(theirs) < len(names):
        differ("answers (count, all sections)", len(theirs), f">= {len(names)}")
    for i, (ans, name, rtype, ttl, data) in enumerate(zip(
        theirs, names, ev.get("answer_types") or [], ev.get("answer_ttls") or [], ev.get("answer_data") or []
    )):
        differ(f"answers[{i}].name", ans.get("name", "").lower(), name)
        differ(f"answers[{i}].type", _type_number(ans.get("type")), _type_number(rtype))
        differ(f"answers[{i}].ttl", ans.get("ttl"), ttl)
        for key in ("ip", "nameserver", "cname", "ptr"):
            if key in ans:
                differ(f"answers[{i}].{key}", ans[key].lower(), (data or "").lower())
    return misses


def _compare_arkime(expected: dict, dns: list[dict], capture: str) -> KindReport | None:
    sessions = [s for s in arkime.sessions(expected, "dns") if s["dns"]]
    if not sessions:
        return None
    report = KindReport(capture=capture, kind="dns", source="arkime", found=len(dns))
    for session in sessions:
        key = arkime.key(session)
        flow = [ev for ev in dns if event_key(ev) == key]
        for entry in session["dns"]:
            report.expected += 1
            label = f"{key_text(key)} {entry.get('queryHost')}"
            if not flow:
                report.miss(f"{label}: no dns event on this flow")
                continue
            best = min(flow, key=lambda ev: len(_arkime_misses(entry, ev)))
            report.outcome(label, _arkime_misses(entry, best))
    return report


def compare_corpus(expected: dict, events: list[dict], capture: str) -> list[KindReport]:
    """One ``dns`` row per tool with DNS expectations for this corpus capture."""
    dns = _dns_events(events)
    rows = [
        _compare_zeek(expected, dns, capture),
        _compare_suricata(expected, dns, capture),
        _compare_arkime(expected, dns, capture),
    ]
    return [row for row in rows if row is not None]

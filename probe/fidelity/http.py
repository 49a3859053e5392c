"""Fidelity of ``http`` events: against tshark truth and Zeek/Suricata/Arkime baselines.

Transactions are matched per flow (client and server endpoints), in order, by method and
URI, and compared field by field; every difference is a miss.
"""

from __future__ import annotations

from typing import Any, Iterable

from probe.fidelity import arkime, eve, zeek_log
from probe.fidelity.flow_keys import event_key, key_text, truth_key, zeek_key
from probe.fidelity.report import Differences, KindReport
from protocols.http import unescape_uri

#: Zeek http.log fields the probe does not produce (the password is never captured)
_NOT_MODELLED = frozenset({"password"})


def _http_events(events: Iterable[dict]) -> list[dict]:
    return sorted((e for e in events if e.get("kind") == "http"), key=lambda e: (e["ts"], e["trans_depth"]))


def _pick(candidates: list[int], events: list[dict], method: str | None, uri: str | None) -> int | None:
    """The first candidate with this method and URI, else the first candidate."""
    for i in candidates:
        if events[i].get("method") == method and events[i].get("uri") == uri:
            return i
    return candidates[0] if candidates else None


def _truth_misses(rec: dict, ev: dict) -> list[str]:
    misses = Differences("truth")
    differ = misses.differ

    version = rec.get("version")
    differ("method", rec["method"], ev.get("method"))
    differ("host", rec.get("host"), ev.get("host"))
    differ("uri", unescape_uri(rec["uri"].encode("latin-1"))[0], ev.get("uri"))
    differ("version", version[5:] if version and version.startswith("HTTP/") else version, ev.get("request_version"))
    differ("user_agent", rec.get("user_agent"), ev.get("user_agent"))
    differ("request_content_length", rec.get("request_content_length"), ev.get("request_content_length"))
    differ("request_transfer_encoding", rec.get("request_transfer_encoding"), ev.get("request_transfer_encoding"))
    differ("status", rec.get("status"), ev.get("status_code"))
    if rec.get("status") is not None:
        differ("reason", rec.get("reason"), ev.get("status_msg"))
        differ("response_content_length", rec.get("response_content_length"), ev.get("response_content_length"))
        differ("response_transfer_encoding", rec.get("response_transfer_encoding"), ev.get("response_transfer_encoding"))
        differ("response_content_type", rec.get("response_content_type"), ev.get("response_content_type"))
    differ("interim_statuses", list(rec.get("interim_statuses") or []), list(ev.get("interim_statuses") or []))
    return misses


def compare_truth(truth: dict, events: list[dict], capture: str) -> list[KindReport]:
    """One ``http`` row: each tshark request/response pair against the probe's transactions."""
    report = KindReport(capture=capture, kind="http", source="truth")
    http = _http_events(events)
    records = truth.get("http", [])
    report.expected = len(records)
    report.found = len(http)
    unused = list(range(len(http)))
    for rec in records:
        key = truth_key(rec)
        label = f"{key_text(key)} {rec['method']} {rec['uri']}"
        candidates = [i for i in unused if event_key(http[i]) == key]
        best = _pick(candidates, http, rec["method"], unescape_uri(rec["uri"].encode("latin-1"))[0])
        if best is None:
            report.miss(f"{label}: no http event")
            continue
        unused.remove(best)
        report.outcome(label, _truth_misses(rec, http[best]))
    for i in unused:
        ev = http[i]
        report.miss(f"extra http event {ev['id.orig_h']}:{ev['id.orig_p']} {ev.get('method')} {ev.get('uri')}")
    return [report]


def _compare_zeek(expected: dict, http: list[dict], capture: str) -> KindReport | None:
    logs = zeek_log.logs(expected, "http")
    if not logs:
        return None
    report = KindReport(capture=capture, kind="http", source="zeek", found=len(http))
    unused = list(range(len(http)))
    for log in logs:
        for rec in log["records"]:
            report.expected += 1
            key = zeek_key(rec)
            label = f"{key_text(key)} #{rec.get('trans_depth')} {rec.get('method')} {rec.get('uri')}"
            candidates = [i for i in unused if event_key(http[i]) == key]
            same_depth = [i for i in candidates if str(http[i].get("trans_depth")) == rec.get("trans_depth")]
            best = _pick(same_depth or candidates, http, rec.get("method"), rec.get("uri"))
            if best is None:
                report.miss(f"{label}: no http event")
                continue
            unused.remove(best)
            report.outcome(label, zeek_log.field_misses(rec, http[best], skip=_NOT_MODELLED))
    for i in unused:
        ev = http[i]
        report.miss(f"extra http event {ev['id.orig_h']}:{ev['id.orig_p']} #{ev.get('trans_depth')} {ev.get('uri')}")
    return report


def eve_http(event: dict) -> dict:
    """The Suricata 8 EVE ``http`` record one transaction stands for."""
    record: dict[str, Any] = {"length": event.get("response_body_len", 0)}
    for eve_key, field in (
        ("hostname", "host"), ("url", "uri"), ("http_user_agent", "user_agent"),
        ("http_method", "method"), ("status", "status_code"), ("http_refer", "referrer"),
        ("http_content_type", "response_content_type"),
    ):
        if event.get(field) is not None:
            record[eve_key] = event[field]
    if event.get("request_version"):
        record["protocol"] = f"HTTP/{event['request_version']}"
    host = record.get("hostname")
    if isinstance(host, str) and ":" in host and not host.startswith("["):
        record["hostname"], _, port = host.partition(":")
        if port.isdigit():
            record["http_port"] = int(port)
    content_type = record.get("http_content_type")
    if isinstance(content_type, str):
        record["http_content_type"] = content_type.split(";", 1)[0].strip()
    return {"event_type": "http", "http": record}


def _compare_suricata(expected: dict, http: list[dict], capture: str) -> KindReport | None:
    if not eve.checks(expected, "http"):
        return None
    eves = [eve_http(ev) for ev in http]
    report = KindReport(capture=capture, kind="http", source="suricata", found=len(eves))
    return eve.evaluate(report, expected, "http", eves)


def _arkime_misses(section: dict, flow: list[dict]) -> list[str]:
    misses = Differences("arkime")
    differ = misses.differ

    def values(field: str) -> list:
        return sorted({ev[field] for ev in flow if ev.get(field) is not None})

    if "method" in section:
        differ("method", sorted(set(section["method"])), values("method"))
    for method_key, count in section.items():
        if method_key.startswith("method-"):
            differ(method_key, count, sum(1 for ev in flow if ev.get("method") == method_key[7:]))
    if "host" in section:
        differ("host", sorted({h.lower() for h in section["host"]}), sorted({h.split(":")[0].lower() for h in values("host")}))
    if "path" in section:
        differ("path", sorted(set(section["path"])), sorted({u.split("?", 1)[0] for u in values("uri")}))
    if "statuscode" in section:
        differ("statuscode", sorted(set(section["statuscode"])), values("status_code"))
    if "useragent" in section:
        differ("useragent", sorted(set(section["useragent"])), values("user_agent"))
    if "clientVersion" in section:
        differ("clientVersion", sorted(set(section["clientVersion"])), values("request_version"))
    if "serverVersion" in section:
        differ("serverVersion", sorted(set(section["serverVersion"])), values("version"))
    if "bodyMagic" in section:
        ours = sorted({m for ev in flow for m in (ev.get("resp_mime_types") or [])})
        differ("bodyMagic", sorted(set(section["bodyMagic"])), ours)
    return misses


def _compare_arkime(expected: dict, http: list[dict], capture: str) -> KindReport | None:
    # a TLS session's ``http.host`` is its SNI (compared by the ssl comparator), not HTTP
    sessions = [s for s in arkime.sessions(expected, "http") if s["http"] and "http" in s.get("protocol", [])]
    if not sessions:
        return None
    report = KindReport(capture=capture, kind="http", source="arkime", found=len(http))
    for session in sessions:
        key = arkime.key(session)
        report.expected += 1
        flow = [ev for ev in http if event_key(ev) == key]
        if not flow:
            report.miss(f"{key_text(key)}: no http event on this flow")
            continue
        report.outcome(key_text(key), _arkime_misses(session["http"], flow))
    return report


def compare_corpus(expected: dict, events: list[dict], capture: str) -> list[KindReport]:
    """One ``http`` row per tool with HTTP expectations for this corpus capture."""
    http = _http_events(events)
    rows = [
        _compare_zeek(expected, http, capture),
        _compare_suricata(expected, http, capture),
        _compare_arkime(expected, http, capture),
    ]
    return [row for row in rows if row is not None]

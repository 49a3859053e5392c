"""Fidelity of ``http`` events: against tshark truth and Zeek/Suricata/Arkime baselines.

Transactions are matched per flow (client and server endpoints), in order, by method and
URI, and compared field by field; every difference is a miss.
"""

from __future__ import annotations

from typing import Any, Iterable

from probe.fidelity.eve_match import describe_closest, matches, suricata_checks
from probe.fidelity.report import KindReport
from probe.fidelity.zeek_log import field_misses, zeek_logs
from protocols.http import unescape_uri

#: Zeek http.log fields the probe does not produce (the password is never captured)
_NOT_MODELLED = frozenset({"password"})


def _http_events(events: Iterable[dict]) -> list[dict]:
    return sorted((e for e in events if e.get("kind") == "http"), key=lambda e: (e["ts"], e["trans_depth"]))


def _flow_key(event: dict) -> tuple:
    return (event["id.orig_h"], event["id.orig_p"], event["id.resp_h"], event["id.resp_p"])


def _pick(candidates: list[int], events: list[dict], method: str | None, uri: str | None) -> int | None:
    """The first candidate with this method and URI, else the first candidate."""
    for i in candidates:
        if events[i].get("method") == method and events[i].get("uri") == uri:
            return i
    return candidates[0] if candidates else None


def _truth_misses(rec: dict, ev: dict) -> list[str]:
    misses = []

    def differ(field: str, truth: Any, ours: Any) -> None:
        if truth != ours:
            misses.append(f"{field}: truth={truth!r} probe={ours!r}")

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
        key = (rec["client_ip"], rec["client_port"], rec["server_ip"], rec["server_port"])
        label = f"{key[0]}:{key[1]}->{key[2]}:{key[3]} {rec['method']} {rec['uri']}"
        candidates = [i for i in unused if _flow_key(http[i]) == key]
        best = _pick(candidates, http, rec["method"], unescape_uri(rec["uri"].encode("latin-1"))[0])
        if best is None:
            report.miss(f"{label}: no http event")
            continue
        unused.remove(best)
        misses = _truth_misses(rec, http[best])
        if misses:
            report.miss(f"{label}: " + "; ".join(misses))
        else:
            report.matched += 1
    for i in unused:
        ev = http[i]
        report.miss(f"extra http event {ev['id.orig_h']}:{ev['id.orig_p']} {ev.get('method')} {ev.get('uri')}")
    return [report]


def _compare_zeek(expected: dict, http: list[dict], capture: str) -> KindReport | None:
    logs = zeek_logs(expected, "http")
    if not logs:
        return None
    report = KindReport(capture=capture, kind="http", source="zeek", found=len(http))
    unused = list(range(len(http)))
    for log in logs:
        for rec in log["records"]:
            report.expected += 1
            key = (rec["id.orig_h"], int(rec["id.orig_p"]), rec["id.resp_h"], int(rec["id.resp_p"]))
            label = f"{key[0]}:{key[1]}->{key[2]}:{key[3]} #{rec.get('trans_depth')} {rec.get('method')} {rec.get('uri')}"
            candidates = [i for i in unused if _flow_key(http[i]) == key]
            same_depth = [i for i in candidates if str(http[i].get("trans_depth")) == rec.get("trans_depth")]
            best = _pick(same_depth or candidates, http, rec.get("method"), rec.get("uri"))
            if best is None:
                report.miss(f"{label}: no http event")
                continue
            unused.remove(best)
            misses = field_misses(rec, http[best], skip=_NOT_MODELLED)
            if misses:
                report.miss(f"{label}: " + "; ".join(misses))
            else:
                report.matched += 1
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
    checks = suricata_checks(expected, "http")
    if not checks:
        return None
    eves = [eve_http(ev) for ev in http]
    report = KindReport(capture=capture, kind="http", source="suricata", found=len(eves))
    for test, check in checks:
        report.expected += 1
        want = check.get("count")
        got = sum(1 for eve in eves if matches(eve, check["match"]))
        if want == got or (want is None and got > 0):
            report.matched += 1
        else:
            report.miss(f"{test}: want {want} http records matching, probe has {got}: "
                        + describe_closest(eves, check["match"]))
    return report


def _arkime_misses(section: dict, flow: list[dict]) -> list[str]:
    misses = []

    def differ(field: str, theirs: Any, ours: Any) -> None:
        if theirs != ours:
            misses.append(f"{field}: arkime={theirs!r} probe={ours!r}")

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
    sessions = [
        s for tool in expected.get("expected", []) if tool.get("tool") == "arkime"
        for s in tool.get("sessions", []) if s.get("http")
    ]
    if not sessions:
        return None
    report = KindReport(capture=capture, kind="http", source="arkime", found=len(http))
    for session in sessions:
        src, dst = session["source"], session["destination"]
        report.expected += 1
        label = f"{src['ip']}:{src['port']}->{dst['ip']}:{dst['port']}"
        flow = [ev for ev in http if _flow_key(ev) == (src["ip"], src["port"], dst["ip"], dst["port"])]
        if not flow:
            report.miss(f"{label}: no http event on this flow")
            continue
        misses = _arkime_misses(session["http"], flow)
        if misses:
            report.miss(f"{label}: " + "; ".join(misses))
        else:
            report.matched += 1
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

"""Fidelity of ``ssl`` events: against tshark truth and Zeek/Suricata/Arkime baselines.

Handshakes are matched by connection 4-tuple (client = originator) and compared field by
field; every difference is one miss string. Fields a tool reports that the probe does not
model are listed in ``NOT_MODELLED`` and not counted as misses.
"""

from __future__ import annotations

from typing import Iterable

from probe.fidelity._baseline import (
    arkime_key,
    arkime_sessions,
    describe_closest,
    event_key,
    eve_matches,
    suricata_checks,
    suricata_ip,
    zeek_field_misses,
    zeek_key,
    zeek_logs,
)
from probe.fidelity.report import KindReport
from protocols.tls_names import cipher_name, version_name

#: what other tools report of a TLS session that the ssl event does not carry; the
#: community_id of a check depends on the test's own suricata.yaml seed (not in the baseline)
NOT_MODELLED = {
    "arkime": ("tls.srcSessionId", "tls.dstSessionId", "tls.ja4_r", "cert[].hash/serial/notBefore/notAfter/alt"),
    "suricata": ("community_id",),
}


def _ssl_events(events: Iterable[dict]) -> list[dict]:
    return sorted((e for e in events if e.get("kind") == "ssl"), key=lambda e: e["ts"])


def _by_key(events: list[dict]) -> dict[tuple, list[dict]]:
    table: dict[tuple, list[dict]] = {}
    for event in events:
        table.setdefault(event_key(event), []).append(event)
    return table


# -- tshark truth -------------------------------------------------------------------------------


def _hex_versions(values: list[str]) -> list[str]:
    return [version_name(int(v, 16)) for v in values]


def _truth_misses(rec: dict, server: dict | None, ev: dict) -> list[str]:
    misses: list[str] = []

    def differ(field: str, truth, ours) -> None:
        if truth != ours:
            misses.append(f"{field}: truth={truth!r} probe={ours!r}")

    if abs(rec["ts"] - ev["ts"]) > 1e-6:
        misses.append(f"ts: truth={rec['ts']!r} probe={ev['ts']!r}")
    differ("server_name", rec.get("sni"), ev.get("server_name"))
    differ("client_version", version_name(int(rec["legacy_version"], 16)), ev.get("client_version"))
    differ("client_versions", _hex_versions(rec.get("supported_versions") or []), list(ev.get("client_versions") or []))
    differ("client_alpn", list(rec.get("alpn") or []), list(ev.get("client_alpn") or []))
    differ("client_ciphers", list(rec.get("cipher_suites") or []), list(ev.get("client_ciphers") or []))
    differ("ja3", rec.get("ja3"), ev.get("ja3"))
    differ("ja3_full", rec.get("ja3_full"), ev.get("ja3_full"))
    if server is None:
        differ("version", None, ev.get("version"))
        differ("cipher", None, ev.get("cipher"))
        return misses
    differ("version", version_name(int(server["version"], 16)), ev.get("version"))
    differ("cipher", cipher_name(int(server["cipher"], 16)), ev.get("cipher"))
    if server.get("cipher_name") and server["cipher_name"].upper() != (ev.get("cipher") or "").upper():
        misses.append(f"cipher_name: truth={server['cipher_name']!r} probe={ev.get('cipher')!r}")
    differ("next_protocol", server.get("alpn"), ev.get("next_protocol"))
    differ("ja3s", server.get("ja3s"), ev.get("ja3s"))
    differ("ja3s_full", server.get("ja3s_full"), ev.get("ja3s_full"))
    differ("resumed", bool(server.get("resumed")), ev.get("resumed"))
    return misses


def compare_truth(truth: dict, events: list[dict], capture: str) -> list[KindReport]:
    """One ``ssl`` row: each TLS connection in tshark's truth against the probe's ssl event.

    tshark lists every ClientHello; a connection with two (after a HelloRetryRequest) is
    one handshake: its first ClientHello is compared, with the server's last answer.
    """
    report = KindReport(capture=capture, kind="ssl", source="truth")
    ssl = _ssl_events(events)
    report.found = len(ssl)
    by_key = _by_key(ssl)
    flows: dict[tuple, list[dict]] = {}
    for rec in truth.get("tls", []):
        key = (rec["client_ip"], rec["client_port"], rec["server_ip"], rec["server_port"])
        flows.setdefault(key, []).append(rec)
    report.expected = len(flows)
    for key, recs in flows.items():
        label = f"{key[0]}:{key[1]}->{key[2]}:{key[3]} sni={recs[0].get('sni')}"
        candidates = by_key.get(event_key({"id.orig_h": key[0], "id.orig_p": key[1], "id.resp_h": key[2], "id.resp_p": key[3]}), [])
        if not candidates:
            report.miss(f"{label}: no ssl event")
            continue
        event = candidates.pop(0)
        server = next((r["server"] for r in reversed(recs) if r.get("server")), None)
        misses = _truth_misses(recs[0], server, event)
        if misses:
            report.miss(f"{label}: " + "; ".join(misses))
        else:
            report.matched += 1
    for key, rest in by_key.items():
        for event in rest:
            report.miss(f"{key}: ssl event without a ClientHello in truth")
    return [report]


# -- corpus baselines ---------------------------------------------------------------------------

_SURICATA_VERSIONS = {"TLSv10": "TLS 1.0", "TLSv11": "TLS 1.1", "TLSv12": "TLS 1.2", "TLSv13": "TLS 1.3"}
_ARKIME_VERSIONS = {"TLSv10": "TLSv1", "TLSv11": "TLSv1.1", "TLSv12": "TLSv1.2", "TLSv13": "TLSv1.3"}


def _suricata_version(version: str | None) -> str | None:
    if version is None:
        return None
    if version.startswith("TLSv13-draft"):
        return f"TLS 1.3 draft-{version[len('TLSv13-draft'):]}"
    return _SURICATA_VERSIONS.get(version, version)


def to_eve(event: dict) -> dict:
    """An ssl event as Suricata 8 would log its ``tls`` record (the fields checks use)."""
    tls: dict = {"version": _suricata_version(event.get("version"))}
    if event.get("server_name") is not None:
        tls["sni"] = event["server_name"]
    if event.get("ja3"):
        tls["ja3"] = {"hash": event["ja3"], "string": event["ja3_full"]}
    if event.get("ja3s"):
        tls["ja3s"] = {"hash": event["ja3s"], "string": event["ja3s_full"]}
    if event.get("ja4"):
        tls["ja4"] = event["ja4"]
    if event.get("client_alpn"):
        tls["client_alpns"] = list(event["client_alpn"])
    if event.get("next_protocol"):
        tls["server_alpns"] = [event["next_protocol"]]
    src, sport, dst, dport = event["id.orig_h"], event["id.orig_p"], event["id.resp_h"], event["id.resp_p"]
    return {
        "event_type": "tls",
        "app_proto": "tls",
        "proto": "TCP",
        "src_ip": suricata_ip(src),
        "src_port": sport,
        "dest_ip": suricata_ip(dst),
        "dest_port": dport,
        "tls": tls,
    }


def _compare_zeek(expected: dict, ssl: list[dict], capture: str) -> list[KindReport]:
    reports = []
    for log in zeek_logs(expected, "ssl"):
        report = KindReport(capture=capture, kind="ssl", source="zeek")
        report.expected = len(log["records"])
        report.found = len(ssl)
        by_key = _by_key(ssl)
        for record in log["records"]:
            key = zeek_key(record)
            label = f"{key[0]}:{key[1]}->{key[2]}:{key[3]}"
            candidates = by_key.get(key, [])
            if not candidates:
                report.miss(f"{label}: no ssl event")
                continue
            misses = zeek_field_misses(record, candidates.pop(0))
            if misses:
                report.miss(f"{label}: " + "; ".join(misses))
            else:
                report.matched += 1
        reports.append(report)
    return reports


def _compare_suricata(expected: dict, ssl: list[dict], capture: str) -> list[KindReport]:
    checks = suricata_checks(expected, "tls")
    if not checks:
        return []
    report = KindReport(capture=capture, kind="ssl", source="suricata", expected=len(checks), found=len(ssl))
    eves = [to_eve(e) for e in ssl]
    for test, check in checks:
        match = {k: v for k, v in check["match"].items() if k not in NOT_MODELLED["suricata"]}
        hits = sum(1 for eve in eves if eve_matches(eve, match))
        if hits == check["count"]:
            report.matched += 1
        else:
            report.miss(f"{test}: {hits} tls records match, expected {check['count']}: " + describe_closest(eves, match))
    return [report]


def _cn(name: str | None) -> str | None:
    if not name:
        return None
    for part in name.split(","):
        if part.startswith("CN="):
            return part[3:].lower()
    return None


def _arkime_misses(session: dict, ev: dict) -> list[str]:
    misses: list[str] = []
    tls = session.get("tls", {})

    def differ(field: str, theirs, ours) -> None:
        if theirs != ours:
            misses.append(f"{field}: arkime={theirs!r} probe={ours!r}")

    def one(value):
        return [value] if value is not None else None

    if "version" in tls:
        differ("tls.version", tls["version"], one(_ARKIME_VERSIONS.get(ev.get("version"), ev.get("version"))))
    if "cipher" in tls:
        differ("tls.cipher", tls["cipher"], one(ev.get("cipher")))
    for name, ours in (("ja3", "ja3"), ("ja3string", "ja3_full"), ("ja3s", "ja3s"), ("ja3sstring", "ja3s_full"), ("ja4", "ja4")):
        if name in tls:
            differ(f"tls.{name}", tls[name], one(ev.get(ours)))
    host = session.get("http", {}).get("host")
    if host is not None:
        differ("http.host (SNI)", host, one(ev.get("server_name")))
    tags = session.get("tags", [])
    differ("tags tls:has_ech", "tls:has_ech" in tags, bool(ev.get("ech")))
    certs = session.get("cert")
    if certs is not None:
        fps = ev.get("cert_chain_fps") or []
        differ("cert count", len(certs), len(fps))
        leaf_cn = _cn(ev.get("subject"))
        leaf = next((c for c in certs if leaf_cn in (c.get("subjectCN") or [])), None)
        if leaf is None:
            misses.append(f"cert: no certificate with subjectCN {leaf_cn!r}")
        else:
            differ("cert issuerCN", leaf.get("issuerCN"), [_cn(ev.get("issuer"))])
    return misses


def _compare_arkime(expected: dict, ssl: list[dict], capture: str) -> list[KindReport]:
    sessions = [s for s in arkime_sessions(expected) if "tls" in s.get("protocol", [])]
    if not sessions:
        return []
    report = KindReport(capture=capture, kind="ssl", source="arkime", expected=len(sessions), found=len(ssl))
    by_key = _by_key(ssl)
    for session in sessions:
        key = arkime_key(session)
        label = f"{key[0]}:{key[1]}->{key[2]}:{key[3]}"
        candidates = by_key.get(key, [])
        if not candidates:
            report.miss(f"{label}: no ssl event")
            continue
        misses = _arkime_misses(session, candidates.pop(0))
        if misses:
            report.miss(f"{label}: " + "; ".join(misses))
        else:
            report.matched += 1
    return [report]


def compare_corpus(expected: dict, events: list[dict], capture: str) -> list[KindReport]:
    """One row per tool in the baseline that speaks of TLS: Zeek ssl.log, Suricata, Arkime."""
    ssl = _ssl_events(events)
    return (
        _compare_zeek(expected, ssl, capture)
        + _compare_suricata(expected, ssl, capture)
        + _compare_arkime(expected, ssl, capture)
    )

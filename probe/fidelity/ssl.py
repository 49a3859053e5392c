"""Fidelity of ``ssl`` events: against tshark truth and Zeek/Suricata/Arkime baselines.

Handshakes are matched by connection 4-tuple (client = originator) and compared field by
field; every difference is one miss string. Fields a tool reports that the probe does not
model are listed in ``NOT_MODELLED`` and not counted as misses.
"""

from __future__ import annotations

from typing import Iterable

from probe.fidelity import arkime, eve, zeek_log
from probe.fidelity.flow_keys import by_key, key_text, truth_key
from probe.fidelity.report import Differences, KindReport
from protocols.tls_names import cipher_name, version_name

#: what Arkime reports of a TLS session that the ssl event does not carry (not compared)
NOT_MODELLED = {
    "arkime": ("tls.srcSessionId", "tls.dstSessionId", "tls.ja4_r", "cert[].hash/serial/notBefore/notAfter/alt"),
}


def _ssl_events(events: Iterable[dict]) -> list[dict]:
    return sorted((e for e in events if e.get("kind") == "ssl"), key=lambda e: e["ts"])


# -- tshark truth -------------------------------------------------------------------------------


def _hex_versions(values: list[str]) -> list[str]:
    return [version_name(int(v, 16)) for v in values]


def _truth_misses(rec: dict, server: dict | None, ev: dict) -> list[str]:
    misses = Differences("truth")
    differ = misses.differ

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
    table = by_key(ssl)
    flows: dict[tuple, list[dict]] = {}
    for rec in truth.get("tls", []):
        flows.setdefault(truth_key(rec), []).append(rec)
    report.expected = len(flows)
    for key, recs in flows.items():
        label = f"{key_text(key)} sni={recs[0].get('sni')}"
        candidates = table.get(key, [])
        if not candidates:
            report.miss(f"{label}: no ssl event")
            continue
        event = candidates.pop(0)
        server = next((r["server"] for r in reversed(recs) if r.get("server")), None)
        report.outcome(label, _truth_misses(recs[0], server, event))
    for key, rest in table.items():
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
        "src_ip": eve.suricata_ip(src),
        "src_port": sport,
        "dest_ip": eve.suricata_ip(dst),
        "dest_port": dport,
        "tls": tls,
    }




def _compare_suricata(expected: dict, ssl: list[dict], capture: str) -> list[KindReport]:
    if not eve.checks(expected, "tls"):
        return []
    report = KindReport(capture=capture, kind="ssl", source="suricata", found=len(ssl))
    return [eve.evaluate(report, expected, "tls", [to_eve(e) for e in ssl])]


def _cn(name: str | None) -> str | None:
    if not name:
        return None
    for part in name.split(","):
        if part.startswith("CN="):
            return part[3:].lower()
    return None


def _arkime_misses(session: dict, ev: dict) -> list[str]:
    misses = Differences("arkime")
    differ = misses.differ
    tls = session.get("tls", {})

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




def compare_corpus(expected: dict, events: list[dict], capture: str) -> list[KindReport]:
    """One row per tool in the baseline that speaks of TLS: Zeek ssl.log, Suricata, Arkime."""
    ssl = _ssl_events(events)
    sessions = [s for s in arkime.sessions(expected) if "tls" in s.get("protocol", [])]
    return (
        zeek_log.compare_by_key(expected, ssl, capture, "ssl", "ssl")
        + _compare_suricata(expected, ssl, capture)
        + arkime.compare_by_key(sessions, ssl, capture, "ssl", _arkime_misses)
    )

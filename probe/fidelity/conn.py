"""Fidelity of ``conn`` events: against tshark's conversations and Zeek/Suricata/Arkime baselines.

Truth (``flows`` of ``NAME.truth.json``): per TCP/UDP conversation the same endpoints
with the same originator, the same packets, frame bytes and payload bytes each way, and
the service tshark found inside. tshark keeps one ICMP conversation per address pair
where Zeek (and the probe) keep one flow per ICMP type, so ICMP is folded per address
pair on both sides, counted from the lower address to the higher.

Corpus: Zeek conn.log records field by field (cut logs without the connection tuple are
paired in time order), Arkime sessions (packets and frame bytes each way) and Suricata
``flow`` records.
"""

from __future__ import annotations

from typing import Any

from probe.fidelity import arkime, eve, zeek_log
from probe.fidelity.flow_keys import key_text, of_kind, zeek_key
from probe.fidelity.report import Differences, KindReport

#: tshark's protocols found in a conversation -> the service the probe must report for it
TSHARK_SERVICES = {"dns": "dns", "http": "http", "tls": "ssl", "smb2": "smb", "kerberos": "krb"}

#: what Suricata's flow records say that the conn event does not carry
SURICATA_NOT_CARRIED = {
    "flow.alerted": "alerts need Suricata's rules",
    "tcp.tcp_flags": "the probe keeps Zeek's history, not the OR of the TCP flags",
    "tcp.tcp_flags_ts": "the probe keeps Zeek's history, not the OR of the TCP flags",
    "tcp.tcp_flags_tc": "the probe keeps Zeek's history, not the OR of the TCP flags",
    "tcp.psh": "the probe keeps Zeek's history, which has no PSH",
    "flow.reason": "how Suricata's flow table let the flow go (timeout, shutdown), not a property of the traffic",
}


def _conversation(proto: str, a_ip: str, a_port: int, b_ip: str, b_port: int) -> tuple[tuple, bool]:
    """The conversation key, and whether (a, b) is in the key's order."""
    if proto in ("icmp", "icmpv6"):
        if b_ip < a_ip:
            return ("icmp", b_ip, 0, a_ip, 0), False
        return ("icmp", a_ip, 0, b_ip, 0), True
    return (proto, a_ip, a_port, b_ip, b_port), True


def _fold(out: dict[tuple, list], key: tuple, forward: bool, a: tuple, b: tuple, services: set[str]) -> None:
    counts = out.setdefault(key, [0, 0, 0, 0, 0, 0, set()])
    first, second = (a, b) if forward else (b, a)
    for i in range(3):
        counts[i] += first[i]
        counts[3 + i] += second[i]
    counts[6] |= services


def truth_conversations(truth: dict) -> dict[tuple, list]:
    """tshark's conversations: key -> [pkts, bytes, payload a->b, the same b->a, services]."""
    out: dict[tuple, list] = {}
    for f in truth.get("flows", []):
        key, forward = _conversation(f["proto"], f["a_ip"], f["a_port"], f["b_ip"], f["b_port"])
        a, b = f["a_to_b"], f["b_to_a"]
        services = {TSHARK_SERVICES[app] for app in f.get("app") or () if app in TSHARK_SERVICES}
        if f["proto"] == "tcp" and "krb" in services:
            services = (services - {"krb"}) | {"krb_tcp"}
        _fold(out, key, forward, (a["packets"], a["bytes"], a["payload"]), (b["packets"], b["bytes"], b["payload"]),
              services)
    return out


def probe_conversations(conns: list[dict]) -> dict[tuple, list]:
    """The probe's conn events folded the same way."""
    out: dict[tuple, list] = {}
    for c in conns:
        key, forward = _conversation(c["proto"], c["id.orig_h"], c["id.orig_p"], c["id.resp_h"], c["id.resp_p"])
        icmp = key[0] == "icmp"
        a = (c["orig_pkts"], c.get("orig_l2_bytes") or 0, 0 if icmp else c.get("orig_payload_bytes") or 0)
        b = (c["resp_pkts"], c.get("resp_l2_bytes") or 0, 0 if icmp else c.get("resp_payload_bytes") or 0)
        services = set((c.get("service") or "").split(",")) - {""}
        _fold(out, key, forward, a, b, services)
    return out


_COUNTS = ("packets a->b", "bytes a->b", "payload a->b", "packets b->a", "bytes b->a", "payload b->a")


def compare_truth(truth: dict, events: list[dict], capture: str) -> list[KindReport]:
    """One ``conn`` row: each tshark conversation against the probe's conns folded alike."""
    expected = truth_conversations(truth)
    found = probe_conversations(of_kind(events, "conn"))
    report = KindReport(capture=capture, kind="conn", source="truth", expected=len(expected), found=len(found))
    for key, want in expected.items():
        label = f"{key[0]} {key_text(key[1:])}"
        got = found.pop(key, None)
        if got is None:
            report.miss(f"{label}: no conn event")
            continue
        misses = Differences("truth")
        for name, theirs, ours in zip(_COUNTS, want, got):
            misses.differ(name, theirs, ours)
        missing = sorted(want[6] - got[6])
        if missing:
            misses.append(f"service: truth has {', '.join(missing)}, probe has {', '.join(sorted(got[6])) or 'none'}")
        report.outcome(label, misses)
    for key in found:
        report.miss(f"extra conn {key[0]} {key_text(key[1:])} (no such conversation in truth)")
    return [report]


# -- corpus -------------------------------------------------------------------------------------


def _zeek_fields(record: dict) -> dict:
    """A conn.log record with the connection context (``id.ctx.vlan``) under the event's names."""
    return {(name[7:] if name.startswith("id.ctx.") else name): text for name, text in record.items()}


def _compare_zeek(expected: dict, conns: list[dict], capture: str) -> list[KindReport]:
    reports = []
    for log in zeek_log.logs(expected, "conn"):
        records = log["records"]
        report = KindReport(capture=capture, kind="conn", source="zeek", expected=len(records), found=len(conns))
        keyed = bool(records) and "id.orig_h" in records[0]
        pool = sorted(conns, key=lambda c: c["ts"])
        for i, record in enumerate(records):
            if keyed:
                key = zeek_key(record)
                label = f"{record.get('proto', '')} {key_text(key)}"
                conn = next((c for c in pool if (c["id.orig_h"], c["id.orig_p"], c["id.resp_h"], c["id.resp_p"]) == key
                             and c["proto"] == record.get("proto", c["proto"])), None)
            else:
                label = f"record {i + 1}"
                conn = pool[0] if pool else None
            if conn is None:
                report.miss(f"{label}: no conn event")
                continue
            pool.remove(conn)
            report.outcome(label, zeek_log.field_misses(_zeek_fields(record), conn))
        for conn in pool if keyed else ():
            report.miss(f"extra conn {conn['proto']} {key_text((conn['id.orig_h'], conn['id.orig_p'], conn['id.resp_h'], conn['id.resp_p']))}")
        reports.append(report)
    return reports


def _arkime_misses(session: dict, conn: dict) -> list[str]:
    misses = Differences("arkime")
    src, dst = session["source"], session["destination"]
    misses.differ("source.packets", src["packets"], conn["orig_pkts"])
    misses.differ("source.bytes", src["bytes"], conn.get("orig_l2_bytes"))
    misses.differ("destination.packets", dst["packets"], conn["resp_pkts"])
    misses.differ("destination.bytes", dst["bytes"], conn.get("resp_l2_bytes"))
    return misses


def eve_flow(conn: dict) -> dict:
    """A conn event as Suricata 8 would log its ``flow`` record (the fields checks use)."""
    services = (conn.get("service") or "").split(",")
    record: dict[str, Any] = {
        "event_type": "flow",
        "proto": (conn.get("proto") or "").upper(),
        "src_ip": eve.suricata_ip(conn["id.orig_h"]),
        "src_port": conn["id.orig_p"],
        "dest_ip": eve.suricata_ip(conn["id.resp_h"]),
        "dest_port": conn["id.resp_p"],
    }
    for service, app_proto in (("smb", "smb"), ("dce_rpc", "dcerpc"), ("ssl", "tls"), ("http", "http"),
                               ("dns", "dns"), ("krb", "krb5"), ("krb_tcp", "krb5")):
        if service in services:
            record["app_proto"] = app_proto
            break
    if conn.get("vlans"):
        record["vlan"] = list(conn["vlans"])
    history = conn.get("history") or ""
    # Suricata's TCP state is closed after a reset or a FIN each way
    closed = "r" in history.lower() or ("F" in history and "f" in history)
    state = "closed" if closed else "established"
    eve.put(record, "flow.state", state)
    eve.put(record, "flow.pkts_toserver", conn["orig_pkts"])
    eve.put(record, "flow.pkts_toclient", conn["resp_pkts"])
    eve.put(record, "flow.bytes_toserver", conn.get("orig_l2_bytes"))
    eve.put(record, "flow.bytes_toclient", conn.get("resp_l2_bytes"))
    eve.put(record, "flow.age", int(conn["ts"] + (conn.get("duration") or 0.0)) - int(conn["ts"]))
    if conn.get("proto") == "tcp":
        eve.put(record, "tcp.state", state)
        # the flags Zeek's history letters prove were seen (either direction)
        for letters, flag in (("sh", "syn"), ("f", "fin"), ("r", "rst"), ("ha", "ack")):
            if any(letter in history.lower() for letter in letters):
                eve.put(record, f"tcp.{flag}", True)
    return record


def compare_corpus(expected: dict, events: list[dict], capture: str) -> list[KindReport]:
    """Zeek conn.log rows, Arkime sessions and Suricata flow checks against the probe's conns."""
    conns = of_kind(events, "conn")
    reports = _compare_zeek(expected, conns, capture)
    reports += arkime.compare_by_key(arkime.sessions(expected), conns, capture, "conn", _arkime_misses)
    if eve.checks(expected, "flow"):
        report = KindReport(capture=capture, kind="conn", source="suricata", found=len(conns))
        reports.append(eve.evaluate(report, expected, "flow", [eve_flow(c) for c in conns],
                                    not_carried=SURICATA_NOT_CARRIED))
    return reports

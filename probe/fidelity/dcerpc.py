"""Fidelity of ``dce_rpc``/``dce_rpc_bind`` against tshark truth and the corpus.

Truth ``dcerpc.binds`` pair with ``dce_rpc_bind`` (contexts, ack results, secondary
address), ``dcerpc.requests`` with ``dce_rpc`` (context, opnum, interface, fault, answered).
Operation names are not compared with truth: truth has Wireshark's names, ours are Zeek's
on purpose; the opnum is compared instead. The corpus brings Zeek's dce_rpc.log and its
bind event printouts, Zeek weirds from the DCE/RPC analyzer, Suricata ``dcerpc`` checks and
Arkime ``dcerpc`` sections (interface names there are Arkime's own and are not compared).
"""

from __future__ import annotations

from probe.fidelity import arkime, eve, zeek_log
from probe.fidelity.eve import put
from probe.fidelity.flow_keys import event_key as flow_of
from probe.fidelity.flow_keys import key_text, of_kind, pair_in_order
from probe.fidelity.flow_keys import truth_key as truth_flow
from probe.fidelity.report import KindReport, same

#: tshark interface names that Zeek spells differently
TSHARK_TO_ZEEK = {"epm": "epmapper", "lsarpc": "lsarpc", "samr": "samr", "srvsvc": "srvsvc"}


def _binds(truth: dict, events: list[dict], capture: str) -> KindReport:
    report = KindReport(capture, "dce_rpc_bind", "truth")
    wanted = (truth.get("dcerpc") or {}).get("binds") or []
    ours = of_kind(events, "dce_rpc_bind")
    report.expected, report.found = len(wanted), len(ours)
    key = lambda t: truth_flow(t) + (t["call_id"], t["pkt_type"], t.get("fid"))  # noqa: E731
    fkey = lambda e: flow_of(e) + (e["call_id"], e["pkt_type"], e.get("fid"))  # noqa: E731
    for t, e in pair_in_order(wanted, ours, key, fkey):
        where = f"frame {t['frame']} {t['pkt_type']} call_id {t['call_id']}"
        if e is None:
            report.miss(f"{where}: no dce_rpc_bind event")
            continue
        bad = []
        ctx = t.get("contexts") or []
        for field, tv, ev in (
            ("ctx_ids", [c["ctx_id"] for c in ctx], e.get("ctx_ids")),
            ("uuids", [c["uuid"] for c in ctx], e.get("uuids")),
            ("versions", [c["version"] for c in ctx], e.get("versions")),
        ):
            if list(tv) != list(ev or []):
                bad.append(f"{field} truth {tv} ours {ev}")
        for c, name in zip(ctx, e.get("endpoints") or []):
            want = c.get("interface")
            if want is not None and TSHARK_TO_ZEEK.get(want.lower(), want.lower()) != name.lower():
                bad.append(f"interface truth {want} ours {name}")
        ack = t.get("ack")
        if ack is None:
            if e.get("ack_type") is not None:
                bad.append(f"ack truth none ours {e.get('ack_type')}")
        else:
            if list(ack.get("results") or []) != list(e.get("ack_results") or []):
                bad.append(f"ack results truth {ack.get('results')} ours {e.get('ack_results')}")
            if not same(ack.get("sec_addr") or None, e.get("sec_addr")):
                bad.append(f"sec_addr truth {ack.get('sec_addr')!r} ours {e.get('sec_addr')!r}")
        if not same(t.get("ts"), e.get("ts"), 2e-6):
            bad.append(f"ts truth {t.get('ts')} ours {e.get('ts')}")
        report.outcome(where, bad)
    return report


def _requests(truth: dict, events: list[dict], capture: str) -> KindReport:
    report = KindReport(capture, "dce_rpc", "truth")
    wanted = (truth.get("dcerpc") or {}).get("requests") or []
    ours = of_kind(events, "dce_rpc")
    report.expected, report.found = len(wanted), len(ours)
    key = lambda t: truth_flow(t) + (t["call_id"], t.get("fid"))  # noqa: E731
    fkey = lambda e: flow_of(e) + (e["call_id"], e.get("fid"))  # noqa: E731
    for t, e in pair_in_order(wanted, ours, key, fkey):
        where = f"frame {t['frame']} request call_id {t['call_id']} opnum {t.get('opnum')}"
        if e is None:
            report.miss(f"{where}: no dce_rpc event")
            continue
        bad = [f"{f} truth {t.get(f)!r} ours {e.get(g)!r}"
               for f, g in (("ctx_id", "ctx_id"), ("opnum", "opnum"), ("uuid", "uuid"),
                            ("fault", "fault"))
               if not same(t.get(f), e.get(g))]
        want = t.get("interface")
        if want is not None and TSHARK_TO_ZEEK.get(want.lower(), want.lower()) != (e.get("endpoint") or "").lower():
            bad.append(f"interface truth {want} ours {e.get('endpoint')}")
        if (t.get("response_frame") is not None) != (e.get("rtt") is not None):
            bad.append(f"answered truth {t.get('response_frame') is not None} ours {e.get('rtt') is not None}")
        if not same(t.get("ts"), e.get("ts"), 2e-6):
            bad.append(f"ts truth {t.get('ts')} ours {e.get('ts')}")
        report.outcome(where, bad)
    return report


def compare_truth(truth: dict, events: list[dict], capture: str) -> list[KindReport]:
    """Truth ``dcerpc`` binds and requests vs our dce_rpc_bind and dce_rpc events."""
    return [_binds(truth, events, capture), _requests(truth, events, capture)]


# -- corpus ---------------------------------------------------------------------------------

#: Zeek's DCE_RPC::ignored_operations (base/protocols/dce-rpc/main.zeek): noisy calls it never logs
ZEEK_IGNORED_OPERATIONS = {
    "winreg": {"BaseRegCloseKey", "BaseRegGetVersion", "BaseRegOpenKey", "BaseRegQueryValue", "BaseRegDeleteKeyEx",
               "OpenLocalMachine", "BaseRegEnumKey", "OpenClassesRoot"},
    "spoolss": {"RpcSplOpenPrinter", "RpcClosePrinter"},
    "wkssvc": {"NetrWkstaGetInfo"},
}


def zeek_logs_call(event: dict) -> bool:
    """Whether Zeek's dce_rpc.log has a row for this call of ours.

    Zeek writes a call when its response arrives (not a fault, not unanswered), only with
    an endpoint and operation known (no bind seen: nothing), minus its ignored operations.
    The probe logs every call; these are what it writes beyond Zeek.
    """
    endpoint, operation = event.get("endpoint"), event.get("operation")
    return (event.get("rtt") is not None and not event.get("fault") and endpoint is not None
            and operation is not None and operation not in ZEEK_IGNORED_OPERATIONS.get(endpoint, ()))


def _zeek_log(expected: dict, events: list[dict], capture: str) -> KindReport | None:
    logs = zeek_log.records(expected, "dce_rpc")
    if not logs:
        return None
    report = KindReport(capture, "dce_rpc", "zeek")
    ours = [e for e in of_kind(events, "dce_rpc") if zeek_logs_call(e)]
    for records in logs:
        report.expected += len(records)
        report.found += len(ours)
        pool = list(ours)
        for i, r in enumerate(records):
            where = f"zeek dce_rpc #{i + 1} {r.get('endpoint')}::{r.get('operation')}"
            match = next((e for e in pool if e.get("operation") == r.get("operation")
                          and same(r.get("rtt"), e.get("rtt"), 2e-6)), None)
            if match is None:
                match = next((e for e in pool if e.get("operation") == r.get("operation")), None)
            if match is None:
                report.miss(f"{where}: no dce_rpc event")
                continue
            pool.remove(match)
            bad = [f"{f} zeek {r.get(f)!r} ours {match.get(f)!r}"
                   for f in ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "named_pipe",
                             "endpoint", "operation") if not same(r.get(f), match.get(f))]
            if not same(r.get("rtt"), match.get("rtt"), 2e-6):
                bad.append(f"rtt zeek {r.get('rtt')} ours {match.get('rtt')}")
            report.outcome(where, bad)
        for e in pool:
            report.miss(f"extra dce_rpc {e.get('endpoint')}::{e.get('operation')} (not in Zeek's log)")
    return report


def _zeek_bind_lines(expected: dict, events: list[dict], capture: str) -> KindReport | None:
    """Zeek test printouts ``dce_rpc_bind :: uuid == ...`` etc. vs our bind events."""
    lines = [line for line in zeek_log.text_lines(expected) if line.startswith("dce_rpc_")]
    if not lines:
        return None
    report = KindReport(capture, "dce_rpc_bind", "zeek")
    want: list[tuple] = []
    for line in lines:
        head, _, rest = line.partition(" :: ")
        field, _, value = rest.partition("==")
        field, value = field.strip(), value.strip()
        if head in ("dce_rpc_bind", "dce_rpc_alter_context") and field == "uuid":
            want.append((head[8:], value))
        elif head == "dce_rpc_bind_ack" and field == "sec_addr":
            want.append(("bind_ack", value))
        elif head == "dce_rpc_alter_context_resp" and field == "fid":
            want.append(("alter_context_resp", None))
    got: list[tuple] = []
    for e in of_kind(events, "dce_rpc_bind"):
        got.extend((e["pkt_type"], u) for u in e.get("uuids") or [])
    for e in of_kind(events, "dce_rpc_bind"):
        if e.get("ack_type") == "bind_ack":
            got.append(("bind_ack", e.get("sec_addr")))
        elif e.get("ack_type") == "alter_context_resp":
            got.append(("alter_context_resp", None))
    report.expected, report.found = len(want), len(got)
    pool = list(got)
    for w in want:
        if w in pool:
            pool.remove(w)
            report.matched += 1
        else:
            report.miss(f"zeek {w[0]} {w[1]}: not among our bind events")
    return report


def _zeek_weirds(expected: dict, events: list[dict], capture: str) -> KindReport | None:
    logs = [[r for r in records if r.get("source") == "DCE_RPC"]
            for records in zeek_log.records(expected, "weird")]
    logs = [records for records in logs if records]
    if not logs:
        return None
    report = KindReport(capture, "weird", "zeek")
    ours = of_kind(events, "weird")
    for records in logs:
        report.expected += len(records)
        report.found += len(ours)
        for r in records:
            if any(e.get("name") == r.get("name") and same(e.get("addl"), r.get("addl")) for e in ours):
                report.matched += 1
            else:
                report.miss(f"zeek weird {r.get('name')} {r.get('addl')}: not among our weirds")
    return report


def eve_dcerpc_records(events: list[dict]) -> list[dict]:
    """Our TCP DCE/RPC events shaped as Suricata ``dcerpc`` EVE records."""
    out = []
    for e in of_kind(events, "dce_rpc_bind"):
        if e.get("fid"):
            continue
        r = {"event_type": "dcerpc", "proto": "TCP", "src_ip": e.get("id.orig_h"),
             "src_port": e.get("id.orig_p"), "dest_ip": e.get("id.resp_h"),
             "dest_port": e.get("id.resp_p")}
        put(r, "dcerpc.request", "BIND" if e["pkt_type"] == "bind" else "ALTER_CONTEXT")
        put(r, "dcerpc.response", {"bind_ack": "BINDACK", "bind_nak": "BINDNAK",
                                   "alter_context_resp": "ALTER_CONTEXT_RESP"}.get(e.get("ack_type"), "UNREPLIED"))
        put(r, "dcerpc.call_id", e.get("call_id"))
        put(r, "dcerpc.rpc_version", e.get("rpc_version"))
        results = e.get("ack_results") or []
        r["dcerpc"]["interfaces"] = [
            {"uuid": u, "version": v, **({"ack_result": results[i]} if i < len(results) else {})}
            for i, (u, v) in enumerate(zip(e.get("uuids") or [], e.get("versions") or []))]
        out.append(r)
    for e in of_kind(events, "dce_rpc"):
        if e.get("fid"):
            continue
        r = {"event_type": "dcerpc", "proto": "TCP", "src_ip": e.get("id.orig_h"),
             "src_port": e.get("id.orig_p"), "dest_ip": e.get("id.resp_h"),
             "dest_port": e.get("id.resp_p")}
        put(r, "dcerpc.request", "REQUEST")
        put(r, "dcerpc.response", "FAULT" if e.get("fault") else
            ("RESPONSE" if e.get("rtt") is not None else "UNREPLIED"))
        put(r, "dcerpc.call_id", e.get("call_id"))
        put(r, "dcerpc.rpc_version", e.get("rpc_version"))
        put(r, "dcerpc.req.opnum", e.get("opnum"))
        put(r, "dcerpc.req.frag_cnt", e.get("req_frags"))
        put(r, "dcerpc.req.stub_data_size", e.get("req_stub_len"))
        if e.get("resp_frags"):
            put(r, "dcerpc.res.frag_cnt", e.get("resp_frags"))
            put(r, "dcerpc.res.stub_data_size", e.get("resp_stub_len"))
        r["dcerpc"]["interfaces"] = [{"uuid": e.get("uuid"), "service": e.get("endpoint"),
                                      "procedure": e.get("operation")}]
        out.append(r)
    return out


ARKIME_TYPES = {"bind", "bind-ack", "bind-nak", "alter-context", "alter-context-resp", "request",
                "response", "fault"}
ARKIME_TAGS = {"dcerpc:bad-fraglen": "dce_rpc_bad_frag_length"}


def _arkime(expected: dict, events: list[dict], capture: str) -> KindReport | None:
    sessions = arkime.sessions(expected, "dcerpc")
    if not sessions:
        return None
    report = KindReport(capture, "dce_rpc", "arkime")
    report.found = len(of_kind(events, "dce_rpc")) + len(of_kind(events, "dce_rpc_bind"))
    for s in sessions:
        report.expected += 1
        flow = arkime.key(s)
        where = f"arkime session {key_text(flow)}"
        binds = [e for e in of_kind(events, "dce_rpc_bind") if flow_of(e) == flow]
        calls = [e for e in of_kind(events, "dce_rpc") if flow_of(e) == flow]
        weirds = {e.get("name") for e in of_kind(events, "weird") if flow_of(e) == flow}
        d = s["dcerpc"]
        types: set[str] = set()
        for b in binds:
            types.add(b["pkt_type"].replace("_", "-"))
            if b.get("ack_type"):
                types.add({"bind_ack": "bind-ack", "bind_nak": "bind-nak",
                           "alter_context_resp": "alter-context-resp"}[b["ack_type"]])
        for c in calls:
            types.add("request")
            if c.get("fault"):
                types.add("fault")
            elif c.get("rtt") is not None:
                types.add("response")
        uuids = {u for b in binds for u in b.get("uuids") or []} | {c["uuid"] for c in calls if c.get("uuid")}
        bad = []
        if set(d.get("uuid", [])) != uuids:
            bad.append(f"uuid arkime {d.get('uuid')} ours {sorted(uuids)}")
        opnums = {c["opnum"] for c in calls}
        if set(d.get("opnum", [])) != opnums:
            bad.append(f"opnum arkime {d.get('opnum')} ours {sorted(opnums)}")
        majors = {v.split(".")[0] for b in binds for v in b.get("versions") or []}
        if set(d.get("version", [])) != majors:
            bad.append(f"version arkime {d.get('version')} ours {sorted(majors)}")
        want_types = set(d.get("msgType", []))
        if want_types & ARKIME_TYPES != types:
            bad.append(f"msgType arkime {sorted(want_types & ARKIME_TYPES)} ours {sorted(types)}")
        for t in sorted(want_types - ARKIME_TYPES):
            bad.append(f"msgType {t!r}: PDU type not carried by our events")
        for tag in s.get("tags", []):
            if tag.startswith("dcerpc:") and ARKIME_TAGS.get(tag) not in weirds:
                bad.append(f"tag {tag}: no matching weird")
        report.outcome(where, bad)
    return report


def compare_corpus(expected: dict, events: list[dict], capture: str) -> list[KindReport]:
    """Zeek dce_rpc.log, bind printouts and weirds; Suricata dcerpc checks; Arkime sessions."""
    reports = [r for r in (_zeek_log(expected, events, capture),
                           _zeek_bind_lines(expected, events, capture),
                           _zeek_weirds(expected, events, capture),
                           _arkime(expected, events, capture)) if r is not None]
    report = KindReport(capture, "dce_rpc", "suricata")
    report.found = len(of_kind(events, "dce_rpc")) + len(of_kind(events, "dce_rpc_bind"))
    eve.evaluate(report, expected, "dcerpc", eve_dcerpc_records(events))
    if report.expected:
        reports.append(report)
    return reports

"""Fidelity of ``kerberos`` events: against tshark truth and Zeek/Suricata/Arkime baselines.

tshark lists Kerberos messages one by one; Zeek pairs a request with its reply. The truth
comparison therefore first pairs tshark's messages per flow as Zeek does (a request opens
an exchange, the reply or KRB-ERROR closes it, an error whose e-text Zeek ignores removes
it) and then compares each exchange field by field with the probe's event on that flow.
"""

from __future__ import annotations

from typing import Iterable

from probe.fidelity import arkime, eve, zeek_log
from probe.fidelity.flow_keys import by_key, key_text
from probe.fidelity.report import KindReport
from protocols.kerberos import IGNORED_ERRORS
from protocols.kerberos_messages import cipher_name, error_name

_REQUESTS = {"AS-REQ": "AS", "TGS-REQ": "TGS", "AP-REQ": "AP"}
_REPLIES = {"AS-REP", "TGS-REP", "AP-REP"}
#: encryption types Suricata calls weak (ticket_weak_encryption)
_WEAK = frozenset({"des-cbc-crc", "des-cbc-md4", "des-cbc-md5", "des3-cbc-md5", "rc4-hmac", "rc4-hmac-exp"})


def _krb_events(events: Iterable[dict]) -> list[dict]:
    return sorted((e for e in events if e.get("kind") == "kerberos"), key=lambda e: e["ts"])


# -- tshark truth -------------------------------------------------------------------------------


def truth_exchanges(messages: list[dict]) -> list[dict]:
    """tshark's per-message records paired into Zeek-style exchanges.

    Each exchange: ``key`` (client, server 4-tuple), ``request``/``reply`` records (either
    may be None) and ``suppressed`` (True when Zeek drops it for an ignored error text).
    """
    flows: dict[tuple, list[dict]] = {}
    for rec in messages:
        flows.setdefault((rec["transport"], rec["stream"]), []).append(rec)
    exchanges = []
    for recs in flows.values():
        current: dict | None = None
        for rec in recs:
            kind = rec["msg_type"]
            if kind in _REQUESTS:
                if current is None:
                    key = (rec["src_ip"], rec["src_port"], rec["dst_ip"], rec["dst_port"])
                    current = {"key": key, "request": None, "reply": None, "suppressed": False}
                current["request"] = rec
            elif kind in _REPLIES or kind == "KRB-ERROR":
                if current is None:
                    key = (rec["dst_ip"], rec["dst_port"], rec["src_ip"], rec["src_port"])
                    current = {"key": key, "request": None, "reply": None, "suppressed": False}
                current["reply"] = rec
                current["suppressed"] = kind == "KRB-ERROR" and rec.get("e_text") in IGNORED_ERRORS
                exchanges.append(current)
                current = None
        if current is not None:
            exchanges.append(current)
    return exchanges


def _expected_fields(exchange: dict) -> dict:
    """The kerberos event fields Zeek's scripts derive from this exchange."""
    req, rep = exchange["request"], exchange["reply"]
    out: dict = {}
    if req is not None:
        out["request_type"] = _REQUESTS[req["msg_type"]]
        if req["msg_type"] == "AS-REQ":
            out["client"] = f"{req.get('cname') or ''}/{req.get('realm') or ''}"
        if req.get("sname") is not None:
            out["service"] = req["sname"]
        out["req_ciphers"] = [cipher_name(e) for e in req.get("etypes") or []]
        out["req_padata"] = list(req.get("padata_types") or [])
    if rep is not None:
        if rep["msg_type"] == "KRB-ERROR":
            if "client" not in out and (rep.get("cname") or rep.get("realm")):
                out["client"] = f"{rep['cname'] + '/' if rep.get('cname') else ''}{rep.get('realm') or ''}"
            out["success"] = False
            out["error_code"] = rep["error_code"]
            out["error_msg"] = rep.get("e_text") or error_name(rep["error_code"])
        else:
            if "client" not in out and (rep.get("cname") or rep.get("realm")):
                out["client"] = f"{rep.get('cname') or ''}/{rep.get('realm') or ''}"
            out["success"] = True
        if rep.get("sname") is not None:
            out["service"] = rep["sname"]
    return out


def compare_truth(truth: dict, events: list[dict], capture: str) -> list[KindReport]:
    """One ``kerberos`` row: each Zeek-style exchange of tshark's messages against the probe."""
    report = KindReport(capture=capture, kind="kerberos", source="truth")
    krb = _krb_events(events)
    report.found = len(krb)
    table = by_key(krb)
    exchanges = truth_exchanges(truth.get("kerberos", []))
    report.expected = len(exchanges)
    for exchange in exchanges:
        key = exchange["key"]
        first = exchange["request"] or exchange["reply"]
        label = f"{key_text(key)} frame {first['frame']} {first['msg_type']}"
        candidates = table.get(key, [])
        if exchange["suppressed"]:
            # Zeek drops the exchange: a probe event for it would be a difference
            if candidates:
                report.miss(f"{label}: event for an exchange Zeek ignores ({exchange['reply'].get('e_text')})")
            else:
                report.matched += 1
            continue
        if not candidates:
            report.miss(f"{label}: no kerberos event")
            continue
        event = candidates.pop(0)
        misses = []
        if abs(first["ts"] - event["ts"]) > 1e-6:
            misses.append(f"ts: truth={first['ts']!r} probe={event['ts']!r}")
        for field, want in _expected_fields(exchange).items():
            got = event.get(field)
            if isinstance(got, tuple):
                got = list(got)
            if got != want:
                misses.append(f"{field}: truth={want!r} probe={got!r}")
        report.outcome(label, misses)
    for key, rest in table.items():
        for event in rest:
            report.miss(f"{key}: kerberos event without an exchange in truth ({event.get('request_type')})")
    return [report]


# -- corpus baselines ---------------------------------------------------------------------------


def _split_client(client: str | None) -> tuple[str | None, str | None]:
    """("name", "REALM") of Zeek's "name/REALM" client string."""
    if not client:
        return None, None
    name, _, realm = client.rpartition("/")
    return name or None, realm or None


def to_eve(event: dict) -> dict:
    """A kerberos event as Suricata 8 would log its ``krb5`` transaction."""
    request_type = event.get("request_type") or "AS"
    if event.get("success") is True:
        msg_type = f"KRB_{request_type}_REP"
    elif event.get("success") is False:
        msg_type = "KRB_ERROR"
    else:
        msg_type = f"KRB_{request_type}_REQ"
    cname, realm = _split_client(event.get("client"))
    krb5: dict = {"msg_type": msg_type, "failed_request": msg_type == "KRB_ERROR"}
    if cname is not None:
        krb5["cname"] = cname
    if realm is not None:
        krb5["realm"] = realm
    if event.get("service") is not None:
        krb5["sname"] = event["service"]
    if event.get("cipher") is not None:
        krb5["ticket_encryption"] = event["cipher"]
        krb5["ticket_weak_encryption"] = event["cipher"] in _WEAK
    if event.get("error_code") is not None:
        krb5["error_code"] = error_name(event["error_code"])
    return {"event_type": "krb5", "app_proto": "krb5", "krb5": krb5}


def _compare_suricata(expected: dict, krb: list[dict], capture: str) -> list[KindReport]:
    if not eve.checks(expected, "krb5"):
        return []
    report = KindReport(capture=capture, kind="kerberos", source="suricata", found=len(krb))
    return [eve.evaluate(report, expected, "krb5", [to_eve(e) for e in krb])]


def _arkime_misses(session: dict, event: dict) -> list[str]:
    misses = []
    krb5 = session.get("krb5", {})
    cname, realm = _split_client(event.get("client"))
    known = [c for c in event.get("req_ciphers") or [] if not c.startswith("unknown-")]
    ours = {"cname": [cname] if cname else None, "realm": [realm] if realm else None,
            "sname": [event["service"]] if event.get("service") else None, "etype": known}  # fmt: skip
    for field, theirs in krb5.items():
        if ours.get(field) != theirs:
            misses.append(f"krb5.{field}: arkime={theirs!r} probe={ours.get(field)!r}")
    return misses


def compare_corpus(expected: dict, events: list[dict], capture: str) -> list[KindReport]:
    """One row per tool in the baseline that speaks of Kerberos: Zeek, Suricata, Arkime."""
    krb = _krb_events(events)
    return (
        zeek_log.compare_by_key(expected, krb, capture, "kerberos", "kerberos", lambda r: f" {r.get('request_type')}")
        + _compare_suricata(expected, krb, capture)
        + arkime.compare_by_key(arkime.sessions(expected, "krb5"), krb, capture, "kerberos", _arkime_misses)
    )

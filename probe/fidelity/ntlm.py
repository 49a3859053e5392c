"""Fidelity of the ``ntlm`` kind against tshark truth and the corpus (Zeek ntlm.log, Arkime).

Truth has one record per NTLMSSP AUTHENTICATE message; we have one event per exchange, so
each truth record pairs with the next exchange on its flow that carries an AUTHENTICATE.
The record's ``ts`` is not compared: truth stamps the AUTHENTICATE, ours (like Zeek) the
first message of the exchange. Arkime's ``ntlm.type`` (message types seen) is not carried.
"""

from __future__ import annotations

from probe.fidelity import arkime, zeek_log
from probe.fidelity.flow_keys import event_key as flow_of
from probe.fidelity.flow_keys import key_text, of_kind, pair_in_order
from probe.fidelity.flow_keys import truth_key as truth_flow
from probe.fidelity.report import KindReport, same

TRANSPORTS = {"smb2": "smb", "smb": "smb", "dcerpc": "dce_rpc", "http": "http"}


def compare_truth(truth: dict, events: list[dict], capture: str) -> list[KindReport]:
    """Truth ``ntlmssp`` (AUTHENTICATE messages) vs our ntlm events with a username."""
    report = KindReport(capture, "ntlm", "truth")
    wanted = truth.get("ntlmssp") or []
    ours = [e for e in of_kind(events, "ntlm")
            if e.get("username") is not None or e.get("hostname") is not None]
    report.expected, report.found = len(wanted), len(of_kind(events, "ntlm"))
    for t, e in pair_in_order(wanted, ours, truth_flow, flow_of):
        where = f"frame {t['frame']} NTLMSSP_AUTH {t.get('domain')}\\{t.get('user')}"
        if e is None:
            report.miss(f"{where}: no ntlm event")
            continue
        bad = [f"{tf} truth {t.get(tf)!r} ours {e.get(ef)!r}"
               for tf, ef in (("user", "username"), ("domain", "domainname"), ("host", "hostname"))
               if not same(t.get(tf), e.get(ef))]
        transport = TRANSPORTS.get(t.get("transport"), t.get("transport"))
        if transport != e.get("transport"):
            bad.append(f"transport truth {t.get('transport')!r} ours {e.get('transport')!r}")
        report.outcome(where, bad)
    return [report]


ZEEK_FIELDS = ("username", "hostname", "domainname", "server_nb_computer_name",
               "server_dns_computer_name", "server_tree_name")


def _zeek(expected: dict, events: list[dict], capture: str) -> KindReport | None:
    logs = zeek_log.records(expected, "ntlm")
    if not logs:
        return None
    report = KindReport(capture, "ntlm", "zeek")
    ours = of_kind(events, "ntlm")
    for records in logs:
        report.expected += len(records)
        report.found += len(ours)
        key = lambda r: (r.get("id.orig_h"), str(r.get("id.orig_p")), r.get("id.resp_h"),  # noqa: E731
                         str(r.get("id.resp_p")))
        for r, e in pair_in_order(records, ours, key, key):
            where = f"zeek ntlm {r.get('domainname')}\\{r.get('username')} on {key(r)}"
            if e is None:
                report.miss(f"{where}: no ntlm event")
                continue
            bad = [f"{f} zeek {r.get(f)!r} ours {e.get(f)!r}" for f in ZEEK_FIELDS
                   if not same(r.get(f), e.get(f))]
            success = {"T": True, "F": False}.get(r.get("success"))
            if success != e.get("success"):
                bad.append(f"success zeek {r.get('success')!r} ours {e.get('success')!r}")
            report.outcome(where, bad)
    return report


def _short_version(text: str | None) -> str | None:
    return ".".join(text.split(".")[:3]) if text else None


def _arkime(expected: dict, events: list[dict], capture: str) -> KindReport | None:
    sessions = arkime.sessions(expected, "ntlm")
    if not sessions:
        return None
    report = KindReport(capture, "ntlm", "arkime")
    ours = of_kind(events, "ntlm")
    report.found = len(ours)
    for s in sessions:
        report.expected += 1
        flow = arkime.key(s)
        mine = [e for e in ours if flow_of(e) == flow]
        where = f"arkime session {key_text(flow)}"
        if not mine:
            report.miss(f"{where}: no ntlm event")
            continue
        ntlm = s["ntlm"]
        got = {
            "domain": {e["domainname"] for e in mine if e.get("domainname")},
            "host": {e["hostname"] for e in mine if e.get("hostname")},
            "targetName": {e["target_name"] for e in mine if e.get("target_name")},
            "version": {_short_version(v) for e in mine
                        for v in (e.get("client_version"), e.get("server_version")) if v},
        }
        bad = [f"ntlm.{k} arkime {sorted(ntlm.get(k, []))} ours {sorted(v)}"
               for k, v in got.items() if set(ntlm.get(k, [])) != v]
        users = {e["username"] for e in mine if e.get("username")}
        if not users <= set(s.get("user", [])) or (s.get("user") and not users):
            bad.append(f"user arkime {s.get('user')} ours {sorted(users)}")
        report.outcome(where, bad)
    return report


def compare_corpus(expected: dict, events: list[dict], capture: str) -> list[KindReport]:
    """Zeek ntlm.log and Arkime ntlm sections vs our ntlm events."""
    return [r for r in (_zeek(expected, events, capture), _arkime(expected, events, capture))
            if r is not None]

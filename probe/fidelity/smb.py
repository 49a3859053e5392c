"""Fidelity of the SMB kinds (smb_cmd, smb_files, smb_mapping) against tshark truth and the corpus.

Truth (``NAME.truth.json`` section ``smb``, one record per request) is compared with
``smb_cmd`` field by field, and its tree connects, renames and deletes with
``smb_mapping``/``smb_files``. The corpus is compared with Zeek's smb_files/smb_mapping/
smb_cmd logs and Suricata's ``smb`` EVE checks. Every difference is one miss string.
"""

from __future__ import annotations

from typing import Any

from probe.fidelity import eve, zeek_log
from probe.fidelity.eve import put
from probe.fidelity.flow_keys import event_key as flow_of
from probe.fidelity.flow_keys import of_kind, pair_in_order
from probe.fidelity.flow_keys import truth_key as truth_flow
from probe.fidelity.report import KindReport, same

ZEEK_CMD = {  # truth/tshark command names -> Zeek's
    "NEGOTIATE": "NEGOTIATE_PROTOCOL", "SESSION_SETUP": "SESSION_SETUP", "LOGOFF": "LOGOFF",
    "TREE_CONNECT": "TREE_CONNECT", "TREE_DISCONNECT": "TREE_DISCONNECT", "CREATE": "CREATE",
    "CLOSE": "CLOSE", "FLUSH": "FLUSH", "READ": "READ", "WRITE": "WRITE", "LOCK": "LOCK",
    "IOCTL": "IOCTL", "CANCEL": "CANCEL", "ECHO": "ECHO", "QUERY_DIRECTORY": "QUERY_DIRECTORY",
    "CHANGE_NOTIFY": "CHANGE_NOTIFY", "QUERY_INFO": "QUERY_INFO", "SET_INFO": "SET_INFO",
    "OPLOCK_BREAK": "OPLOCK_BREAK",
}
SURICATA_CMD = {
    "NEGOTIATE_PROTOCOL": "NEGOTIATE_PROTOCOL", "QUERY_DIRECTORY": "FIND", "QUERY_INFO": "GET_INFO",
    "ECHO": "KEEPALIVE",
}
SURICATA_DIALECT = {0x0202: "2.02", 0x0210: "2.10", 0x0222: "2.22", 0x0224: "2.24",
                    0x0300: "3.00", 0x0302: "3.02", 0x0310: "3.10", 0x0311: "3.11", 0x02FF: "2.??"}
SHARE_CODES = {1: "DISK", 2: "PIPE", 3: "PRINT"}

#: Zeek's default SMB::logged_file_actions; the corpus tests that redefine it add READ/WRITE
ZEEK_DEFAULT_ACTIONS = {"SMB::FILE_OPEN", "SMB::FILE_RENAME", "SMB::FILE_DELETE",
                        "SMB::PRINT_OPEN", "SMB::PRINT_CLOSE"}
ZEEK_REDEFINED_EXTRA = {"SMB::FILE_READ", "SMB::FILE_WRITE"}

#: truth fields tshark's script leaves unset although the packet has them (not a miss)
TRUTH_BLIND = {
    "written": "the truth script reads no WRITE response count (always null)",
    "info_level": "tshark files non-file info levels under another field (null for info_type 2/3)",
}


def _hex(value: int | None, width: int) -> str | None:
    return None if value is None else f"0x{value:0{width}x}"


def _cmd_fields(t: dict, e: dict) -> list[tuple[str, Any, Any]]:
    """(field, truth value, our value) pairs for one truth record and its smb_cmd event."""
    pairs: list[tuple[str, Any, Any]] = [
        ("session_id", t.get("session_id"), _hex(e.get("session_id"), 16)),
        ("tree_id", t.get("tree_id"), _hex(e.get("tree_id"), 8)),
        ("tree", t.get("tree"), e.get("tree")),
        ("status", t.get("status"), _hex(e.get("status_code"), 8)),
        ("status_name", t.get("status_name"),
         None if e.get("status") is None else "STATUS_" + e["status"]),
    ]
    simple = {
        "ntlmssp_type": "ntlmssp_type", "user": "ntlm_user", "domain": "ntlm_domain",
        "host": "ntlm_host", "path": "path", "filename": "filename", "disposition": "disposition",
        "delete_on_close": "delete_on_close", "directory": "directory",
        "create_action": "create_action", "fid": "fid", "file": "filename",
        "end_of_file": "end_of_file", "length": "length", "offset": "offset",
        "data_length": "data_length", "written": "written", "info_type": "info_type",
        "info_level": "info_level", "rename_to": "rename_to", "replace_if": "replace_if",
        "delete_pending": "delete_pending", "pattern": "pattern",
    }
    for tf, ef in simple.items():
        if tf in t:
            pairs.append((tf, t[tf], e.get(ef)))
    if "share_type" in t:
        pairs.append(("share_type", SHARE_CODES.get(t["share_type"], t["share_type"]),
                      e.get("share_type")))
    for tf, width in (("create_options", 8), ("desired_access", 8), ("ctl_code", 8)):
        if tf in t:
            pairs.append((tf, t[tf], _hex(e.get(tf), width)))
    if "dialects" in t:
        ours = e.get("dialects")
        pairs.append(("dialects", t["dialects"], None if ours is None else [_hex(d, 4) for d in ours]))
    if "dialect" in t:
        pairs.append(("dialect", t["dialect"], _hex(e.get("dialect"), 4)))
    return pairs


def _compare_cmds(truth_smb: list[dict], events: list[dict], capture: str) -> KindReport:
    report = KindReport(capture, "smb_cmd", "truth")
    cmds = [e for e in of_kind(events, "smb_cmd") if e.get("version") == "SMB2"]
    report.expected = len(truth_smb)
    report.found = len(cmds)
    key = lambda t: truth_flow(t) + (t["msg_id"], ZEEK_CMD.get(t["cmd"], t["cmd"]))  # noqa: E731
    fkey = lambda e: flow_of(e) + (e.get("message_id"), e.get("command"))  # noqa: E731
    used = set()
    for t, e in pair_in_order(truth_smb, cmds, key, fkey):
        where = f"frame {t['frame']} {t['cmd']} msg_id {t['msg_id']}"
        if e is None:
            report.miss(f"{where}: no smb_cmd event")
            continue
        used.add(id(e))
        bad = []
        if not same(t.get("ts"), e.get("ts"), 2e-6):
            bad.append(f"ts truth {t.get('ts')} ours {e.get('ts')}")
        for field, tv, ev in _cmd_fields(t, e):
            if tv is None and field in TRUTH_BLIND:
                continue
            if not same(tv, ev):
                bad.append(f"{field} truth {tv!r} ours {ev!r}")
        report.outcome(where, bad)
    for e in cmds:
        if id(e) not in used:
            report.miss(f"extra smb_cmd {e.get('command')} msg_id {e.get('message_id')} "
                        f"on {flow_of(e)} (not in truth)")
    return report


def _compare_mappings(truth_smb: list[dict], events: list[dict], capture: str) -> KindReport:
    report = KindReport(capture, "smb_mapping", "truth")
    wanted = [t for t in truth_smb if t["cmd"] == "TREE_CONNECT"]
    found = of_kind(events, "smb_mapping")
    report.expected, report.found = len(wanted), len(found)
    pairs = pair_in_order(wanted, found, lambda t: truth_flow(t) + (t.get("path"),),
                          lambda e: flow_of(e) + (e.get("path"),))
    for t, e in pairs:
        where = f"frame {t['frame']} TREE_CONNECT {t.get('path')}"
        if e is None:
            report.miss(f"{where}: no smb_mapping event")
            continue
        share = SHARE_CODES.get(t.get("share_type"), t.get("share_type"))
        if t["status"] == "0x00000000" and not same(share, e.get("share_type")):
            report.miss(f"{where}: share_type truth {share} ours {e.get('share_type')}")
        elif not same(t.get("ts"), e.get("ts"), 2e-6):
            report.miss(f"{where}: ts truth {t.get('ts')} ours {e.get('ts')}")
        else:
            report.matched += 1
    return report


def _compare_file_actions(truth_smb: list[dict], events: list[dict], capture: str) -> KindReport:
    """Renames, deletes (disposition or delete-on-close) and opens of the truth as smb_files rows."""
    report = KindReport(capture, "smb_files", "truth")
    wanted: list[tuple[dict, str, str, str | None]] = []
    for t in truth_smb:
        if t.get("status") != "0x00000000":
            continue
        if t["cmd"] == "SET_INFO" and t.get("rename_to") is not None:
            wanted.append((t, "SMB::FILE_RENAME", t["rename_to"], t.get("file")))
        elif t["cmd"] == "SET_INFO" and t.get("delete_pending"):
            wanted.append((t, "SMB::FILE_DELETE", t.get("file") or "<share_root>", None))
        elif t["cmd"] == "CREATE" and t.get("delete_on_close"):
            wanted.append((t, "SMB::FILE_DELETE", t.get("filename") or "<share_root>", None))
    rows = [e for e in of_kind(events, "smb_files")
            if e.get("action") in ("SMB::FILE_RENAME", "SMB::FILE_DELETE")]
    report.expected, report.found = len(wanted), len(rows)
    pool = {}
    for e in rows:
        pool.setdefault(flow_of(e) + (e.get("action"), e.get("fid")), []).append(e)
    for t, action, name, prev in wanted:
        where = f"frame {t['frame']} {action} {name}"
        bucket = pool.get(truth_flow(t) + (action, t.get("fid")))
        e = bucket.pop(0) if bucket else None
        if e is None:
            report.miss(f"{where}: no smb_files row")
            continue
        bad = [f"{f} truth {tv!r} ours {e.get(f)!r}"
               for f, tv in (("name", name), ("prev_name", prev), ("path", t.get("tree")))
               if (f != "prev_name" or action == "SMB::FILE_RENAME") and not same(tv, e.get(f))]
        report.outcome(where, bad)
    return report


def compare_truth(truth: dict, events: list[dict], capture: str) -> list[KindReport]:
    """SMB truth records vs our smb_cmd, smb_mapping and smb_files events."""
    records = truth.get("smb") or []
    return [
        _compare_cmds(records, events, capture),
        _compare_mappings(records, events, capture),
        _compare_file_actions(records, events, capture),
    ]


# -- corpus ---------------------------------------------------------------------------------

ZEEK_FILE_FIELDS = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "action", "path", "name",
                    "size", "prev_name", "times.modified", "times.accessed", "times.created",
                    "times.changed")


def _zeek_files(expected: dict, events: list[dict], capture: str) -> KindReport | None:
    logs = zeek_log.records(expected, "smb_files")
    if not logs:
        return None
    report = KindReport(capture, "smb_files", "zeek")
    actions = set(ZEEK_DEFAULT_ACTIONS)
    for entry in zeek_log.zeek_tools(expected):
        if "SMB::logged_file_actions" in entry.get("redefined_options", []):
            actions |= ZEEK_REDEFINED_EXTRA
    ours = [e for e in of_kind(events, "smb_files") if e.get("action") in actions]
    # Zeek writes a second READ/WRITE row once its file analysis assigned a fuid; we have no
    # file analysis (fuid is always unset), so those rows are expected to pair with nothing.
    for records in logs:
        report.expected += len(records)
        report.found += len(ours)
        pool = list(ours)
        for r in records:
            where = f"zeek {r.get('action')} {r.get('name')}"
            best = None
            best_bad: list[str] = []
            for e in pool:
                if e.get("action") != r.get("action") or e.get("name") != r.get("name"):
                    continue
                bad = [f"{f} zeek {r.get(f)!r} ours {e.get(f)!r}" for f in ZEEK_FILE_FIELDS
                       if not same(r.get(f), e.get(f), 1e-5)]
                if best is None or len(bad) < len(best_bad):
                    best, best_bad = e, bad
                if not bad:
                    break
            if best is None:
                fuid = f" (fuid {r['fuid']}: a row from Zeek's file analysis)" if r.get("fuid") else ""
                report.miss(f"{where}: no smb_files row{fuid}")
                continue
            pool.remove(best)
            report.outcome(where, best_bad)
        for e in pool:
            report.miss(f"extra smb_files {e.get('action')} {e.get('name')} (not in Zeek's log)")
    return report


def _zeek_mapping(expected: dict, events: list[dict], capture: str) -> KindReport | None:
    logs = zeek_log.records(expected, "smb_mapping")
    if not logs:
        return None
    report = KindReport(capture, "smb_mapping", "zeek")
    ours = [e for e in of_kind(events, "smb_mapping") if e.get("status") == "SUCCESS"]
    for records in logs:
        report.expected += len(records)
        report.found += len(ours)
        pairs = pair_in_order(records, ours, lambda r: r.get("path"), lambda e: e.get("path"))
        for r, e in pairs:
            if e is None:
                report.miss(f"zeek mapping {r.get('path')}: no smb_mapping event")
                continue
            bad = [f"{f} zeek {r.get(f)!r} ours {e.get(f)!r}"
                   for f in ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "path", "service",
                             "native_file_system", "share_type") if not same(r.get(f), e.get(f))]
            report.outcome(f"zeek mapping {r.get('path')}", bad)
    return report


def _zeek_cmds(expected: dict, events: list[dict], capture: str) -> KindReport | None:
    logs = zeek_log.records(expected, "smb_cmd")
    if not logs:
        return None
    report = KindReport(capture, "smb_cmd", "zeek")
    # policy/protocols/smb/log-cmds ignores MORE_PROCESSING_REQUIRED answers
    ours = [e for e in of_kind(events, "smb_cmd") if e.get("status") != "MORE_PROCESSING_REQUIRED"]
    for records in logs:
        report.expected += len(records)
        report.found += len(ours)
        for i, r in enumerate(records):
            where = f"zeek smb_cmd #{i + 1} {r.get('command')}"
            if i >= len(ours):
                report.miss(f"{where}: no smb_cmd event")
                continue
            e = ours[i]
            bad = [f"{f} zeek {r.get(f)!r} ours {e.get(f)!r}"
                   for f in ("command", "status", "version", "sub_command", "argument")
                   if not same(r.get(f), e.get(f))]
            if not same(r.get("rtt"), e.get("rtt"), 2e-6):
                bad.append(f"rtt zeek {r.get('rtt')} ours {e.get('rtt')}")
            name = r.get("referenced_file.name")
            if e.get("command") in ("CREATE", "CLOSE") and name is not None:
                ours_name = e.get("filename") or "<share_root>"
                if ours_name != name:
                    bad.append(f"referenced_file.name zeek {name!r} ours {ours_name!r}")
            # tree, tree_service and username: Zeek's SMB2 scripts never fill them; we do.
            report.outcome(where, bad)
        for e in ours[len(records):]:
            report.miss(f"extra smb_cmd {e.get('command')} (not in Zeek's log)")
    return report


def _suricata_fuid(fid: str | None) -> str | None:
    """tshark's GUID text of a FileId in Suricata's byte order (bytes 8 and 9 swapped)."""
    if not fid or len(fid) != 36:
        return fid
    return fid[:19] + fid[21:23] + fid[19:21] + fid[23:]


def _ntlm_version(text: str | None) -> str | None:
    if not text:
        return None
    parts = text.split(".")
    if len(parts) != 4:
        return text
    return f"{parts[0]}.{parts[1]} build {parts[2]} rev {parts[3]}"


def suricata_transactions(events: list[dict]) -> list[dict]:
    """The smb_cmd events that stand for one of Suricata's SMB2 transactions (one EVE record each).

    Suricata (rust/src/smb/smb2.rs) logs transactions, not commands: QUERY_INFO has none,
    SET_INFO only for a rename or a delete disposition; on a named pipe carrying DCE/RPC the
    WRITE (or IOCTL) opens the call's transaction and the READ that answers joins it, on
    another pipe READ and WRITE have none; on a file all READs share one transaction, and
    all WRITEs another, per file id.
    """
    rpc_fids = {(e["uid"], e.get("fid")) for e in of_kind(events, "dce_rpc") + of_kind(events, "dce_rpc_bind")
                if e.get("fid")}
    seen_files: set[tuple] = set()
    out = []
    for e in of_kind(events, "smb_cmd"):
        cmd = e.get("command")
        if e.get("version") == "SMB2":
            if cmd == "QUERY_INFO":
                continue
            if cmd == "SET_INFO" and e.get("rename_to") is None and e.get("delete_pending") is None:
                continue
            if cmd in ("READ", "WRITE"):
                if (e["uid"], e.get("fid")) in rpc_fids:
                    if cmd == "READ":
                        continue
                elif e.get("tree_service") == "PIPE":
                    continue  # a pipe without DCE/RPC: Suricata skips the data
                else:
                    key = (e["uid"], e.get("fid"), cmd)
                    if key in seen_files:
                        continue
                    seen_files.add(key)
        out.append(e)
    return out


def eve_smb_records(events: list[dict]) -> list[dict]:
    """Our SMB transactions shaped as Suricata ``smb`` EVE records (for its checks)."""
    dialect_by_uid: dict[str, int] = {}
    for e in of_kind(events, "smb_cmd"):
        if e.get("dialect") is not None:
            dialect_by_uid[e["uid"]] = e["dialect"]
    opens = {e.get("fid"): e for e in of_kind(events, "smb_files")
             if e.get("action", "").endswith("_OPEN")}
    versions = {(e["uid"], e.get("session_id")): e.get("client_version")
                for e in of_kind(events, "ntlm")}
    binds = {(e["uid"], e.get("fid"), round(e["ts"], 6)): e for e in of_kind(events, "dce_rpc_bind")}
    # Suricata marks a CREATE "delete on close" also when the file is later given a delete
    # disposition (SET_INFO FileDispositionInformation) through the same file id
    new_trees = {(e["uid"], round(e["ts"], 6)): e.get("tree_id") for e in of_kind(events, "smb_mapping")}
    disposed = {(e["uid"], e.get("fid")) for e in of_kind(events, "smb_cmd") if e.get("delete_pending")}
    out = []
    for e in suricata_transactions(events):
        r: dict = {"event_type": "smb"}
        put(r, "src_ip", e.get("id.orig_h"))
        put(r, "src_port", e.get("id.orig_p"))
        put(r, "dest_ip", e.get("id.resp_h"))
        put(r, "dest_port", e.get("id.resp_p"))
        cmd = e.get("command")
        put(r, "smb.command", "SMB2_COMMAND_" + SURICATA_CMD.get(cmd, cmd)
            if e.get("version") == "SMB2" else "SMB1_COMMAND_" + cmd)
        if e.get("status"):
            put(r, "smb.status", "STATUS_" + e["status"])
        dialect = dialect_by_uid.get(e["uid"])
        if dialect is not None:
            put(r, "smb.dialect", SURICATA_DIALECT.get(dialect, f"{dialect:x}"))
        put(r, "smb.session_id", e.get("session_id"))
        tree_id = e.get("tree_id")
        if cmd == "TREE_CONNECT":  # Suricata reports the tree id the answer assigned
            tree_id = new_trees.get((e["uid"], round(e["ts"], 6)), tree_id)
        put(r, "smb.tree_id", tree_id)
        if cmd == "TREE_CONNECT" and e.get("path"):
            put(r, "smb.named_pipe" if e.get("share_type") == "PIPE" else "smb.share", e["path"])
        if e.get("filename") is not None:
            put(r, "smb.filename", e["filename"])
        if e.get("fid"):
            put(r, "smb.fuid", _suricata_fuid(e["fid"]))
        if cmd == "CREATE":
            if e.get("disposition"):
                put(r, "smb.disposition", "FILE_" + e["disposition"])
            doomed = e.get("delete_on_close") or (e["uid"], e.get("fid")) in disposed
            put(r, "smb.access", "delete on close" if doomed else "normal")
            o = opens.get(e.get("fid"))
            if o is not None:
                for field in ("created", "accessed", "modified", "changed"):
                    value = o.get(f"times.{field}")
                    put(r, f"smb.{field}", int(value) if value else 0)
                put(r, "smb.size", e.get("end_of_file"))
        if e.get("ntlmssp_type") == "AUTH":
            put(r, "smb.ntlmssp.user", e.get("ntlm_user"))
            put(r, "smb.ntlmssp.domain", e.get("ntlm_domain"))
            put(r, "smb.ntlmssp.host", e.get("ntlm_host"))
            version = versions.get((e["uid"], e.get("session_id")))
            if version:
                put(r, "smb.ntlmssp.version", _ntlm_version(version))
        if e.get("rename_to") is not None:
            put(r, "smb.rename.from", e.get("filename"))
            put(r, "smb.rename.to", e.get("rename_to"))
        b = binds.get((e["uid"], e.get("fid"), round(e["ts"], 6)))
        if b is not None and cmd in ("WRITE", "IOCTL"):
            put(r, "smb.dcerpc.request", "BIND" if b["pkt_type"] == "bind" else "ALTER_CONTEXT")
            if b.get("ack_type"):
                put(r, "smb.dcerpc.response", {"bind_ack": "BINDACK", "bind_nak": "BINDNAK",
                                               "alter_context_resp": "ALTER_CONTEXT_RESP"}[b["ack_type"]])
            results = b.get("ack_results") or []
            reasons = b.get("ack_reasons") or []
            r["smb"]["dcerpc"]["interfaces"] = [
                {"uuid": u, "version": v,
                 **({"ack_result": results[i], "ack_reason": reasons[i]} if i < len(results) else {})}
                for i, (u, v) in enumerate(zip(b["uuids"], b["versions"]))]
        out.append(r)
    return out


#: Suricata's own transaction numbering, never compared
SURICATA_IGNORED = eve.BOOKKEEPING | {"smb.id"}


def compare_corpus(expected: dict, events: list[dict], capture: str) -> list[KindReport]:
    """Zeek smb_* logs and Suricata smb checks of one corpus capture vs our events (flow checks: conn)."""
    reports = [r for r in (_zeek_files(expected, events, capture),
                           _zeek_mapping(expected, events, capture),
                           _zeek_cmds(expected, events, capture)) if r is not None]
    report = KindReport(capture, "smb_cmd", "suricata", found=len(of_kind(events, "smb_cmd")))
    eve.evaluate(report, expected, "smb", eve_smb_records(events), SURICATA_IGNORED)
    if report.expected:
        reports.append(report)
    return reports

"""SMB2/3 over NetBIOS: commands, compound and async answers, file actions, pipes, truncation."""

from __future__ import annotations

import struct

import pytest

from protocols.smb2 import SmbAnalyzer
from tests.protocols.smb_wire import (
    ALL_FF, RecordingContext, close_req, close_resp, create_req, create_resp, fid, ioctl_req,
    ioctl_resp, nbss, negotiate_req, negotiate_resp, ntlm_auth, ntlm_challenge, ntlm_negotiate,
    pending_resp, query_info_req, query_info_resp, read_req, read_resp, rename_info, rpc_bind,
    rpc_bind_ack, rpc_request, rpc_response, session_setup_req, session_setup_resp, set_info_req,
    set_info_resp, spnego_init, spnego_resp, tree_connect_req, tree_connect_resp, write_req,
    write_resp,
)

SID, TID, PIPE_TID = 0x1122334455, 7, 9
MORE = 0xC0000016
DOC = fid(1)


def login() -> list[tuple[bool, bytes]]:
    return [
        (True, nbss(negotiate_req(0))), (False, nbss(negotiate_resp(0))),
        (True, nbss(session_setup_req(1, spnego_init(ntlm_negotiate())))),
        (False, nbss(session_setup_resp(1, spnego_resp(ntlm_challenge(), 1), MORE, SID))),
        (True, nbss(session_setup_req(2, spnego_resp(ntlm_auth("alice", "ACME", "PC1"), 1), SID))),
        (False, nbss(session_setup_resp(2, spnego_resp(None, 0), 0, SID))),
        (True, nbss(tree_connect_req(3, "\\\\srv\\finance", SID))),
        (False, nbss(tree_connect_resp(3, TID, 1, SID))),
    ]


def ransomware() -> list[tuple[bool, bytes]]:
    """Open, overwrite, rename to .encrypted (async), drop a note, delete-on-close, close."""
    note = fid(2)
    return login() + [
        (True, nbss(create_req(4, "Q1.xlsx", TID, SID, disposition=5))),
        (False, nbss(create_resp(4, DOC, TID, SID, action=3, eof=0))),
        (True, nbss(write_req(5, DOC, b"E" * 3000, TID, SID))),
        (False, nbss(pending_resp(5, 0xAA, 9, sid=SID))),
        (False, nbss(write_resp(5, 3000, TID, SID, async_id=0xAA))),
        (True, nbss(set_info_req(6, DOC, 10, rename_info("Q1.xlsx.encrypted"), TID, SID))),
        (False, nbss(set_info_resp(6, TID, SID))),
        (True, nbss(close_req(7, DOC, TID, SID))), (False, nbss(close_resp(7, TID, SID))),
        (True, nbss(create_req(8, "old.txt", TID, SID, options=0x1000, access=0x10000))),
        (False, nbss(create_resp(8, note, TID, SID, action=1, eof=2100))),
        (True, nbss(close_req(9, note, TID, SID))), (False, nbss(close_resp(9, TID, SID))),
    ]


def run(stream: list[tuple[bool, bytes]], split: int | None = None) -> RecordingContext:
    ctx = RecordingContext()
    a = SmbAnalyzer(ctx)
    for i, (is_orig, data) in enumerate(stream):
        ts = 1.0 + i / 100
        if split:
            for j in range(0, len(data), split):
                a.data(is_orig, data[j : j + split], ts)
        else:
            a.data(is_orig, data, ts)
    a.end(9.0)
    return ctx


def test_login_negotiates_authenticates_and_maps_a_share():
    ctx = run(login())
    assert ctx.services == ["smb"]
    cmds = ctx.of("smb_cmd")
    neg = cmds[0]
    assert neg["command"] == "NEGOTIATE_PROTOCOL" and neg["dialects"] == [0x0202, 0x0300, 0x0311]
    assert neg["dialect"] == 0x0311 and neg["argument"] == "3.1.1"
    s1, s2 = cmds[1], cmds[2]
    assert s1["status"] == "MORE_PROCESSING_REQUIRED" and s1["ntlmssp_type"] == "NEGOTIATE"
    assert s2["status"] == "SUCCESS" and s2["ntlmssp_type"] == "AUTH"
    assert (s2["ntlm_user"], s2["ntlm_domain"], s2["ntlm_host"]) == ("alice", "ACME", "PC1")
    [ntlm] = ctx.of("ntlm")
    assert ntlm["username"] == "alice" and ntlm["success"] is True and ntlm["session_id"] == SID
    assert ntlm["server_nb_computer_name"] == "FILESRV01" and ntlm["transport"] == "smb"
    [mapping] = ctx.of("smb_mapping")
    assert mapping["path"] == "\\\\srv\\finance" and mapping["share_type"] == "DISK"
    assert mapping["service"] is None and mapping["native_file_system"] is None
    assert cmds[3]["username"] == "ACME\\alice" and cmds[3]["share_type"] == "DISK"


def test_failed_logon_is_an_unsuccessful_ntlm_event():
    stream = login()[:5] + [(False, nbss(session_setup_resp(2, spnego_resp(None, 2), 0xC000006D, SID)))]
    ctx = run(stream)
    [ntlm] = ctx.of("ntlm")
    assert ntlm["success"] is False and ntlm["status"] == "LOGON_FAILURE"


def test_ransomware_file_actions():
    ctx = run(ransomware())
    rows = [(r["action"], r["name"], r["prev_name"]) for r in ctx.of("smb_files")]
    assert rows == [
        ("SMB::FILE_OPEN", "Q1.xlsx", None),
        ("SMB::FILE_WRITE", "Q1.xlsx", None),
        ("SMB::FILE_RENAME", "Q1.xlsx.encrypted", "Q1.xlsx"),
        ("SMB::FILE_CLOSE", "Q1.xlsx.encrypted", "Q1.xlsx"),
        ("SMB::FILE_OPEN", "old.txt", None),
        ("SMB::FILE_DELETE", "old.txt", None),
        ("SMB::FILE_CLOSE", "old.txt", None),
    ]
    files = ctx.of("smb_files")
    assert all(r["path"] == "\\\\srv\\finance" for r in files)
    assert files[1]["data_len"] == 3000 and files[4]["size"] == 2100
    assert files[0]["times.modified"] == pytest.approx(133_000_000_000_000_000 / 1e7 - 11_644_473_600)


def test_async_write_answer_after_pending_completes_the_request():
    ctx = run(ransomware())
    [write] = [c for c in ctx.of("smb_cmd") if c["command"] == "WRITE"]
    assert write["async"] is True and write["status"] == "SUCCESS"
    assert (write["length"], write["written"]) == (3000, 3000)
    assert write["filename"] == "Q1.xlsx" and write["tree"] == "\\\\srv\\finance"
    [rename] = [c for c in ctx.of("smb_cmd") if c["command"] == "SET_INFO"]
    assert rename["rename_to"] == "Q1.xlsx.encrypted" and rename["replace_if"] is False
    assert rename["filename"] == "Q1.xlsx"  # the name the file id was opened with
    [delete] = [c for c in ctx.of("smb_cmd") if c["command"] == "CREATE" and c["delete_on_close"]]
    assert delete["create_options"] == 0x1000 and delete["create_action"] == "OPENED"


def test_compound_related_operations_use_the_file_id_of_the_create():
    related = 4
    compound = nbss(
        create_req(10, "payroll.csv", TID, SID),
        query_info_req(11, ALL_FF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, flags=related),
        close_req(12, ALL_FF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, flags=related),
    )
    answer = nbss(create_resp(10, fid(5), TID, SID, eof=12), query_info_resp(11, TID, SID),
                  close_resp(12, TID, SID))
    ctx = run(login() + [(True, compound), (False, answer)])
    cmds = {c["command"]: c for c in ctx.of("smb_cmd")[4:]}
    assert set(cmds) == {"CREATE", "QUERY_INFO", "CLOSE"}
    fid_text = cmds["CREATE"]["fid"]
    assert cmds["QUERY_INFO"]["fid"] == fid_text and cmds["CLOSE"]["fid"] == fid_text
    assert cmds["QUERY_INFO"]["filename"] == "payroll.csv"
    assert cmds["CLOSE"]["tree_id"] == TID and cmds["CLOSE"]["session_id"] == SID
    assert all(c["compound"] for c in cmds.values())
    assert [r["action"] for r in ctx.of("smb_files")] == ["SMB::FILE_OPEN", "SMB::FILE_CLOSE"]


def test_disposition_delete_and_failed_commands():
    stream = ransomware()[:10] + [
        (True, nbss(set_info_req(20, DOC, 13, b"\x01", TID, SID))),
        (False, nbss(set_info_resp(20, TID, SID))),
        (True, nbss(create_req(21, "missing.txt", TID, SID))),
        (False, nbss(create_resp(21, b"", TID, SID, status=0xC0000034))),
    ]
    ctx = run(stream)
    assert ("SMB::FILE_DELETE", "Q1.xlsx") in [(r["action"], r["name"]) for r in ctx.of("smb_files")]
    failed = ctx.of("smb_cmd")[-1]
    assert failed["status"] == "OBJECT_NAME_NOT_FOUND" and failed["status_code"] == 0xC0000034
    assert failed["filename"] == "missing.txt" and failed["fid"] is None


def test_named_pipe_carries_dce_rpc_over_ioctl_and_read_write():
    pipe = fid(9)
    srvsvc = "4b324fc8-1670-01d3-1278-5a47bf6ee188"
    stream = login() + [
        (True, nbss(tree_connect_req(30, "\\\\srv\\IPC$", SID))),
        (False, nbss(tree_connect_resp(30, PIPE_TID, 2, SID))),
        (True, nbss(create_req(31, "srvsvc", PIPE_TID, SID))),
        (False, nbss(create_resp(31, pipe, PIPE_TID, SID, mtime=0))),
        (True, nbss(write_req(32, pipe, rpc_bind(1, [(0, srvsvc, 3, 0)]), PIPE_TID, SID))),
        (False, nbss(write_resp(32, 72, PIPE_TID, SID))),
        (True, nbss(read_req(33, pipe, 4280, PIPE_TID, SID))),
        (False, nbss(read_resp(33, rpc_bind_ack(1, "\\PIPE\\srvsvc", [0]), PIPE_TID, SID))),
        (True, nbss(ioctl_req(34, pipe, 0x0011C017, rpc_request(2, 0, 15, b"\x00" * 40), PIPE_TID, SID))),
        (False, nbss(ioctl_resp(34, pipe, 0x0011C017, rpc_response(2, 0, b"\x00" * 80), PIPE_TID, SID))),
        (True, nbss(close_req(35, pipe, PIPE_TID, SID))), (False, nbss(close_resp(35, PIPE_TID, SID))),
    ]
    ctx = run(stream)
    [bind] = ctx.of("dce_rpc_bind")
    assert bind["endpoints"] == ["srvsvc"] and bind["fid"] == ctx.of("smb_cmd")[-1]["fid"]
    [call] = ctx.of("dce_rpc")
    assert (call["named_pipe"], call["endpoint"], call["operation"]) == ("\\PIPE\\srvsvc", "srvsvc", "NetrShareEnum")
    assert call["fid"] == bind["fid"] and call["rtt"] is not None
    actions = [r["action"] for r in ctx.of("smb_files")]
    assert actions == ["SMB::PIPE_OPEN", "SMB::PIPE_WRITE", "SMB::PIPE_READ", "SMB::PIPE_CLOSE"]
    [ioctl] = [c for c in ctx.of("smb_cmd") if c["command"] == "IOCTL"]
    assert ioctl["ctl_code"] == 0x0011C017 and ioctl["filename"] == "srvsvc"
    assert ctx.services == ["smb", "dce_rpc"]  # the pipe's DCE/RPC shows in conn's service, as in Zeek


def test_repeated_identical_rows_are_written_once_like_zeek():
    stream = ransomware()[:10] + [
        (True, nbss(write_req(40, DOC, b"x" * 10, TID, SID, offset=3000))),
        (False, nbss(write_resp(40, 10, TID, SID))),
    ]
    writes = [r for r in run(stream).of("smb_files") if r["action"] == "SMB::FILE_WRITE"]
    assert len(writes) == 1


def test_encrypted_smb3_is_flagged_and_skipped():
    transform = b"\xfdSMB" + b"\x00" * 32 + struct.pack("<IHHQ", 100, 0, 1, SID) + b"\xaa" * 100
    ctx = run(login() + [(True, nbss(transform)), (False, nbss(transform))])
    assert ctx.weirds["smb3_encrypted"] == 1
    assert len(ctx.of("smb_cmd")) == 4


def test_smb1_is_flagged_and_its_session_setup_feeds_ntlm():
    blob = ntlm_auth("dave", "OLD", "XP1")
    words = struct.pack("<BBBHHHHIHIIH", 12, 0xFF, 0, 0, 4356, 50, 0, 0, len(blob), 0, 0x800000D4, len(blob))
    header = b"\xffSMB" + struct.pack("<BIBH", 0x73, 0, 0x18, 0xC807) + b"\x00" * 12 + struct.pack("<HHHH", 0, 1, 0, 5)
    reply_words = struct.pack("<BBBHHHH", 4, 0xFF, 0, 0, 0, 0, 0)
    reply = b"\xffSMB" + struct.pack("<BIBH", 0x73, 0, 0x98, 0xC807) + b"\x00" * 12 + struct.pack("<HHHH", 0, 1, 2048, 5)
    ctx = run([(True, nbss(header + words + blob)), (False, nbss(reply + reply_words))])
    assert ctx.weirds["smb1_protocol_used"] == 1
    [ntlm] = ctx.of("ntlm")
    assert ntlm["username"] == "dave" and ntlm["success"] is True
    [cmd] = ctx.of("smb_cmd")
    assert cmd["version"] == "SMB1" and cmd["command"] == "SESSION_SETUP_ANDX"


def test_byte_at_a_time_gives_the_same_events():
    whole = run(ransomware())
    assert [e for e in run(ransomware(), split=1).events] == whole.events


def test_truncation_at_every_offset_never_raises():
    stream = ransomware()
    for i, (is_orig, data) in enumerate(stream):
        payload = data[4:]
        for cut in range(len(payload)):
            # a message that says it is ``cut`` bytes long: short headers, bodies and blobs
            ctx = RecordingContext()
            a = SmbAnalyzer(ctx)
            for o, d in stream[:i]:
                a.data(o, d, 1.0)
            a.data(is_orig, struct.pack(">I", cut) + payload[:cut], 2.0)
            a.end(3.0)
    # and whole streams cut anywhere (the end flushes what is pending)
    blob = b"".join(d for o, d in stream if o)
    for cut in range(0, len(blob), 7):
        a = SmbAnalyzer(RecordingContext())
        a.data(True, blob[:cut], 1.0)
        a.end(2.0)


def test_gap_resynchronises_on_the_next_message():
    ctx = RecordingContext()
    a = SmbAnalyzer(ctx)
    for o, d in login():
        a.data(o, d, 1.0)
    msg = nbss(create_req(50, "a.txt", TID, SID))
    a.data(True, msg[:40], 2.0)
    a.gap(True, 500, 2.0)
    a.data(True, b"\x17" * 9 + nbss(create_req(51, "b.txt", TID, SID)), 2.1)
    a.data(False, nbss(create_resp(51, fid(3), TID, SID)), 2.2)
    a.end(3.0)
    assert [c["filename"] for c in ctx.of("smb_cmd") if c["command"] == "CREATE"] == ["b.txt"]


def test_garbage_is_counted_not_raised():
    ctx = run([(True, b"\x47\x45\x54\x20" * 50), (True, nbss(b"\x00" * 70)), (False, nbss(b"\xfeSMB" + b"\x01" * 10))])
    assert sum(ctx.weirds.values()) >= 2

"""DCE/RPC over TCP: binds, fragmented calls, faults, auth verifiers, resync, truncation."""

from __future__ import annotations

import struct

import pytest

from protocols.dcerpc import DceRpcAnalyzer, DceRpcConversation, looks_like_dcerpc
from tests.protocols.smb_wire import (
    RecordingContext, ntlm_auth, ntlm_challenge, ntlm_negotiate, rpc_bind, rpc_bind_ack, rpc_fault,
    rpc_pdu, rpc_request, rpc_response,
)

SVCCTL = "367abb81-9844-35f1-ad32-98f038001003"
SAMR = "12345778-1234-abcd-ef00-0123456789ac"
NETLOGON = "12345678-1234-abcd-ef00-01234567cffb"


def run(chunks: list[tuple[bool, bytes, float]], split: int | None = None) -> RecordingContext:
    ctx = RecordingContext()
    ctx.id = ctx.id.__class__("10.0.0.2", 50000, "10.0.0.1", 135)
    analyzer = DceRpcAnalyzer(ctx)
    for is_orig, data, ts in chunks:
        if split:
            for i in range(0, len(data), split):
                analyzer.data(is_orig, data[i : i + split], ts)
        else:
            analyzer.data(is_orig, data, ts)
    analyzer.end(99.0)
    return ctx


def svcctl_session() -> list[tuple[bool, bytes, float]]:
    stub = bytes(range(256)) * 3  # 768 bytes sent in three fragments
    return [
        (True, rpc_bind(2, [(0, SVCCTL, 2, 0)]), 1.0),
        (False, rpc_bind_ack(2, "\\PIPE\\svcctl", [0]), 1.1),
        (True, rpc_request(3, 0, 12, stub[:256], flags=1), 2.0),
        (True, rpc_request(3, 0, 12, stub[256:512], flags=0), 2.1),
        (True, rpc_request(3, 0, 12, stub[512:], flags=2), 2.2),
        (False, rpc_response(3, 0, b"\x00" * 100, flags=1), 2.5),
        (False, rpc_response(3, 0, b"\x00" * 20, flags=2), 2.6),
    ]


def test_bind_maps_context_to_interface_and_sec_addr_names_the_pipe():
    ctx = run(svcctl_session())
    [bind] = ctx.of("dce_rpc_bind")
    assert bind["uuids"] == [SVCCTL] and bind["versions"] == ["2.0"] and bind["ctx_ids"] == [0]
    assert bind["endpoints"] == ["svcctl"] and bind["ack_type"] == "bind_ack"
    assert bind["ack_results"] == [0] and bind["sec_addr"] == "\\PIPE\\svcctl"
    assert ctx.services == ["dce_rpc"]


def test_fragmented_call_is_one_event_with_zeek_names_and_rtt():
    ctx = run(svcctl_session())
    [call] = ctx.of("dce_rpc")
    assert (call["endpoint"], call["operation"], call["named_pipe"]) == ("svcctl", "CreateServiceW", "\\PIPE\\svcctl")
    assert call["ts"] == 2.2 and call["rtt"] == pytest.approx(0.4)
    assert (call["req_frags"], call["req_stub_len"]) == (3, 768)
    assert (call["resp_frags"], call["resp_stub_len"]) == (2, 120)
    assert call["opnum"] == 12 and call["call_id"] == 3 and call["fault"] is None


def test_stream_split_into_small_segments_gives_the_same_events():
    whole = run(svcctl_session())
    for size in (1, 3, 17):
        assert run(svcctl_session(), split=size).of("dce_rpc") == whole.of("dce_rpc")


def test_fault_answers_the_call_and_unanswered_calls_are_kept():
    ctx = run([
        (True, rpc_bind(1, [(0, SAMR, 1, 0)]), 1.0),
        (False, rpc_bind_ack(1, "49667", [0]), 1.1),
        (True, rpc_request(2, 0, 64, b"\x00" * 8), 2.0),
        (False, rpc_fault(2, 0x00000005), 2.1),
        (True, rpc_request(3, 0, 7, b"\x00" * 8), 3.0),
    ])
    faulted, unanswered = ctx.of("dce_rpc")
    assert faulted["operation"] == "SamrConnect5" and faulted["fault"] == "nca_s_fault_access_denied"
    assert unanswered["operation"] == "SamrOpenDomain" and unanswered["rtt"] is None


def test_alter_context_adds_a_context_and_bind_nak_is_recorded():
    ctx = run([
        (True, rpc_bind(1, [(0, SAMR, 1, 0)]), 1.0),
        (False, rpc_pdu(13, 1, struct.pack("<H", 4)), 1.1),
        (True, rpc_bind(2, [(1, SVCCTL, 2, 0)], ptype=14), 2.0),
        (False, rpc_bind_ack(2, "", [0], ptype=15), 2.1),
        (True, rpc_request(3, 1, 15, b""), 3.0),
        (False, rpc_response(3, 1, b""), 3.1),
    ])
    nak, alter = ctx.of("dce_rpc_bind")
    assert nak["ack_type"] == "bind_nak" and nak["nak_reason"] == 4
    assert alter["pkt_type"] == "alter_context" and alter["ack_type"] == "alter_context_resp"
    [call] = ctx.of("dce_rpc")
    assert call["operation"] == "OpenSCManagerW" and call["named_pipe"] is None


def test_ntlmssp_in_bind_auth_verifiers_makes_an_ntlm_event():
    ctx = run([
        (True, rpc_bind(1, [(0, SAMR, 1, 0)], auth=ntlm_negotiate()), 1.0),
        (False, rpc_bind_ack(1, "135", [0], auth=ntlm_challenge()), 1.1),
        (True, rpc_pdu(16, 1, b"\x00" * 4, auth=ntlm_auth("carol", "CORP", "WS9")), 1.2),
    ])
    [ntlm] = ctx.of("ntlm")
    assert (ntlm["username"], ntlm["domainname"], ntlm["hostname"]) == ("carol", "CORP", "WS9")
    assert ntlm["server_nb_computer_name"] == "FILESRV01" and ntlm["success"] is None
    assert ntlm["transport"] == "dce_rpc"


def test_netlogon_secure_channel_auth_is_a_zeek_weird():
    ctx = run([(True, rpc_bind(1, [(0, NETLOGON, 1, 0)], auth=b"\x00" * 16), 1.0)])
    ctx2 = RecordingContext()
    a = DceRpcAnalyzer(ctx2)
    a.data(True, rpc_pdu(0, 1, struct.pack("<IHH", 0, 0, 45), auth=b"\x00" * 16, auth_type=68), 1.0)
    assert ("netlogon_dce_rpc_auth_type", "68") in ctx2.weird_addl
    assert ctx.weirds["unknown_dce_rpc_auth_type"] == 0  # type 10 with a non-NTLM blob is ignored


def test_bad_frag_length_is_reported_and_the_stream_resyncs():
    bad = bytes([5, 0, 0, 3, 0x10, 0, 0, 0]) + struct.pack("<HHI", 8, 0, 9)
    ctx = run([(True, rpc_bind(1, [(0, SAMR, 1, 0)]), 1.0), (False, rpc_bind_ack(1, "135", [0]), 1.1),
               (True, bad + b"junk" + rpc_request(2, 0, 1, b""), 2.0),
               (False, rpc_response(2, 0, b""), 2.1)])
    assert ctx.weirds["dce_rpc_bad_frag_length"] == 1
    [call] = ctx.of("dce_rpc")
    assert call["operation"] == "SamrCloseHandle"


def test_gap_drops_the_partial_pdu_and_finds_the_next():
    ctx = RecordingContext()
    a = DceRpcAnalyzer(ctx)
    a.data(True, rpc_bind(1, [(0, SAMR, 1, 0)]), 1.0)
    a.data(False, rpc_bind_ack(1, "135", [0]), 1.1)
    req = rpc_request(2, 0, 5, b"\x00" * 40)
    a.data(True, req[:30], 2.0)
    a.gap(True, 100, 2.0)
    a.data(True, b"\x99" * 7 + rpc_request(3, 0, 6, b""), 3.0)
    a.data(False, rpc_response(3, 0, b""), 3.1)
    a.end(4.0)
    assert [c["operation"] for c in ctx.of("dce_rpc")] == ["SamrEnumerateDomainsInSamServer"]


def test_truncation_at_every_offset_never_raises():
    stream = b"".join(d for o, d, t in svcctl_session() if o)
    replies = b"".join(d for o, d, t in svcctl_session() if not o)
    for cut in range(len(stream)):
        ctx = RecordingContext()
        a = DceRpcAnalyzer(ctx)
        a.data(True, stream[:cut], 1.0)
        a.data(False, replies[: cut % (len(replies) + 1)], 1.1)
        a.end(2.0)
    # each single PDU cut short but claiming its full length is counted, not raised
    for pdu in (rpc_bind(1, [(0, SAMR, 1, 0)]), rpc_bind_ack(1, "135", [0]), rpc_request(1, 0, 1, b"ab")):
        for cut in range(16, len(pdu)):
            ctx = RecordingContext()
            a = DceRpcAnalyzer(ctx)
            a.conv.pdu(True, pdu[:cut], 1.0)


def test_detection_helper_accepts_rpc_and_rejects_other_bytes():
    assert looks_like_dcerpc(rpc_bind(1, [(0, SAMR, 1, 0)]))
    assert not looks_like_dcerpc(b"GET / HTTP/1.1\r\n\r\n")
    assert not looks_like_dcerpc(b"\x05\x00")


def test_the_first_pdu_that_parses_confirms_dce_rpc_once() -> None:
    ctx = RecordingContext()
    conv = DceRpcConversation(ctx)
    conv.data(True, b"\x05\x00\x0b\x03\x10\x00\x00\x00\x10\x00\x00\x00\x01\x00\x00\x00", 1.0)  # header only
    assert ctx.services == []  # a bind cut after its header does not parse
    conv.data(True, rpc_bind(2, [(0, SVCCTL, 2, 0)]), 1.1)
    conv.data(True, rpc_bind(3, [(1, SVCCTL, 2, 0)]), 1.2)
    assert ctx.services == ["dce_rpc"]

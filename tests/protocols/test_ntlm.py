"""NTLMSSP decoding, the per-exchange tracker, and SPNEGO unwrapping (with the Kerberos hand-off)."""

from __future__ import annotations


import pytest

from protocols import spnego
from protocols.kerberos import GssKerberos
from protocols.ntlm import AUTHENTICATE, CHALLENGE, NEGOTIATE, NtlmError, NtlmTracker, parse_ntlmssp
from tests.protocols import krb_builders as krb
from tests.protocols.smb_wire import (
    KRB5_OID, RecordingContext, av_pairs, der, ntlm_auth, ntlm_challenge, ntlm_negotiate,
    spnego_init, spnego_resp,
)


def test_negotiate_carries_the_client_version():
    msg = parse_ntlmssp(ntlm_negotiate())
    assert msg.msg_type == NEGOTIATE
    assert msg.version == "6.1.7601.15"


def test_challenge_av_pairs_give_the_server_names():
    msg = parse_ntlmssp(ntlm_challenge())
    assert msg.msg_type == CHALLENGE
    assert msg.target_name == "ACME"
    assert (msg.nb_computer_name, msg.dns_computer_name, msg.dns_tree_name) == (
        "FILESRV01", "filesrv01.acme.local", "acme.local")
    assert msg.version == "10.0.19041.15"
    assert msg.av_error is None


def test_authenticate_unicode_and_oem_strings():
    msg = parse_ntlmssp(ntlm_auth("alice", "ACME", "DESKTOP-1"))
    assert (msg.msg_type, msg.user, msg.domain, msg.workstation) == (AUTHENTICATE, "alice", "ACME", "DESKTOP-1")
    oem = parse_ntlmssp(ntlm_auth("bob", "CORP", "PC7", unicode=False))
    assert (oem.user, oem.domain, oem.workstation) == ("bob", "CORP", "PC7")


def test_authenticate_follows_the_offsets_not_the_field_order():
    # like suricata-verify smb2-ntlmssp-order: descriptors swapped, strings where they point
    msg = parse_ntlmssp(ntlm_auth("Administrator", "CONTOSO", "SERVER01", swap_user_host=True))
    assert (msg.user, msg.workstation, msg.domain) == ("SERVER01", "Administrator", "CONTOSO")


def test_av_pairs_without_terminator_are_reported_and_dropped():
    # like Zeek's ntlm-empty-av-sequence: the AV pair list runs out before MsvAvEOL
    msg = parse_ntlmssp(ntlm_challenge(info=av_pairs([(1, "SRV")], eol=False)))
    assert msg.av_error == "ntlm_av_pair_loop_underflow"
    assert msg.nb_computer_name is None
    assert msg.target_name == "ACME"


@pytest.mark.parametrize("token", [b"", b"NTLMSSP", b"NTLMSSP\x00\x09\x00\x00\x00", b"XTLMSSP\x00\x01\x00\x00\x00"])
def test_not_ntlmssp_raises_ntlm_error_only(token):
    with pytest.raises(NtlmError):
        parse_ntlmssp(token)


def test_truncation_at_every_offset_never_escapes_the_tracker():
    ctx = RecordingContext()
    tracker = NtlmTracker(ctx, "smb")
    for token in (ntlm_negotiate(), ntlm_challenge(), ntlm_auth()):
        for cut in range(len(token)):
            tracker.token(token[:cut], 1.0)
    tracker.end(2.0)
    assert sum(ctx.weirds.values()) > 0


def test_tracker_writes_one_event_per_exchange_with_the_verdict():
    ctx = RecordingContext()
    tracker = NtlmTracker(ctx, "smb")
    tracker.token(ntlm_negotiate(), 1.0)
    tracker.token(ntlm_challenge(), 1.1)
    tracker.token(ntlm_auth(), 1.2, session_id=7)
    assert ctx.events == []
    tracker.verdict(True, 1.3, "SUCCESS")
    [event] = ctx.of("ntlm")
    assert event["ts"] == 1.0
    assert (event["username"], event["domainname"], event["hostname"]) == ("alice", "ACME", "DESKTOP-1")
    assert event["server_nb_computer_name"] == "FILESRV01"
    assert event["server_dns_computer_name"] == "filesrv01.acme.local"
    assert event["server_tree_name"] == "acme.local"
    assert event["success"] is True and event["session_id"] == 7 and event["transport"] == "smb"


def test_a_new_negotiate_closes_the_unfinished_exchange():
    ctx = RecordingContext()
    tracker = NtlmTracker(ctx, "dce_rpc")
    tracker.token(ntlm_negotiate(), 1.0)
    tracker.token(ntlm_challenge(), 1.1)
    tracker.token(ntlm_negotiate(), 2.0)
    tracker.end(3.0)
    first, second = ctx.of("ntlm")
    assert first["server_nb_computer_name"] == "FILESRV01" and first["success"] is None
    assert second["ts"] == 2.0 and second["server_nb_computer_name"] is None


def test_spnego_wrapped_ntlm_goes_to_the_tracker_and_reject_is_seen():
    ctx = RecordingContext()
    tracker = NtlmTracker(ctx, "http")
    found = spnego.handle_blob(ctx, tracker, spnego_init(ntlm_negotiate()), True, 1.0)
    assert found.mech == "ntlmssp"
    found = spnego.handle_blob(ctx, tracker, spnego_resp(ntlm_challenge(), 1), False, 1.1)
    assert found.mech == "ntlmssp" and found.neg_state == 1
    spnego.handle_blob(ctx, tracker, spnego_resp(ntlm_auth(), 1), True, 1.2)
    found = spnego.handle_blob(ctx, tracker, spnego_resp(None, 2), False, 1.3)
    assert found.neg_state == spnego.REJECT
    tracker.verdict(False, 1.3)
    [event] = ctx.of("ntlm")
    assert event["success"] is False and event["username"] == "alice"


def test_kerberos_inside_spnego_reaches_the_flows_kerberos_tracker():
    ctx = RecordingContext()
    kerberos = GssKerberos(ctx)
    request = krb.gss(0x0100, krb.ap_req("EX.ORG", ("cifs", "fs1"), 18))
    found = spnego.handle_blob(ctx, NtlmTracker(ctx, "smb"), spnego_init(request, KRB5_OID), True, 5.0, kerberos=kerberos)
    assert found.mech == "krb5"
    spnego.handle_blob(ctx, NtlmTracker(ctx, "smb"), spnego_resp(krb.gss(0x0200, krb.ap_rep()), 0), False, 5.1, kerberos=kerberos)
    [event] = ctx.of("kerberos")
    assert (event["request_type"], event["client"], event["service"], event["success"]) == ("AP", "/EX.ORG", "cifs/fs1", True)


def test_kerberos_without_a_tracker_is_counted():
    ctx = RecordingContext()
    token = der(0x60, KRB5_OID + b"\x01\x00" + der(0x6E, b"\x00"))
    spnego.handle_blob(ctx, NtlmTracker(ctx, "smb"), token, True, 1.0)
    assert ctx.weirds["kerberos_in_gssapi_not_analyzed"] == 1


def test_broken_spnego_is_a_weird_not_an_exception():
    ctx = RecordingContext()
    blob = spnego_init(ntlm_auth())
    for cut in range(1, len(blob)):
        spnego.handle_blob(ctx, NtlmTracker(ctx, "smb"), blob[:cut], True, 1.0)
    assert ctx.weirds["spnego_malformed"] > 0

"""Interface names from impacket's constants fill in where Zeek's table has none; Zeek's win."""

from __future__ import annotations

from protocols.dcerpc import DceRpcConversation
from protocols.dcerpc_names import endpoint_name, operation_name
from tests.protocols.smb_wire import RecordingContext, rpc_bind, rpc_bind_ack, rpc_request, rpc_response

MIMIKATZ = "17fc11e9-c258-4b8d-8d07-2f4125156244"
SHADOW_COPY_MGMT = "fa7df749-66e7-4986-a27f-e2f04ae53772"
SAMR = "12345778-1234-abcd-ef00-0123456789ac"
SVCCTL = "367abb81-9844-35f1-ad32-98f038001003"


def test_interfaces_zeek_does_not_name_get_impackets_names() -> None:
    assert endpoint_name(MIMIKATZ) == "mimikatz"
    assert operation_name(MIMIKATZ, 2) == "MimiCommand"
    assert endpoint_name(SHADOW_COPY_MGMT) == "IVssSnapshotMgmt"  # a DCOM interface (IID_*)
    assert endpoint_name("b9785960-524f-11df-8b6d-83dcded72085") == "gkdi"


def test_zeek_names_win_and_unknowns_stay_zeeks_defaults() -> None:
    assert endpoint_name(SAMR) == "samr"  # impacket calls it SAMR
    assert operation_name(SVCCTL, 12) == "CreateServiceW"  # Zeek's, not impacket's RCreateServiceW
    assert operation_name(SVCCTL, 9999) == "unknown-9999"
    assert endpoint_name("deadbeef-cafe-babe-1234-567890abcdef") == "unknown-deadbeef-cafe-babe-1234-567890abcdef"
    assert operation_name("deadbeef-cafe-babe-1234-567890abcdef", 1) == "unknown-1"


def test_a_mimikatz_rpc_call_is_named_in_the_events() -> None:
    ctx = RecordingContext()
    conv = DceRpcConversation(ctx)
    conv.data(True, rpc_bind(1, [(0, MIMIKATZ, 1, 0)]), 1.0)
    conv.data(False, rpc_bind_ack(1, "135", [0]), 1.1)
    conv.data(True, rpc_request(2, 0, 2, b"\x00" * 16), 1.2)
    conv.data(False, rpc_response(2, 0, b"\x00" * 8), 1.3)
    conv.end(2.0)
    [bind] = ctx.of("dce_rpc_bind")
    [call] = ctx.of("dce_rpc")
    assert bind["endpoints"] == ["mimikatz"]
    assert (call["endpoint"], call["operation"]) == ("mimikatz", "MimiCommand")

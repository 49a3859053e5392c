"""Our NTLMSSP, Kerberos, DCE/RPC bind and SMB2 session setup decoding agrees with impacket's.

The messages are those the parsers meet in ../shared/pcaps and a few corpus captures
(Kerberos AP exchanges in SMB, NTLMSSP with swapped field offsets, NTLM over HTTP,
DCE/RPC over TCP and SMB pipes); impacket decodes the same bytes with its own structures.
"""

from __future__ import annotations

import attrs
import pytest

from probe.fidelity.impacket_check import check, collect, ntlm_differences
from tests.conftest import CORPUS as CORPUS_DIR
from tests.conftest import _require_shared, shared_pcaps

pytestmark = pytest.mark.shared

CORPUS = ("zeek-krb-spnego-smb.pcapng", "zeek-krb-tcp-tso.pcapng", "sv-smb2-ntlmssp-swapped-offsets.pcap",
          "arkime-ntlm-synthetic.pcap", "zeek-dcerpc-mapi-ntlm.pcap")

#: at least this many messages of each type must have been compared
LEAST = {"ntlmssp": 30, "kerberos": 30, "dce_rpc bind": 20, "smb2 session setup": 20}


@pytest.fixture(scope="module")
def messages():
    _require_shared()
    return collect([*shared_pcaps(), *(CORPUS_DIR / name for name in CORPUS)])


@pytest.mark.timeout(120)
def test_every_message_decodes_as_impacket_decodes_it(messages) -> None:
    rows = check(messages)
    assert {row.kind for row in rows} == set(LEAST)
    for row in rows:
        assert row.expected >= LEAST[row.kind], row.kind
        assert row.misses == [] and row.matched == row.expected, row.misses[:3]
    kerberos_types = {raw[0] for raw, decoded in messages.kerberos if decoded is not None}
    assert {0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F, 0x7E} <= kerberos_types  # AS/TGS req and rep, AP req/rep, error
    assert {m.msg_type for _, m in messages.ntlm if m is not None} == {1, 2, 3}


def test_a_wrong_decode_would_be_reported(messages) -> None:
    token, ours = next((t, m) for t, m in messages.ntlm if m is not None and m.msg_type == 3 and m.user)
    assert ntlm_differences(token, ours) == []
    [miss] = ntlm_differences(token, attrs.evolve(ours, user="mallory"))
    assert miss == f"user: impacket={ours.user!r} probe='mallory'"

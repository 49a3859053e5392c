"""``dce_rpc_bind``: one DCE/RPC bind or alter_context and its answer (no Zeek log; Zeek raises events)."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("dce_rpc_bind")
@attrs.frozen(slots=True)
class DceRpcBind:
    """The presentation contexts a client proposed and what the server answered.

    Zeek has no log for this (its ``dce_rpc_bind``/``dce_rpc_bind_ack`` events feed
    dce_rpc.log); Suricata logs it in its ``dcerpc`` EVE records. Context lists are parallel
    tuples: ``ctx_ids``, ``uuids``, ``versions`` (``major.minor``), ``endpoints`` (Zeek's
    names), ``ack_results`` (0 acceptance, 1 user rejection, 2 provider rejection, 3
    negotiate ack) and ``ack_reasons``. ``pkt_type`` is ``bind`` or ``alter_context``;
    ``ack_type`` ``bind_ack``, ``bind_nak``, ``alter_context_resp`` or None (no answer);
    ``sec_addr`` the bind_ack's secondary address; ``fid`` the SMB2 pipe file id.
    """

    ts: float
    uid: str
    id: ConnId
    pkt_type: str
    call_id: int
    ctx_ids: tuple[int, ...]
    uuids: tuple[str, ...]
    versions: tuple[str, ...]
    endpoints: tuple[str, ...]
    ack_type: str | None = None
    ack_results: tuple[int, ...] | None = None
    ack_reasons: tuple[int, ...] | None = None
    sec_addr: str | None = None
    nak_reason: int | None = None
    fid: str | None = None
    auth_type: int | None = None
    rpc_version: str | None = None

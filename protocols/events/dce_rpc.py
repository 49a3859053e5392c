"""``dce_rpc``: one DCE/RPC call (request and response), as a line of Zeek's dce_rpc.log."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("dce_rpc")
@attrs.frozen(slots=True)
class DceRpc:
    """A request and its response; Zeek's dce_rpc.log.

    ``endpoint`` and ``operation`` are Zeek's names for the interface UUID and opnum
    (``unknown-<uuid>`` / ``unknown-<opnum>`` otherwise), ``named_pipe`` is the bind_ack's
    secondary address (``\\PIPE\\srvsvc`` or a port number), ``rtt`` response minus request
    time (None if no response was seen). Zeek writes a call only when its response arrives;
    this also writes calls left unanswered at the end of the flow (``rtt`` None) and calls
    answered with a fault.

    Extras: ``call_id``, ``ctx_id``, ``opnum``, ``uuid`` (interface), ``fid`` (SMB2 pipe
    file id, 32 hex digits; None over plain TCP), ``fault`` (the fault status name or
    ``0x...``), ``req_frags``/``resp_frags`` (fragments), ``req_stub_len``/``resp_stub_len``
    (stub bytes), ``auth_type`` (of the request's verifier, if any), ``rpc_version``
    (``5.0``/``5.1`` from the PDU header).
    """

    ts: float
    uid: str
    id: ConnId
    rtt: float | None
    named_pipe: str | None
    endpoint: str | None
    operation: str | None
    call_id: int | None = None
    ctx_id: int | None = None
    opnum: int | None = None
    uuid: str | None = None
    fid: str | None = None
    fault: str | None = None
    req_frags: int | None = None
    resp_frags: int | None = None
    req_stub_len: int | None = None
    resp_stub_len: int | None = None
    auth_type: int | None = None
    rpc_version: str | None = None

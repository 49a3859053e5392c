"""DCE/RPC connection-oriented PDUs (C706 ch. 12, MS-RPCE) over TCP or SMB named pipes.

:class:`DceRpcConversation` follows one RPC association (a TCP connection, or one SMB pipe
file id): binds and alter_contexts map presentation context ids to interface UUIDs,
requests are matched to responses (or faults) by call id, fragments are counted and their
stub lengths summed (first/last flags), and auth verifiers go to NTLM/SPNEGO/Kerberos.
It emits ``dce_rpc`` and ``dce_rpc_bind`` events. :class:`DceRpcAnalyzer` is the TCP parser
(service ``dce_rpc``); SMB feeds pipe bytes to a conversation per file id.
"""

from __future__ import annotations

import struct
from typing import Any

from protocols.analyzer import Analyzer, register
from protocols.dcerpc_names import PIPE_COMMON_UUID, endpoint_name, operation_name
from protocols.events.dce_rpc import DceRpc
from protocols.events.dce_rpc_bind import DceRpcBind
from protocols.kerberos import GssKerberos
from protocols.ntlm import NtlmTracker
from protocols import spnego

HEADER_LEN = 16
MAX_BUFFER = 1 << 17  # a PDU is at most 65535 bytes; more pending means we lost the framing

REQUEST, PING, RESPONSE, FAULT = 0, 1, 2, 3
BIND, BIND_ACK, BIND_NAK, ALTER_CONTEXT, ALTER_CONTEXT_RESP = 11, 12, 13, 14, 15
AUTH3, SHUTDOWN, CO_CANCEL, ORPHANED = 16, 17, 18, 19
PTYPE_NAMES = {
    REQUEST: "request", RESPONSE: "response", FAULT: "fault", BIND: "bind",
    BIND_ACK: "bind_ack", BIND_NAK: "bind_nak", ALTER_CONTEXT: "alter_context",
    ALTER_CONTEXT_RESP: "alter_context_resp", AUTH3: "auth3", SHUTDOWN: "shutdown",
    CO_CANCEL: "co_cancel", ORPHANED: "orphaned",
}

PFC_FIRST_FRAG, PFC_LAST_FRAG, PFC_OBJECT_UUID = 0x01, 0x02, 0x80

AUTH_SPNEGO, AUTH_NTLMSSP, AUTH_SCHANNEL, AUTH_KERBEROS, AUTH_NETLOGON = 9, 10, 14, 16, 68

#: fault status codes (nca_status and common Win32/NT ones) -> names
FAULT_NAMES = {
    0x00000005: "nca_s_fault_access_denied",
    0x1C010002: "nca_s_op_rng_error",
    0x1C010003: "nca_s_unk_if",
    0x1C00001C: "nca_s_fault_remote_no_memory",
    0x1C000008: "nca_s_fault_ndr",
    0x1C00000D: "nca_s_fault_invalid_bound",
    0x1C000012: "nca_s_fault_cancel",
    0x1C010013: "nca_s_proto_error",
    0x1C000001: "nca_s_fault_int_div_by_zero",
    0x000006F7: "nca_s_fault_ndr",
    0x000006D8: "nca_s_fault_cant_perform",
    0x00000721: "nca_s_fault_sec_pkg_error",
    0xC0000022: "STATUS_ACCESS_DENIED",
}

_HDR = struct.Struct("<BBBB4sHHI")
_U16 = {True: struct.Struct("<H"), False: struct.Struct(">H")}
_U32 = {True: struct.Struct("<I"), False: struct.Struct(">I")}
_UUID = {True: struct.Struct("<IHH8s"), False: struct.Struct(">IHH8s")}
_VER = {True: struct.Struct("<HH"), False: struct.Struct(">HH")}


def uuid_text(data: bytes, pos: int, little: bool) -> str:
    """The canonical lower-case text of a DCE UUID stored at ``pos`` in NDR byte order."""
    a, b, c, rest = _UUID[little].unpack_from(data, pos)
    r = rest.hex()
    return f"{a:08x}-{b:04x}-{c:04x}-{r[:4]}-{r[4:]}"


def looks_like_dcerpc(data: bytes) -> bool:
    """Whether ``data`` starts with a plausible connection-oriented DCE/RPC header (detection)."""
    if len(data) < HEADER_LEN:
        return False
    vers, minor, ptype, _flags, drep, frag_len, _auth, _call = _HDR.unpack_from(data, 0)
    if vers != 5 or minor > 1 or ptype > 20 or drep[0] & 0xEF not in (0x00,):
        return False
    little = bool(drep[0] & 0x10)
    if not little:
        (frag_len,) = struct.unpack_from(">H", data, 8)
    return frag_len >= HEADER_LEN


class _Call:
    """A request in flight: its first fragment's facts and running fragment counts."""

    __slots__ = ("ts", "ctx_id", "opnum", "req_frags", "req_stub", "req_done", "resp_frags",
                 "resp_stub", "auth_type", "rpc_version")

    def __init__(self, ts: float, ctx_id: int, opnum: int, auth_type: int | None) -> None:
        self.ts = ts
        self.ctx_id = ctx_id
        self.opnum = opnum
        self.req_frags = 0
        self.req_stub = 0
        self.req_done = False
        self.resp_frags = 0
        self.resp_stub = 0
        self.auth_type = auth_type
        self.rpc_version = "5.0"


class _Bind:
    """A bind or alter_context waiting for its answer."""

    __slots__ = ("ts", "pkt_type", "ctx_ids", "uuids", "versions", "auth_type", "rpc_version")

    def __init__(self, ts: float, pkt_type: str, ctx_ids: tuple[int, ...], uuids: tuple[str, ...],
                 versions: tuple[str, ...], auth_type: int | None) -> None:
        self.ts = ts
        self.pkt_type = pkt_type
        self.ctx_ids = ctx_ids
        self.uuids = uuids
        self.versions = versions
        self.auth_type = auth_type
        self.rpc_version = "5.0"


class DceRpcConversation:
    """One RPC association: context map, calls in flight, and the byte stream of each side."""

    MAX_CALLS = 512

    def __init__(self, ctx: Any, fid: str | None = None, pipe_name: str | None = None,
                 ntlm: NtlmTracker | None = None, kerberos: GssKerberos | None = None) -> None:
        self.ctx = ctx
        # a conversation in an SMB pipe shares the SMB flow's trackers (the SMB parser ends them)
        self._owns_kerberos = kerberos is None
        self.kerberos = kerberos if kerberos is not None else GssKerberos(ctx)
        self.fid = fid
        self.pipe_name = pipe_name.lower() if pipe_name else None
        self.ntlm = ntlm if ntlm is not None else NtlmTracker(ctx, "dce_rpc")
        self.named_pipe: str | None = None
        self.contexts: dict[int, str] = {}
        self.last_uuid: str | None = None
        self.calls: dict[int, _Call] = {}
        self.binds: dict[int, _Bind] = {}
        self._buf = {True: bytearray(), False: bytearray()}
        self._lost = {True: False, False: False}
        self.pdus = 0
        self._confirmed = False
        self._version = "5.0"

    # -- byte stream --------------------------------------------------------------------

    def data(self, is_orig: bool, data: bytes, ts: float) -> None:
        """Bytes of one side, in order; complete PDUs are handled as they appear."""
        buf = self._buf[is_orig]
        buf += data
        if self._lost[is_orig]:
            self._resync(is_orig, buf)
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_LEN:
            little = bool(buf[pos + 4] & 0x10)
            frag_len = _U16[little].unpack_from(buf, pos + 8)[0]
            if buf[pos] != 5 or frag_len < HEADER_LEN:
                self.ctx.weird("dce_rpc_bad_frag_length" if buf[pos] == 5 else "dce_rpc_bad_version", ts)
                del buf[:pos]
                self._lost[is_orig] = True
                self._resync(is_orig, buf)
                pos, end = 0, len(buf)
                continue
            if end - pos < frag_len:
                break
            self.pdu(is_orig, bytes(buf[pos : pos + frag_len]), ts)
            pos += frag_len
        if pos:
            del buf[:pos]
        if len(buf) > MAX_BUFFER:
            self.ctx.weird("dce_rpc_buffer_overflow", ts)
            buf.clear()

    def gap(self, is_orig: bool) -> None:
        """Bytes of one side were lost: drop the partial PDU and look for the next header."""
        self._buf[is_orig].clear()
        self._lost[is_orig] = True

    def _resync(self, is_orig: bool, buf: bytearray) -> None:
        """Discard bytes up to something that looks like a PDU header."""
        n = len(buf)
        i = 0
        while i + HEADER_LEN <= n:
            if (buf[i] == 5 and buf[i + 1] <= 1 and buf[i + 2] in PTYPE_NAMES
                    and buf[i + 4] in (0x10, 0x00) and not buf[i + 5] and not buf[i + 6]
                    and not buf[i + 7]):
                little = bool(buf[i + 4] & 0x10)
                if _U16[little].unpack_from(buf, i + 8)[0] >= HEADER_LEN:
                    del buf[:i]
                    self._lost[is_orig] = False
                    return
            i += 1
        del buf[: max(0, n - HEADER_LEN + 1)]

    # -- PDUs ---------------------------------------------------------------------------

    def pdu(self, is_orig: bool, pdu: bytes, ts: float) -> None:
        """One whole PDU (header included); malformed ones are counted, never raised.

        The first PDU that parses confirms ``dce_rpc`` for the flow, also inside an SMB
        named pipe (Zeek lists a child analyzer's service in conn.log too).
        """
        self.pdus += 1
        try:
            self._pdu(is_orig, pdu, ts)
        except (struct.error, IndexError, ValueError):
            self.ctx.weird("dce_rpc_truncated_pdu", ts)
            return
        if not self._confirmed:
            self._confirmed = True
            self.ctx.confirm("dce_rpc")

    def _pdu(self, is_orig: bool, pdu: bytes, ts: float) -> None:
        vers, minor, ptype, flags, drep, _fl, auth_len, call_id = _HDR.unpack_from(pdu, 0)
        self._version = f"{vers}.{minor}"
        little = bool(drep[0] & 0x10)
        if not little:
            auth_len, call_id = struct.unpack_from(">HI", pdu, 10)
        body_end = len(pdu)
        auth_type = None
        if auth_len:
            auth_at = len(pdu) - auth_len - 8
            if auth_at < HEADER_LEN:
                self.ctx.weird("dce_rpc_bad_auth_length", ts)
            else:
                auth_type = pdu[auth_at]
                pad = pdu[auth_at + 2]
                body_end = max(HEADER_LEN, auth_at - pad)
                self._auth(auth_type, pdu[auth_at + 8 :], is_orig, ts)
        if ptype == REQUEST:
            self._request(pdu, flags, call_id, little, body_end, auth_type, ts)
        elif ptype == RESPONSE:
            self._response(pdu, flags, call_id, little, body_end, ts)
        elif ptype == FAULT:
            self._fault(pdu, call_id, little, ts)
        elif ptype in (BIND, ALTER_CONTEXT):
            self._bind(pdu, ptype, call_id, little, auth_type, ts)
        elif ptype in (BIND_ACK, ALTER_CONTEXT_RESP):
            self._bind_ack(pdu, ptype, call_id, little, ts)
        elif ptype == BIND_NAK:
            self._bind_nak(pdu, call_id, little, ts)

    def _auth(self, auth_type: int, blob: bytes, is_orig: bool, ts: float) -> None:
        """Route an auth verifier's token as Zeek does, by auth type."""
        if not blob:
            return
        if auth_type == AUTH_NTLMSSP:
            if blob[:8] == b"NTLMSSP\x00":
                self.ntlm.token(blob, ts)
        elif auth_type == AUTH_SPNEGO:
            spnego.handle_blob(self.ctx, self.ntlm, blob, is_orig, ts, kerberos=self.kerberos)
        elif auth_type == AUTH_KERBEROS:
            if not spnego.hand_to_kerberos(self.kerberos, blob, is_orig, ts):
                self.ctx.weird("kerberos_in_gssapi_not_analyzed", ts)
        elif auth_type == AUTH_SCHANNEL:
            self.ctx.weird("tls_dce_rpc_auth_type", ts, str(auth_type))
        elif auth_type == AUTH_NETLOGON:
            self.ctx.weird("netlogon_dce_rpc_auth_type", ts, str(auth_type))
        else:
            self.ctx.weird("unknown_dce_rpc_auth_type", ts, str(auth_type))

    def _bind(self, pdu: bytes, ptype: int, call_id: int, little: bool, auth_type: int | None,
              ts: float) -> None:
        n_ctx = pdu[24]
        pos = 28
        u16 = _U16[little]
        ctx_ids: list[int] = []
        uuids: list[str] = []
        versions: list[str] = []
        ver = _VER[little]
        for _ in range(n_ctx):
            ctx_id = u16.unpack_from(pdu, pos)[0]
            n_syn = pdu[pos + 2]
            uuid = uuid_text(pdu, pos + 4, little)
            major, minor = ver.unpack_from(pdu, pos + 20)
            ctx_ids.append(ctx_id)
            uuids.append(uuid)
            versions.append(f"{major}.{minor}")
            self.contexts[ctx_id] = uuid
            self.last_uuid = uuid
            pos += 24 + 20 * n_syn
        if len(self.binds) >= self.MAX_CALLS:
            self._flush_binds(ts)
        old = self.binds.pop(call_id, None)
        if old is not None:
            self._emit_bind(call_id, old, None, None, None, None, None)
        bind = self.binds[call_id] = _Bind(ts, PTYPE_NAMES[ptype], tuple(ctx_ids), tuple(uuids),
                                           tuple(versions), auth_type)
        bind.rpc_version = self._version

    def _bind_ack(self, pdu: bytes, ptype: int, call_id: int, little: bool, ts: float) -> None:
        u16 = _U16[little]
        sec_len = u16.unpack_from(pdu, 24)[0]
        sec_addr = pdu[26 : 26 + sec_len].rstrip(b"\x00").decode("latin-1") if sec_len else ""
        pos = 26 + sec_len
        pos += (-pos) % 4
        results: list[int] = []
        reasons: list[int] = []
        if pos < len(pdu):
            n_results = pdu[pos]
            pos += 4
            for _ in range(n_results):
                if pos + 4 > len(pdu):
                    break
                results.append(u16.unpack_from(pdu, pos)[0])
                reasons.append(u16.unpack_from(pdu, pos + 2)[0])
                pos += 24
        if ptype == BIND_ACK and sec_addr:
            self.named_pipe = sec_addr
        bind = self.binds.pop(call_id, None)
        if bind is None:
            return
        self._emit_bind(call_id, bind, PTYPE_NAMES[ptype], tuple(results), tuple(reasons),
                        sec_addr or None, None)

    def _bind_nak(self, pdu: bytes, call_id: int, little: bool, ts: float) -> None:
        reason = _U16[little].unpack_from(pdu, 16)[0] if len(pdu) >= 18 else None
        bind = self.binds.pop(call_id, None)
        if bind is not None:
            self._emit_bind(call_id, bind, "bind_nak", None, None, None, reason)

    def _emit_bind(self, call_id: int, bind: _Bind, ack_type: str | None,
                   results: tuple[int, ...] | None, reasons: tuple[int, ...] | None,
                   sec_addr: str | None, nak_reason: int | None) -> None:
        self.ctx.emit(DceRpcBind(
            ts=bind.ts, uid=self.ctx.uid, id=self.ctx.id, pkt_type=bind.pkt_type,
            call_id=call_id, ctx_ids=bind.ctx_ids, uuids=bind.uuids, versions=bind.versions,
            endpoints=tuple(endpoint_name(u) for u in bind.uuids), ack_type=ack_type,
            ack_results=results, ack_reasons=reasons, sec_addr=sec_addr, nak_reason=nak_reason,
            fid=self.fid, auth_type=bind.auth_type, rpc_version=bind.rpc_version,
        ))

    def _request(self, pdu: bytes, flags: int, call_id: int, little: bool, body_end: int,
                 auth_type: int | None, ts: float) -> None:
        u16 = _U16[little]
        stub_at = 24 + (16 if flags & PFC_OBJECT_UUID else 0)
        stub = max(0, body_end - stub_at)
        call = self.calls.get(call_id)
        if call is None or (flags & PFC_FIRST_FRAG and call.req_done):
            if call is not None:
                self._emit_call(call_id, self.calls.pop(call_id), None)
            if len(self.calls) >= self.MAX_CALLS:
                self.ctx.weird("dce_rpc_too_many_pending_calls", ts)
                self._flush_calls()
            ctx_id = u16.unpack_from(pdu, 20)[0]
            opnum = u16.unpack_from(pdu, 22)[0]
            call = self.calls[call_id] = _Call(ts, ctx_id, opnum, auth_type)
            call.rpc_version = self._version
        call.req_frags += 1
        call.req_stub += stub
        if flags & PFC_LAST_FRAG:
            call.req_done = True
            call.ts = ts  # Zeek stamps a call when its request is complete

    def _response(self, pdu: bytes, flags: int, call_id: int, little: bool, body_end: int,
                  ts: float) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return  # Zeek does not log a response whose request it did not see
        call.resp_frags += 1
        call.resp_stub += max(0, body_end - 24)
        if flags & PFC_LAST_FRAG:
            del self.calls[call_id]
            self._emit_call(call_id, call, ts)

    def _fault(self, pdu: bytes, call_id: int, little: bool, ts: float) -> None:
        status = _U32[little].unpack_from(pdu, 24)[0]
        call = self.calls.pop(call_id, None)
        if call is None:
            return
        call.resp_frags += 1
        self._emit_call(call_id, call, ts, FAULT_NAMES.get(status, f"0x{status:08x}"))

    def _uuid_for(self, ctx_id: int) -> str | None:
        uuid = self.contexts.get(ctx_id)
        if uuid is None and not self.contexts and self.pipe_name:
            uuid = PIPE_COMMON_UUID.get(self.pipe_name)
        return uuid

    def _emit_call(self, call_id: int, call: _Call, resp_ts: float | None,
                   fault: str | None = None) -> None:
        uuid = self._uuid_for(call.ctx_id)
        self.ctx.emit(DceRpc(
            ts=call.ts, uid=self.ctx.uid, id=self.ctx.id,
            rtt=None if resp_ts is None else max(0.0, resp_ts - call.ts),
            named_pipe=self.named_pipe,
            endpoint=endpoint_name(uuid) if uuid else None,
            operation=operation_name(uuid, call.opnum) if uuid else None,
            call_id=call_id, ctx_id=call.ctx_id, opnum=call.opnum, uuid=uuid, fid=self.fid,
            fault=fault, req_frags=call.req_frags, resp_frags=call.resp_frags or None,
            req_stub_len=call.req_stub, resp_stub_len=call.resp_stub if call.resp_frags else None,
            auth_type=call.auth_type, rpc_version=call.rpc_version,
        ))

    def _flush_calls(self) -> None:
        for call_id, call in list(self.calls.items()):
            self._emit_call(call_id, call, None)
        self.calls.clear()

    def _flush_binds(self, ts: float) -> None:
        for call_id, bind in list(self.binds.items()):
            self._emit_bind(call_id, bind, None, None, None, None, None)
        self.binds.clear()

    def end(self, ts: float) -> None:
        """Write calls and binds that never got an answer; the NTLM exchange too."""
        self._flush_binds(ts)
        self._flush_calls()
        self.ntlm.end(ts)
        if self._owns_kerberos:
            self.kerberos.end(ts)


@register("dce_rpc")
class DceRpcAnalyzer(Analyzer):
    """DCE/RPC straight over TCP (port 135, dynamic ports, or anything detection picks)."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.conv = DceRpcConversation(ctx)

    def data(self, is_orig: bool, data: bytes, ts: float) -> None:
        self.conv.data(is_orig, data, ts)

    def gap(self, is_orig: bool, length: int, ts: float) -> None:
        self.conv.gap(is_orig)

    def end(self, ts: float) -> None:
        self.conv.end(ts)

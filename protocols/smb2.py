"""SMB2/3 over NetBIOS session framing (TCP 445/139): commands, files, trees, auth, pipes.

One :class:`SmbAnalyzer` per TCP connection. It cuts the byte streams into NetBIOS session
messages, walks each message's SMB2 header chain (compound requests via NextCommand, with
related operations inheriting the previous file id), matches responses to requests by
message id (an async STATUS_PENDING interim keeps the request open), and emits:

* ``smb_cmd`` for every request with its final answer (per-command detail);
* ``smb_files`` for file actions (open, read, write, rename, delete, close) as Zeek does;
* ``smb_mapping`` for tree connects;
* ``ntlm`` through :mod:`protocols.spnego` for session setups;
* ``dce_rpc``/``dce_rpc_bind`` for named pipes (writes, reads and FSCTL_PIPE_TRANSCEIVE).

SMB3 encrypted (transform header ``\\xfdSMB``) and compressed (``\\xfcSMB``) messages are
counted as weirds and skipped; SMB1 is flagged, and its session setups still feed NTLM.
Per-message work uses ``struct`` only; impacket is not used.
"""

from __future__ import annotations

import struct
from typing import Any

from protocols import spnego
from protocols.analyzer import Analyzer, register
from protocols.dcerpc import DceRpcConversation, looks_like_dcerpc
from protocols.events.smb_cmd import SmbCmd
from protocols.events.smb_files import SmbFiles
from protocols.events.smb_mapping import SmbMapping
from protocols.kerberos import GssKerberos
from protocols.ntlm import AUTHENTICATE, TYPE_NAMES, NtlmMessage, NtlmTracker
from protocols.smb_consts import (
    CANCEL, CHANGE_NOTIFY, CLOSE, CREATE, CREATE_ACTIONS, CREATE_DISPOSITIONS, FILE_BASIC_INFORMATION,
    FILE_DELETE_ON_CLOSE, FILE_DIRECTORY_FILE, FILE_DISPOSITION_INFORMATION,
    FILE_DISPOSITION_INFORMATION_EX, FILE_RENAME_INFORMATION, FILE_RENAME_INFORMATION_EX, FLUSH,
    FSCTL_PIPE_TRANSCEIVE, INFO_FILE, IOCTL, LOCK, LOGOFF, NEGOTIATE, OPLOCK_BREAK, QUERY_DIRECTORY,
    QUERY_INFO, READ, SESSION_SETUP, SET_INFO, SHARE_TYPES, SMB1_COMMANDS, SMB1_SESSION_SETUP_ANDX,
    SMB2_COMMANDS, SMB2_DIALECTS, STATUS_BUFFER_OVERFLOW, STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_PENDING, STATUS_SUCCESS, TREE_CONNECT, TREE_DISCONNECT, WRITE, fid_text, filetime,
    status_name,
)

SMB2_MAGIC = b"\xfeSMB"
SMB1_MAGIC = b"\xffSMB"
TRANSFORM_MAGIC = b"\xfdSMB"
COMPRESSED_MAGIC = b"\xfcSMB"
HEADER_LEN = 64
MAX_MESSAGE = 16 * 1024 * 1024 + 1024  # SMB3 allows 8 MiB reads/writes; beyond is not SMB
NBSS_TYPES = frozenset((0x00, 0x81, 0x82, 0x83, 0x84, 0x85))

FLAG_RESPONSE, FLAG_ASYNC, FLAG_RELATED = 0x1, 0x2, 0x4
NO_FID = b"\xff" * 16
MAX_PENDING = 4096
MAX_FILES = 8192
MAX_RECENT = 4096

_HDR = struct.Struct("<4sxxxxIHxxIIQIIQ")  # magic, status, cmd, flags, next, mid, pid, tid, sid
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HH = struct.Struct("<HH")
_CREATE_REQ = struct.Struct("<IIIIIHH")  # access, attrs, share, disposition, options, name off/len
_CREATE_RESP = struct.Struct("<IQQQQQQ")  # action, 4 times, alloc, eof
_RW_REQ = struct.Struct("<IQ16s")  # length, offset, fid
_IOCTL_REQ = struct.Struct("<I16sII")  # ctl code, fid, input offset, input count
_IOCTL_RESP = struct.Struct("<I16sIIII")  # ctl code, fid, in off, in count, out off, out count
_SET_INFO_REQ = struct.Struct("<BBIHxxI16s")  # type, class, buf len, buf off, addl, fid
_QUERY_INFO_REQ = struct.Struct("<BBI")
_SMB1_HDR = struct.Struct("<4sBIBH12xHHHH")  # magic, cmd, status, flags, flags2, tid, pid, uid, mid


class _Tree:
    __slots__ = ("path", "share_type")

    def __init__(self, path: str | None, share_type: str | None) -> None:
        self.path = path
        self.share_type = share_type


class _File:
    """What is known about an open file id: the CREATE's answer, and later renames."""

    __slots__ = ("ts", "fid", "name", "opened_name", "path", "size", "times", "tree_id",
                 "share_type", "prev_name", "delete_on_close", "pipe")

    def __init__(self, ts: float, fid: str, name: str, path: str | None, size: int,
                 times: tuple[float | None, float | None, float | None, float | None] | None,
                 tree_id: int, share_type: str | None) -> None:
        self.ts = ts
        self.fid = fid
        self.name = name
        self.opened_name = name
        self.path = path
        self.size = size
        self.times = times
        self.tree_id = tree_id
        self.share_type = share_type
        self.prev_name: str | None = None
        self.delete_on_close = False
        self.pipe: DceRpcConversation | None = None


class _Req:
    """A request waiting for its final answer."""

    __slots__ = ("ts", "cmd", "mid", "sid", "tid", "fid", "compound", "related", "prev",
                 "is_async", "detail", "ntlm_msg", "path", "file")

    def __init__(self, ts: float, cmd: int, mid: int, sid: int, tid: int) -> None:
        self.ts = ts
        self.cmd = cmd
        self.mid = mid
        self.sid = sid
        self.tid = tid
        self.fid: bytes | None = None
        self.compound = False
        self.related = False
        self.prev: _Req | None = None
        self.is_async = False
        self.detail: dict[str, Any] = {}
        self.ntlm_msg: NtlmMessage | None = None
        self.path: str | None = None
        self.file: _File | None = None


def _utf16(data: bytes, off: int, length: int) -> str:
    return data[off : off + length].decode("utf-16-le", "replace")


def _times(raw: tuple[int, int, int, int]) -> tuple[float | None, ...] | None:
    """(modified, accessed, created, changed) as Zeek orders them, or None when unset."""
    created, accessed, written, changed = raw
    if written <= 0:
        return None  # Zeek ignores the zero times of pipes and IPC opens
    return (filetime(written), filetime(accessed), filetime(created), filetime(changed))


@register("smb")
class SmbAnalyzer(Analyzer):
    """SMB over TCP for one connection."""

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self._buf = {True: bytearray(), False: bytearray()}
        self._skip = {True: 0, False: 0}
        self._lost = {True: False, False: False}
        self.pending: dict[int, _Req] = {}
        self.pending1: dict[int, _Req] = {}  # SMB1, by (pid, mid)
        self.trees: dict[int, _Tree] = {}
        self.files: dict[bytes, _File] = {}
        self.users: dict[int, str] = {}
        self.recent: set[tuple] = set()
        self.ntlm = NtlmTracker(ctx, "smb")
        self.kerberos = GssKerberos(ctx)
        self.dialect: int | None = None
        self._confirmed = False
        self._smb1_flagged = False
        self._encrypted_flagged = False
        self.messages = 0

    # -- framing ------------------------------------------------------------------------

    def data(self, is_orig: bool, data: bytes, ts: float) -> None:
        skip = self._skip[is_orig]
        if skip:
            if len(data) <= skip:
                self._skip[is_orig] = skip - len(data)
                return
            data = data[skip:]
            self._skip[is_orig] = 0
        buf = self._buf[is_orig]
        buf += data
        if self._lost[is_orig] and not self._resync(is_orig, buf):
            return
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            ntype = buf[pos]
            length = (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
            if ntype not in NBSS_TYPES or length > MAX_MESSAGE:
                self.ctx.weird("smb_bad_netbios_frame" if ntype not in NBSS_TYPES
                               else "smb_message_too_large", ts)
                del buf[:pos + 1]
                self._lost[is_orig] = True
                if not self._resync(is_orig, buf):
                    return
                pos, end = 0, len(buf)
                continue
            if end - pos - 4 < length:
                break
            if ntype == 0x00 and length:
                self._nbss_message(is_orig, bytes(buf[pos + 4 : pos + 4 + length]), ts)
            pos += 4 + length
        if pos:
            del buf[:pos]

    def gap(self, is_orig: bool, length: int, ts: float) -> None:
        self._buf[is_orig].clear()
        self._skip[is_orig] = 0
        self._lost[is_orig] = True

    def _resync(self, is_orig: bool, buf: bytearray) -> bool:
        """After lost bytes: find the next NetBIOS header followed by an SMB magic."""
        for magic in (SMB2_MAGIC, TRANSFORM_MAGIC, SMB1_MAGIC):
            i = buf.find(magic, 4)
            while i >= 4:
                if buf[i - 4] == 0x00:
                    del buf[: i - 4]
                    self._lost[is_orig] = False
                    return True
                i = buf.find(magic, i + 1)
        if len(buf) > 8:
            del buf[: len(buf) - 8]
        return False

    def _nbss_message(self, is_orig: bool, msg: bytes, ts: float) -> None:
        magic = msg[:4]
        try:
            if magic == SMB2_MAGIC:
                self._smb2_chain(msg, ts)
            elif magic == TRANSFORM_MAGIC:
                self._transform(msg, ts)
            elif magic == SMB1_MAGIC:
                self._smb1(msg, ts)
            elif magic == COMPRESSED_MAGIC:
                self.ctx.weird("smb3_compressed_message", ts)
            else:
                self.ctx.weird("smb_unknown_protocol", ts)
                return
        except (struct.error, IndexError, ValueError, UnicodeDecodeError):
            self.ctx.weird("smb2_truncated_message", ts)
            return
        self.messages += 1
        if not self._confirmed:
            self._confirmed = True
            self.ctx.confirm("smb")

    def _transform(self, msg: bytes, ts: float) -> None:
        """Encrypted SMB3: flagged (once per connection as a weird), never parsed."""
        if not self._encrypted_flagged:
            self._encrypted_flagged = True
            sid = _U64.unpack_from(msg, 44)[0] if len(msg) >= 52 else 0
            self.ctx.weird("smb3_encrypted", ts, f"session 0x{sid:016x}")

    # -- SMB2 ---------------------------------------------------------------------------

    def _smb2_chain(self, msg: bytes, ts: float) -> None:
        """Walk the compound chain of one NetBIOS message."""
        off = 0
        prev: _Req | None = None
        total = len(msg)
        chained = False
        while True:
            if total - off < HEADER_LEN or msg[off : off + 4] != SMB2_MAGIC:
                self.ctx.weird("smb2_truncated_header", ts)
                return
            magic, status, cmd, flags, next_cmd, mid, pid, tid, sid = _HDR.unpack_from(msg, off)
            end = off + next_cmd if next_cmd else total
            if end > total or (next_cmd and next_cmd < HEADER_LEN):
                self.ctx.weird("smb2_bad_next_command", ts)
                return
            chained = chained or bool(next_cmd)
            if flags & FLAG_RESPONSE:
                self._response(msg, off, end, status, cmd, flags, mid, tid, sid, ts)
            else:
                prev = self._request(msg, off, end, cmd, flags, mid, tid, sid, ts, prev, chained)
            if not next_cmd:
                return
            off = end

    def _request(self, msg: bytes, off: int, end: int, cmd: int, flags: int, mid: int, tid: int,
                 sid: int, ts: float, prev: _Req | None, chained: bool) -> _Req | None:
        if cmd == CANCEL:
            return prev
        if flags & FLAG_ASYNC:
            tid = 0
        related = bool(flags & FLAG_RELATED) and prev is not None
        if related:
            if sid == 0xFFFFFFFFFFFFFFFF:
                sid = prev.sid
            if tid == 0xFFFFFFFF:
                tid = prev.tid
        req = _Req(ts, cmd, mid, sid, tid)
        req.compound = chained
        req.related = related
        req.prev = prev
        body = off + HEADER_LEN
        detail = req.detail
        if cmd == CREATE:
            access, _attrs, _share, disp, options, name_off, name_len = _CREATE_REQ.unpack_from(msg, body + 24)
            name = _utf16(msg, off + name_off, name_len) if name_len else ""
            detail["filename"] = name
            detail["disposition"] = CREATE_DISPOSITIONS[disp] if disp < 6 else str(disp)
            detail["create_options"] = options
            detail["desired_access"] = access
            detail["delete_on_close"] = bool(options & FILE_DELETE_ON_CLOSE)
            detail["directory"] = bool(options & FILE_DIRECTORY_FILE)
        elif cmd in (READ, WRITE):
            length, offset, fid = _RW_REQ.unpack_from(msg, body + 4)
            req.fid = fid
            detail["length"] = length
            detail["offset"] = offset
            if cmd == WRITE:
                data_off = _U16.unpack_from(msg, body + 2)[0]
                self._pipe_data(req, True, msg, off + data_off, length, ts)
        elif cmd == CLOSE:
            req.fid = msg[body + 8 : body + 24]
        elif cmd == IOCTL:
            ctl, fid, in_off, in_count = _IOCTL_REQ.unpack_from(msg, body + 4)
            req.fid = fid
            detail["ctl_code"] = ctl
            if ctl == FSCTL_PIPE_TRANSCEIVE and in_count:
                self._pipe_data(req, True, msg, off + in_off, in_count, ts)
        elif cmd == SET_INFO:
            itype, iclass, buf_len, buf_off, _addl, fid = _SET_INFO_REQ.unpack_from(msg, body + 2)
            req.fid = fid
            detail["info_type"] = itype
            detail["info_level"] = iclass
            if itype == INFO_FILE:
                at = off + buf_off
                if iclass in (FILE_RENAME_INFORMATION, FILE_RENAME_INFORMATION_EX):
                    if iclass == FILE_RENAME_INFORMATION:
                        detail["replace_if"] = bool(msg[at])
                    else:
                        detail["replace_if"] = bool(_U32.unpack_from(msg, at)[0] & 1)
                    name_len = _U32.unpack_from(msg, at + 16)[0]
                    detail["rename_to"] = _utf16(msg, at + 20, name_len)
                elif iclass == FILE_DISPOSITION_INFORMATION:
                    detail["delete_pending"] = bool(msg[at])
                elif iclass == FILE_DISPOSITION_INFORMATION_EX:
                    detail["delete_pending"] = bool(_U32.unpack_from(msg, at)[0] & 1)
        elif cmd == QUERY_INFO:
            itype, iclass, _out_len = _QUERY_INFO_REQ.unpack_from(msg, body + 2)
            req.fid = msg[body + 24 : body + 40]
            detail["info_type"] = itype
            detail["info_level"] = iclass
        elif cmd == QUERY_DIRECTORY:
            req.fid = msg[body + 8 : body + 24]
            name_off, name_len = _HH.unpack_from(msg, body + 24)
            detail["pattern"] = _utf16(msg, off + name_off, name_len) if name_len else ""
        elif cmd in (FLUSH, LOCK, CHANGE_NOTIFY, OPLOCK_BREAK):
            req.fid = msg[body + 8 : body + 24]
        elif cmd == TREE_CONNECT:
            path_off, path_len = _HH.unpack_from(msg, body + 4)
            req.path = _utf16(msg, off + path_off, path_len)
            detail["path"] = req.path
        elif cmd == SESSION_SETUP:
            blob_off, blob_len = _HH.unpack_from(msg, body + 12)
            self._security_blob(req, msg[off + blob_off : off + blob_off + blob_len], True, ts)
        elif cmd == NEGOTIATE:
            count = _U16.unpack_from(msg, body + 2)[0]
            detail["dialects"] = tuple(
                _U16.unpack_from(msg, body + 36 + 2 * i)[0] for i in range(count)
                if body + 38 + 2 * i <= end)
        if req.fid is not None and related and req.fid == NO_FID:
            req.fid = None  # resolved from the previous command's file once it is known
        elif req.fid == NO_FID:
            req.fid = None
            detail["no_fid"] = True
        if len(self.pending) >= MAX_PENDING:
            self.ctx.weird("smb2_too_many_pending_requests", ts)
            self._flush_pending(ts)
        old = self.pending.get(mid)
        if old is not None:
            self._finish(old, None, None, ts, None)
        self.pending[mid] = req
        return req

    def _security_blob(self, req: _Req, blob: bytes, is_orig: bool, ts: float,
                       sid: int | None = None) -> None:
        if not blob:
            return
        self.ntlm.last = None
        spnego.handle_blob(self.ctx, self.ntlm, blob, is_orig, ts, sid or None, self.kerberos)
        msg = self.ntlm.last
        if msg is not None and is_orig:
            req.ntlm_msg = msg

    def _resolve_fid(self, req: _Req) -> bytes | None:
        """The file id a command works on, following related compound operations."""
        if req.fid is not None:
            return req.fid
        if req.related:
            prev = req.prev
            while prev is not None:
                if prev.fid is not None:
                    return prev.fid
                if not prev.related:
                    break
                prev = prev.prev
        return None

    def _pipe_data(self, req: _Req, is_orig: bool, msg: bytes, at: int, length: int,
                   ts: float) -> None:
        fid = self._resolve_fid(req)
        if fid is None:
            return
        f = self.files.get(fid)
        if f is None or length <= 0:
            return
        data = msg[at : at + length]
        if f.pipe is None:
            # the tree connect was not seen (capture started mid-connection): a file that
            # carries DCE/RPC PDUs is a pipe, as Zeek's pipe heuristic decides
            if f.share_type is not None or not is_orig or not looks_like_dcerpc(data):
                return
            f.pipe = DceRpcConversation(self.ctx, fid=f.fid, pipe_name=f.opened_name, kerberos=self.kerberos)
        f.pipe.data(is_orig, data, ts)

    def _response(self, msg: bytes, off: int, end: int, status: int, cmd: int, flags: int,
                  mid: int, tid: int, sid: int, ts: float) -> None:
        req = self.pending.get(mid)
        if req is None and cmd == NEGOTIATE:
            # the answer to an SMB1 multi-protocol NEGOTIATE that offered SMB2
            old = next((k for k, r in self.pending1.items() if r.cmd == 0x72), None)
            req = _Req(self.pending1.pop(old).ts if old is not None else ts, NEGOTIATE, mid, 0, 0)
            self.pending[mid] = req
        if req is None:
            if mid != 0xFFFFFFFFFFFFFFFF:  # oplock/lease break notifications have no request
                self.ctx.weird("smb2_unmatched_response", ts)
            return
        if status == STATUS_PENDING and flags & FLAG_ASYNC:
            req.is_async = True
            return
        del self.pending[mid]
        if flags & FLAG_ASYNC:
            tid = req.tid
        body = off + HEADER_LEN
        ok = status == STATUS_SUCCESS
        detail = req.detail
        if cmd == CREATE and ok:
            self._create_response(req, msg, body, tid, ts)
        elif cmd == READ and (ok or status == STATUS_BUFFER_OVERFLOW):
            data_off = msg[body + 2]
            data_len = _U32.unpack_from(msg, body + 4)[0]
            detail["data_length"] = data_len
            self._pipe_data(req, False, msg, off + data_off, data_len, ts)
        elif cmd == WRITE and ok:
            detail["written"] = _U32.unpack_from(msg, body + 4)[0]
        elif cmd == IOCTL and (ok or status == STATUS_BUFFER_OVERFLOW) and end - body >= 40:
            ctl, _fid, _ioff, _icnt, out_off, out_count = _IOCTL_RESP.unpack_from(msg, body + 4)
            if ctl == FSCTL_PIPE_TRANSCEIVE and out_count:
                self._pipe_data(req, False, msg, off + out_off, out_count, ts)
        elif cmd == SESSION_SETUP:
            if end - body >= 8:
                blob_off, blob_len = _HH.unpack_from(msg, body + 4)
                if blob_len:
                    self._security_blob(req, msg[off + blob_off : off + blob_off + blob_len],
                                        False, ts, sid)
            if status != STATUS_MORE_PROCESSING_REQUIRED:
                auth = req.ntlm_msg
                if ok and auth is not None and auth.msg_type == AUTHENTICATE and auth.user:
                    self.users[sid] = f"{auth.domain}\\{auth.user}" if auth.domain else auth.user
                if self.ntlm.pending:
                    self.ntlm.verdict(ok, ts, status_name(status), sid)
        elif cmd == TREE_CONNECT:
            share = SHARE_TYPES.get(msg[body + 2]) if ok else None
            detail["share_type"] = share
            if ok:
                self.trees[tid] = _Tree(req.path, share)
            self.ctx.emit(SmbMapping(
                ts=req.ts, uid=self.ctx.uid, id=self.ctx.id, path=req.path, service=None,
                native_file_system=None, share_type=share, tree_id=tid if ok else None,
                session_id=sid, status=status_name(status)))
        elif cmd == NEGOTIATE and ok:
            self.dialect = _U16.unpack_from(msg, body + 4)[0]
            detail["dialect"] = self.dialect
        self._finish(req, status, ts, ts, cmd)
        if cmd == TREE_DISCONNECT and ok:
            self.trees.pop(req.tid, None)
        elif cmd == LOGOFF and ok:
            self.users.pop(req.sid, None)

    def _create_response(self, req: _Req, msg: bytes, body: int, tid: int, ts: float) -> None:
        action, created, accessed, written, changed, _alloc, eof = _CREATE_RESP.unpack_from(msg, body + 4)
        fid = msg[body + 64 : body + 80]
        req.fid = fid
        detail = req.detail
        detail["create_action"] = CREATE_ACTIONS[action] if action < 4 else str(action)
        detail["end_of_file"] = eof
        tree = self.trees.get(req.tid)
        share = tree.share_type if tree else None
        name = detail.get("filename", "")
        f = _File(req.ts, fid_text(fid), name, tree.path if tree else None, eof,
                  _times((created, accessed, written, changed)), req.tid, share)
        f.delete_on_close = bool(detail.get("delete_on_close"))
        if share == "PIPE":
            f.pipe = DceRpcConversation(self.ctx, fid=f.fid, pipe_name=name, kerberos=self.kerberos)
        if len(self.files) >= MAX_FILES:
            self.ctx.weird("smb2_too_many_open_files", ts)
            self._close_all(ts)
        old = self.files.get(fid)
        if old is not None and old.pipe is not None:
            old.pipe.end(ts)
        self.files[fid] = f
        req.file = f
        self._file_log(f, "OPEN", req, None)
        if f.delete_on_close:
            self._file_log(f, "DELETE", req, None)

    def _finish(self, req: _Req, status: int | None, resp_ts: float | None, ts: float,
                cmd: int | None) -> None:
        """The request is answered (or abandoned): file actions, then its smb_cmd event."""
        ok = status == STATUS_SUCCESS
        detail = req.detail
        fid = self._resolve_fid(req)
        f = req.file if req.file is not None else (self.files.get(fid) if fid is not None else None)
        code = req.cmd
        fname = f.opened_name if f is not None else None
        if f is not None and status is not None:
            if code == READ and (ok or status == STATUS_BUFFER_OVERFLOW):
                self._file_log(f, "READ", req, detail.get("data_length"))
            elif code == WRITE and ok:
                self._file_log(f, "WRITE", req, detail.get("written"))
            elif code == SET_INFO and ok and detail.get("info_type") == INFO_FILE:
                level = detail.get("info_level")
                if "rename_to" in detail:
                    f.prev_name = f.name
                    f.name = detail["rename_to"]
                    self._file_log(f, "RENAME", req, None)
                elif detail.get("delete_pending"):
                    self._file_log(f, "DELETE", req, None)
                elif level == FILE_BASIC_INFORMATION:
                    self._file_log(f, "SET_ATTRIBUTE", req, None)
            elif code == CLOSE and ok:
                tree = self.trees.get(req.tid)
                if tree is not None and tree.path:
                    f.path = tree.path
                self._file_log(f, "CLOSE", req, None)
                if f.pipe is not None:
                    f.pipe.end(ts)
                    f.pipe = None
                self.files.pop(fid, None)
        tree = self.trees.get(req.tid)
        ntlm_msg = req.ntlm_msg
        self.ctx.emit(SmbCmd(
            ts=req.ts, uid=self.ctx.uid, id=self.ctx.id,
            command=SMB2_COMMANDS[code] if code < len(SMB2_COMMANDS) else f"unknown-{code}",
            sub_command=None,
            argument=(SMB2_DIALECTS.get(detail["dialect"]) if code == NEGOTIATE
                      and detail.get("dialect") in detail.get("dialects", ()) else None),
            status=status_name(status) if status is not None else None,
            rtt=None if resp_ts is None else resp_ts - req.ts,
            version="SMB2", username=self.users.get(req.sid),
            tree=tree.path if tree else None, tree_service=tree.share_type if tree else None,
            message_id=req.mid, session_id=req.sid, tree_id=req.tid, status_code=status,
            is_async=req.is_async, compound=req.compound,
            dialects=detail.get("dialects"), dialect=detail.get("dialect"),
            ntlmssp_type=TYPE_NAMES.get(ntlm_msg.msg_type) if ntlm_msg else None,
            ntlm_user=ntlm_msg.user if ntlm_msg else None,
            ntlm_domain=ntlm_msg.domain if ntlm_msg else None,
            ntlm_host=ntlm_msg.workstation if ntlm_msg else None,
            path=detail.get("path"), share_type=detail.get("share_type"),
            fid=(f.fid if f is not None else (fid_text(fid) if fid is not None
                 else (fid_text(NO_FID) if detail.get("no_fid") else None))),
            filename=detail["filename"] if code == CREATE else fname,
            disposition=detail.get("disposition"), create_options=detail.get("create_options"),
            desired_access=detail.get("desired_access"),
            delete_on_close=detail.get("delete_on_close"), directory=detail.get("directory"),
            create_action=detail.get("create_action"), end_of_file=detail.get("end_of_file"),
            length=detail.get("length"), offset=detail.get("offset"),
            data_length=detail.get("data_length"), written=detail.get("written"),
            info_type=detail.get("info_type"), info_level=detail.get("info_level"),
            rename_to=detail.get("rename_to"), replace_if=detail.get("replace_if"),
            delete_pending=detail.get("delete_pending"), pattern=detail.get("pattern"),
            ctl_code=detail.get("ctl_code"),
        ))

    def _file_log(self, f: _File, action: str, req: _Req, data_len: int | None) -> None:
        """Write an smb_files row unless this connection already wrote the same one."""
        share = f.share_type
        prefix = "SMB::PIPE_" if share == "PIPE" else ("SMB::PRINT_" if share == "PRINT" else "SMB::FILE_")
        if share in ("PIPE", "PRINT") and action not in ("OPEN", "READ", "WRITE", "CLOSE"):
            prefix = "SMB::FILE_"
        full = prefix + action
        name = f.name if f.name else "<share_root>"
        times = f.times
        if times is not None:
            ident = (full, name, f.path, f.size, times[0], times[2], times[3])
            if ident in self.recent:
                return
            if len(self.recent) >= MAX_RECENT:
                self.recent.clear()
            self.recent.add(ident)
        self.ctx.emit(SmbFiles(
            ts=f.ts, uid=self.ctx.uid, id=self.ctx.id, fuid=None, action=full, path=f.path,
            name=name, size=f.size, prev_name=f.prev_name,
            times_modified=times[0] if times else None, times_accessed=times[1] if times else None,
            times_created=times[2] if times else None, times_changed=times[3] if times else None,
            fid=f.fid, tree_id=f.tree_id, session_id=req.sid, message_id=req.mid,
            data_len=data_len,
        ))

    # -- SMB1 ---------------------------------------------------------------------------

    def _smb1(self, msg: bytes, ts: float) -> None:
        """SMB1: flag it; follow session setups for NTLM; log each command pair."""
        if not self._smb1_flagged:
            self._smb1_flagged = True
            self.ctx.weird("smb1_protocol_used", ts)
        _m, cmd, status, flags, flags2, tid, pid, uid, mid = _SMB1_HDR.unpack_from(msg, 0)
        key = (pid << 16) | mid
        is_response = bool(flags & 0x80)
        if not is_response:
            req = _Req(ts, cmd, mid, uid, tid)
            # WordCount 12 is the extended-security form (some senders omit the flags2 bit)
            if cmd == SMB1_SESSION_SETUP_ANDX and msg[32] == 12:
                blob_len = _U16.unpack_from(msg, 33 + 14)[0]
                self._security_blob(req, msg[59 : 59 + blob_len], True, ts)
            if len(self.pending1) >= MAX_PENDING:
                self.pending1.clear()
            self.pending1[key] = req
            return
        req = self.pending1.pop(key, None)
        if req is None:
            req = _Req(ts, cmd, mid, uid, tid)
        if cmd == SMB1_SESSION_SETUP_ANDX and len(msg) > 32 and msg[32] == 4:
            blob_len = _U16.unpack_from(msg, 33 + 6)[0]
            self._security_blob(req, msg[43 : 43 + blob_len], False, ts, uid)
            if status != STATUS_MORE_PROCESSING_REQUIRED and self.ntlm.pending:
                self.ntlm.verdict(status == STATUS_SUCCESS, ts, status_name(status), uid)
        ntlm_msg = req.ntlm_msg
        self.ctx.emit(SmbCmd(
            ts=req.ts, uid=self.ctx.uid, id=self.ctx.id,
            command=SMB1_COMMANDS.get(cmd, f"unknown-0x{cmd:02x}"), sub_command=None,
            argument=None, status=status_name(status), rtt=ts - req.ts, version="SMB1",
            username=None, tree=None, tree_service=None, message_id=mid, session_id=uid,
            tree_id=tid, status_code=status,
            ntlmssp_type=TYPE_NAMES.get(ntlm_msg.msg_type) if ntlm_msg else None,
            ntlm_user=ntlm_msg.user if ntlm_msg else None,
            ntlm_domain=ntlm_msg.domain if ntlm_msg else None,
            ntlm_host=ntlm_msg.workstation if ntlm_msg else None,
        ))

    # -- end ----------------------------------------------------------------------------

    def _flush_pending(self, ts: float) -> None:
        for req in list(self.pending.values()):
            self._finish(req, None, None, ts, None)
        self.pending.clear()

    def _close_all(self, ts: float) -> None:
        for f in self.files.values():
            if f.pipe is not None:
                f.pipe.end(ts)
        self.files.clear()

    def end(self, ts: float) -> None:
        self._flush_pending(ts)
        self._close_all(ts)
        self.ntlm.end(ts)
        self.kerberos.end(ts)

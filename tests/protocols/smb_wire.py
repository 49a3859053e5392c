"""Builders of SMB2, DCE/RPC and NTLMSSP bytes for the parser tests, and a recording context."""

from __future__ import annotations

import collections
import struct
import uuid as uuidlib

from protocols.events.base import ConnId, as_json_object


class RecordingContext:
    """A FlowContext that keeps what the parser reports."""

    def __init__(self) -> None:
        self.uid = "Ctest"
        self.id = ConnId("10.0.0.2", 50000, "10.0.0.1", 445)
        self.proto = "tcp"
        self.events: list = []
        self.weirds: collections.Counter = collections.Counter()
        self.weird_addl: list = []
        self.services: list[str] = []
        self.violations: list[str] = []

    def emit(self, event) -> None:
        self.events.append(event)

    def weird(self, name: str, ts: float, addl: str | None = None) -> None:
        self.weirds[name] += 1
        self.weird_addl.append((name, addl))

    def confirm(self, service: str) -> None:
        self.services.append(service)

    def violation(self, reason: str, ts: float) -> None:
        self.violations.append(reason)

    def of(self, kind: str) -> list[dict]:
        return [as_json_object(e) for e in self.events if e.KIND == kind]


# -- NTLMSSP -------------------------------------------------------------------------------

def _u16(s: str) -> bytes:
    return s.encode("utf-16-le")


def ntlm_negotiate(flags: int = 0xE2088297) -> bytes:
    return b"NTLMSSP\x00" + struct.pack("<II", 1, flags) + b"\x00" * 16 + bytes([6, 1, 0xB1, 0x1D, 0, 0, 0, 15])


def av_pairs(pairs: list[tuple[int, str]], eol: bool = True) -> bytes:
    out = b"".join(struct.pack("<HH", i, len(_u16(v))) + _u16(v) for i, v in pairs)
    return out + (struct.pack("<HH", 0, 0) if eol else b"")


def ntlm_challenge(target: str = "ACME", info: bytes | None = None, flags: int = 0xE2898215) -> bytes:
    info = av_pairs([(2, "ACME"), (1, "FILESRV01"), (4, "acme.local"), (3, "filesrv01.acme.local"),
                     (5, "acme.local")]) if info is None else info
    t = _u16(target)
    head = 56
    return (b"NTLMSSP\x00" + struct.pack("<I", 2) + struct.pack("<HHI", len(t), len(t), head)
            + struct.pack("<I", flags) + b"\x11" * 8 + b"\x00" * 8
            + struct.pack("<HHI", len(info), len(info), head + len(t))
            + bytes([10, 0, 0x61, 0x4A, 0, 0, 0, 15]) + t + info)


def ntlm_auth(user: str = "alice", domain: str = "ACME", host: str = "DESKTOP-1",
              unicode: bool = True, swap_user_host: bool = False) -> bytes:
    enc = _u16 if unicode else (lambda s: s.encode("latin-1"))
    lm, nt = b"\x00" * 24, b"\x01" * 24
    d, u, h = enc(domain), enc(user), enc(host)
    head = 72
    offs = {}
    pos = head
    payload = b""
    for name, blob in (("lm", lm), ("nt", nt), ("d", d), ("u", u), ("h", h)):
        offs[name] = pos
        payload += blob
        pos += len(blob)
    if swap_user_host:  # a message whose user/host descriptors point at each other's string
        u, h = h, u
        offs["u"], offs["h"] = offs["h"], offs["u"]
    flags = 0xE2888215 if unicode else 0xE2888216
    return (b"NTLMSSP\x00" + struct.pack("<I", 3)
            + struct.pack("<HHI", len(lm), len(lm), offs["lm"])
            + struct.pack("<HHI", len(nt), len(nt), offs["nt"])
            + struct.pack("<HHI", len(d), len(d), offs["d"])
            + struct.pack("<HHI", len(u), len(u), offs["u"])
            + struct.pack("<HHI", len(h), len(h), offs["h"])
            + struct.pack("<HHI", 0, 0, pos) + struct.pack("<I", flags)
            + bytes([6, 1, 0xB1, 0x1D, 0, 0, 0, 15]) + payload)


# -- SPNEGO (DER) --------------------------------------------------------------------------

def der(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + value


SPNEGO_OID = der(0x06, bytes.fromhex("2b0601050502"))
NTLM_OID = der(0x06, bytes.fromhex("2b06010401823702020a"))
KRB5_OID = der(0x06, bytes.fromhex("2a864886f712010202"))


def spnego_init(token: bytes, mech: bytes = NTLM_OID) -> bytes:
    inner = der(0x30, der(0xA0, der(0x30, mech)) + der(0xA2, der(0x04, token)))
    return der(0x60, SPNEGO_OID + der(0xA0, inner))


def spnego_resp(token: bytes | None, state: int) -> bytes:
    fields = der(0xA0, der(0x0A, bytes([state])))
    if token is not None:
        fields += der(0xA1, NTLM_OID) + der(0xA2, der(0x04, token))
    return der(0xA1, der(0x30, fields))


# -- DCE/RPC -------------------------------------------------------------------------------

def uuid_le(text: str) -> bytes:
    return uuidlib.UUID(text).bytes_le


def rpc_pdu(ptype: int, call_id: int, body: bytes, flags: int = 3, auth: bytes = b"",
            auth_type: int = 10) -> bytes:
    trailer = b""
    if auth:
        pad = (-(16 + len(body))) % 4
        body += b"\x00" * pad
        trailer = struct.pack("<BBBBI", auth_type, 2, pad, 0, 0) + auth
    frag_len = 16 + len(body) + len(trailer)
    return struct.pack("<BBBB4sHHI", 5, 0, ptype, flags, b"\x10\x00\x00\x00", frag_len,
                       len(auth), call_id) + body + trailer


NDR = uuid_le("8a885d04-1ceb-11c9-9fe8-08002b104860") + struct.pack("<I", 2)


def rpc_bind(call_id: int, contexts: list[tuple[int, str, int, int]], ptype: int = 11,
             auth: bytes = b"") -> bytes:
    body = struct.pack("<HHIB3x", 4280, 4280, 0, len(contexts))
    for ctx_id, uuid, major, minor in contexts:
        body += struct.pack("<HBx", ctx_id, 1) + uuid_le(uuid) + struct.pack("<HH", major, minor) + NDR
    return rpc_pdu(ptype, call_id, body, auth=auth)


def rpc_bind_ack(call_id: int, sec_addr: str, results: list[int], ptype: int = 12,
                 auth: bytes = b"") -> bytes:
    sec = sec_addr.encode() + b"\x00" if sec_addr else b""
    body = struct.pack("<HHIH", 4280, 4280, 0x1234, len(sec)) + sec
    body += b"\x00" * ((-(16 + len(body))) % 4)
    body += struct.pack("<B3x", len(results))
    for r in results:
        body += struct.pack("<HH", r, 0) + (NDR if r == 0 else b"\x00" * 20)
    return rpc_pdu(ptype, call_id, body, auth=auth)


def rpc_request(call_id: int, ctx_id: int, opnum: int, stub: bytes, flags: int = 3) -> bytes:
    return rpc_pdu(0, call_id, struct.pack("<IHH", len(stub), ctx_id, opnum) + stub, flags)


def rpc_response(call_id: int, ctx_id: int, stub: bytes, flags: int = 3) -> bytes:
    return rpc_pdu(2, call_id, struct.pack("<IHBx", len(stub), ctx_id, 0) + stub, flags)


def rpc_fault(call_id: int, status: int) -> bytes:
    return rpc_pdu(3, call_id, struct.pack("<IHBxI4x", 0, 0, 0, status))


# -- SMB2 ----------------------------------------------------------------------------------

def smb2(cmd: int, body: bytes, mid: int, *, response: bool = False, status: int = 0,
         tid: int = 0, sid: int = 0, flags: int = 0, async_id: int | None = None,
         next_cmd: int = 0) -> bytes:
    f = flags | (1 if response else 0) | (2 if async_id is not None else 0)
    tail = struct.pack("<Q", async_id) if async_id is not None else struct.pack("<II", 0xFEFF, tid)
    hdr = (b"\xfeSMB" + struct.pack("<HHIHHII", 64, 1, status, cmd, 1, f, next_cmd)
           + struct.pack("<Q", mid) + tail + struct.pack("<Q", sid) + b"\x00" * 16)
    return hdr + body


def nbss(*messages: bytes) -> bytes:
    """One NetBIOS session message; several SMB2 messages become a compound chain."""
    out = b""
    for i, m in enumerate(messages):
        if i < len(messages) - 1:
            m = m + b"\x00" * ((-len(m)) % 8)
            m = m[:20] + struct.pack("<I", len(m)) + m[24:]
        out += m
    return struct.pack(">I", len(out)) + out


def fid(n: int) -> bytes:
    return struct.pack("<QQ", n, 0x1000 + n)


ALL_FF = b"\xff" * 16


def negotiate_req(mid: int = 0) -> bytes:
    body = struct.pack("<HHHHI16sIHH", 36, 3, 1, 0, 0x7F, b"\x22" * 16, 0, 0, 0)
    return smb2(0, body + struct.pack("<HHH", 0x0202, 0x0300, 0x0311), mid)


def negotiate_resp(mid: int = 0, dialect: int = 0x0311) -> bytes:
    body = struct.pack("<HHHH16sIIIIQQHHI", 65, 1, dialect, 0, b"\x33" * 16, 0x2F, 1 << 20,
                       1 << 20, 1 << 20, 0, 0, 128, 0, 0)
    return smb2(0, body, mid, response=True)


def session_setup_req(mid: int, blob: bytes, sid: int = 0) -> bytes:
    body = struct.pack("<HBBIIHHQ", 25, 0, 1, 1, 0, 64 + 24, len(blob), 0) + blob
    return smb2(1, body, mid, sid=sid)


def session_setup_resp(mid: int, blob: bytes, status: int, sid: int) -> bytes:
    body = struct.pack("<HHHH", 9, 0, 64 + 8, len(blob)) + blob
    return smb2(1, body, mid, response=True, status=status, sid=sid)


def tree_connect_req(mid: int, path: str, sid: int) -> bytes:
    p = path.encode("utf-16-le")
    return smb2(3, struct.pack("<HHHH", 9, 0, 64 + 8, len(p)) + p, mid, sid=sid)


def tree_connect_resp(mid: int, tid: int, share_type: int, sid: int, status: int = 0) -> bytes:
    body = struct.pack("<HBBIII", 16, share_type, 0, 0, 0, 0x1F01FF) if not status else struct.pack("<HBBI", 9, 0, 0, 0)
    return smb2(3, body, mid, response=True, tid=tid, sid=sid, status=status)


def create_req(mid: int, name: str, tid: int, sid: int, disposition: int = 1, options: int = 0,
               access: int = 0x0012019F, flags: int = 0) -> bytes:
    n = name.encode("utf-16-le")
    body = struct.pack("<HBBIQQIIIIIHHII", 57, 0, 0, 2, 0, 0, access, 0x80, 7, disposition,
                       options, 64 + 56, len(n), 0, 0) + (n or b"\x00")
    return smb2(5, body, mid, tid=tid, sid=sid, flags=flags)


def create_resp(mid: int, file_id: bytes, tid: int, sid: int, action: int = 1, eof: int = 0,
                mtime: int = 133_000_000_000_000_000, status: int = 0) -> bytes:
    if status:
        return smb2(5, struct.pack("<HBBI", 9, 0, 0, 0), mid, response=True, tid=tid, sid=sid, status=status)
    body = struct.pack("<HBBIQQQQQQII16sII", 89, 0, 0, action, mtime, mtime, mtime, mtime,
                       4096, eof, 0x20, 0, file_id, 0, 0)
    return smb2(5, body, mid, response=True, tid=tid, sid=sid)


def close_req(mid: int, file_id: bytes, tid: int, sid: int, flags: int = 0) -> bytes:
    return smb2(6, struct.pack("<HHI16s", 24, 0, 0, file_id), mid, tid=tid, sid=sid, flags=flags)


def close_resp(mid: int, tid: int, sid: int) -> bytes:
    return smb2(6, struct.pack("<HHIQQQQQQI", 60, 0, 0, 0, 0, 0, 0, 0, 0, 0), mid, response=True, tid=tid, sid=sid)


def write_req(mid: int, file_id: bytes, data: bytes, tid: int, sid: int, offset: int = 0) -> bytes:
    body = struct.pack("<HHIQ16sIIHHI", 49, 64 + 48, len(data), offset, file_id, 0, 0, 0, 0, 0) + data
    return smb2(9, body, mid, tid=tid, sid=sid)


def write_resp(mid: int, count: int, tid: int, sid: int, status: int = 0,
               async_id: int | None = None) -> bytes:
    return smb2(9, struct.pack("<HHIIHH", 17, 0, count, 0, 0, 0), mid, response=True, tid=tid,
                sid=sid, status=status, async_id=async_id)


def read_req(mid: int, file_id: bytes, length: int, tid: int, sid: int) -> bytes:
    body = struct.pack("<HBBIQ16sIIIHH", 49, 0, 0, length, 0, file_id, 1, 0, 0, 0, 0) + b"\x00"
    return smb2(8, body, mid, tid=tid, sid=sid)


def read_resp(mid: int, data: bytes, tid: int, sid: int, status: int = 0) -> bytes:
    body = struct.pack("<HBBIII", 17, 64 + 16, 0, len(data), 0, 0) + data
    return smb2(8, body, mid, response=True, tid=tid, sid=sid, status=status)


def ioctl_req(mid: int, file_id: bytes, ctl: int, data: bytes, tid: int, sid: int) -> bytes:
    body = struct.pack("<HHI16sIIIIIIII", 57, 0, ctl, file_id, 64 + 56, len(data), 0, 0, 0, 4280, 1, 0) + data
    return smb2(11, body, mid, tid=tid, sid=sid)


def ioctl_resp(mid: int, file_id: bytes, ctl: int, data: bytes, tid: int, sid: int) -> bytes:
    body = struct.pack("<HHI16sIIIIII", 49, 0, ctl, file_id, 64 + 48, 0, 64 + 48, len(data), 0, 0) + data
    return smb2(11, body, mid, response=True, tid=tid, sid=sid)


def set_info_req(mid: int, file_id: bytes, level: int, buf: bytes, tid: int, sid: int,
                 flags: int = 0) -> bytes:
    body = struct.pack("<HBBIHHI16s", 33, 1, level, len(buf), 64 + 32, 0, 0, file_id) + buf
    return smb2(17, body, mid, tid=tid, sid=sid, flags=flags)


def set_info_resp(mid: int, tid: int, sid: int, status: int = 0, async_id: int | None = None) -> bytes:
    return smb2(17, struct.pack("<H", 2), mid, response=True, tid=tid, sid=sid, status=status,
                async_id=async_id)


def rename_info(new_name: str, replace: bool = False) -> bytes:
    n = new_name.encode("utf-16-le")
    return struct.pack("<B7xQI", int(replace), 0, len(n)) + n


def query_info_req(mid: int, file_id: bytes, tid: int, sid: int, flags: int = 0) -> bytes:
    body = struct.pack("<HBBIHHIII16s", 41, 1, 18, 4096, 0, 0, 0, 0, 0, file_id)
    return smb2(16, body, mid, tid=tid, sid=sid, flags=flags)


def query_info_resp(mid: int, tid: int, sid: int) -> bytes:
    return smb2(16, struct.pack("<HHI", 9, 64 + 8, 8) + b"\x00" * 8, mid, response=True, tid=tid, sid=sid)


def pending_resp(mid: int, async_id: int, cmd: int, tid: int = 0, sid: int = 0) -> bytes:
    return smb2(cmd, struct.pack("<HBBI", 9, 0, 0, 0) + b"\x00", mid, response=True,
                status=0x103, async_id=async_id, sid=sid)

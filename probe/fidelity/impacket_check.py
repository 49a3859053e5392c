"""Our decoders against impacket's structures, on the messages real captures carry.

:func:`collect` replays captures through the engine and records, as the parsers meet
them, every NTLMSSP token, Kerberos message, DCE/RPC bind and SMB2 session setup, with
what our decoder made of it. The ``check_*`` functions decode the same bytes with
impacket (``impacket.ntlm``, ``impacket.krb5.asn1`` with pyasn1, ``impacket.dcerpc.v5.rpcrt``,
``impacket.smb3structs``) and report, per message type, how many agree field by field.
:func:`parse_cost` measures both sides on the same messages (docs/inspection.md quotes it).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import attrs

from probe.fidelity.report import Differences, KindReport

@attrs.define
class Messages:
    """Messages met while dissecting, each with our decoder's result."""

    ntlm: list[tuple[bytes, Any]] = attrs.field(factory=list)  # (token, NtlmMessage)
    kerberos: list[tuple[bytes, Any]] = attrs.field(factory=list)  # (message, decoded)
    binds: list[tuple[bytes, Any]] = attrs.field(factory=list)  # (PDU, _Bind)
    session_setups: list[tuple[bytes, bytes]] = attrs.field(factory=list)  # (SMB2 message, blob we took)


@contextlib.contextmanager
def _spy(owner: Any, name: str, record: Callable[[tuple, Any], None]) -> Iterator[None]:
    """Wrap ``owner.name`` so that each call's arguments and result are recorded; the real code runs."""
    original = getattr(owner, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        record(args, result)
        return result

    setattr(owner, name, spy)
    try:
        yield
    finally:
        setattr(owner, name, original)


def collect(paths: Iterable[str | Path]) -> Messages:
    """Dissect ``paths`` with every parser and keep the messages listed in :class:`Messages`.

    Checksums are not checked (some corpus traces were captured with checksum offload).
    """
    from probe.replay import dissect_file
    from protocols import dcerpc, kerberos, ntlm, smb2
    from protocols.dissect import DissectSettings

    found = Messages()
    blobs: list[bytes] = []

    def on_bind(args: tuple, _result: Any) -> None:
        conv, pdu, _ptype, call_id = args[0], args[1], args[2], args[3]
        found.binds.append((bytes(pdu), conv.binds[call_id]))

    def on_chain(args: tuple, _result: Any) -> None:
        msg = bytes(args[1])
        if len(msg) >= 64 and msg[:4] == b"\xfeSMB" and int.from_bytes(msg[12:14], "little") == 1:
            found.session_setups.append((msg, blobs[-1] if blobs else b""))
        blobs.clear()

    with contextlib.ExitStack() as stack:
        stack.enter_context(_spy(ntlm, "parse_ntlmssp", lambda a, r: found.ntlm.append((bytes(a[0]), r))))
        stack.enter_context(_spy(kerberos, "decode_message", lambda a, r: found.kerberos.append((bytes(a[0]), r))))
        stack.enter_context(_spy(dcerpc.DceRpcConversation, "_bind", on_bind))
        stack.enter_context(_spy(smb2.SmbAnalyzer, "_security_blob", lambda a, r: blobs.append(bytes(a[2]))))
        stack.enter_context(_spy(smb2.SmbAnalyzer, "_smb2_chain", on_chain))
        for path in paths:
            dissect_file(path, DissectSettings(verify_ip_checksum=False))  # decoding is the point here
    return found


# -- NTLMSSP -----------------------------------------------------------------------------------


def _ntlm_text(raw: bytes, unicode: bool) -> str | None:
    if not raw:
        return None
    return raw.decode("utf-16-le", "replace") if unicode else raw.decode("latin-1")


def _ntlm_version(raw: bytes) -> str | None:
    if len(raw) < 8:
        return None
    return f"{raw[0]}.{raw[1]}.{int.from_bytes(raw[2:4], 'little')}.{raw[7]}"


def ntlm_differences(token: bytes, ours: Any) -> list[str]:
    """What impacket reads differently from our NtlmMessage for one token."""
    from impacket import ntlm as impacket_ntlm

    misses = Differences("impacket")
    msg_type = int.from_bytes(token[8:12], "little")
    misses.differ("message type", msg_type, ours.msg_type)
    if msg_type == 3:
        auth = impacket_ntlm.NTLMAuthChallengeResponse()
        auth.fromString(token)
        unicode = bool(auth["flags"] & 1)
        misses.differ("flags", auth["flags"], ours.flags)
        misses.differ("user", _ntlm_text(auth["user_name"], unicode), ours.user)
        misses.differ("domain", _ntlm_text(auth["domain_name"], unicode), ours.domain)
        misses.differ("workstation", _ntlm_text(auth["host_name"], unicode), ours.workstation)
        misses.differ("version", _ntlm_version(auth["Version"]) if auth["flags"] & 0x02000000 else None, ours.version)
    elif msg_type == 2:
        challenge = impacket_ntlm.NTLMAuthChallenge()
        challenge.fromString(token)
        unicode = bool(challenge["flags"] & 1)
        misses.differ("flags", challenge["flags"], ours.flags)
        misses.differ("target name", _ntlm_text(challenge["domain_name"], unicode), ours.target_name)
        pairs = impacket_ntlm.AV_PAIRS(challenge["TargetInfoFields"])
        for av, field in ((impacket_ntlm.NTLMSSP_AV_HOSTNAME, "nb_computer_name"),
                          (impacket_ntlm.NTLMSSP_AV_DOMAINNAME, "nb_domain_name"),
                          (impacket_ntlm.NTLMSSP_AV_DNS_HOSTNAME, "dns_computer_name"),
                          (impacket_ntlm.NTLMSSP_AV_DNS_DOMAINNAME, "dns_domain_name"),
                          (impacket_ntlm.NTLMSSP_AV_DNS_TREENAME, "dns_tree_name")):
            value = pairs[av]
            misses.differ(field, value[1].decode("utf-16-le", "replace") if value else None, getattr(ours, field))
        misses.differ("version", _ntlm_version(challenge["Version"]) if challenge["flags"] & 0x02000000 else None,
                      ours.version)
    elif msg_type == 1:
        negotiate = impacket_ntlm.NTLMAuthNegotiate()
        negotiate.fromString(token)
        misses.differ("flags", negotiate["flags"], ours.flags)
    return misses


# -- Kerberos ----------------------------------------------------------------------------------

_KRB_SPECS = {10: "AS_REQ", 11: "AS_REP", 12: "TGS_REQ", 13: "TGS_REP", 14: "AP_REQ", 30: "KRB_ERROR"}


def _impacket_krb(message: bytes) -> Any:
    from impacket.krb5 import asn1
    from pyasn1.codec.der import decoder

    spec = getattr(asn1, _KRB_SPECS[message[0] & 0x1F])()
    return decoder.decode(message, asn1Spec=spec)[0]


def _name(principal: Any) -> str | None:
    if principal is None or not principal.isValue:
        return None
    return "/".join(str(part) for part in principal["name-string"])


def _opt(record: Any, field: str) -> Any:
    value = record[field]
    return value if value.isValue else None


def kerberos_differences(message: bytes, ours: Any) -> list[str]:
    """What impacket reads differently from our decoded Kerberos message."""
    misses = Differences("impacket")
    tag = message[0] & 0x1F
    if tag not in _KRB_SPECS:
        return misses
    theirs = _impacket_krb(message)
    if tag in (10, 12):
        body = theirs["req-body"]
        misses.differ("realm", str(body["realm"]), ours.realm)
        misses.differ("cname", _name(_opt(body, "cname")), ours.client)
        misses.differ("sname", _name(_opt(body, "sname")), ours.service)
        misses.differ("etypes", tuple(int(e) for e in body["etype"]), ours.etypes)
        padata = _opt(theirs, "padata")
        misses.differ("padata types", tuple(int(p["padata-type"]) for p in padata) if padata is not None else (),
                      ours.padata_types)
    elif tag in (11, 13):
        misses.differ("crealm", str(theirs["crealm"]), ours.client_realm)
        misses.differ("cname", _name(theirs["cname"]), ours.client)
        ticket = theirs["ticket"]
        misses.differ("ticket sname", _name(ticket["sname"]), ours.service)
        misses.differ("ticket etype", int(ticket["enc-part"]["etype"]), ours.cipher)
    elif tag == 14:
        ticket = theirs["ticket"]
        misses.differ("ticket realm", str(ticket["realm"]), ours.realm)
        misses.differ("ticket sname", _name(ticket["sname"]), ours.service)
        misses.differ("ticket etype", int(ticket["enc-part"]["etype"]), ours.cipher)
    else:
        misses.differ("error code", int(theirs["error-code"]), ours.error_code)
        text = _opt(theirs, "e-text")
        misses.differ("e-text", str(text) if text is not None else None, ours.error_text)
        misses.differ("sname", _name(_opt(theirs, "sname")), ours.service)
    return misses


# -- DCE/RPC bind and SMB2 session setup -------------------------------------------------------


def bind_differences(pdu: bytes, ours: Any) -> list[str]:
    """impacket's MSRPCBind context items against the contexts our parser kept."""
    from impacket.dcerpc.v5 import rpcrt
    from impacket.uuid import bin_to_uuidtup

    misses = Differences("impacket")
    header = rpcrt.MSRPCHeader(pdu)
    bind = rpcrt.MSRPCBind(header["pduData"])
    items = bind["ctx_items"]
    ctx_ids, uuids, versions = [], [], []
    for i in range(bind["ctx_num"]):
        item = rpcrt.CtxItem(items[i * 44 : (i + 1) * 44])
        uuid, version = bin_to_uuidtup(item["AbstractSyntax"])
        ctx_ids.append(item["ContextID"])
        uuids.append(uuid.lower())
        versions.append(version)
    misses.differ("call_id", header["call_id"], int.from_bytes(pdu[12:16], "little"))
    misses.differ("ctx_ids", tuple(ctx_ids), ours.ctx_ids)
    misses.differ("uuids", tuple(uuids), ours.uuids)
    misses.differ("versions", tuple(versions), ours.versions)
    return misses


def session_setup_differences(message: bytes, blob: bytes) -> list[str]:
    """impacket's SMB2 SESSION_SETUP security buffer against the blob our parser took."""
    from impacket import smb3structs

    misses = Differences("impacket")
    packet = smb3structs.SMB2Packet(message)
    response = bool(packet["Flags"] & smb3structs.SMB2_FLAGS_SERVER_TO_REDIR)
    cls = smb3structs.SMB2SessionSetup_Response if response else smb3structs.SMB2SessionSetup
    setup = cls(packet["Data"])
    misses.differ("command", smb3structs.SMB2_SESSION_SETUP, packet["Command"])
    misses.differ("security blob", bytes(setup["Buffer"]), blob)
    return misses


def check(messages: Messages, capture: str = "*") -> list[KindReport]:
    """One row per message type: how many of our decodes agree with impacket's."""
    rows = []
    for kind, items, compare in (
        ("ntlmssp", messages.ntlm, ntlm_differences),
        ("kerberos", [(m, d) for m, d in messages.kerberos if d is not None], kerberos_differences),
        ("dce_rpc bind", messages.binds, bind_differences),
        ("smb2 session setup", messages.session_setups, session_setup_differences),
    ):
        report = KindReport(capture, kind, "impacket", expected=len(items), found=len(items))
        for i, (raw, ours) in enumerate(items):
            report.outcome(f"{kind} #{i + 1} ({len(raw)} bytes)", compare(raw, ours))
        rows.append(report)
    return rows


# -- cost --------------------------------------------------------------------------------------


class _QuietContext:
    """A FlowContext that drops what a parser reports (only the decoding is measured)."""

    uid = "Cbench"
    proto = "tcp"

    def __init__(self) -> None:
        from protocols.events.base import ConnId

        self.id = ConnId("10.0.0.2", 50000, "10.0.0.1", 445)

    def emit(self, event: Any) -> None:
        pass

    def weird(self, name: str, ts: float, addl: str | None = None) -> None:
        pass

    def confirm(self, service: str) -> None:
        pass

    def violation(self, reason: str, ts: float) -> None:
        pass


def _micros(fn: Callable[[bytes], Any], samples: list[bytes], repeat: int, rounds: int) -> float:
    """Best-of-``rounds`` microseconds per call of ``fn`` over ``samples``, each ``repeat`` times."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeat):
            for sample in samples:
                fn(sample)
        best = min(best, time.perf_counter() - start)
    return best / (repeat * len(samples)) * 1e6


def parse_cost(messages: Messages, repeat: int = 200, rounds: int = 3) -> list[tuple[str, int, float, float]]:
    """(message type, samples, our microseconds, impacket's microseconds) per message.

    Ours is the decoder the parsers call (for the bind and the session setup, the whole
    handling of the PDU or message: header, contexts, SPNEGO and NTLMSSP); impacket's is
    the structure parse alone (for the session setup, the SMB2 structures only).
    """
    from impacket import ntlm as impacket_ntlm
    from impacket import smb3structs
    from impacket.dcerpc.v5 import rpcrt
    from impacket.uuid import bin_to_uuidtup

    from protocols.dcerpc import DceRpcConversation
    from protocols.kerberos_messages import decode_message
    from protocols.ntlm import parse_ntlmssp
    from protocols.smb2 import SmbAnalyzer

    def impacket_auth(token: bytes) -> Any:
        return impacket_ntlm.NTLMAuthChallengeResponse().fromString(token)

    def impacket_bind(pdu: bytes) -> Any:
        bind = rpcrt.MSRPCBind(rpcrt.MSRPCHeader(pdu)["pduData"])
        items = bind["ctx_items"]
        return [bin_to_uuidtup(rpcrt.CtxItem(items[i * 44 : (i + 1) * 44])["AbstractSyntax"])
                for i in range(bind["ctx_num"])]

    conversation = DceRpcConversation(_QuietContext())

    def our_bind(pdu: bytes) -> None:
        conversation.pdu(True, pdu, 1.0)
        conversation.binds.clear()

    analyzer = SmbAnalyzer(_QuietContext())

    def our_session_setup(message: bytes) -> None:
        analyzer._smb2_chain(message, 1.0)
        analyzer.pending.clear()

    def impacket_session_setup(message: bytes) -> Any:
        packet = smb3structs.SMB2Packet(message)
        if packet["Flags"] & smb3structs.SMB2_FLAGS_SERVER_TO_REDIR:
            return smb3structs.SMB2SessionSetup_Response(packet["Data"])
        return smb3structs.SMB2SessionSetup(packet["Data"])

    auths = [t for t, m in messages.ntlm if m is not None and m.msg_type == 3]
    as_reqs = [m for m, d in messages.kerberos if m[0] & 0x1F == 10]
    ap_reqs = [m for m, d in messages.kerberos if m[0] & 0x1F == 14]
    binds = [pdu for pdu, _ in messages.binds]
    setups = [m for m, _ in messages.session_setups if not m[16] & 1]  # requests: NTLMSSP/SPNEGO from the client
    rows = []
    for label, samples, ours, theirs in (
        ("NTLMSSP AUTHENTICATE", auths, parse_ntlmssp, impacket_auth),
        ("Kerberos AS-REQ", as_reqs, decode_message, _impacket_krb),
        ("Kerberos AP-REQ", ap_reqs, decode_message, _impacket_krb),
        ("DCE/RPC bind", binds, our_bind, impacket_bind),
        ("SMB2 SESSION_SETUP request", setups, our_session_setup, impacket_session_setup),
    ):
        if samples:
            rows.append((label, len(samples), _micros(ours, samples, repeat, rounds),
                         _micros(theirs, samples, max(1, repeat // 10), rounds)))
    return rows

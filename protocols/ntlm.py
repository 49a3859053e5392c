"""NTLMSSP messages (NEGOTIATE, CHALLENGE, AUTHENTICATE) and the ``ntlm`` event they make.

:func:`parse_ntlmssp` decodes one raw token (``NTLMSSP\\0`` ...). :class:`NtlmTracker`
follows the exchange on one flow and emits one :class:`~protocols.events.ntlm.Ntlm` event
per exchange, once the carrier (SMB session setup, SPNEGO negResult) gives its verdict or the
flow ends. Any carrier can drive it: SMB, DCE/RPC auth verifiers, and HTTP's
``Authorization: NTLM``/``Negotiate`` headers (call :meth:`NtlmTracker.token` with the
base64-decoded blob; SPNEGO-wrapped blobs go through :func:`protocols.spnego.handle_blob`).
"""

from __future__ import annotations

import struct
from typing import Any

import attrs

from protocols.events.ntlm import Ntlm

SIGNATURE = b"NTLMSSP\x00"
NEGOTIATE, CHALLENGE, AUTHENTICATE = 1, 2, 3
TYPE_NAMES = {NEGOTIATE: "NEGOTIATE", CHALLENGE: "CHALLENGE", AUTHENTICATE: "AUTH"}

FLAG_UNICODE = 0x00000001
FLAG_VERSION = 0x02000000

# AV pair ids (MS-NLMP 2.2.2.1)
AV_EOL, AV_NB_COMPUTER, AV_NB_DOMAIN, AV_DNS_COMPUTER, AV_DNS_DOMAIN, AV_DNS_TREE = 0, 1, 2, 3, 4, 5

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_FIELD = struct.Struct("<HHI")  # length, max length, offset
_VERSION = struct.Struct("<BBH3xB")


class NtlmError(ValueError):
    """A token that is not a well-formed NTLMSSP message; ``weird`` is the name to count."""

    def __init__(self, weird: str, detail: str = "") -> None:
        super().__init__(detail or weird)
        self.weird = weird


@attrs.frozen(slots=True)
class NtlmMessage:
    """The fields of one NTLMSSP message that the ``ntlm`` log needs (None when absent)."""

    msg_type: int
    flags: int
    domain: str | None = None
    user: str | None = None
    workstation: str | None = None
    target_name: str | None = None
    nb_computer_name: str | None = None
    nb_domain_name: str | None = None
    dns_computer_name: str | None = None
    dns_domain_name: str | None = None
    dns_tree_name: str | None = None
    version: str | None = None
    #: the weird name when the AV pairs were malformed (the rest of the message was kept)
    av_error: str | None = None


def _field(token: bytes, at: int, unicode: bool) -> str | None:
    """The string that the (length, max, offset) descriptor at ``at`` points to."""
    length, _maxlen, offset = _FIELD.unpack_from(token, at)
    if length == 0:
        return None
    if offset + length > len(token):
        raise NtlmError("ntlm_string_out_of_bounds", f"field at {at} points past the token")
    raw = token[offset : offset + length]
    return raw.decode("utf-16-le", "replace") if unicode else raw.decode("latin-1")


def _version(token: bytes, at: int, flags: int) -> str | None:
    if not flags & FLAG_VERSION or len(token) < at + 8:
        return None
    major, minor, build, revision = _VERSION.unpack_from(token, at)
    return f"{major}.{minor}.{build}.{revision}"


def parse_av_pairs(data: bytes) -> dict[int, str]:
    """AV pairs (id -> UTF-16 value) up to MsvAvEOL; raise NtlmError if they overrun."""
    out: dict[int, str] = {}
    pos = 0
    end = len(data)
    while True:
        if pos + 4 > end:
            raise NtlmError("ntlm_av_pair_loop_underflow", "AV pairs end without MsvAvEOL")
        av_id, av_len = struct.unpack_from("<HH", data, pos)
        pos += 4
        if av_id == AV_EOL:
            return out
        if pos + av_len > end:
            raise NtlmError("ntlm_av_pair_loop_underflow", "AV pair longer than the target info")
        if av_id <= AV_DNS_TREE or av_id == 9:
            out[av_id] = data[pos : pos + av_len].decode("utf-16-le", "replace")
        pos += av_len


def parse_ntlmssp(token: bytes) -> NtlmMessage:
    """Decode one NTLMSSP token; raise :class:`NtlmError` when it is not one or is cut short."""
    if len(token) < 12 or token[:8] != SIGNATURE:
        raise NtlmError("ntlm_bad_signature", "not an NTLMSSP token")
    (msg_type,) = _U32.unpack_from(token, 8)
    try:
        if msg_type == NEGOTIATE:
            (flags,) = _U32.unpack_from(token, 12)
            domain = workstation = None
            if len(token) >= 32:
                # NEGOTIATE strings are OEM unless the client says otherwise (they rarely exist)
                domain = _field(token, 16, False)
                workstation = _field(token, 24, False)
            return NtlmMessage(NEGOTIATE, flags, domain=domain, workstation=workstation,
                               version=_version(token, 32, flags))
        if msg_type == CHALLENGE:
            (flags,) = _U32.unpack_from(token, 20)
            unicode = bool(flags & FLAG_UNICODE)
            target = _field(token, 12, unicode)
            avs: dict[int, str] = {}
            av_error = None
            if len(token) >= 48:
                length, _maxlen, offset = _FIELD.unpack_from(token, 40)
                if length:
                    if offset + length > len(token):
                        av_error = "ntlm_av_pair_loop_underflow"
                    else:
                        try:
                            avs = parse_av_pairs(token[offset : offset + length])
                        except NtlmError as exc:
                            av_error = exc.weird
            return NtlmMessage(
                CHALLENGE, flags, target_name=target,
                nb_computer_name=avs.get(AV_NB_COMPUTER), nb_domain_name=avs.get(AV_NB_DOMAIN),
                dns_computer_name=avs.get(AV_DNS_COMPUTER), dns_domain_name=avs.get(AV_DNS_DOMAIN),
                dns_tree_name=avs.get(AV_DNS_TREE), version=_version(token, 48, flags),
                av_error=av_error,
            )
        if msg_type == AUTHENTICATE:
            (flags,) = _U32.unpack_from(token, 60)
            unicode = bool(flags & FLAG_UNICODE)
            return NtlmMessage(
                AUTHENTICATE, flags,
                domain=_field(token, 28, unicode), user=_field(token, 36, unicode),
                workstation=_field(token, 44, unicode), version=_version(token, 64, flags),
            )
    except struct.error as exc:
        raise NtlmError("ntlm_truncated", str(exc)) from exc
    raise NtlmError("ntlm_unknown_message_type", f"NTLMSSP message type {msg_type}")


class NtlmTracker:
    """Follows NTLM exchanges on one flow and emits one ``ntlm`` event per exchange."""

    __slots__ = ("ctx", "transport", "last", "_ts", "_neg", "_chal", "_auth", "_session_id")

    def __init__(self, ctx: Any, transport: str) -> None:
        self.ctx = ctx
        self.transport = transport
        #: the most recent message decoded, for carriers that log per-message detail
        self.last: NtlmMessage | None = None
        self._reset()

    def _reset(self) -> None:
        self._ts: float | None = None
        self._neg: NtlmMessage | None = None
        self._chal: NtlmMessage | None = None
        self._auth: NtlmMessage | None = None
        self._session_id: int | None = None

    @property
    def pending(self) -> bool:
        """True while an exchange has been seen and not yet written."""
        return self._ts is not None

    @property
    def has_authenticate(self) -> bool:
        return self._auth is not None

    def token(self, token: bytes, ts: float, session_id: int | None = None) -> NtlmMessage | None:
        """Feed one raw NTLMSSP token (either direction); bad tokens are counted, not raised."""
        try:
            msg = parse_ntlmssp(token)
        except NtlmError as exc:
            self.ctx.weird(exc.weird, ts)
            return None
        self.message(msg, ts, session_id)
        return msg

    def message(self, msg: NtlmMessage, ts: float, session_id: int | None = None) -> None:
        """Add an already decoded message to the exchange, starting a new one when it repeats."""
        self.last = msg
        if msg.av_error:
            self.ctx.weird(msg.av_error, ts)
        if msg.msg_type == NEGOTIATE and self.pending:
            self.flush(ts)
        elif msg.msg_type == CHALLENGE and (self._chal is not None or self._auth is not None):
            self.flush(ts)
        elif msg.msg_type == AUTHENTICATE and self._auth is not None:
            self.flush(ts)
        if self._ts is None:
            self._ts = ts
        if session_id:
            self._session_id = session_id
        if msg.msg_type == NEGOTIATE:
            self._neg = msg
        elif msg.msg_type == CHALLENGE:
            self._chal = msg
        else:
            self._auth = msg

    def verdict(self, success: bool, ts: float, status: str | None = None,
                session_id: int | None = None) -> None:
        """The carrier's final answer (accepted or rejected) ends the exchange."""
        if not self.pending:
            return
        if session_id:
            self._session_id = session_id
        self.flush(ts, success, status)

    def flush(self, ts: float, success: bool | None = None, status: str | None = None) -> None:
        """Write the pending exchange, if any, and start afresh."""
        if self._ts is None:
            return
        chal, auth, neg = self._chal, self._auth, self._neg
        ctx = self.ctx
        event = Ntlm(
            ts=self._ts,
            uid=ctx.uid,
            id=ctx.id,
            username=auth.user if auth else None,
            hostname=auth.workstation if auth else None,
            domainname=auth.domain if auth else None,
            server_nb_computer_name=chal.nb_computer_name if chal else None,
            server_dns_computer_name=chal.dns_computer_name if chal else None,
            server_tree_name=chal.dns_tree_name if chal else None,
            success=success,
            transport=self.transport,
            target_name=chal.target_name if chal else None,
            client_version=(auth.version if auth and auth.version else (neg.version if neg else None)),
            server_version=chal.version if chal else None,
            status=status,
            session_id=self._session_id,
        )
        self._reset()
        ctx.emit(event)

    def end(self, ts: float) -> None:
        """The flow is over: write what is pending without a verdict."""
        self.flush(ts)

"""Uplink protocol v1: the frames probe and Core exchange, and their validated codec.

Every frame is one binary WebSocket message holding a msgpack map whose ``t`` names the
frame. The WebSocket subprotocol ``probe.v1`` versions the whole exchange. Decoding checks
every field's presence and type and raises :class:`FrameError` with a protocol error code,
so that both ends can answer a bad frame with an ``error`` frame and a counter instead of
crashing. docs/protocol.md is the specification.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
import msgpack

SUBPROTOCOL = "probe.v1"
HELLO_CONTEXT = b"probe.v1 hello\x00"
#: largest frame either side accepts (a batch of events must fit)
MAX_FRAME = 16 << 20


class ErrorCode:
    """Protocol error codes (docs/protocol.md lists each with its meaning)."""

    BAD_FRAME = "bad_frame"  # not msgpack / not a map / missing or mistyped field
    UNKNOWN_FRAME = "unknown_frame"  # a frame type this side does not know
    UNEXPECTED_FRAME = "unexpected_frame"  # a valid frame at the wrong moment
    AUTH_FAILED = "auth_failed"  # hello proof or identity refused (an identity failure)
    UNKNOWN_PROBE = "unknown_probe"  # the Core has no key or certificate for this probe id
    BAD_EVENT = "bad_event"  # an event record that does not decode or belongs to another probe
    BAD_SIGNATURE = "bad_signature"  # an event whose signature does not verify
    OVER_CREDIT = "over_credit"  # more events in flight than the Core granted
    STORE_FAILED = "store_failed"  # the Core could not commit (transient on its side)
    SHUTTING_DOWN = "shutting_down"  # the Core is stopping
    # certificate refusals (protocols/identity.py names the same reasons)
    BAD_CERTIFICATE = "bad_certificate"  # no certificate, or one that does not parse
    UNKNOWN_CA = "unknown_ca"  # not issued by the CA the Core trusts
    CERT_EXPIRED = "cert_expired"
    CERT_NOT_YET_VALID = "cert_not_yet_valid"
    CERT_REVOKED = "cert_revoked"  # listed in the Core's revocation list
    PROBE_ID_MISMATCH = "probe_id_mismatch"  # the certificate is for another probe id
    KEY_MISMATCH = "key_mismatch"  # the certificate does not hold the hello's key
    WRONG_PURPOSE = "wrong_purpose"  # not a probe certificate (CA, Core, non-Ed25519)
    REPLAYED_SEQUENCE = "replayed_sequence"  # an event whose (boot, seq) does not fit that boot's range


#: error codes after which the probe must halt transmission (identity failures)
IDENTITY_CODES = frozenset(
    {
        ErrorCode.AUTH_FAILED,
        ErrorCode.UNKNOWN_PROBE,
        ErrorCode.BAD_CERTIFICATE,
        ErrorCode.UNKNOWN_CA,
        ErrorCode.CERT_EXPIRED,
        ErrorCode.CERT_NOT_YET_VALID,
        ErrorCode.CERT_REVOKED,
        ErrorCode.PROBE_ID_MISMATCH,
        ErrorCode.KEY_MISMATCH,
        ErrorCode.WRONG_PURPOSE,
    }
)


class FrameError(ValueError):
    """A frame that cannot be accepted; ``code`` is one of :class:`ErrorCode`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- probe -> Core -------------------------------------------------------------------


@attrs.frozen(slots=True)
class Hello:
    """Identity, boot and spool range, with proof of key possession over the challenge."""

    probe_id: str
    boot_id: str
    public_key: bytes  # raw Ed25519 verify key (32 bytes)
    proof: bytes  # signature over hello_proof_message(...)
    first_seq: int  # oldest sequence still held by the probe (0: none)
    last_seq: int  # newest sequence assigned so far (0: none)
    certificate: bytes | None = None  # PEM/DER certificate when the Core uses a CA
    boot_seq: int = 0  # first sequence number this boot may assign (0: not said)


@attrs.frozen(slots=True)
class Events:
    """A batch of signed event records (signature + canonical bytes), in sequence order."""

    records: tuple[bytes, ...]


@attrs.frozen(slots=True)
class DropReport:
    """Sequences that will never be sent: ``ranges`` of (first, last, reason)."""

    ranges: tuple[tuple[int, int, str], ...]


# --- Core -> probe -------------------------------------------------------------------


@attrs.frozen(slots=True)
class Challenge:
    """First frame of the Core: a fresh nonce the probe must sign in its hello."""

    nonce: bytes
    core_id: str


@attrs.frozen(slots=True)
class Welcome:
    """Authenticated: resume after ``resume`` (highest contiguous seq stored); ``credit`` events may be in flight.

    ``reused_through`` (0: none) says the probe's sequence space went back (spool wiped or
    restored while the key was kept): the Core already holds numbers up to it from an
    earlier life, so the probe's own events numbered that low were never stored.
    """

    resume: int
    credit: int
    reused_through: int = 0


@attrs.frozen(slots=True)
class Ack:
    """Everything up to ``seq`` is stored or explained; ``credit`` events may be in flight.

    ``rejected`` lists (seq, code) of events refused (e.g. a bad signature) in this range.
    """

    seq: int
    credit: int
    rejected: tuple[tuple[int, str], ...] = ()


@attrs.frozen(slots=True)
class Backpressure:
    """The Core is overloaded (``on``) or recovered; ``rate`` is a suggested events/s."""

    on: bool
    rate: float | None = None


# --- both ways -----------------------------------------------------------------------


@attrs.frozen(slots=True)
class Error:
    """A refused frame or a fatal condition; ``fatal`` closes the connection after it."""

    code: str
    message: str
    fatal: bool = False


Frame = Hello | Events | DropReport | Challenge | Welcome | Ack | Backpressure | Error

_TYPES: dict[type, str] = {
    Hello: "hello",
    Events: "events",
    DropReport: "drops",
    Challenge: "challenge",
    Welcome: "welcome",
    Ack: "ack",
    Backpressure: "backpressure",
    Error: "error",
}


def hello_proof_message(nonce: bytes, probe_id: str, boot_id: str, public_key: bytes) -> bytes:
    """What the probe signs to prove it holds the key: bound to this Core's nonce."""
    return b"".join(
        (HELLO_CONTEXT, nonce, b"\x00", probe_id.encode(), b"\x00", boot_id.encode(), b"\x00", public_key)
    )


def encode(frame: Frame) -> bytes:
    """The bytes of one WebSocket message carrying ``frame``."""
    body: dict[str, Any] = {"t": _TYPES[type(frame)]}
    for field in attrs.fields(type(frame)):
        value = getattr(frame, field.name)
        body[field.name] = [list(v) if isinstance(v, tuple) else v for v in value] if isinstance(value, tuple) else value
    return msgpack.packb(body, use_bin_type=True)


def _need(obj: dict, key: str, kinds: type | tuple[type, ...], optional: bool = False) -> Any:
    if key not in obj:
        if optional:
            return None
        raise FrameError(ErrorCode.BAD_FRAME, f"{obj.get('t')} frame lacks {key!r}")
    value = obj[key]
    if value is None and optional:
        return None
    if not isinstance(value, kinds) or (isinstance(value, bool) and kinds is not bool):
        raise FrameError(ErrorCode.BAD_FRAME, f"{obj.get('t')} frame field {key!r} has the wrong type")
    return value


def _seq(obj: dict, key: str) -> int:
    value = _need(obj, key, int)
    if value < 0 or value >= 1 << 63:
        raise FrameError(ErrorCode.BAD_FRAME, f"{obj.get('t')} frame field {key!r} out of range")
    return value


def _hello(o: dict) -> Hello:
    key = _need(o, "public_key", bytes)
    if len(key) != 32:
        raise FrameError(ErrorCode.BAD_FRAME, "hello public_key must be 32 bytes")
    boot_seq = _seq(o, "boot_seq") if o.get("boot_seq") is not None else 0
    return Hello(
        _need(o, "probe_id", str),
        _need(o, "boot_id", str),
        key,
        _need(o, "proof", bytes),
        _seq(o, "first_seq"),
        _seq(o, "last_seq"),
        _need(o, "certificate", bytes, optional=True),
        boot_seq,
    )


def _events(o: dict) -> Events:
    records = _need(o, "records", list)
    if not all(isinstance(r, bytes) for r in records):
        raise FrameError(ErrorCode.BAD_FRAME, "events records must be binary")
    return Events(tuple(records))


def _drops(o: dict) -> DropReport:
    ranges = []
    for item in _need(o, "ranges", list):
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in item[:2])
            or not isinstance(item[2], str)
            or item[0] > item[1]
        ):
            raise FrameError(ErrorCode.BAD_FRAME, "drops ranges must be [first, last, reason] with first <= last")
        ranges.append((item[0], item[1], item[2]))
    return DropReport(tuple(ranges))


def _challenge(o: dict) -> Challenge:
    nonce = _need(o, "nonce", bytes)
    if len(nonce) < 16:
        raise FrameError(ErrorCode.BAD_FRAME, "challenge nonce too short")
    return Challenge(nonce, _need(o, "core_id", str))


def _welcome(o: dict) -> Welcome:
    reused = _seq(o, "reused_through") if o.get("reused_through") is not None else 0
    return Welcome(_seq(o, "resume"), _seq(o, "credit"), reused)


def _ack(o: dict) -> Ack:
    rejected = []
    for item in _need(o, "rejected", list, optional=True) or ():
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], int) or not isinstance(item[1], str):
            raise FrameError(ErrorCode.BAD_FRAME, "ack rejected entries must be [seq, code]")
        rejected.append((item[0], item[1]))
    return Ack(_seq(o, "seq"), _seq(o, "credit"), tuple(rejected))


def _backpressure(o: dict) -> Backpressure:
    rate = _need(o, "rate", (int, float), optional=True)
    return Backpressure(_need(o, "on", bool), None if rate is None else float(rate))


def _error(o: dict) -> Error:
    fatal = _need(o, "fatal", bool, optional=True)
    return Error(_need(o, "code", str), _need(o, "message", str), bool(fatal))


_DECODERS: dict[str, Callable[[dict], Frame]] = {
    "hello": _hello,
    "events": _events,
    "drops": _drops,
    "challenge": _challenge,
    "welcome": _welcome,
    "ack": _ack,
    "backpressure": _backpressure,
    "error": _error,
}


def decode(data: bytes | str) -> Frame:
    """Parse and validate one message; raise :class:`FrameError` with a code if it is bad."""
    if isinstance(data, str):
        raise FrameError(ErrorCode.BAD_FRAME, "text messages are not part of the protocol")
    if len(data) > MAX_FRAME:
        raise FrameError(ErrorCode.BAD_FRAME, f"frame of {len(data)} bytes exceeds {MAX_FRAME}")
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise FrameError(ErrorCode.BAD_FRAME, f"not a msgpack message: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise FrameError(ErrorCode.BAD_FRAME, "a frame is a map with a string 't'")
    decoder = _DECODERS.get(obj["t"])
    if decoder is None:
        raise FrameError(ErrorCode.UNKNOWN_FRAME, f"unknown frame type {obj['t'][:40]!r}")
    return decoder(obj)

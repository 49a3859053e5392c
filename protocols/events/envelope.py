"""The signed envelope around an event body: probe id, boot id, sequence, time, kind.

Canonical bytes = msgpack array ``[1, probe_id, boot_id, seq, ts, kind, body]`` where
``body`` is the already canonical body map. The signature (Ed25519, 64 bytes) covers
exactly these bytes; a signed record is ``signature + canonical``. The probe builds the
prefix once per boot so that sequencing an event costs one small ``packb`` and a concat.
"""

from __future__ import annotations

import struct
from typing import Any

import attrs
import msgpack

VERSION = 1
SIGNATURE_SIZE = 64
_ARRAY7 = b"\x97"


@attrs.frozen(slots=True)
class EnvelopeHeader:
    """The per-boot constant part of every envelope, encoded once."""

    probe_id: str
    boot_id: str
    prefix: bytes = attrs.field(init=False)

    @prefix.default
    def _prefix(self) -> bytes:
        return (
            _ARRAY7
            + msgpack.packb(VERSION)
            + msgpack.packb(self.probe_id)
            + msgpack.packb(self.boot_id)
        )


_pack = msgpack.packb
_DOUBLE = struct.Struct(">d").pack
#: encoded kind names (a few dozen at most); msgpack packs a str the same way every time
_KIND_BYTES: dict[str, bytes] = {}


def _kind_bytes(kind: str) -> bytes:
    encoded = _KIND_BYTES.get(kind)
    if encoded is None:
        encoded = _pack(kind)
        if len(_KIND_BYTES) < 1024:
            _KIND_BYTES[kind] = encoded
    return encoded


def canonical_bytes(header: EnvelopeHeader, seq: int, ts: float, kind: str, body: bytes) -> bytes:
    """The bytes that are signed, sent and stored for one event.

    Byte for byte what ``msgpack.packb`` gives for each element (a float is always the
    9-byte ``0xcb`` double), built with one join: the seq is the only per-event packb.
    """
    return b"".join((header.prefix, _pack(seq), b"\xcb", _DOUBLE(ts), _kind_bytes(kind), body))


@attrs.frozen(slots=True)
class EventRecord:
    """A decoded event: envelope fields and the body as a dict."""

    probe_id: str
    boot_id: str
    seq: int
    ts: float
    kind: str
    body: dict[str, Any]

    def as_json_object(self) -> dict[str, Any]:
        """One flat object, envelope first, then the body's Zeek fields."""
        out: dict[str, Any] = {
            "probe_id": self.probe_id,
            "boot_id": self.boot_id,
            "seq": self.seq,
            "ts": self.ts,
            "kind": self.kind,
        }
        out.update(self.body)
        return out


class MalformedEvent(ValueError):
    """Canonical bytes that do not decode to a version-1 envelope."""


def decode_canonical(data: bytes) -> EventRecord:
    """Decode canonical bytes, checking shape and types; raise :class:`MalformedEvent`."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise MalformedEvent(f"not msgpack: {exc}") from exc
    if not isinstance(obj, list) or len(obj) != 7:
        raise MalformedEvent("envelope is not a 7-element array")
    version, probe_id, boot_id, seq, ts, kind, body = obj
    if version != VERSION:
        raise MalformedEvent(f"unknown envelope version {version!r}")
    if not (isinstance(probe_id, str) and isinstance(boot_id, str) and isinstance(kind, str)):
        raise MalformedEvent("probe_id, boot_id and kind must be strings")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise MalformedEvent("seq must be a non-negative integer")
    if not isinstance(ts, float):
        raise MalformedEvent("ts must be a float")
    if not isinstance(body, dict):
        raise MalformedEvent("body must be a map")
    return EventRecord(probe_id, boot_id, seq, ts, kind, body)


def split_signed(record: bytes) -> tuple[bytes, bytes]:
    """(signature, canonical) of a signed record."""
    if len(record) <= SIGNATURE_SIZE:
        raise MalformedEvent("signed record too short")
    return record[:SIGNATURE_SIZE], record[SIGNATURE_SIZE:]

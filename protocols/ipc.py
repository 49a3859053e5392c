"""Framing between a dissection process and the delivery process: length-prefixed msgpack.

Each message is a 4-byte big-endian length and a msgpack map with a string ``t``. The
reader is sans-I/O: feed it bytes as they come off the pipe, take whole messages out.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

_LEN = struct.Struct(">I")
MAX_MESSAGE = 64 << 20


class IpcError(ValueError):
    """A malformed message on the pipe: the other process is broken."""


def encode_message(message: dict[str, Any]) -> bytes:
    body = msgpack.packb(message, use_bin_type=True)
    return _LEN.pack(len(body)) + body


class MessageReader:
    """Reassembles length-prefixed messages from arbitrary chunks."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out = []
        offset = 0
        buf = self._buf
        while len(buf) - offset >= 4:
            (length,) = _LEN.unpack_from(buf, offset)
            if length > MAX_MESSAGE:
                raise IpcError(f"message of {length} bytes exceeds {MAX_MESSAGE}")
            if len(buf) - offset - 4 < length:
                break
            try:
                message = msgpack.unpackb(bytes(buf[offset + 4 : offset + 4 + length]), raw=False)
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
                raise IpcError(f"undecodable message: {exc}") from None
            if not isinstance(message, dict) or not isinstance(message.get("t"), str):
                raise IpcError("a message is a map with a string 't'")
            out.append(message)
            offset += 4 + length
        del buf[:offset]
        return out

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

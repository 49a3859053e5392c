"""Bytes from the wire as event strings, the way Zeek's logs write them."""

from __future__ import annotations

#: bytes written as they are; every other byte becomes ``\xHH``
_PRINTABLE = bytes(range(0x20, 0x7F))


def printable(raw: bytes) -> str:
    """Printable ASCII as is, every other byte as ``\\xHH`` (lower-case hex, as Zeek)."""
    if not raw.translate(None, _PRINTABLE):
        return raw.decode("ascii")
    return "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in raw)

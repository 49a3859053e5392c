"""ClientHello and ServerHello bodies decoded into frozen values.

Each parser takes the handshake message body (after the 4-byte handshake header) and
raises ``ValueError``, ``IndexError`` or ``struct.error`` on a malformed body; the caller
(the TLS analyzer) catches exactly those and counts the message as malformed.
Only what the ``ssl`` event and the fingerprints need is kept.
"""

from __future__ import annotations

import struct

import attrs

_U16 = struct.Struct("!H")
_EXT_HEAD = struct.Struct("!HH")

EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_SESSION_TICKET = 35
EXT_PRE_SHARED_KEY = 41
EXT_SUPPORTED_VERSIONS = 43
EXT_KEY_SHARE = 51
EXT_ECH = 0xFE0D

#: ServerHello.random of a HelloRetryRequest (RFC 8446, 4.1.3)
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


@attrs.frozen(slots=True)
class TlsClientHello:
    """The fields of a ClientHello the probe reports or fingerprints (values in wire order)."""

    version: int
    session_id: bytes
    ciphers: tuple[int, ...]
    extensions: tuple[int, ...]
    server_names: tuple[str, ...] = ()
    groups: tuple[int, ...] = ()
    point_formats: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()
    alpn: tuple[str, ...] = ()
    alpn_first: bytes = b""  # the first ALPN name as sent (JA4 reads its raw bytes)
    supported_versions: tuple[int, ...] = ()
    ticket: bool = False  # a non-empty SessionTicket extension (resumption attempt)
    psk: bool = False  # a pre_shared_key extension (TLS 1.3 resumption attempt)
    sslv2: bool = False  # sent in the SSLv2-compatible record format

    @property
    def ech(self) -> bool:
        """The client offered Encrypted Client Hello: its SNI is then the outer, public name."""
        return EXT_ECH in self.extensions


@attrs.frozen(slots=True)
class TlsServerHello:
    """The fields of a ServerHello (or HelloRetryRequest) the probe reports or fingerprints."""

    version: int
    session_id: bytes
    cipher: int
    extensions: tuple[int, ...]
    selected_version: int | None = None  # the supported_versions extension's choice
    key_share_group: int | None = None
    alpn: tuple[str, ...] = ()
    psk: bool = False  # the server accepted a pre-shared key
    retry: bool = False  # a HelloRetryRequest, not a real ServerHello


def _text(raw: bytes) -> str:
    """Names as text; bytes that are not UTF-8 kept visible as ``\\xHH`` (as Zeek logs them)."""
    return raw.decode("utf-8", "backslashreplace")


def _u16_list(body: bytes, start: int, length: int) -> tuple[int, ...]:
    if length & 1:
        raise ValueError("odd length of a 16-bit list")
    return struct.unpack_from(f"!{length >> 1}H", body, start)


def _server_names(body: bytes, start: int, end: int) -> tuple[str, ...]:
    (total,) = _U16.unpack_from(body, start)
    off = start + 2
    stop = min(off + total, end)
    names = []
    while off + 3 <= stop:
        name_type = body[off]
        (length,) = _U16.unpack_from(body, off + 1)
        off += 3
        if off + length > stop:
            raise ValueError("server name overruns its extension")
        if name_type == 0:
            names.append(_text(body[off : off + length]))
        off += length
    return tuple(names)


def _alpn(body: bytes, start: int, end: int) -> tuple[bytes, ...]:
    (total,) = _U16.unpack_from(body, start)
    off = start + 2
    stop = min(off + total, end)
    protocols = []
    while off < stop:
        length = body[off]
        off += 1
        if off + length > stop:
            raise ValueError("ALPN name overruns its extension")
        protocols.append(body[off : off + length])
        off += length
    return tuple(protocols)


def parse_client_hello(body: bytes) -> TlsClientHello:
    """Decode a ClientHello handshake body (TLS 1.0-1.3, SSLv3)."""
    (version,) = _U16.unpack_from(body, 0)
    off = 34  # version + random
    sid_len = body[off]
    if sid_len > 32 or off + 1 + sid_len > len(body):
        raise ValueError("bad session id length")
    session_id = body[off + 1 : off + 1 + sid_len]
    off += 1 + sid_len
    (cipher_len,) = _U16.unpack_from(body, off)
    off += 2
    if off + cipher_len > len(body):
        raise ValueError("cipher list overruns the ClientHello")
    ciphers = _u16_list(body, off, cipher_len)
    off += cipher_len
    off += 1 + body[off]  # compression methods
    if off > len(body):
        raise ValueError("compression methods overrun the ClientHello")
    fields: dict = {}
    extensions: list[int] = []
    if off + 2 <= len(body):
        (ext_total,) = _U16.unpack_from(body, off)
        off += 2
        end = off + ext_total
        if end > len(body):
            raise ValueError("extensions overrun the ClientHello")
        while off + 4 <= end:
            ext, length = _EXT_HEAD.unpack_from(body, off)
            off += 4
            stop = off + length
            if stop > end:
                raise ValueError("extension overruns the ClientHello")
            extensions.append(ext)
            if ext == EXT_SERVER_NAME and length:
                fields["server_names"] = _server_names(body, off, stop)
            elif ext == EXT_SUPPORTED_GROUPS and length >= 2:
                fields["groups"] = _u16_list(body, off + 2, min(_U16.unpack_from(body, off)[0], length - 2))
            elif ext == EXT_EC_POINT_FORMATS and length:
                fields["point_formats"] = tuple(body[off + 1 : off + 1 + min(body[off], length - 1)])
            elif ext == EXT_SIGNATURE_ALGORITHMS and length >= 2:
                fields["signature_algorithms"] = _u16_list(
                    body, off + 2, min(_U16.unpack_from(body, off)[0], length - 2)
                )
            elif ext == EXT_ALPN and length >= 2:
                names = _alpn(body, off, stop)
                fields["alpn"] = tuple([_text(name) for name in names])
                fields["alpn_first"] = names[0] if names else b""
            elif ext == EXT_SUPPORTED_VERSIONS and length:
                fields["supported_versions"] = _u16_list(body, off + 1, min(body[off], length - 1))
            elif ext == EXT_SESSION_TICKET:
                fields["ticket"] = length > 0
            elif ext == EXT_PRE_SHARED_KEY:
                fields["psk"] = True
            off = stop
    return TlsClientHello(version, session_id, ciphers, tuple(extensions), **fields)


def parse_sslv2_client_hello(record: bytes) -> TlsClientHello:
    """Decode an SSLv2-format ClientHello record (2-byte header, message type 1)."""
    version, cipher_len, sid_len, challenge_len = struct.unpack_from("!HHHH", record, 3)
    off = 11
    if cipher_len % 3 or off + cipher_len + sid_len + challenge_len > len(record):
        raise ValueError("SSLv2 ClientHello lists overrun the record")
    specs = record[off : off + cipher_len]
    ciphers = tuple((specs[i] << 16) | (specs[i + 1] << 8) | specs[i + 2] for i in range(0, cipher_len, 3))
    session_id = record[off + cipher_len : off + cipher_len + sid_len]
    return TlsClientHello(version, session_id, ciphers, (), sslv2=True)


def parse_server_hello(body: bytes) -> TlsServerHello:
    """Decode a ServerHello body, including HelloRetryRequest and TLS 1.3 draft layouts."""
    (version,) = _U16.unpack_from(body, 0)
    retry = body[2:34] == HRR_RANDOM
    off = 34
    if version // 0xFF == 0x7F:  # early TLS 1.3 drafts: no session id, no compression
        session_id = b""
        (cipher,) = _U16.unpack_from(body, off)
        off += 2
    else:
        sid_len = body[off]
        if sid_len > 32 or off + 1 + sid_len > len(body):
            raise ValueError("bad session id length")
        session_id = body[off + 1 : off + 1 + sid_len]
        off += 1 + sid_len
        (cipher,) = _U16.unpack_from(body, off)
        off += 3  # cipher + compression method
        if off > len(body):
            raise ValueError("ServerHello ends inside its cipher suite")
    fields: dict = {}
    extensions: list[int] = []
    if off + 2 <= len(body):
        (ext_total,) = _U16.unpack_from(body, off)
        off += 2
        end = off + ext_total
        if end > len(body):
            raise ValueError("extensions overrun the ServerHello")
        while off + 4 <= end:
            ext, length = _EXT_HEAD.unpack_from(body, off)
            off += 4
            stop = off + length
            if stop > end:
                raise ValueError("extension overruns the ServerHello")
            extensions.append(ext)
            if ext == EXT_SUPPORTED_VERSIONS and length >= 2:
                fields["selected_version"] = _U16.unpack_from(body, off)[0]
            elif ext == EXT_KEY_SHARE and length >= 2:
                fields["key_share_group"] = _U16.unpack_from(body, off)[0]
            elif ext == EXT_ALPN and length >= 2:
                fields["alpn"] = tuple([_text(name) for name in _alpn(body, off, stop)])
            elif ext == EXT_PRE_SHARED_KEY:
                fields["psk"] = True
            off = stop
    return TlsServerHello(version, session_id, cipher, tuple(extensions), retry=retry, **fields)


def negotiated_version(hello: TlsServerHello) -> int:
    """The version the server chose: supported_versions if present, else the legacy field."""
    return hello.selected_version if hello.selected_version is not None else hello.version


__all__ = [
    "HRR_RANDOM",
    "TlsClientHello",
    "TlsServerHello",
    "negotiated_version",
    "parse_client_hello",
    "parse_server_hello",
    "parse_sslv2_client_hello",
]

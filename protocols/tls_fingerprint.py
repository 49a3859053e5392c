"""TLS client and server fingerprints: JA3 and JA3S (Salesforce), JA4 (FoxIO).

JA3  = md5("version,ciphers,extensions,groups,point_formats"), decimal values joined by
       '-', GREASE values (RFC 8701) removed.
JA3S = md5("version,cipher,extensions") of the ServerHello.
JA4  = "t13d1516h2_<sha256[:12] of sorted ciphers>_<sha256[:12] of sorted extensions
       (without SNI and ALPN) '_' signature algorithms in wire order>", GREASE ignored
       everywhere, as FoxIO's technical details describe.
"""

from __future__ import annotations

import struct
from hashlib import md5, sha256

from protocols.tls_hello import TlsClientHello, TlsServerHello
from protocols.tls_names import GREASE

_JA4_VERSIONS = {
    0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
    0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3",
}  # fmt: skip
_EMPTY_HASH = "000000000000"


def _dashed(values: tuple[int, ...]) -> str:
    return "-".join([str(v) for v in values if v not in GREASE])


def ja3_string(hello: TlsClientHello) -> str:
    """The JA3 input string of a ClientHello."""
    return (
        f"{hello.version},{_dashed(hello.ciphers)},{_dashed(hello.extensions)},"
        f"{_dashed(hello.groups)},{'-'.join([str(v) for v in hello.point_formats])}"
    )


def ja3s_string(hello: TlsServerHello) -> str:
    """The JA3S input string of a ServerHello."""
    return f"{hello.version},{hello.cipher},{_dashed(hello.extensions)}"


def md5_hex(text: str) -> str:
    """The lower-case hex MD5 of ``text``, as JA3 and JA3S publish it."""
    return md5(text.encode("ascii"), usedforsecurity=False).hexdigest()


def _alnum(char: int) -> bool:
    return 0x30 <= char <= 0x39 or 0x41 <= char <= 0x5A or 0x61 <= char <= 0x7A


def _ja4_alpn(hello: TlsClientHello) -> str:
    raw = hello.alpn_first
    if not raw:
        return "00"
    if _alnum(raw[0]) and _alnum(raw[-1]):
        return chr(raw[0]) + chr(raw[-1])
    hexed = raw.hex()
    return hexed[0] + hexed[-1]


def _short_sha(text: str) -> str:
    return sha256(text.encode("ascii")).hexdigest()[:12] if text else _EMPTY_HASH


def _hex_list(values: list[int]) -> str:
    """Values as comma-separated 4-digit lower-case hex ("1301,c02b")."""
    return struct.pack(f"!{len(values)}H", *values).hex(",", 2) if values else ""


def ja4_parts(hello: TlsClientHello, transport: str = "t") -> tuple[str, str]:
    """(JA4, JA4_r): the fingerprint and its raw, unhashed form."""
    versions = [v for v in hello.supported_versions if v not in GREASE]
    version = _JA4_VERSIONS.get(max(versions) if versions else hello.version, "00")
    ciphers = sorted([c for c in hello.ciphers if c not in GREASE])  # ints sort as their fixed-width hex
    extensions = [e for e in hello.extensions if e not in GREASE]
    sni = "d" if 0 in extensions else "i"
    head = f"{transport}{version}{sni}{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}{_ja4_alpn(hello)}"
    ext_hex = _hex_list(sorted([e for e in extensions if e != 0x0000 and e != 0x0010]))
    sigs = _hex_list([s for s in hello.signature_algorithms if s not in GREASE])
    ext_text = f"{ext_hex}_{sigs}" if sigs else ext_hex
    cipher_text = _hex_list(ciphers)
    return (
        f"{head}_{_short_sha(cipher_text)}_{_short_sha(ext_text)}",
        f"{head}_{cipher_text}_{ext_text}",
    )


def ja4(hello: TlsClientHello, transport: str = "t") -> str:
    """The JA4 fingerprint of a ClientHello (``transport``: t = TCP, q = QUIC, d = DTLS)."""
    return ja4_parts(hello, transport)[0]

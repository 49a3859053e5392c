"""Content sniffing of file bodies with a subset of Zeek's file-magic signatures.

Zeek names a body's MIME type by matching the start of its data against regular
expressions with a strength each (``base/frameworks/files/magic/*.sig``); the strongest
match wins. This module carries the signatures for the types common on HTTP (text,
HTML, XML, JSON, images, PDF, archives, executables), with Zeek's strengths.
"""

from __future__ import annotations

import re

#: how much of a body's start is kept for sniffing
SNIFF_BYTES = 4096

# Zeek writes "(blanks* comment? blanks*)*"; the same language without nested stars,
# possessive, so that a long run of blanks cannot make the regex engine backtrack.
_BLANKS_OR_COMMENTS = rb"(?:[\x0d\x0a\t ]|<!--.*?-->)*+"
_PROLOG = (
    rb"^(?:\xef\xbb\xbf)?" + _BLANKS_OR_COMMENTS + rb"(?:<\?xml .*?\?>" + _BLANKS_OR_COMMENTS + rb")?"
)

_SIGNATURES: list[tuple[int, str, re.Pattern[bytes]]] = [
    (sig_strength, mime, re.compile(pattern, re.DOTALL))
    for sig_strength, mime, pattern in [
        (-20, "text/plain", rb"^(?:\xef\xbb\xbf|(?:\x00\x00)?\xfe\xff|\xff\xfe(?:\x00\x00)?)?[\t\n\x0b\x0c\r\x20-\x7e]{10}"),
        (1, "text/json", rb"^(?:\xef\xbb\xbf)?[\r\n\t ]*\{[\r\n\t ]*(?:\"[^\"]+\"|[a-zA-Z][a-zA-Z0-9\\_]*)[\r\n\t ]*:[\r\n\t ]*(?:\"|\[|\{|[0-9]|true|false)"),
        (1, "text/json", rb"^(?:\xef\xbb\xbf)?[\r\n\t ]*\[[\r\n\t ]*(?:(?:(?:\"[^\"]+\"|[0-9]+(?:\.[0-9]+)?|true|false)[\r\n\t ]*,)|\{|\[)"),
        (10, "application/xml", rb"^(?:\xef\xbb\xbf)?" + _BLANKS_OR_COMMENTS + rb"<\?xml "),
        (100, "text/html", _PROLOG + rb"<(?:![dD][oO][cC][tT][yY][pP][eE] +[hH][tT][mM][lL]|[hH][tT][mM][lL]|[mM][eE][tT][aA] +[hH][tT][tT][pP]-[eE][qQ][uU][iI][vV])"),
        (49, "text/html", _PROLOG + rb"<![dD][oO][cC][tT][yY][pP][eE] +[hH][tT][mM][lL]"),
        (20, "text/html", _PROLOG + rb"<(?:[hH][eE][aA][dD]|[hH][tT][mM][lL]|[tT][iI][tT][lL][eE]|[bB][oO][dD][yY])"),
        (90, "text/rss", _PROLOG + rb"<[rR][sS][sS]"),
        (110, "image/png", rb"^\x89PNG"),
        (70, "image/gif", rb"^GIF8"),
        (52, "image/jpeg", rb"^\xff\xd8"),
        (70, "image/tiff", rb"^(?:MM\x00[\x2a\x2b]|II[\x2a\x2b]\x00)"),
        (70, "image/x-icon", rb"^\x00\x00\x01\x00"),
        (70, "image/webp", rb"^RIFF.{4}WEBP"),
        (50, "image/x-ms-bmp", rb"^BM.{12}[\x0c\x28\x40\x6c\x7c\x80]\x00"),
        (80, "application/pdf", rb"^%PDF"),
        (70, "application/zip", rb"^PK\x03\x04"),
        (100, "application/x-gzip", rb"^\x1f\x8b"),
        (51, "application/x-dosexec", rb"^MZ"),
        (50, "application/x-executable", rb"^\x7fELF[\x01\x02](?:\x01.{10}\x02\x00|\x02.{10}\x00\x02)"),
        (100, "application/x-shockwave-flash", rb"^[FCZ]WS"),
        (70, "application/vnd.tcpdump.pcap", rb"^(?:\xa1\xb2\xc3\xd4|\xd4\xc3\xb2\xa1)"),
        (110, "application/x-7z-compressed", rb"^7z\xbc\xaf\x27\x1c"),
        (70, "application/x-rar", rb"^Rar!\x1a\x07"),
    ]
]


def sniff(head: bytes) -> str | None:
    """The MIME type Zeek's signatures give the body starting with ``head``, or None."""
    best: tuple[int, str] | None = None
    for sig_strength, mime, pattern in _SIGNATURES:
        if (best is None or sig_strength > best[0]) and pattern.match(head):
            best = (sig_strength, mime)
    return None if best is None else best[1]

"""``http``: one HTTP/1.x request/response pair, as a line of Zeek's http.log."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("http")
@attrs.frozen(slots=True)
class Http:
    """A request and its response; fields and meanings are those of Zeek's http.log.

    As in Zeek: ``host`` is the Host header (port included), ``uri`` is %-unescaped,
    ``version`` is the response's, body lengths count decoded bytes (after chunking and
    gzip/deflate content encoding), ``info_code``/``info_msg`` keep the last 1xx, and the
    ``*_mime_types`` come from sniffing the body with Zeek's signatures for common types.
    Zeek's file ids and names and the (never captured) password are not produced.

    Extras beyond Zeek: ``request_version``, the Content-Length and Transfer-Encoding
    header values of both messages, the response Content-Type header, and every 1xx
    status seen before the final one (``interim_statuses``).
    """

    ts: float
    uid: str
    id: ConnId
    trans_depth: int
    method: str | None = None
    host: str | None = None
    uri: str | None = None
    referrer: str | None = None
    version: str | None = None
    user_agent: str | None = None
    origin: str | None = None
    request_body_len: int = 0
    response_body_len: int = 0
    status_code: int | None = None
    status_msg: str | None = None
    info_code: int | None = None
    info_msg: str | None = None
    tags: tuple[str, ...] = ()
    username: str | None = None
    proxied: tuple[str, ...] | None = None
    orig_mime_types: tuple[str, ...] | None = None
    resp_mime_types: tuple[str, ...] | None = None
    request_version: str | None = None
    request_content_length: int | None = None
    request_transfer_encoding: str | None = None
    response_content_length: int | None = None
    response_transfer_encoding: str | None = None
    response_content_type: str | None = None
    interim_statuses: tuple[int, ...] = ()

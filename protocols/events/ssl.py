"""``ssl``: one TLS/SSL handshake, as a line of Zeek's ssl.log plus client fingerprints."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("ssl")
@attrs.frozen(slots=True)
class Ssl:
    """A TLS handshake; Zeek's ssl.log fields with Zeek's value spellings.

    ``version``/``cipher``/``curve``/``last_alert`` use Zeek's names (``TLSv12``,
    ``TLS_AES_256_GCM_SHA384``, ``x25519``), ``ssl_history`` Zeek's letters (client's
    upper case), ``cert_chain_fps`` SHA-256 of each DER certificate. ``subject``/``issuer``
    are those Zeek computes for its optional log columns.

    Extras beyond Zeek's ssl.log, all from the first ClientHello unless named otherwise:
    ``client_version`` (legacy version field), ``client_versions`` (supported_versions,
    GREASE removed, Zeek's names), ``client_ciphers`` (offered suites as "0x1302"),
    ``client_alpn`` (offered ALPN names), ``ja3``/``ja3_full`` (Salesforce JA3 and its
    input string), ``ja4`` (FoxIO JA4), ``ja3s``/``ja3s_full`` (of the final ServerHello),
    ``ech`` (the client sent Encrypted Client Hello: ``server_name`` is then the outer,
    public name, not the real destination).
    """

    ts: float
    uid: str
    id: ConnId
    version: str | None = None
    cipher: str | None = None
    curve: str | None = None
    server_name: str | None = None
    resumed: bool = False
    last_alert: str | None = None
    next_protocol: str | None = None
    established: bool = False
    ssl_history: str = ""
    cert_chain_fps: tuple[str, ...] | None = None
    client_cert_chain_fps: tuple[str, ...] | None = None
    subject: str | None = None
    issuer: str | None = None
    client_subject: str | None = None
    client_issuer: str | None = None
    sni_matches_cert: bool | None = None
    client_version: str | None = None
    client_versions: tuple[str, ...] = ()
    client_ciphers: tuple[str, ...] = ()
    client_alpn: tuple[str, ...] = ()
    ja3: str | None = None
    ja3_full: str | None = None
    ja4: str | None = None
    ja3s: str | None = None
    ja3s_full: str | None = None
    ech: bool = False

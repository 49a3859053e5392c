"""``ntlm``: one NTLM authentication exchange, as a line of Zeek's ntlm.log."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("ntlm")
@attrs.frozen(slots=True)
class Ntlm:
    """NEGOTIATE/CHALLENGE/AUTHENTICATE seen on one flow; Zeek's ntlm.log.

    ``username``/``hostname``/``domainname`` come from the AUTHENTICATE message,
    ``server_*`` from the CHALLENGE's AV pairs, ``success`` from the carrier's verdict (SMB
    session setup status or SPNEGO negResult; None when there is none, as for DCE/RPC).
    ``ts`` is the first message of the exchange. Extras: ``transport`` (``smb``,
    ``dce_rpc``, ``http``, ...), ``target_name`` (CHALLENGE target name),
    ``client_version``/``server_version`` (the OS version fields, ``major.minor.build``),
    ``status`` (the carrier's status name when it gave one), ``session_id`` (SMB).
    """

    ts: float
    uid: str
    id: ConnId
    username: str | None
    hostname: str | None
    domainname: str | None
    server_nb_computer_name: str | None
    server_dns_computer_name: str | None
    server_tree_name: str | None
    success: bool | None
    transport: str | None = None
    target_name: str | None = None
    client_version: str | None = None
    server_version: str | None = None
    status: str | None = None
    session_id: int | None = None

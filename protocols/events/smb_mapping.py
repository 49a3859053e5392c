"""``smb_mapping``: one tree (share) connected over SMB, as a line of Zeek's smb_mapping.log."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("smb_mapping")
@attrs.frozen(slots=True)
class SmbMapping:
    """A TREE_CONNECT and its answer; Zeek's smb_mapping.log.

    ``share_type`` is ``DISK``, ``PIPE`` or ``PRINT`` (SMB2's share type); ``service`` and
    ``native_file_system`` only exist in SMB1 and stay None for SMB2. ``ts`` is the request.
    Extras: ``tree_id``, ``session_id``, ``status`` (Zeek's NT status name of the answer;
    Zeek logs only successful mappings, this logs failures too, e.g. BAD_NETWORK_NAME).
    """

    ts: float
    uid: str
    id: ConnId
    path: str | None
    service: str | None
    native_file_system: str | None
    share_type: str | None
    tree_id: int | None = None
    session_id: int | None = None
    status: str | None = None

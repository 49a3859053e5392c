"""``smb_files``: one action on a file over SMB, as a line of Zeek's smb_files.log."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("smb_files")
@attrs.frozen(slots=True)
class SmbFiles:
    """A file opened, read, written, renamed, deleted or closed; Zeek's smb_files.log.

    ``action`` uses Zeek's names (``SMB::FILE_OPEN``, ``SMB::FILE_READ``, ``SMB::FILE_WRITE``,
    ``SMB::FILE_RENAME``, ``SMB::FILE_DELETE``, ``SMB::FILE_CLOSE``, ``SMB::FILE_SET_ATTRIBUTE``
    and the ``PIPE_``/``PRINT_`` variants); ``ts`` is when the file was first seen (the
    CREATE request), as in Zeek. ``times.*`` are the server's MAC times in epoch seconds.
    Like Zeek, a row identical to one already written on this connection (same action,
    name, path, size and times but the access time) is not repeated.

    Unlike Zeek's default, every action is written (Zeek logs OPEN/RENAME/DELETE unless
    configured), and a CREATE with FILE_DELETE_ON_CLOSE that succeeds writes a
    ``SMB::FILE_DELETE`` row right after its ``SMB::FILE_OPEN`` (as current Zeek does).
    Extras beyond Zeek: ``fid`` (the SMB2 file id as 32 hex digits), ``tree_id``,
    ``session_id``, ``message_id`` (of the command that caused the row), ``data_len``
    (bytes read or written by that command).
    """

    ts: float
    uid: str
    id: ConnId
    fuid: str | None
    action: str
    path: str | None
    name: str | None
    size: int
    prev_name: str | None
    times_modified: float | None = attrs.field(default=None, metadata={"zeek": "times.modified"})
    times_accessed: float | None = attrs.field(default=None, metadata={"zeek": "times.accessed"})
    times_created: float | None = attrs.field(default=None, metadata={"zeek": "times.created"})
    times_changed: float | None = attrs.field(default=None, metadata={"zeek": "times.changed"})
    fid: str | None = None
    tree_id: int | None = None
    session_id: int | None = None
    message_id: int | None = None
    data_len: int | None = None

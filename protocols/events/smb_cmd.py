"""``smb_cmd``: one SMB command and its answer, as a line of Zeek's smb_cmd.log (policy script)."""

from __future__ import annotations

import attrs

from protocols.events.base import ConnId, event_kind


@event_kind("smb_cmd")
@attrs.frozen(slots=True)
class SmbCmd:
    """One request matched to its final response by message id; Zeek's smb_cmd.log.

    Zeek fields: ``command`` (Zeek's name: ``NEGOTIATE_PROTOCOL``, ``SESSION_SETUP``,
    ``TREE_CONNECT``, ``CREATE``, ``READ``, ``WRITE``, ``CLOSE``, ``SET_INFO``, ...),
    ``sub_command``, ``argument``, ``status`` (NT status name without ``STATUS_``), ``rtt``,
    ``version`` (``SMB2``/``SMB1``), ``username``, ``tree``, ``tree_service``. Zeek's nested
    ``referenced_file`` is carried flat by the fields below instead.

    Extras (per-command detail): ``message_id``, ``session_id``, ``tree_id``, ``status_code``
    (the 32-bit NT status), ``async`` (the final answer came after STATUS_PENDING),
    ``compound`` (request was chained with NextCommand), ``dialects``/``dialect`` (NEGOTIATE),
    ``ntlmssp_type`` / ``ntlm_user`` / ``ntlm_domain`` / ``ntlm_host`` (SESSION_SETUP, from the
    client's NTLMSSP message), ``path`` / ``share_type``
    (TREE_CONNECT), ``fid`` (32 hex digits), ``filename`` (of the CREATE, or the name the fid was
    opened with), ``disposition``, ``create_options``, ``desired_access``, ``delete_on_close``,
    ``directory``, ``create_action``, ``end_of_file`` (CREATE), ``length``/``offset`` (READ,
    WRITE), ``data_length`` (bytes a READ returned), ``written`` (bytes a WRITE wrote),
    ``info_type``/``info_level`` (QUERY_INFO, SET_INFO), ``rename_to``/``replace_if``
    (FileRenameInformation), ``delete_pending`` (FileDispositionInformation), ``pattern``
    (QUERY_DIRECTORY), ``ctl_code`` (IOCTL).
    """

    ts: float
    uid: str
    id: ConnId
    command: str
    sub_command: str | None
    argument: str | None
    status: str | None
    rtt: float | None
    version: str
    username: str | None
    tree: str | None
    tree_service: str | None
    message_id: int | None = None
    session_id: int | None = None
    tree_id: int | None = None
    status_code: int | None = None
    is_async: bool = attrs.field(default=False, metadata={"zeek": "async"})
    compound: bool = False
    dialects: tuple[int, ...] | None = None
    dialect: int | None = None
    ntlmssp_type: str | None = None
    ntlm_user: str | None = None
    ntlm_domain: str | None = None
    ntlm_host: str | None = None
    path: str | None = None
    share_type: str | None = None
    fid: str | None = None
    filename: str | None = None
    disposition: str | None = None
    create_options: int | None = None
    desired_access: int | None = None
    delete_on_close: bool | None = None
    directory: bool | None = None
    create_action: str | None = None
    end_of_file: int | None = None
    length: int | None = None
    offset: int | None = None
    data_length: int | None = None
    written: int | None = None
    info_type: int | None = None
    info_level: int | None = None
    rename_to: str | None = None
    replace_if: bool | None = None
    delete_pending: bool | None = None
    pattern: str | None = None
    ctl_code: int | None = None

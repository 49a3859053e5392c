"""The event schema (one module per kind) and its canonical encoding.

Kinds and field names follow Zeek's logs so that security teams can reuse what they
already parse: ``conn``, ``dns``, ``http``, ``ssl``, ``smb_files``, ``smb_mapping``,
``ntlm``, ``dce_rpc``, ``kerberos``, ``weird``, ``notice``.
"""

from protocols.events.base import (
    KINDS,
    ConnId,
    EncodedEvent,
    as_json_object,
    encode_body,
    event_kind,
    flatten,
)
from protocols.events.envelope import (
    SIGNATURE_SIZE,
    EnvelopeHeader,
    EventRecord,
    canonical_bytes,
    decode_canonical,
    split_signed,
)
from protocols.events.conn import Conn
from protocols.events.dns import Dns
from protocols.events.http import Http
from protocols.events.dce_rpc import DceRpc
from protocols.events.dce_rpc_bind import DceRpcBind
from protocols.events.kerberos import Kerberos
from protocols.events.notice import Notice
from protocols.events.ntlm import Ntlm
from protocols.events.smb_cmd import SmbCmd
from protocols.events.smb_files import SmbFiles
from protocols.events.smb_mapping import SmbMapping
from protocols.events.ssl import Ssl
from protocols.events.weird import Weird

__all__ = [
    "KINDS",
    "SIGNATURE_SIZE",
    "Conn",
    "DceRpc",
    "DceRpcBind",
    "ConnId",
    "Dns",
    "EncodedEvent",
    "EnvelopeHeader",
    "EventRecord",
    "Http",
    "Kerberos",
    "Notice",
    "Ntlm",
    "SmbCmd",
    "SmbFiles",
    "SmbMapping",
    "Ssl",
    "Weird",
    "as_json_object",
    "canonical_bytes",
    "decode_canonical",
    "encode_body",
    "event_kind",
    "flatten",
    "split_signed",
]

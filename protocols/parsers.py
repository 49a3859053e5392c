"""Imports every application parser so that each registers itself with the engine.

One line per parser module; importing this module fills ``protocols.analyzer.ANALYZERS``.
"""

import protocols.dns  # noqa: F401  (registers "dns")
import protocols.http  # noqa: F401  (registers "http")
import protocols.http_auth  # noqa: F401  (NTLM, Negotiate and Kerberos tokens in HTTP headers)
from protocols import dcerpc  # noqa: F401,E402  - "dce_rpc" over TCP
from protocols import smb2  # noqa: F401,E402  - "smb" (NTLM, DCE/RPC pipes inside)
import protocols.tls  # noqa: F401  (ssl)
import protocols.kerberos  # noqa: F401  (krb, krb_tcp)
